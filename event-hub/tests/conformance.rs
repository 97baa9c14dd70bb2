//! One conformance suite, run on both backends: the in-memory broker and the real RabbitMQ.
//! Every test is a generic check over a [`Fixture`] and is instantiated once per backend.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Fixture, Kind, PaymentCreated, SessionRevoked, UserCreated, eventually, fast_retry};
use tidewell_core::{Envelope, RawEnvelope};
use tidewell_event_hub::{
    DeadLetterReason, Error, HandlerError, MemoryDedup, QueueType, RetryPolicy, Router,
    Subscription,
};

const WAIT: Duration = Duration::from_secs(10);

type Seen = Arc<Mutex<Vec<String>>>;

fn recording_router(seen: &Seen) -> Router {
    let (a, b, c) = (seen.clone(), seen.clone(), seen.clone());
    Router::new()
        .route(move |e: Envelope<UserCreated>| {
            let a = a.clone();
            async move {
                a.lock().unwrap().push(e.event_type().to_owned());
                Ok(())
            }
        })
        .route(move |e: Envelope<SessionRevoked>| {
            let b = b.clone();
            async move {
                b.lock().unwrap().push(e.event_type().to_owned());
                Ok(())
            }
        })
        .route(move |e: Envelope<PaymentCreated>| {
            let c = c.clone();
            async move {
                c.lock().unwrap().push(e.event_type().to_owned());
                Ok(())
            }
        })
}

async fn routing_patterns(kind: Kind) {
    let f = Fixture::new(kind).await;
    let policy = RetryPolicy::none();
    let (auth, users, all) = (
        f.service("auth-only", &policy).bind("auth.#"),
        f.service("users", &policy).bind("*.user.*"),
        f.service("all", &policy).bind("#"),
    );
    let names = [auth.name(), users.name(), all.name()];
    let hub = f
        .hub(f.topology().service(auth).service(users).service(all))
        .await;
    let seen: Vec<Seen> = (0..3).map(|_| Seen::default()).collect();
    for (name, seen) in names.iter().zip(&seen) {
        hub.subscribe_router(Subscription::new(name), recording_router(seen))
            .await
            .unwrap();
    }
    hub.publish(&hub.envelope(UserCreated {
        user_id: 1,
        email: "a@x".into(),
    }))
    .await
    .unwrap();
    hub.publish(&hub.envelope(SessionRevoked {
        session_id: "s".into(),
    }))
    .await
    .unwrap();
    hub.publish(&hub.envelope(PaymentCreated {
        payment_id: 1,
        seq: 0,
    }))
    .await
    .unwrap();

    assert!(
        eventually(WAIT, || seen[2].lock().unwrap().len() == 3).await,
        "'#' gets everything"
    );
    let sorted = |s: &Seen| {
        let mut v = s.lock().unwrap().clone();
        v.sort();
        v
    };
    assert_eq!(
        sorted(&seen[0]),
        ["auth.session.revoked", "auth.user.created"]
    );
    assert_eq!(sorted(&seen[1]), ["auth.user.created"]);
    hub.shutdown(WAIT).await.unwrap();
}

async fn typed_decode_and_unroutable(kind: Kind) {
    let f = Fixture::new(kind).await;
    let q = f.service("typed", &RetryPolicy::none()).bind("auth.user.#");
    let name = q.name();
    let hub = f.hub(f.topology().service(q)).await;
    let got = Arc::new(Mutex::new(None));
    let g = got.clone();
    hub.subscribe(Subscription::new(&name), move |e: Envelope<UserCreated>| {
        let g = g.clone();
        async move {
            *g.lock().unwrap() = Some((e.id(), e.payload().clone(), e.correlation_id().clone()));
            Ok(())
        }
    })
    .await
    .unwrap();
    let sent = hub.envelope(UserCreated {
        user_id: 7,
        email: "ada@example.com".into(),
    });
    hub.publish(&sent).await.unwrap();
    assert!(eventually(WAIT, || got.lock().unwrap().is_some()).await);
    let (id, payload, corr) = got.lock().unwrap().clone().unwrap();
    assert_eq!(
        (id, &payload, &corr),
        (sent.id(), sent.payload(), sent.correlation_id())
    );

    // Nothing is bound for payments.*: mandatory publishing makes that an error, not a silent drop.
    let err = hub
        .publish(&hub.envelope(PaymentCreated {
            payment_id: 1,
            seq: 0,
        }))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Unroutable { ref routing_key, .. } if routing_key == "payments.payment.created"),
        "{err}"
    );
    assert_eq!(hub.metrics().published("returned"), 1);
    assert_eq!(hub.metrics().published("confirmed"), 1);

    // A queue outside the topology is refused at subscribe time.
    let err = hub
        .subscribe(
            Subscription::new("nope.events"),
            |_: Envelope<UserCreated>| async { Ok(()) },
        )
        .await;
    assert!(matches!(err, Err(Error::UnknownQueue { .. })));
    hub.shutdown(WAIT).await.unwrap();
}

