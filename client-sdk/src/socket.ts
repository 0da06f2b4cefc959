/**
 * `LecternSocket`: many documents over one WebSocket (the multiplexed `GET /ws` endpoint of
 * docs/protocol.md), and the live-AI control messages on it. A session page opens its notes,
 * chat, lectern document and the rest on one socket instead of one each.
 *
 * Every document is still a `LecternProvider`, with the same token, close-code and read-only
 * policy as `openDocument`: the socket hands each provider a *virtual* WebSocket (the
 * `WebSocketPolyfill` y-websocket constructs) that wraps what the provider sends in an
 * envelope for its document, and passes it what the server sends in envelopes for it.
 * - `101` (the server closed one document) is that virtual socket's close, with the same
 *   codes as a whole socket's (4401, 4403, 4410...): the provider acts on it as usual;
 * - the provider closing its socket (`disconnect`, `destroy`, its watchdog) leaves the
 *   document (`100`);
 * - a close of the real socket (network, token expiry 4401, draining 4503) closes every
 *   virtual one with that code, so each provider reconnects as it would on its own socket;
 *   the first reconnect opens the real socket again, the others join it.
 * The socket presents one token, at the upgrade: the client's access token or the `token`
 * option, fetched once for all documents and renewed once after a 4401.
 */

import type { LecternClient } from './client.js'
import { LecternError } from './errors.js'
import type { ErrorCode } from './errors.js'
import { LecternProvider } from './realtime.js'
import type { OpenDocumentOptions, TokenSource } from './realtime.js'
import type { AiJob, AiJobRequest } from './types.js'

/** Message types of the envelope protocol (docs/protocol.md, `GET /ws`). */
const LEAVE = 100
const CLOSED = 101
const CONTROL_REQUEST = 102
const CONTROL_REPLY = 103

/** Options of {@link LecternSocket}. */
export interface LecternSocketOptions {
  /** The token the socket presents (default: the client's access token); a callback is
   * called again after a 4401. See `OpenDocumentOptions.token`. */
  token?: TokenSource
  /** The WebSocket class (default: the client's `WebSocketPolyfill`, else the global one). */
  WebSocketPolyfill?: unknown
}

/** Options of {@link LecternSocket.open}: those of `openDocument`, but the token and the
 * WebSocket are the socket's. */
export type SocketDocumentOptions = Omit<OpenDocumentOptions, 'token' | 'WebSocketPolyfill'>

/** The part of the WebSocket API the socket uses (the browser's and the `ws` package's). */
interface RealSocket {
  binaryType: string
  readyState: number
  onopen: ((event: unknown) => void) | null
  onmessage: ((event: { data: unknown }) => void) | null
  onclose: ((event: { code: number, reason: string }) => void) | null
  onerror: ((event: unknown) => void) | null
  send (data: Uint8Array): void
  close (code?: number, reason?: string): void
}

type SocketClass = new (url: string) => RealSocket

/** A WebSocket as y-websocket sees it, carried in envelopes for one document. */
class VirtualSocket {
  static readonly CONNECTING = 0
  static readonly OPEN = 1
  static readonly CLOSING = 2
  static readonly CLOSED = 3
  readonly CONNECTING = 0
  readonly OPEN = 1
  readonly CLOSING = 2
  readonly CLOSED = 3
  binaryType = 'arraybuffer'
  readyState = VirtualSocket.CONNECTING
  onopen: ((event: unknown) => void) | null = null
  onmessage: ((event: { data: ArrayBuffer }) => void) | null = null
  onclose: ((event: { code: number, reason: string }) => void) | null = null
  onerror: ((event: unknown) => void) | null = null

  constructor (readonly docId: string, readonly mux: Multiplexer) {}

  send (data: Uint8Array): void {
    if (this.readyState === VirtualSocket.OPEN) this.mux.send(this.docId, data)
  }

  close (): void {
    if (this.readyState === VirtualSocket.CLOSED) return
    this.readyState = VirtualSocket.CLOSED
    this.mux.leave(this)
  }
}

/** What the virtual sockets need from their `LecternSocket` (kept off its public API). */
interface Multiplexer {
  send (docId: string, message: Uint8Array): void
  leave (virtual: VirtualSocket): void
}

/** One WebSocket for many documents; see the module doc. */
export class LecternSocket {
  /** The client whose URL (and, by default, tokens) the socket uses. */
  readonly client: LecternClient
  readonly #tokenSource: TokenSource | undefined
  readonly #WS: SocketClass
  #real: RealSocket | null = null
  /** The current virtual socket of each open document. */
  readonly #virtuals = new Map<string, VirtualSocket>()
  /** The token the next real socket presents, shared by every provider asking meanwhile. */
  #token: Promise<string> | null = null
  /** The token the current (or last) real socket presented. */
  #presented: string | undefined
  /** The last real socket was closed with 4401: the next token must be a new one. */
  #renew = false
  /** Control requests awaiting their reply, by `request_id`; rejected if the socket closes. */
  readonly #requests = new Map<number, { resolve: (job: AiJob) => void, reject: (error: Error) => void }>()
  #nextRequest = 1
  #destroyed = false
  /** Every provider `open` made, destroyed with the socket. */
  readonly #providers = new Set<LecternProvider>()
  readonly #mux: Multiplexer

