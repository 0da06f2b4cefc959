/**
 * `LecternClient`: the REST API (`/api/v1`, docs/api.md and docs/ai.md) over `fetch`, for
 * Node 20 and browsers, with the signed-in user's tokens.
 *
 * Tokens: register, login and refresh store the returned pair. Refresh tokens are single
 * use (rotation), so every refresh stores the new one, and concurrent callers share one
 * in-flight refresh (two refreshes with the same token would revoke the login as
 * `refresh_token_reused`). A call answered `401 token_expired` refreshes once and is retried.
 */

import { LecternError } from './errors.js'
import type {
  AiJob, AiJobRequest, AuthSession, Chunk, Classroom, Contributions, DocToken, DocTokenRequest,
  DocumentInfo, DocumentVersion, Focus, Handout, LiveSession, LoginRequest, Material, Member,
  NotificationSettings, RegisterRequest, RestoreResult, SearchRequest, SearchResult, SessionSummary, SpeechResult,
  UpdateApplied, User, CreateWebhookRequest, Webhook, WebhookDelivery
} from './types.js'

/** The tokens of a signed-in user, as the client keeps (and lets you persist) them. */
export interface Tokens {
  /** The current access token. */
  accessToken: string
  /** The current (unused) refresh token, if any. */
  refreshToken?: string
  /** When the access token expires, milliseconds since the epoch (client clock). */
  accessExpiresAt?: number
  /** When the refresh token expires, milliseconds since the epoch (client clock). */
  refreshExpiresAt?: number
}

/** Options of {@link LecternClient}. */
export interface LecternClientOptions {
  /** The server's root URL, e.g. `https://lectern.school.example` (no `/api/v1`). */
  baseUrl: string
  /** WebSocket root; default: `baseUrl` with `http` → `ws` and `/ws` appended. */
  wsUrl?: string
  /** Tokens from an earlier sign-in (e.g. restored from storage). */
  tokens?: Tokens
  /** Called whenever the tokens change (sign-in, refresh, logout: `null`), to persist them. */
  onTokens?: (tokens: Tokens | null) => void
  /** The `fetch` to use (default: the global one). */
  fetch?: typeof fetch
  /**
   * The WebSocket class `openDocument` gives y-websocket (default: the global one; in Node
   * pass the `ws` package's export).
   */
  WebSocketPolyfill?: unknown
}

/** A JSON body, a multipart form, or nothing. */
type Body = object | FormData | undefined

/** How long before its expiry an access token counts as stale: at most 30 s, a quarter of
 * its lifetime for short-lived ones. */
function staleMargin (lifetimeMs: number): number {
  return Math.min(30_000, lifetimeMs / 4)
}

/** The REST client. One per signed-in user. */
export class LecternClient {
  /** The server root, without a trailing slash. */
  readonly baseUrl: string
  /** The WebSocket root documents are opened under (`…/ws`). */
  readonly wsUrl: string
  /** What `openDocument` passes to y-websocket as `WebSocketPolyfill`. */
  readonly WebSocketPolyfill: unknown

  #tokens: Tokens | null
  #accessLifetimeMs = 0
  #refreshing: Promise<AuthSession> | null = null
  readonly #fetch: typeof fetch
  readonly #onTokens: ((tokens: Tokens | null) => void) | undefined

