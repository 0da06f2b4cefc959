/**
 * Typed readers of the documents the server writes (docs/api.md "Course material",
 * docs/ai.md "Document shapes"), and `watchJob`.
 *
 * They read a `Y.Doc` you already sync (usually with `openDocument`); they never write.
 *
 * Server-owned state (the follow-the-teacher focus, AI job statuses, which Yjs client ids
 * are AI jobs) is read from the session's `lectern` document (`lecternDocId(sessionId)`),
 * which only the server can write. Never trust the same keys in a document members edit:
 * a classmate can write anything there.
 */

import * as Y from 'yjs'

import type { LecternClient } from './client.js'
import type { AiJob, AiJobKind, AiJobStatus, Focus, Material, MaterialFormat, MaterialStatus } from './types.js'
import { isFinalJobStatus } from './types.js'

// ---- the classroom materials feed ----

/** One entry of the feed document's `materials` map: a material's public progress. */
export interface FeedMaterial {
  id: string
  file_name: string
  format: MaterialFormat
  status: MaterialStatus
  /** Percent done within `embedding`. */
  progress: number
  chunk_count: number
  uploaded_by: string
  size_bytes: number
  updated_at: number
  /** Why ingestion failed (status `failed`). */
  error?: string
}

// Every feed field is a field of the REST material (same name, same meaning).
type _FeedFieldsAreMaterialFields = Exclude<keyof FeedMaterial, keyof Material> extends never ? true : never
const _feedFields: _FeedFieldsAreMaterialFields = true
void _feedFields

/** A typed view of a feed document (`classroom/{id}/materials`). */
export interface MaterialsFeed {
  /** The underlying root map. */
  readonly map: Y.Map<unknown>
  /** Every material, oldest change first. */
  list (): FeedMaterial[]
  /** One material, if it is in the feed. */
  get (materialId: string): FeedMaterial | undefined
  /** Calls `listener` with every material after each change (and the ids that changed);
   * returns the unsubscribe function. */
  subscribe (listener: (materials: FeedMaterial[], changedIds: string[]) => void): () => void
  /** Resolves with the material once `predicate` holds for it (default: `ready` or
   * `failed`); rejects after `timeoutMs` (default: never) or on `signal`. */
  waitFor (materialId: string, predicate?: (material: FeedMaterial) => boolean,
    options?: { timeoutMs?: number, signal?: AbortSignal }): Promise<FeedMaterial>
}

/** Reads the classroom feed document's `materials` map into typed objects. */
export function materialsFeed (doc: Y.Doc): MaterialsFeed {
  const map = doc.getMap<unknown>('materials')
  const list = (): FeedMaterial[] =>
    [...map.values()].filter(isObject).map(value => value as unknown as FeedMaterial)
      .sort((a, b) => a.updated_at - b.updated_at)
  const get = (id: string): FeedMaterial | undefined => {
    const value = map.get(id)
    return isObject(value) ? value as unknown as FeedMaterial : undefined
  }
  const subscribe = (listener: (materials: FeedMaterial[], changedIds: string[]) => void): () => void => {
    const observer = (event: Y.YMapEvent<unknown>): void => listener(list(), [...event.keysChanged])
    map.observe(observer)
    return () => map.unobserve(observer)
  }
  const waitFor: MaterialsFeed['waitFor'] = (id, predicate = m => m.status === 'ready' || m.status === 'failed', options = {}) =>
    until(() => {
      const material = get(id)
      return material !== undefined && predicate(material) ? material : undefined
    }, callback => subscribe(() => callback()), `material ${id}`, options)
  return { map, list, get, subscribe, waitFor }
}

// ---- the session chat ----

/** A passage an AI answer cites. The fields after `heading` are written since answers cite
 * only the passages they use; older answers lack them. */
export interface Citation {
  material_id: string
  file_name: string
  page: number | null
  heading: string | null
  /** `[marker]` in the answer's text names this passage. */
  marker?: number
  /** The passage's first chunk (`GET /materials/{id}/chunks` lists them by ordinal). */
  ordinal?: number
  /** First and last line in a text or Markdown file. */
  line_start?: number | null
  line_end?: number | null
  /** Where it is, readable: `p. 3, Cells > Mitochondria, lines 4–9`. */
  location?: string
}

/** Where a chat message is. */
export type ChatMessageStatus = 'streaming' | 'done' | 'failed' | 'cancelled'

/** One message of the session chat, as plain data. */
export interface ChatMessage {
  id: string
  role: 'user' | 'assistant'
  /** `"ai"` for AI answers, else the author's user id. Display only: any member can write
   * it; {@link isAiMessage} tells whether an AI job really wrote the message. */
  author: string
  /** The text so far (an answer grows token by token). */
  text: string
  citations: Citation[]
  status: ChatMessageStatus
  /** Why it failed. */
  error?: string
  job_id?: string
  /** The question this answers. */
  reply_to?: string
  created_at: number
  /** The live map, for editing or attributing characters. */
  map: Y.Map<unknown>
}

