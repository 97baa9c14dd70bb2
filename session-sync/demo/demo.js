// The demo page of @tidewell/session-sync, also the page the end-to-end tests drive.
// Query flags (for the tests): ?nobc=1 removes BroadcastChannel before the package loads;
// ?nolocks=1 removes the Web Locks API; ?channel=<name> picks the channel.
import init, {
  SessionSync, DeviceSessionSync, RealtimeClient, getDeviceId, getDeviceName, getDeviceType,
} from "./pkg/tidewell_session_sync.js";

const params = new URLSearchParams(location.search);
if (params.has("nobc")) delete window.BroadcastChannel;
if (params.has("nolocks")) delete Navigator.prototype.locks;
if (params.has("spy")) {
  // Keeps every WebSocket the package opens, so a test can cut one as a network drop would.
  const Native = window.WebSocket;
  window.__sockets = [];
  window.WebSocket = function WebSocket(url, protocols) {
    const ws = new Native(url, protocols);
    window.__sockets.push(ws);
    return ws;
  };
  window.WebSocket.prototype = Native.prototype;
  Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
}

const now = () => performance.timeOrigin + performance.now();
const wsUrl = () => `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
const log = (line) => {
  document.getElementById("log").textContent += line + "\n";
};

const demo = {
  logouts: [],
  errors: [],
  tokens: [],
  states: [],
  async load() {
    await init();
    this.sync = new SessionSync(params.get("channel") ?? "demo");
    this.sync.onLogout((e) => {
      this.logouts.push({ at: now(), reason: e.reason, fromTab: e.fromTab });
      log(`logged out (${e.reason ?? "no reason"}) by ${e.fromTab ?? "the server"}`);
    });
    this.sync.onError((e) => {
      this.errors.push(e);
      log(`ignored: ${e.code}: ${e.message}`);
    });
    this.sync.onTokenRefresh((t, from) => {
      this.tokens.push(t);
      log(`tokens from ${from}: ${JSON.stringify(t)}`);
    });
    this.sync.onAuthState((s) => this.states.push(s));
    document.getElementById("tab").textContent = this.sync.tabId;
    document.getElementById("transport").textContent = this.sync.transport;
    document.getElementById("device").textContent =
      `${getDeviceName()} (${getDeviceType()}) ${getDeviceId()}`;
    return { tabId: this.sync.tabId, transport: this.sync.transport, locks: "locks" in navigator };
  },
  logout() {
    const at = now();
    this.sync.broadcastLogout("user");
    return at;
  },
  refresh(delayMs, timeoutMs) {
    const url = delayMs === undefined ? "/api/refresh" : `/api/refresh?delay=${delayMs}`;
    return this.sync.refreshOnce(() =>
      fetch(url, { method: "POST" }).then((r) => {
        if (!r.ok) throw new Error(`refresh: HTTP ${r.status}`);
        return r.json();
      }), timeoutMs === undefined ? undefined : { timeoutMs });
  },
  deviceId() {
    return getDeviceId();
  },
  async login(user) {
    const device = getDeviceId();
    const r = await fetch(`/api/login?user=${encodeURIComponent(user)}&device=${device}`
      + `&name=${encodeURIComponent(getDeviceName())}&type=${getDeviceType()}`, { method: "POST" });
    if (!r.ok) throw new Error(`login: HTTP ${r.status}`);
    return { device, ...(await r.json()) };
  },
  watchDevice(token, sessionId) {
    // Shared by default: one WebSocket for every tab of this browser.
    this.devices = new DeviceSessionSync(this.sync, wsUrl(), token, sessionId);
    this.client = this.devices.client;
    this.watch(this.client);
    return new Promise((resolve) => {
      this.client.onStatus((s) => { if (s.status === "open") resolve(true); });
      if (this.client.connected) resolve(true);
    });
  },
  /** A shared realtime client (no device watch); `?nolocks=1` makes it elect with the lease. */
  shared(token) {
    this.client = new RealtimeClient(wsUrl(), token, { shared: true, channel: params.get("channel") ?? "demo" });
    this.watch(this.client);
    return new Promise((resolve) => {
      this.client.onStatus((s) => { if (s.status === "open") resolve(true); });
      if (this.client.connected) resolve(true);
    });
  },
  /** Records the client's statuses and which tab holds the connection (shown on the page). */
  watch(client) {
    this.statuses = [];
    this.holder = null;
    this.rooms = {};
    client.onStatus((s) => {
      this.statuses.push({ ...s, at: now() });
      if (s.status === "holder") {
        this.holder = s.tabId;
        if (s.self) this.selfId = s.tabId;
        document.getElementById("holder").textContent = s.self ? "this tab" : `tab ${s.tabId}`;
      }
    });
  },
  /** Joins `room` (with `since`, a position to replay from); events land in demo.rooms[room]. */
  join(room, since) {
    const got = (this.rooms[room] ??= []);
    this.leaves ??= {};
    this.leaves[room] = this.client.subscribe(room, (e) => {
      got.push({ offset: e.offset, epoch: e.epoch, id: e.event.id, at: now(), holder: this.holder });
    }, since ? { since } : undefined);
    return true;
  },
  leave(room) {
    this.leaves?.[room]?.();
    return true;
  },
  realtime(token, room) {
    const ws = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
    this.received = [];
    this.statuses = [];
    this.rt = new RealtimeClient(ws, token, { minBackoffMs: 300, maxBackoffMs: 600 });
    this.rt.onStatus((s) => this.statuses.push(s));
    this.rt.subscribe(room, (e) => this.received.push({ offset: e.offset, id: e.event.id }));
    return new Promise((resolve) => {
      this.rt.onStatus((s) => { if (s.status === "open") resolve(true); });
    });
  },
  async revoke(token, device) {
    const r = await fetch(`/api/devices/${device}/revoke`, {
      method: "POST", headers: { authorization: `Bearer ${token}` },
    });
    return { status: r.status, at: now() };
  },
};
window.demo = demo;
window.demoReady = demo.load();

document.getElementById("logout").onclick = () => demo.logout();
document.getElementById("refresh").onclick = async () => {
  try { log(`refreshed: ${JSON.stringify(await demo.refresh())}`); } catch (e) { log(String(e)); }
};
