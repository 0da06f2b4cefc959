//! Course material uploaded to a classroom: one row per file with its ingestion state, and
//! the chunks of its text with their embeddings.
//!
//! The bytes themselves live in the object store under `object_key`; this module only
//! records where. Ingestion moves a material through `queued → extracting → embedding →
//! ready` (or `failed`, with a reason); the chunks of a material are replaced in the same
//! transaction that marks it ready, so a search never sees half of a material.

use crate::{Database, DbError};

/// Which kind of file a material is, sniffed from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaterialFormat {
    /// A PDF document.
    Pdf,
    /// A Word (Office Open XML) document.
    Docx,
    /// Markdown text.
    Markdown,
    /// Plain UTF-8 text.
    Text,
}

impl MaterialFormat {
    /// The stored (and wire) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pdf => "pdf",
            Self::Docx => "docx",
            Self::Markdown => "markdown",
            Self::Text => "text",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Result<Self, DbError> {
        match text {
            "pdf" => Ok(Self::Pdf),
            "docx" => Ok(Self::Docx),
            "markdown" => Ok(Self::Markdown),
            "text" => Ok(Self::Text),
            other => Err(DbError::UnknownMaterialValue(other.to_owned())),
        }
    }
}

/// Where a material is in its ingestion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaterialStatus {
    /// Stored, waiting for the ingestion worker.
    Queued,
    /// Its text is being extracted.
    Extracting,
    /// Its chunks are being embedded.
    Embedding,
    /// Searchable.
    Ready,
    /// Ingestion failed; `error` says why.
    Failed,
}

impl MaterialStatus {
    /// The stored (and wire) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Extracting => "extracting",
            Self::Embedding => "embedding",
            Self::Ready => "ready",
            Self::Failed => "failed",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Result<Self, DbError> {
        match text {
            "queued" => Ok(Self::Queued),
            "extracting" => Ok(Self::Extracting),
            "embedding" => Ok(Self::Embedding),
            "ready" => Ok(Self::Ready),
            "failed" => Ok(Self::Failed),
            other => Err(DbError::UnknownMaterialValue(other.to_owned())),
        }
    }

    /// Whether ingestion is over (successfully or not).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Ready | Self::Failed)
    }
}

/// A stored material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Material {
    /// Opaque, server-generated id.
    pub id: String,
    /// The classroom it belongs to.
    pub classroom_id: String,
    /// The account that uploaded it.
    pub uploaded_by: String,
    /// The file name the uploader gave; for display only.
    pub file_name: String,
    /// The sniffed format.
    pub format: MaterialFormat,
    /// Size of the stored bytes.
    pub size_bytes: i64,
    /// Where the bytes are in the object store.
    pub object_key: String,
    /// Ingestion state.
    pub status: MaterialStatus,
    /// 0..=100 within the current status.
    pub progress: i32,
    /// Why ingestion failed; `None` unless failed.
    pub error: Option<String>,
    /// Pages (PDF) or sections found; `None` until extracted.
    pub sections: Option<i32>,
    /// Chunks stored for search.
    pub chunk_count: i32,
    /// When it was uploaded, Unix seconds.
    pub created_at: i64,
    /// When its state last changed, Unix seconds.
    pub updated_at: i64,
}

/// One chunk of a material's text, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct MaterialChunk {
    /// The material it belongs to.
    pub material_id: String,
    /// Position among the material's chunks, from 0.
    pub ordinal: i32,
    /// 1-based PDF page, if the format has pages.
    pub page: Option<i32>,
    /// Heading path (DOCX, Markdown, PDF headings), if any.
    pub heading: Option<String>,
    /// The chunk's text.
    pub text: String,
    /// First line (1-based) of the file the text comes from (plain text, Markdown).
    pub line_start: Option<i32>,
    /// Last line (1-based, inclusive), with `line_start`.
    pub line_end: Option<i32>,
    /// Characters at the start of `text` that repeat the end of the previous chunk;
    /// `None` for chunks stored before this was recorded.
    pub overlap_chars: Option<i32>,
}

/// A chunk's embedding, as loaded into a search index.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkEmbedding {
    /// The material it belongs to.
    pub material_id: String,
    /// Position among the material's chunks.
    pub ordinal: i32,
    /// The vector.
    pub vector: Vec<f32>,
}

/// Columns of `materials`, in `material_columns!` order.
type MaterialRow = (
    String,
    String,
    String,
    String,
    String,
    i64,
    String,
    String,
    i32,
    Option<String>,
    Option<i32>,
    i32,
    i64,
    i64,
);

