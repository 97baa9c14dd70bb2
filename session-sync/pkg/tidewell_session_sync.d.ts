/* tslint:disable */
/* eslint-disable */

/** Calling it removes the handler it was returned for; calling it again does nothing. */
export type Unsubscribe = () => void;
/** How the tabs of one browser talk. */
export type Transport = "broadcast-channel" | "local-storage";
/** The kind of device, from its user agent. */
export type DeviceType = "desktop" | "mobile" | "tablet" | "unknown";
/** Options of `new SessionSync(channel, options)`. */
export interface SessionSyncOptions {
    /** `"auto"` (default): BroadcastChannel where the browser has it, else localStorage events. */
    transport?: "auto" | Transport;
}
/** A logout seen by this tab. */
export interface LogoutEvent {
    /** Why, as the sender put it: `"user"`, `"revoked"`, ... */
    reason: string | null;
    /** The tab that logged out; `null` when this tab learned it from the server (device revoked). */
    fromTab: string | null;
}
/** A message that was ignored, or a handler that threw: never thrown into the page. */
export interface SessionSyncError {
    /** `"malformed"`: not a message of this package; `"version"`: another package version;
     *  `"handler"`: one of your handlers threw; `"refresh"`: a background refresh step failed. */
    code: "malformed" | "version" | "handler" | "refresh";
    /** What happened, for a log. */
    message: string;
}
/** Options of `refreshOnce`. */
export interface RefreshOptions {
    /** How long the refresh function may take before it counts as failed and the lock is
     *  released (default 10000 ms). A tab that dies holding the lock releases it at once (Web
     *  Locks) or after this bound plus one second (localStorage lease). */
    timeoutMs?: number;
}
export interface SessionSync {
    /**
     * Runs `refresh` in exactly one tab at a time across the browser: the first caller refreshes
     * and broadcasts the result; tabs that called meanwhile get the same result without calling
     * `refresh`. Rejects when `refresh` rejects or times out (other waiting tabs then try).
     * The result must be JSON-serialisable.
     */
    refreshOnce<T>(refresh: () => Promise<T>, options?: RefreshOptions): Promise<T>;
}
/** Options of `new RealtimeClient(url, token, options)`. */
export interface RealtimeOptions {
    /** First reconnect delay bound (default 250 ms); it doubles up to `maxBackoffMs`, with full jitter. */
    minBackoffMs?: number;
    /** Longest reconnect delay (default 15000 ms). */
    maxBackoffMs?: number;
    /** Rooms kept while offline (subscribed again on reconnect); past it `subscribe` throws. Default 256. */
    maxRooms?: number;
    /** One WebSocket for every tab of this browser with the same origin, `channel` and URL: one
     *  tab holds it, the others use it through the cross-tab channel, another takes it over when
     *  the holder closes. Default false (true for `DeviceSessionSync`). */
    shared?: boolean;
    /** The tabs that share a connection (default `"default"`; `DeviceSessionSync`: its
     *  `SessionSync`'s channel). */
    channel?: string;
}
/** Options of `RealtimeClient.subscribe`. */
export interface SubscribeOptions {
    /** A position from an earlier event (`{ epoch, offset }` of a `RealtimeEvent`): when this tab
     *  joins the room, the server replays what followed it (or reports a `gap`). */
    since?: { epoch: string; offset: number };
}
/** One event from the server. */
export interface RealtimeEvent {
    room: string;
    /** The room's history epoch (with `offset`, a position to pass as `since`). */
    epoch: string;
    offset: number;
    /** The Tidewell event envelope: `{ id, type, version, source, time, payload, ... }`. */
    event: { id: string; type: string; payload: unknown; [field: string]: unknown };
}
/** The connection's state changes. */
export type RealtimeStatus =
| { status: "connecting"; attempt: number }
| { status: "open"; connectionId: string }
| { status: "closed"; code: number; reason: string; retryInMs: number }
| { status: "gap"; room: string }
/** Shared mode: `tabId` holds the connection now (`self`: this tab). */
| { status: "holder"; tabId: string; self: boolean }
| { status: "error"; code: string; message: string }
| { status: "stopped"; code: number; reason: string };



