//! # tidewell-protocol
//!
//! The frames of the Tidewell WebSocket protocol, version [`PROTOCOL_VERSION`]. Every frame is one
//! JSON object in a text message with a `"type"` field. The normative description, with examples
//! and the close codes, is `docs/protocol.md` in the repository; these types are its Rust form,
//! shared by the server, the native client and the browser (the crate builds for `wasm32`).
//!
//! ```
//! use tidewell_protocol::{ClientFrame, ServerFrame, Since};
//!
//! let frame: ClientFrame = serde_json::from_str(
//!     r#"{"type":"subscribe","id":1,"room":"payment:42","since":{"epoch":"e1","offset":17}}"#,
//! )?;
//! assert_eq!(
//!     frame,
//!     ClientFrame::Subscribe {
//!         id: Some(1),
//!         room: "payment:42".into(),
//!         since: Some(Since { epoch: "e1".into(), offset: 17 }),
//!     }
//! );
//! let reply = ServerFrame::Error { id: Some(1), code: "forbidden".into(), message: "not yours".into() };
//! assert_eq!(
//!     serde_json::to_string(&reply)?,
//!     r#"{"type":"error","id":1,"code":"forbidden","message":"not yours"}"#
//! );
//! # Ok::<(), serde_json::Error>(())
//! ```

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Frames a client sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum ClientFrame {
    /// Optional first frame: the protocol version the client speaks. A version the server does
    /// not speak closes the connection with [`close::UNSUPPORTED_PROTOCOL`].
    Hello {
        /// The client's protocol version.
        protocol: u32,
    },
    /// Join a room; with `since`, also receive what was missed after that position.
    Subscribe {
        /// Echoed in the answer ([`ServerFrame::Subscribed`] or [`ServerFrame::Error`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// The room (`payment:42`).
        room: String,
        /// The last position the client has seen in this room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<Since>,
    },
    /// Leave a room.
    Unsubscribe {
        /// Echoed in the answer ([`ServerFrame::Ack`] or [`ServerFrame::Error`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// The room.
        room: String,
    },
}

/// A position in a room's history: offsets grow by one per event within an epoch; a new epoch
/// (the room's history was lost, e.g. the node restarted) starts over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Since {
    /// The room's epoch when the client saw `offset`.
    pub epoch: String,
    /// The offset of the last event the client saw.
    pub offset: u64,
}

/// Frames the server sends.
///
/// Deserializing works from any JSON source; an `event` keeps its envelope as raw JSON text.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerFrame {
    /// The first frame on every connection.
    Welcome {
        /// This connection's id.
        connection_id: String,
        /// The server's protocol version.
        protocol: u32,
        /// Server time, Unix milliseconds.
        server_time_ms: u64,
        /// Rooms the connection joined by itself (`user:<sub>`, `role:<r>`, `device:<d>`,
        /// `broadcast`).
        rooms: Vec<String>,
    },
    /// Answer to a subscribe: joined, and where the room stands.
    Subscribed {
        /// The request's id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// The room.
        room: String,
        /// The room's current epoch.
        epoch: String,
        /// The room's latest offset (0: no event yet).
        offset: u64,
        /// With `since`: whether every missed event follows (`true`), or some could not be
        /// replayed (`false`: epoch changed or too old; reload the state another way).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
    },
    /// Answer to a request that has nothing else to say.
    Ack {
        /// The request's id.
        id: u64,
    },
    /// One event in a room.
    Event {
        /// The room.
        room: String,
        /// The event's offset in the room.
        offset: u64,
        /// The room's epoch.
        epoch: String,
        /// The event envelope (see `docs/events.md`), as the publisher sent it.
        event: Box<RawValue>,
    },
    /// Someone joined or left a room (rooms with presence on).
    Presence {
        /// The room.
        room: String,
        /// The user.
        user: String,
        /// `true`: joined; `false`: left.
        joined: bool,
    },
    /// A request failed, or the server refuses something; the connection stays open unless a
    /// close follows.
    Error {
        /// The request's id, if the error answers one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// A stable code: see [`codes`].
        code: String,
        /// For people.
        message: String,
    },
}

// serde's internally tagged enums buffer their input, and a buffered value cannot hold a
// `RawValue`; so frames are read from their JSON text: the type first, then the variant.
impl<'de> Deserialize<'de> for ServerFrame {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        parse_server_frame(raw.get()).map_err(serde::de::Error::custom)
    }
}

