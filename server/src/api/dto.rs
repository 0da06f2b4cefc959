//! Wire types of the REST API: every request and response body, in one place.
//!
//! API boundary: these shapes (field names, enum spellings) are what the TypeScript SDK is
//! checked against, through the OpenAPI document generated from them. Database types never
//! go on the wire directly; handlers convert.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use lectern_db::accounts::{Role as DbRole, User};
use lectern_db::classrooms::{Enrolment, Member, MemberRole as DbMemberRole};
use lectern_db::materials::{
    Material, MaterialChunk, MaterialFormat as DbMaterialFormat, MaterialStatus as DbMaterialStatus,
};
use lectern_db::sessions::{DocKind, Document, SessionState as DbSessionState};

use crate::access::Access;
use crate::api::error::ErrorCode;
use crate::api::text;
use crate::auth::DocAccess;

/// Every error response: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The machine-readable code and a human-readable message.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code to branch on.
    pub code: ErrorCode,
    /// For people; may change wording at any time.
    pub message: String,
}

/// A server-wide account role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Teaches; may create classrooms.
    Faculty,
    /// Learns; enrols with join codes.
    Student,
    /// Operates the server (not available at registration).
    Admin,
}

impl From<Role> for DbRole {
    fn from(role: Role) -> Self {
        match role {
            Role::Faculty => Self::Faculty,
            Role::Student => Self::Student,
            Role::Admin => Self::Admin,
        }
    }
}

impl From<DbRole> for Role {
    fn from(role: DbRole) -> Self {
        match role {
            DbRole::Faculty => Self::Faculty,
            DbRole::Student => Self::Student,
            DbRole::Admin => Self::Admin,
        }
    }
}

/// The roles one may register with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RegisterRole {
    /// A teacher account.
    Faculty,
    /// A student account.
    Student,
}

impl From<RegisterRole> for DbRole {
    fn from(role: RegisterRole) -> Self {
        match role {
            RegisterRole::Faculty => Self::Faculty,
            RegisterRole::Student => Self::Student,
        }
    }
}

/// A role inside one classroom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    /// Teaches this classroom.
    Faculty,
    /// Enrolled in this classroom.
    Student,
}

impl From<DbMemberRole> for MemberRole {
    fn from(role: DbMemberRole) -> Self {
        match role {
            DbMemberRole::Faculty => Self::Faculty,
            DbMemberRole::Student => Self::Student,
        }
    }
}

/// `POST /api/v1/auth/register`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Login name; compared case-insensitively.
    #[serde(deserialize_with = "text::visible_text")]
    #[schema(schema_with = email_schema)]
    pub email: String,
    /// Shown to classmates (1–100 characters).
    #[serde(deserialize_with = "text::visible_text")]
    #[schema(schema_with = display_name_schema)]
    pub display_name: String,
    /// 8–1024 characters.
    #[schema(min_length = 8, max_length = 1024)]
    pub password: String,
    /// `faculty` or `student`.
    pub role: RegisterRole,
}

/// `POST /api/v1/admin/users` (admins only).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    /// Login name; compared case-insensitively.
    #[serde(deserialize_with = "text::visible_text")]
    #[schema(schema_with = email_schema)]
    pub email: String,
    /// Shown to others (1–100 characters).
    #[serde(deserialize_with = "text::visible_text")]
    #[schema(schema_with = display_name_schema)]
    pub display_name: String,
    /// 8–1024 characters; the new user signs in with it.
    #[schema(min_length = 8, max_length = 1024)]
    pub password: String,
    /// Any role: `faculty`, `student` or `admin`.
    pub role: Role,
}

/// `POST /api/v1/auth/login`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The registered email.
    #[schema(max_length = 254)]
    pub email: String,
    /// The password.
    #[schema(max_length = 1024)]
    pub password: String,
}

/// `POST /api/v1/auth/refresh` and `POST /api/v1/auth/logout`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token from the last session response.
    pub refresh_token: String,
}

/// An account as others may see it (plus the email, shown only to its owner).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserResponse {
    /// Account id.
    pub id: String,
    /// Email address (lower-cased).
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// Server-wide role.
    pub role: Role,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

