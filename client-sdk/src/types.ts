/**
 * Wire types of the REST API, hand-written from `docs/api.md`, `docs/ai.md` and
 * `server/src/api/dto.rs` (the OpenAPI schema of each is named in {@link WIRE_SCHEMAS}).
 *
 * API boundary: each interface here has an entry in {@link WIRE_SCHEMAS} listing its
 * property names. `tsc` checks that every list names exactly the interface's properties
 * (see `fields`), and the contract test checks each list against the schema's properties in
 * the server's own OpenAPI document, so a field added or renamed on either side fails the
 * build or the tests. Enum spellings are checked the same way through {@link WIRE_ENUMS}.
 * Times are Unix seconds.
 */

/** A server-wide account role. */
export const ROLES = ['faculty', 'student', 'admin'] as const
export type Role = (typeof ROLES)[number]
/** The roles one may register with. */
export const REGISTER_ROLES = ['faculty', 'student'] as const
export type RegisterRole = (typeof REGISTER_ROLES)[number]
/** A role inside one classroom. */
export const MEMBER_ROLES = ['faculty', 'student'] as const
export type MemberRole = (typeof MEMBER_ROLES)[number]
/** Where a live session is in its life. */
export const SESSION_STATES = ['live', 'locked', 'ended'] as const
export type SessionState = (typeof SESSION_STATES)[number]
/** What a document is for. */
export const DOCUMENT_KINDS = ['notes', 'mindmap', 'chat', 'lectern', 'template', 'fork'] as const
export type DocumentKind = (typeof DOCUMENT_KINDS)[number]
/** What the caller may do with a document over the WebSocket. */
export const DOCUMENT_ACCESS = ['read', 'write'] as const
export type DocumentAccess = (typeof DOCUMENT_ACCESS)[number]
/** What a document token allows. */
export const DOC_TOKEN_ACCESS = ['full', 'read'] as const
export type DocTokenAccess = (typeof DOC_TOKEN_ACCESS)[number]
/** A file's type, sniffed from its bytes. */
export const MATERIAL_FORMATS = ['pdf', 'docx', 'markdown', 'text'] as const
export type MaterialFormat = (typeof MATERIAL_FORMATS)[number]
/** Where a material is in its ingestion. */
export const MATERIAL_STATUSES = ['queued', 'extracting', 'embedding', 'ready', 'failed'] as const
export type MaterialStatus = (typeof MATERIAL_STATUSES)[number]
/** What a live AI job produces (docs/ai.md, "Kinds and where they write"). */
export const AI_JOB_KINDS = ['chat', 'notes', 'qa', 'mindmap', 'quiz', 'flashcards', 'exam', 'lesson_plan', 'translate'] as const
export type AiJobKind = (typeof AI_JOB_KINDS)[number]
/** Where an AI job is. */
export const AI_JOB_STATUSES = ['queued', 'streaming', 'done', 'failed', 'cancelled'] as const
export type AiJobStatus = (typeof AI_JOB_STATUSES)[number]

/** Whether an AI job is over (`done`, `failed` or `cancelled`). */
export function isFinalJobStatus (status: AiJobStatus): boolean {
  return status === 'done' || status === 'failed' || status === 'cancelled'
}

// ---- requests ----

/** `POST /auth/register`. */
export interface RegisterRequest {
  /** Login name; compared case-insensitively. */
  email: string
  /** Shown to classmates (1–100 characters). */
  display_name: string
  /** 8–1024 characters. */
  password: string
  role: RegisterRole
}

/** `POST /auth/login`. */
export interface LoginRequest {
  email: string
  password: string
}

/** `POST /auth/refresh` and `POST /auth/logout`. */
export interface RefreshRequest {
  refresh_token: string
}

/** `POST /doc-tokens` (with the server API key). */
export interface DocTokenRequest {
  /** The document id. */
  doc: string
  access: DocTokenAccess
}

/** `POST /classrooms`. */
export interface CreateClassroomRequest {
  /** 1–200 characters. */
  name: string
}

/** `POST /classrooms/join`. */
export interface JoinClassroomRequest {
  /** The 8-character code; case, spaces and dashes are ignored. */
  join_code: string
}

/** `POST /sessions/{id}/handouts`. */
export interface HandoutRequest {
  /** A template (or session document) of the session's classroom. */
  template_doc_id: string
}

/** `POST /classrooms/{id}/search`. */
export interface SearchRequest {
  /** 1–2000 characters. */
  query: string
  /** Only these materials of the classroom (default: all ready ones). */
  material_ids?: string[]
  /** 1–50, default 5. */
  k?: number
}

