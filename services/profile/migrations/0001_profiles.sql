-- The same SQL on Postgres and SQLite.
CREATE TABLE profiles (
    user_id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    bio TEXT NOT NULL,
    theme TEXT NOT NULL,
    language TEXT NOT NULL,
    notifications BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
