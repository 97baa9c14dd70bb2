// A Tidewell WebSocket client written from docs/protocol.md alone, with the npm `ws` package.
// Driven by tests/node_client.rs over stdin/stdout, one line per step:
//   prints "ready <epoch>"      after welcome + subscribed to the room
//   reads  "published"          then expects three events (offsets 1..3), closes, prints "closed 3"
//   reads  "published"          then reconnects with since {epoch, offset 3}: expects
//                               subscribed {recovered: true} and events 4..5, prints "recovered 4,5"
// Exits 1 with a message on anything unexpected.
import WebSocket from "ws";
import readline from "node:readline";

const [url, token, room] = process.argv.slice(2);
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const fail = (msg) => { console.error(msg); process.exit(1); };
const timer = setTimeout(() => fail("timed out"), 15000);

function open() {
  // Browsers cannot set headers: the token rides in the WebSocket protocol list.
  const ws = new WebSocket(url, ["tidewell.v1", `bearer.${token}`]);
  const frames = [];
  let waiter = null;
  ws.on("message", (data, isBinary) => {
    if (isBinary) fail("binary frame from the server");
    frames.push(JSON.parse(data.toString()));
    if (waiter) { const w = waiter; waiter = null; w(); }
  });
  ws.on("error", (e) => fail(`socket error: ${e.message}`));
  const next = async () => {
    while (frames.length === 0) await new Promise((r) => { waiter = r; });
    return frames.shift();
  };
  const opened = new Promise((r) => ws.on("open", r));
  return { ws, next, opened };
}

let c = open();
await c.opened;
if (c.ws.protocol !== "tidewell.v1") fail(`negotiated protocol ${c.ws.protocol}`);
c.ws.send(JSON.stringify({ type: "hello", protocol: 1 }));
const welcome = await c.next();
if (welcome.type !== "welcome" || welcome.protocol !== 1) fail(`welcome: ${JSON.stringify(welcome)}`);
c.ws.send(JSON.stringify({ type: "subscribe", id: 1, room }));
const sub = await c.next();
if (sub.type !== "subscribed" || sub.id !== 1 || sub.room !== room) fail(`subscribed: ${JSON.stringify(sub)}`);
const epoch = sub.epoch;
console.log(`ready ${epoch}`);

if ((await lines.next()).value !== "published") fail("expected 'published'");
const seen = new Set();
let last = 0;
for (let i = 1; i <= 3; i++) {
  const ev = await c.next();
  if (ev.type !== "event" || ev.room !== room || ev.offset !== i || ev.epoch !== epoch) fail(`event: ${JSON.stringify(ev)}`);
  seen.add(ev.event.id);
  last = ev.offset;
}
c.ws.close(1000);
console.log(`closed ${last}`);

if ((await lines.next()).value !== "published") fail("expected 'published'");
c = open();
await c.opened;
if ((await c.next()).type !== "welcome") fail("no welcome on reconnect");
c.ws.send(JSON.stringify({ type: "subscribe", id: 2, room, since: { epoch, offset: last } }));
const resub = await c.next();
if (resub.type !== "subscribed" || resub.recovered !== true) fail(`resubscribe: ${JSON.stringify(resub)}`);
const got = [];
while (got.length < 2) {
  const ev = await c.next();
  if (ev.type !== "event") fail(`expected an event: ${JSON.stringify(ev)}`);
  if (seen.has(ev.event.id)) continue; // de-duplicate by envelope id, as the protocol says
  got.push(ev.offset);
}
console.log(`recovered ${got.join(",")}`);
c.ws.close(1000);
clearTimeout(timer);
process.exit(0);