  constructor (options: LecternClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '')
    this.wsUrl = (options.wsUrl ?? `${this.baseUrl.replace(/^http/, 'ws')}/ws`).replace(/\/+$/, '')
    this.#tokens = options.tokens ? { ...options.tokens } : null
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init))
    this.#onTokens = options.onTokens
    this.WebSocketPolyfill = options.WebSocketPolyfill
  }

  // ---- tokens ----

  /** The current tokens (a copy), or `null` when signed out. */
  get tokens (): Tokens | null {
    return this.#tokens ? { ...this.#tokens } : null
  }

  /** Whether the client holds an access token. */
  get signedIn (): boolean {
    return this.#tokens !== null
  }

  /**
   * An access token that is not about to expire: the current one, or a new one from a
   * refresh (shared with concurrent callers). Use it for the WebSocket.
   */
  async accessToken (): Promise<string> {
    const tokens = this.#requireTokens()
    const expiresAt = tokens.accessExpiresAt
    if (expiresAt !== undefined && tokens.refreshToken !== undefined &&
        Date.now() >= expiresAt - staleMargin(this.#accessLifetimeMs || 60_000)) {
      return (await this.refresh()).access_token
    }
    return tokens.accessToken
  }

  /**
   * A fresh token after `stale` was refused: refreshes unless another caller already
   * replaced `stale`, in which case that newer token is returned.
   */
  async renewAccessToken (stale: string): Promise<string> {
    const tokens = this.#requireTokens()
    if (tokens.accessToken !== stale) return tokens.accessToken
    return (await this.refresh()).access_token
  }

  #requireTokens (): Tokens {
    if (this.#tokens === null) {
      throw new LecternError(401, 'unauthenticated', 'not signed in: call login or register first')
    }
    return this.#tokens
  }

  #store (session: AuthSession): AuthSession {
    const now = Date.now()
    this.#accessLifetimeMs = session.expires_in * 1000
    this.#tokens = {
      accessToken: session.access_token,
      refreshToken: session.refresh_token,
      accessExpiresAt: now + session.expires_in * 1000,
      refreshExpiresAt: now + session.refresh_expires_in * 1000
    }
    this.#onTokens?.(this.tokens)
    return session
  }

  #clear (): void {
    this.#tokens = null
    this.#onTokens?.(null)
  }

  // ---- auth ----

  /** `POST /auth/register`: creates an account and signs in. */
  async register (body: RegisterRequest): Promise<AuthSession> {
    return this.#store(await this.#request<AuthSession>('POST', '/auth/register', { body, auth: false }))
  }

  /** `POST /auth/login`. */
  async login (body: LoginRequest): Promise<AuthSession> {
    return this.#store(await this.#request<AuthSession>('POST', '/auth/login', { body, auth: false }))
  }

  /**
   * `POST /auth/refresh`: exchanges the refresh token for a new pair and stores it.
   * Concurrent calls share one request. A refused refresh (`invalid_refresh_token`,
   * `refresh_token_reused`) signs the client out.
   */
  refresh (): Promise<AuthSession> {
    if (this.#refreshing) return this.#refreshing
    const refreshToken = this.#tokens?.refreshToken
    if (refreshToken === undefined) {
      return Promise.reject(new LecternError(401, 'invalid_refresh_token', 'no refresh token: log in again'))
    }
    const refreshing = (async () => {
      try {
        const session = await this.#request<AuthSession>('POST', '/auth/refresh',
          { body: { refresh_token: refreshToken }, auth: false })
        return this.#store(session)
      } catch (error) {
        if (error instanceof LecternError &&
            (error.code === 'invalid_refresh_token' || error.code === 'refresh_token_reused')) {
          // Only if nobody signed in again meanwhile.
          if (this.#tokens?.refreshToken === refreshToken) this.#clear()
        }
        throw error
      } finally {
        this.#refreshing = null
      }
    })()
    this.#refreshing = refreshing
    return refreshing
  }

  /** `POST /auth/logout`: revokes this login (its sockets close) and forgets the tokens. */
  async logout (): Promise<void> {
    const refreshToken = this.#tokens?.refreshToken
    try {
      if (refreshToken !== undefined) {
        await this.#request<void>('POST', '/auth/logout', { body: { refresh_token: refreshToken }, auth: false })
      }
    } finally {
      this.#clear()
    }
  }

  /** `GET /me`. */
  me (): Promise<User> {
    return this.#request('GET', '/me')
  }

  // ---- notifications ----

  /** `POST /me/inbox/read`: marks items of your inbox (`inboxDocId(userId)`) read, by id,
   * or all of them. The server applies it to the document (you cannot write it). */
  markInboxRead (ids: string[] | 'all'): Promise<void> {
    const body = ids === 'all' ? { all: true } : { ids }
    return this.#request('POST', '/me/inbox/read', { body })
  }

  /** `GET /me/notifications`: your notification settings. */
  getNotificationSettings (): Promise<NotificationSettings> {
    return this.#request('GET', '/me/notifications')
  }

  /** `PUT /me/notifications`: turns email for session starts and handouts off (or on). */
  setNotificationSettings (settings: NotificationSettings): Promise<NotificationSettings> {
    return this.#request('PUT', '/me/notifications', { body: settings })
  }

  /** `POST /doc-tokens`: a token for one document. For an embedder's backend: needs the
   * server API key, not a user login. */
  createDocToken (apiKey: string, body: DocTokenRequest): Promise<DocToken> {
    return this.#request('POST', '/doc-tokens', { body, auth: false, headers: { authorization: `Bearer ${apiKey}` } })
  }

  // ---- classrooms ----

  /** `POST /classrooms` (faculty): the creator becomes its faculty. */
  createClassroom (name: string): Promise<Classroom> {
    return this.#request('POST', '/classrooms', { body: { name } })
  }

  /** `GET /classrooms`: the caller's classrooms. */
  listClassrooms (): Promise<Classroom[]> {
    return this.#request('GET', '/classrooms')
  }

  /** `GET /classrooms/{id}`. */
  getClassroom (classroomId: string): Promise<Classroom> {
    return this.#request('GET', `/classrooms/${enc(classroomId)}`)
  }

  /** `POST /classrooms/join`: enrols as a student. */
  joinClassroom (joinCode: string): Promise<Classroom> {
    return this.#request('POST', '/classrooms/join', { body: { join_code: joinCode } })
  }

  /** `POST /classrooms/{id}/join-code` (faculty): a new code; the old one stops working. */
  rotateJoinCode (classroomId: string): Promise<Classroom> {
    return this.#request('POST', `/classrooms/${enc(classroomId)}/join-code`)
  }

  /** `GET /classrooms/{id}/members`: faculty first. */
  listMembers (classroomId: string): Promise<Member[]> {
    return this.#request('GET', `/classrooms/${enc(classroomId)}/members`)
  }

  /** `DELETE /classrooms/{id}/members/{user_id}`: `'me'` (or one's own id) leaves. */
  removeMember (classroomId: string, userId: string | 'me'): Promise<void> {
    return this.#request('DELETE', `/classrooms/${enc(classroomId)}/members/${enc(userId)}`)
  }

  /** Leaves a classroom (`removeMember(classroomId, 'me')`). */
  leaveClassroom (classroomId: string): Promise<void> {
    return this.removeMember(classroomId, 'me')
  }

  /** `POST /classrooms/{id}/templates` (faculty): registers an empty template document. */
  createTemplate (classroomId: string): Promise<DocumentInfo> {
    return this.#request('POST', `/classrooms/${enc(classroomId)}/templates`)
  }

  // ---- sessions ----

  /** `POST /classrooms/{id}/sessions` (faculty): starts a live session. */
  startSession (classroomId: string): Promise<LiveSession> {
    return this.#request('POST', `/classrooms/${enc(classroomId)}/sessions`)
  }

  /** `GET /classrooms/{id}/sessions`: the classroom's sessions, newest first (at most
   * 100): the running one, if any, then the ended ones, which open read-only for review. */
  listSessions (classroomId: string): Promise<SessionSummary[]> {
    return this.#request('GET', `/classrooms/${enc(classroomId)}/sessions`)
  }

  /** `GET /classrooms/{id}/sessions/current`: the live or locked session (`not_found` if none). */
  currentSession (classroomId: string): Promise<LiveSession> {
    return this.#request('GET', `/classrooms/${enc(classroomId)}/sessions/current`)
  }

  /** `GET /sessions/{id}`: with the documents the caller may open. */
  getSession (sessionId: string): Promise<LiveSession> {
    return this.#request('GET', `/sessions/${enc(sessionId)}`)
  }

  /** `POST /sessions/{id}/lock` (faculty): students read only. */
  lockSession (sessionId: string): Promise<LiveSession> {
    return this.#request('POST', `/sessions/${enc(sessionId)}/lock`)
  }

  /** `POST /sessions/{id}/unlock` (faculty). */
  unlockSession (sessionId: string): Promise<LiveSession> {
    return this.#request('POST', `/sessions/${enc(sessionId)}/unlock`)
  }

  /** `POST /sessions/{id}/end` (faculty): final; open sockets close with 4410. */
  endSession (sessionId: string): Promise<LiveSession> {
    return this.#request('POST', `/sessions/${enc(sessionId)}/end`)
  }

  /** `PUT /sessions/{id}/focus` (faculty): follow-the-teacher. */
  setFocus (sessionId: string, focus: Focus): Promise<LiveSession> {
    return this.#request('PUT', `/sessions/${enc(sessionId)}/focus`, { body: focus })
  }

  /** `POST /sessions/{id}/handouts` (faculty): one fork of the template per student. */
  handOut (sessionId: string, templateDocId: string): Promise<Handout> {
    return this.#request('POST', `/sessions/${enc(sessionId)}/handouts`, { body: { template_doc_id: templateDocId } })
  }

  // ---- documents over REST ----

  /** `GET /documents/{doc}`: the document's roots by name as JSON (a text as a string, a
   * map as an object, an array as an array). Read access needed, as for a socket. */
  getDocument (docId: string): Promise<Record<string, unknown>> {
    return this.#request('GET', `/documents/${enc(docId)}`)
  }

  /** `GET /documents/{doc}?format=markdown`: the document's `content` text (the notes, a
   * translation); `invalid_request` for a document without one. */
  async getDocumentMarkdown (docId: string): Promise<string> {
    const response = await this.#send('GET', `/documents/${enc(docId)}?format=markdown`, { auth: true })
    return await response.text()
  }

  /** `GET /documents/{doc}?format=update`: the document as a Yjs update (v1) to apply with
   * `Y.applyUpdate`; with `stateVector` (`Y.encodeStateVector(doc)`) only what that
   * document lacks. */
  async getDocumentUpdate (docId: string, stateVector?: Uint8Array): Promise<Uint8Array> {
    const sv = stateVector === undefined ? '' : `&sv=${base64Url(stateVector)}`
    const response = await this.#send('GET', `/documents/${enc(docId)}?format=update${sv}`, { auth: true })
    return new Uint8Array(await response.arrayBuffer())
  }

  /** `POST /documents/{doc}/update`: applies a Yjs update (v1, e.g. `Y.encodeStateAsUpdate(doc,
   * serverStateVector)`) through the document's room, so connected clients see it at once.
   * Write access needed. Refused with `update_refused` (not a valid update, over the limits),
   * `update_incomplete` (it builds on changes the server lacks: fetch `getDocumentUpdate`
   * with your state vector and merge first) or `payload_too_large`. */
  async postDocumentUpdate (docId: string, update: Uint8Array): Promise<UpdateApplied> {
    const response = await this.#send('POST', `/documents/${enc(docId)}/update`,
      { auth: true, body: new Blob([update.slice()]), headers: { 'content-type': 'application/octet-stream' } })
    return await response.json() as UpdateApplied
  }

  // ---- history ----

  /** `GET /documents/{doc}/versions`: the versions kept, newest first. Read access needed. */
  listVersions (docId: string): Promise<DocumentVersion[]> {
    return this.#request('GET', `/documents/${enc(docId)}/versions`)
  }

  /** `POST /documents/{doc}/versions` (faculty): keeps the document as it is now. */
  checkpoint (docId: string, label?: string): Promise<DocumentVersion> {
    return this.#request('POST', `/documents/${enc(docId)}/versions`, { body: label === undefined ? {} : { label } })
  }

  /** `GET /documents/{doc}/versions/{v}`: the document as it was, its roots as JSON. */
  getVersion (docId: string, versionId: number): Promise<Record<string, unknown>> {
    return this.#request('GET', `/documents/${enc(docId)}/versions/${versionId}`)
  }

  /** `POST /documents/{doc}/versions/{v}/restore` (faculty): brings the document back to a
   * version as a new edit every connected client follows; undo it by restoring
   * `before_restore`. */
  restoreVersion (docId: string, versionId: number): Promise<RestoreResult> {
    return this.#request('POST', `/documents/${enc(docId)}/versions/${versionId}/restore`, { body: {} })
  }

  /** `GET /sessions/{id}/contributions` (faculty): who wrote what in the session. */
  getContributions (sessionId: string): Promise<Contributions> {
    return this.#request('GET', `/sessions/${enc(sessionId)}/contributions`)
  }

  /** The same report as CSV, one row per person and document. */
  async getContributionsCsv (sessionId: string): Promise<string> {
    const response = await this.#send('GET', `/sessions/${enc(sessionId)}/contributions?format=csv`, { auth: true })
    return await response.text()
  }

  // ---- webhooks ----

  /** `POST /classrooms/{id}/webhooks` (faculty): the answer carries the signing `secret`,
   * shown this once. */
  createWebhook (classroomId: string, request: CreateWebhookRequest): Promise<Webhook> {
    return this.#request('POST', `/classrooms/${enc(classroomId)}/webhooks`, { body: request })
  }

  /** `GET /classrooms/{id}/webhooks` (faculty): oldest first, without secrets. */
  listWebhooks (classroomId: string): Promise<Webhook[]> {
    return this.#request('GET', `/classrooms/${enc(classroomId)}/webhooks`)
  }

  /** `DELETE /classrooms/{id}/webhooks/{w}` (faculty). */
  async deleteWebhook (classroomId: string, webhookId: string): Promise<void> {
    await this.#request('DELETE', `/classrooms/${enc(classroomId)}/webhooks/${enc(webhookId)}`)
  }

  /** `GET /classrooms/{id}/webhooks/{w}/deliveries` (faculty): newest first; page with
   * `before` (the last id of the previous page). */
  listWebhookDeliveries (classroomId: string, webhookId: string,
    { limit, before }: { limit?: number, before?: string } = {}): Promise<WebhookDelivery[]> {
    const query = new URLSearchParams()
    if (limit !== undefined) query.set('limit', String(limit))
    if (before !== undefined) query.set('before', before)
    const suffix = query.size > 0 ? `?${query.toString()}` : ''
    return this.#request('GET', `/classrooms/${enc(classroomId)}/webhooks/${enc(webhookId)}/deliveries${suffix}`)
  }

  // ---- export ----

  /** `GET /documents/{doc}/export`: the document as a file (`md`, `docx` or `pdf`); with
   * `answers` (faculty) quizzes and exams keep their answer keys. */
  async exportDocument (docId: string, format: ExportFormat, { answers }: { answers?: boolean } = {}): Promise<Blob> {
    const query = answers === undefined ? '' : `&answers=${answers}`
    const response = await this.#send('GET', `/documents/${enc(docId)}/export?format=${format}${query}`, { auth: true })
    return await response.blob()
  }

  /** `GET /sessions/{id}/export`: every document of the session the caller may read, as
   * files of `format` in one zip. */
  async exportSession (sessionId: string, format: ExportFormat, { answers }: { answers?: boolean } = {}): Promise<Blob> {
    const query = answers === undefined ? '' : `&answers=${answers}`
    const response = await this.#send('GET', `/sessions/${enc(sessionId)}/export?format=${format}${query}`, { auth: true })
    return await response.blob()
  }

  // ---- materials ----

  /**
   * `POST /classrooms/{id}/materials`: uploads a file (a `File`, or a `Blob` with
   * `fileName`). Resolves (202) once it is stored and its text extracted; ingestion goes on
   * in the background (watch it with `materialsFeed`).
   */
  uploadMaterial (classroomId: string, file: Blob, fileName?: string,
    { onProgress }: UploadOptions = {}): Promise<Material> {
    const name = fileName ?? (typeof (file as { name?: unknown }).name === 'string' ? (file as File).name : 'upload')
    const form = new FormData()
    form.append('file', file, name)
    return this.#request('POST', `/classrooms/${enc(classroomId)}/materials`, { body: form, onProgress })
  }

  /** `GET /classrooms/{id}/materials`: oldest first. */
  listMaterials (classroomId: string): Promise<Material[]> {
    return this.#request('GET', `/classrooms/${enc(classroomId)}/materials`)
  }

  /** `GET /materials/{id}`. */
  getMaterial (materialId: string): Promise<Material> {
    return this.#request('GET', `/materials/${enc(materialId)}`)
  }

  /** `GET /materials/{id}/chunks`: the extracted passages. */
  materialChunks (materialId: string): Promise<Chunk[]> {
    return this.#request('GET', `/materials/${enc(materialId)}/chunks`)
  }

  /** The URL of a material's bytes. It needs the `Authorization` header: use
   * {@link downloadMaterial} to fetch it with the client's token. */
  materialContentUrl (materialId: string): string {
    return `${this.baseUrl}/api/v1/materials/${enc(materialId)}/content`
  }

  /** `GET /materials/{id}/content`: the file, as a streaming `Response`. */
  downloadMaterial (materialId: string): Promise<Response> {
    return this.#send('GET', `/materials/${enc(materialId)}/content`, { auth: true })
  }

  /** `DELETE /materials/{id}` (its uploader, or faculty). */
  deleteMaterial (materialId: string): Promise<void> {
    return this.#request('DELETE', `/materials/${enc(materialId)}`)
  }

  /** `POST /classrooms/{id}/search`: passages closest in meaning, best first. */
  search (classroomId: string, request: SearchRequest | string): Promise<SearchResult> {
    const body = typeof request === 'string' ? { query: request } : request
    return this.#request('POST', `/classrooms/${enc(classroomId)}/search`, { body })
  }

  // ---- AI jobs ----

  /** `POST /sessions/{id}/ai/jobs`: starts a job (202); open `doc_id` to watch it write. */
  startAiJob (sessionId: string, request: AiJobRequest): Promise<AiJob> {
    return this.#request('POST', `/sessions/${enc(sessionId)}/ai/jobs`, { body: request })
  }

  /** `GET /ai/jobs/{id}`. */
  getAiJob (jobId: string): Promise<AiJob> {
    return this.#request('GET', `/ai/jobs/${enc(jobId)}`)
  }

  /** `POST /ai/jobs/{id}/cancel` (idempotent). */
  cancelAiJob (jobId: string): Promise<AiJob> {
    return this.#request('POST', `/ai/jobs/${enc(jobId)}/cancel`)
  }

  // ---- speech input ----

  /**
   * `POST /sessions/{id}/chat/speech`: a recording (WAV, WebM, Ogg or MP3, e.g. a
   * `MediaRecorder` blob) is transcribed by the server's speech backend and posted in the
   * session's chat as the caller's message (201). With `askAi` a chat AI job answers it;
   * `language` (ISO-639-1, e.g. `'en'`) skips language detection. Fails with
   * `speech_unavailable` (503) when the server has no speech backend, `payload_too_large` or
   * `audio_too_long` (413) over the limits, `unsupported_file_type` (415) for other formats
   * and `unreadable_file` (422) when nothing could be recognised.
   */
  speakToChat (sessionId: string, audio: Blob,
    { askAi, language }: { askAi?: boolean, language?: string } = {}): Promise<SpeechResult> {
    const form = new FormData()
    // The server judges the format by the bytes; the name is only for logs and proxies.
    form.append('audio', audio, 'recording')
    if (askAi !== undefined) form.append('ask_ai', String(askAi))
    if (language !== undefined) form.append('language', language)
    return this.#request('POST', `/sessions/${enc(sessionId)}/chat/speech`, { body: form })
  }

  // ---- plumbing ----

  /** Sends a request and parses its JSON answer (`undefined` for 204). */
  async #request<T> (method: string, path: string,
    { body, auth = true, headers, onProgress }: {
      body?: Body, auth?: boolean, headers?: Record<string, string>, onProgress?: UploadOptions['onProgress']
    } = {}): Promise<T> {
    const response = await this.#send(method, path, { body, auth, headers, onProgress })
    if (response.status === 204) return undefined as T
    const text = await response.text()
    return (text === '' ? undefined : JSON.parse(text)) as T
  }

  /** Sends a request (refreshing once on `401 token_expired`); throws on a non-2xx answer. */
  async #send (method: string, path: string,
    { body, auth, headers = {}, onProgress }: {
      body?: Body, auth: boolean, headers?: Record<string, string>, onProgress?: UploadOptions['onProgress']
    }): Promise<Response> {
    const url = `${this.baseUrl}/api/v1${path}`
    const attempt = async (token: string | undefined): Promise<Response> => {
      const init: RequestInit = { method, headers: { ...headers } }
      const hdrs = init.headers as Record<string, string>
      if (token !== undefined) hdrs.authorization = `Bearer ${token}`
      if (body instanceof FormData || body instanceof Blob) {
        init.body = body
      } else if (body !== undefined) {
        hdrs['content-type'] = 'application/json'
        init.body = JSON.stringify(body)
      }
      // Only XMLHttpRequest reports how much of a request body was sent.
      if (onProgress !== undefined && typeof XMLHttpRequest !== 'undefined') {
        return await fetchReportingUpload(url, init, onProgress)
      }
      const response = await this.#fetch(url, init)
      if (onProgress !== undefined && response.ok) onProgress(1)
      return response
    }
    let token = auth ? await this.accessToken() : undefined
    let response = await attempt(token)
    if (!response.ok && auth && response.status === 401 && token !== undefined &&
        this.#tokens?.refreshToken !== undefined) {
      const error = await LecternError.fromResponse(response)
      if (error.code !== 'token_expired') throw error
      token = await this.renewAccessToken(token)
      response = await attempt(token)
    }
    if (!response.ok) throw await LecternError.fromResponse(response)
    return response
  }
}

