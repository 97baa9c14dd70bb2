//! The cross-tab message: one JSON object per message, versioned, validated before any handler
//! sees it.
//!
//! ```json
//! {"v":1,"id":"6f1c…","tab":"9b2e…","type":"logout","reason":"user"}
//! ```
//!
//! `v` is [`VERSION`]; `id` is unique per message (the `localStorage` transport needs it to tell
//! two equal messages apart); `tab` is the sender's tab id (a tab ignores its own messages). The
//! other fields depend on `type`, see [`Kind`]. Anything else (not JSON, not an object, another
//! version, an unknown type or field, over [`MAX_MESSAGE_BYTES`]) is refused with an [`Error`]
//! and reaches no handler.
//!
//! The rules are written once, against [`Object`], a view of a parsed JSON object: natively over
//! `serde_json` ([`Message::decode`]), in the browser over the object `JSON.parse` returns (so the
//! `.wasm` carries no JSON parser of its own).
//!
//! ```
//! use tidewell_session_sync::message::{Kind, Message};
//!
//! let m = Message::new("m-1", "tab-a", Kind::Logout { reason: Some("user".into()), session: None });
//! let text = m.encode()?;
//! assert_eq!(Message::decode(&text)?, m);
//! assert!(Message::decode(r#"{"v":2,"type":"logout"}"#).is_err());
//! # Ok::<(), tidewell_session_sync::Error>(())
//! ```

use serde_json::value::RawValue;

use crate::Error;

/// The format version this build speaks.
pub const VERSION: u64 = 1;

/// Messages longer than this (in bytes of JSON) are refused, sent or received.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Ids (message and tab) longer than this are refused.
const MAX_ID_BYTES: usize = 128;

/// One cross-tab message; `P` is how application data (auth state, tokens) is held: [`Json`]
/// text natively, the JavaScript value in the browser.
#[derive(Clone, Debug, PartialEq)]
pub struct Message<P = Json> {
    /// The format version, [`VERSION`].
    pub v: u64,
    /// Unique per message.
    pub id: String,
    /// The sending tab.
    pub tab: String,
    /// What happened.
    pub kind: Kind<P>,
}

/// What a message says.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind<P = Json> {
    /// The user logged out (in the sending tab, or the device was revoked).
    Logout {
        /// Why, as the sender put it (`"user"`, `"revoked"`, ...).
        reason: Option<String>,
        /// With a revocation: the revoked session, so that a tab handles each revocation once
        /// however many tabs report it.
        session: Option<String>,
    },
    /// The application's auth state changed (any JSON value the application chooses).
    AuthState {
        /// The new state.
        state: P,
    },
    /// New tokens, from a refresh in the sending tab.
    TokenRefresh {
        /// The tokens.
        tokens: P,
    },
    /// A refresh in the sending tab failed; tabs waiting for it stop waiting.
    RefreshFailed {
        /// The error, as text.
        error: String,
    },
}

impl<P> Kind<P> {
    /// The `type` field of this kind.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Logout { .. } => "logout",
            Self::AuthState { .. } => "auth-state",
            Self::TokenRefresh { .. } => "token-refresh",
            Self::RefreshFailed { .. } => "refresh-failed",
        }
    }
}

/// A JSON value kept as its text (validated JSON).
#[derive(Clone, Debug)]
pub struct Json(Box<RawValue>);

