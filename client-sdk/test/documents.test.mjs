// The typed document readers on documents built in the shapes of docs/ai.md and of the
// materials feed (no server: the end-to-end feed is covered by materials.test.mjs).
import test from 'node:test'
import assert from 'node:assert/strict'
import * as Y from 'yjs'
import { chatMessages, isAiText, aiJobOf, aiClientIds, aiJobs, aiJobOfItem, isAiMessage, lecternDocId, sessionFocus, materialsFeed, watchJob } from '../dist/index.js'

test('chatMessages reads questions and streaming answers with citations', () => {
  const doc = new Y.Doc()
  const chat = chatMessages(doc)
  const seen = []
  const unsubscribe = chat.subscribe(messages => seen.push(messages.map(m => m.text)))
  const messages = doc.getArray('messages')
  const question = new Y.Map(Object.entries({ id: 'j1-question', role: 'user', author: 'u1', text: new Y.Text('What is ATP?'), citations: new Y.Array(), status: 'done', job_id: 'j1', created_at: 1 }))
  const answer = new Y.Map(Object.entries({ id: 'j1', role: 'assistant', author: 'ai', text: new Y.Text(''), citations: new Y.Array(), status: 'streaming', job_id: 'j1', reply_to: 'j1-question', created_at: 2 }))
  messages.push([question, answer])
  answer.get('text').insert(0, 'Energy [1]')
  answer.get('citations').push([{ material_id: 'm1', file_name: 'cells.pdf', page: 3, heading: null }])
  answer.set('status', 'done')
  unsubscribe()
  const [q, a] = chat.list()
  assert.deepEqual({ role: q.role, author: q.author, text: q.text, reply_to: q.reply_to }, { role: 'user', author: 'u1', text: 'What is ATP?', reply_to: undefined })
  assert.equal(a.author, 'ai')
  assert.equal(a.text, 'Energy [1]')
  assert.equal(a.reply_to, 'j1-question')
  assert.equal(a.status, 'done')
  assert.deepEqual(a.citations, [{ material_id: 'm1', file_name: 'cells.pdf', page: 3, heading: null }])
  assert.deepEqual(seen.at(-2), ['What is ATP?', 'Energy [1]'])
})

test('AI text is marked; AI clients and jobs come from the session lectern document', () => {
  const doc = new Y.Doc()
  const text = doc.getText('content')
  text.insert(0, 'typed by a human. ')
  text.insert(text.length, 'written by AI', { ai: 'job-7' })
  const delta = text.toDelta()
  assert.deepEqual(delta.map(isAiText), [false, true])
  assert.equal(aiJobOf(delta[1]), 'job-7')
  const lecternDoc = new Y.Doc()
  const lectern = lecternDoc.getMap('lectern')
  const clients = new Y.Map()
  const jobs = new Y.Map()
  lectern.set('ai_clients', clients)
  lectern.set('ai_jobs', jobs)
  lectern.set('focus', { doc_id: 'session/s/notes', section: 'intro' })
  clients.set('123456', { job_id: 'job-7', kind: 'notes', doc_id: 'session/s/notes' })
  jobs.set('job-7', { kind: 'notes', status: 'streaming', client_id: 123456, started_by: 'u1', doc_id: 'session/s/notes', clock: 5 })
  assert.deepEqual([...aiClientIds(lecternDoc)], [[123456, { job_id: 'job-7', kind: 'notes', doc_id: 'session/s/notes' }]])
  assert.equal(aiJobs(lecternDoc).get('job-7').status, 'streaming')
  assert.deepEqual(sessionFocus(lecternDoc), { doc_id: 'session/s/notes', section: 'intro' })
  assert.equal(lecternDocId('s'), 'session/s/lectern')
  // Authorship is the item id: registered client, right document, clock below the record.
  assert.equal(aiJobOfItem(lecternDoc, 'session/s/notes', { client: 123456, clock: 4 }), 'job-7')
  assert.equal(aiJobOfItem(lecternDoc, 'session/s/notes', { client: 123456, clock: 5 }), undefined)
  assert.equal(aiJobOfItem(lecternDoc, 'session/s/chat', { client: 123456, clock: 0 }), undefined)
  assert.equal(aiJobOfItem(lecternDoc, 'session/s/notes', { client: 654321, clock: 0 }), undefined)
})

