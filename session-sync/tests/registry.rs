//! The device registry and the revoked-session set: one conformance suite, run on both backends
//! (SQLite in a temporary file, and a fresh database on the real local Postgres).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use tidewell_auth::{Issuer, SigningKey};
use tidewell_event_hub::{HandlerError, Hub, Router, ServiceQueue, Subscription, Topology};
use tidewell_session_sync::Error;
use tidewell_session_sync::device::DeviceType;
use tidewell_session_sync::server::{
    DeviceRegistry, NewDevice, RevokeReason, RevokedSessions, SessionRevoked,
};
use tidewell_testkit::{TestDatabase, unique_name};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 \
                      (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Sqlite,
    Postgres,
}

/// An `auth.session.revoked` as it arrived on the wire: the envelope's type and version, and
/// the payload as JSON.
#[derive(Debug)]
struct Received {
    event_type: String,
    version: u16,
    payload: serde_json::Value,
}

impl Received {
    fn event(&self) -> SessionRevoked {
        serde_json::from_value(self.payload.clone()).unwrap()
    }
}

/// A SQLite file removed (with its WAL files) on drop.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A registry on a fresh database with an in-memory hub; every revocation event published is
/// received on `events` (queue `audit.events`, bound to `auth.#`). Queue `gateway.events` is
/// bound to `auth.session.revoked` for a `RevokedSessions`.
struct Fixture {
    registry: DeviceRegistry,
    hub: Hub,
    url: String,
    events: mpsc::UnboundedReceiver<Received>,
    _db: Option<TestDatabase>,
    _file: Option<TempFile>,
}

impl Fixture {
    async fn new(kind: Kind) -> Self {
        let (url, db, file) = match kind {
            Kind::Sqlite => {
                let path = std::env::temp_dir().join(format!("{}.db", unique_name("registry")));
                (
                    format!("sqlite:{}", path.display()),
                    None,
                    Some(TempFile(path)),
                )
            }
            Kind::Postgres => {
                let db = TestDatabase::create().await;
                (db.url().to_owned(), Some(db), None)
            }
        };
        let hub = Hub::memory(
            "auth",
            Topology::new()
                .service(ServiceQueue::new("gateway").bind("auth.session.revoked"))
                .service(ServiceQueue::new("audit").bind("auth.#")),
        )
        .await
        .unwrap();
        let (tx, events) = mpsc::unbounded_channel();
        hub.subscribe_router(
            Subscription::new("audit.events"),
            Router::new().fallback(move |raw| {
                let sent = tx
                    .send(Received {
                        event_type: raw.event_type().to_owned(),
                        version: raw.version(),
                        payload: raw.payload().clone(),
                    })
                    .map_err(HandlerError::permanent);
                async move { sent }
            }),
        )
        .await
        .unwrap();
        let registry = DeviceRegistry::connect(&url)
            .await
            .unwrap()
            .with_hub(hub.clone());
        assert_eq!(
            registry.backend(),
            match kind {
                Kind::Sqlite => "sqlite",
                Kind::Postgres => "postgres",
            }
        );
        Self {
            registry,
            hub,
            url,
            events,
            _db: db,
            _file: file,
        }
    }

    /// The next event published, waiting up to [`WAIT`].
    async fn next_event(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("no auth.session.revoked event")
            .expect("event channel closed")
    }

    /// A registry on the same database without a hub.
    async fn without_hub(&self) -> DeviceRegistry {
        DeviceRegistry::connect(&self.url).await.unwrap()
    }
}

fn user() -> String {
    unique_name("user")
}

/// Lets the clock move on, so that two writes get different millisecond timestamps.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(3)).await;
}

fn assert_not_found(result: Result<impl std::fmt::Debug, Error>, device_id: &str) -> String {
    match result {
        Err(Error::DeviceNotFound { device_id: d }) => {
            assert_eq!(d, device_id);
            Error::DeviceNotFound { device_id: d }.to_string()
        }
        other => panic!("expected DeviceNotFound for {device_id}, got {other:?}"),
    }
}

