-- Accounts, rotating refresh tokens and classrooms.
-- Same semantics as migrations/postgres/0002_identity.sql. Times are Unix seconds (UTC) so
-- both backends store and compare them the same way.

CREATE TABLE users (
    id            TEXT    PRIMARY KEY NOT NULL,
    -- Stored lower-cased and trimmed by the caller, so the unique index is case-insensitive.
    email         TEXT    NOT NULL UNIQUE,
    display_name  TEXT    NOT NULL,
    -- A PHC string (argon2id); never the password.
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('faculty', 'student', 'admin')),
    created_at    INTEGER NOT NULL
);

-- Only SHA-256 hashes of refresh tokens are stored: a leaked table cannot be replayed.
-- Tokens of one login share a family; reusing a used token revokes the whole family.
CREATE TABLE refresh_tokens (
    token_hash BLOB    PRIMARY KEY NOT NULL,
    family_id  TEXT    NOT NULL,
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    revoked_at INTEGER
);

CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_by_user ON refresh_tokens (user_id);

CREATE TABLE classrooms (
    id         TEXT    PRIMARY KEY NOT NULL,
    name       TEXT    NOT NULL,
    -- Rotating it replaces the value, so an old code stops working at once.
    join_code  TEXT    NOT NULL UNIQUE,
    created_by TEXT    NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL
);

CREATE TABLE classroom_members (
    classroom_id TEXT    NOT NULL REFERENCES classrooms (id) ON DELETE CASCADE,
    user_id      TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role         TEXT    NOT NULL CHECK (role IN ('faculty', 'student')),
    joined_at    INTEGER NOT NULL,
    PRIMARY KEY (classroom_id, user_id)
);

CREATE INDEX classroom_members_by_user ON classroom_members (user_id);
