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
//! ```
//! use tidewell_session_sync::message::{Kind, Message};
//!
//! let m = Message::new("m-1", "tab-a", Kind::Logout { reason: Some("user".into()), session: None });
//! let text = m.encode()?;
//! assert_eq!(Message::decode(&text)?, m);
//! assert!(Message::decode(r#"{"v":2,"type":"logout"}"#).is_err());
//! # Ok::<(), tidewell_session_sync::Error>(())
//! ```

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::Error;

/// The format version this build speaks.
pub const VERSION: u64 = 1;

/// Messages longer than this (in bytes of JSON) are refused, sent or received.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Ids (message and tab) longer than this are refused.
const MAX_ID_BYTES: usize = 128;

/// One cross-tab message.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// The format version, [`VERSION`].
    pub v: u64,
    /// Unique per message.
    pub id: String,
    /// The sending tab.
    pub tab: String,
    /// What happened.
    pub kind: Kind,
}

/// What a message says. Application data (`state`, `tokens`) stays JSON text: the browser hands
/// it to `JSON.parse` as it is.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
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
        /// The new state, as JSON text.
        state: Json,
    },
    /// New tokens, from a refresh in the sending tab.
    TokenRefresh {
        /// The tokens, as JSON text.
        tokens: Json,
    },
    /// A refresh in the sending tab failed; tabs waiting for it stop waiting.
    RefreshFailed {
        /// The error, as text.
        error: String,
    },
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

impl Kind {
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

/// The wire form: every field of every kind, each optional, unknown fields refused. One pass of
/// one small deserializer (this code ships in the browser, where size counts).
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire<'a> {
    #[serde(default)]
    v: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tab: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session: Option<String>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    state: Option<&'a RawValue>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    tokens: Option<&'a RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Only the version (other fields ignored): tells a message of another version from garbage.
#[derive(Deserialize)]
struct VersionProbe {
    #[serde(default)]
    v: Option<u64>,
}

impl Message {
    /// A message of this build's version.
    pub fn new(id: impl Into<String>, tab: impl Into<String>, kind: Kind) -> Self {
        Self {
            v: VERSION,
            id: id.into(),
            tab: tab.into(),
            kind,
        }
    }

    /// The JSON text; refused when over [`MAX_MESSAGE_BYTES`].
    pub fn encode(&self) -> Result<String, Error> {
        let mut wire = Wire {
            v: Some(self.v),
            id: Some(self.id.clone()),
            tab: Some(self.tab.clone()),
            kind: Some(self.kind.name().to_owned()),
            ..Wire::default()
        };
        match &self.kind {
            Kind::Logout { reason, session } => {
                wire.reason.clone_from(reason);
                wire.session.clone_from(session);
            }
            Kind::AuthState { state } => wire.state = Some(&state.0),
            Kind::TokenRefresh { tokens } => wire.tokens = Some(&tokens.0),
            Kind::RefreshFailed { error } => wire.error = Some(error.clone()),
        }
        let text =
            serde_json::to_string(&wire).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        if text.len() > MAX_MESSAGE_BYTES {
            return Err(Error::InvalidArgument(format!(
                "a session-sync message is {} bytes, over the 64 KiB limit; broadcast less \
                 (for example an id, not a whole profile)",
                text.len()
            )));
        }
        Ok(text)
    }

    /// Parses and validates one message: the version first (so a message of another version is
    /// reported as such, not as malformed), then the shape.
    pub fn decode(text: &str) -> Result<Self, Error> {
        if text.len() > MAX_MESSAGE_BYTES {
            return Err(Error::Malformed(format!(
                "{} bytes, over the 64 KiB limit",
                text.len()
            )));
        }
        // serde would also read a struct from a JSON array.
        if !text.trim_start().starts_with('{') {
            return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                Ok(_) => Error::Malformed("not a JSON object".into()),
                Err(e) => Error::Malformed(format!("not JSON: {e}")),
            });
        }
        let wire: Wire<'_> = match serde_json::from_str(text) {
            Ok(w) => w,
            Err(e) => {
                // Tell another version apart from garbage: a JSON object whose `v` is not ours.
                let version = serde_json::from_str::<VersionProbe>(text)
                    .ok()
                    .and_then(|p| p.v);
                return Err(match version {
                    Some(found) if found != VERSION => Error::Version {
                        found,
                        expected: VERSION,
                    },
                    _ if e.is_syntax() || e.is_eof() => Error::Malformed(format!("not JSON: {e}")),
                    _ => Error::Malformed(e.to_string()),
                });
            }
        };
        match wire.v {
            Some(VERSION) => {}
            Some(found) => {
                return Err(Error::Version {
                    found,
                    expected: VERSION,
                });
            }
            None => return Err(Error::Malformed("no version field `v`".into())),
        }
        let mut ids =
            [("id", wire.id), ("tab", wire.tab)]
                .into_iter()
                .map(|(field, id)| match id {
                    Some(id) if !id.is_empty() && id.len() <= MAX_ID_BYTES => Ok(id),
                    Some(_) => Err(Error::Malformed(format!(
                        "`{field}` must be 1 to {MAX_ID_BYTES} bytes"
                    ))),
                    None => Err(Error::Malformed(format!("missing field `{field}`"))),
                });
        let id = ids
            .next()
            .unwrap_or_else(|| Err(Error::Malformed("id".into())))?;
        let tab = ids
            .next()
            .unwrap_or_else(|| Err(Error::Malformed("tab".into())))?;
        let only = |allowed: &[&str]| -> Result<(), Error> {
            let present = [
                ("reason", wire.reason.is_some()),
                ("session", wire.session.is_some()),
                ("state", wire.state.is_some()),
                ("tokens", wire.tokens.is_some()),
                ("error", wire.error.is_some()),
            ];
            match present.iter().find(|(f, p)| *p && !allowed.contains(f)) {
                Some((f, _)) => Err(Error::Malformed(format!(
                    "unknown field `{f}` for this type"
                ))),
                None => Ok(()),
            }
        };
        let json = |raw: Option<&RawValue>, field: &str| {
            raw.map(|r| Json(r.to_owned()))
                .ok_or_else(|| Error::Malformed(format!("missing field `{field}`")))
        };
        let kind = match wire.kind.as_deref() {
            Some("logout") => {
                only(&["reason", "session"])?;
                Kind::Logout {
                    reason: wire.reason,
                    session: wire.session,
                }
            }
            Some("auth-state") => {
                only(&["state"])?;
                Kind::AuthState {
                    state: json(wire.state, "state")?,
                }
            }
            Some("token-refresh") => {
                only(&["tokens"])?;
                Kind::TokenRefresh {
                    tokens: json(wire.tokens, "tokens")?,
                }
            }
            Some("refresh-failed") => {
                only(&["error"])?;
                Kind::RefreshFailed {
                    error: wire
                        .error
                        .ok_or_else(|| Error::Malformed("missing field `error`".into()))?,
                }
            }
            Some(other) => return Err(Error::Malformed(format!("unknown type `{other}`"))),
            None => return Err(Error::Malformed("no `type` field".into())),
        };
        Ok(Self {
            v: VERSION,
            id,
            tab,
            kind,
        })
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
            (r#"{"v":"1","type":"logout"}"#, "expected u64"),
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