fn assert_invalid(result: Result<impl std::fmt::Debug, Error>, expect: &str) {
    match result {
        Err(Error::InvalidArgument(message)) => {
            assert!(message.contains(expect), "{message:?} lacks {expect:?}");
        }
        other => panic!("expected InvalidArgument ({expect}), got {other:?}"),
    }
}

async fn register_list_and_upsert(kind: Kind) {
    let f = Fixture::new(kind).await;
    let (u, other) = (user(), user());
    let laptop = f
        .registry
        .register(NewDevice::new(&u, "laptop", "s-laptop-1", FIREFOX))
        .await
        .unwrap();
    assert_eq!(
        (laptop.user_id.as_str(), laptop.device_id.as_str()),
        (u.as_str(), "laptop")
    );
    assert_eq!(laptop.session_id, "s-laptop-1");
    assert_eq!(laptop.name, "Firefox on Linux");
    assert_eq!(laptop.device_type, DeviceType::Desktop);
    assert_eq!(laptop.user_agent, FIREFOX);
    assert_eq!(laptop.created_at_ms, laptop.last_active_at_ms);
    assert!(laptop.created_at_ms > 1_700_000_000_000, "unix ms");
    assert!(!laptop.is_revoked());
    tick().await;
    let mut phone = NewDevice::new(&u, "phone", "s-phone-1", IPHONE);
    phone.name = "My phone".into();
    let phone = f.registry.register(phone).await.unwrap();
    assert_eq!(phone.device_type, DeviceType::Mobile);
    assert_eq!(phone.name, "My phone");
    f.registry
        .register(NewDevice::new(&other, "laptop", "s-other", FIREFOX))
        .await
        .unwrap();

    // Most recently active first; only this user's devices.
    let list = f.registry.list(&u).await.unwrap();
    assert_eq!(list, [phone.clone(), laptop.clone()]);

    // A new sign-in on the laptop: new session, new user agent, same row, same creation time.
    tick().await;
    let mut again = NewDevice::new(&u, "laptop", "s-laptop-2", IPHONE);
    again.device_type = DeviceType::Tablet;
    let again = f.registry.register(again).await.unwrap();
    assert_eq!(again.session_id, "s-laptop-2");
    assert_eq!(again.name, "Safari on iOS");
    assert_eq!(again.device_type, DeviceType::Tablet);
    assert_eq!(again.user_agent, IPHONE);
    assert_eq!(again.created_at_ms, laptop.created_at_ms);
    assert!(again.last_active_at_ms > laptop.last_active_at_ms);
    let list = f.registry.list(&u).await.unwrap();
    assert_eq!(list, [again, phone]);
    assert_eq!(f.registry.list(&other).await.unwrap().len(), 1);
    assert!(f.registry.list(&user()).await.unwrap().is_empty());

    // Names and user agents are cleaned and cut rather than refused.
    let mut long = NewDevice::new(&u, "tv", "s-tv", format!("TV\0/{}", "x".repeat(5_000)));
    long.name = format!("{}\n", "é".repeat(200));
    let long = f.registry.register(long).await.unwrap();
    assert_eq!(long.user_agent.len(), 1024);
    assert!(long.user_agent.starts_with("TV/x"));
    assert_eq!(long.name, "é".repeat(128));
    let mut unnamed = NewDevice::new(&u, "box", "s-box", FIREFOX);
    unnamed.name = "  ".into();
    assert_eq!(
        f.registry.register(unnamed).await.unwrap().name,
        "Firefox on Linux"
    );
}

async fn touch_moves_last_activity(kind: Kind) {
    let f = Fixture::new(kind).await;
    let (u, other) = (user(), user());
    let laptop = f
        .registry
        .register(NewDevice::new(&u, "laptop", "s-1", FIREFOX))
        .await
        .unwrap();
    tick().await;
    let phone = f
        .registry
        .register(NewDevice::new(&u, "phone", "s-2", IPHONE))
        .await
        .unwrap();
    assert_eq!(f.registry.list(&u).await.unwrap()[0].device_id, "phone");

    tick().await;
    f.registry.touch(&u, "laptop").await.unwrap();
    let list = f.registry.list(&u).await.unwrap();
    assert_eq!(list[0].device_id, "laptop");
    assert!(list[0].last_active_at_ms > phone.last_active_at_ms);
    assert_eq!(list[0].created_at_ms, laptop.created_at_ms);

    assert_not_found(f.registry.touch(&u, "nope").await, "nope");
    assert_not_found(f.registry.touch(&other, "laptop").await, "laptop");
    f.registry.revoke(&u, "phone").await.unwrap();
    assert_not_found(f.registry.touch(&u, "phone").await, "phone");
}

