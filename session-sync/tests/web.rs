//! The JavaScript API in headless Chromium (wasm-bindgen-test): run with
//! `CHROMEDRIVER=/usr/bin/chromedriver cargo test -p tidewell-session-sync --target wasm32-unknown-unknown`
//! (`scripts/test` does). Two `SessionSync` objects on one page stand for two tabs: a
//! `BroadcastChannel` delivers to every other object of the same name, as it does across tabs.
//! The `localStorage` transport, which only reaches *other* documents, is tested end to end in
//! `tests/e2e.rs`.
#![cfg(target_arch = "wasm32")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Function, Promise, Reflect};
use tidewell_session_sync::web::{
    RealtimeClient, SessionSync, clear_device_id, get_device_id, get_device_name, get_device_type,
};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

async fn sleep(ms: i32) {
    let p = Promise::new(&mut |resolve, _| {
        web_sys::window()
            .unwrap()
            .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms)
            .unwrap();
    });
    JsFuture::from(p).await.unwrap();
}

/// Waits until `done` or `ms` pass.
async fn until(ms: i32, done: impl Fn() -> bool) {
    let mut waited = 0;
    while !done() && waited < ms {
        sleep(5).await;
        waited += 5;
    }
}

fn channel() -> String {
    format!("test-{}", get_random())
}

fn get_random() -> String {
    format!("{:x}", (js_sys::Math::random() * 1e15) as u64)
}

/// A JS function recording each call's arguments.
fn recorder() -> (Function, Rc<RefCell<Vec<Vec<JsValue>>>>) {
    let calls = Rc::new(RefCell::new(Vec::new()));
    let c = Rc::clone(&calls);
    let f = Closure::<dyn FnMut(JsValue, JsValue)>::new(move |a: JsValue, b: JsValue| {
        c.borrow_mut().push(vec![a, b]);
    });
    (f.into_js_value().unchecked_into(), calls)
}

fn field(v: &JsValue, k: &str) -> JsValue {
    Reflect::get(v, &JsValue::from_str(k)).unwrap()
}

fn options(transport: &str) -> Option<tidewell_session_sync::web::SessionSyncOptionsArg> {
    let o = js_sys::Object::new();
    Reflect::set(&o, &"transport".into(), &transport.into()).unwrap();
    Some(o.unchecked_into())
}

#[wasm_bindgen_test]
async fn logout_reaches_the_other_tab_and_not_the_sender() {
    let name = channel();
    let a = SessionSync::new(Some(name.clone()), None).unwrap();
    let b = SessionSync::new(Some(name), None).unwrap();
    assert_eq!(a.transport(), "broadcast-channel");
    assert_ne!(a.tab_id(), b.tab_id());
    let (fa, calls_a) = recorder();
    let (fb, calls_b) = recorder();
    a.on_logout(fa);
    b.on_logout(fb);
    a.broadcast_logout(Some("user".into())).unwrap();
    until(2_000, || !calls_b.borrow().is_empty()).await;
    sleep(50).await;
    assert_eq!(calls_b.borrow().len(), 1);
    assert!(calls_a.borrow().is_empty(), "own messages are ignored");
    let event = &calls_b.borrow()[0][0];
    assert_eq!(field(event, "reason").as_string().unwrap(), "user");
    assert_eq!(field(event, "fromTab").as_string().unwrap(), a.tab_id());
}