async fn retry_then_success(kind: Kind) {
    let f = Fixture::new(kind).await;
    let q = f.service("retry-ok", &fast_retry(5)).bind("payments.#");
    let name = q.name();
    let hub = f.hub(f.topology().service(q)).await;
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    hub.subscribe(
        Subscription::new(&name),
        move |_: Envelope<PaymentCreated>| {
            let n = r.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if n < 3 {
                    Err(HandlerError::retryable(format!("flaky run {n}")))
                } else {
                    Ok(())
                }
            }
        },
    )
    .await
    .unwrap();
    hub.publish(&hub.envelope(PaymentCreated {
        payment_id: 9,
        seq: 0,
    }))
    .await
    .unwrap();
    assert!(eventually(WAIT, || hub.metrics().consumed(&name, "acked") == 1).await);
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    assert_eq!(hub.metrics().consumed(&name, "retried"), 2);
    let dead = hub
        .take_dead_letters(&name, 10, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(dead.is_empty(), "{dead:?}");
    hub.shutdown(WAIT).await.unwrap();
}

async fn retries_exhausted_go_to_dlq_with_metadata(kind: Kind) {
    let f = Fixture::new(kind).await;
    let q = f.service("retry-dlq", &fast_retry(3)).bind("payments.#");
    let name = q.name();
    let hub = f.hub(f.topology().service(q)).await;
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    hub.subscribe(
        Subscription::new(&name).name("charge-card"),
        move |_: Envelope<PaymentCreated>| {
            let n = r.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                Err(HandlerError::retryable(format!(
                    "gateway timeout on run {n}"
                )))
            }
        },
    )
    .await
    .unwrap();
    let sent = hub.envelope(PaymentCreated {
        payment_id: 3,
        seq: 0,
    });
    hub.publish(&sent).await.unwrap();
    assert!(eventually(WAIT, || hub.metrics().consumed(&name, "dead_lettered") == 1).await);
    let dead = hub.take_dead_letters(&name, 10, WAIT).await.unwrap();
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(d.reason, DeadLetterReason::RetriesExhausted);
    assert_eq!(d.attempts, 3, "bounded by the policy");
    assert_eq!(d.handler.as_deref(), Some("charge-card"));
    assert_eq!(d.last_error.as_deref(), Some("gateway timeout on run 3"));
    assert_eq!(d.message_id, sent.id().to_string());
    assert_eq!(d.event_type, "payments.payment.created");
    assert_eq!(
        d.correlation_id.as_deref(),
        Some(sent.correlation_id().as_str())
    );
    assert_eq!(d.source.as_deref(), Some("tests"));
    assert_eq!(
        RawEnvelope::parse(&d.body).unwrap().id(),
        sent.id(),
        "the original body is kept"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    hub.shutdown(WAIT).await.unwrap();
}