// Long: one arm per server frame type, each checking that frame's fields.
fn parse_server_frame(text: &str) -> Result<ServerFrame, serde_json::Error> {
    #[derive(Deserialize)]
    struct Kind {
        #[serde(rename = "type")]
        kind: String,
    }
    #[derive(Deserialize)]
    struct EventFrame {
        room: String,
        offset: u64,
        epoch: String,
        event: Box<RawValue>,
    }
    #[derive(Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Other {
        Welcome {
            connection_id: String,
            protocol: u32,
            server_time_ms: u64,
            rooms: Vec<String>,
        },
        Subscribed {
            #[serde(default)]
            id: Option<u64>,
            room: String,
            epoch: String,
            offset: u64,
            #[serde(default)]
            recovered: Option<bool>,
        },
        Ack {
            id: u64,
        },
        Presence {
            room: String,
            user: String,
            joined: bool,
        },
        Error {
            #[serde(default)]
            id: Option<u64>,
            code: String,
            message: String,
        },
    }
    if serde_json::from_str::<Kind>(text)?.kind == "event" {
        let e: EventFrame = serde_json::from_str(text)?;
        return Ok(ServerFrame::Event {
            room: e.room,
            offset: e.offset,
            epoch: e.epoch,
            event: e.event,
        });
    }
    Ok(match serde_json::from_str::<Other>(text)? {
        Other::Welcome {
            connection_id,
            protocol,
            server_time_ms,
            rooms,
        } => ServerFrame::Welcome {
            connection_id,
            protocol,
            server_time_ms,
            rooms,
        },
        Other::Subscribed {
            id,
            room,
            epoch,
            offset,
            recovered,
        } => ServerFrame::Subscribed {
            id,
            room,
            epoch,
            offset,
            recovered,
        },
        Other::Ack { id } => ServerFrame::Ack { id },
        Other::Presence { room, user, joined } => ServerFrame::Presence { room, user, joined },
        Other::Error { id, code, message } => ServerFrame::Error { id, code, message },
    })
}

/// Stable error codes in [`ServerFrame::Error`].
pub mod codes {
    /// The frame is not JSON, or not a known frame.
    pub const BAD_FRAME: &str = "bad_frame";
    /// The room name is not valid (`kind:id`, 1 to 128 printable ASCII characters).
    pub const BAD_ROOM: &str = "bad_room";
    /// The authorization hook refused the room.
    pub const FORBIDDEN: &str = "forbidden";
    /// The connection is in as many rooms as it may be.
    pub const TOO_MANY_ROOMS: &str = "too_many_rooms";
    /// Messages arrive faster than the connection may send them.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// Binary messages are not part of the protocol.
    pub const BINARY_NOT_SUPPORTED: &str = "binary_not_supported";
}

/// WebSocket close codes the server uses.
pub mod close {
    /// The server is shutting down; reconnect (to another node).
    pub const GOING_AWAY: u16 = 1001;
    /// A frame broke the protocol badly enough to end the connection.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A message was larger than the limit (64 KiB by default).
    pub const TOO_BIG: u16 = 1009;
    /// The client did not read fast enough and its queue overflowed a room with the
    /// "disconnect" policy; reconnect and recover with `since`.
    pub const SLOW_CONSUMER: u16 = 4000;
    /// The session was revoked; do not reconnect with the same token.
    pub const SESSION_REVOKED: u16 = 4001;
    /// The client's protocol version is not spoken here.
    pub const UNSUPPORTED_PROTOCOL: u16 = 4002;
    /// Too many messages, or too many errors, from the client.
    pub const POLICY: u16 = 4003;
    /// No pong came back in time (sent if the peer is still there to read it).
    pub const HEARTBEAT_TIMEOUT: u16 = 4004;
}

/// Whether `room` is a valid room name: `kind:id` or a bare kind, 1 to 128 visible ASCII
/// characters without spaces.
pub fn is_valid_room(room: &str) -> bool {
    !room.is_empty() && room.len() <= 128 && room.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_frames_and_fields_are_refused() {
        for bad in [
            r#"{"type":"launch"}"#,
            r#"{"type":"subscribe"}"#,
            r#"{"type":"subscribe","room":"a","extra":1}"#,
            r#"not json"#,
        ] {
            assert!(serde_json::from_str::<ClientFrame>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn event_frame_carries_the_envelope_verbatim() {
        let envelope = RawValue::from_string(r#"{"id":"x","type":"a.b"}"#.into()).unwrap();
        let frame = ServerFrame::Event {
            room: "user:7".into(),
            offset: 3,
            epoch: "e".into(),
            event: envelope,
        };
        assert_eq!(
            serde_json::to_string(&frame).unwrap(),
            r#"{"type":"event","room":"user:7","offset":3,"epoch":"e","event":{"id":"x","type":"a.b"}}"#
        );
    }

    #[test]
    fn every_server_frame_reads_back() {
        for text in [
            r#"{"type":"welcome","connection_id":"c","protocol":1,"server_time_ms":5,"rooms":["broadcast"]}"#,
            r#"{"type":"subscribed","id":1,"room":"r","epoch":"e","offset":3,"recovered":true}"#,
            r#"{"type":"ack","id":2}"#,
            r#"{"type":"event","room":"user:7","offset":3,"epoch":"e","event":{"id":"x","type":"a.b"}}"#,
            r#"{"type":"presence","room":"r","user":"u","joined":false}"#,
            r#"{"type":"error","code":"forbidden","message":"no"}"#,
        ] {
            let frame: ServerFrame = serde_json::from_str(text).unwrap();
            assert_eq!(serde_json::to_string(&frame).unwrap(), text);
        }
        assert!(serde_json::from_str::<ServerFrame>(r#"{"type":"nope"}"#).is_err());
        assert!(serde_json::from_str::<ServerFrame>(r#"{"type":"event","room":"r"}"#).is_err());
    }

    #[test]
    fn room_names() {
        assert!(is_valid_room("payment:42"));
        assert!(is_valid_room("broadcast"));
        assert!(!is_valid_room(""));
        assert!(!is_valid_room("has space"));
        assert!(!is_valid_room(&"x".repeat(129)));
    }
}

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
