//! Live sessions of a classroom and the registry of classroom documents.
//!
//! A session owns four documents, created with it in one transaction: shared notes, a
//! mindmap and a chat (ids `session/{session_id}/notes` etc., see [`session_doc_id`]), and
//! `session/{session_id}/lectern`, the session's server-owned state (follow-the-teacher
//! focus, AI job statuses and AI client ids) that members read and only the server writes.
//! Faculty can register templates for a classroom and hand one out in a session, which
//! gives every student of the classroom their own fork (`fork/{session_id}/{handout}/{user}`).
//! The registry (`documents`) is what access decisions start from: a document id that is
//! not registered belongs to no classroom.
//!
//! Architecture invariant: a classroom has at most one session that has not ended. The
//! schema enforces it (a partial unique index), so two faculty starting a session at the
//! same instant cannot both succeed; the loser gets [`DbError::SessionAlreadyRunning`].
//! An ended session is final: no query here moves it out of [`SessionState::Ended`].
//!
//! Like the other repositories, this module stores what the server decides: ids and times
//! come from the caller, and the follow-the-teacher focus is opaque JSON text.

use crate::{Database, DbError, is_unique_violation};

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// Running: students may edit the session's documents.
    Live,
    /// Running, but students may only read.
    Locked,
    /// Over: documents are kept for review, read-only for students. Final.
    Ended,
}

impl SessionState {
    /// The stored (and wire) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Locked => "locked",
            Self::Ended => "ended",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Result<Self, DbError> {
        match text {
            "live" => Ok(Self::Live),
            "locked" => Ok(Self::Locked),
            "ended" => Ok(Self::Ended),
            other => Err(DbError::UnknownSessionState(other.to_owned())),
        }
    }
}

/// What a registered document is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocKind {
    /// A session's shared notes.
    Notes,
    /// A session's shared mindmap.
    Mindmap,
    /// A session's chat.
    Chat,
    /// A session's server-owned state (`lectern`): written only by the server, read by
    /// every member.
    Lectern,
    /// A classroom document faculty prepare and hand out.
    Template,
    /// One student's copy of a template, made by a handout in a session.
    Fork,
}

impl DocKind {
    /// The documents every session starts with, in the order they are listed.
    pub const SESSION: [DocKind; 4] = [Self::Notes, Self::Mindmap, Self::Chat, Self::Lectern];

    /// The stored (and wire) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Notes => "notes",
            Self::Mindmap => "mindmap",
            Self::Chat => "chat",
            Self::Lectern => "lectern",
            Self::Template => "template",
            Self::Fork => "fork",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Result<Self, DbError> {
        match text {
            "notes" => Ok(Self::Notes),
            "mindmap" => Ok(Self::Mindmap),
            "chat" => Ok(Self::Chat),
            "lectern" => Ok(Self::Lectern),
            "template" => Ok(Self::Template),
            "fork" => Ok(Self::Fork),
            other => Err(DbError::UnknownDocKind(other.to_owned())),
        }
    }
}

/// The id of one of a session's own documents: `session/{session_id}/{kind}`.
pub fn session_doc_id(session_id: &str, kind: DocKind) -> String {
    format!("session/{session_id}/{}", kind.as_str())
}

/// A stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Opaque, server-generated id.
    pub id: String,
    /// The classroom it runs in.
    pub classroom_id: String,
    /// The faculty account that started it.
    pub started_by: String,
    /// Live, locked or ended.
    pub state: SessionState,
    /// When it started, Unix seconds.
    pub started_at: i64,
    /// When it ended, Unix seconds; `None` while running.
    pub ended_at: Option<i64>,
    /// Follow-the-teacher focus as JSON text, if faculty set one.
    pub focus: Option<String>,
}

/// A registered document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The document id (as in `/ws/{doc}` and the document store).
    pub doc_id: String,
    /// The classroom it belongs to.
    pub classroom_id: String,
    /// The session it belongs to; `None` for templates.
    pub session_id: Option<String>,
    /// What it is for.
    pub kind: DocKind,
    /// For forks: the student it belongs to.
    pub owner_user_id: Option<String>,
    /// For forks: the document it was copied from.
    pub template_doc_id: Option<String>,
    /// When it was registered, Unix seconds.
    pub created_at: i64,
}

