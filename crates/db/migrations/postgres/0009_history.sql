-- History: who wrote each logged update and when, what each author changed per minute
-- (kept after compaction folds the log away), and restorable versions.
-- Same semantics as migrations/sqlite/0009_history.sql.

-- Authors of the update (comma-separated: one log entry may merge several members' edits)
-- and when it was stored (milliseconds since the Unix epoch; 0 for entries older than
-- this migration).
ALTER TABLE document_updates ADD COLUMN authors TEXT NOT NULL DEFAULT '';
ALTER TABLE document_updates ADD COLUMN created_at_ms BIGINT NOT NULL DEFAULT 0;

-- One row per document, author and minute of activity: the contributions report.
CREATE TABLE document_activity (
    doc_id      TEXT   NOT NULL,
    author      TEXT   NOT NULL,
    -- Minutes since the Unix epoch.
    minute      BIGINT NOT NULL,
    inserted    BIGINT NOT NULL,
    deleted     BIGINT NOT NULL,
    edits       BIGINT NOT NULL,
    first_at_ms BIGINT NOT NULL,
    last_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (doc_id, author, minute)
);

-- A document's whole state at a moment, kept apart from the snapshot and log.
CREATE TABLE document_versions (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    doc_id        TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL,
    -- session_started, session_ended, before_ai_job, after_ai_job, checkpoint, activity,
    -- before_restore
    reason        TEXT   NOT NULL,
    label         TEXT,
    author        TEXT,
    snapshot      BYTEA  NOT NULL
);

CREATE INDEX document_versions_by_doc ON document_versions (doc_id, id);
