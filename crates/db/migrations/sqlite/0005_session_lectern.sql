-- Every session gets a fourth document, `session/{id}/lectern`: the server-owned state of
-- the session (follow-the-teacher focus, AI job statuses, AI client ids), which members
-- read and nobody writes from a socket. Same semantics as
-- migrations/postgres/0005_session_lectern.sql.
--
-- SQLite cannot change a CHECK constraint in place, so `documents` is rebuilt with 'lectern'
-- allowed. No table references `documents`, so dropping the old one cascades nowhere.

CREATE TABLE documents_new (
    doc_id          TEXT    PRIMARY KEY NOT NULL,
    classroom_id    TEXT    NOT NULL REFERENCES classrooms (id) ON DELETE CASCADE,
    session_id      TEXT    REFERENCES sessions (id) ON DELETE CASCADE,
    kind            TEXT    NOT NULL
                            CHECK (kind IN ('notes', 'mindmap', 'chat', 'lectern', 'template',
                                            'fork')),
    -- The student a fork belongs to; NULL for every other kind.
    owner_user_id   TEXT    REFERENCES users (id) ON DELETE CASCADE,
    -- The document a fork was copied from; NULL for every other kind.
    template_doc_id TEXT,
    created_at      INTEGER NOT NULL
);

INSERT INTO documents_new (doc_id, classroom_id, session_id, kind, owner_user_id,
                           template_doc_id, created_at)
    SELECT doc_id, classroom_id, session_id, kind, owner_user_id, template_doc_id, created_at
    FROM documents;

DROP TABLE documents;
ALTER TABLE documents_new RENAME TO documents;

CREATE INDEX documents_by_classroom ON documents (classroom_id);
CREATE INDEX documents_by_session ON documents (session_id);
CREATE UNIQUE INDEX documents_one_fork_per_student
    ON documents (session_id, template_doc_id, owner_user_id);

-- Sessions started before this migration get their server-owned document too.
INSERT INTO documents (doc_id, classroom_id, session_id, kind, created_at)
    SELECT 'session/' || id || '/lectern', classroom_id, id, 'lectern', started_at
    FROM sessions
    WHERE 'session/' || id || '/lectern' NOT IN (SELECT doc_id FROM documents);