/** A typed view of a chat document (`session/{id}/chat`). */
export interface ChatMessages {
  /** The underlying root array. */
  readonly array: Y.Array<Y.Map<unknown>>
  /** Every message, in order. */
  list (): ChatMessage[]
  /** Calls `listener` with every message after each change (text included); returns the
   * unsubscribe function. */
  subscribe (listener: (messages: ChatMessage[]) => void): () => void
}

/** Reads the chat document's root array `messages` (docs/ai.md). */
export function chatMessages (doc: Y.Doc): ChatMessages {
  const array = doc.getArray<Y.Map<unknown>>('messages')
  const list = (): ChatMessage[] => array.toArray().filter(item => item instanceof Y.Map).map(readMessage)
  const subscribe = (listener: (messages: ChatMessage[]) => void): () => void => {
    const observer = (): void => listener(list())
    array.observeDeep(observer)
    return () => array.unobserveDeep(observer)
  }
  return { array, list, subscribe }
}

function readMessage (map: Y.Map<unknown>): ChatMessage {
  const text = map.get('text')
  const citations = map.get('citations')
  const message: ChatMessage = {
    id: String(map.get('id') ?? ''),
    role: map.get('role') === 'assistant' ? 'assistant' : 'user',
    author: String(map.get('author') ?? ''),
    text: text instanceof Y.Text ? text.toString() : typeof text === 'string' ? text : '',
    citations: (citations instanceof Y.Array ? citations.toArray() : Array.isArray(citations) ? citations : [])
      .filter(isObject) as unknown as Citation[],
    status: (map.get('status') ?? 'done') as ChatMessageStatus,
    created_at: Number(map.get('created_at') ?? 0),
    map
  }
  const optional = ['error', 'job_id', 'reply_to'] as const
  for (const key of optional) {
    const value = map.get(key)
    if (typeof value === 'string') message[key] = value
  }
  return message
}

// ---- attribution ----

/** An operation of `Y.Text.toDelta()`. */
export interface DeltaOp {
  insert?: unknown
  attributes?: Record<string, unknown>
}

/** Whether a delta operation carries the `ai` attribute AI jobs mark their text with. A
 * display hint: any member can format text so; {@link aiJobOfItem} proves authorship. */
export function isAiText (op: DeltaOp): boolean {
  return typeof op.attributes?.ai === 'string'
}

/** The AI job a delta operation's `ai` attribute names, if any (a display hint, like
 * {@link isAiText}). */
export function aiJobOf (op: DeltaOp): string | undefined {
  const job = op.attributes?.ai
  return typeof job === 'string' ? job : undefined
}

/** An AI peer: the job and kind behind a Yjs client id, and the document it writes. */
export interface AiClient {
  job_id: string
  kind: AiJobKind
  /** The document the job writes into (its items there carry the client id). */
  doc_id: string
}

/** A job's entry in the session lectern document's `ai_jobs`. */
export interface AiJobEntry {
  kind: AiJobKind
  /** `queued` until the job has a generation slot, then `streaming`, then how it ended. */
  status: AiJobStatus
  error?: string
  /** While `queued` and waiting for a generation slot: its place in line (1 = next),
   * updated as the line moves; absent otherwise. */
  queue_position?: number
  /** The Yjs client id of the job's edits. */
  client_id: number
  started_by: string
  /** The document the job writes into. */
  doc_id: string
  /** How far the job's clock got: its items in `doc_id` are `(client_id, 0 .. clock - 1)`. */
  clock: number
}

/** The id of session `sessionId`'s server-owned document: open it (read-only for
 * everyone) to read the focus, AI jobs and AI clients. */
export function lecternDocId (sessionId: string): string {
  return `session/${sessionId}/lectern`
}

/** The follow-the-teacher focus in a session's lectern document, if faculty set one. */
export function sessionFocus (lecternDoc: Y.Doc): Focus | undefined {
  const focus = lecternDoc.getMap<unknown>('lectern').get('focus')
  return isObject(focus) && typeof focus.doc_id === 'string' ? focus as unknown as Focus : undefined
}

/** Calls `listener` with the focus whenever it changes; returns the unsubscribe function. */
export function onFocus (lecternDoc: Y.Doc, listener: (focus: Focus | undefined) => void): () => void {
  const map = lecternDoc.getMap<unknown>('lectern')
  const observer = (event: Y.YMapEvent<unknown>): void => {
    if (event.keysChanged.has('focus')) listener(sessionFocus(lecternDoc))
  }
  map.observe(observer)
  return () => map.unobserve(observer)
}

/** The Yjs client ids AI jobs of the session wrote with (`ai_clients` in the session's
 * lectern document), with the document each wrote into. */
export function aiClientIds (lecternDoc: Y.Doc): Map<number, AiClient> {
  const clients = lecternDoc.getMap<unknown>('lectern').get('ai_clients')
  const result = new Map<number, AiClient>()
  if (clients instanceof Y.Map) {
    for (const [key, value] of clients.entries()) {
      if (isObject(value)) result.set(Number(key), value as unknown as AiClient)
    }
  }
  return result
}