/** `POST /sessions/{id}/ai/jobs`. */
export interface AiJobRequest {
  kind: AiJobKind
  /** The question (chat, qa: required) or topic; at most 4000 characters. */
  prompt?: string
  /** Restrict retrieval to these materials; at most 20. */
  material_ids?: string[]
  /** Target language (translate: required), e.g. `French`. */
  language?: string
  /** The document to translate (default: the session notes). */
  source_doc_id?: string
}

// ---- responses ----

/** An account (the email is shown only to its owner). */
export interface User {
  id: string
  email: string
  display_name: string
  role: Role
  created_at: number
}

/** Tokens for a signed-in user: after register, login and refresh. */
export interface AuthSession {
  user: User
  /** Send as `Authorization: Bearer <access_token>`. */
  access_token: string
  /** Always `Bearer`. */
  token_type: string
  /** Seconds until the access token expires. */
  expires_in: number
  /** Single use: exchange at `/auth/refresh` for a new pair. */
  refresh_token: string
  /** Seconds until the refresh token expires. */
  refresh_expires_in: number
}

/** A document token for one document. */
export interface DocToken {
  token: string
  doc: string
  access: DocTokenAccess
  expires_in: number
}

/** A classroom as one of its members sees it. */
export interface Classroom {
  id: string
  name: string
  /** The caller's role in it. */
  role: MemberRole
  /** The current join code; `null` unless the caller is faculty of it. */
  join_code: string | null
  created_at: number
}

/** One member of a classroom. */
export interface Member {
  user_id: string
  display_name: string
  role: MemberRole
  joined_at: number
}

/** A document the caller may open, and how. */
export interface DocumentInfo {
  /** Open it with `openDocument(client, doc_id)`. */
  doc_id: string
  kind: DocumentKind
  /** The caller's access at the time of the response. */
  access: DocumentAccess
  /** For forks: the student it belongs to. */
  owner_user_id: string | null
  /** For forks: the document it was copied from. */
  template_doc_id: string | null
}

/** The follow-the-teacher focus; also the body of `PUT /sessions/{id}/focus`. */
export interface Focus {
  /** A document of the session's classroom. */
  doc_id: string
  /** Where in it (client-defined); at most 200 characters. */
  section?: string | null
}

/** A live session and the documents the caller may open in it. */
/** One of a classroom's sessions as listed (`listSessions`); `getSession` gives its
 * documents. */
export interface SessionSummary {
  id: string
  classroom_id: string
  state: SessionState
  started_by: string
  started_at: number
  /** `null` while running. */
  ended_at: number | null
}

export interface LiveSession {
  id: string
  classroom_id: string
  state: SessionState
  started_by: string
  started_at: number
  /** `null` while running. */
  ended_at: number | null
  focus: Focus | null
  /** Notes, mindmap and chat, then forks (students see only their own). */
  documents: DocumentInfo[]
}

/** Every student's fork of one handed-out template. */
export interface Handout {
  template_doc_id: string
  forks: DocumentInfo[]
}

/** A file uploaded to a classroom. */
export interface Material {
  id: string
  classroom_id: string
  uploaded_by: string
  file_name: string
  format: MaterialFormat
  size_bytes: number
  status: MaterialStatus
  /** Percent done within `status`. */
  progress: number
  /** Why ingestion failed (status `failed`). */
  error: string | null
  /** Pages (PDF) or sections found. */
  sections: number | null
  /** Passages stored for search. */
  chunk_count: number
  created_at: number
  updated_at: number
  /** The classroom's live feed document (see `materialsFeed`). */
  feed_doc_id: string
}

/** A passage of a material, with where it is. */
export interface Chunk {
  material_id: string
  /** Position among the material's passages, from 0. */
  ordinal: number
  /** 1-based PDF page. */
  page: number | null
  /** Heading path, e.g. `"Cells > Mitochondria"`. */
  heading: string | null
  /** First line of the passage in a text or Markdown file, from 1. */
  line_start: number | null
  /** Last line of the passage in a text or Markdown file. */
  line_end: number | null
  text: string
}

/** One passage found by a search. */
export interface SearchHit extends Chunk {
  /** The material's file name (for citations). */
  file_name: string
  /** Cosine similarity to the query, -1 to 1. */
  score: number
}

/** `POST /classrooms/{id}/search`. */
export interface SearchResult {
  /** Best first. */
  hits: SearchHit[]
}

