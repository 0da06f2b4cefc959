/**
 * Realtime documents: `openDocument` opens a Lectern document with a stock y-websocket
 * `WebsocketProvider`, authenticated with the client's access token.
 *
 * The token goes in the `token` query parameter (docs/protocol.md). The provider owns the
 * reconnect policy that y-websocket 3 leaves to `shouldReconnect`: every server close ends
 * y-websocket's own retry (`shouldReconnect` answers `false`, so it emits `closed`), and
 * this class decides instead:
 * - `4401` (token expired, or refused): renew the access token, reconnect at once;
 * - `4403` (no access) and `4410` (session ended): stop, and emit `'access'`;
 * - `4503` (the node is draining: a restart, rolling update or scale-down): reconnect at
 *   once, with no backoff, so a load balancer moves the document to another node within
 *   one round trip. Only once per successful sync: a node that keeps answering 4503 before
 *   the document synced again is retried with backoff like any other close;
 * - anything else (other 45xx, `1006` network...): reconnect with y-websocket's exponential
 *   backoff, with a fresh token.
 * Every connection attempt first asks for a token: the `token` option (a string, or a
 * callback called again on every attempt and after each 4401), else the client's access
 * token, refreshed when about to expire.
 *
 * Read-only: the server never tells a client it was downgraded (a locked session, a read
 * document token): it silently refuses its updates. So the provider works out `readOnly`
 * from what it knows (the document kind, the token's `access` claim, a 4410, the app's
 * `setReadOnly`), emits `'read-only'` when it changes, and while read-only keeps local
 * edits to itself instead of sending updates the server drops; they are sent when write
 * access comes back (docs/protocol.md, "Edits typed while read-only").
 *
 * Saved: y-websocket has no acknowledgement, so the provider asks for one the protocol
 * already has. A little after local edits it sends a sync step 1; the server handles a
 * socket's messages in order and stores each update before it reads the next message, so
 * its sync step 2 reply means every edit sent before the question is stored. `saved` and
 * the `'saved'` event report it (docs/protocol.md, "Saved").
 */

import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'

import type { LecternClient } from './client.js'
import { AccessError, LecternError } from './errors.js'
import type { AccessReason } from './errors.js'

/** y-websocket's awareness type (from y-protocols). */
export type Awareness = WebsocketProvider['awareness']

/** The `'access'` event: the server refused (or withdrew) the document. */
export interface AccessEvent {
  /** `forbidden` (4403: not allowed, e.g. removed from the class), `session_ended` (4410:
   * reopen with `provider.connect()` to review read-only), `unauthenticated` (4401 and
   * the token cannot be renewed: sign in again). */
  reason: AccessReason
  /** The WebSocket close code (4403, 4410 or 4401). */
  code: number
  /** The server's close reason, or why the token could not be renewed. */
  message: string
}

/** Close codes of docs/protocol.md the provider acts on. */
export const CLOSE_CODES = {
  unauthenticated: 4401,
  forbidden: 4403,
  sessionEnded: 4410,
  /** Retryable (45xx): the node shuts down; reconnect at once. */
  draining: 4503
} as const

type BaseEvents = WebsocketProvider extends { on: (name: infer N, f: infer _F) => unknown } ? N : never

/** The provider's events: y-websocket's, plus `'access'` and `'read-only'`. */
export interface LecternProviderEvents {
  access: (event: AccessEvent, provider: LecternProvider) => void
  /** `readOnly` changed (see {@link LecternProvider.readOnly}). */
  'read-only': (readOnly: boolean, provider: LecternProvider) => void
  /** `saved` changed (see {@link LecternProvider.saved}). */
  saved: (saved: boolean, provider: LecternProvider) => void
  status: (event: { status: 'connected' | 'disconnected' | 'connecting' }) => void
  sync: (synced: boolean) => void
  'connection-close': (event: CloseEvent | null, provider: WebsocketProvider) => void
  'connection-error': (event: Event, provider: WebsocketProvider) => void
  closed: (event: { code: number, reason: string }, provider: WebsocketProvider) => void
}

// Every y-websocket event name is declared above (a compile error here means y-websocket
// added one).
type _AllDeclared = Exclude<BaseEvents, keyof LecternProviderEvents> extends never ? true : never
const _allDeclared: _AllDeclared = true
void _allDeclared

/** A token for a document: a string, or a callback for a fresh one (called before every
 * connection attempt, and again after the server refused the last one with 4401). */