test('isAiMessage trusts the message map\'s item id, not its author field', () => {
  const chatId = 'session/s/chat'
  const chat = new Y.Doc()
  const ai = new Y.Doc()
  ai.clientID = 424242
  const human = new Y.Doc()
  const message = (doc, id) => new Y.Map(Object.entries({ id, role: 'assistant', author: 'ai', text: new Y.Text('hi'), citations: new Y.Array(), status: 'done', job_id: id, created_at: 1 }))
  ai.getArray('messages').push([message(ai, 'real')])
  human.getArray('messages').push([message(human, 'forged')])
  Y.applyUpdate(chat, Y.encodeStateAsUpdate(ai))
  Y.applyUpdate(chat, Y.encodeStateAsUpdate(human))
  const lecternDoc = new Y.Doc()
  const clients = new Y.Map()
  const jobs = new Y.Map()
  lecternDoc.getMap('lectern').set('ai_clients', clients)
  lecternDoc.getMap('lectern').set('ai_jobs', jobs)
  clients.set('424242', { job_id: 'real', kind: 'chat', doc_id: chatId })
  jobs.set('real', { kind: 'chat', status: 'done', client_id: 424242, started_by: 'u', doc_id: chatId, clock: Y.getState(ai.store, 424242) })
  const byId = Object.fromEntries(chatMessages(chat).list().map(m => [m.id, m]))
  assert.equal(byId.forged.author, 'ai')
  assert.equal(isAiMessage(lecternDoc, chatId, byId.real), true)
  assert.equal(isAiMessage(lecternDoc, chatId, byId.forged), false)
  assert.equal(isAiMessage(lecternDoc, 'session/s/notes', byId.real), false, 'registered for another document')
  // A member replacing the AI message's text: the map is the AI's, its text no longer is.
  const replaced = new Y.Doc()
  Y.applyUpdate(replaced, Y.encodeStateAsUpdate(chat))
  replaced.getArray('messages').toArray().find(m => m.get('id') === 'real').set('text', new Y.Text('phish'))
  const after = chatMessages(replaced).list().find(m => m.id === 'real')
  assert.equal(isAiMessage(lecternDoc, chatId, after), false)
})

test('materialsFeed lists, subscribes and waits', async () => {
  const doc = new Y.Doc()
  const feed = materialsFeed(doc)
  const waiting = feed.waitFor('m1', m => m.status === 'ready', { timeoutMs: 1000 })
  const entry = { id: 'm1', file_name: 'a.md', format: 'markdown', status: 'queued', progress: 0, chunk_count: 0, uploaded_by: 'u', size_bytes: 5, updated_at: 1 }
  doc.getMap('materials').set('m1', entry)
  assert.equal(feed.get('m1').status, 'queued')
  doc.getMap('materials').set('m1', { ...entry, status: 'ready', chunk_count: 2, updated_at: 2 })
  assert.equal((await waiting).chunk_count, 2)
  await assert.rejects(feed.waitFor('m2', undefined, { timeoutMs: 20 }), /timed out/)
})

test('watchJob reports each status and resolves at the end; a doc change wakes it', async () => {
  const statuses = ['queued', 'streaming', 'streaming', 'done']
  const client = { getAiJob: async id => ({ job_id: id, status: statuses.shift() }) }
  const doc = new Y.Doc()
  const updates = []
  const start = Date.now()
  const watching = watchJob(client, 'j', { doc, intervalMs: 10_000, onUpdate: job => updates.push(job.status) })
  // Each change to the lectern document triggers the next check at once (not after 10 s).
  for (let i = 0; i < 3; i++) {
    await new Promise(resolve => setTimeout(resolve, 20))
    doc.getMap('lectern').set('tick', i)
  }
  const job = await watching
  assert.equal(job.status, 'done')
  assert.deepEqual(updates, ['queued', 'streaming', 'done'])
  assert.ok(Date.now() - start < 5000)
})