async fn revoke_one_publishes_its_event(kind: Kind) {
    let mut f = Fixture::new(kind).await;
    let u = user();
    f.registry
        .register(NewDevice::new(&u, "laptop", "s-laptop", FIREFOX))
        .await
        .unwrap();
    f.registry
        .register(NewDevice::new(&u, "phone", "s-phone", IPHONE))
        .await
        .unwrap();

    let revoked = f.registry.revoke(&u, "phone").await.unwrap();
    assert_eq!(revoked.device_id, "phone");
    assert_eq!(revoked.session_id, "s-phone");
    let revoked_at = revoked.revoked_at_ms.expect("revoked");
    assert!(revoked_at >= revoked.last_active_at_ms);

    let received = f.next_event().await;
    assert_eq!(received.event_type, "auth.session.revoked");
    assert_eq!(received.version, 1);
    // The wire shape the WebSocket bridge and other consumers read.
    assert_eq!(
        received.payload,
        serde_json::json!({
            "user_id": u,
            "device_id": "phone",
            "session_id": "s-phone",
            "reason": "revoked",
        })
    );
    assert_eq!(
        received.event(),
        SessionRevoked::new(&u, "phone", "s-phone", RevokeReason::Revoked)
    );

    // Listed no more; the other device stays.
    let list = f.registry.list(&u).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].device_id, "laptop");
    assert!(f.registry.is_revoked("s-phone").await.unwrap());
    assert!(!f.registry.is_revoked("s-laptop").await.unwrap());

    // Idempotent: the first revocation time stays, the event goes out again.
    let again = f.registry.revoke(&u, "phone").await.unwrap();
    assert_eq!(again.revoked_at_ms, Some(revoked_at));
    assert_eq!(again.session_id, "s-phone");
    assert_eq!(f.next_event().await.event(), received.event());
}

async fn foreign_and_unknown_devices_are_not_found(kind: Kind) {
    let mut f = Fixture::new(kind).await;
    let (owner, intruder) = (user(), user());
    f.registry
        .register(NewDevice::new(&owner, "dev-owned", "s-owned", FIREFOX))
        .await
        .unwrap();
    f.registry
        .register(NewDevice::new(
            &intruder,
            "dev-intruder",
            "s-intruder",
            FIREFOX,
        ))
        .await
        .unwrap();

    let foreign = assert_not_found(f.registry.revoke(&intruder, "dev-owned").await, "dev-owned");
    let unknown = assert_not_found(
        f.registry.revoke(&intruder, "dev-nobody").await,
        "dev-nobody",
    );
    // Nothing tells the two apart.
    assert_eq!(
        foreign.replace("dev-owned", "ID"),
        unknown.replace("dev-nobody", "ID")
    );
    assert_not_found(
        f.registry.revoke(&owner, "dev-intruder").await,
        "dev-intruder",
    );

    // Nothing changed, and nothing was published: the first event is the next real revocation.
    let owned = f.registry.list(&owner).await.unwrap();
    assert_eq!(owned.len(), 1);
    assert!(!owned[0].is_revoked());
    assert!(!f.registry.is_revoked("s-owned").await.unwrap());
    assert_eq!(f.registry.list(&intruder).await.unwrap().len(), 1);
    f.registry.revoke(&intruder, "dev-intruder").await.unwrap();
    assert_eq!(
        f.next_event().await.event(),
        SessionRevoked::new(
            &intruder,
            "dev-intruder",
            "s-intruder",
            RevokeReason::Revoked
        )
    );
}