/**
 * Listens on the server's WebSocket for `auth.session.revoked` naming this device's session
 * (the server puts it in the room `device:<id>` this connection joins by itself), and for the
 * close code 4001; either one runs `onLogout` in this tab with reason `"revoked"` and tells
 * every other tab, once per revocation.
 *
 * ```js
 * const sync = new SessionSync("my-app");
 * const devices = new DeviceSessionSync(sync, "wss://example.com/ws", accessToken, sessionId);
 * sync.onLogout(({ reason }) => location.assign(reason === "revoked" ? "/login?revoked" : "/login"));
 * ```
 */
export class DeviceSessionSync {
    free(): void;
    [Symbol.dispose](): void;
    /**
     * Closes the connection.
     */
    close(): void;
    /**
     * Connects to `url` with `token`, watching for the revocation of `sessionId` (the `sid` of
     * the token).
     */
    constructor(sync: SessionSync, url: string, token: string, sessionId: string, options?: RealtimeOptions | null);
    /**
     * The underlying realtime client (to subscribe to other rooms on the same connection).
     */
    readonly client: RealtimeClient;
}

/**
 * A WebSocket client of a Tidewell server.
 *
 * ```js
 * const rt = new RealtimeClient("wss://example.com/ws", accessToken, { shared: true });
 * rt.onStatus((s) => console.log(s.status));
 * const off = rt.subscribe("payment:42", ({ event }) => render(event.payload));
 * ```
 *
 * Rooms subscribed while offline are kept (up to `maxRooms`) and subscribed on the next
 * connection; every room is subscribed again after a reconnect with the last position seen, so
 * the server replays what was missed (or reports a `gap`). The client stops for good, without
 * reconnecting, when the server closes with 4001 (session revoked) or 4002 (protocol version).
 *
 * With `shared: true` the tabs of the browser (same origin, `channel` and URL) share one
 * WebSocket: one tab holds it, the others subscribe and receive through it, and another takes it
 * over when the holder closes; each tab's API works as with its own connection.
 */
export class RealtimeClient {
    free(): void;
    [Symbol.dispose](): void;
    /**
     * Closes this tab's client for good; in the shared mode the other tabs carry on (one of
     * them takes the connection over if this tab held it).
     */
    close(): void;
    /**
     * Connects to `url` (`wss://host/ws`) with `token` (a JWT, sent as the WebSocket protocol
     * `bearer.<token>` beside `tidewell.v1`: browsers cannot set headers).
     */
    constructor(url: string, token: string, options?: RealtimeOptions | null);
    /**
     * Calls `handler` with every event of every room, including the rooms the server joins by
     * itself (`user:<id>`, `device:<id>`, `broadcast`, ...).
     */
    onEvent(handler: (event: RealtimeEvent) => void): Unsubscribe;
    /**
     * Calls `handler` on each change of the connection's state.
     */
    onStatus(handler: (status: RealtimeStatus) => void): Unsubscribe;
    /**
     * The token for the next connection (the current one keeps its own). In the shared mode
     * every tab learns it, so the tab holding the connection next uses the newest token.
     */
    setToken(token: string): void;
    /**
     * Joins `room` (now, or on the next connection when offline) and calls `handler` with
     * each of its events. The returned function removes the handler, and leaves the room when
     * it was the last one. `options.since` (a position from an earlier event) replays what
     * followed it when this tab joins the room.
     */
    subscribe(room: string, handler: (event: RealtimeEvent) => void, options?: SubscribeOptions | null): Unsubscribe;
    /**
     * Whether the connection (this tab's, or the holder's in the shared mode) is open.
     */
    readonly connected: boolean;
    /**
     * Whether this tab holds the WebSocket (always true without the shared mode).
     */
    readonly holding: boolean;
}