async fn permanent_error_and_poison_go_straight_to_dlq(kind: Kind) {
    let f = Fixture::new(kind).await;
    let q = f.service("poison", &fast_retry(5)).bind("payments.#");
    let name = q.name();
    let hub = f.hub(f.topology().service(q)).await;
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    hub.subscribe(
        Subscription::new(&name),
        move |e: Envelope<PaymentCreated>| {
            r.fetch_add(1, Ordering::SeqCst);
            async move {
                if e.payload().payment_id == 0 {
                    Err(HandlerError::permanent("payment 0 does not exist"))
                } else {
                    Ok(())
                }
            }
        },
    )
    .await
    .unwrap();

    hub.publish(&hub.envelope(PaymentCreated {
        payment_id: 0,
        seq: 0,
    }))
    .await
    .unwrap();
    // Poison: an unknown version, a payload that does not match, a type with no handler.
    let raw = |json: &str| RawEnvelope::parse(json.as_bytes()).unwrap();
    let base = r#""id":"0190b3a4-7c4e-7d2a-9f1e-2b3c4d5e6f7X","source":"t","occurred_at":"2026-11-26T10:00:00Z","correlation_id":"c""#;
    for (i, (ty, version, payload)) in [
        ("payments.payment.created", 7, r#"{"payment_id":1,"seq":0}"#),
        ("payments.payment.created", 1, r#"{"payment_id":"one"}"#),
        ("payments.refund.created", 1, r#"{}"#),
    ]
    .into_iter()
    .enumerate()
    {
        let json = format!(
            r#"{{{},"type":"{ty}","version":{version},"payload":{payload}}}"#,
            base.replace('X', &i.to_string())
        );
        hub.publish(&raw(&json)).await.unwrap();
    }
    assert!(eventually(WAIT, || hub.metrics().consumed(&name, "dead_lettered") == 4).await);
    let dead = hub.take_dead_letters(&name, 10, WAIT).await.unwrap();
    assert_eq!(dead.len(), 4);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "only the permanent failure reached the handler"
    );
    let permanent: Vec<_> = dead
        .iter()
        .filter(|d| d.reason == DeadLetterReason::Permanent)
        .collect();
    assert_eq!(permanent.len(), 1);
    assert_eq!(permanent[0].attempts, 1, "no retry for a permanent error");
    let poison: Vec<String> = dead
        .iter()
        .filter(|d| d.reason == DeadLetterReason::Poison)
        .map(|d| d.last_error.clone().unwrap())
        .collect();
    assert_eq!(poison.len(), 3);
    assert!(
        poison.iter().any(|e| e.contains("unsupported version 7")),
        "{poison:?}"
    );
    assert!(
        poison
            .iter()
            .any(|e| e.contains("does not match its schema")),
        "{poison:?}"
    );
    assert!(
        poison
            .iter()
            .any(|e| e.contains("no handler for event type")),
        "{poison:?}"
    );
    hub.shutdown(WAIT).await.unwrap();
}

async fn order_kept_with_prefetch_one(kind: Kind) {
    let f = Fixture::new(kind).await;
    let q = f
        .service("ordered", &RetryPolicy::none())
        .bind("payments.#");
    let name = q.name();
    let hub = f.hub(f.topology().service(q)).await;
    // Publish first, then consume: the whole backlog must come out in order.
    for seq in 0..200 {
        hub.publish(&hub.envelope(PaymentCreated { payment_id: 1, seq }))
            .await
            .unwrap();
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    hub.subscribe(
        Subscription::new(&name).prefetch(1).concurrency(1),
        move |e: Envelope<PaymentCreated>| {
            let s = s.clone();
            async move {
                tokio::task::yield_now().await;
                s.lock().unwrap().push(e.payload().seq);
                Ok(())
            }
        },
    )
    .await
    .unwrap();
    assert!(eventually(WAIT, || seen.lock().unwrap().len() == 200).await);
    assert_eq!(*seen.lock().unwrap(), (0..200).collect::<Vec<_>>());
    hub.shutdown(WAIT).await.unwrap();
}

async fn dedup_runs_handler_once_per_id(kind: Kind) {
    let f = Fixture::new(kind).await;
    let q = f.service("dedup", &RetryPolicy::none()).bind("payments.#");
    let name = q.name();
    let hub = f.hub(f.topology().service(q)).await;
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    hub.subscribe(
        Subscription::new(&name).dedup(MemoryDedup::new(1_000)),
        move |_: Envelope<PaymentCreated>| {
            r.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        },
    )
    .await
    .unwrap();
    let event = hub.envelope(PaymentCreated {
        payment_id: 5,
        seq: 0,
    });
    for _ in 0..3 {
        hub.publish(&event).await.unwrap(); // the same envelope id three times
    }
    assert!(eventually(WAIT, || hub.metrics().consumed(&name, "duplicate") == 2).await);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    hub.shutdown(WAIT).await.unwrap();
}

async fn oversized_events_are_refused_and_dead_lettered(kind: Kind) {
    let f = Fixture::new(kind).await;
    let q = f.service("big", &RetryPolicy::none()).bind("auth.#");
    let name = q.name();
    let topology = f.topology().service(q);
    let small = f
        .hub_with(topology.clone(), |b| b.max_message_size(512))
        .await;
    let big = UserCreated {
        user_id: 1,
        email: "x".repeat(2_000),
    };
    let err = small
        .publish(&small.envelope(big.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { limit: 512, .. }), "{err}");

    // A producer with a larger limit sends it anyway: the small consumer dead-letters it.
    let producer = f.hub(topology).await;
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    small
        .subscribe(Subscription::new(&name), move |_: Envelope<UserCreated>| {
            r.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        })
        .await
        .unwrap();
    producer.publish(&producer.envelope(big)).await.unwrap();
    assert!(
        eventually(WAIT, || small.metrics().consumed(&name, "dead_lettered")
            == 1)
        .await
    );
    let dead = small.take_dead_letters(&name, 5, WAIT).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, DeadLetterReason::TooLarge);
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    small.shutdown(WAIT).await.unwrap();
    producer.shutdown(WAIT).await.unwrap();
}

async fn declaration_is_idempotent_and_mismatch_is_named(kind: Kind) {
    let f = Fixture::new(kind).await;
    let declared = f.service("decl", &RetryPolicy::none()).bind("auth.#");
    let first = f.hub(f.topology().service(declared.clone())).await;
    let again = f.hub(f.topology().service(declared.clone())).await; // idempotent
    let classic = declared.queue_type(QueueType::Classic);
    let err = tidewell_event_hub::Hub::builder("tests")
        .url(&f.url)
        .topology(f.topology().service(classic))
        .connect()
        .await
        .unwrap_err();
    match err {
        Error::TopologyMismatch { what, detail } => {
            assert!(what.contains("decl.events"), "{what}");
            // The first argument that differs (the broker and the memory backend compare in
            // different orders): a quorum queue declared again as classic.
            assert!(
                ["x-queue-type", "x-dead-letter-strategy", "x-overflow"]
                    .iter()
                    .any(|arg| detail.contains(arg)),
                "{detail}"
            );
        }
        other => panic!("expected TopologyMismatch, got {other}"),
    }
    first.shutdown(WAIT).await.unwrap();
    again.shutdown(WAIT).await.unwrap();
}

async fn shutdown_finishes_in_flight_work(kind: Kind) {
    let f = Fixture::new(kind).await;
    let q = f.service("drain", &RetryPolicy::none()).bind("payments.#");
    let name = q.name();
    let hub = f.hub(f.topology().service(q)).await;
    let done = Arc::new(Mutex::new(HashSet::new()));
    let d = done.clone();
    let started = Arc::new(AtomicU32::new(0));
    let s = started.clone();
    hub.subscribe(
        Subscription::new(&name).concurrency(4),
        move |e: Envelope<PaymentCreated>| {
            let d = d.clone();
            s.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                d.lock().unwrap().insert(e.payload().seq);
                Ok(())
            }
        },
    )
    .await
    .unwrap();
    for seq in 0..4 {
        hub.publish(&hub.envelope(PaymentCreated { payment_id: 1, seq }))
            .await
            .unwrap();
    }
    assert!(eventually(WAIT, || started.load(Ordering::SeqCst) == 4).await);
    hub.shutdown(WAIT).await.unwrap();
    assert_eq!(
        done.lock().unwrap().len(),
        4,
        "every started handler finished"
    );
    assert_eq!(
        hub.metrics().consumed(&name, "acked"),
        4,
        "and was acknowledged"
    );
    let err = hub
        .publish(&hub.envelope(PaymentCreated {
            payment_id: 1,
            seq: 9,
        }))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ShuttingDown));
}