impl From<User> for UserResponse {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            email: user.email,
            display_name: user.display_name,
            role: user.role.into(),
            created_at: user.created_at,
        }
    }
}

/// Tokens for a signed-in user: after register, login and refresh.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionResponse {
    /// Who is signed in.
    pub user: UserResponse,
    /// Send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Single use: exchange at `/auth/refresh` for a new pair.
    pub refresh_token: String,
    /// Seconds until the refresh token expires.
    pub refresh_expires_in: u64,
}

/// `POST /api/v1/doc-tokens` (authenticated with the server API key).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocTokenRequest {
    /// The document id (as in `/ws/{doc}`).
    pub doc: String,
    /// `full` (read and write) or `read`.
    pub access: DocAccess,
}

/// A document token for one document.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DocTokenResponse {
    /// The token to open the document with.
    pub token: String,
    /// The document it opens.
    pub doc: String,
    /// What it allows.
    pub access: DocAccess,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// `POST /api/v1/classrooms`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClassroomRequest {
    /// 1–200 characters.
    #[serde(deserialize_with = "text::visible_text")]
    #[schema(schema_with = classroom_name_schema)]
    pub name: String,
}

/// `POST /api/v1/classrooms/join`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinClassroomRequest {
    /// The 8-character code faculty shared; case, spaces and dashes are ignored.
    pub join_code: String,
}

/// A classroom as one of its members sees it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClassroomResponse {
    /// Classroom id.
    pub id: String,
    /// Name.
    pub name: String,
    /// The caller's role in it.
    pub role: MemberRole,
    /// The current join code; only shown to faculty.
    pub join_code: Option<String>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

impl From<Enrolment> for ClassroomResponse {
    fn from(enrolment: Enrolment) -> Self {
        let Enrolment { classroom, role } = enrolment;
        Self {
            id: classroom.id,
            name: classroom.name,
            role: role.into(),
            join_code: (role == DbMemberRole::Faculty).then_some(classroom.join_code),
            created_at: classroom.created_at,
        }
    }
}

/// One member of a classroom.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemberResponse {
    /// Account id.
    pub user_id: String,
    /// Display name.
    pub display_name: String,
    /// Role in this classroom.
    pub role: MemberRole,
    /// When they joined, Unix seconds.
    pub joined_at: i64,
}

impl From<Member> for MemberResponse {
    fn from(member: Member) -> Self {
        Self {
            user_id: member.user_id,
            display_name: member.display_name,
            role: member.role.into(),
            joined_at: member.joined_at,
        }
    }
}

/// Where a live session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Running: students edit the session's documents.
    Live,
    /// Running, but students only read.
    Locked,
    /// Over: documents stay readable for review. Final.
    Ended,
}

impl From<DbSessionState> for SessionState {
    fn from(state: DbSessionState) -> Self {
        match state {
            DbSessionState::Live => Self::Live,
            DbSessionState::Locked => Self::Locked,
            DbSessionState::Ended => Self::Ended,
        }
    }
}

/// What a document is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    /// A session's shared notes.
    Notes,
    /// A session's shared mindmap.
    Mindmap,
    /// A session's chat.
    Chat,
    /// A session's server-owned state (focus, AI jobs, AI clients): read-only for everyone.
    Lectern,
    /// A classroom document faculty hand out.
    Template,
    /// One student's copy of a handed-out template.
    Fork,
}

impl From<DocKind> for DocumentKind {
    fn from(kind: DocKind) -> Self {
        match kind {
            DocKind::Notes => Self::Notes,
            DocKind::Mindmap => Self::Mindmap,
            DocKind::Chat => Self::Chat,
            DocKind::Lectern => Self::Lectern,
            DocKind::Template => Self::Template,
            DocKind::Fork => Self::Fork,
        }
    }
}

/// What the caller may do with a document over the WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocumentAccess {
    /// Receive the document and awareness; updates are refused.
    Read,
    /// Read and edit.
    Write,
}

impl From<Access> for DocumentAccess {
    fn from(access: Access) -> Self {
        match access {
            Access::Read => Self::Read,
            Access::Write => Self::Write,
        }
    }
}

