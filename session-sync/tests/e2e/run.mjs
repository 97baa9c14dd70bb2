// Drives Debian's Chromium with playwright-core over the demo page served by tests/e2e.rs (or
// benches/session_sync.rs). Usage: node run.mjs <base-url> <scenario> [runs]
// Prints one line `result: <json>` and exits 0, or prints the failure and exits 1.
import { chromium } from "playwright-core";

const [base, scenario, runsArg] = process.argv.slice(2);
const runs = Number(runsArg ?? 20);
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";

function check(cond, message) {
  if (!cond) throw new Error(message);
}

const browser = await chromium.launch({
  executablePath,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});

/** A tab on the demo page, loaded. */
async function tab(context, query = "") {
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await page.goto(`${base}/${query}`);
  const info = await page.evaluate(() => window.demoReady);
  return { page, info };
}

async function waitFor(page, expr, timeout = 2000) {
  await page.waitForFunction(expr, null, { timeout, polling: 1 });
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Logout in A, measured to B's handler, `runs` times. */
async function logoutLatency(query) {
  const context = await browser.newContext();
  const a = await tab(context, query);
  const b = await tab(context, query);
  check(a.info.tabId !== b.info.tabId, "two tabs share a tab id");
  const latencies = [];
  for (let i = 0; i < runs; i++) {
    const sent = await a.page.evaluate(() => demo.logout());
    await waitFor(b.page, `demo.logouts.length >= ${i + 1}`);
    const got = await b.page.evaluate((n) => demo.logouts[n], i);
    check(got.reason === "user" && got.fromTab === a.info.tabId, `bad logout event ${JSON.stringify(got)}`);
    latencies.push(got.at - sent);
  }
  const ownLogouts = await a.page.evaluate(() => demo.logouts.length);
  check(ownLogouts === 0, `the sender saw its own logout ${ownLogouts} times`);
  await context.close();
  return { transport: a.info.transport, runs, median_ms: median(latencies), max_ms: Math.max(...latencies) };
}

/** Raw BroadcastChannel, the baseline: post in A, onmessage in B. */
async function rawChannelLatency() {
  const context = await browser.newContext();
  const a = await tab(context);
  const b = await tab(context);
  await b.page.evaluate(() => {
    window.raw = [];
    const c = new BroadcastChannel("raw-bench");
    c.onmessage = () => window.raw.push(performance.timeOrigin + performance.now());
  });
  await a.page.evaluate(() => { window.rawc = new BroadcastChannel("raw-bench"); });
  const latencies = [];
  for (let i = 0; i < runs; i++) {
    const sent = await a.page.evaluate(() => {
      const at = performance.timeOrigin + performance.now();
      window.rawc.postMessage("logout");
      return at;
    });
    await waitFor(b.page, `window.raw.length >= ${i + 1}`);
    const got = await b.page.evaluate((n) => window.raw[n], i);
    latencies.push(got - sent);
  }
  await context.close();
  return { runs, median_ms: median(latencies) };
}

/** Three tabs refresh at once; the server counts the requests. */
async function refreshOnce(query) {
  const context = await browser.newContext();
  const tabs = [await tab(context, query), await tab(context, query), await tab(context, query)];
  // Every tab starts at the same instant (evaluate calls reach the tabs staggered on a busy
  // machine; a tab that starts after the refresh finished rightly refreshes again).
  const startAt = Date.now() + 500;
  const results = await Promise.all(tabs.map((t) => t.page.evaluate((at) =>
    new Promise((r) => setTimeout(r, at - Date.now())).then(() => demo.refresh()), startAt)));
  const first = JSON.stringify(results[0]);
  check(results.every((r) => JSON.stringify(r) === first), `tabs got different tokens: ${JSON.stringify(results)}`);
  await context.close();
  return { locks: tabs[0].info.locks, transport: tabs[0].info.transport, tokens: results[0] };
}

/** The refreshing tab closes mid-refresh: a waiting tab gets the lock and refreshes itself. */
async function holderDies(query) {
  const context = await browser.newContext();
  const a = await tab(context, query);
  const b = await tab(context, query);
  // A's refresh hangs on the server; its timeout (1 s) bounds a lease it cannot release.
  a.page.evaluate(() => demo.refresh(20000, 1000)).catch(() => {});
  await new Promise((r) => setTimeout(r, 300));
  const started = Date.now();
  const waiting = b.page.evaluate(() => demo.refresh(50, 1000));
  await new Promise((r) => setTimeout(r, 200));
  await a.page.close();
  const tokens = await waiting;
  const waitedMs = Date.now() - started;
  await context.close();
  return { locks: a.info.locks, tokens, waited_ms: waitedMs };
}

/** Garbage on the channel (both transports): ignored, reported to onError. */
async function garbage() {
  const context = await browser.newContext();
  const a = await tab(context);
  const b = await tab(context);
  await a.page.evaluate(() => {
    const c = new BroadcastChannel("tidewell-session-sync:demo");
    c.postMessage("{not json");
    c.postMessage({ v: 1, type: "logout" });
    c.postMessage(JSON.stringify({ v: 7, id: "x", tab: "evil", type: "logout" }));
    c.postMessage(JSON.stringify({ v: 1, id: "x", tab: "evil", type: "logout", extra: "<script>" }));
  });
  await waitFor(b.page, "demo.errors.length >= 4");
  const errors = await b.page.evaluate(() => demo.errors.map((e) => e.code));
  const logouts = await b.page.evaluate(() => demo.logouts.length);
  check(logouts === 0, "garbage logged a tab out");
  check(JSON.stringify(errors) === JSON.stringify(["malformed", "malformed", "version", "malformed"]), `errors ${errors}`);
  // The localStorage transport: another tab writes garbage under the channel's key.
  const c = await tab(context, "?nobc=1");
  const d = await tab(context, "?nobc=1");
  check(d.info.transport === "local-storage", `transport ${d.info.transport}`);
  await c.page.evaluate(() => localStorage.setItem("tidewell-session-sync:demo", "]]garbage"));
  await waitFor(d.page, "demo.errors.length >= 1");
  check((await d.page.evaluate(() => demo.logouts.length)) === 0, "garbage logged a tab out");
  // And the channel still works afterwards.
  await a.page.evaluate(() => demo.logout());
  await waitFor(b.page, "demo.logouts.length === 1");
  await context.close();
  return { errors };
}

/** Device B (two tabs) is revoked from device A through the server and the WebSocket. */
async function revokeDevice() {
  const deviceA = await browser.newContext();
  const deviceB = await browser.newContext();
  const a = await tab(deviceA);
  const b1 = await tab(deviceB);
  const b2 = await tab(deviceB);
  const user = `user-${Date.now()}`;
  const la = await a.page.evaluate((u) => demo.login(u), user);
  const lb = await b1.page.evaluate((u) => demo.login(u), user);
  check(la.device !== lb.device, "two browser contexts share a device id");
  check(lb.device === (await b2.page.evaluate(() => demo.login("probe").then((r) => r.device))), "tabs of one browser disagree on the device id");
  await a.page.evaluate(([t, s]) => demo.watchDevice(t, s), [la.token, la.session_id]);
  await b1.page.evaluate(([t, s]) => demo.watchDevice(t, s), [lb.token, lb.session_id]);
  await b2.page.evaluate(([t, s]) => demo.watchDevice(t, s), [lb.token, lb.session_id]);
  // Another user's device cannot be revoked with A's token.
  const foreign = await a.page.evaluate(() => demo.revoke(window.__foreignToken ?? "", "00000000-0000-4000-8000-000000000000"));
  check(foreign.status === 401 || foreign.status === 404, `revoke with a bad token or unknown device: ${foreign.status}`);
  const revoked = await a.page.evaluate(([t, d]) => demo.revoke(t, d), [la.token, lb.device]);
  check(revoked.status === 200, `revoke answered ${revoked.status}`);
  await waitFor(b1.page, "demo.logouts.length >= 1", 1000);
  await waitFor(b2.page, "demo.logouts.length >= 1", 1000);
  const e1 = await b1.page.evaluate(() => demo.logouts);
  const e2 = await b2.page.evaluate(() => demo.logouts);
  check(e1[0].reason === "revoked" && e2[0].reason === "revoked", `reasons ${JSON.stringify([e1, e2])}`);
  // Each tab handles the revocation once, though both the server and the other tab told it.
  await new Promise((r) => setTimeout(r, 300));
  const counts = [await b1.page.evaluate(() => demo.logouts.length), await b2.page.evaluate(() => demo.logouts.length)];
  check(counts[0] === 1 && counts[1] === 1, `logouts per tab ${counts}`);
  check((await a.page.evaluate(() => demo.logouts.length)) === 0, "the revoking device logged out");
  const latency = Math.max(e1[0].at, e2[0].at) - revoked.at;
  await deviceA.close();
  await deviceB.close();
  return { latency_ms: latency, user, revoked_token: lb.token, revoked_session: lb.session_id };
}

/** A realtime client loses its connection, reconnects, and gets what it missed exactly once. */
async function reconnect() {
  const context = await browser.newContext();
  const t = await tab(context, "?spy=1");
  const user = `rt-${Date.now()}`;
  const login = await t.page.evaluate((u) => demo.login(u), user);
  const room = `user:${user}`;
  await t.page.evaluate(([tok, r]) => demo.realtime(tok, r), [login.token, room]);
  const publish = (n) => t.page.evaluate(([r, k]) =>
    fetch(`/api/publish?room=${encodeURIComponent(r)}&n=${k}`, { method: "POST" }).then((x) => x.status), [room, n]);
  // The subscription is answered before the first publish.
  await new Promise((r) => setTimeout(r, 200));
  check((await publish(3)) === 200, "publish failed");
  await waitFor(t.page, "demo.received.length >= 3");
  // Cut the connection; publish while the client is away.
  await t.page.evaluate(() => window.__sockets.at(-1).close());
  await waitFor(t.page, "demo.statuses.some((s) => s.status === 'closed')");
  check((await publish(3)) === 200, "publish failed");
  await waitFor(t.page, "demo.received.length >= 6", 5000);
  await new Promise((r) => setTimeout(r, 300));
  const received = await t.page.evaluate(() => demo.received);
  const statuses = await t.page.evaluate(() => demo.statuses.map((s) => s.status));
  const sockets = await t.page.evaluate(() => window.__sockets.length);
  const offsets = received.map((e) => e.offset);
  check(JSON.stringify(offsets) === JSON.stringify([1, 2, 3, 4, 5, 6]), `offsets ${offsets}`);
  check(new Set(received.map((e) => e.id)).size === 6, "an event arrived twice");
  check(sockets === 2, `sockets opened: ${sockets}`);
  await context.close();
  return { offsets, statuses };
}

// ---- Shared mode: one WebSocket per browser ----

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const post = (page, path) => page.evaluate((p) => fetch(p, { method: "POST" }).then((r) => r.json()), path);
const connections = (page, user) =>
  page.evaluate((u) => fetch(`/api/connections?user=${encodeURIComponent(u)}`).then((r) => r.json()), user);

/** `count` tabs of one browser, signed in as one user, each on the shared client. */
async function sharedTabs(context, count, query, user, opts = {}) {
  const tabs = [];
  for (let i = 0; i < count; i++) tabs.push(await tab(context, query));
  const login = await tabs[0].page.evaluate((u) => demo.login(u), user);
  for (const t of tabs) {
    if (opts.device) {
      await t.page.evaluate(([tok, s]) => demo.watchDevice(tok, s), [login.token, login.session_id]);
    } else {
      await t.page.evaluate((tok) => demo.shared(tok), login.token);
    }
  }
  return { tabs, login };
}

/** The tab holding the connection, by the demo's record. */
async function holderOf(tabs) {
  for (const t of tabs) {
    if (await t.page.evaluate(() => demo.client.holding)) return t;
  }
  return null;
}

/** Every tab's events of `room`: exactly offsets 1..n, each once, in order. */
async function checkOnce(tabs, room, n) {
  const want = JSON.stringify(Array.from({ length: n }, (_, i) => i + 1));
  for (const t of tabs) {
    await waitFor(t.page, `(demo.rooms[${JSON.stringify(room)}] ?? []).length >= ${n}`, 10000);
  }
  await sleep(300);
  for (const [i, t] of tabs.entries()) {
    const got = await t.page.evaluate((r) => demo.rooms[r], room);
    const offsets = JSON.stringify(got.map((e) => e.offset));
    check(offsets === want, `tab ${i} got offsets ${offsets}, want 1..${n}`);
    check(new Set(got.map((e) => e.id)).size === n, `tab ${i} got an event twice`);
  }
}

/** Three (or `count`) tabs: one connection on the server; each tab gets every event once. */
async function sharedConnections(query, count = 3) {
  const context = await browser.newContext();
  const user = `shared-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
  const room = `payment:${user}`;
  const { tabs } = await sharedTabs(context, count, query, user);
  for (const t of tabs) await t.page.evaluate((r) => demo.join(r), room);
  await sleep(300);
  const conns = await connections(tabs[0].page, user);
  const holders = [];
  for (const t of tabs) holders.push(await t.page.evaluate(() => demo.client.holding));
  check(holders.filter(Boolean).length === 1, `holding tabs: ${holders}`);
  await post(tabs[0].page, `/api/publish?room=${encodeURIComponent(room)}&n=20`);
  await checkOnce(tabs, room, 20);
  const shown = await tabs[0].page.evaluate(() => document.getElementById("holder").textContent);
  check(shown !== "none yet", "the page does not show the holder");
  await context.close();
  return { tabs: count, connections: conns.count, locks: tabs[0].info.locks };
}

/** Baseline: `count` tabs each with a connection of its own. */
async function ownConnections(count) {
  const context = await browser.newContext();
  const user = `own-${Date.now()}`;
  const tabs = [];
  for (let i = 0; i < count; i++) tabs.push(await tab(context));
  const login = await tabs[0].page.evaluate((u) => demo.login(u), user);
  for (const t of tabs) await t.page.evaluate((tok) => demo.realtime(tok, "payment:own"), login.token);
  await sleep(300);
  const conns = await connections(tabs[0].page, user);
  await context.close();
  return { tabs: count, connections: conns.count };
}

/** The holder goes away while 50 events/s flow (`how`: "close", or "crash" its renderer); another
 *  tab holds within 1 s, and every remaining tab has every event once, in order. */
async function handover(query, how = "close") {
  const context = await browser.newContext();
  const user = `handover-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
  const room = `payment:${user}`;
  const { tabs } = await sharedTabs(context, 3, query, user);
  for (const t of tabs) await t.page.evaluate((r) => demo.join(r), room);
  await sleep(300);
  const n = 150;
  await post(tabs[0].page, `/api/stream?room=${encodeURIComponent(room)}&n=${n}&rate=50`);
  await sleep(1000);
  const old = await holderOf(tabs);
  check(old, "no tab holds the connection");
  const oldId = await old.page.evaluate(() => demo.selfId);
  const rest = tabs.filter((t) => t !== old);
  const closedAt = await rest[0].page.evaluate(() => performance.timeOrigin + performance.now());
  if (how === "close") {
    await old.page.close();
  } else {
    const cdp = await context.newCDPSession(old.page);
    cdp.send("Page.crash").catch(() => {});
  }
  // Another tab holds the connection, and events flow through it.
  try {
    await waitFor(rest[0].page, `demo.holder && demo.holder !== ${JSON.stringify(oldId)}`, 5000);
  } catch (e) {
    const seen = await rest[0].page.evaluate(() => JSON.stringify({ holder: demo.holder, statuses: demo.statuses }));
    throw new Error(`no new holder after ${how} (old ${oldId}): ${seen}`);
  }
  const newId = await rest[0].page.evaluate(() => demo.holder);
  const holderAt = await rest[0].page.evaluate((id) => demo.statuses.find((s) => s.status === "holder" && s.tabId === id).at, newId);
  await waitFor(rest[0].page, `demo.rooms[${JSON.stringify(room)}].some((e) => e.holder === ${JSON.stringify(newId)})`, 5000);
  const firstAt = await rest[0].page.evaluate(([r, id]) => demo.rooms[r].find((e) => e.holder === id).at, [room, newId]);
  await checkOnce(rest, room, n);
  const conns = await connections(rest[0].page, user);
  await context.close();
  return {
    locks: tabs[0].info.locks,
    how,
    holder_ms: holderAt - closedAt,
    gap_ms: firstAt - closedAt,
    connections: conns.count,
    events: n,
  };
}

/** A tab joining late replays the room from a position; a tab leaving stops getting it. */
async function lateJoin(query) {
  const context = await browser.newContext();
  const user = `late-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
  const room = `payment:${user}`;
  const { tabs, login } = await sharedTabs(context, 2, query, user);
  const [a, b] = tabs;
  await a.page.evaluate((r) => demo.join(r), room);
  await b.page.evaluate((r) => demo.join(r), room);
  await sleep(300);
  await post(a.page, `/api/publish?room=${encodeURIComponent(room)}&n=5`);
  await waitFor(a.page, `demo.rooms[${JSON.stringify(room)}].length >= 5`);
  const epoch = await a.page.evaluate((r) => demo.rooms[r][0].epoch, room);
  // C opens later and asks for the room's history from its start.
  const c = await tab(context, query);
  await c.page.evaluate((tok) => demo.shared(tok), login.token);
  await c.page.evaluate(([r, e]) => demo.join(r, { epoch: e, offset: 0 }), [room, epoch]);
  await waitFor(c.page, `(demo.rooms[${JSON.stringify(room)}] ?? []).length >= 5`, 5000);
  // B leaves; A and C keep the room.
  await b.page.evaluate((r) => demo.leave(r), room);
  await sleep(300);
  await post(a.page, `/api/publish?room=${encodeURIComponent(room)}&n=3`);
  await checkOnce([a, c], room, 8);
  await sleep(300);
  const bGot = await b.page.evaluate((r) => demo.rooms[r].length, room);
  check(bGot === 5, `the tab that left got ${bGot} events, want 5`);
  // The replay did not reach A or B twice.
  const aGot = await a.page.evaluate((r) => demo.rooms[r].length, room);
  check(aGot === 8, `A got ${aGot} events, want 8`);
  const conns = await connections(a.page, user);
  check(conns.count === 1, `connections ${conns.count}`);
  await context.close();
  return { late_tab_history: 5, left_tab_events: bGot };
}

/** The token set in any tab is the one the next holder connects with. */
async function sharedToken(query) {
  const context = await browser.newContext();
  const user = `token-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
  const room = `payment:${user}`;
  const { tabs } = await sharedTabs(context, 3, query, user);
  for (const t of tabs) await t.page.evaluate((r) => demo.join(r), room);
  await sleep(300);
  const old = await holderOf(tabs);
  const rest = tabs.filter((t) => t !== old);
  // A refresh in a tab that does not hold the connection: a new session's token.
  const fresh = await rest[1].page.evaluate((u) => demo.login(u), user);
  await rest[1].page.evaluate((tok) => demo.client.setToken(tok), fresh.token);
  await sleep(200);
  const oldId = await old.page.evaluate(() => demo.selfId);
  await old.page.close();
  await waitFor(rest[0].page, `demo.holder && demo.holder !== ${JSON.stringify(oldId)} && demo.client.connected`, 5000);
  await sleep(300);
  const conns = await connections(rest[0].page, user);
  check(conns.count === 1, `connections ${conns.count}`);
  check(conns.sessions[0] === fresh.session_id, `the new holder connected with session ${conns.sessions[0]}, want the refreshed ${fresh.session_id}`);
  await post(rest[0].page, `/api/publish?room=${encodeURIComponent(room)}&n=3`);
  await checkOnce(rest, room, 3);
  await context.close();
  return { session: conns.sessions[0] };
}

/** Revoking the device signs out every tab, before and (second device) after a hand-over. */
async function sharedRevoke(query) {
  const revoker = await browser.newContext();
  const a = await tab(revoker, query);
  const user = `revoke-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
  const la = await a.page.evaluate((u) => demo.login(u), user);
  const result = {};
  for (const afterHandover of [false, true]) {
    const device = await browser.newContext();
    const { tabs, login } = await sharedTabs(device, 3, query, user, { device: true });
    await sleep(300);
    let live = tabs;
    if (afterHandover) {
      const old = await holderOf(tabs);
      const oldId = await old.page.evaluate(() => demo.selfId);
      live = tabs.filter((t) => t !== old);
      await old.page.close();
      await waitFor(live[0].page, `demo.holder && demo.holder !== ${JSON.stringify(oldId)} && demo.client.connected`, 5000);
      await sleep(300);
    }
    const conns = await connections(a.page, user);
    const deviceId = await live[0].page.evaluate(() => demo.deviceId());
    const revoked = await a.page.evaluate(([t, d]) => demo.revoke(t, d), [la.token, deviceId]);
    check(revoked.status === 200, `revoke answered ${revoked.status}`);
    for (const t of live) await waitFor(t.page, "demo.logouts.length >= 1", 3000);
    const ats = [];
    for (const t of live) {
      const l = await t.page.evaluate(() => demo.logouts);
      check(l[0].reason === "revoked", `reason ${l[0].reason}`);
      ats.push(l[0].at);
    }
    await sleep(300);
    for (const t of live) {
      const n = await t.page.evaluate(() => demo.logouts.length);
      check(n === 1, `a tab logged out ${n} times`);
    }
    result[afterHandover ? "after_handover_ms" : "before_handover_ms"] = Math.max(...ats) - revoked.at;
    result[afterHandover ? "after_connections" : "before_connections"] = conns.count;
    await device.close();
  }
  await revoker.close();
  return result;
}

/** `runs` hand-overs: the median time from closing the holder to the first event through the next. */
async function handoverMedian() {
  const gaps = [];
  for (let i = 0; i < runs; i++) gaps.push((await handover("")).gap_ms);
  return { runs, median_ms: median(gaps), max_ms: Math.max(...gaps) };
}

/** Baseline: a tab on its own connection loses it while 50 events/s flow; the time from the drop to
 *  the first event through its new connection (the demo's client: reconnect backoff 300–600 ms). */
async function reconnectMedian() {
  const context = await browser.newContext();
  const t = await tab(context, "?spy=1");
  const user = `rc-${Date.now()}`;
  const login = await t.page.evaluate((u) => demo.login(u), user);
  const room = `payment:${user}`;
  await t.page.evaluate(([tok, r]) => demo.realtime(tok, r), [login.token, room]);
  await sleep(200);
  const gaps = [];
  for (let i = 0; i < runs; i++) {
    await post(t.page, `/api/stream?room=${encodeURIComponent(room)}&n=100&rate=50`);
    await sleep(500);
    // From the drop to the first event that arrives after the client reports "open" again
    // (events already buffered from the old socket do not count).
    const gap = await t.page.evaluate(() => new Promise((resolve) => {
      const cut = performance.timeOrigin + performance.now();
      const opens = demo.statuses.filter((s) => s.status === "open").length;
      window.__sockets.at(-1).close();
      let seen = -1;
      const poll = () => {
        if (seen < 0 && demo.statuses.filter((s) => s.status === "open").length > opens) seen = demo.received.length;
        if (seen >= 0 && demo.received.length > seen) resolve(performance.timeOrigin + performance.now() - cut);
        else setTimeout(poll, 1);
      };
      poll();
    }));
    gaps.push(gap);
    await sleep(2000);
  }
  await context.close();
  return { runs, median_ms: median(gaps), max_ms: Math.max(...gaps) };
}

try {
  let result;
  switch (scenario) {
    case "logout": result = await logoutLatency(""); break;
    case "logout-local-storage": result = await logoutLatency("?nobc=1"); break;
    case "raw-channel": result = await rawChannelLatency(); break;
    case "refresh": result = await refreshOnce(""); break;
    case "refresh-lease": result = await refreshOnce("?nobc=1&nolocks=1"); break;
    case "garbage": result = await garbage(); break;
    case "holder-dies": result = await holderDies(""); break;
    case "holder-dies-lease": result = await holderDies("?nobc=1&nolocks=1"); break;
    case "revoke": result = await revokeDevice(); break;
    case "reconnect": result = await reconnect(); break;
    case "shared": result = await sharedConnections(""); break;
    case "shared-lease": result = await sharedConnections("?nolocks=1"); break;
    case "shared-5": result = await sharedConnections("", 5); break;
    case "own-5": result = await ownConnections(5); break;
    case "handover": result = await handover(""); break;
    case "handover-lease": result = await handover("?nolocks=1"); break;
    case "handover-crash": result = await handover("", "crash"); break;
    case "handover-median": result = await handoverMedian(); break;
    case "reconnect-median": result = await reconnectMedian(); break;
    case "late-join": result = await lateJoin(""); break;
    case "late-join-lease": result = await lateJoin("?nolocks=1"); break;
    case "shared-token": result = await sharedToken(""); break;
    case "shared-revoke": result = await sharedRevoke(""); break;
    case "shared-revoke-lease": result = await sharedRevoke("?nolocks=1"); break;
    default: throw new Error(`unknown scenario ${scenario}`);
  }
  console.log(`result: ${JSON.stringify(result)}`);
  await browser.close();
} catch (e) {
  console.error(`FAILED ${scenario}: ${e.stack ?? e}`);
  await browser.close();
  process.exit(1);
}
