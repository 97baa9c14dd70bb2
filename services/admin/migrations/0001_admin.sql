-- The same SQL on Postgres and SQLite.
CREATE TABLE audit_log (
    event_id TEXT PRIMARY KEY,
    event_type TEXT NOT NULL,
    source TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX audit_log_type ON audit_log (event_type, received_at);

-- Events of one user may be handled in any order (a login before its account's creation):
-- every statement below is an upsert that gives the same row whatever the order, and a deleted
-- user stays deleted.
CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_login_at BIGINT,
    logins BIGINT NOT NULL,
    deleted BIGINT NOT NULL
);