/// A registered document and the state of its session: everything access is decided from
/// besides the caller's membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentEntry {
    /// The document.
    pub document: Document,
    /// Its session's state; `None` when it belongs to no session (templates).
    pub session_state: Option<SessionState>,
}

/// A session to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    /// Opaque, server-generated id.
    pub id: String,
    /// The classroom to run it in.
    pub classroom_id: String,
    /// The faculty account starting it.
    pub started_by: String,
    /// Now, Unix seconds.
    pub started_at: i64,
}

/// The outcome of changing a session (its state or its focus).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionUpdate {
    /// Done (or already so); the session as it is now.
    Updated(Session),
    /// Refused: the session has ended, and an ended session does not change.
    Ended,
    /// No such session.
    NotFound,
}

/// The outcome of handing a template out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handout {
    /// Every current student of the classroom has a fork of the template in the session.
    Forks {
        /// All forks of this template in the session, new and old, by owner.
        forks: Vec<Document>,
        /// The ids of the forks this call created (content still to be copied).
        created: Vec<String>,
    },
    /// Refused: the session has ended.
    Ended,
    /// No such session.
    NotFound,
}

/// Columns of `sessions`: id, classroom_id, started_by, state, started_at, ended_at, focus.
type SessionRow = (
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<String>,
);

fn session_from_row(row: SessionRow) -> Result<Session, DbError> {
    let (id, classroom_id, started_by, state, started_at, ended_at, focus) = row;
    Ok(Session {
        id,
        classroom_id,
        started_by,
        state: SessionState::parse(&state)?,
        started_at,
        ended_at,
        focus,
    })
}

/// Columns of `documents`: doc_id, classroom_id, session_id, kind, owner_user_id,
/// template_doc_id, created_at.
type DocumentRow = (
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    i64,
);

fn document_from_row(row: DocumentRow) -> Result<Document, DbError> {
    let (doc_id, classroom_id, session_id, kind, owner_user_id, template_doc_id, created_at) = row;
    Ok(Document {
        doc_id,
        classroom_id,
        session_id,
        kind: DocKind::parse(&kind)?,
        owner_user_id,
        template_doc_id,
        created_at,
    })
}

fn documents_from_rows(rows: Vec<DocumentRow>) -> Result<Vec<Document>, DbError> {
    rows.into_iter().map(document_from_row).collect()
}

/// Sessions and the document registry in SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct Sessions {
    /// The pool every query runs on.
    database: Database,
}

