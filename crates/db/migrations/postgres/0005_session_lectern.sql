-- Every session gets a fourth document, `session/{id}/lectern`: the server-owned state of
-- the session (follow-the-teacher focus, AI job statuses, AI client ids), which members
-- read and nobody writes from a socket. Same semantics as
-- migrations/sqlite/0005_session_lectern.sql.

ALTER TABLE documents DROP CONSTRAINT documents_kind_check;
ALTER TABLE documents ADD CONSTRAINT documents_kind_check
    CHECK (kind IN ('notes', 'mindmap', 'chat', 'lectern', 'template', 'fork'));

-- Sessions started before this migration get their server-owned document too.
INSERT INTO documents (doc_id, classroom_id, session_id, kind, created_at)
    SELECT 'session/' || id || '/lectern', classroom_id, id, 'lectern', started_at
    FROM sessions
ON CONFLICT (doc_id) DO NOTHING;