/** A live AI job (docs/ai.md). */
export interface AiJob {
  job_id: string
  kind: AiJobKind
  session_id: string
  /** The document it writes into; open it to watch. */
  doc_id: string
  status: AiJobStatus
  /** Why it failed (status `failed`). */
  error: string | null
  /** Whether the answer came from the answer cache. */
  cached: boolean
  prompt_tokens: number
  completion_tokens: number
  started_by: string
  created_at: number
  /** `null` while running. */
  finished_at: number | null
  /** While waiting for the model (`queued`): place in line, 1 = next; else `null`. */
  queue_position: number | null
}

/** `POST /sessions/{id}/chat/speech`: what a recording became (docs/api.md, "Speech input"). */
export interface SpeechResult {
  /** The recognised text, as posted in the chat. */
  text: string
  /** The chat document it was posted in (`session/{id}/chat`). */
  doc_id: string
  /** The message's `id` in the chat; with `ask_ai`, `{job_id}-question`, which the job
   * posts as it starts, moments after this answer. */
  message_id: string
  /** The chat job answering it (`askAi`); `null` when not asked for or when it could not start. */
  job: AiJob | null
  /** Why the job could not start (`askAi`), e.g. `ai_unavailable`; the message is posted anyway. */
  ai_error: ErrorDetail | null
}

/** The events a webhook can receive (docs/api.md, "Webhooks"). */
export const WEBHOOK_EVENTS = [
  'session.started', 'session.ended', 'material.ready', 'material.failed',
  'ai_job.finished', 'member.joined', 'document.updated', 'handout.given'
] as const
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number]

/** `POST /classrooms/{id}/webhooks` body. */
export interface CreateWebhookRequest {
  /** Where deliveries are POSTed: `http` or `https`, a public address. */
  url: string
  /** At least one. */
  events: WebhookEvent[]
}

/** A classroom's webhook. */
export interface Webhook {
  id: string
  classroom_id: string
  url: string
  events: string[]
  created_by: string
  /** Unix seconds. */
  created_at: number
  /** The signing secret (`X-Lectern-Signature`): only in the answer to the registration. */
  secret?: string
}

export const WEBHOOK_DELIVERY_STATES = ['pending', 'delivered', 'failed'] as const
export type WebhookDeliveryState = (typeof WEBHOOK_DELIVERY_STATES)[number]

/** One delivery in a webhook's log. */
export interface WebhookDelivery {
  id: string
  event: string
  state: WebhookDeliveryState
  attempts: number
  /** The receiver's HTTP status at the last attempt. */
  last_status: number | null
  last_error: string | null
  /** Unix seconds. */
  created_at: number
  next_attempt_at: number | null
  delivered_at: number | null
}

/** `POST /documents/{doc}/update`: the update is stored and sent to connected clients. */
export interface UpdateApplied {
  applied: boolean
}

/** A kept version of a document (`listVersions`); its content: `getVersion`. */
export interface DocumentVersion {
  id: number
  doc_id: string
  /** When it was kept, milliseconds since the Unix epoch. */
  created_at_ms: number
  /** `session_started`, `session_ended`, `before_ai_job`, `after_ai_job`, `checkpoint`,
   * `activity` (while edited, and when editing stops) or `before_restore`. */
  reason: string
  /** A checkpoint's name. */
  label: string | null
  /** Who asked for it (`user:<id>`, `ai:<job id>`...), if someone did. */
  author: string | null
  /** Size of the kept state in bytes. */
  bytes: number
}

/** `restoreVersion`: what the restore did. */
export interface RestoreResult {
  /** The version the document was brought back to. */
  restored: number
  /** Whether anything changed. */
  changed: boolean
  /** The version kept just before the restore: restore it to undo this one. */
  before_restore: number | null
}

/** One person's contribution to one document of a session. */
export interface DocumentContribution {
  doc_id: string
  kind: string | null
  /** Characters typed (UTF-16 code units, as Yjs counts text). */
  inserted: number
  deleted: number
  /** Characters AI jobs they started wrote. */
  ai_inserted: number
  edits: number
  first_edit_at_ms: number | null
  last_edit_at_ms: number | null
  active_minutes: number
}

/** One person's contribution to a session (`getContributions`). */
export interface PersonContribution extends Omit<DocumentContribution, 'doc_id' | 'kind'> {
  /** How the history names them: `user:<id>`, or an embedder's token subject. */
  author: string
  user_id: string | null
  display_name: string | null
  /** `ai_inserted` as a share of everything inserted for them (0 to 1). */
  ai_share: number
  documents: DocumentContribution[]
}

/** How much of a document people and AI wrote. */
export interface DocumentShare {
  doc_id: string
  kind: string | null
  human_inserted: number
  ai_inserted: number
  ai_share: number
}

