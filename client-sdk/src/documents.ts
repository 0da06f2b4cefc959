/**
 * Typed readers of the documents the server writes (docs/api.md "Course material",
 * docs/ai.md "Document shapes"), and `watchJob`.
 *
 * They read a `Y.Doc` you already sync (usually with `openDocument`); they never write.
 */

import * as Y from 'yjs'

import type { LecternClient } from './client.js'
import type { AiJob, AiJobKind, AiJobStatus, Material, MaterialFormat, MaterialStatus } from './types.js'
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

/** A source an AI answer cites: `[n]` in the text is `citations[n-1]`. */
export interface Citation {
  material_id: string
  file_name: string
  page: number | null
  heading: string | null
}

/** Where a chat message is. */
export type ChatMessageStatus = 'streaming' | 'done' | 'failed' | 'cancelled'

/** One message of the session chat, as plain data. */
export interface ChatMessage {
  id: string
  role: 'user' | 'assistant'
  /** `"ai"` for AI answers, else the author's user id. */
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

/** Whether a delta operation was written by an AI job (it carries the `ai` attribute). */
export function isAiText (op: DeltaOp): boolean {
  return typeof op.attributes?.ai === 'string'
}

/** The AI job that wrote a delta operation, if one did. */
export function aiJobOf (op: DeltaOp): string | undefined {
  const job = op.attributes?.ai
  return typeof job === 'string' ? job : undefined
}

/** An AI peer of a document: the job and kind behind a Yjs client id. */
export interface AiClient {
  job_id: string
  kind: AiJobKind
}

/** The Yjs client ids AI jobs wrote this document with (`lectern.ai_clients`): compare with
 * an item's `id.client` to attribute any character or node. */
export function aiClientIds (doc: Y.Doc): Map<number, AiClient> {
  const clients = doc.getMap<unknown>('lectern').get('ai_clients')
  const result = new Map<number, AiClient>()
  if (clients instanceof Y.Map) {
    for (const [key, value] of clients.entries()) {
      if (isObject(value)) result.set(Number(key), value as unknown as AiClient)
    }
  }
  return result
}

/** A job's entry in a target document's `lectern.ai_jobs`. */
export interface AiJobEntry {
  kind: AiJobKind
  status: AiJobStatus
  error?: string
  client_id: number
  started_by: string
}

/** The AI jobs recorded in a document (`lectern.ai_jobs`), by job id. */
export function aiJobs (doc: Y.Doc): Map<string, AiJobEntry> {
  const jobs = doc.getMap<unknown>('lectern').get('ai_jobs')
  const result = new Map<string, AiJobEntry>()
  if (jobs instanceof Y.Map) {
    for (const [key, value] of jobs.entries()) {
      if (isObject(value)) result.set(key, value as unknown as AiJobEntry)
    }
  }
  return result
}

// ---- jobs ----

/** Options of {@link watchJob}. */
export interface WatchJobOptions {
  /** The job's target document, if you sync it: its `lectern.ai_jobs` entry triggers a
   * status check at once instead of at the next poll. */
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
