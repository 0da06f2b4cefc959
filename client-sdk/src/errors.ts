/**
 * Errors: the stable codes of `docs/api.md` and `LecternError`, the one error type of the
 * REST API; `AccessError`, a realtime document refused by the server (a close code).
 *
 * API boundary: `ERROR_CODES` mirrors the server's `ErrorCode` enum
 * (`server/src/api/error.rs`). The contract test (`test/contract.test.mjs`) compares it with
 * the `ErrorCode` schema of the server's OpenAPI document, both ways.
 */

/** Every code the server sends in `{"error": {"code": ...}}`, in the order of docs/api.md. */
export const ERROR_CODES = [
  'invalid_request',
  'unauthenticated',
  'invalid_token',
  'token_expired',
  'invalid_credentials',
  'invalid_refresh_token',
  'refresh_token_reused',
  'invalid_api_key',
  'forbidden',
  'registration_refused',
  'not_found',
  'invalid_join_code',
  'email_taken',
  'last_faculty',
  'session_already_running',
  'session_ended',
  'payload_too_large',
  'audio_too_long',
  'unsupported_file_type',
  'unreadable_file',
  'ai_unsupported',
  'rate_limited',
  'ai_budget_exhausted',
  'ai_queue_full',
  'internal',
  'ai_unavailable',
  'server_busy',
  'speech_unavailable',
  'update_refused',
  'update_incomplete',
  'webhook_address_refused'
] as const

/** A stable, machine-readable error code: branch on this, never on the message. */
export type ErrorCode = (typeof ERROR_CODES)[number]

/** Whether `value` is one of the codes this SDK knows. */
export function isErrorCode (value: unknown): value is ErrorCode {
  return typeof value === 'string' && (ERROR_CODES as readonly string[]).includes(value)
}

/**
 * A failed API call: the HTTP status, the server's code and message, and for `429`s the
 * seconds to wait (`Retry-After`).
 *
 * A response that is not a Lectern error body (a proxy's 502 page, say) gets code
 * `internal` for 5xx statuses and `invalid_request` otherwise, with the status in the
 * message. A code from a newer server that this SDK does not know is passed through as is
 * (check with {@link isErrorCode}).
 */
export class LecternError extends Error {
  /** HTTP status. */
  readonly status: number
  /** Stable machine-readable code. */
  readonly code: ErrorCode
  /** Seconds to wait before retrying (`rate_limited`, `ai_budget_exhausted`, `ai_queue_full`, `server_busy`). */
  readonly retryAfter?: number

  constructor (status: number, code: ErrorCode, message: string, retryAfter?: number) {
    super(message)
    this.name = 'LecternError'
    this.status = status
    this.code = code
    if (retryAfter !== undefined) this.retryAfter = retryAfter
  }

  /** Builds the error for a failed `response` (reads its body). */
  static async fromResponse (response: Response): Promise<LecternError> {
    const header = response.headers.get('retry-after')
    const seconds = header === null ? undefined : Number(header)
    const retryAfter = seconds !== undefined && Number.isFinite(seconds) ? seconds : undefined
    let text = ''
    try {
      text = await response.text()
    } catch { /* body unreadable: fall through to the generic error */ }
    try {
      const body = JSON.parse(text) as { error?: { code?: unknown, message?: unknown } }
      const code = body?.error?.code
      if (typeof code === 'string') {
        const message = typeof body.error?.message === 'string' ? body.error.message : code
        return new LecternError(response.status, code as ErrorCode, message, retryAfter)
      }
    } catch { /* not JSON */ }
    const code: ErrorCode = response.status >= 500 ? 'internal' : 'invalid_request'
    return new LecternError(response.status, code,
      `unexpected response ${response.status} ${response.statusText}`.trim(), retryAfter)
  }
}

/** Why the server stopped giving a client a document (the realtime `'access'` event). */
export type AccessReason = 'forbidden' | 'session_ended' | 'unauthenticated'

/**
 * The server refused (or withdrew) a realtime document: `whenSynced()` rejects with it.
 * Not a `LecternError`: there is no HTTP status, only the WebSocket close code.
 */
export class AccessError extends Error {
  /** `forbidden` (4403), `session_ended` (4410) or `unauthenticated` (4401, the token
   * was refused and could not be renewed). */
  readonly reason: AccessReason
  /** The WebSocket close code (4403, 4410 or 4401). */
  readonly code: number

  constructor (reason: AccessReason, code: number, message: string) {
    super(message)
    this.name = 'AccessError'
    this.reason = reason
    this.code = code
  }
}
