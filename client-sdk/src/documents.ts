/**
 * Typed readers of the documents the server writes (docs/api.md "Course material" and
 * "Notifications", docs/ai.md "Document shapes"): the materials feed, the user's inbox, the chat, the session lectern
 * document, the mind map and the AI-made templates; and `watchJob`.
 *
 * They read a `Y.Doc` you already sync (usually with `openDocument`); they never write.
 *
 * Server-owned state (the session's state, the follow-the-teacher focus, handouts, AI job
 * statuses, which Yjs client ids are AI jobs) is read from the session's `lectern` document (`lecternDocId(sessionId)`),
 * which only the server can write. Never trust the same keys in a document members edit:
 * a classmate can write anything there.
 */

import * as Y from 'yjs'

import type { LecternClient } from './client.js'
import type { AiJob, AiJobKind, AiJobStatus, Focus, InboxKind, Material, MaterialFormat, MaterialStatus, SessionState } from './types.js'
import { INBOX_KINDS, SESSION_STATES, isFinalJobStatus } from './types.js'

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

// ---- the user's inbox ----

/** One notification in a user's inbox document (docs/api.md "Notifications"). */
export interface InboxItem {
  id: string
  kind: InboxKind
  title: string
  body?: string
  classroom_id: string
  session_id?: string
  /** The document it is about: a handout's own copy, an AI job's document. */
  doc_id?: string
  /** Unix milliseconds. */
  created_at: number
  read: boolean
}

/** A typed view of an inbox document (`user/{id}/inbox`). */
export interface Inbox {
  /** The underlying root array. */
  readonly array: Y.Array<unknown>
  /** Every item, oldest first (the server keeps the newest 200). Entries that are not
   * well-formed items (or of a kind this SDK does not know) are skipped. */
  list (): InboxItem[]
  /** How many items are not read. */
  unreadCount (): number
  /** Calls `listener` with every item after each change (read marks included); returns the
   * unsubscribe function. */
  subscribe (listener: (items: InboxItem[]) => void): () => void
}

/** The id of user `userId`'s inbox document: open it (read-only, and only its user may)
 * to see notifications live (see {@link inbox}); mark items read with
 * `client.markInboxRead`. */
export function inboxDocId (userId: string): string {
  return `user/${userId}/inbox`
}

/** Reads an inbox document's root array `items` into typed objects. */
export function inbox (doc: Y.Doc): Inbox {
  const array = doc.getArray<unknown>('items')
  const list = (): InboxItem[] => array.toArray().flatMap(value => {
    const item = readInboxItem(value)
    return item === undefined ? [] : [item]
  })
  const unreadCount = (): number => list().filter(item => !item.read).length
  const subscribe = (listener: (items: InboxItem[]) => void): () => void => {
    const observer = (): void => listener(list())
    array.observeDeep(observer)
    return () => array.unobserveDeep(observer)
  }
  return { array, list, unreadCount, subscribe }
}

