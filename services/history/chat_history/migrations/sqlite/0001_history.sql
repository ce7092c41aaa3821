-- History tables, mirroring the Cassandra schema (same keys, same partitions).

CREATE TABLE IF NOT EXISTS conversations (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
    name        TEXT,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
) WITHOUT ROWID;

-- One direct conversation per pair of users: the pair key is the primary key.
CREATE TABLE IF NOT EXISTS direct_conversations (
    pair             TEXT PRIMARY KEY,
    conversation_id  TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS conversation_members (
    conversation_id  TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    role             TEXT NOT NULL CHECK (role IN ('owner', 'member')),
    joined_ms        INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS user_conversations (
    user_id          TEXT NOT NULL,
    conversation_id  TEXT NOT NULL,
    joined_ms        INTEGER NOT NULL,
    PRIMARY KEY (user_id, conversation_id)
) WITHOUT ROWID;

-- Partition (conversation_id, bucket = seq // bucket size), newest first within it.
CREATE TABLE IF NOT EXISTS messages (
    conversation_id  TEXT NOT NULL,
    bucket           INTEGER NOT NULL,
    seq              INTEGER NOT NULL,
    id               TEXT NOT NULL,
    sender_id        TEXT NOT NULL,
    body             TEXT NOT NULL,
    client_id        TEXT NOT NULL,
    created_ms       INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, bucket, seq DESC)
) WITHOUT ROWID;

-- Highest persisted seq per conversation (only ever raised).
CREATE TABLE IF NOT EXISTS conversation_progress (
    conversation_id  TEXT PRIMARY KEY,
    last_seq         INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS read_state (
    user_id          TEXT NOT NULL,
    conversation_id  TEXT NOT NULL,
    last_read_seq    INTEGER NOT NULL,
    PRIMARY KEY (user_id, conversation_id)
) WITHOUT ROWID;
