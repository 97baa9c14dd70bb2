// Compiled by `tsc --noEmit` in tests/e2e.rs: the generated .d.ts must carry real types. Each
// `@ts-expect-error` line must fail to type-check; if the types were `any`, tsc would report the
// directive as unused and the test fails.
import init, {
  SessionSync, RealtimeClient, DeviceSessionSync, getDeviceId, getDeviceType,
  type LogoutEvent, type SessionSyncError, type Transport, type Unsubscribe, type DeviceType,
  type RealtimeEvent, type RealtimeStatus,
} from "../../pkg/tidewell_session_sync.js";

export async function typed(): Promise<void> {
  await init();
  const sync = new SessionSync("app", { transport: "auto" });
  const fallback = new SessionSync();
  const t: Transport = sync.transport;
  const off: Unsubscribe = sync.onLogout((e: LogoutEvent) => {
    const reason: string | null = e.reason;
    const from: string | null = e.fromTab;
    void reason; void from;
  });
  off();
  sync.onError((e: SessionSyncError) => {
    const code: "malformed" | "version" | "handler" | "refresh" = e.code;
    void code;
  });
  sync.broadcastLogout("user");
  sync.broadcastLogout();
  const tokens: { access: string } = await sync.refreshOnce(async () => ({ access: "a" }), { timeoutMs: 5000 });
  const id: string = getDeviceId();
  const kind: DeviceType = getDeviceType();
  const rt = new RealtimeClient("wss://example.com/ws", "token", { maxRooms: 10 });
  rt.subscribe("payment:1", (e: RealtimeEvent) => {
    const type: string = e.event.type;
    void type;
  });
  const shared = new RealtimeClient("wss://example.com/ws", "token", { shared: true, channel: "app" });
  shared.subscribe("payment:2", (e: RealtimeEvent) => {
    const at: { epoch: string; offset: number } = { epoch: e.epoch, offset: e.offset };
    void at;
  }, { since: { epoch: "e", offset: 0 } });
  const holding: boolean = shared.holding;
  shared.onStatus((s: RealtimeStatus) => {
    if (s.status === "holder") {
      const mine: boolean = s.self;
      void mine;
    }
  });
  void holding;
  // @ts-expect-error: since is a position, not a number
  shared.subscribe("payment:3", () => {}, { since: 5 });
  rt.onStatus((s: RealtimeStatus) => {
    if (s.status === "closed") {
      const retry: number = s.retryInMs;
      void retry;
    }
  });
  const devices = new DeviceSessionSync(sync, "wss://example.com/ws", "token", "sid");
  devices.close();
  void t; void tokens; void id; void kind; void fallback;

  // @ts-expect-error: the transport is one of two names
  const wrong: Transport = "carrier-pigeon";
  // @ts-expect-error: a logout handler gets a LogoutEvent, not a number
  sync.onLogout((e: number) => e);
  // @ts-expect-error: refreshOnce takes a function returning a promise
  sync.refreshOnce("not a function");
  // @ts-expect-error: unknown option
  new SessionSync("x", { transports: "auto" });
  // @ts-expect-error: the device type is a closed set
  const k: DeviceType = "toaster";
  void wrong; void k;
}