/// A document the caller may open, and how.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DocumentResponse {
    /// Open it at `/ws/{doc_id}` (or in the multiplexed socket).
    pub doc_id: String,
    /// What it is for.
    pub kind: DocumentKind,
    /// The caller's access to it (at the time of the response).
    pub access: DocumentAccess,
    /// For forks: the student it belongs to.
    pub owner_user_id: Option<String>,
    /// For forks: the document it was copied from.
    pub template_doc_id: Option<String>,
}

impl DocumentResponse {
    /// `document` as seen by a caller with `access` to it.
    pub fn new(document: Document, access: Access) -> Self {
        Self {
            doc_id: document.doc_id,
            kind: document.kind.into(),
            access: access.into(),
            owner_user_id: document.owner_user_id,
            template_doc_id: document.template_doc_id,
        }
    }
}

/// The follow-the-teacher focus: which document (and optionally which part of it) faculty
/// are on. `PUT /api/v1/sessions/{id}/focus` sets it; session responses carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Focus {
    /// A document of the session's classroom.
    pub doc_id: String,
    /// Where in it, as the client defines (a heading id, a mindmap node...); at most 200
    /// characters.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub section: Option<String>,
}

/// A live session and the documents the caller may open in it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LiveSessionResponse {
    /// Session id.
    pub id: String,
    /// The classroom it runs in.
    pub classroom_id: String,
    /// Live, locked or ended.
    pub state: SessionState,
    /// The faculty account that started it.
    pub started_by: String,
    /// Start time, Unix seconds.
    pub started_at: i64,
    /// End time, Unix seconds; `null` while running.
    pub ended_at: Option<i64>,
    /// Where faculty are, if they set it.
    pub focus: Option<Focus>,
    /// The documents the caller may open, with their access: the session's notes, mindmap
    /// and chat, then forks (faculty see every fork, a student only their own).
    pub documents: Vec<DocumentResponse>,
}

/// One of a classroom's sessions as listed (`GET /api/v1/classrooms/{id}/sessions`): what
/// a page needs to link to it; `GET /api/v1/sessions/{id}` gives its documents.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionSummaryResponse {
    /// Session id.
    pub id: String,
    /// The classroom it ran in.
    pub classroom_id: String,
    /// Live, locked or ended.
    pub state: SessionState,
    /// The faculty account that started it.
    pub started_by: String,
    /// Start time, Unix seconds.
    pub started_at: i64,
    /// End time, Unix seconds; `null` while running.
    pub ended_at: Option<i64>,
}

impl From<lectern_db::sessions::Session> for SessionSummaryResponse {
    fn from(session: lectern_db::sessions::Session) -> Self {
        Self {
            id: session.id,
            classroom_id: session.classroom_id,
            state: session.state.into(),
            started_by: session.started_by,
            started_at: session.started_at,
            ended_at: session.ended_at,
        }
    }
}

/// `POST /api/v1/sessions/{id}/handouts`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoutRequest {
    /// A template (or session document) of the session's classroom to copy for each student.
    pub template_doc_id: String,
}

/// Every student's fork of one handed-out template.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HandoutResponse {
    /// The document the forks were copied from.
    pub template_doc_id: String,
    /// One fork per student, by owner.
    pub forks: Vec<DocumentResponse>,
}

/// The form of `POST /api/v1/classrooms/{id}/materials` (documentation only: the handler
/// streams the multipart body itself).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadForm {
    /// The file: a PDF, Word (.docx), Markdown or UTF-8 text file. Its name is kept
    /// without any path, control, bidirectional or invisible formatting characters.
    #[schema(value_type = String, format = Binary, min_length = 1)]
    pub file: Vec<u8>,
}

/// The multipart form of `POST /api/v1/sessions/{id}/chat/speech` (documentation only; the
/// handler reads the multipart body itself).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpeechForm {
    /// The recording: WAV, WebM, Ogg or MP3 (judged by its bytes), at most
    /// `--speech-max-bytes` and, for WAV, `--speech-max-seconds` long.
    #[schema(value_type = String, format = Binary, min_length = 1)]
    pub audio: Vec<u8>,
    /// `true`: also start a chat AI job answering what was said (default `false`).
    #[serde(default)]
    pub ask_ai: Option<bool>,
    /// The spoken language as an ISO-639-1 code (e.g. `en`); default: the speech server
    /// detects it.
    #[serde(default)]
    #[schema(pattern = "^[a-z]{2}$")]
    pub language: Option<String>,
}

