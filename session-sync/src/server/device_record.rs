//! A device record: what the registry stores ([`Device`]), what a sign-in gives it
//! ([`NewDevice`]), and the checks on ids and text from the network.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::Error;
use crate::device::{DeviceType, describe};

/// The longest user, device or session id accepted, in bytes.
pub(crate) const MAX_ID_LEN: usize = 256;
/// Device names longer than this (in bytes) are cut.
pub(crate) const MAX_NAME_LEN: usize = 256;
/// User agents longer than this (in bytes) are cut.
pub(crate) const MAX_USER_AGENT_LEN: usize = 1024;

/// One row of `devices`, as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct DeviceRow {
    pub(crate) user_id: String,
    pub(crate) device_id: String,
    pub(crate) session_id: String,
    pub(crate) name: String,
    pub(crate) device_type: String,
    pub(crate) user_agent: String,
    pub(crate) created_at: i64,
    pub(crate) last_active_at: i64,
    pub(crate) revoked_at: Option<i64>,
}

impl From<DeviceRow> for Device {
    fn from(row: DeviceRow) -> Self {
        let ms = |t: i64| u64::try_from(t).unwrap_or(0);
        Self {
            // The table's CHECK constraint admits only the four names.
            device_type: DeviceType::parse(&row.device_type).unwrap_or(DeviceType::Unknown),
            user_id: row.user_id,
            device_id: row.device_id,
            session_id: row.session_id,
            name: row.name,
            user_agent: row.user_agent,
            created_at_ms: ms(row.created_at),
            last_active_at_ms: ms(row.last_active_at),
            revoked_at_ms: row.revoked_at.map(ms),
        }
    }
}

/// A device a user signed in on, as the registry holds it. Times are Unix milliseconds (what
/// JavaScript's `Date` takes).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Device {
    /// The user.
    pub user_id: String,
    /// The device (one browser profile: `SessionSync`'s device id).
    pub device_id: String,
    /// The device's current session (the `sid` claim of its tokens).
    pub session_id: String,
    /// A readable name, e.g. `"Firefox on Linux"`.
    pub name: String,
    /// The kind of device.
    pub device_type: DeviceType,
    /// The `User-Agent` of the last sign-in (control characters removed, cut at 1024 bytes).
    pub user_agent: String,
    /// When the device first signed in.
    pub created_at_ms: u64,
    /// The last sign-in or [`DeviceRegistry::touch`](super::DeviceRegistry::touch).
    pub last_active_at_ms: u64,
    /// When the device was revoked; `None` while it is signed in.
    pub revoked_at_ms: Option<u64>,
}

impl Device {
    /// Whether the device is revoked.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tidewell_session_sync::Error> {
    /// # use tidewell_session_sync::server::{DeviceRegistry, NewDevice};
    /// # let registry = DeviceRegistry::connect("sqlite::memory:").await?;
    /// let device = registry.register(NewDevice::new("user-1", "device-1", "session-1", "")).await?;
    /// assert!(!device.is_revoked());
    /// assert!(registry.revoke("user-1", "device-1").await?.is_revoked());
    /// # Ok(()) }
    /// ```
    pub fn is_revoked(&self) -> bool {
        self.revoked_at_ms.is_some()
    }
}

/// A sign-in to register with [`DeviceRegistry::register`](super::DeviceRegistry::register).
///
/// [`NewDevice::new`] names the device and tells its type from the user agent
/// ([`describe`](crate::device::describe)); set the fields to override them.
///
/// ```
/// use tidewell_session_sync::device::DeviceType;
/// use tidewell_session_sync::server::NewDevice;
///
/// let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
/// let mut device = NewDevice::new("user-1", "device-1", "session-1", ua);
/// assert_eq!(device.name, "Firefox on Linux");
/// assert_eq!(device.device_type, DeviceType::Desktop);
/// device.name = "Work laptop".into();
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewDevice {
    /// The user (1 to 256 bytes, no control characters).
    pub user_id: String,
    /// The device (1 to 256 bytes, no control characters).
    pub device_id: String,
    /// The session just opened (1 to 256 bytes, no control characters).
    pub session_id: String,
    /// A readable name (control characters removed, cut at 256 bytes; empty: named from the
    /// user agent).
    pub name: String,
    /// The kind of device.
    pub device_type: DeviceType,
    /// The `User-Agent` header (control characters removed, cut at 1024 bytes).
    pub user_agent: String,
}

impl NewDevice {
    /// A sign-in of `user_id` on `device_id` with session `session_id`, named and typed from
    /// `user_agent`.
    pub fn new(
        user_id: impl Into<String>,
        device_id: impl Into<String>,
        session_id: impl Into<String>,
        user_agent: impl Into<String>,
    ) -> Self {
        let user_agent = user_agent.into();
        let description = describe(&user_agent);
        Self {
            user_id: user_id.into(),
            device_id: device_id.into(),
            session_id: session_id.into(),
            name: description.name,
            device_type: description.device_type,
            user_agent,
        }
    }
}

/// Checks a user, device or session id: 1 to [`MAX_ID_LEN`] bytes, no control characters.
pub(crate) fn check_id(what: &str, id: &str) -> Result<(), Error> {
    let problem = if id.is_empty() {
        "is empty".to_owned()
    } else if id.len() > MAX_ID_LEN {
        format!(
            "is {} bytes long; at most {MAX_ID_LEN} are accepted",
            id.len()
        )
    } else if id.chars().any(char::is_control) {
        "holds a control character".to_owned()
    } else {
        return Ok(());
    };
    Err(Error::InvalidArgument(format!("the {what} {problem}")))
}

/// `text` without control characters, cut at a character boundary to at most `max` bytes.
pub(crate) fn clean_text(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

/// Now, in Unix milliseconds (0 before 1970, saturating far in the future).
pub(crate) fn now_ms() -> i64 {
    unix_ms(SystemTime::now())
}

/// `t` in Unix milliseconds, as the tables store times (0 before 1970, saturating).
pub(crate) fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(check_id("user id", "u-1").is_ok());
        assert!(check_id("user id", &"x".repeat(MAX_ID_LEN)).is_ok());
        for (id, expect) in [
            (String::new(), "the user id is empty"),
            ("x".repeat(MAX_ID_LEN + 1), "at most 256"),
            ("a\0b".to_owned(), "control character"),
        ] {
            let err = check_id("user id", &id).unwrap_err().to_string();
            assert!(err.contains(expect), "{err}");
        }
    }

    #[test]
    fn text_is_cleaned_and_cut_on_a_char_boundary() {
        assert_eq!(clean_text("a\u{0}b\nc", 10), "abc");
        assert_eq!(clean_text("ééé", 5), "éé");
        assert_eq!(clean_text("short", 1024), "short");
    }
}
