-- AI jobs as records every node reads (status, cancel and usage survive the node that ran
-- them), and leases: named locks with an expiry, so exactly one node does a job such as
-- compacting a document or ingesting a material, and a dead node's work is taken over.
-- Same semantics as migrations/sqlite/0006_ai_jobs_and_leases.sql. Times are Unix
-- seconds (UTC) unless the name says milliseconds.

CREATE TABLE ai_jobs (
    id                TEXT    PRIMARY KEY NOT NULL,
    -- What it produces (the server's job kinds: chat, notes, qa, ...).
    kind              TEXT    NOT NULL,
    session_id        TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    classroom_id      TEXT    NOT NULL REFERENCES classrooms (id) ON DELETE CASCADE,
    -- The document it writes into.
    doc_id            TEXT    NOT NULL,
    status            TEXT    NOT NULL
                              CHECK (status IN ('queued', 'streaming', 'done', 'failed',
                                                'cancelled')),
    -- Why it failed; NULL unless failed.
    error             TEXT,
    -- Whether the answer came from the answer cache.
    cached            BOOLEAN NOT NULL DEFAULT FALSE,
    prompt_tokens     BIGINT  NOT NULL DEFAULT 0,
    completion_tokens BIGINT  NOT NULL DEFAULT 0,
    started_by        TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at        BIGINT  NOT NULL,
    -- NULL while it runs.
    finished_at       BIGINT,
    -- The node running it, and when that node last said it was alive (Unix milliseconds,
    -- its clock): a running job whose heartbeat is too old lost its node.
    node              TEXT    NOT NULL,
    heartbeat_at_ms   BIGINT  NOT NULL,
    -- Someone asked to cancel it; the running node reads this on its next heartbeat.
    cancel_requested  BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE INDEX ai_jobs_finished ON ai_jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX ai_jobs_unfinished ON ai_jobs (heartbeat_at_ms) WHERE finished_at IS NULL;

CREATE TABLE leases (
    -- What is held, e.g. `compact:{doc_id}` or `ingest:{material_id}`.
    name          TEXT    PRIMARY KEY NOT NULL,
    -- Who holds it (opaque to the database).
    holder        TEXT    NOT NULL,
    -- Unix milliseconds by the database's clock; past it, anyone may take the lease.
    expires_at_ms BIGINT  NOT NULL
);