impl Sessions {
    /// Sessions on `database` (already migrated).
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    /// Starts a session (state live) and registers its notes, mindmap, chat and lectern, in one
    /// transaction. Fails with [`DbError::SessionAlreadyRunning`] if the classroom has a
    /// session that has not ended.
    pub async fn start(&self, new: &NewSession) -> Result<(Session, Vec<Document>), DbError> {
        let documents: Vec<Document> = DocKind::SESSION
            .into_iter()
            .map(|kind| Document {
                doc_id: session_doc_id(&new.id, kind),
                classroom_id: new.classroom_id.clone(),
                session_id: Some(new.id.clone()),
                kind,
                owner_user_id: None,
                template_doc_id: None,
                created_at: new.started_at,
            })
            .collect();
        let result = match &self.database {
            Database::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let inserted = sqlx::query(
                    "INSERT INTO sessions (id, classroom_id, started_by, state, started_at) \
                     VALUES (?, ?, ?, 'live', ?)",
                )
                .bind(&new.id)
                .bind(&new.classroom_id)
                .bind(&new.started_by)
                .bind(new.started_at)
                .execute(&mut *tx)
                .await;
                match inserted {
                    Ok(_) => {
                        for document in &documents {
                            sqlx::query(
                                "INSERT INTO documents (doc_id, classroom_id, session_id, kind, \
                                 created_at) VALUES (?, ?, ?, ?, ?)",
                            )
                            .bind(&document.doc_id)
                            .bind(&document.classroom_id)
                            .bind(&document.session_id)
                            .bind(document.kind.as_str())
                            .bind(document.created_at)
                            .execute(&mut *tx)
                            .await?;
                        }
                        tx.commit().await
                    }
                    Err(error) => Err(error),
                }
            }
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let inserted = sqlx::query(
                    "INSERT INTO sessions (id, classroom_id, started_by, state, started_at) \
                     VALUES ($1, $2, $3, 'live', $4)",
                )
                .bind(&new.id)
                .bind(&new.classroom_id)
                .bind(&new.started_by)
                .bind(new.started_at)
                .execute(&mut *tx)
                .await;
                match inserted {
                    Ok(_) => {
                        for document in &documents {
                            sqlx::query(
                                "INSERT INTO documents (doc_id, classroom_id, session_id, kind, \
                                 created_at) VALUES ($1, $2, $3, $4, $5)",
                            )
                            .bind(&document.doc_id)
                            .bind(&document.classroom_id)
                            .bind(&document.session_id)
                            .bind(document.kind.as_str())
                            .bind(document.created_at)
                            .execute(&mut *tx)
                            .await?;
                        }
                        tx.commit().await
                    }
                    Err(error) => Err(error),
                }
            }
        };
        match result {
            Ok(()) => {
                let session = Session {
                    id: new.id.clone(),
                    classroom_id: new.classroom_id.clone(),
                    started_by: new.started_by.clone(),
                    state: SessionState::Live,
                    started_at: new.started_at,
                    ended_at: None,
                    focus: None,
                };
                Ok((session, documents))
            }
            // The id is random, so the one-running-session index is what can collide.
            Err(error) if is_unique_violation(&error) => Err(DbError::SessionAlreadyRunning),
            Err(error) => Err(error.into()),
        }
    }

    /// The session with this id, if any.
    pub async fn get(&self, id: &str) -> Result<Option<Session>, DbError> {
        let row: Option<SessionRow> = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query_as(
                    "SELECT id, classroom_id, started_by, state, started_at, ended_at, focus \
                     FROM sessions WHERE id = ?",
                )
                .bind(id)
                .fetch_optional(pool)
                .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT id, classroom_id, started_by, state, started_at, ended_at, focus \
                     FROM sessions WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(pool)
                .await?
            }
        };
        row.map(session_from_row).transpose()
    }

    /// The classroom's session that has not ended (live or locked), if any.
    pub async fn current(&self, classroom_id: &str) -> Result<Option<Session>, DbError> {
        let row: Option<SessionRow> = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query_as(
                    "SELECT id, classroom_id, started_by, state, started_at, ended_at, focus \
                     FROM sessions WHERE classroom_id = ? AND state <> 'ended'",
                )
                .bind(classroom_id)
                .fetch_optional(pool)
                .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT id, classroom_id, started_by, state, started_at, ended_at, focus \
                     FROM sessions WHERE classroom_id = $1 AND state <> 'ended'",
                )
                .bind(classroom_id)
                .fetch_optional(pool)
                .await?
            }
        };
        row.map(session_from_row).transpose()
    }

    /// The classroom's sessions, newest first (the running one, if any, is the first), at
    /// most `limit` of them.
    pub async fn recent(&self, classroom_id: &str, limit: u32) -> Result<Vec<Session>, DbError> {
        // The running one first even when an ended one started in the same second (`false`
        // sorts before `true` in both dialects); `id` breaks the remaining ties.
        let rows: Vec<SessionRow> = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query_as(
                    "SELECT id, classroom_id, started_by, state, started_at, ended_at, focus \
                     FROM sessions WHERE classroom_id = ? \
                     ORDER BY (state = 'ended'), started_at DESC, id DESC LIMIT ?",
                )
                .bind(classroom_id)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT id, classroom_id, started_by, state, started_at, ended_at, focus \
                     FROM sessions WHERE classroom_id = $1 \
                     ORDER BY (state = 'ended'), started_at DESC, id DESC LIMIT $2",
                )
                .bind(classroom_id)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
            }
        };
        rows.into_iter().map(session_from_row).collect()
    }

    /// Moves a running session to `state`; ending it records `now` as its end. Setting the
    /// state it already has succeeds and changes nothing. An ended session is final:
    /// [`SessionUpdate::Ended`].
    pub async fn set_state(
        &self,
        id: &str,
        state: SessionState,
        now: i64,
    ) -> Result<SessionUpdate, DbError> {
        let ended_at = (state == SessionState::Ended).then_some(now);
        let rows = match &self.database {
            Database::Sqlite(pool) => sqlx::query(
                "UPDATE sessions SET state = ?, ended_at = ? WHERE id = ? AND state <> 'ended'",
            )
            .bind(state.as_str())
            .bind(ended_at)
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected(),
            Database::Postgres(pool) => sqlx::query(
                "UPDATE sessions SET state = $1, ended_at = $2 WHERE id = $3 AND state <> 'ended'",
            )
            .bind(state.as_str())
            .bind(ended_at)
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected(),
        };
        self.update_outcome(id, rows).await
    }

    /// Stores the follow-the-teacher focus (JSON text) of a running session. An ended
    /// session is final: [`SessionUpdate::Ended`].
    pub async fn set_focus(&self, id: &str, focus: &str) -> Result<SessionUpdate, DbError> {
        let rows = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query("UPDATE sessions SET focus = ? WHERE id = ? AND state <> 'ended'")
                    .bind(focus)
                    .bind(id)
                    .execute(pool)
                    .await?
                    .rows_affected()
            }
            Database::Postgres(pool) => {
                sqlx::query("UPDATE sessions SET focus = $1 WHERE id = $2 AND state <> 'ended'")
                    .bind(focus)
                    .bind(id)
                    .execute(pool)
                    .await?
                    .rows_affected()
            }
        };
        self.update_outcome(id, rows).await
    }

    /// After a conditional update of session `id` that touched `rows` rows: the session as
    /// it is now, or why nothing was updated.
    async fn update_outcome(&self, id: &str, rows: u64) -> Result<SessionUpdate, DbError> {
        Ok(match self.get(id).await? {
            None => SessionUpdate::NotFound,
            Some(session) if rows == 0 => {
                // Only the `state <> 'ended'` condition can have refused an existing row.
                debug_assert_eq!(session.state, SessionState::Ended);
                SessionUpdate::Ended
            }
            Some(session) => SessionUpdate::Updated(session),
        })
    }

    /// Registers a template document of a classroom.
    pub async fn create_template(
        &self,
        doc_id: &str,
        classroom_id: &str,
        now: i64,
    ) -> Result<Document, DbError> {
        match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query(
                    "INSERT INTO documents (doc_id, classroom_id, kind, created_at) \
                     VALUES (?, ?, 'template', ?)",
                )
                .bind(doc_id)
                .bind(classroom_id)
                .bind(now)
                .execute(pool)
                .await?;
            }
            Database::Postgres(pool) => {
                sqlx::query(
                    "INSERT INTO documents (doc_id, classroom_id, kind, created_at) \
                     VALUES ($1, $2, 'template', $3)",
                )
                .bind(doc_id)
                .bind(classroom_id)
                .bind(now)
                .execute(pool)
                .await?;
            }
        }
        Ok(Document {
            doc_id: doc_id.to_owned(),
            classroom_id: classroom_id.to_owned(),
            session_id: None,
            kind: DocKind::Template,
            owner_user_id: None,
            template_doc_id: None,
            created_at: now,
        })
    }

    /// The registered document with this id and the state of its session, if registered.
    pub async fn document(&self, doc_id: &str) -> Result<Option<DocumentEntry>, DbError> {
        type Row = (
            String,
            String,
            Option<String>,
            String,
            Option<String>,
            Option<String>,
            i64,
            Option<String>,
        );
        let row: Option<Row> = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query_as(
                    "SELECT d.doc_id, d.classroom_id, d.session_id, d.kind, d.owner_user_id, \
                     d.template_doc_id, d.created_at, s.state \
                     FROM documents d LEFT JOIN sessions s ON s.id = d.session_id \
                     WHERE d.doc_id = ?",
                )
                .bind(doc_id)
                .fetch_optional(pool)
                .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT d.doc_id, d.classroom_id, d.session_id, d.kind, d.owner_user_id, \
                     d.template_doc_id, d.created_at, s.state \
                     FROM documents d LEFT JOIN sessions s ON s.id = d.session_id \
                     WHERE d.doc_id = $1",
                )
                .bind(doc_id)
                .fetch_optional(pool)
                .await?
            }
        };
        let Some((id, classroom, session, kind, owner, template, created_at, state)) = row else {
            return Ok(None);
        };
        Ok(Some(DocumentEntry {
            document: document_from_row((
                id, classroom, session, kind, owner, template, created_at,
            ))?,
            session_state: state.as_deref().map(SessionState::parse).transpose()?,
        }))
    }

    /// Every document of a session (its own, then forks by owner).
    pub async fn documents_of_session(&self, session_id: &str) -> Result<Vec<Document>, DbError> {
        let rows: Vec<DocumentRow> = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query_as(
                    "SELECT doc_id, classroom_id, session_id, kind, owner_user_id, \
                     template_doc_id, created_at FROM documents WHERE session_id = ? \
                     ORDER BY CASE kind WHEN 'notes' THEN 0 WHEN 'mindmap' THEN 1 \
                     WHEN 'chat' THEN 2 WHEN 'lectern' THEN 3 ELSE 4 END, owner_user_id, doc_id",
                )
                .bind(session_id)
                .fetch_all(pool)
                .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT doc_id, classroom_id, session_id, kind, owner_user_id, \
                     template_doc_id, created_at FROM documents WHERE session_id = $1 \
                     ORDER BY CASE kind WHEN 'notes' THEN 0 WHEN 'mindmap' THEN 1 \
                     WHEN 'chat' THEN 2 WHEN 'lectern' THEN 3 ELSE 4 END, owner_user_id, doc_id",
                )
                .bind(session_id)
                .fetch_all(pool)
                .await?
            }
        };
        documents_from_rows(rows)
    }

    /// The ids of every document of a classroom: templates and all its sessions' documents,
    /// ended sessions included (students can still read those).
    pub async fn doc_ids_of_classroom(&self, classroom_id: &str) -> Result<Vec<String>, DbError> {
        let ids = match &self.database {
            Database::Sqlite(pool) => {
                sqlx::query_scalar(
                    "SELECT doc_id FROM documents WHERE classroom_id = ? ORDER BY doc_id",
                )
                .bind(classroom_id)
                .fetch_all(pool)
                .await?
            }
            Database::Postgres(pool) => {
                sqlx::query_scalar(
                    "SELECT doc_id FROM documents WHERE classroom_id = $1 ORDER BY doc_id",
                )
                .bind(classroom_id)
                .fetch_all(pool)
                .await?
            }
        };
        Ok(ids)
    }

    /// Hands `template_doc_id` out in a running session: every current student of the
    /// classroom who has no fork of it in this session gets one, in one transaction.
    ///
    /// Idempotent: calling again creates only the missing forks (students who enrolled
    /// since). New forks of a template handed out before reuse its id prefix; otherwise
    /// they are `fork/{session_id}/{handout_id}/{user_id}`, with `handout_id` chosen by the
    /// caller (random, so concurrent handouts of different templates never collide).
    /// The caller checks that the template is a document of the session's classroom.
    pub async fn create_forks(
        &self,
        session_id: &str,
        template_doc_id: &str,
        handout_id: &str,
        now: i64,
    ) -> Result<Handout, DbError> {
        // The unique (session, template, owner) index makes a concurrent duplicate a no-op.
        match &self.database {
            Database::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let state: Option<String> =
                    sqlx::query_scalar("SELECT state FROM sessions WHERE id = ?")
                        .bind(session_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                match state.as_deref().map(SessionState::parse).transpose()? {
                    None => return Ok(Handout::NotFound),
                    Some(SessionState::Ended) => return Ok(Handout::Ended),
                    Some(SessionState::Live | SessionState::Locked) => {}
                }
                let existing: Option<(String, Option<String>)> = sqlx::query_as(
                    "SELECT doc_id, owner_user_id FROM documents \
                     WHERE session_id = ? AND kind = 'fork' AND template_doc_id = ? LIMIT 1",
                )
                .bind(session_id)
                .bind(template_doc_id)
                .fetch_optional(&mut *tx)
                .await?;
                let prefix = fork_prefix(session_id, handout_id, existing);
                let created: Vec<String> = sqlx::query_scalar(
                    "INSERT INTO documents (doc_id, classroom_id, session_id, kind, \
                     owner_user_id, template_doc_id, created_at) \
                     SELECT ? || '/' || m.user_id, s.classroom_id, s.id, 'fork', m.user_id, ?, ? \
                     FROM sessions s JOIN classroom_members m \
                     ON m.classroom_id = s.classroom_id AND m.role = 'student' \
                     WHERE s.id = ? \
                     ON CONFLICT (session_id, template_doc_id, owner_user_id) DO NOTHING \
                     RETURNING doc_id",
                )
                .bind(&prefix)
                .bind(template_doc_id)
                .bind(now)
                .bind(session_id)
                .fetch_all(&mut *tx)
                .await?;
                let forks: Vec<DocumentRow> = sqlx::query_as(
                    "SELECT doc_id, classroom_id, session_id, kind, owner_user_id, \
                     template_doc_id, created_at FROM documents \
                     WHERE session_id = ? AND kind = 'fork' AND template_doc_id = ? \
                     ORDER BY owner_user_id",
                )
                .bind(session_id)
                .bind(template_doc_id)
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Handout::Forks {
                    forks: documents_from_rows(forks)?,
                    created,
                })
            }
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let state: Option<String> =
                    sqlx::query_scalar("SELECT state FROM sessions WHERE id = $1")
                        .bind(session_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                match state.as_deref().map(SessionState::parse).transpose()? {
                    None => return Ok(Handout::NotFound),
                    Some(SessionState::Ended) => return Ok(Handout::Ended),
                    Some(SessionState::Live | SessionState::Locked) => {}
                }
                let existing: Option<(String, Option<String>)> = sqlx::query_as(
                    "SELECT doc_id, owner_user_id FROM documents \
                     WHERE session_id = $1 AND kind = 'fork' AND template_doc_id = $2 LIMIT 1",
                )
                .bind(session_id)
                .bind(template_doc_id)
                .fetch_optional(&mut *tx)
                .await?;
                let prefix = fork_prefix(session_id, handout_id, existing);
                let created: Vec<String> = sqlx::query_scalar(
                    "INSERT INTO documents (doc_id, classroom_id, session_id, kind, \
                     owner_user_id, template_doc_id, created_at) \
                     SELECT CAST($1 AS TEXT) || '/' || m.user_id, s.classroom_id, s.id, 'fork', \
                     m.user_id, $2, $3 \
                     FROM sessions s JOIN classroom_members m \
                     ON m.classroom_id = s.classroom_id AND m.role = 'student' \
                     WHERE s.id = $4 \
                     ON CONFLICT (session_id, template_doc_id, owner_user_id) DO NOTHING \
                     RETURNING doc_id",
                )
                .bind(&prefix)
                .bind(template_doc_id)
                .bind(now)
                .bind(session_id)
                .fetch_all(&mut *tx)
                .await?;
                let forks: Vec<DocumentRow> = sqlx::query_as(
                    "SELECT doc_id, classroom_id, session_id, kind, owner_user_id, \
                     template_doc_id, created_at FROM documents \
                     WHERE session_id = $1 AND kind = 'fork' AND template_doc_id = $2 \
                     ORDER BY owner_user_id",
                )
                .bind(session_id)
                .bind(template_doc_id)
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Handout::Forks {
                    forks: documents_from_rows(forks)?,
                    created,
                })
            }
        }
    }
}