/** `GET /sessions/{id}/contributions` (faculty). */
export interface Contributions {
  session_id: string
  people: PersonContribution[]
  documents: DocumentShare[]
}

/** The error body: `{"error": {"code", "message"}}`. */
export interface ErrorBody {
  error: ErrorDetail
}

/** The code (see `ERROR_CODES`) and a message for people. */
export interface ErrorDetail {
  code: string
  message: string
}

// ---- notifications ----

/** `GET`/`PUT /me/notifications`: how you are notified besides the inbox. */
export interface NotificationSettings {
  /** Whether session starts and handouts are also emailed (default `true`; only when the
   * server has an SMTP relay configured). */
  email: boolean
}

/** `POST /me/inbox/read`: `ids`, or `all: true`. */
export interface MarkInboxReadRequest {
  /** Inbox item ids (at most 200); unknown ids are ignored. */
  ids?: string[]
  all?: boolean
}

/** What an inbox item is about (docs/api.md "Notifications"). */
export const INBOX_KINDS = ['session_started', 'material_ready', 'material_failed', 'ai_job_finished', 'handout'] as const
export type InboxKind = (typeof INBOX_KINDS)[number]

// ---- the table the contract test checks ----

/** `true` when `K` lists every key of `T` (extra keys are refused by `K`'s bound). */
type Exhaustive<T, K extends readonly (keyof T)[]> =
  [Exclude<keyof T, K[number]>] extends [never] ? K : { missing: Exclude<keyof T, K[number]> }

/** The property names of `T`, checked by tsc: none missing, none unknown. */
function fields<T> () {
  return <const K extends readonly (keyof T)[]>(...keys: K & Exhaustive<T, K>): K => keys
}

/**
 * SDK type name → the OpenAPI schema it models (in `GET /api/v1/openapi.json`) and the
 * property names the SDK type declares. Checked by `tsc` against the interfaces above and
 * by the contract test against the server.
 */