/// What a recording became: a message in the session's chat, and maybe an AI job
/// answering it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpeechResponse {
    /// The recognised text, as posted.
    pub text: String,
    /// The chat document it was posted in (`session/{id}/chat`).
    pub doc_id: String,
    /// The message's `id` in the chat document. With `ask_ai`, the AI job posts it
    /// (`{job_id}-question`) as it starts, moments after this answer.
    pub message_id: String,
    /// The AI job answering the message (`ask_ai`); `null` when not asked for or when it
    /// could not start.
    pub job: Option<AiJobResponse>,
    /// Why the AI job could not start (`ask_ai`): what `POST /sessions/{id}/ai/jobs` would
    /// have answered (`ai_unavailable`, `rate_limited`...). The message is posted anyway,
    /// so nothing that was said is lost.
    pub ai_error: Option<ErrorDetail>,
}

/// A file's type, sniffed from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MaterialFormat {
    /// PDF.
    Pdf,
    /// Word (.docx).
    Docx,
    /// Markdown.
    Markdown,
    /// Plain UTF-8 text.
    Text,
}

impl From<DbMaterialFormat> for MaterialFormat {
    fn from(format: DbMaterialFormat) -> Self {
        match format {
            DbMaterialFormat::Pdf => Self::Pdf,
            DbMaterialFormat::Docx => Self::Docx,
            DbMaterialFormat::Markdown => Self::Markdown,
            DbMaterialFormat::Text => Self::Text,
        }
    }
}

/// Where a material is in its ingestion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MaterialStatus {
    /// Stored and readable; waiting to be embedded.
    Queued,
    /// Its text is being split into passages.
    Extracting,
    /// Its passages are being embedded (`progress` in percent).
    Embedding,
    /// Searchable.
    Ready,
    /// Could not be ingested; `error` says why.
    Failed,
}

impl From<DbMaterialStatus> for MaterialStatus {
    fn from(status: DbMaterialStatus) -> Self {
        match status {
            DbMaterialStatus::Queued => Self::Queued,
            DbMaterialStatus::Extracting => Self::Extracting,
            DbMaterialStatus::Embedding => Self::Embedding,
            DbMaterialStatus::Ready => Self::Ready,
            DbMaterialStatus::Failed => Self::Failed,
        }
    }
}

/// A file uploaded to a classroom.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MaterialResponse {
    /// Material id.
    pub id: String,
    /// The classroom it belongs to.
    pub classroom_id: String,
    /// Who uploaded it.
    pub uploaded_by: String,
    /// The name it was uploaded with.
    pub file_name: String,
    /// Its type, from its content.
    pub format: MaterialFormat,
    /// Size in bytes.
    pub size_bytes: i64,
    /// Ingestion state.
    pub status: MaterialStatus,
    /// Percent done within `status`.
    pub progress: i32,
    /// Why ingestion failed (only when `status` is `failed`).
    pub error: Option<String>,
    /// Pages (PDF) or sections found.
    pub sections: Option<i32>,
    /// Passages stored for search.
    pub chunk_count: i32,
    /// Upload time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
    /// The classroom's live feed document (open it over the WebSocket to watch progress).
    pub feed_doc_id: String,
}

impl From<Material> for MaterialResponse {
    fn from(material: Material) -> Self {
        Self {
            feed_doc_id: crate::materials::feed::doc_id_of(&material.classroom_id),
            id: material.id,
            classroom_id: material.classroom_id,
            uploaded_by: material.uploaded_by,
            file_name: material.file_name,
            format: material.format.into(),
            size_bytes: material.size_bytes,
            status: material.status.into(),
            progress: material.progress,
            error: material.error,
            sections: material.sections,
            chunk_count: material.chunk_count,
            created_at: material.created_at,
            updated_at: material.updated_at,
        }
    }
}