function readInboxItem (value: unknown): InboxItem | undefined {
  const get = fields(value)
  if (get === null) return undefined
  const id = get('id')
  const kind = get('kind')
  const title = get('title')
  const classroomId = get('classroom_id')
  if (typeof id !== 'string' || typeof title !== 'string' || typeof classroomId !== 'string' ||
      !(INBOX_KINDS as readonly unknown[]).includes(kind)) {
    return undefined
  }
  const item: InboxItem = {
    id,
    kind: kind as InboxKind,
    title,
    classroom_id: classroomId,
    created_at: count(get('created_at'), 0),
    read: get('read') === true
  }
  for (const key of ['body', 'session_id', 'doc_id'] as const) {
    const optional = get(key)
    if (typeof optional === 'string') item[key] = optional
  }
  return item
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

/** The id of classroom `classroomId`'s materials feed document: open it (read-only for
 * every member) to follow ingestion (see {@link materialsFeed}). */
export function materialsFeedDocId (classroomId: string): string {
  return `classroom/${classroomId}/materials`
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
  return onLecternKey(lecternDoc, 'focus', () => listener(sessionFocus(lecternDoc)))
}

/** Calls `changed` whenever the server sets `key` of the lectern document's root map;
 * returns the unsubscribe function. */
function onLecternKey (lecternDoc: Y.Doc, key: string, changed: () => void): () => void {
  const map = lecternDoc.getMap<unknown>('lectern')
  const observer = (event: Y.YMapEvent<unknown>): void => {
    if (event.keysChanged.has(key)) changed()
  }
  map.observe(observer)
  return () => map.unobserve(observer)
}

/** The session's state as the server last wrote it into its lectern document (`state`):
 * `live`, `locked` or `ended`. It changes without the sockets closing on a lock or unlock,
 * so this (not a poll of `getSession`) is how an open page learns of them. `undefined`
 * until the document has synced. */
export function sessionState (lecternDoc: Y.Doc): SessionState | undefined {
  const state = lecternDoc.getMap<unknown>('lectern').get('state')
  return (SESSION_STATES as readonly unknown[]).includes(state) ? state as SessionState : undefined
}

/** Calls `listener` with the session's state whenever the server changes it; returns the
 * unsubscribe function. */
export function onSessionState (lecternDoc: Y.Doc, listener: (state: SessionState | undefined) => void): () => void {
  return onLecternKey(lecternDoc, 'state', () => listener(sessionState(lecternDoc)))
}

/** The templates handed out in the session (`handouts` in its lectern document): template
 * doc id → when it was last handed out, unix seconds. A student's forks are listed by
 * `getSession` (kind `fork`); fetch the session again when this changes. */
export function sessionHandouts (lecternDoc: Y.Doc): Map<string, number> {
  const handouts = lecternDoc.getMap<unknown>('lectern').get('handouts')
  const result = new Map<string, number>()
  if (handouts instanceof Y.Map) {
    for (const [key, value] of handouts.entries()) {
      if (typeof value === 'number') result.set(key, value)
    }
  }
  return result
}

/** Calls `listener` with every handout whenever one is added or repeated; returns the
 * unsubscribe function. */
export function onHandouts (lecternDoc: Y.Doc, listener: (handouts: Map<string, number>) => void): () => void {
  const map = lecternDoc.getMap<unknown>('lectern')
  // Deep: a second handout changes the nested map, not the `handouts` key.
  const observer = (events: Array<Y.YEvent<Y.AbstractType<unknown>>>): void => {
    const touched = events.some(event => event.target === map
      ? (event as Y.YMapEvent<unknown>).keysChanged.has('handouts')
      : event.path[0] === 'handouts')
    if (touched) listener(sessionHandouts(lecternDoc))
  }
  map.observeDeep(observer)
  return () => map.unobserveDeep(observer)
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

// ---- AI-made documents: the mind map and the templates ----
//
// Members may write documents they can edit (faculty write templates, everyone writes the
// session mind map), so these readers trust nothing: a field of the wrong type is replaced
// by its default, an item that cannot be shown (a question without options, a node without
// a label) is left out, and nothing here throws.

/** A node of a mind map with its children, in order. */
export interface MindmapNode {
  id: string
  label: string
  children: MindmapNode[]
}

/** A mind map as a tree (`root` is `null` until the first node is written). */
export interface MindmapTree {
  root: MindmapNode | null
  /** How many nodes the tree holds. */
  size: number
}

/** Reads a mind map document's root map `mindmap` (docs/ai.md "Document shapes") into a
 * tree. A child id naming no node, or a node already in the tree (a cycle, a node listed
 * twice), is left out, so the result is always a finite tree. */
export function mindmapTree (doc: Y.Doc): MindmapTree {
  const map = rootMap(doc, 'mindmap')
  if (map === null) return { root: null, size: 0 }
  const nodes = fields(map.get('nodes'))
  const rootId = map.get('root')
  if (nodes === null || typeof rootId !== 'string') return { root: null, size: 0 }
  const seen = new Set<string>()
  const build = (id: string): MindmapNode | null => {
    const node = fields(nodes(id))
    if (node === null || seen.has(id)) return null
    seen.add(id)
    const children: MindmapNode[] = []
    for (const childId of items(node('children'))) {
      if (typeof childId !== 'string') continue
      const child = build(childId)
      if (child !== null) children.push(child)
    }
    return { id, label: text(node('label')), children }
  }
  const root = build(rootId)
  return { root, size: seen.size }
}

/** A multiple-choice question of a quiz. */
export interface QuizQuestion {
  prompt: string
  options: string[]
  /** The index of the right option (from 0); -1 when the document names none that exists. */
  answer: number
  explanation: string
  marks: number
}

/** A flashcard. */
export interface Flashcard {
  front: string
  back: string
}

/** A question of an exam: `options` and `answer` for multiple choice, `model_answer` for a
 * short answer, `guidance` for an essay (empty strings and lists when absent). */
export interface ExamQuestion {
  kind: 'multiple_choice' | 'short_answer' | 'essay'
  prompt: string
  marks: number
  options: string[]
  answer: number
  model_answer: string
  guidance: string
}

/** A section of an exam. */
export interface ExamSection {
  title: string
  questions: ExamQuestion[]
}

/** A line of a lesson plan's timeline. */
export interface TimelineStep {
  minutes: number
  activity: string
}

/** An activity of a lesson plan. */
export interface LessonActivity {
  name: string
  description: string
}

/** What a template document holds, by its shape (docs/ai.md "Document shapes"): a
 * finished quiz, flashcards, exam or lesson plan; the `draft` a structured job is still
 * writing; the `content` text of a translation; or nothing yet. */
export type StructuredContent =
  | { kind: 'quiz', title: string, questions: QuizQuestion[] }
  | { kind: 'flashcards', title: string, cards: Flashcard[] }
  | { kind: 'exam', title: string, duration_minutes: number, total_marks: number, sections: ExamSection[] }
  | { kind: 'lesson_plan', title: string, objectives: string[], timeline: TimelineStep[], activities: LessonActivity[], assessment: string[] }
  | { kind: 'draft', text: string }
  | { kind: 'text', text: string }
  | { kind: 'empty' }

/** A template document's content and the passages its `[n]` markers cite. */
export type StructuredDocument = StructuredContent & {
  /** Marker (`"1"` for `[1]`) → the cited passage (root map `sources`). */
  sources: Record<string, Citation>
}

/** Reads a template document an AI job wrote (quiz, flashcards, exam, lesson plan,
 * translation) by its shape. A finished structured map wins over the draft; a draft
 * (the raw model output while the job streams) over the `content` text. */
export function structuredDocument (doc: Y.Doc): StructuredDocument {
  const sources: Record<string, Citation> = {}
  const sourceMap = rootMap(doc, 'sources')
  if (sourceMap !== null) {
    for (const [marker, value] of sourceMap.entries()) {
      // Markers are numbers; any other key (`__proto__`...) is junk.
      if (!/^\d+$/.test(marker)) continue
      const citation = plain(value)
      if (citation !== null && typeof citation.material_id === 'string' && typeof citation.file_name === 'string') {
        sources[marker] = citation as unknown as Citation
      }
    }
  }
  return { ...structuredContent(doc), sources }
}

function structuredContent (doc: Y.Doc): StructuredContent {
  const quiz = rootMap(doc, 'quiz')
  if (quiz !== null && quiz.size > 0) {
    const questions = records(quiz.get('questions')).flatMap(question => {
      const options = strings(question('options'))
      const prompt = text(question('prompt'))
      if (prompt === '' || options.length < 2) return []
      return [{ prompt, options, answer: index(question('answer'), options), explanation: text(question('explanation')), marks: count(question('marks'), 1) }]
    })
    return { kind: 'quiz', title: text(quiz.get('title')), questions }
  }
  const flashcards = rootMap(doc, 'flashcards')
  if (flashcards !== null && flashcards.size > 0) {
    const cards = records(flashcards.get('cards'))
      .map(card => ({ front: text(card('front')), back: text(card('back')) }))
      .filter(card => card.front !== '' || card.back !== '')
    return { kind: 'flashcards', title: text(flashcards.get('title')), cards }
  }
  const exam = rootMap(doc, 'exam')
  if (exam !== null && exam.size > 0) {
    const sections = records(exam.get('sections')).map(section => ({
      title: text(section('title')),
      questions: records(section('questions')).flatMap((question): ExamQuestion[] => {
        const prompt = text(question('prompt'))
        if (prompt === '') return []
        const kind = question('kind')
        const options = strings(question('options'))
        return [{
          kind: kind === 'multiple_choice' || kind === 'essay' ? kind : 'short_answer',
          prompt,
          marks: count(question('marks'), 0),
          options,
          answer: index(question('answer'), options),
          model_answer: text(question('model_answer')),
          guidance: text(question('guidance'))
        }]
      })
    }))
    return {
      kind: 'exam',
      title: text(exam.get('title')),
      duration_minutes: count(exam.get('duration_minutes'), 0),
      total_marks: count(exam.get('total_marks'), 0),
      sections
    }
  }
  const plan = rootMap(doc, 'lesson_plan')
  if (plan !== null && plan.size > 0) {
    return {
      kind: 'lesson_plan',
      title: text(plan.get('title')),
      objectives: strings(plan.get('objectives')),
      timeline: records(plan.get('timeline'))
        .map(step => ({ minutes: count(step('minutes'), 0), activity: text(step('activity')) }))
        .filter(step => step.activity !== ''),
      activities: records(plan.get('activities'))
        .map(activity => ({ name: text(activity('name')), description: text(activity('description')) }))
        .filter(activity => activity.name !== '' || activity.description !== ''),
      assessment: strings(plan.get('assessment'))
    }
  }
  const draft = rootText(doc, 'draft')
  if (draft !== '') return { kind: 'draft', text: draft }
  const content = rootText(doc, 'content')
  if (content !== '') return { kind: 'text', text: content }
  return { kind: 'empty' }
}

/** Root map `name` of `doc`, or `null` if the document defines that root as another type. */
function rootMap (doc: Y.Doc, name: string): Y.Map<unknown> | null {
  try {
    return doc.getMap<unknown>(name)
  } catch {
    return null
  }
}

/** The text of root `Y.Text` `name`, or `''` if the document defines that root as another type. */
function rootText (doc: Y.Doc, name: string): string {
  try {
    return doc.getText(name).toString()
  } catch {
    return ''
  }
}

/** A field getter over a `Y.Map` or a plain object; `null` for anything else. */
function fields (value: unknown): ((key: string) => unknown) | null {
  if (value instanceof Y.Map) return key => value.get(key)
  if (isObject(value)) return key => value[key]
  return null
}

/** A `Y.Map` or plain object as a plain object (nested Yjs types as JSON); `null` else. */
function plain (value: unknown): Record<string, unknown> | null {
  if (value instanceof Y.Map) return value.toJSON()
  return isObject(value) ? value : null
}

/** The items of a `Y.Array` or an array; none for anything else. */
function items (value: unknown): unknown[] {
  if (value instanceof Y.Array) return value.toArray()
  return Array.isArray(value) ? value : []
}

/** The items of a list that are maps or objects, as field getters. */
function records (value: unknown): Array<(key: string) => unknown> {
  return items(value).map(fields).filter(item => item !== null)
}

/** The strings of a list (a `Y.Text` item read as its text); other items left out. */
function strings (value: unknown): string[] {
  return items(value).map(item => item instanceof Y.Text ? item.toString() : item)
    .filter(item => typeof item === 'string')
}

/** A string field (a `Y.Text` read as its text); `''` for anything else. */
function text (value: unknown): string {
  if (value instanceof Y.Text) return value.toString()
  return typeof value === 'string' ? value : ''
}

/** A finite, non-negative number field; `fallback` for anything else. */
function count (value: unknown, fallback: number): number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : fallback
}

/** An index into `options`; -1 when it names none. */
function index (value: unknown, options: unknown[]): number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value < options.length ? value : -1
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