export const WIRE_SCHEMAS = {
  RegisterRequest: { schema: 'RegisterRequest', properties: fields<RegisterRequest>()('email', 'display_name', 'password', 'role') },
  LoginRequest: { schema: 'LoginRequest', properties: fields<LoginRequest>()('email', 'password') },
  RefreshRequest: { schema: 'RefreshRequest', properties: fields<RefreshRequest>()('refresh_token') },
  DocTokenRequest: { schema: 'DocTokenRequest', properties: fields<DocTokenRequest>()('doc', 'access') },
  CreateClassroomRequest: { schema: 'CreateClassroomRequest', properties: fields<CreateClassroomRequest>()('name') },
  JoinClassroomRequest: { schema: 'JoinClassroomRequest', properties: fields<JoinClassroomRequest>()('join_code') },
  HandoutRequest: { schema: 'HandoutRequest', properties: fields<HandoutRequest>()('template_doc_id') },
  SearchRequest: { schema: 'SearchRequest', properties: fields<SearchRequest>()('query', 'material_ids', 'k') },
  AiJobRequest: { schema: 'AiJobRequest', properties: fields<AiJobRequest>()('kind', 'prompt', 'material_ids', 'language', 'source_doc_id') },
  User: { schema: 'UserResponse', properties: fields<User>()('id', 'email', 'display_name', 'role', 'created_at') },
  AuthSession: { schema: 'SessionResponse', properties: fields<AuthSession>()('user', 'access_token', 'token_type', 'expires_in', 'refresh_token', 'refresh_expires_in') },
  DocToken: { schema: 'DocTokenResponse', properties: fields<DocToken>()('token', 'doc', 'access', 'expires_in') },
  Classroom: { schema: 'ClassroomResponse', properties: fields<Classroom>()('id', 'name', 'role', 'join_code', 'created_at') },
  Member: { schema: 'MemberResponse', properties: fields<Member>()('user_id', 'display_name', 'role', 'joined_at') },
  DocumentInfo: { schema: 'DocumentResponse', properties: fields<DocumentInfo>()('doc_id', 'kind', 'access', 'owner_user_id', 'template_doc_id') },
  Focus: { schema: 'Focus', properties: fields<Focus>()('doc_id', 'section') },
  SessionSummary: { schema: 'SessionSummaryResponse', properties: fields<SessionSummary>()('id', 'classroom_id', 'state', 'started_by', 'started_at', 'ended_at') },
  LiveSession: { schema: 'LiveSessionResponse', properties: fields<LiveSession>()('id', 'classroom_id', 'state', 'started_by', 'started_at', 'ended_at', 'focus', 'documents') },
  Handout: { schema: 'HandoutResponse', properties: fields<Handout>()('template_doc_id', 'forks') },
  Material: { schema: 'MaterialResponse', properties: fields<Material>()('id', 'classroom_id', 'uploaded_by', 'file_name', 'format', 'size_bytes', 'status', 'progress', 'error', 'sections', 'chunk_count', 'created_at', 'updated_at', 'feed_doc_id') },
  Chunk: { schema: 'ChunkResponse', properties: fields<Chunk>()('material_id', 'ordinal', 'page', 'heading', 'line_start', 'line_end', 'text') },
  SearchHit: { schema: 'SearchHitResponse', properties: fields<SearchHit>()('material_id', 'ordinal', 'page', 'heading', 'line_start', 'line_end', 'text', 'file_name', 'score') },
  SearchResult: { schema: 'SearchResponse', properties: fields<SearchResult>()('hits') },
  AiJob: { schema: 'AiJobResponse', properties: fields<AiJob>()('job_id', 'kind', 'session_id', 'doc_id', 'status', 'error', 'cached', 'prompt_tokens', 'completion_tokens', 'started_by', 'created_at', 'finished_at', 'queue_position') },
  SpeechResult: { schema: 'SpeechResponse', properties: fields<SpeechResult>()('text', 'doc_id', 'message_id', 'job', 'ai_error') },
  CreateWebhookRequest: { schema: 'CreateWebhookRequest', properties: fields<CreateWebhookRequest>()('url', 'events') },
  Webhook: { schema: 'WebhookResponse', properties: fields<Webhook>()('id', 'classroom_id', 'url', 'events', 'created_by', 'created_at', 'secret') },
  WebhookDelivery: { schema: 'WebhookDeliveryResponse', properties: fields<WebhookDelivery>()('id', 'event', 'state', 'attempts', 'last_status', 'last_error', 'created_at', 'next_attempt_at', 'delivered_at') },
  UpdateApplied: { schema: 'UpdateAppliedResponse', properties: fields<UpdateApplied>()('applied') },
  DocumentVersion: { schema: 'VersionResponse', properties: fields<DocumentVersion>()('id', 'doc_id', 'created_at_ms', 'reason', 'label', 'author', 'bytes') },
  RestoreResult: { schema: 'RestoreResponse', properties: fields<RestoreResult>()('restored', 'changed', 'before_restore') },
  DocumentContribution: { schema: 'DocumentContribution', properties: fields<DocumentContribution>()('doc_id', 'kind', 'inserted', 'deleted', 'ai_inserted', 'edits', 'first_edit_at_ms', 'last_edit_at_ms', 'active_minutes') },
  PersonContribution: { schema: 'ContributionResponse', properties: fields<PersonContribution>()('author', 'user_id', 'display_name', 'inserted', 'deleted', 'ai_inserted', 'ai_share', 'edits', 'first_edit_at_ms', 'last_edit_at_ms', 'active_minutes', 'documents') },
  DocumentShare: { schema: 'DocumentShareResponse', properties: fields<DocumentShare>()('doc_id', 'kind', 'human_inserted', 'ai_inserted', 'ai_share') },
  Contributions: { schema: 'ContributionsResponse', properties: fields<Contributions>()('session_id', 'people', 'documents') },
  NotificationSettings: { schema: 'NotificationSettings', properties: fields<NotificationSettings>()('email') },
  MarkInboxReadRequest: { schema: 'MarkInboxReadRequest', properties: fields<MarkInboxReadRequest>()('ids', 'all') },
  ErrorBody: { schema: 'ErrorBody', properties: fields<ErrorBody>()('error') },
  ErrorDetail: { schema: 'ErrorDetail', properties: fields<ErrorDetail>()('code', 'message') }
} as const

/** OpenAPI enum schema name → the spellings the SDK's union type allows. */
export const WIRE_ENUMS = {
  Role: ROLES,
  RegisterRole: REGISTER_ROLES,
  MemberRole: MEMBER_ROLES,
  SessionState: SESSION_STATES,
  DocumentKind: DOCUMENT_KINDS,
  DocumentAccess: DOCUMENT_ACCESS,
  DocAccess: DOC_TOKEN_ACCESS,
  MaterialFormat: MATERIAL_FORMATS,
  MaterialStatus: MATERIAL_STATUSES,
  AiJobKind: AI_JOB_KINDS,
  AiJobStatus: AI_JOB_STATUSES,
  WebhookDeliveryState: WEBHOOK_DELIVERY_STATES
} as const