/// The columns of `materials`, as a literal so queries stay `&'static str` (sqlx refuses
/// SQL built at run time unless asserted safe).
macro_rules! material_columns {
    () => {
        "id, classroom_id, uploaded_by, file_name, format, size_bytes, object_key, status, \
         progress, error, sections, chunk_count, created_at, updated_at"
    };
}

fn material_from_row(row: MaterialRow) -> Result<Material, DbError> {
    let (
        id,
        classroom_id,
        uploaded_by,
        file_name,
        format,
        size_bytes,
        object_key,
        status,
        progress,
        error,
        sections,
        chunk_count,
        created_at,
        updated_at,
    ) = row;
    Ok(Material {
        id,
        classroom_id,
        uploaded_by,
        file_name,
        format: MaterialFormat::parse(&format)?,
        size_bytes,
        object_key,
        status: MaterialStatus::parse(&status)?,
        progress,
        error,
        sections,
        chunk_count,
        created_at,
        updated_at,
    })
}

/// Columns of `material_chunks` without the embedding, in `chunk_columns!` order.
type ChunkRow = (
    String,
    i32,
    Option<i32>,
    Option<String>,
    String,
    Option<i32>,
    Option<i32>,
    Option<i32>,
);

/// The columns of `material_chunks` a [`MaterialChunk`] holds (as `material_columns!`).
macro_rules! chunk_columns {
    () => {
        "material_id, ordinal, page, heading, text, line_start, line_end, overlap_chars"
    };
}

fn chunk_from_row(row: ChunkRow) -> MaterialChunk {
    let (material_id, ordinal, page, heading, text, line_start, line_end, overlap_chars) = row;
    MaterialChunk {
        material_id,
        ordinal,
        page,
        heading,
        text,
        line_start,
        line_end,
        overlap_chars,
    }
}

/// Encodes a vector as little-endian f32s (the stored form).
pub fn encode_vector(vector: &[f32]) -> Vec<u8> {
    vector
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect()
}

/// Decodes a stored vector.
pub fn decode_vector(bytes: &[u8]) -> Result<Vec<f32>, DbError> {
    if !bytes.len().is_multiple_of(4) {
        return Err(DbError::CorruptEmbedding(bytes.len()));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|quad| f32::from_le_bytes([quad[0], quad[1], quad[2], quad[3]]))
        .collect())
}

/// Materials and their chunks in SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct Materials {
    database: Database,
}

impl Materials {
    /// Materials on `database` (already migrated).
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    /// Stores a new material.
    pub async fn create(&self, material: &Material) -> Result<(), DbError> {
        let sql_sqlite = concat!(
            "INSERT INTO materials (",
            material_columns!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        );
        let sql_postgres = concat!(
            "INSERT INTO materials (",
            material_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        );
        macro_rules! insert {
            ($sql:expr, $pool:expr) => {
                sqlx::query($sql)
                    .bind(&material.id)
                    .bind(&material.classroom_id)
                    .bind(&material.uploaded_by)
                    .bind(&material.file_name)
                    .bind(material.format.as_str())
                    .bind(material.size_bytes)
                    .bind(&material.object_key)
                    .bind(material.status.as_str())
                    .bind(material.progress)
                    .bind(&material.error)
                    .bind(material.sections)
                    .bind(material.chunk_count)
                    .bind(material.created_at)
                    .bind(material.updated_at)
                    .execute($pool)
                    .await?
                    .rows_affected()
            };
        }
        match &self.database {
            Database::Sqlite(pool) => insert!(sql_sqlite, pool),
            Database::Postgres(pool) => insert!(sql_postgres, pool),
        };
        Ok(())
    }