/** The file formats documents export to. */
export type ExportFormat = 'md' | 'docx' | 'pdf'

/** Options of {@link LecternClient.uploadMaterial}. */
export interface UploadOptions {
  /** Called with the fraction of the file sent so far (0 to 1) while it is sent, in a
   * browser (XMLHttpRequest); elsewhere once with 1 when the upload is accepted. */
  onProgress?: (fraction: number) => void
}

/** `fetch` for one request through XMLHttpRequest, which (unlike `fetch`) reports upload
 * progress; fails like `fetch` (a `TypeError`) when the network does. */
function fetchReportingUpload (url: string, init: RequestInit,
  onProgress: (fraction: number) => void): Promise<Response> {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest()
    request.open(init.method ?? 'GET', url)
    for (const [name, value] of Object.entries(init.headers as Record<string, string>)) {
      request.setRequestHeader(name, value)
    }
    request.responseType = 'arraybuffer'
    request.upload.onprogress = event => {
      if (event.lengthComputable && event.total > 0) onProgress(event.loaded / event.total)
    }
    request.onerror = () => reject(new TypeError('network error'))
    request.onabort = () => reject(new TypeError('request aborted'))
    request.onload = () => {
      const headers = new Headers()
      for (const line of request.getAllResponseHeaders().split('\r\n')) {
        const colon = line.indexOf(':')
        if (colon > 0) headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim())
      }
      const noBody = request.status === 204 || request.status === 304
      resolve(new Response(noBody ? null : request.response as ArrayBuffer, { status: request.status, headers }))
    }
    request.send(init.body as XMLHttpRequestBodyInit | null)
  })
}

/** `bytes` as unpadded URL-safe base64. */
function base64Url (bytes: Uint8Array): string {
  let binary = ''
  for (const byte of bytes) binary += String.fromCharCode(byte)
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

function enc (segment: string): string {
  return encodeURIComponent(segment)
}