export type TokenSource = string | (() => Promise<string>)

/** Options of {@link openDocument}. */
export interface OpenDocumentOptions {
  /** The document to sync (default: a new `Y.Doc`). It must come from the same copy of
   * `yjs` as the SDK's (see the README, "Install"), or the constructor throws. */
  doc?: Y.Doc
  /** The token to open the document with, e.g. a document token from your backend
   * (default: the client's access token, renewed on 4401). A string cannot be renewed: a
   * 4401 ends the connection (`'access'`, reason `unauthenticated`). */
  token?: TokenSource
  /** Start read-only, e.g. the app knows the session is locked (default `false`; see
   * {@link LecternProvider.setReadOnly}). */
  readOnly?: boolean
  /** The awareness to share (default: a new one on `doc`). */
  awareness?: Awareness
  /** Connect at once (default `true`). */
  connect?: boolean
  /** Longest wait between reconnect attempts, ms (default 2500). */
  maxBackoffTime?: number
  /** Cross-tab BroadcastChannel sync (default off: access is decided per socket). */
  broadcastChannel?: boolean
  /** The WebSocket class (default: the client's `WebSocketPolyfill`, else the global one). */
  WebSocketPolyfill?: unknown
}

/** A `WebsocketProvider` for one Lectern document, with token handling (see the module doc). */
export class LecternProvider extends WebsocketProvider {
  /** The client whose tokens the socket uses. */
  readonly client: LecternClient
  /** The document id. */
  readonly docId: string
  /** The last `'access'` event, until the next `connect()`. */
  accessDenied: AccessEvent | null = null

  #wanted = false
  #generation = 0
  #destroyed = false
  #token: string | undefined
  readonly #tokenSource: TokenSource | undefined
  /** The app said read-only (`readOnly` option, `setReadOnly`). */
  #declaredReadOnly: boolean
  /** The session ended (4410): what is reopened is a read-only review. */
  #ended = false
  /** The last value `'read-only'` reported. */
  #readOnly = false
  /** Local updates made while read-only, sent when write access comes back. */
  #held: Uint8Array[] = []
  /** y-websocket's update sender, wrapped by the read-only check in the constructor. */
  readonly #send: (update: Uint8Array, origin: unknown) => void
  /** 4401s since the last successful sync: a token refused right after renewal ends it. */
  #authFailures = 0
  /** A 4503 was answered with an immediate reconnect since the last successful sync. */
  #drainedSinceSync = false
  /** Local updates made so far (sent, held or waiting for a connection). */
  #localUpdates = 0
  /** How many of `#localUpdates` the server has confirmed stored. */
  #confirmedUpdates = 0
  /** For each sync step 1 sent on this connection and not yet answered, the
   * `#localUpdates` its answer confirms, oldest first. */
  #questions: number[] = []
  /** The server's own sync step 1 has been answered on this connection: from then on
   * everything typed offline has been sent, so a question's answer covers it. */
  #caughtUp = false
  #questionTimer: ReturnType<typeof setTimeout> | undefined
  /** The last value `'saved'` reported. */
  #saved = true

