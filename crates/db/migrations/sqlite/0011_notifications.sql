-- Per-user notification settings. Same semantics as migrations/postgres/0011_notifications.sql.
-- A user without a row has the defaults (email on), so existing accounts need no backfill
-- and only an explicit choice is stored.

CREATE TABLE notification_settings (
    user_id TEXT    PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- 0: no email for session starts and handouts (the in-app inbox is unaffected).
    email   INTEGER NOT NULL CHECK (email IN (0, 1))
);