impl Json {
    /// Validates `text` as one JSON value.
    pub fn new(text: String) -> Result<Self, Error> {
        RawValue::from_string(text)
            .map(Self)
            .map_err(|e| Error::InvalidArgument(format!("not JSON: {e}")))
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for Json {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

/// One field of a parsed JSON object, as the rules need it.
#[derive(Debug)]
pub enum Field<R> {
    /// Not there.
    Absent,
    /// `null`.
    Null,
    /// A string.
    Str(String),
    /// A non-negative integer.
    Uint(u64),
    /// Anything else (kept as the parser holds it).
    Other(R),
}

/// A parsed JSON object: what decoding reads.
pub trait Object {
    /// How the parser holds a value.
    type Raw;
    /// The object's keys.
    fn keys(&self) -> Vec<String>;
    /// The field `key`.
    fn field(&self, key: &str) -> Field<Self::Raw>;
    /// The field `key` as it is, whatever its type (`None` when absent).
    fn raw(&self, key: &str) -> Option<Self::Raw>;
}

impl<P> Message<P> {
    /// A message of this build's version.
    pub fn new(id: impl Into<String>, tab: impl Into<String>, kind: Kind<P>) -> Self {
        Self {
            v: VERSION,
            id: id.into(),
            tab: tab.into(),
            kind,
        }
    }

    /// Validates a parsed JSON object: the version first (so a message of another version is
    /// reported as such, not as malformed), then the type, the fields and the ids.
    pub fn from_object<O: Object<Raw = P>>(object: &O) -> Result<Self, Error> {
        match object.field("v") {
            Field::Uint(VERSION) => {}
            Field::Uint(found) => {
                return Err(Error::Version {
                    found,
                    expected: VERSION,
                });
            }
            Field::Absent => return Err(Error::Malformed("no version field `v`".into())),
            _ => {
                return Err(Error::Malformed(
                    "`v` must be a non-negative integer".into(),
                ));
            }
        }
        let kind = match object.field("type") {
            Field::Str(kind) => kind,
            Field::Absent => return Err(Error::Malformed("no `type` field".into())),
            _ => return Err(Error::Malformed("`type` must be a string".into())),
        };
        let own: &[&str] = match kind.as_str() {
            "logout" => &["reason", "session"],
            "auth-state" => &["state"],
            "token-refresh" => &["tokens"],
            "refresh-failed" => &["error"],
            other => return Err(Error::Malformed(format!("unknown type `{other}`"))),
        };
        if let Some(field) = object.keys().into_iter().find(|k| {
            !["v", "id", "tab", "type"].contains(&k.as_str()) && !own.contains(&k.as_str())
        }) {
            return Err(Error::Malformed(format!("unknown field `{field}`")));
        }
        let id = id_field(object, "id")?;
        let tab = id_field(object, "tab")?;
        let text = |key: &str| match object.field(key) {
            Field::Absent | Field::Null => Ok(None),
            Field::Str(s) => Ok(Some(s)),
            _ => Err(Error::Malformed(format!("`{key}` must be a string"))),
        };
        let raw = |key: &str| {
            object
                .raw(key)
                .ok_or_else(|| Error::Malformed(format!("missing field `{key}`")))
        };
        let kind = match kind.as_str() {
            "logout" => Kind::Logout {
                reason: text("reason")?,
                session: text("session")?,
            },
            "auth-state" => Kind::AuthState {
                state: raw("state")?,
            },
            "token-refresh" => Kind::TokenRefresh {
                tokens: raw("tokens")?,
            },
            _ => Kind::RefreshFailed {
                error: text("error")?
                    .ok_or_else(|| Error::Malformed("missing field `error`".into()))?,
            },
        };
        Ok(Self {
            v: VERSION,
            id,
            tab,
            kind,
        })
    }
}

fn id_field<O: Object>(object: &O, key: &str) -> Result<String, Error> {
    match object.field(key) {
        Field::Str(id) if !id.is_empty() && id.len() <= MAX_ID_BYTES => Ok(id),
        Field::Absent => Err(Error::Malformed(format!("missing field `{key}`"))),
        _ => Err(Error::Malformed(format!(
            "`{key}` must be a string of 1 to {MAX_ID_BYTES} bytes"
        ))),
    }
}

/// The size check of an encoded message.
pub fn check_size(text: &str) -> Result<(), Error> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(Error::InvalidArgument(format!(
            "a session-sync message is {} bytes, over the 64 KiB limit; broadcast less \
             (for example an id, not a whole profile)",
            text.len()
        )));
    }
    Ok(())
}

impl Object for serde_json::Map<String, serde_json::Value> {
    type Raw = Json;

    fn keys(&self) -> Vec<String> {
        self.keys().cloned().collect()
    }

    fn field(&self, key: &str) -> Field<Json> {
        use serde_json::Value;
        match self.get(key) {
            None => Field::Absent,
            Some(Value::Null) => Field::Null,
            Some(Value::String(s)) => Field::Str(s.clone()),
            Some(Value::Number(n)) if n.as_u64().is_some() => {
                Field::Uint(n.as_u64().unwrap_or_default())
            }
            Some(_) => self.raw(key).map_or(Field::Absent, Field::Other),
        }
    }