/**
 * Cross-tab session sync on one channel.
 *
 * ```js
 * const sync = new SessionSync("my-app");
 * const off = sync.onLogout(({ reason }) => location.assign("/login"));
 * sync.onError((e) => console.warn("session-sync:", e.code, e.message));
 * sync.broadcastLogout("user");        // every other tab's onLogout runs; this tab's does not
 * const tokens = await sync.refreshOnce(() => fetch("/api/auth/refresh", { method: "POST" }).then((r) => r.json()));
 * ```
 */
export class SessionSync {
    free(): void;
    [Symbol.dispose](): void;
    /**
     * Sends `state` (JSON-serialisable, at most 64 KiB as JSON) to every other tab's
     * `onAuthState`.
     */
    broadcastAuthState(state: unknown): void;
    /**
     * Tells every other tab the user logged out; their `onLogout` handlers run, this tab's do not.
     */
    broadcastLogout(reason?: string | null): void;
    /**
     * Sends `tokens` (JSON-serialisable) to every other tab's `onTokenRefresh`; a tab waiting
     * in `refreshOnce` takes them as its result.
     */
    broadcastTokenRefresh(tokens: unknown): void;
    /**
     * Stops listening and drops every handler; later broadcasts throw.
     */
    destroy(): void;
    /**
     * Joins channel `channel` (default `"default"`): tabs of the same origin on the same
     * channel see each other's messages. Throws when the options are invalid or the browser
     * has neither `BroadcastChannel` nor `localStorage`.
     */
    constructor(channel?: string | null, options?: SessionSyncOptions | null);
    /**
     * Calls `handler` with the state another tab broadcast.
     */
    onAuthState(handler: (state: unknown, fromTab: string) => void): Unsubscribe;
    /**
     * Calls `handler` for each message ignored (malformed, another version) and each error a
     * handler threw. Without an `onError` handler they go to `console.warn`.
     */
    onError(handler: (error: SessionSyncError) => void): Unsubscribe;
    /**
     * Calls `handler` when another tab logs out (or this device is revoked).
     */
    onLogout(handler: (event: LogoutEvent) => void): Unsubscribe;
    /**
     * Calls `handler` with the tokens another tab refreshed.
     */
    onTokenRefresh(handler: (tokens: unknown, fromTab: string) => void): Unsubscribe;
    /**
     * The channel name.
     */
    readonly channel: string;
    /**
     * This tab's id (random per page load).
     */
    readonly tabId: string;
    /**
     * The transport in use.
     */
    readonly transport: Transport;
}

/**
 * Forgets the device id (for example on "forget this device"); the next `getDeviceId` makes a
 * new one.
 */
export function clearDeviceId(): void;

/**
 * This browser's device id: a UUID v4 made on first use and kept in `localStorage`; where
 * storage is unavailable (some private modes), an id kept in memory for this page.
 */
export function getDeviceId(): string;

/**
 * A readable name for this device, e.g. `"Chrome on Windows"`.
 */
export function getDeviceName(): string;

/**
 * The kind of this device from its user agent.
 */
export function getDeviceType(): DeviceType;

export type InitInput = RequestInfo | URL | Response | BufferSource | WebAssembly.Module;