/// A passage of a material, with where it is.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChunkResponse {
    /// The material.
    pub material_id: String,
    /// Position among the material's passages, from 0.
    pub ordinal: i32,
    /// 1-based PDF page.
    pub page: Option<i32>,
    /// Heading path (DOCX, Markdown), e.g. `"Cells > Mitochondria"`.
    pub heading: Option<String>,
    /// First line of the passage in a text or Markdown file, from 1.
    pub line_start: Option<i32>,
    /// Last line of the passage in a text or Markdown file.
    pub line_end: Option<i32>,
    /// The passage.
    pub text: String,
}

impl From<MaterialChunk> for ChunkResponse {
    fn from(chunk: MaterialChunk) -> Self {
        Self {
            material_id: chunk.material_id,
            ordinal: chunk.ordinal,
            page: chunk.page,
            heading: chunk.heading,
            line_start: chunk.line_start,
            line_end: chunk.line_end,
            text: chunk.text,
        }
    }
}

/// `POST /api/v1/classrooms/{id}/search`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// A question or phrase, 1 to 2000 characters.
    #[schema(schema_with = search_query_schema)]
    pub query: String,
    /// Search only these materials of the classroom (1 to 20); all ready ones when absent.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 20)]
    pub material_ids: Option<Vec<String>>,
    /// How many passages to return, 1 to 50 (default 5).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 50)]
    pub k: Option<usize>,
}

/// One passage found by a search.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SearchHitResponse {
    /// The passage and where it is.
    #[serde(flatten)]
    pub chunk: ChunkResponse,
    /// The material's file name (for citations).
    pub file_name: String,
    /// Cosine similarity to the query, -1 to 1.
    pub score: f32,
}

/// The passages most similar in meaning to the query, best first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SearchResponse {
    /// Best first.
    pub hits: Vec<SearchHitResponse>,
}

/// What a live AI job produces (see `docs/ai.md` for where each writes and in which shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AiJobKind {
    /// An answer over classroom materials, with citations, appended to the session chat.
    Chat,
    /// Study notes from materials, appended to the session notes.
    Notes,
    /// An answer to a question from the session notes' current text, into the chat.
    Qa,
    /// A mindmap of the materials, grown live in the session mindmap.
    Mindmap,
    /// A multiple-choice quiz (faculty only), into a new classroom document.
    Quiz,
    /// Flashcards (faculty only), into a new classroom document.
    Flashcards,
    /// An exam paper with marks (faculty only), into a new classroom document.
    Exam,
    /// A lesson plan (faculty only), into a new classroom document.
    LessonPlan,
    /// A translation of a notes document (faculty only), into a new classroom document.
    Translate,
}

impl AiJobKind {
    /// Every kind, for the request schema's per-kind conditions.
    pub const ALL: [AiJobKind; 9] = [
        Self::Chat,
        Self::Notes,
        Self::Qa,
        Self::Mindmap,
        Self::Quiz,
        Self::Flashcards,
        Self::Exam,
        Self::LessonPlan,
        Self::Translate,
    ];

    /// The wire spelling (also the `kind` written into documents and metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Notes => "notes",
            Self::Qa => "qa",
            Self::Mindmap => "mindmap",
            Self::Quiz => "quiz",
            Self::Flashcards => "flashcards",
            Self::Exam => "exam",
            Self::LessonPlan => "lesson_plan",
            Self::Translate => "translate",
        }
    }
}

/// `POST /api/v1/sessions/{id}/ai/jobs` (and the WebSocket's AI request).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AiJobRequest {
    /// What to produce.
    pub kind: AiJobKind,
    /// The question (chat, qa: required) or the topic and instructions (the other kinds);
    /// at most 4000 characters.
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub prompt: Option<String>,
    /// Restrict retrieval to these materials of the classroom (default: all of them);
    /// 1 to 20.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 20)]
    pub material_ids: Option<Vec<String>>,
    /// The target language (translate: required, 1 to 40 characters), e.g. `French`.
    #[serde(default, deserialize_with = "text::optional_visible_text")]
    #[schema(max_length = 40)]
    pub language: Option<String>,
    /// The document to translate (translate; default: the session notes).
    #[serde(default)]
    pub source_doc_id: Option<String>,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AiJobStatus {
    /// Accepted; retrieving sources, waiting for a generation slot (`queue_position`) or
    /// waiting for the first token.
    Queued,
    /// Tokens are being written into the document.
    Streaming,
    /// Finished; the document holds the result.
    Done,
    /// Failed; `error` says why (also written into the document).
    Failed,
    /// Cancelled; what was written so far stays.
    Cancelled,
}