  constructor (client: LecternClient, docId: string, options: OpenDocumentOptions = {}) {
    if (options.doc !== undefined && !(options.doc instanceof Y.Doc)) {
      throw new TypeError(DUPLICATE_YJS)
    }
    const doc = options.doc ?? new Y.Doc()
    const WS = options.WebSocketPolyfill ?? client.WebSocketPolyfill ?? (globalThis as { WebSocket?: unknown }).WebSocket
    if (WS === undefined) {
      throw new TypeError('no WebSocket implementation: pass WebSocketPolyfill (e.g. the `ws` package) to LecternClient')
    }
    super(client.wsUrl, docId, doc, {
      connect: false,
      ...(options.awareness ? { awareness: options.awareness } : {}),
      params: {},
      WebSocketPolyfill: WS as typeof WebSocket,
      maxBackoffTime: options.maxBackoffTime ?? 2500,
      disableBc: options.broadcastChannel !== true,
      // Every server close comes to `#onClosed` (through 'closed') instead.
      shouldReconnect: () => false
    })
    this.client = client
    this.docId = docId
    this.#tokenSource = options.token
    this.#declaredReadOnly = options.readOnly === true
    this.#readOnly = this.#computeReadOnly()
    // Route local updates through the read-only check (`destroy` unregisters
    // `_updateHandler`, so it must stay the registered function).
    const send = this._updateHandler
    doc.off('update', send)
    this._updateHandler = (update: Uint8Array, origin: unknown) => {
      if (origin === this) return
      this.#localUpdates++
      this.#updateSaved()
      this.#askSoon()
      if (this.#readOnly) {
        this.#held.push(update)
        return
      }
      send(update, origin)
    }
    doc.on('update', this._updateHandler)
    this.#send = send
    super.on('closed', event => this.#onClosed(event))
    super.on('status', ({ status }) => {
      // y-websocket sends its own sync step 1 right after 'connected': its answer confirms
      // nothing new, it only keeps the count of answers in step.
      this.#questions = status === 'connected' ? [this.#confirmedUpdates] : []
      this.#caughtUp = false
    })
    const handleSync = this.messageHandlers[MESSAGE_SYNC]
    this.messageHandlers[MESSAGE_SYNC] = (encoder, decoder, provider, emitSynced, messageType) => {
      // The sync message's own type, read ahead without moving the decoder: a one-byte
      // varuint (0 step 1, 1 step 2, 2 update).
      const step = decoder.arr[decoder.pos]
      handleSync(encoder, decoder, provider, emitSynced, messageType)
      if (step === SYNC_STEP_1) {
        // Our step 2 reply (everything the server lacks) is sent when this returns.
        this.#caughtUp = true
        this.#askSoon()
      } else if (step === SYNC_STEP_2) {
        this.#answered()
      }
    }
    super.on('connection-close', () => {
      // A close of ours (watchdog) reconnects inside y-websocket: give it the newest token.
      if (this.#tokenSource !== undefined) return
      const current = client.tokens?.accessToken
      if (current !== undefined && current !== this.#token) this.#setToken(current)
    })
    super.on('sync', synced => {
      if (synced) {
        this.#authFailures = 0
        this.#drainedSinceSync = false
      }
    })
    if (options.connect !== false) this.connect()
  }

  override on<N extends keyof LecternProviderEvents & string> (name: N, f: LecternProviderEvents[N]): LecternProviderEvents[N] {
    return super.on(name as never, f as never) as LecternProviderEvents[N]
  }

  override once<N extends keyof LecternProviderEvents & string> (name: N, f: LecternProviderEvents[N]): void {
    super.once(name as never, f as never)
  }

  override off<N extends keyof LecternProviderEvents & string> (name: N, f: LecternProviderEvents[N]): void {
    super.off(name as never, f as never)
  }

  /** Connects (with a fresh access token) and keeps reconnecting until `disconnect()`. */
  override connect (): void {
    if (this.#destroyed) return
    this.#wanted = true
    this.accessDenied = null
    this.#authFailures = 0
    const generation = ++this.#generation
    void this.#reconnect(generation, false)
  }

  /** Closes the socket and stops reconnecting. */
  override disconnect (): void {
    this.#wanted = false
    this.#generation++
    super.disconnect()
  }

  override destroy (): void {
    clearTimeout(this.#questionTimer)
    this.#destroyed = true
    this.#wanted = false
    this.#generation++
    super.destroy()
  }

  /**
   * Resolves once the document has synced with the server; rejects with an
   * {@link AccessError} if the server refuses it first (4403, 4410, or 4401 when the token
   * cannot be renewed), or already has since the last `connect()`.
   */
  whenSynced (): Promise<void> {
    if (this.synced) return Promise.resolve()
    const denied = this.accessDenied
    if (denied !== null) return Promise.reject(accessError(denied))
    return new Promise((resolve, reject) => {
      const onSync = (synced: boolean): void => {
        if (!synced) return
        stop()
        resolve()
      }
      const onAccess = (event: AccessEvent): void => {
        stop()
        reject(accessError(event))
      }
      const stop = (): void => {
        super.off('sync', onSync)
        super.off('access' as never, onAccess as never)
      }
      super.on('sync', onSync)
      super.on('access' as never, onAccess as never)
    })
  }

  /**
   * Whether this client may not edit the document, as far as it knows: a document only
   * the server writes (the session's lectern document, a materials feed), a read-only
   * document token, an ended session (4410), or the app said so ({@link setReadOnly}).
   * While read-only, local edits stay local (make the editor read-only); they are sent
   * once it is writable again. The server does not announce a lock to a connected client:
   * an app that learns of one (a faculty action, the session's REST state) calls
   * `setReadOnly`.
   */
  get readOnly (): boolean {
    return this.#readOnly
  }

  /** Declares the document read-only (e.g. the session was locked) or writable again; emits
   * `'read-only'` if `readOnly` changes. */
  setReadOnly (readOnly: boolean): void {
    this.#declaredReadOnly = readOnly
    this.#updateReadOnly()
  }

  /**
   * Whether the server has stored every local edit: `false` from a local edit until the
   * server confirms it (and while edits are held read-only or offline). A page shows
   * "saved" / "saving…" from it and `'saved'`. An edit the server refused because of a
   * downgrade the client does not know of counts as answered too: call `setReadOnly` when
   * the app learns of one.
   */
  get saved (): boolean {
    return this.#saved
  }

  #updateSaved (): void {
    const saved = this.#confirmedUpdates >= this.#localUpdates && this.#held.length === 0
    if (saved === this.#saved) return
    this.#saved = saved
    super.emit('saved' as never, [saved, this] as never)
  }

  /** Asks the server, a little later, to confirm the local edits made so far (several
   * edits in a burst share one question). */
  #askSoon (): void {
    if (this.#questionTimer !== undefined) return
    this.#questionTimer = setTimeout(() => {
      this.#questionTimer = undefined
      this.#ask()
    }, CONFIRM_DELAY_MS)
  }

  #ask (): void {
    if (this.#destroyed || this.#saved || this.#readOnly) return
    // Before the server's own step 1 is answered, edits typed offline are not sent yet.
    if (!this.wsconnected || !this.#caughtUp || this.ws === null) return
    const last = this.#questions[this.#questions.length - 1]
    if (last !== undefined && last >= this.#localUpdates) return // already asked
    this.#questions.push(this.#localUpdates)
    this.ws.send(syncStep1(this.doc))
  }

  #answered (): void {
    const confirms = this.#questions.shift()
    if (confirms === undefined) return
    this.#confirmedUpdates = Math.max(this.#confirmedUpdates, confirms)
    this.#updateSaved()
    // Edits made while the question travelled.
    if (!this.#saved) this.#askSoon()
  }

  #computeReadOnly (): boolean {
    return this.#declaredReadOnly || this.#ended || SERVER_OWNED.test(this.docId) ||
      (this.#token !== undefined && isReadOnlyDocToken(this.#token))
  }

  #updateReadOnly (): void {
    const readOnly = this.#computeReadOnly()
    if (readOnly === this.#readOnly) return
    this.#readOnly = readOnly
    if (!readOnly && this.#held.length > 0) {
      // The edits typed while read-only: the server takes them now (it also asks for
      // them with a sync step 1 when it upgrades a connection).
      const update = Y.mergeUpdates(this.#held)
      this.#held = []
      this.#send(update, null)
      this.#askSoon()
    }
    super.emit('read-only' as never, [readOnly, this] as never)
  }

  #setToken (token: string): void {
    this.#token = token
    this.params = { ...this.params, token }
    this.#updateReadOnly()
  }

  #onClosed ({ code, reason }: { code: number, reason: string }): void {
    if (!this.#wanted || this.#destroyed) return
    if (code === CLOSE_CODES.sessionEnded) {
      this.#ended = true
      this.#updateReadOnly()
    }
    if (code === CLOSE_CODES.forbidden || code === CLOSE_CODES.sessionEnded) {
      this.#deny({
        reason: code === CLOSE_CODES.forbidden ? 'forbidden' : 'session_ended',
        code,
        message: reason
      })
      return
    }
    const generation = this.#generation
    if (code === CLOSE_CODES.unauthenticated) {
      if (typeof this.#tokenSource === 'string') {
        this.#deny({ reason: 'unauthenticated', code, message: reason || 'token refused (a fixed token cannot be renewed)' })
        return
      }
      this.#authFailures++
      if (this.#authFailures > 2) {
        this.#deny({ reason: 'unauthenticated', code, message: reason || 'token refused after renewal' })
        return
      }
      void this.#reconnect(generation, true)
      return
    }
    if (code === CLOSE_CODES.draining && !this.#drainedSinceSync) {
      // Not a failure of this client or of the service: another node takes over. The close
      // does not count towards the backoff either.
      this.#drainedSinceSync = true
      this.wsUnsuccessfulReconnects = 0
      void this.#reconnect(generation, false)
      return
    }
    setTimeout(() => { void this.#reconnect(generation, false) }, this.#backoff())
  }

  #backoff (): number {
    return Math.min(2 ** this.wsUnsuccessfulReconnects * 100, this.maxBackoffTime)
  }

  #deny (event: AccessEvent): void {
    this.#wanted = false
    this.#generation++
    this.accessDenied = event
    super.emit('access' as never, [event, this] as never)
  }

  async #reconnect (generation: number, renew: boolean): Promise<void> {
    let token: string
    try {
      token = await this.#fetchToken(renew)
    } catch (error) {
      if (generation !== this.#generation) return
      if (error instanceof LecternError && error.status === 401) {
        this.#deny({ reason: 'unauthenticated', code: CLOSE_CODES.unauthenticated, message: error.message })
        return
      }
      // The server is unreachable: try again later.
      this.wsUnsuccessfulReconnects++
      setTimeout(() => { void this.#reconnect(generation, renew) }, this.#backoff())
      return
    }
    if (generation !== this.#generation || this.#destroyed || !this.#wanted) return
    this.#setToken(token)
    super.connect()
  }

  /** The token for the next attempt (`renew`: the last one was refused with 4401). */
  async #fetchToken (renew: boolean): Promise<string> {
    const source = this.#tokenSource
    if (typeof source === 'string') return source
    if (source !== undefined) {
      const token = await source()
      if (typeof token !== 'string') throw new TypeError('the token callback must resolve with a string')
      return token
    }
    return renew && this.#token !== undefined
      ? await this.client.renewAccessToken(this.#token)
      : await this.client.accessToken()
  }
}

/** y-protocols' message type of sync messages, and the sync message types inside. */
const MESSAGE_SYNC = 0
const SYNC_STEP_1 = 0
const SYNC_STEP_2 = 1

/** How long after a local edit the server is asked to confirm it, ms: a burst of
 * keystrokes shares one question. */
const CONFIRM_DELAY_MS = 150

/** A y-protocols sync step 1 message: `varUint(0) · varUint(0) · varUint8Array(state vector)`. */
function syncStep1 (doc: Y.Doc): Uint8Array {
  const stateVector = Y.encodeStateVector(doc)
  const length = varUint(stateVector.length)
  const message = new Uint8Array(2 + length.length + stateVector.length)
  message.set([MESSAGE_SYNC, SYNC_STEP_1], 0)
  message.set(length, 2)
  message.set(stateVector, 2 + length.length)
  return message
}

function varUint (value: number): Uint8Array {
  const bytes: number[] = []
  while (value > 0x7f) {
    bytes.push((value & 0x7f) | 0x80)
    value = Math.floor(value / 128)
  }
  bytes.push(value)
  return Uint8Array.from(bytes)
}

/** Documents only the server writes: every member opens them read-only (docs/protocol.md). */
const SERVER_OWNED = /^(session\/[^/]+\/lectern|classroom\/[^/]+\/materials)$/

/** Whether `token` is a document token granting read access only. The claims are read
 * without verifying the signature: a hint for the UI, the server decides. */
function isReadOnlyDocToken (token: string): boolean {
  const payload = token.split('.')[1]
  if (payload === undefined) return false
  try {
    const json = atob(payload.replace(/-/g, '+').replace(/_/g, '/'))
    const claims = JSON.parse(json) as { aud?: unknown, access?: unknown }
    return claims.aud === 'lectern-doc' && claims.access === 'read'
  } catch {
    return false // not a JWT (an opaque external token): nothing to read
  }
}

function accessError (event: AccessEvent): AccessError {
  return new AccessError(event.reason, event.code, event.message)
}

const DUPLICATE_YJS = 'the Y.Doc passed to openDocument comes from another copy of yjs than the one ' +
  '@lectern/client imports, so the two would silently diverge. Install the SDK so that one ' +
  'yjs is shared: `npm install ./lectern-client-<version>.tgz` (from `npm pack`) or a workspace, ' +
  'not a symlink (`npm install ../client-sdk`); `npm ls yjs` must show a single copy. In a ' +
  'page without a bundler, use the `Y` the browser build exports (see the README).'

/**
 * Opens document `docId` (a `doc_id` from a session, material or job response) on
 * `${client.wsUrl}` with the client's access token (or the `token` option). Listen to
 * `'sync'` (or await `whenSynced()`), to `'access'` for a refusal and to `'read-only'`.
 * `destroy()` it when done.
 */
export function openDocument (client: LecternClient, docId: string, options: OpenDocumentOptions = {}): LecternProvider {
  return new LecternProvider(client, docId, options)
}
