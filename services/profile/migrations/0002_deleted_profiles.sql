-- A deleted user's row stays as a tombstone (personal fields blanked, deleted = 1), so that an
-- auth.user.created handled after auth.user.deleted (redelivered, or out of order) finds the row
-- and changes nothing: both events are upserts on the same key, which gives the same outcome in
-- any order (and Postgres serializes them on that key). The same SQL on Postgres and SQLite.
ALTER TABLE profiles ADD COLUMN deleted BIGINT NOT NULL DEFAULT 0;
