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
 * Every connection attempt first asks the client for a token that is not about to expire.
 */

import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'

import type { LecternClient } from './client.js'
import { LecternError } from './errors.js'

/** y-websocket's awareness type (from y-protocols). */
export type Awareness = WebsocketProvider['awareness']

/** Why the server stopped giving this client the document. */
export type AccessReason = 'forbidden' | 'session_ended' | 'unauthenticated'

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

/** The provider's events: y-websocket's, plus `'access'`. */
export interface LecternProviderEvents {
  access: (event: AccessEvent, provider: LecternProvider) => void
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

/** Options of {@link openDocument}. */
export interface OpenDocumentOptions {
  /** The document to sync (default: a new `Y.Doc`). */
  doc?: Y.Doc
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
  /** 4401s since the last successful sync: a token refused right after renewal ends it. */
  #authFailures = 0
  /** A 4503 was answered with an immediate reconnect since the last successful sync. */
  #drainedSinceSync = false

  constructor (client: LecternClient, docId: string, options: OpenDocumentOptions = {}) {
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
    super.on('closed', event => this.#onClosed(event))
    super.on('connection-close', () => {
      // A close of ours (watchdog) reconnects inside y-websocket: give it the newest token.
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
    this.#destroyed = true
    this.#wanted = false
    this.#generation++
    super.destroy()
  }

  /** Resolves once the document has synced with the server. */
  whenSynced (): Promise<void> {
    if (this.synced) return Promise.resolve()
    return new Promise(resolve => {
      const onSync = (synced: boolean): void => {
        if (synced) {
          super.off('sync', onSync)
          resolve()
        }
      }
      super.on('sync', onSync)
    })
  }

  #setToken (token: string): void {
    this.#token = token
    this.params = { ...this.params, token }
  }

  #onClosed ({ code, reason }: { code: number, reason: string }): void {
    if (!this.#wanted || this.#destroyed) return
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
      token = renew && this.#token !== undefined
        ? await this.client.renewAccessToken(this.#token)
        : await this.client.accessToken()
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
}

/**
 * Opens document `docId` (a `doc_id` from a session, material or job response) on
 * `${client.wsUrl}` with the client's access token. Listen to `'sync'` (or await
 * `whenSynced()`), and to `'access'` for a refusal. `destroy()` it when done.
 */
export function openDocument (client: LecternClient, docId: string, options: OpenDocumentOptions = {}): LecternProvider {
  return new LecternProvider(client, docId, options)
}