export interface InitOutput {
    readonly memory: WebAssembly.Memory;
    readonly __wbg_devicesessionsync_free: (a: number, b: number) => void;
    readonly __wbg_realtimeclient_free: (a: number, b: number) => void;
    readonly __wbg_sessionsync_free: (a: number, b: number) => void;
    readonly clearDeviceId: () => void;
    readonly devicesessionsync_client: (a: number) => number;
    readonly devicesessionsync_close: (a: number) => void;
    readonly devicesessionsync_new: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number) => [number, number, number];
    readonly getDeviceId: () => [number, number];
    readonly getDeviceName: () => [number, number];
    readonly getDeviceType: () => [number, number];
    readonly realtimeclient_close: (a: number) => void;
    readonly realtimeclient_connected: (a: number) => number;
    readonly realtimeclient_holding: (a: number) => number;
    readonly realtimeclient_new: (a: number, b: number, c: number, d: number, e: number) => [number, number, number];
    readonly realtimeclient_onEvent: (a: number, b: any) => any;
    readonly realtimeclient_onStatus: (a: number, b: any) => any;
    readonly realtimeclient_setToken: (a: number, b: number, c: number) => void;
    readonly realtimeclient_subscribe: (a: number, b: number, c: number, d: any, e: number) => [number, number, number];
    readonly sessionsync_broadcastAuthState: (a: number, b: any) => [number, number];
    readonly sessionsync_broadcastLogout: (a: number, b: number, c: number) => [number, number];
    readonly sessionsync_broadcastTokenRefresh: (a: number, b: any) => [number, number];
    readonly sessionsync_channel: (a: number) => [number, number];
    readonly sessionsync_destroy: (a: number) => void;
    readonly sessionsync_new: (a: number, b: number, c: number) => [number, number, number];
    readonly sessionsync_onAuthState: (a: number, b: any) => any;
    readonly sessionsync_onError: (a: number, b: any) => any;
    readonly sessionsync_onLogout: (a: number, b: any) => any;
    readonly sessionsync_onTokenRefresh: (a: number, b: any) => any;
    readonly sessionsync_refreshOnce: (a: number, b: any, c: any) => any;
    readonly sessionsync_tabId: (a: number) => [number, number];
    readonly sessionsync_transport: (a: number) => [number, number];
    readonly wasm_bindgen__convert__closures_____invoke__h60702a48838d1764: (a: number, b: number, c: any) => [number, number];
    readonly wasm_bindgen__convert__closures_____invoke__hb98d63cc49481475: (a: number, b: number, c: any, d: any) => void;
    readonly wasm_bindgen__convert__closures_____invoke__h91ab7f2d6bb2cca8: (a: number, b: number, c: any) => any;
    readonly wasm_bindgen__convert__closures_____invoke__h04c2595aa0261d73: (a: number, b: number, c: any) => void;
    readonly wasm_bindgen__convert__closures_____invoke__h6a1554a2058dd2e2: (a: number, b: number, c: any) => void;
    readonly wasm_bindgen__convert__closures_____invoke__h6a1554a2058dd2e2_33: (a: number, b: number, c: any) => void;
    readonly wasm_bindgen__convert__closures_____invoke__h6a1554a2058dd2e2_34: (a: number, b: number, c: any) => void;
    readonly wasm_bindgen__convert__closures_____invoke__h125ca1d5e17c432e: (a: number, b: number) => void;
    readonly __wbindgen_malloc: (a: number, b: number) => number;
    readonly __wbindgen_realloc: (a: number, b: number, c: number, d: number) => number;
    readonly __wbindgen_free: (a: number, b: number, c: number) => void;
    readonly __wbindgen_exn_store: (a: number) => void;
    readonly __externref_table_alloc: () => number;
    readonly __wbindgen_externrefs: WebAssembly.Table;
    readonly __wbindgen_destroy_closure: (a: number, b: number) => void;
    readonly __externref_table_dealloc: (a: number) => void;
    readonly __wbindgen_start: () => void;
}

export type SyncInitInput = BufferSource | WebAssembly.Module;

/**
 * Instantiates the given `module`, which can either be bytes or
 * a precompiled `WebAssembly.Module`.
 *
 * @param {{ module: SyncInitInput }} module - Passing `SyncInitInput` directly is deprecated.
 *
 * @returns {InitOutput}
 */
export function initSync(module: { module: SyncInitInput } | SyncInitInput): InitOutput;

/**
 * If `module_or_path` is {RequestInfo} or {URL}, makes a request and
 * for everything else, calls `WebAssembly.instantiate` directly.
 *
 * @param {{ module_or_path: InitInput | Promise<InitInput> }} module_or_path - Passing `InitInput` directly is deprecated.
 *
 * @returns {Promise<InitOutput>}
 */
export default function __wbg_init (module_or_path?: { module_or_path: InitInput | Promise<InitInput> } | InitInput | Promise<InitInput>): Promise<InitOutput>;