async fn revoke_others_keeps_the_current_device(kind: Kind) {
    let mut f = Fixture::new(kind).await;
    let (u, other) = (user(), user());
    for (device, session) in [("a", "s-a"), ("b", "s-b"), ("c", "s-c"), ("d", "s-d")] {
        f.registry
            .register(NewDevice::new(&u, device, session, FIREFOX))
            .await
            .unwrap();
        tick().await;
    }
    f.registry
        .register(NewDevice::new(&other, "b", "s-other-b", FIREFOX))
        .await
        .unwrap();
    f.registry.revoke(&u, "d").await.unwrap();
    assert_eq!(f.next_event().await.event().device_id, "d");

    let revoked = f.registry.revoke_others(&u, "a").await.unwrap();
    let ids: Vec<&str> = revoked.iter().map(|d| d.device_id.as_str()).collect();
    assert_eq!(
        ids,
        ["c", "b"],
        "not revoked yet, most recently active first"
    );
    assert!(revoked.iter().all(|d| d.is_revoked()));
    assert_eq!(revoked[0].revoked_at_ms, revoked[1].revoked_at_ms);

    let mut events = BTreeSet::new();
    for _ in 0..2 {
        let event = f.next_event().await.event();
        assert_eq!(event.user_id, u);
        assert_eq!(event.reason, RevokeReason::RevokedOthers);
        events.insert((event.device_id, event.session_id));
    }
    assert_eq!(
        events,
        BTreeSet::from([("b".into(), "s-b".into()), ("c".into(), "s-c".into())])
    );

    let list = f.registry.list(&u).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].device_id, "a");
    for (session, revoked) in [("s-a", false), ("s-b", true), ("s-c", true), ("s-d", true)] {
        assert_eq!(
            f.registry.is_revoked(session).await.unwrap(),
            revoked,
            "{session}"
        );
    }
    // Another user's device with the same id is left alone.
    assert_eq!(f.registry.list(&other).await.unwrap().len(), 1);
    assert!(!f.registry.is_revoked("s-other-b").await.unwrap());

    // Nothing left to revoke: nothing returned, nothing published.
    assert!(f.registry.revoke_others(&u, "a").await.unwrap().is_empty());
    // A keep id the user does not have revokes everything.
    let all = f.registry.revoke_others(&u, "elsewhere").await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].device_id, "a");
    let event = f.next_event().await.event();
    assert_eq!(
        (event.device_id.as_str(), event.reason),
        ("a", RevokeReason::RevokedOthers)
    );
    assert!(f.registry.list(&u).await.unwrap().is_empty());
}

async fn revoked_sessions_stay_revoked(kind: Kind) {
    let f = Fixture::new(kind).await;
    let u = user();
    assert!(!f.registry.is_revoked("s-never-seen").await.unwrap());
    f.registry
        .register(NewDevice::new(&u, "laptop", "s-1", FIREFOX))
        .await
        .unwrap();
    assert!(!f.registry.is_revoked("s-1").await.unwrap());
    f.registry.revoke(&u, "laptop").await.unwrap();
    assert!(f.registry.is_revoked("s-1").await.unwrap());

    // Signing in again on the device clears its revocation, not the old session's.
    let back = f
        .registry
        .register(NewDevice::new(&u, "laptop", "s-2", FIREFOX))
        .await
        .unwrap();
    assert!(!back.is_revoked());
    assert_eq!(f.registry.list(&u).await.unwrap(), [back]);
    assert!(f.registry.is_revoked("s-1").await.unwrap());
    assert!(!f.registry.is_revoked("s-2").await.unwrap());
    f.registry.revoke(&u, "laptop").await.unwrap();
    assert!(f.registry.is_revoked("s-2").await.unwrap());

    // Another registry on the same database (a second process) sees the same.
    let second = f.without_hub().await;
    assert!(second.is_revoked("s-1").await.unwrap());
    assert!(second.is_revoked("s-2").await.unwrap());
}

