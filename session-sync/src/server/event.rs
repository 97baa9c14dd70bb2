//! The `auth.session.revoked` event.

use serde::{Deserialize, Serialize};
use tidewell_core::Event;

/// A device's session was revoked: event type `auth.session.revoked`, payload version 1.
///
/// [`DeviceRegistry`](super::DeviceRegistry) publishes one per revoked device. Gateways feed
/// [`RevokedSessions`](super::RevokedSessions) with it, and the WebSocket bridge closes the
/// session's connections with it (`Bridge::revoke_sessions` reads `session_id` and `device_id`
/// from the payload).
///
/// Payload (JSON):
///
/// ```json
/// { "user_id": "user-7", "device_id": "5f0c…", "session_id": "s-91…", "reason": "revoked" }
/// ```
///
/// ```
/// use tidewell_session_sync::server::{RevokeReason, SessionRevoked};
///
/// let event = SessionRevoked::new("user-7", "device-1", "session-1", RevokeReason::Revoked);
/// let json = serde_json::to_value(&event)?;
/// assert_eq!(json["session_id"], "session-1");
/// assert_eq!(json["reason"], "revoked");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionRevoked {
    /// The user whose session it was.
    pub user_id: String,
    /// The device the session was on.
    pub device_id: String,
    /// The revoked session (the `sid` claim of its tokens).
    pub session_id: String,
    /// Why it was revoked.
    pub reason: RevokeReason,
}

impl SessionRevoked {
    /// The event for `session_id` of `user_id` on `device_id`.
    pub fn new(
        user_id: impl Into<String>,
        device_id: impl Into<String>,
        session_id: impl Into<String>,
        reason: RevokeReason,
    ) -> Self {
        Self {
            user_id: user_id.into(),
            device_id: device_id.into(),
            session_id: session_id.into(),
            reason,
        }
    }
}

impl Event for SessionRevoked {
    const TYPE: &'static str = "auth.session.revoked";
    const VERSION: u16 = 1;
}

/// Why a session was revoked. In JSON: `"revoked"`, `"revoked_others"`; a reason this version
/// does not know reads as [`RevokeReason::Other`], so newer producers do not break older
/// consumers.
///
/// ```
/// use tidewell_session_sync::server::RevokeReason;
///
/// assert_eq!(serde_json::to_string(&RevokeReason::RevokedOthers)?, r#""revoked_others""#);
/// let later: RevokeReason = serde_json::from_str(r#""password_changed""#)?;
/// assert_eq!(later, RevokeReason::Other);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RevokeReason {
    /// The device was revoked by itself ([`DeviceRegistry::revoke`](super::DeviceRegistry::revoke)).
    Revoked,
    /// The user signed out every other device
    /// ([`DeviceRegistry::revoke_others`](super::DeviceRegistry::revoke_others)).
    RevokedOthers,
    /// A reason this version does not know.
    #[serde(other)]
    Other,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use tidewell_core::Envelope;

    use super::*;

    #[test]
    fn envelope_round_trip_and_payload_shape() {
        let event = SessionRevoked::new("u", "d", "s", RevokeReason::RevokedOthers);
        let bytes = Envelope::new("auth", event.clone()).to_json().unwrap();
        let raw: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(raw["type"], "auth.session.revoked");
        assert_eq!(raw["version"], 1);
        assert_eq!(
            raw["payload"],
            serde_json::json!({"user_id": "u", "device_id": "d", "session_id": "s", "reason": "revoked_others"})
        );
        let back = Envelope::<SessionRevoked>::from_json(&bytes).unwrap();
        assert_eq!(back.payload(), &event);
    }
}
