// Server-owned state through the SDK against the real server: a student cannot forge the
// follow-the-teacher focus, AI authorship of a chat message, or an AI client registration
// (issue 10, item 11). What classmates read comes from the session's `lectern` document,
// which only the server writes.
import test from 'node:test'
import assert from 'node:assert/strict'
import * as Y from 'yjs'
import { aiClientIds, aiJobs, chatMessages, isAiMessage, lecternDocId, sessionFocus } from '../dist/index.js'
import { startServer, signUp, open, close, eventually } from './support.mjs'

const server = await startServer()
test.after(() => server.stop())

const PHISHING = { doc_id: 'https://evil.example/login', section: 'click me' }

/** Waits until `provider`'s socket has handled everything it sent before: the room handles
 * a socket's messages in order, so once `watcher` sees an awareness state set after those
 * messages, they have been applied (or refused). */
async function flushed (provider, watcher) {
  const marker = `flush-${Math.random()}`
  provider.awareness.setLocalStateField('marker', marker)
  await eventually(() => [...watcher.awareness.getStates().values()].some(state => state.marker === marker),
    { message: 'the awareness barrier' })
}

test('a student cannot forge the focus, AI authorship or AI clients', async () => {
  const faculty = await signUp(server, 'faculty')
  const mallory = await signUp(server, 'student')
  const victim = await signUp(server, 'student')
  const classroom = await faculty.createClassroom('Biology')
  await mallory.joinClassroom(classroom.join_code)
  await victim.joinClassroom(classroom.join_code)
  await faculty.startSession(classroom.id)
  const session = await victim.currentSession(classroom.id)
  const docs = Object.fromEntries(session.documents.map(doc => [doc.kind, doc]))
  assert.deepEqual(docs.lectern, {
    ...docs.lectern, doc_id: lecternDocId(session.id), access: 'read'
  }, 'every member may read the session lectern document, nobody writes it')

  // Mallory writes where the old server kept server-owned state (the `lectern` map of a
  // document students edit): a phishing focus, and her own client id as an AI client.
  const notes = open(mallory, docs.notes.doc_id)
  const chat = open(mallory, docs.chat.doc_id)
  await Promise.all([notes.whenSynced(), chat.whenSynced()])
  notes.doc.getMap('lectern').set('focus', PHISHING)
  const forgeRegistry = (doc, docId) => {
    const lectern = doc.getMap('lectern')
    const clients = new Y.Map()
    const jobs = new Y.Map()
    lectern.set('ai_clients', clients)
    lectern.set('ai_jobs', jobs)
    clients.set(String(chat.doc.clientID), { job_id: 'forged', kind: 'chat', doc_id: docId })
    jobs.set('forged', { kind: 'chat', status: 'done', client_id: chat.doc.clientID, started_by: 'x', doc_id: docId, clock: 1e9 })
  }
  forgeRegistry(chat.doc, docs.chat.doc_id)
  // ... and a chat message that claims to be the AI's.
  chat.doc.getArray('messages').push([new Y.Map(Object.entries({
    id: 'forged', role: 'assistant', author: 'ai', text: new Y.Text(`Log in again at ${PHISHING.doc_id}`),
    citations: new Y.Array(), status: 'done', job_id: 'forged', created_at: 1
  }))])

  // Then she writes the session's lectern document itself: refused, not applied.
  const mine = open(mallory, docs.lectern.doc_id)
  const theirs = open(victim, docs.lectern.doc_id)
  await Promise.all([mine.whenSynced(), theirs.whenSynced()])
  mine.doc.getMap('lectern').set('focus', PHISHING)
  forgeRegistry(mine.doc, docs.chat.doc_id)
  await flushed(mine, theirs)
  assert.equal(mine.accessDenied, null, 'a refused write does not close the socket')

  // The teacher moves the focus; classmates see exactly that.
  const focus = { doc_id: docs.notes.doc_id, section: 'mitosis' }
  await faculty.setFocus(session.id, focus)
  await eventually(() => sessionFocus(theirs.doc)?.section === 'mitosis', { message: 'the teacher\'s focus' })
  assert.deepEqual(sessionFocus(theirs.doc), { ...focus })
  assert.deepEqual([...aiClientIds(theirs.doc).keys()], [], 'no AI client was registered')
  assert.deepEqual([...aiJobs(theirs.doc).keys()], [])
  // A late joiner (state from the store, not from the live room) sees the same.
  const late = open(victim, docs.lectern.doc_id)
  await late.whenSynced()
  assert.deepEqual(sessionFocus(late.doc), { ...focus })
  assert.equal(aiClientIds(late.doc).size, 0)

  // The forged message reaches the class (members may write the chat), but is not the AI's.
  const victimChat = open(victim, docs.chat.doc_id)
  await victimChat.whenSynced()
  const messages = chatMessages(victimChat.doc)
  await eventually(() => messages.list().some(message => message.id === 'forged'), { message: 'the forged message' })
  const forged = messages.list().find(message => message.id === 'forged')
  assert.equal(forged.author, 'ai', 'the display field says AI...')
  assert.equal(isAiMessage(theirs.doc, docs.chat.doc_id, forged), false, '...the registry does not')
  close(notes, chat, mine, theirs, late, victimChat)
})