async fn prefetch_bounds_deliveries_in_flight(kind: Kind) {
    let f = Fixture::new(kind).await;
    let q = f
        .service("prefetch", &RetryPolicy::none())
        .bind("payments.#");
    let name = q.name();
    let hub = f.hub(f.topology().service(q)).await;
    for seq in 0..20 {
        hub.publish(&hub.envelope(PaymentCreated { payment_id: 1, seq }))
            .await
            .unwrap();
    }
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let started = Arc::new(AtomicU32::new(0));
    let (g, s) = (gate.clone(), started.clone());
    hub.subscribe(
        Subscription::new(&name).prefetch(5).concurrency(50),
        move |_: Envelope<PaymentCreated>| {
            let g = g.clone();
            s.fetch_add(1, Ordering::SeqCst);
            async move {
                g.acquire().await.unwrap().forget();
                Ok(())
            }
        },
    )
    .await
    .unwrap();
    assert!(eventually(WAIT, || started.load(Ordering::SeqCst) == 5).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        started.load(Ordering::SeqCst),
        5,
        "no more than prefetch unacknowledged at once"
    );
    gate.add_permits(20);
    assert!(eventually(WAIT, || hub.metrics().consumed(&name, "acked") == 20).await);
    hub.shutdown(WAIT).await.unwrap();
}