async fn invalid_input_is_refused(kind: Kind) {
    let f = Fixture::new(kind).await;
    let u = user();
    let long = "x".repeat(257);
    let longest = "x".repeat(256);
    for (user_id, device_id, session_id, expect) in [
        ("", "d", "s", "the user id is empty"),
        (u.as_str(), "", "s", "the device id is empty"),
        (u.as_str(), "d", "", "the session id is empty"),
        (long.as_str(), "d", "s", "the user id is 257 bytes long"),
        (
            u.as_str(),
            long.as_str(),
            "s",
            "the device id is 257 bytes long",
        ),
        (
            u.as_str(),
            "d",
            long.as_str(),
            "the session id is 257 bytes long",
        ),
        (
            u.as_str(),
            "d\n",
            "s",
            "the device id holds a control character",
        ),
        (
            u.as_str(),
            "d",
            "s\0",
            "the session id holds a control character",
        ),
    ] {
        assert_invalid(
            f.registry
                .register(NewDevice::new(user_id, device_id, session_id, FIREFOX))
                .await,
            expect,
        );
    }
    assert_invalid(f.registry.touch("", "d").await, "the user id is empty");
    assert_invalid(f.registry.touch(&u, &long).await, "the device id is 257");
    assert_invalid(f.registry.list("").await, "the user id is empty");
    assert_invalid(f.registry.revoke(&u, "").await, "the device id is empty");
    assert_invalid(f.registry.revoke(&long, "d").await, "the user id is 257");
    assert_invalid(
        f.registry.revoke_others(&u, "").await,
        "the device id is empty",
    );
    assert_invalid(f.registry.is_revoked("").await, "the session id is empty");
    assert_invalid(f.registry.is_revoked(&long).await, "the session id is 257");
    let message = f.registry.list("").await.unwrap_err().to_string();
    assert!(message.starts_with("invalid argument: "), "{message}");
    assert!(
        f.registry.list(&u).await.unwrap().is_empty(),
        "nothing stored"
    );

    // 256 bytes is fine.
    let d = f
        .registry
        .register(NewDevice::new(&longest, &longest, &longest, FIREFOX))
        .await
        .unwrap();
    assert_eq!(d.device_id.len(), 256);
    f.registry.revoke(&longest, &longest).await.unwrap();
    assert!(f.registry.is_revoked(&longest).await.unwrap());
}

async fn revocation_is_stored_when_publishing_fails(kind: Kind) {
    let mut f = Fixture::new(kind).await;
    let u = user();
    // A hub where no queue takes auth.session.revoked: publishing is refused as unroutable.
    let deaf = Hub::memory("auth", Topology::new()).await.unwrap();
    let registry = f.without_hub().await.with_hub(deaf);
    for (device, session) in [("a", "s-a"), ("b", "s-b"), ("c", "s-c")] {
        registry
            .register(NewDevice::new(&u, device, session, FIREFOX))
            .await
            .unwrap();
    }
    let err = registry.revoke(&u, "a").await.unwrap_err();
    assert!(matches!(err, Error::Publish(_)), "{err:?}");
    assert!(err.to_string().contains("(device a)"), "{err}");
    assert!(registry.is_revoked("s-a").await.unwrap(), "stored first");
    let err = registry.revoke_others(&u, "c").await.unwrap_err();
    assert!(matches!(err, Error::Publish(_)), "{err:?}");
    assert!(err.to_string().contains("(device b)"), "{err}");
    assert!(registry.is_revoked("s-b").await.unwrap());
    assert_eq!(registry.list(&u).await.unwrap().len(), 1);

    // Revoking again through a hub that works publishes the event after all.
    f.registry.revoke(&u, "b").await.unwrap();
    let event = f.next_event().await.event();
    assert_eq!(
        (event.device_id.as_str(), event.session_id.as_str()),
        ("b", "s-b")
    );
}

async fn without_a_hub_nothing_is_published(kind: Kind) {
    let mut f = Fixture::new(kind).await;
    let u = user();
    let quiet = f.without_hub().await;
    for (device, session) in [("a", "s-a"), ("b", "s-b"), ("c", "s-c")] {
        quiet
            .register(NewDevice::new(&u, device, session, FIREFOX))
            .await
            .unwrap();
    }
    quiet.revoke(&u, "a").await.unwrap();
    assert_eq!(quiet.revoke_others(&u, "c").await.unwrap().len(), 1);
    assert!(quiet.is_revoked("s-a").await.unwrap());
    // The first event on the queue is the one published through the hub, after those.
    f.registry.revoke(&u, "c").await.unwrap();
    assert_eq!(f.next_event().await.event().device_id, "c");
    assert!(f.events.try_recv().is_err());
}

