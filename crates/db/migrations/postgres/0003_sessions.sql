-- Live sessions and the registry of classroom documents (who owns which document id).
-- Same semantics as migrations/sqlite/0003_sessions.sql. Times are Unix seconds (UTC).

CREATE TABLE sessions (
    id           TEXT    PRIMARY KEY,
    classroom_id TEXT    NOT NULL REFERENCES classrooms (id) ON DELETE CASCADE,
    started_by   TEXT    NOT NULL REFERENCES users (id),
    -- live: students write; locked: students read; ended: everyone but faculty reads, final.
    state        TEXT    NOT NULL CHECK (state IN ('live', 'locked', 'ended')),
    started_at   BIGINT  NOT NULL,
    ended_at     BIGINT,
    -- Follow-the-teacher focus as JSON text (the server owns its shape); NULL when unset.
    focus        TEXT
);

-- At most one session per classroom has not ended: starting a second one is a unique
-- violation, which the repository reports as a typed error.
CREATE UNIQUE INDEX sessions_one_running_per_classroom
    ON sessions (classroom_id) WHERE state <> 'ended';

-- Which classroom (and session) a document id belongs to, so access can be decided from
-- its id. Document content lives in document_snapshots/document_updates under the same id.
CREATE TABLE documents (
    doc_id          TEXT    PRIMARY KEY,
    classroom_id    TEXT    NOT NULL REFERENCES classrooms (id) ON DELETE CASCADE,
    session_id      TEXT    REFERENCES sessions (id) ON DELETE CASCADE,
    kind            TEXT    NOT NULL
                            CHECK (kind IN ('notes', 'mindmap', 'chat', 'template', 'fork')),
    -- The student a fork belongs to; NULL for every other kind.
    owner_user_id   TEXT    REFERENCES users (id) ON DELETE CASCADE,
    -- The document a fork was copied from; NULL for every other kind.
    template_doc_id TEXT,
    created_at      BIGINT  NOT NULL
);

CREATE INDEX documents_by_classroom ON documents (classroom_id);
CREATE INDEX documents_by_session ON documents (session_id);

-- One fork per student per handed-out template in a session (NULLs never collide, so only
-- forks are constrained); handing the same template out again creates only missing forks.
CREATE UNIQUE INDEX documents_one_fork_per_student
    ON documents (session_id, template_doc_id, owner_user_id);
