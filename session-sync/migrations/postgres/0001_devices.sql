-- The devices of each user (tidewell-session-sync, DeviceRegistry). Times are Unix milliseconds.
-- Same schema as migrations/sqlite/0001_devices.sql, with INTEGER there for BIGINT here.
CREATE TABLE devices (
    user_id        TEXT   NOT NULL,
    device_id      TEXT   NOT NULL,
    session_id     TEXT   NOT NULL,
    name           TEXT   NOT NULL,
    device_type    TEXT   NOT NULL
        CHECK (device_type IN ('desktop', 'mobile', 'tablet', 'unknown')),
    user_agent     TEXT   NOT NULL,
    created_at     BIGINT NOT NULL,
    last_active_at BIGINT NOT NULL,
    revoked_at     BIGINT,
    PRIMARY KEY (user_id, device_id)
);

CREATE INDEX devices_session_id ON devices (session_id);

-- Every session ever revoked. A device row holds only its current session: when the device logs
-- in again, the new session replaces the revoked one there, and this table keeps the old one
-- revoked.
CREATE TABLE revoked_sessions (
    session_id TEXT   NOT NULL PRIMARY KEY,
    user_id    TEXT   NOT NULL,
    device_id  TEXT   NOT NULL,
    revoked_at BIGINT NOT NULL
);