async fn revoked_sessions_learn_through_the_hub(kind: Kind) {
    let f = Fixture::new(kind).await;
    let u = user();
    // This gateway node's set is fed by its queue.
    let revoked = RevokedSessions::new(f.registry.clone(), 1_000, Duration::from_secs(3600));
    f.hub
        .subscribe_router(Subscription::new("gateway.events"), revoked.router())
        .await
        .unwrap();
    for (device, session) in [("a", "s-a"), ("b", "s-b"), ("c", "s-c")] {
        f.registry
            .register(NewDevice::new(&u, device, session, FIREFOX))
            .await
            .unwrap();
    }
    let issuer = Issuer::new(SigningKey::hs256("k1", &[7; 32]).unwrap(), "auth", "app");
    let mut claims = issuer.claims_for(&u);
    claims.sid = Some("s-b".into());
    assert!(revoked.permits(&claims));

    f.registry.revoke(&u, "b").await.unwrap();
    f.registry.revoke_others(&u, "a").await.unwrap();
    tokio::time::timeout(WAIT, async {
        while !(revoked.contains("s-b") && revoked.contains("s-c")) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the gateway did not learn of the revocations");
    assert!(!revoked.permits(&claims));
    assert!(!revoked.contains("s-a"));
    claims.sid = Some("s-a".into());
    assert!(revoked.permits(&claims));
    claims.sid = None;
    assert!(revoked.permits(&claims), "tokens without a session pass");
    assert_eq!(revoked.len(), 2);
}

async fn revoked_sessions_fall_back_to_the_registry(kind: Kind) {
    let f = Fixture::new(kind).await;
    let u = user();
    let quiet = f.without_hub().await;
    quiet
        .register(NewDevice::new(&u, "a", "s-a", FIREFOX))
        .await
        .unwrap();
    quiet
        .register(NewDevice::new(&u, "b", "s-b", FIREFOX))
        .await
        .unwrap();
    quiet.revoke(&u, "a").await.unwrap();

    // A node that started after the revocation (or missed its event) asks the registry.
    let revoked = RevokedSessions::new(quiet.clone(), 100, Duration::from_secs(3600));
    assert!(revoked.is_empty());
    assert!(!revoked.contains("s-a"));
    assert!(revoked.is_revoked("s-a").await.unwrap());
    assert!(revoked.contains("s-a"), "a revoked answer is remembered");
    assert!(!revoked.is_revoked("s-b").await.unwrap());
    assert!(!revoked.contains("s-b"), "a live session is not");
    assert!(!revoked.is_revoked("s-unknown").await.unwrap());
    assert_eq!(revoked.len(), 1);
    assert_invalid(revoked.is_revoked("").await, "the session id is empty");

    // Entries expire after the ttl (the longest token lifetime) and are asked for again.
    let short = RevokedSessions::new(quiet, 100, Duration::from_millis(50));
    short.insert("s-gone");
    assert!(short.contains("s-gone"));
    tokio::time::timeout(WAIT, async {
        while short.contains("s-gone") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the entry did not expire");
    assert!(
        !short.is_revoked("s-gone").await.unwrap(),
        "never in the registry"
    );
    assert!(short.is_revoked("s-a").await.unwrap());
}

async fn revoked_sessions_are_bounded(kind: Kind) {
    let f = Fixture::new(kind).await;
    let revoked = RevokedSessions::new(f.registry, 50, Duration::from_secs(3600));
    for i in 0..500 {
        revoked.insert(format!("s-{i}"));
    }
    assert_eq!(revoked.len(), 50);
    // The newest revocations are the ones kept.
    assert!(revoked.contains("s-499"));
    assert!(!revoked.contains("s-0"));
    let kept = (0..500)
        .filter(|i| revoked.contains(&format!("s-{i}")))
        .count();
    assert_eq!(kept, 50);
}

async fn connecting_again_keeps_the_data(kind: Kind) {
    let f = Fixture::new(kind).await;
    let u = user();
    f.registry
        .register(NewDevice::new(&u, "a", "s-a", FIREFOX))
        .await
        .unwrap();
    // Migrations run again on every connect and change nothing.
    let second = f.without_hub().await;
    let third = f.without_hub().await;
    assert_eq!(
        second.list(&u).await.unwrap(),
        third.list(&u).await.unwrap()
    );
    assert_eq!(second.list(&u).await.unwrap().len(), 1);
    assert_eq!(second.backend(), f.registry.backend());
    let debug = format!("{second:?}");
    assert!(debug.contains(second.backend()), "{debug}");
}

async fn pruning_forgets_only_older_revocations(kind: Kind) {
    let f = Fixture::new(kind).await;
    let u = user();
    for (device, session) in [("old", "s-old"), ("new", "s-new"), ("live", "s-live")] {
        f.registry
            .register(NewDevice::new(&u, device, session, FIREFOX))
            .await
            .unwrap();
    }
    f.registry.revoke(&u, "old").await.unwrap();
    tick().await;
    let cut = std::time::SystemTime::now();
    tick().await;
    f.registry.revoke(&u, "new").await.unwrap();

    assert_eq!(f.registry.prune_revoked(cut).await.unwrap(), 1);
    assert!(!f.registry.is_revoked("s-old").await.unwrap(), "forgotten");
    assert!(f.registry.is_revoked("s-new").await.unwrap(), "kept");
    assert!(!f.registry.is_revoked("s-live").await.unwrap());
    let live: Vec<String> = f
        .registry
        .list(&u)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.device_id)
        .collect();
    assert_eq!(live, ["live"], "live devices are never pruned");
    // The pruned device's row is gone: it can sign in again as new, the other stays revoked.
    assert_not_found(f.registry.revoke(&u, "old").await, "old");
    assert!(
        f.registry.revoke(&u, "new").await.is_ok(),
        "still known (revoked)"
    );
    assert_eq!(
        f.registry.prune_revoked(cut).await.unwrap(),
        0,
        "idempotent"
    );
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Kind::Sqlite).await }) *
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Kind::Postgres).await }) *
        }
    };
}