/// `queue`'s dead-letter depth once it reads `want` (RabbitMQ counts a requeued message again
/// a moment later), or what it reads after 5 s.
async fn dead_letters_settle_at(hub: &tidewell_event_hub::Hub, queue: &str, want: u64) -> u64 {
    let mut depth = hub.dead_letter_depth(queue).await.unwrap();
    for _ in 0..50 {
        if depth == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        depth = hub.dead_letter_depth(queue).await.unwrap();
    }
    depth
}

/// Dead letters are counted, listed without being removed, and replayed into their own queue
/// only: handled once there, never again by another service's queue, and gone from the
/// dead-letter queue.
async fn dead_letters_are_counted_listed_and_replayed_once(kind: Kind) {
    let f = Fixture::new(kind).await;
    let q = f.service("replay", &fast_retry(2)).bind("payments.#");
    let other = f.service("replay-other", &fast_retry(2)).bind("payments.#");
    let (name, other_name) = (q.name(), other.name());
    let hub = f.hub(f.topology().service(q).service(other)).await;
    assert!(hub.is_connected());
    let fixed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handled = Arc::new(AtomicU32::new(0));
    let (fx, h) = (fixed.clone(), handled.clone());
    hub.subscribe(
        Subscription::new(&name).dedup(MemoryDedup::new(1_000)),
        move |_: Envelope<PaymentCreated>| {
            let ok = fx.load(Ordering::SeqCst);
            if ok {
                h.fetch_add(1, Ordering::SeqCst);
            }
            async move {
                if ok {
                    Ok(())
                } else {
                    Err(HandlerError::permanent("the ledger is down"))
                }
            }
        },
    )
    .await
    .unwrap();
    let elsewhere = Arc::new(AtomicU32::new(0));
    let e = elsewhere.clone();
    hub.subscribe(
        Subscription::new(&other_name),
        move |_: Envelope<PaymentCreated>| {
            e.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        },
    )
    .await
    .unwrap();
    for id in [1, 2] {
        hub.publish(&hub.envelope(PaymentCreated {
            payment_id: id,
            seq: 0,
        }))
        .await
        .unwrap();
    }
    assert!(eventually(WAIT, || hub.metrics().consumed(&name, "dead_lettered") == 2).await);
    assert!(eventually(WAIT, || elsewhere.load(Ordering::SeqCst) == 2).await);
    assert_eq!(dead_letters_settle_at(&hub, &name, 2).await, 2);

    let peeked = hub.peek_dead_letters(&name, 10, WAIT).await.unwrap();
    assert_eq!(peeked.len(), 2, "{peeked:?}");
    assert!(
        peeked
            .iter()
            .all(|d| d.reason == DeadLetterReason::Permanent)
    );
    assert_eq!(
        dead_letters_settle_at(&hub, &name, 2).await,
        2,
        "listing leaves them where they are"
    );

    fixed.store(true, Ordering::SeqCst);
    let replayed = hub.replay_dead_letters(&name, 10, WAIT).await.unwrap();
    let mut ids: Vec<_> = replayed.iter().map(|d| d.message_id.clone()).collect();
    let mut peeked_ids: Vec<_> = peeked.iter().map(|d| d.message_id.clone()).collect();
    ids.sort();
    peeked_ids.sort();
    assert_eq!(ids, peeked_ids);
    assert!(eventually(WAIT, || handled.load(Ordering::SeqCst) == 2).await);
    assert_eq!(hub.dead_letter_depth(&name).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(handled.load(Ordering::SeqCst), 2, "each once");
    assert_eq!(
        elsewhere.load(Ordering::SeqCst),
        2,
        "the other service's queue does not get them again"
    );
    assert!(matches!(
        hub.replay_dead_letters("no-such-queue", 1, Duration::from_millis(10))
            .await,
        Err(Error::UnknownQueue { .. })
    ));
    hub.shutdown(WAIT).await.unwrap();
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Kind::Memory).await }) *
        }
        mod rabbitmq {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Kind::Amqp).await }) *
        }
    };
}

conformance!(
    routing_patterns,
    typed_decode_and_unroutable,
    retry_then_success,
    retries_exhausted_go_to_dlq_with_metadata,
    permanent_error_and_poison_go_straight_to_dlq,
    order_kept_with_prefetch_one,
    dedup_runs_handler_once_per_id,
    oversized_events_are_refused_and_dead_lettered,
    declaration_is_idempotent_and_mismatch_is_named,
    shutdown_finishes_in_flight_work,
    prefetch_bounds_deliveries_in_flight,
    dead_letters_are_counted_listed_and_replayed_once,
);