impl AiJobStatus {
    /// The wire spelling (also written into documents).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Streaming => "streaming",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the job is over.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Cancelled)
    }
}

/// A live AI job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AiJobResponse {
    /// Job id (for status and cancel).
    pub job_id: String,
    /// What it produces.
    pub kind: AiJobKind,
    /// The session it belongs to.
    pub session_id: String,
    /// The document it writes into; open it over the WebSocket to watch.
    pub doc_id: String,
    /// Where it is.
    pub status: AiJobStatus,
    /// Why it failed (status `failed`).
    pub error: Option<String>,
    /// Whether the answer came from the answer cache (no generation ran).
    pub cached: bool,
    /// Prompt tokens counted (0 while running and for cached answers).
    pub prompt_tokens: u32,
    /// Generated tokens counted.
    pub completion_tokens: u32,
    /// The account that started it.
    pub started_by: String,
    /// When it was accepted, Unix seconds.
    pub created_at: i64,
    /// When it ended, Unix seconds; `null` while running.
    pub finished_at: Option<i64>,
    /// While the job waits for the model (status `queued`): its place in line, 1 = next.
    /// Classrooms take turns, so it can improve when other classrooms' jobs are served.
    /// `null` when not waiting.
    pub queue_position: Option<u32>,
}

/// An email as `register` accepts it: at most 254 characters, `local@domain.tld`, no
/// whitespace or invisible characters.
fn email_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .description(Some("Login name; compared case-insensitively."))
        .max_length(Some(254))
        .pattern(Some(text::email_pattern()))
        .build()
}

/// A display name: 1 to 100 visible characters (see `text::visible_text`).
fn display_name_schema() -> utoipa::openapi::Object {
    name_schema("Shown to others; 1 to 100 characters.", 100)
}

/// A classroom name: 1 to 200 visible characters.
fn classroom_name_schema() -> utoipa::openapi::Object {
    name_schema("1 to 200 characters.", 200)
}

fn name_schema(description: &str, max_chars: usize) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .description(Some(description))
        .min_length(Some(1))
        .max_length(Some(max_chars))
        .pattern(Some(text::name_pattern(true)))
        .build()
}

/// A search query: 1 to 2000 characters, not only whitespace.
fn search_query_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .description(Some("A question or phrase, 1 to 2000 characters."))
        .min_length(Some(1))
        .max_length(Some(2000))
        .pattern(Some(text::text_pattern(true)))
        .build()
}

/// What [`AiJobRequest`] requires per kind, as JSON Schema: `chat` and `qa` need a
/// `prompt` that is not blank, `translate` needs a `language` (1 to 40 characters, not
/// blank), the other kinds need neither. The OpenAPI document puts this beside the
/// derived object schema in an `allOf` (see `api/mod.rs`), so a schema-driven client
/// never sends a job the server refuses for a missing field.
pub(crate) fn ai_job_request_by_kind() -> utoipa::openapi::OneOf {
    use utoipa::openapi::{ObjectBuilder, OneOfBuilder, Type};

    let kinds = |kinds: &[AiJobKind]| -> Vec<&'static str> {
        kinds.iter().map(|kind| kind.as_str()).collect()
    };
    let kind = |values: Vec<&'static str>| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(values))
    };
    let needs_prompt = [AiJobKind::Chat, AiJobKind::Qa];
    let needs_language = [AiJobKind::Translate];
    let neither: Vec<AiJobKind> = AiJobKind::ALL
        .into_iter()
        .filter(|kind| !needs_prompt.contains(kind) && !needs_language.contains(kind))
        .collect();
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .property("kind", kind(kinds(&needs_prompt)))
                .property(
                    "prompt",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(text::text_pattern(true))),
                )
                .required("kind")
                .required("prompt"),
        )
        .item(
            ObjectBuilder::new()
                .property("kind", kind(kinds(&needs_language)))
                .property(
                    "language",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1))
                        .pattern(Some(text::name_pattern(true))),
                )
                .required("kind")
                .required("language"),
        )
        .item(
            ObjectBuilder::new()
                .property("kind", kind(kinds(&neither)))
                .required("kind"),
        )
        .build()
}