conformance!(
    register_list_and_upsert,
    touch_moves_last_activity,
    revoke_one_publishes_its_event,
    foreign_and_unknown_devices_are_not_found,
    revoke_others_keeps_the_current_device,
    revoked_sessions_stay_revoked,
    invalid_input_is_refused,
    revocation_is_stored_when_publishing_fails,
    without_a_hub_nothing_is_published,
    revoked_sessions_learn_through_the_hub,
    revoked_sessions_fall_back_to_the_registry,
    revoked_sessions_are_bounded,
    connecting_again_keeps_the_data,
    pruning_forgets_only_older_revocations,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_in_memory_is_one_database() {
    let registry = DeviceRegistry::connect("sqlite::memory:").await.unwrap();
    let u = user();
    // Many operations at once all see the same in-memory database.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (registry, u) = (registry.clone(), u.clone());
            tokio::spawn(async move {
                registry
                    .register(NewDevice::new(&u, format!("d{i}"), format!("s{i}"), ""))
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(registry.list(&u).await.unwrap().len(), 20);
    // Two in-memory registries are two databases.
    let other = DeviceRegistry::connect("sqlite::memory:").await.unwrap();
    assert!(other.list(&u).await.unwrap().is_empty());
}

#[tokio::test]
async fn unsupported_urls_are_refused_without_their_password() {
    for url in [
        "mysql://root:hunter2@db/app",
        "redis://:hunter2@cache",
        "devices.db",
    ] {
        let err = DeviceRegistry::connect(url).await.unwrap_err();
        assert!(matches!(err, Error::UnsupportedUrl(_)), "{url}: {err:?}");
        let message = err.to_string();
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("postgres://"), "{message}");
    }
}
