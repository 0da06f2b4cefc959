-- Course material uploaded to a classroom (PDF, DOCX, TXT, Markdown), its ingestion state,
-- and the chunks of its text with their embeddings for semantic search.
-- Same semantics as migrations/sqlite/0004_materials.sql. Times are Unix seconds (UTC).

CREATE TABLE materials (
    id           TEXT    PRIMARY KEY NOT NULL,
    classroom_id TEXT    NOT NULL REFERENCES classrooms (id) ON DELETE CASCADE,
    uploaded_by  TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- As the uploader named it; shown to people, never used as a path.
    file_name    TEXT    NOT NULL,
    -- Sniffed from the bytes, not taken from the name.
    format       TEXT    NOT NULL CHECK (format IN ('pdf', 'docx', 'markdown', 'text')),
    size_bytes   BIGINT  NOT NULL,
    -- Where the bytes are in the object store.
    object_key   TEXT    NOT NULL,
    status       TEXT    NOT NULL
                         CHECK (status IN ('queued', 'extracting', 'embedding', 'ready', 'failed')),
    -- 0..=100 within the current status.
    progress     INTEGER NOT NULL DEFAULT 0,
    -- Why ingestion failed, in words fit for the uploader; NULL unless failed.
    error        TEXT,
    -- Pages (PDF) or sections found; NULL until extracted.
    sections     INTEGER,
    chunk_count  INTEGER NOT NULL DEFAULT 0,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);

CREATE INDEX materials_by_classroom ON materials (classroom_id);
CREATE INDEX materials_unfinished ON materials (status) WHERE status IN ('queued', 'extracting', 'embedding');

CREATE TABLE material_chunks (
    material_id TEXT    NOT NULL REFERENCES materials (id) ON DELETE CASCADE,
    ordinal     INTEGER NOT NULL,
    -- 1-based PDF page, or NULL.
    page        INTEGER,
    -- Heading path (DOCX, Markdown), or NULL.
    heading     TEXT,
    text        TEXT    NOT NULL,
    -- The embedding as little-endian f32s.
    embedding   BYTEA   NOT NULL,
    PRIMARY KEY (material_id, ordinal)
);