  constructor (client: LecternClient, options: LecternSocketOptions = {}) {
    const WS = options.WebSocketPolyfill ?? client.WebSocketPolyfill ?? (globalThis as { WebSocket?: unknown }).WebSocket
    if (WS === undefined) {
      throw new TypeError('no WebSocket implementation: pass WebSocketPolyfill (e.g. the `ws` package) to LecternClient')
    }
    this.client = client
    this.#tokenSource = options.token
    this.#WS = WS as SocketClass
    this.#mux = {
      send: (docId, message) => this.#sendEnvelope(docId, message),
      leave: virtual => this.#leave(virtual)
    }
  }

  /** Opens document `docId` on this socket: a `LecternProvider` like `openDocument`'s
   * (`whenSynced`, `'access'`, `readOnly`...). One provider per document per socket. */
  open (docId: string, options: SocketDocumentOptions = {}): LecternProvider {
    if (this.#destroyed) throw new Error('the socket was destroyed')
    const socket = this
    const mux = this.#mux
    class DocumentSocket extends VirtualSocket {
      constructor () {
        super(docId, mux)
        socket.#attach(this)
      }
    }
    const provider = new LecternProvider(this.client, docId, {
      ...options,
      token: () => this.#nextToken(),
      WebSocketPolyfill: DocumentSocket
    })
    this.#providers.add(provider)
    return provider
  }

  /** Starts a live AI job over the socket (control message `start`); `docId` must be open
   * on it (replies come in its envelopes). Failures reject with a `LecternError` whose
   * `status` is 0 (there is no HTTP response) and whose `code` is the REST error code. */
  startAiJob (docId: string, sessionId: string, request: AiJobRequest): Promise<AiJob> {
    return this.#control(docId, { ...request, action: 'start', session_id: sessionId })
  }

  /** A job's current state (control message `status`). */
  getAiJob (docId: string, jobId: string): Promise<AiJob> {
    return this.#control(docId, { action: 'status', job_id: jobId })
  }

  /** Cancels a job (control message `cancel`). */
  cancelAiJob (docId: string, jobId: string): Promise<AiJob> {
    return this.#control(docId, { action: 'cancel', job_id: jobId })
  }

  /** Destroys every provider opened on the socket (not their documents), and closes it. */
  destroy (): void {
    this.#destroyed = true
    for (const provider of this.#providers) provider.destroy()
    this.#providers.clear()
    this.#real?.close(1000, 'client closed')
  }

  /** The token for the next real socket (the providers' token callback). */
  #nextToken (): Promise<string> {
    if (this.#real !== null && this.#presented !== undefined) return Promise.resolve(this.#presented)
    if (this.#token === null) {
      const renew = this.#renew
      this.#token = this.#fetchToken(renew).finally(() => { this.#token = null })
    }
    return this.#token
  }

  async #fetchToken (renew: boolean): Promise<string> {
    const source = this.#tokenSource
    let token: string
    if (typeof source === 'string') token = source
    else if (source !== undefined) token = await source()
    else if (renew && this.#presented !== undefined) token = await this.client.renewAccessToken(this.#presented)
    else token = await this.client.accessToken()
    this.#presented = token
    this.#renew = false
    return token
  }

  /** A provider (re)connects its document: open the real socket if needed. */
  #attach (virtual: VirtualSocket): void {
    this.#virtuals.get(virtual.docId)?.close()
    this.#virtuals.set(virtual.docId, virtual)
    if (this.#destroyed) {
      this.#closeVirtual(virtual, 1000, 'the socket was destroyed')
      return
    }
    const real = this.#real ?? this.#connect()
    if (real.readyState === 1) queueMicrotask(() => this.#openVirtual(virtual))
  }

  #connect (): RealSocket {
    const url = new URL(this.client.wsUrl)
    if (this.#presented !== undefined) url.searchParams.set('token', this.#presented)
    const real = new this.#WS(url.toString())
    real.binaryType = 'arraybuffer'
    this.#real = real
    real.onopen = () => {
      for (const virtual of this.#virtuals.values()) this.#openVirtual(virtual)
    }
    real.onmessage = event => {
      if (this.#real === real) this.#receive(new Uint8Array(event.data as ArrayBuffer))
    }
    real.onerror = () => { /* a close follows */ }
    real.onclose = ({ code, reason }) => {
      if (this.#real !== real) return
      this.#real = null
      if (code === 4401) this.#renew = true
      const virtuals = [...this.#virtuals.values()]
      this.#virtuals.clear()
      for (const virtual of virtuals) this.#closeVirtual(virtual, code, reason)
      for (const { reject } of this.#requests.values()) reject(new Error(`the socket closed (${code})`))
      this.#requests.clear()
    }
    return real
  }

  #openVirtual (virtual: VirtualSocket): void {
    if (virtual.readyState !== VirtualSocket.CONNECTING || this.#virtuals.get(virtual.docId) !== virtual) return
    virtual.readyState = VirtualSocket.OPEN
    virtual.onopen?.({})
  }

  #closeVirtual (virtual: VirtualSocket, code: number, reason: string): void {
    if (virtual.readyState === VirtualSocket.CLOSED) return
    virtual.readyState = VirtualSocket.CLOSED
    virtual.onclose?.({ code, reason })
  }

  #leave (virtual: VirtualSocket): void {
    if (this.#virtuals.get(virtual.docId) !== virtual) return
    this.#virtuals.delete(virtual.docId)
    this.#sendEnvelope(virtual.docId, Uint8Array.of(LEAVE))
  }

  #sendEnvelope (docId: string, message: Uint8Array): void {
    const real = this.#real
    if (real === null || real.readyState !== 1) return
    const name = new TextEncoder().encode(docId)
    real.send(concat([varUint(name.length), name, message]))
  }

  #receive (bytes: Uint8Array): void {
    const reader = { bytes, at: 0 }
    const docId = readVarString(reader)
    const body = bytes.subarray(reader.at)
    const virtual = this.#virtuals.get(docId)
    const type = readVarUint({ bytes: body, at: 0 })
    if (type === CLOSED) {
      const closed = { bytes: body, at: 0 }
      readVarUint(closed)
      const code = readVarUint(closed)
      const reason = readVarString(closed)
      if (virtual !== undefined) {
        this.#virtuals.delete(docId)
        this.#closeVirtual(virtual, code, reason)
      }
      return
    }
    if (type === CONTROL_REPLY) {
      const reply = { bytes: body, at: 0 }
      readVarUint(reply)
      this.#onReply(JSON.parse(readVarString(reply)) as ControlReply)
      return
    }
    if (virtual?.readyState === VirtualSocket.OPEN) virtual.onmessage?.({ data: body.slice().buffer })
  }

  #control (docId: string, request: Record<string, unknown>): Promise<AiJob> {
    const virtual = this.#virtuals.get(docId)
    if (virtual === undefined || virtual.readyState !== VirtualSocket.OPEN) {
      return Promise.reject(new Error(`not connected: document ${docId} is not open on this socket yet`))
    }
    const id = this.#nextRequest++
    return new Promise((resolve, reject) => {
      this.#requests.set(id, { resolve, reject })
      const json = new TextEncoder().encode(JSON.stringify({ ...request, request_id: id }))
      this.#sendEnvelope(docId, concat([varUint(CONTROL_REQUEST), varUint(json.length), json]))
    })
  }

  #onReply (reply: ControlReply): void {
    const pending = typeof reply.request_id === 'number' ? this.#requests.get(reply.request_id) : undefined
    if (pending === undefined) return // not ours (or its socket closed meanwhile)
    this.#requests.delete(reply.request_id as number)
    if (reply.ok && reply.job !== undefined) pending.resolve(reply.job)
    else pending.reject(new LecternError(0, reply.error?.code ?? 'internal', reply.error?.message ?? 'control request failed'))
  }
}

/** A control reply (docs/protocol.md, "AI control messages"). */
interface ControlReply {
  request_id?: unknown
  ok: boolean
  job?: AiJob
  error?: { code: ErrorCode, message: string }
}

// ---- lib0 encoding (varUint, varString), the framing of docs/protocol.md ----

function varUint (value: number): Uint8Array {
  const bytes: number[] = []
  while (value > 0x7f) {
    bytes.push(0x80 | (value & 0x7f))
    value = Math.floor(value / 128)
  }
  bytes.push(value)
  return Uint8Array.from(bytes)
}

function readVarUint (reader: { bytes: Uint8Array, at: number }): number {
  let value = 0
  let scale = 1
  for (;;) {
    const byte = reader.bytes[reader.at++]
    if (byte === undefined) throw new RangeError('truncated message')
    value += (byte & 0x7f) * scale
    if (byte < 0x80) return value
    scale *= 128
  }
}

function readVarString (reader: { bytes: Uint8Array, at: number }): string {
  const length = readVarUint(reader)
  const text = new TextDecoder().decode(reader.bytes.subarray(reader.at, reader.at + length))
  reader.at += length
  return text
}

function concat (parts: Uint8Array[]): Uint8Array {
  const result = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0))
  let at = 0
  for (const part of parts) {
    result.set(part, at)
    at += part.length
  }
  return result
}
