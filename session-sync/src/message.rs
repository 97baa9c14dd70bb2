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
use serde_json::Value;

use crate::Error;

/// The message format version this build speaks.
pub const VERSION: u64 = 1;

/// Messages longer than this (in bytes of JSON) are refused, sent or received.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Ids (message and tab) longer than this are refused.
const MAX_ID_BYTES: usize = 128;

/// One cross-tab message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The format version, [`VERSION`].
    pub v: u64,
    /// Unique per message.
    pub id: String,
    /// The sending tab.
    pub tab: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: Kind,
}

/// What a message says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Kind {
    /// The user logged out (in the sending tab, or the device was revoked).
    Logout {
        /// Why, as the sender put it (`"user"`, `"revoked"`, ...).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// With a revocation: the revoked session, so that a tab handles each revocation once
        /// however many tabs report it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<String>,
    },
    /// The application's auth state changed (any JSON value the application chooses).
    AuthState {
        /// The new state.
        state: Value,
    },
    /// New tokens, from a refresh in the sending tab.
    TokenRefresh {
        /// The tokens, as the application's refresh function returned them.
        tokens: Value,
    },
    /// A refresh in the sending tab failed; tabs waiting for it stop waiting.
    RefreshFailed {
        /// The error, as text.
        error: String,
    },
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
        let text =
            serde_json::to_string(self).map_err(|e| Error::InvalidArgument(e.to_string()))?;
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
                "{} bytes, over the {MAX_MESSAGE_BYTES}-byte limit",
                text.len()
            )));
        }
        let value: Value =
            serde_json::from_str(text).map_err(|e| Error::Malformed(format!("not JSON: {e}")))?;
        let Some(object) = value.as_object() else {
            return Err(Error::Malformed("not a JSON object".into()));
        };
        match object.get("v").and_then(Value::as_u64) {
            Some(VERSION) => {}
            Some(found) => {
                return Err(Error::Version {
                    found,
                    expected: VERSION,
                });
            }
            None => return Err(Error::Malformed("no version field `v`".into())),
        }
        // serde's `deny_unknown_fields` does not combine with `flatten`: check the fields here.
        let own: &[&str] = match object.get("type").and_then(Value::as_str) {
            Some("logout") => &["reason", "session"],
            Some("auth-state") => &["state"],
            Some("token-refresh") => &["tokens"],
            Some("refresh-failed") => &["error"],
            Some(other) => return Err(Error::Malformed(format!("unknown type `{other}`"))),
            None => return Err(Error::Malformed("no `type` field".into())),
        };
        if let Some(field) = object.keys().find(|k| {
            !["v", "id", "tab", "type"].contains(&k.as_str()) && !own.contains(&k.as_str())
        }) {
            return Err(Error::Malformed(format!("unknown field `{field}`")));
        }
        let message: Self =
            serde_json::from_value(value).map_err(|e| Error::Malformed(e.to_string()))?;
        for (field, id) in [("id", &message.id), ("tab", &message.tab)] {
            if id.is_empty() || id.len() > MAX_ID_BYTES {
                return Err(Error::Malformed(format!(
                    "`{field}` must be 1 to {MAX_ID_BYTES} bytes"
                )));
            }
        }
        Ok(message)
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
                state: serde_json::json!({"user": {"id": 7}}),
            },
            Kind::TokenRefresh {
                tokens: serde_json::json!({"access": "a", "refresh": "r"}),
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
            (r#"{"v":"1","type":"logout"}"#, "no version"),
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
                state: Value::String(big.clone()),
            },
        );
        assert!(matches!(m.encode(), Err(Error::InvalidArgument(_))));
        let text = format!(r#"{{"v":1,"id":"a","tab":"b","type":"logout","reason":"{big}"}}"#);
        assert!(matches!(Message::decode(&text), Err(Error::Malformed(_))));
    }
}
