//! The registry's statements, each written once in SQL that Postgres and SQLite both accept.

/// The columns of a [`Device`], in `DeviceRow` order (a macro so that `concat!` can use it).
macro_rules! columns {
    () => {
        "user_id, device_id, session_id, name, device_type, user_agent, created_at, \
         last_active_at, revoked_at"
    };
}

/// Inserts a device, or starts a new session on a known one: the new session replaces the old,
/// name, type, user agent and last activity are updated, the revocation cleared; `created_at`
/// stays.
pub(crate) const REGISTER: &str = concat!(
    "INSERT INTO devices (",
    columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $7, NULL) \
     ON CONFLICT (user_id, device_id) DO UPDATE SET \
     session_id = excluded.session_id, name = excluded.name, \
     device_type = excluded.device_type, user_agent = excluded.user_agent, \
     last_active_at = excluded.last_active_at, revoked_at = NULL \
     RETURNING ",
    columns!()
);

/// Moves last activity forward (never back) on a device that is not revoked.
pub(crate) const TOUCH: &str = "UPDATE devices \
     SET last_active_at = CASE WHEN last_active_at < $3 THEN $3 ELSE last_active_at END \
     WHERE user_id = $1 AND device_id = $2 AND revoked_at IS NULL";

/// The devices of a user that are not revoked, most recently active first.
pub(crate) const LIST: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM devices WHERE user_id = $1 AND revoked_at IS NULL \
     ORDER BY last_active_at DESC, created_at DESC, device_id ASC"
);

/// Revokes one device; an earlier revocation time is kept.
pub(crate) const REVOKE: &str = concat!(
    "UPDATE devices SET revoked_at = COALESCE(revoked_at, $3) \
     WHERE user_id = $1 AND device_id = $2 RETURNING ",
    columns!()
);

/// Revokes every device of a user that is not revoked yet, except one.
pub(crate) const REVOKE_OTHERS: &str = concat!(
    "UPDATE devices SET revoked_at = $3 \
     WHERE user_id = $1 AND device_id <> $2 AND revoked_at IS NULL RETURNING ",
    columns!()
);

/// Remembers a revoked session (for good: the device row may get a new session later).
pub(crate) const RECORD_REVOKED: &str = "INSERT INTO revoked_sessions \
     (session_id, user_id, device_id, revoked_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (session_id) DO NOTHING";

pub(crate) const IS_REVOKED: &str = "SELECT COUNT(*) FROM revoked_sessions WHERE session_id = $1";

/// Forgets the revoked sessions, and the revoked devices, revoked before a time.
pub(crate) const PRUNE_SESSIONS: &str = "DELETE FROM revoked_sessions WHERE revoked_at < $1";
pub(crate) const PRUNE_DEVICES: &str =
    "DELETE FROM devices WHERE revoked_at IS NOT NULL AND revoked_at < $1";