/// `POST /api/v1/classrooms/{id}/webhooks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// Where deliveries are POSTed: `http` or `https`, no user name or password, a host
    /// that is (and resolves to) a public address.
    pub url: String,
    /// The events it receives (at least one): `session.started`, `session.ended`,
    /// `material.ready`, `material.failed`, `ai_job.finished`, `member.joined`,
    /// `document.updated`, `handout.given`.
    pub events: Vec<String>,
}

/// A classroom's webhook.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookResponse {
    /// Opaque id.
    pub id: String,
    /// The classroom whose events it receives.
    pub classroom_id: String,
    /// Where deliveries are POSTed.
    pub url: String,
    /// The events it receives.
    pub events: Vec<String>,
    /// The account that registered it.
    pub created_by: String,
    /// When it was registered, Unix seconds.
    pub created_at: i64,
    /// The signing secret (`X-Lectern-Signature`); only in the answer to the
    /// registration, never again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl From<lectern_db::webhooks::Webhook> for WebhookResponse {
    fn from(webhook: lectern_db::webhooks::Webhook) -> Self {
        Self {
            id: webhook.id,
            classroom_id: webhook.classroom_id,
            url: webhook.url,
            events: webhook.events,
            created_by: webhook.created_by,
            created_at: webhook.created_at,
            secret: None,
        }
    }
}

/// Where a webhook delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookDeliveryState {
    /// Not delivered yet; retried until delivered or given up.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up (retried for `--webhook-retry-for-secs`, or the webhook was deleted).
    Failed,
}

/// One delivery of an event to a webhook, as in its delivery log.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookDeliveryResponse {
    /// The delivery id (`X-Lectern-Delivery`, and `id` in the body).
    pub id: String,
    /// The event name.
    pub event: String,
    /// Where it is.
    pub state: WebhookDeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// The receiver's HTTP status at the last attempt, if it answered.
    pub last_status: Option<u16>,
    /// Why the last attempt failed (the status and the start of the receiver's answer,
    /// a timeout, a refused address...).
    pub last_error: Option<String>,
    /// When the event happened, Unix seconds.
    pub created_at: i64,
    /// While pending: when the next attempt is due, Unix seconds.
    pub next_attempt_at: Option<i64>,
    /// When the receiver accepted it, Unix seconds.
    pub delivered_at: Option<i64>,
}

impl From<lectern_db::webhooks::Delivery> for WebhookDeliveryResponse {
    fn from(delivery: lectern_db::webhooks::Delivery) -> Self {
        use lectern_db::webhooks::DeliveryState;
        let state = match delivery.state {
            DeliveryState::Pending => WebhookDeliveryState::Pending,
            DeliveryState::Delivered => WebhookDeliveryState::Delivered,
            DeliveryState::Failed => WebhookDeliveryState::Failed,
        };
        Self {
            id: delivery.id,
            event: delivery.event,
            state,
            attempts: delivery.attempts,
            last_status: delivery.last_status,
            last_error: delivery.last_error,
            created_at: delivery.created_at_ms.div_euclid(1000),
            next_attempt_at: (state == WebhookDeliveryState::Pending)
                .then(|| delivery.next_attempt_at_ms.div_euclid(1000)),
            delivered_at: delivery.delivered_at_ms.map(|ms| ms.div_euclid(1000)),
        }
    }
}

/// `POST /documents/{doc}/update` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UpdateAppliedResponse {
    /// Always `true`: the update is stored and sent to connected clients.
    pub applied: bool,
}

/// `POST /documents/{doc}/versions` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointRequest {
    /// A name for the checkpoint (at most 120 characters), e.g. `Before the group work`.
    #[serde(default, deserialize_with = "text::optional_visible_text")]
    #[schema(max_length = 120)]
    pub label: Option<String>,
}

