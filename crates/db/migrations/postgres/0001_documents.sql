-- Room documents: a snapshot plus an append-only log of updates written after it.
-- Same semantics as migrations/sqlite/0001_documents.sql.

CREATE TABLE document_snapshots (
    doc_id      TEXT        PRIMARY KEY,
    snapshot    BYTEA       NOT NULL,
    -- The log entries with seq <= through_seq are folded into this snapshot.
    through_seq BIGINT      NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- seq is global (not per document) so several server nodes can append to one document
-- without coordinating; per document it is still strictly increasing.
CREATE TABLE document_updates (
    seq       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    doc_id    TEXT   NOT NULL,
    update_v1 BYTEA  NOT NULL
);

CREATE INDEX document_updates_by_doc ON document_updates (doc_id, seq);
