// The baseline for benches/fanout.rs: a plain npm `ws` server doing the same broadcast as Tidewell.
// Every connection is in one room; POST /broadcast?n=<events>&size=<bytes> sends n event frames of
// the same JSON shape and size to every client, each with client.send (the usual ws broadcast).
// Prints "listening <port>" when ready.
import http from "node:http";
import { WebSocketServer } from "ws";

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  if (req.method === "POST" && url.pathname === "/broadcast") {
    const n = Number(url.searchParams.get("n"));
    const size = Number(url.searchParams.get("size"));
    const payload = "x".repeat(size);
    for (let i = 1; i <= n; i++) {
      const msg = JSON.stringify({
        type: "event", room: "broadcast", offset: i, epoch: "e",
        event: { id: `ev-${i}`, type: "bench.thing.happened", payload },
      });
      for (const c of wss.clients) c.send(msg);
    }
    res.end("ok");
    return;
  }
  if (req.method === "POST" && url.pathname === "/paced") {
    // n events at `rate` per second, each stamped with the time it was due (µs since the epoch), so
    // a sender that falls behind its schedule counts the lag (no coordinated omission).
    const n = Number(url.searchParams.get("n"));
    const rate = Number(url.searchParams.get("rate"));
    const pad = "x".repeat(Number(url.searchParams.get("size")));
    const start = performance.now();
    let sent = 0;
    const tick = () => {
      const due = Math.min(n, Math.floor(((performance.now() - start) / 1000) * rate) + 1);
      for (; sent < due; sent++) {
        const msg = JSON.stringify({
          type: "event", room: "broadcast", offset: sent + 1, epoch: "e",
          event: { id: "ev", type: "bench.thing.happened",
                   payload: { sent_us: Math.round((performance.timeOrigin + start + (sent * 1000) / rate) * 1000), pad } },
        });
        for (const c of wss.clients) c.send(msg);
      }
      if (sent < n) setTimeout(tick, 1); else res.end("ok");
    };
    tick();
    return;
  }
  res.statusCode = 404;
  res.end();
});
const wss = new WebSocketServer({ server });
wss.on("connection", (ws) => {
  ws.send(JSON.stringify({ type: "welcome", connection_id: "n", protocol: 1, server_time_ms: Date.now(), rooms: ["broadcast"] }));
});
server.listen(0, "127.0.0.1", () => console.log(`listening ${server.address().port}`));