    /// The material with this id, if any.
    pub async fn get(&self, id: &str) -> Result<Option<Material>, DbError> {
        let row: Option<MaterialRow> = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    material_columns!(),
                    " FROM materials WHERE id = ?"
                ))
                .bind(id)
                .fetch_optional(pool)
                .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    material_columns!(),
                    " FROM materials WHERE id = $1"
                ))
                .bind(id)
                .fetch_optional(pool)
                .await?
            }
        };
        row.map(material_from_row).transpose()
    }

    /// Every material of a classroom, oldest first.
    pub async fn list_for_classroom(&self, classroom_id: &str) -> Result<Vec<Material>, DbError> {
        let rows: Vec<MaterialRow> = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    material_columns!(),
                    " FROM materials WHERE classroom_id = ? \
                     ORDER BY created_at, id"
                ))
                .bind(classroom_id)
                .fetch_all(pool)
                .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    material_columns!(),
                    " FROM materials WHERE classroom_id = $1 \
                     ORDER BY created_at, id"
                ))
                .bind(classroom_id)
                .fetch_all(pool)
                .await?
            }
        };
        rows.into_iter().map(material_from_row).collect()
    }

    /// Materials whose ingestion had not finished (after a restart they are queued again).
    pub async fn unfinished(&self) -> Result<Vec<Material>, DbError> {
        let sql = concat!(
            "SELECT ",
            material_columns!(),
            " FROM materials WHERE status IN ('queued', 'extracting', 'embedding') \
             ORDER BY created_at, id"
        );
        let rows: Vec<MaterialRow> = match &self.database {
            Database::Sqlite(pool) => sqlx::query_as(sql).fetch_all(pool).await?,
            Database::Postgres(pool) => sqlx::query_as(sql).fetch_all(pool).await?,
        };
        rows.into_iter().map(material_from_row).collect()
    }

    /// Records a new ingestion state. `sections` is kept when `None`. Returns whether the
    /// material still exists (it may have been deleted meanwhile).
    pub async fn set_status(
        &self,
        id: &str,
        status: MaterialStatus,
        progress: i32,
        error: Option<&str>,
        sections: Option<i32>,
        now: i64,
    ) -> Result<bool, DbError> {
        let rows = match &self.database {
            Database::Sqlite(pool) => sqlx::query(
                "UPDATE materials SET status = ?, progress = ?, error = ?, \
                 sections = COALESCE(?, sections), updated_at = ? WHERE id = ?",
            )
            .bind(status.as_str())
            .bind(progress)
            .bind(error)
            .bind(sections)
            .bind(now)
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected(),
            Database::Postgres(pool) => sqlx::query(
                "UPDATE materials SET status = $1, progress = $2, error = $3, \
                 sections = COALESCE($4, sections), updated_at = $5 WHERE id = $6",
            )
            .bind(status.as_str())
            .bind(progress)
            .bind(error)
            .bind(sections)
            .bind(now)
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected(),
        };
        Ok(rows == 1)
    }

    /// Replaces the chunks of material `id` with `chunks` (each with its embedding) and
    /// marks it ready, in one transaction. Returns whether the material still exists.
    pub async fn finish(
        &self,
        id: &str,
        chunks: &[(MaterialChunk, Vec<f32>)],
        now: i64,
    ) -> Result<bool, DbError> {
        let count = i32::try_from(chunks.len()).unwrap_or(i32::MAX);
        match &self.database {
            Database::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let updated = sqlx::query(
                    "UPDATE materials SET status = 'ready', progress = 100, error = NULL, \
                     chunk_count = ?, updated_at = ? WHERE id = ?",
                )
                .bind(count)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if updated == 0 {
                    return Ok(false);
                }
                sqlx::query("DELETE FROM material_chunks WHERE material_id = ?")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                for (chunk, vector) in chunks {
                    sqlx::query(concat!(
                        "INSERT INTO material_chunks (",
                        chunk_columns!(),
                        ", embedding) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    ))
                    .bind(id)
                    .bind(chunk.ordinal)
                    .bind(chunk.page)
                    .bind(&chunk.heading)
                    .bind(&chunk.text)
                    .bind(chunk.line_start)
                    .bind(chunk.line_end)
                    .bind(chunk.overlap_chars)
                    .bind(encode_vector(vector))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            }
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let updated = sqlx::query(
                    "UPDATE materials SET status = 'ready', progress = 100, error = NULL, \
                     chunk_count = $1, updated_at = $2 WHERE id = $3",
                )
                .bind(count)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if updated == 0 {
                    return Ok(false);
                }
                sqlx::query("DELETE FROM material_chunks WHERE material_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                for (chunk, vector) in chunks {
                    sqlx::query(concat!(
                        "INSERT INTO material_chunks (",
                        chunk_columns!(),
                        ", embedding) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                    ))
                    .bind(id)
                    .bind(chunk.ordinal)
                    .bind(chunk.page)
                    .bind(&chunk.heading)
                    .bind(&chunk.text)
                    .bind(chunk.line_start)
                    .bind(chunk.line_end)
                    .bind(chunk.overlap_chars)
                    .bind(encode_vector(vector))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(true)
    }

    /// Deletes material `id` and its chunks; returns the deleted row (so the caller can
    /// remove its bytes from the object store), or `None` if there was none.
    pub async fn delete(&self, id: &str) -> Result<Option<Material>, DbError> {
        let row: Option<MaterialRow> = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query_as(concat!(
                    "DELETE FROM materials WHERE id = ? RETURNING ",
                    material_columns!(),
                    ""
                ))
                .bind(id)
                .fetch_optional(pool)
                .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_as(concat!(
                    "DELETE FROM materials WHERE id = $1 RETURNING ",
                    material_columns!(),
                    ""
                ))
                .bind(id)
                .fetch_optional(pool)
                .await?
            }
        };
        row.map(material_from_row).transpose()
    }

    /// The chunks of a material, in order, without embeddings.
    pub async fn chunks(&self, material_id: &str) -> Result<Vec<MaterialChunk>, DbError> {
        let rows: Vec<ChunkRow> = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    chunk_columns!(),
                    " FROM material_chunks WHERE material_id = ? ORDER BY ordinal"
                ))
                .bind(material_id)
                .fetch_all(pool)
                .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    chunk_columns!(),
                    " FROM material_chunks WHERE material_id = $1 ORDER BY ordinal"
                ))
                .bind(material_id)
                .fetch_all(pool)
                .await?
            }
        };
        Ok(rows.into_iter().map(chunk_from_row).collect())
    }

    /// One chunk, if it exists.
    pub async fn chunk(
        &self,
        material_id: &str,
        ordinal: i32,
    ) -> Result<Option<MaterialChunk>, DbError> {
        let row: Option<ChunkRow> = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    chunk_columns!(),
                    " FROM material_chunks WHERE material_id = ? AND ordinal = ?"
                ))
                .bind(material_id)
                .bind(ordinal)
                .fetch_optional(pool)
                .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    chunk_columns!(),
                    " FROM material_chunks WHERE material_id = $1 AND ordinal = $2"
                ))
                .bind(material_id)
                .bind(ordinal)
                .fetch_optional(pool)
                .await?
            }
        };
        Ok(row.map(chunk_from_row))
    }

    /// The embeddings of every chunk of one material (to add it to a loaded index).
    pub async fn embeddings(&self, material_id: &str) -> Result<Vec<ChunkEmbedding>, DbError> {
        let rows: Vec<(String, i32, Vec<u8>)> = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query_as(
                    "SELECT material_id, ordinal, embedding FROM material_chunks \
                     WHERE material_id = ? ORDER BY ordinal",
                )
                .bind(material_id)
                .fetch_all(pool)
                .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT material_id, ordinal, embedding FROM material_chunks \
                     WHERE material_id = $1 ORDER BY ordinal",
                )
                .bind(material_id)
                .fetch_all(pool)
                .await?
            }
        };
        embeddings_from_rows(rows)
    }

    /// The embeddings of every chunk of every ready material in a classroom (to load its
    /// search index).
    pub async fn classroom_embeddings(
        &self,
        classroom_id: &str,
    ) -> Result<Vec<ChunkEmbedding>, DbError> {
        let rows: Vec<(String, i32, Vec<u8>)> = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query_as(
                    "SELECT c.material_id, c.ordinal, c.embedding FROM material_chunks c \
                     JOIN materials m ON m.id = c.material_id \
                     WHERE m.classroom_id = ? AND m.status = 'ready' \
                     ORDER BY c.material_id, c.ordinal",
                )
                .bind(classroom_id)
                .fetch_all(pool)
                .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT c.material_id, c.ordinal, c.embedding FROM material_chunks c \
                     JOIN materials m ON m.id = c.material_id \
                     WHERE m.classroom_id = $1 AND m.status = 'ready' \
                     ORDER BY c.material_id, c.ordinal",
                )
                .bind(classroom_id)
                .fetch_all(pool)
                .await?
            }
        };
        embeddings_from_rows(rows)
    }
}

fn embeddings_from_rows(rows: Vec<(String, i32, Vec<u8>)>) -> Result<Vec<ChunkEmbedding>, DbError> {
    rows.into_iter()
        .map(|(material_id, ordinal, bytes)| {
            Ok(ChunkEmbedding {
                material_id,
                ordinal,
                vector: decode_vector(&bytes)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_through_their_stored_form() {
        let vector = vec![0.25, -1.5, f32::MIN_POSITIVE, 3.0e7];
        assert_eq!(
            decode_vector(&encode_vector(&vector)).expect("decodes"),
            vector
        );
    }

    #[test]
    fn a_truncated_vector_is_reported_not_misread() {
        assert!(matches!(
            decode_vector(&[0, 0, 128]),
            Err(DbError::CorruptEmbedding(3))
        ));
    }
}