    fn raw(&self, key: &str) -> Option<Json> {
        self.get(key)
            .and_then(|v| serde_json::value::to_raw_value(v).ok())
            .map(Json)
    }
}

impl Message<Json> {
    /// The JSON text; refused when over [`MAX_MESSAGE_BYTES`].
    pub fn encode(&self) -> Result<String, Error> {
        use serde_json::Value;
        let mut o = serde_json::Map::new();
        o.insert("v".into(), Value::from(self.v));
        o.insert("id".into(), Value::from(self.id.clone()));
        o.insert("tab".into(), Value::from(self.tab.clone()));
        o.insert("type".into(), Value::from(self.kind.name()));
        let raw = |j: &Json| serde_json::from_str::<Value>(j.get()).unwrap_or(Value::Null);
        match &self.kind {
            Kind::Logout { reason, session } => {
                for (k, v) in [("reason", reason), ("session", session)] {
                    if let Some(v) = v {
                        o.insert(k.into(), Value::from(v.clone()));
                    }
                }
            }
            Kind::AuthState { state } => {
                o.insert("state".into(), raw(state));
            }
            Kind::TokenRefresh { tokens } => {
                o.insert("tokens".into(), raw(tokens));
            }
            Kind::RefreshFailed { error } => {
                o.insert("error".into(), Value::from(error.clone()));
            }
        }
        let text = Value::Object(o).to_string();
        check_size(&text)?;
        Ok(text)
    }

    /// Parses and validates one message.
    pub fn decode(text: &str) -> Result<Self, Error> {
        if text.len() > MAX_MESSAGE_BYTES {
            return Err(Error::Malformed(format!(
                "{} bytes, over the 64 KiB limit",
                text.len()
            )));
        }
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::Malformed(format!("not JSON: {e}")))?;
        match value {
            serde_json::Value::Object(o) => Self::from_object(&o),
            _ => Err(Error::Malformed("not a JSON object".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

    use super::*;

    #[test]
    fn every_kind_round_trips() {
        let kinds = [
            Kind::Logout {
                reason: None,
                session: None,
            },
            Kind::Logout {
                reason: Some("revoked".into()),
                session: Some("s-1".into()),
            },
            Kind::AuthState {
                state: Json::new(r#"{"user":{"id":7}}"#.into()).unwrap(),
            },
            Kind::TokenRefresh {
                tokens: Json::new(r#"{"access":"a","refresh":"r"}"#.into()).unwrap(),
            },
            Kind::RefreshFailed {
                error: "HTTP 401".into(),
            },
        ];
        for kind in kinds {
            let m = Message::new("id-1", "tab-1", kind);
            let text = m.encode().unwrap();
            assert!(text.contains(&format!("\"type\":\"{}\"", m.kind.name())));
            assert_eq!(Message::decode(&text).unwrap(), m);
        }
    }

    #[test]
    fn garbage_is_refused_with_the_reason() {
        let cases = [
            ("", "not JSON"),
            ("{", "not JSON"),
            ("42", "not a JSON object"),
            ("[1]", "not a JSON object"),
            (r#"{"type":"logout"}"#, "no version"),
            (r#"{"v":"1","type":"logout"}"#, "non-negative integer"),
            (r#"{"v":1,"id":"a","tab":"b","type":"explode"}"#, "explode"),
            (r#"{"v":1,"id":"a","tab":"b"}"#, "type"),
            (r#"{"v":1,"id":"a","tab":"b","type":"logout","x":1}"#, "x"),
            (r#"{"v":1,"id":"","tab":"b","type":"logout"}"#, "`id`"),
            (r#"{"v":1,"id":"a","type":"logout"}"#, "tab"),
            (r#"{"v":1,"id":"a","tab":"b","type":"auth-state"}"#, "state"),
            (
                r#"{"v":1,"id":"a","tab":"b","type":"logout","reason":5}"#,
                "string",
            ),
        ];
        for (text, needle) in cases {
            match Message::decode(text) {
                Err(Error::Malformed(why)) => {
                    assert!(why.contains(needle), "{text}: {why} lacks {needle}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn null_reason_reads_as_none() {
        let m =
            Message::decode(r#"{"v":1,"id":"a","tab":"b","type":"logout","reason":null}"#).unwrap();
        assert_eq!(
            m.kind,
            Kind::Logout {
                reason: None,
                session: None
            }
        );
    }

    #[test]
    fn another_version_is_told_apart_from_garbage() {
        let err = Message::decode(r#"{"v":2,"id":"a","tab":"b","type":"new-thing"}"#).unwrap_err();
        assert!(matches!(
            err,
            Error::Version {
                found: 2,
                expected: 1
            }
        ));
        assert!(err.to_string().contains("same package version"));
    }

    #[test]
    fn oversized_messages_are_refused_both_ways() {
        let big = "x".repeat(MAX_MESSAGE_BYTES);
        let m = Message::new(
            "a",
            "b",
            Kind::AuthState {
                state: Json::new(format!("\"{big}\"")).unwrap(),
            },
        );
        assert!(matches!(m.encode(), Err(Error::InvalidArgument(_))));
        let text = format!(r#"{{"v":1,"id":"a","tab":"b","type":"logout","reason":"{big}"}}"#);
        assert!(matches!(Message::decode(&text), Err(Error::Malformed(_))));
    }
}
