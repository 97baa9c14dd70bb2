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
    default: throw new Error(`unknown scenario ${scenario}`);
  }
  console.log(`result: ${JSON.stringify(result)}`);
  await browser.close();
} catch (e) {
  console.error(`FAILED ${scenario}: ${e.stack ?? e}`);
  await browser.close();
  process.exit(1);
}