#[wasm_bindgen_test]
async fn auth_state_and_tokens_carry_their_json() {
    let name = channel();
    let a = SessionSync::new(Some(name.clone()), None).unwrap();
    let b = SessionSync::new(Some(name), None).unwrap();
    let (fs, states) = recorder();
    let (ft, tokens) = recorder();
    b.on_auth_state(fs);
    b.on_token_refresh(ft);
    let state = js_sys::JSON::parse(r#"{"user":{"id":7,"roles":["admin"]}}"#).unwrap();
    a.broadcast_auth_state(state).unwrap();
    a.broadcast_token_refresh(js_sys::JSON::parse(r#"{"access":"A2"}"#).unwrap())
        .unwrap();
    until(2_000, || {
        !states.borrow().is_empty() && !tokens.borrow().is_empty()
    })
    .await;
    let s = &states.borrow()[0];
    assert_eq!(
        js_sys::JSON::stringify(&s[0]).unwrap().as_string().unwrap(),
        r#"{"user":{"id":7,"roles":["admin"]}}"#
    );
    assert_eq!(s[1].as_string().unwrap(), a.tab_id());
    let t = &tokens.borrow()[0];
    assert_eq!(field(&t[0], "access").as_string().unwrap(), "A2");
}

#[wasm_bindgen_test]
async fn unsubscribe_and_destroy_stop_handlers() {
    let name = channel();
    let a = SessionSync::new(Some(name.clone()), None).unwrap();
    let b = SessionSync::new(Some(name), None).unwrap();
    let (f1, c1) = recorder();
    let (f2, c2) = recorder();
    let off = b.on_logout(f1);
    b.on_logout(f2);
    off.call0(&JsValue::UNDEFINED).unwrap();
    off.call0(&JsValue::UNDEFINED).unwrap(); // twice is harmless
    a.broadcast_logout(None).unwrap();
    until(2_000, || !c2.borrow().is_empty()).await;
    sleep(30).await;
    assert!(c1.borrow().is_empty());
    assert_eq!(c2.borrow().len(), 1);
    assert!(field(&c2.borrow()[0][0], "reason").is_null());

    b.destroy();
    a.broadcast_logout(None).unwrap();
    sleep(100).await;
    assert_eq!(
        c2.borrow().len(),
        1,
        "a destroyed SessionSync hears nothing"
    );
    let err = b.broadcast_logout(None).unwrap_err();
    assert!(describe(&err).contains("destroyed"), "{}", describe(&err));
}

fn describe(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .unwrap_or_default()
}

#[wasm_bindgen_test]
async fn garbage_and_other_versions_go_to_on_error_never_to_handlers() {
    let name = channel();
    let b = SessionSync::new(Some(name.clone()), None).unwrap();
    let (fl, logouts) = recorder();
    let (fe, errors) = recorder();
    b.on_logout(fl);
    b.on_error(fe);
    let raw = web_sys::BroadcastChannel::new(&format!("tidewell-session-sync:{name}")).unwrap();
    for garbage in [
        JsValue::from_f64(42.0),
        JsValue::from_str("{not json"),
        JsValue::from_str(r#"{"v":1,"id":"x","tab":"t","type":"logout","evil":true}"#),
        JsValue::from_str(r#"{"v":1,"id":"x","tab":"t","type":"rm-rf"}"#),
        js_sys::Object::new().into(),
    ] {
        raw.post_message(&garbage).unwrap();
    }
    raw.post_message(&JsValue::from_str(
        r#"{"v":99,"id":"x","tab":"t","type":"logout"}"#,
    ))
    .unwrap();
    until(2_000, || errors.borrow().len() >= 6).await;
    let codes: Vec<String> = errors
        .borrow()
        .iter()
        .map(|c| field(&c[0], "code").as_string().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "malformed",
            "malformed",
            "malformed",
            "malformed",
            "malformed",
            "version"
        ]
    );
    assert!(logouts.borrow().is_empty());
    // A well-formed message still gets through afterwards.
    raw.post_message(&JsValue::from_str(
        r#"{"v":1,"id":"y","tab":"t","type":"logout","reason":"user"}"#,
    ))
    .unwrap();
    until(2_000, || !logouts.borrow().is_empty()).await;
    assert_eq!(logouts.borrow().len(), 1);
    raw.close();
}

#[wasm_bindgen_test]
async fn a_throwing_handler_is_reported_and_the_others_still_run() {
    let name = channel();
    let a = SessionSync::new(Some(name.clone()), None).unwrap();
    let b = SessionSync::new(Some(name), None).unwrap();
    let thrower = Function::new_no_args("throw new Error('boom')");
    let (f, calls) = recorder();
    let (fe, errors) = recorder();
    b.on_logout(thrower);
    b.on_logout(f);
    b.on_error(fe);
    a.broadcast_logout(None).unwrap();
    until(2_000, || {
        !calls.borrow().is_empty() && !errors.borrow().is_empty()
    })
    .await;
    assert_eq!(calls.borrow().len(), 1);
    let e = &errors.borrow()[0][0];
    assert_eq!(field(e, "code").as_string().unwrap(), "handler");
    assert!(field(e, "message").as_string().unwrap().contains("boom"));
}

#[wasm_bindgen_test]
fn bad_arguments_throw_clear_errors() {
    let a = SessionSync::new(Some(channel()), None).unwrap();
    let cyclic = js_sys::Object::new();
    Reflect::set(&cyclic, &"me".into(), &cyclic).unwrap();
    let e = a.broadcast_auth_state(cyclic.into()).unwrap_err();
    assert!(describe(&e).contains("JSON"), "{}", describe(&e));
    let big = JsValue::from_str(&"x".repeat(70 * 1024));
    let e = a.broadcast_auth_state(big).unwrap_err();
    assert!(describe(&e).contains("64"), "{}", describe(&e));
    let e = SessionSync::new(Some(String::new()), None).unwrap_err();
    assert!(describe(&e).contains("channel"));
    let e = SessionSync::new(Some(channel()), options("carrier-pigeon")).unwrap_err();
    assert!(describe(&e).contains("transport"));
    let e = RealtimeClient::new("http://x".into(), "t".into(), None).unwrap_err();
    assert!(describe(&e).contains("ws://"));
    let parse = |json: &str| js_sys::JSON::parse(json).unwrap();
    let url = || String::from("ws://127.0.0.1:9/ws");
    let e = RealtimeClient::new(
        url(),
        "t".into(),
        Some(parse(r#"{"shared":"yes"}"#).unchecked_into()),
    )
    .unwrap_err();
    assert!(describe(&e).contains("shared"), "{}", describe(&e));
    let e = RealtimeClient::new(
        url(),
        "t".into(),
        Some(parse(r#"{"shared":true,"channel":""}"#).unchecked_into()),
    )
    .unwrap_err();
    assert!(describe(&e).contains("channel"), "{}", describe(&e));
    let rt = RealtimeClient::new(url(), "t".into(), None).unwrap();
    let handler: Function = Closure::<dyn FnMut()>::new(|| {})
        .into_js_value()
        .unchecked_into();
    let e = rt
        .subscribe(
            "payment:1".into(),
            handler.clone(),
            Some(parse(r#"{"since":5}"#).unchecked_into()),
        )
        .unwrap_err();
    assert!(describe(&e).contains("since"), "{}", describe(&e));
    let e = rt.subscribe("bad room".into(), handler, None).unwrap_err();
    assert!(describe(&e).contains("room"), "{}", describe(&e));
    rt.close();
}

#[wasm_bindgen_test]
fn local_storage_transport_can_be_chosen() {
    let s = SessionSync::new(Some(channel()), options("local-storage")).unwrap();
    assert_eq!(s.transport(), "local-storage");
    s.broadcast_logout(None).unwrap();
    s.destroy();
}

/// `fn` for refreshOnce: counts calls, resolves `{"access": "A<n>"}` after `ms`.
fn counting_refresh(count: Rc<RefCell<u32>>, ms: i32) -> Function {
    Closure::<dyn FnMut() -> Promise>::new(move || {
        *count.borrow_mut() += 1;
        let n = *count.borrow();
        Promise::new(&mut |resolve, _| {
            let tokens = js_sys::JSON::parse(&format!(r#"{{"access":"A{n}"}}"#)).unwrap();
            let done = Closure::once_into_js(move || {
                resolve.call1(&JsValue::UNDEFINED, &tokens).unwrap();
            });
            web_sys::window()
                .unwrap()
                .set_timeout_with_callback_and_timeout_and_arguments_0(done.unchecked_ref(), ms)
                .unwrap();
        })
    })
    .into_js_value()
    .unchecked_into()
}

#[wasm_bindgen_test]
async fn refresh_once_refreshes_once_across_tabs() {
    let name = channel();
    let tabs: Vec<SessionSync> = (0..3)
        .map(|_| SessionSync::new(Some(name.clone()), None).unwrap())
        .collect();
    let count = Rc::new(RefCell::new(0));
    let f = counting_refresh(Rc::clone(&count), 100);
    let promises: Vec<Promise> = tabs
        .iter()
        .map(|t| t.refresh_once(f.clone(), JsValue::UNDEFINED))
        .collect();
    // A second call in the same tab joins the refresh in flight.
    let again = tabs[0].refresh_once(f.clone(), JsValue::UNDEFINED);
    for p in promises.into_iter().chain([again]) {
        let tokens = JsFuture::from(p).await.unwrap();
        assert_eq!(field(&tokens, "access").as_string().unwrap(), "A1");
    }
    assert_eq!(*count.borrow(), 1, "one refresh for three tabs");
    // Later, a new refresh runs again.
    let tokens = JsFuture::from(tabs[1].refresh_once(f, JsValue::UNDEFINED))
        .await
        .unwrap();
    assert_eq!(field(&tokens, "access").as_string().unwrap(), "A2");
}

#[wasm_bindgen_test]
async fn a_refresh_that_hangs_times_out_and_releases_the_lock() {
    let name = channel();
    let a = SessionSync::new(Some(name.clone()), None).unwrap();
    let b = SessionSync::new(Some(name), None).unwrap();
    let hang = Function::new_no_args("return new Promise(() => {})");
    let timeout = js_sys::Object::new();
    Reflect::set(&timeout, &"timeoutMs".into(), &JsValue::from_f64(100.0)).unwrap();
    let hung = a.refresh_once(hang, timeout.into());
    let count = Rc::new(RefCell::new(0));
    let waiting = b.refresh_once(counting_refresh(Rc::clone(&count), 10), JsValue::UNDEFINED);
    let err = JsFuture::from(hung).await.unwrap_err();
    assert!(
        describe(&err).contains("did not settle"),
        "{}",
        describe(&err)
    );
    let tokens = JsFuture::from(waiting).await.unwrap();
    assert_eq!(field(&tokens, "access").as_string().unwrap(), "A1");
    assert_eq!(*count.borrow(), 1);
    // A refresh function that rejects: the caller sees its error. (First let b's broadcast of
    // A1 reach a: tokens arriving after a call starts would rightly be its answer.)
    sleep(100).await;
    let failing = Function::new_no_args("return Promise.reject(new Error('HTTP 401'))");
    let err = JsFuture::from(a.refresh_once(failing, JsValue::UNDEFINED))
        .await
        .unwrap_err();
    assert!(describe(&err).contains("HTTP 401"));
}

#[wasm_bindgen_test]
fn device_identity_is_stable_until_cleared() {
    let id = get_device_id();
    assert!(tidewell_session_sync::device::is_device_id(&id), "{id}");
    assert_eq!(get_device_id(), id);
    clear_device_id();
    let new = get_device_id();
    assert_ne!(new, id);
    assert!(tidewell_session_sync::device::is_device_id(&new));
    assert!(
        get_device_name().contains("Chrome"),
        "{}",
        get_device_name()
    );
    assert_eq!(get_device_type(), "desktop");
}
