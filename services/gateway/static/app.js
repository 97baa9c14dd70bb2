// The gateway's demo page: the session-sync package (/pkg) for cross-tab sync and the live
// connection, the gateway's API for the rest.
import init, { SessionSync, DeviceSessionSync, getDeviceId, getDeviceName } from "/pkg/tidewell_session_sync.js";

const $ = (id) => document.getElementById(id);
const log = (line) => { $("log").textContent = `${new Date().toLocaleTimeString()} ${line}\n` + $("log").textContent; };
const store = {
  get: () => JSON.parse(localStorage.getItem("demo-session") ?? "null"),
  set: (s) => localStorage.setItem("demo-session", JSON.stringify(s)),
  clear: () => localStorage.removeItem("demo-session"),
};

await init();
const sync = new SessionSync("tidewell-demo");
let live = null;
$("tab").textContent = sync.tabId.slice(0, 8);

async function api(path, { method = "GET", body, auth = true } = {}) {
  const headers = { "content-type": "application/json" };
  const s = store.get();
  if (auth && s) headers.authorization = `Bearer ${s.access_token}`;
  let r = await fetch(path, { method, headers, body: body && JSON.stringify(body) });
  if (r.status === 401 && auth && s) {
    // One refresh for every tab, then retry once.
    const fresh = await sync.refreshOnce(async () => {
      const rr = await fetch("/api/auth/refresh", { method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ refresh_token: store.get().refresh_token }) });
      if (!rr.ok) throw new Error("refresh refused");
      const t = await rr.json();
      store.set(t);
      return t;
    }).catch(() => null);
    if (!fresh) { signedOut("session ended"); sync.broadcastLogout("expired"); throw new Error("signed out"); }
    headers.authorization = `Bearer ${fresh.access_token}`;
    r = await fetch(path, { method, headers, body: body && JSON.stringify(body) });
  }
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON: the status says it */ }
  if (!r.ok) {
    // Every gateway error is {"error": {"code", "message", "request_id"}}.
    let message = data?.error?.message ?? `HTTP ${r.status}`;
    const wait = r.headers.get("retry-after");
    if (r.status === 429 && wait) message += ` (try again in ${wait} s)`;
    throw new Error(message);
  }
  return data;
}

function signedOut(why) {
  live?.close();
  live = null;
  store.clear();
  $("app").classList.add("hidden");
  $("signin").classList.remove("hidden");
  log(`signed out: ${why}`);
}

async function signedIn() {
  const s = store.get();
  const me = await api("/api/auth/me");
  $("who").textContent = me.email;
  $("signin").classList.add("hidden");
  $("app").classList.remove("hidden");
  const ws = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  live = new DeviceSessionSync(sync, ws, s.access_token, s.session_id);
  live.client.onStatus((st) => { $("live").textContent = st.status; });
  live.client.onEvent(({ event }) => {
    if (event.type.startsWith("payments.")) { log(`live: ${event.type}`); refreshPayments(); }
  });
  await Promise.all([refreshPayments(), refreshDevices()]);
}

// One request at a time, whatever the number of live events: events that arrive while a
// reload is in flight ask for one more reload after it.
let loading = null, again = false;
function refreshPayments() {
  if (loading) { again = true; return loading; }
  loading = loadPayments().catch((e) => log(e.message)).finally(() => {
    loading = null;
    if (again) { again = false; refreshPayments(); }
  });
  return loading;
}

async function loadPayments() {
  const page = await api("/api/payments?limit=20");
  $("payments").innerHTML = "";
  for (const p of page.items) {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td>${p.amount} ${p.currency}</td><td>${p.status}</td><td></td><td></td>`;
    tr.children[2].textContent = p.description;
    if (p.status === "pending") {
      for (const to of ["completed", "cancelled"]) {
        const b = document.createElement("button");
        b.textContent = to;
        b.onclick = () => api(`/api/payments/${p.id}/status`, { method: "PATCH", body: { status: to } }).catch((e) => log(e.message));
        tr.children[3].append(b);
      }
    }
    tr.dataset.status = p.status;
    $("payments").append(tr);
  }
}

async function refreshDevices() {
  const devices = await api("/api/auth/devices");
  $("devices").innerHTML = "";
  for (const d of devices) {
    const tr = document.createElement("tr");
    tr.innerHTML = "<td></td><td></td>";
    tr.children[0].textContent = `${d.name}${d.current ? " (this device)" : ""}`;
    tr.children[1].textContent = new Date(d.last_active_at_ms).toLocaleString();
    $("devices").append(tr);
  }
}

$("register").onclick = () => api("/api/auth/register", { method: "POST", auth: false,
  body: { email: $("email").value, password: $("password").value, name: $("name").value } })
  .then(() => log("registered; now sign in")).catch((e) => log(e.message));
$("login").onclick = async () => {
  try {
    const t = await api("/api/auth/login", { method: "POST", auth: false,
      body: { email: $("email").value, password: $("password").value, device_id: getDeviceId(), device_name: getDeviceName() } });
    store.set(t);
    sync.broadcastAuthState({ signedIn: true });
    await signedIn();
  } catch (e) { log(e.message); }
};
$("logout").onclick = async () => {
  await api("/api/auth/logout", { method: "POST" }).catch(() => {});
  sync.broadcastLogout("user");
  signedOut("you signed out");
};
$("pay").onclick = () => api("/api/payments", { method: "POST",
  body: { amount: $("amount").value, currency: $("currency").value, description: $("description").value } })
  .catch((e) => log(e.message));
$("others").onclick = () => api("/api/auth/devices/revoke-others", { method: "POST", body: {} })
  .then((r) => { log(`signed out ${r.revoked.length} other device(s)`); return refreshDevices(); }).catch((e) => log(e.message));

sync.onLogout(({ reason }) => signedOut(reason === "revoked" ? "this device was signed out from another one" : "signed out in another tab"));
sync.onAuthState(() => { if (!live && store.get()) signedIn().catch((e) => log(e.message)); });
sync.onError((e) => log(`session-sync: ${e.code}: ${e.message}`));
if (store.get()) signedIn().catch((e) => log(e.message));
// Ready: the buttons work from now on (a click before this point would have done nothing).
for (const id of ["register", "login"]) $(id).disabled = false;