/// The id prefix (everything before `/{user_id}`) for new forks of a handout: that of an
/// existing fork of the same template in the session, or a fresh one from `handout_id`.
fn fork_prefix(
    session_id: &str,
    handout_id: &str,
    existing: Option<(String, Option<String>)>,
) -> String {
    existing
        .and_then(|(doc_id, owner)| {
            let suffix = format!("/{}", owner?);
            doc_id.strip_suffix(&suffix).map(str::to_owned)
        })
        .unwrap_or_else(|| format!("fork/{session_id}/{handout_id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for state in [
            SessionState::Live,
            SessionState::Locked,
            SessionState::Ended,
        ] {
            assert_eq!(SessionState::parse(state.as_str()).ok(), Some(state));
        }
        for kind in [
            DocKind::Notes,
            DocKind::Mindmap,
            DocKind::Chat,
            DocKind::Lectern,
            DocKind::Template,
            DocKind::Fork,
        ] {
            assert_eq!(DocKind::parse(kind.as_str()).ok(), Some(kind));
        }
        assert!(SessionState::parse("paused").is_err());
        assert!(DocKind::parse("slides").is_err());
    }

    #[test]
    fn new_forks_reuse_the_prefix_of_an_earlier_handout() {
        assert_eq!(fork_prefix("s1", "h2", None), "fork/s1/h2");
        assert_eq!(
            fork_prefix(
                "s1",
                "h2",
                Some(("fork/s1/h1/u7".into(), Some("u7".into())))
            ),
            "fork/s1/h1"
        );
    }
}
