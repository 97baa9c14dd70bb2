//! The events the auth service publishes (through its outbox).

use serde::{Deserialize, Serialize};
use tidewell_core::Event;

/// `auth.user.created`: a new account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCreated {
    /// The user id.
    pub user_id: String,
    /// The email address.
    pub email: String,
    /// The display name.
    pub name: String,
    /// `user` or `admin`.
    pub role: String,
}
impl Event for UserCreated {
    const TYPE: &'static str = "auth.user.created";
    const VERSION: u16 = 1;
}

/// `auth.user.login`: a sign-in, opening a session on a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserLoggedIn {
    /// The user id.
    pub user_id: String,
    /// The new session.
    pub session_id: String,
    /// The device.
    pub device_id: String,
}
impl Event for UserLoggedIn {
    const TYPE: &'static str = "auth.user.login";
    const VERSION: u16 = 1;
}

/// `auth.user.logout`: a session ended by its user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserLoggedOut {
    /// The user id.
    pub user_id: String,
    /// The session that ended.
    pub session_id: String,
}
impl Event for UserLoggedOut {
    const TYPE: &'static str = "auth.user.logout";
    const VERSION: u16 = 1;
}

/// `auth.user.updated`: the account's name changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserUpdated {
    /// The user id.
    pub user_id: String,
    /// The email address.
    pub email: String,
    /// The display name now.
    pub name: String,
}
impl Event for UserUpdated {
    const TYPE: &'static str = "auth.user.updated";
    const VERSION: u16 = 1;
}

/// `auth.user.deleted`: the account is gone (its sessions were revoked first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDeleted {
    /// The user id.
    pub user_id: String,
}
impl Event for UserDeleted {
    const TYPE: &'static str = "auth.user.deleted";
    const VERSION: u16 = 1;
}