/// A kept version of a document (its content: `GET .../versions/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionResponse {
    pub id: i64,
    pub doc_id: String,
    /// When it was kept, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Why: `session_started`, `session_ended`, `before_ai_job`, `after_ai_job`,
    /// `checkpoint`, `activity` (while edited, and when editing stops) or `before_restore`.
    pub reason: String,
    /// A checkpoint's name.
    pub label: Option<String>,
    /// Who asked for it (`user:<id>`, `ai:<job id>`...), if someone did.
    pub author: Option<String>,
    /// Size of the kept state in bytes.
    pub bytes: i64,
}

impl From<lectern_db::history::VersionInfo> for VersionResponse {
    fn from(info: lectern_db::history::VersionInfo) -> Self {
        Self {
            id: info.id,
            doc_id: info.doc_id,
            created_at_ms: info.created_at_ms,
            reason: info.reason,
            label: info.label,
            author: info.author,
            bytes: info.bytes,
        }
    }
}

/// `POST .../versions/{v}/restore` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RestoreResponse {
    /// The version the document was brought back to.
    pub restored: i64,
    /// Whether anything changed (false: the document already read as that version).
    pub changed: bool,
    /// The version kept just before the restore (restore it to undo this one); none when
    /// the document was empty.
    pub before_restore: Option<i64>,
}

/// One person's contribution to one document of a session.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DocumentContribution {
    pub doc_id: String,
    /// `notes`, `mindmap`, `chat`, `template`, `fork`.
    pub kind: Option<String>,
    /// Characters they typed (UTF-16 code units, as Yjs counts text).
    pub inserted: i64,
    /// Characters (and values) they deleted.
    pub deleted: i64,
    /// Characters AI jobs they started wrote.
    pub ai_inserted: i64,
    /// Their stored edits (a burst of typing stored together counts once).
    pub edits: i64,
    /// First and last edit (theirs or their AI jobs'), milliseconds since the Unix epoch.
    pub first_edit_at_ms: Option<i64>,
    pub last_edit_at_ms: Option<i64>,
    /// Distinct minutes in which they edited.
    pub active_minutes: i64,
}

/// One person's contribution to a session.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ContributionResponse {
    /// How the history names them: `user:<id>`, or an embedder's token subject.
    pub author: String,
    /// Their account, when they have one here.
    pub user_id: Option<String>,
    pub display_name: Option<String>,
    pub inserted: i64,
    pub deleted: i64,
    pub ai_inserted: i64,
    /// `ai_inserted` as a share of everything inserted for them (0 to 1).
    pub ai_share: f64,
    pub edits: i64,
    pub first_edit_at_ms: Option<i64>,
    pub last_edit_at_ms: Option<i64>,
    /// Distinct minutes in which they edited any document.
    pub active_minutes: i64,
    pub documents: Vec<DocumentContribution>,
}

/// How much of a document people and AI wrote.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DocumentShareResponse {
    pub doc_id: String,
    pub kind: Option<String>,
    pub human_inserted: i64,
    pub ai_inserted: i64,
    /// `ai_inserted` as a share of everything inserted (0 to 1).
    pub ai_share: f64,
}

/// `GET /sessions/{id}/contributions`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ContributionsResponse {
    pub session_id: String,
    /// Everyone who edited, by `author`.
    pub people: Vec<ContributionResponse>,
    /// Each document that was edited.
    pub documents: Vec<DocumentShareResponse>,
}

/// `GET`/`PUT /api/v1/me/notifications`: how the caller is notified besides the inbox.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationSettings {
    /// Whether session starts and handouts are also emailed (default `true`; only when the
    /// server has an SMTP relay configured).
    pub email: bool,
}

/// `POST /api/v1/me/inbox/read`: which inbox items to mark read, by id, or all of them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkInboxReadRequest {
    /// Item ids (the `id` of entries in `user/{id}/inbox`); unknown ids are ignored. At
    /// most 200.
    #[serde(default)]
    pub ids: Option<Vec<String>>,
    /// `true` to mark every item read (instead of `ids`).
    #[serde(default)]
    pub all: Option<bool>,
}
