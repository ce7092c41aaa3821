-- Accounts and refresh-token families of the auth service.
-- Times are milliseconds since the Unix epoch (UTC).

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL,            -- lower-cased on the way in
    email TEXT NOT NULL,               -- as typed
    email_key TEXT NOT NULL,           -- lower-cased, for uniqueness and lookup
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    token_version INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);

CREATE UNIQUE INDEX users_username ON users (username);

CREATE UNIQUE INDEX users_email_key ON users (email_key);

CREATE TABLE refresh_families (
    family_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);

CREATE INDEX refresh_families_user ON refresh_families (user_id);

CREATE TABLE refresh_tokens (
    family_id TEXT NOT NULL REFERENCES refresh_families (family_id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (family_id, token_hash)
);

CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at);