/** The session's AI jobs (`ai_jobs` in its lectern document), by job id. */
export function aiJobs (lecternDoc: Y.Doc): Map<string, AiJobEntry> {
  const jobs = lecternDoc.getMap<unknown>('lectern').get('ai_jobs')
  const result = new Map<string, AiJobEntry>()
  if (jobs instanceof Y.Map) {
    for (const [key, value] of jobs.entries()) {
      if (isObject(value)) result.set(key, value as unknown as AiJobEntry)
    }
  }
  return result
}

/** The id of a Yjs item: `item.id` of any `Y.Item`, e.g. `ymap._item.id`. */
export interface ItemId {
  client: number
  clock: number
}

/** The AI job that created the item `id` of document `docId`, if one did.
 *
 * Authorship is the item's identity, checked against what the server recorded: the item's
 * client id is an AI client registered for `docId`, and its clock is below the clock the
 * server recorded for the job. Yjs never lets a peer re-create an id the document has, so
 * nobody else can have written that item. (An item written by a running job after its
 * last recorded clock is confirmed at the job's next status write.) */
export function aiJobOfItem (lecternDoc: Y.Doc, docId: string, id: ItemId): string | undefined {
  const client = aiClientIds(lecternDoc).get(id.client)
  if (client === undefined || client.doc_id !== docId) return undefined
  const job = aiJobs(lecternDoc).get(client.job_id)
  if (job === undefined || job.client_id !== id.client || job.doc_id !== docId) return undefined
  return id.clock < job.clock ? client.job_id : undefined
}

/** Whether an AI job wrote chat message `message` of chat document `chatDocId`: the
 * message map itself and its `text` were created by a registered AI client (see
 * {@link aiJobOfItem}). `author: "ai"` alone proves nothing. Members may still edit inside
 * an AI answer's text like any shared text; use {@link aiJobOfItem} per character to tell. */
export function isAiMessage (lecternDoc: Y.Doc, chatDocId: string, message: ChatMessage | Y.Map<unknown>): boolean {
  const map = message instanceof Y.Map ? message : message.map
  const item = map._item
  if (item === null) return false
  const job = aiJobOfItem(lecternDoc, chatDocId, item.id)
  if (job === undefined) return false
  // The `text` entry must be the one the job created with the message, not a replacement.
  const text = map._map.get('text')
  return text !== undefined && aiJobOfItem(lecternDoc, chatDocId, text.id) === job
}

// ---- jobs ----

/** Options of {@link watchJob}. */
export interface WatchJobOptions {
  /** The session's lectern document (`lecternDocId`), if you sync it: a change of its
   * `ai_jobs` triggers a status check at once instead of at the next poll. */
  doc?: Y.Doc
  /** Poll interval, ms (default 1000). */
  intervalMs?: number
  /** Called with the job whenever its status changes (and first). */
  onUpdate?: (job: AiJob) => void
  /** Stops watching (the promise rejects with the signal's reason). */
  signal?: AbortSignal
}

/** Resolves with the job once it is `done`, `failed` or `cancelled`, reporting each status
 * change on the way. */
export async function watchJob (client: Pick<LecternClient, 'getAiJob'>, jobId: string,
  { doc, intervalMs = 1000, onUpdate, signal }: WatchJobOptions = {}): Promise<AiJob> {
  let last: AiJobStatus | undefined
  let wake: (() => void) | undefined
  const lectern = doc?.getMap<unknown>('lectern')
  const observer = (): void => { wake?.() }
  lectern?.observeDeep(observer)
  try {
    for (;;) {
      signal?.throwIfAborted()
      const job = await client.getAiJob(jobId)
      if (job.status !== last) {
        last = job.status
        onUpdate?.(job)
      }
      if (isFinalJobStatus(job.status)) return job
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(done, intervalMs)
        const onAbort = (): void => { clearTimeout(timer); wake = undefined; reject(signal?.reason) }
        function done (): void {
          clearTimeout(timer)
          wake = undefined
          signal?.removeEventListener('abort', onAbort)
          resolve()
        }
        wake = done
        signal?.addEventListener('abort', onAbort, { once: true })
      })
    }
  } finally {
    lectern?.unobserveDeep(observer)
  }
}

// ---- helpers ----

function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Y.AbstractType)
}

/** Resolves with `check()`'s first defined value, re-checking whenever `watch` calls back. */
function until<T> (check: () => T | undefined, watch: (callback: () => void) => () => void, what: string,
  { timeoutMs, signal }: { timeoutMs?: number, signal?: AbortSignal }): Promise<T> {
  return new Promise((resolve, reject) => {
    const first = check()
    if (first !== undefined) { resolve(first); return }
    let timer: ReturnType<typeof setTimeout> | undefined
    const finish = (): void => {
      unwatch()
      if (timer !== undefined) clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
    }
    const onAbort = (): void => { finish(); reject(signal?.reason) }
    const unwatch = watch(() => {
      const value = check()
      if (value !== undefined) { finish(); resolve(value) }
    })
    if (timeoutMs !== undefined) {
      timer = setTimeout(() => { finish(); reject(new Error(`timed out waiting for ${what}`)) }, timeoutMs)
    }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
