// The read-only state of realtime documents against the real server (issue 13, SDK gaps):
// `readOnly` and the `'read-only'` event, and no document updates sent while read-only
// (the server would drop them); what was typed meanwhile is sent once writable again.
import test from 'node:test'
import assert from 'node:assert/strict'
import { LecternClient, lecternDocId } from '../dist/index.js'
import { startServer, signUp, open, close, eventually } from './support.mjs'

const API_KEY = 'sdk-test-api-key-0123456789abcdef'
const server = await startServer({ env: { LECTERN_API_KEY: API_KEY } })
test.after(() => server.stop())

/** Counts the y-sync update messages (type 0, step 2) `provider` sends on its sockets. */
function countUpdatesSent (provider) {
  const counter = { updates: 0 }
  const patch = () => {
    const ws = provider.ws
    if (ws === null || ws.__counted) return
    ws.__counted = true
    const send = ws.send.bind(ws)
    ws.send = (data, ...rest) => {
      const bytes = new Uint8Array(data)
      if (bytes[0] === 0 && bytes[1] === 2) counter.updates++
      return send(data, ...rest)
    }
  }
  patch()
  provider.on('status', patch)
  return counter
}

async function liveSession () {
  const faculty = await signUp(server, 'faculty')
  const student = await signUp(server, 'student')
  const classroom = await faculty.createClassroom('Physics')
  await student.joinClassroom(classroom.join_code)
  const session = await faculty.startSession(classroom.id)
  return { faculty, student, session, notes: session.documents.find(d => d.kind === 'notes').doc_id }
}

test('a read document token makes the provider read-only: edits stay local', async () => {
  const { faculty, notes } = await liveSession()
  const embedder = new LecternClient({ baseUrl: server.http, WebSocketPolyfill: faculty.WebSocketPolyfill })
  const { token } = await embedder.createDocToken(API_KEY, { doc: notes, access: 'read' })
  const reader = open(embedder, notes, { token })
  const writer = open(faculty, notes)
  await Promise.all([reader.whenSynced(), writer.whenSynced()])
  assert.equal(reader.readOnly, true)
  assert.equal(writer.readOnly, false)
  const sent = countUpdatesSent(reader)
  reader.doc.getText('content').insert(0, 'dropped by the server anyway')
  writer.doc.getText('content').insert(0, 'from the writer')
  await eventually(() => reader.doc.getText('content').toString().includes('from the writer'), { message: 'the writer\'s edit' })
  assert.equal(sent.updates, 0, 'a read-only client sends no document updates')
  close(reader, writer)
})

test('the session lectern document is read-only for everyone, faculty too', async () => {
  const { faculty, session } = await liveSession()
  const provider = open(faculty, lecternDocId(session.id))
  await provider.whenSynced()
  assert.equal(provider.readOnly, true)
  close(provider)
})

test('setReadOnly on lock and unlock: typed while locked is sent at unlock; events report each change', async () => {
  const { faculty, student, session, notes } = await liveSession()
  const f = open(faculty, notes)
  const s = open(student, notes)
  await Promise.all([f.whenSynced(), s.whenSynced()])
  const events = []
  s.on('read-only', readOnly => events.push(readOnly))
  const sent = countUpdatesSent(s)

  await faculty.lockSession(session.id)
  s.setReadOnly(true) // the app learnt of the lock (the server does not announce it)
  s.doc.getText('content').insert(0, 'typed while locked')
  assert.equal(sent.updates, 0, 'nothing sent while read-only')

  await faculty.unlockSession(session.id)
  s.setReadOnly(false)
  await eventually(() => f.doc.getText('content').toString() === 'typed while locked', { message: 'the lock-time edit after unlock' })
  assert.deepEqual(events, [true, false])
  close(f, s)
})

test('an ended session (4410) makes the provider read-only, and whenSynced rejects', async () => {
  const { faculty, student, session, notes } = await liveSession()
  const s = open(student, notes)
  await s.whenSynced()
  const events = []
  s.on('read-only', readOnly => events.push(readOnly))
  await faculty.endSession(session.id)
  await eventually(() => s.accessDenied !== null, { message: 'the 4410' })
  assert.equal(s.accessDenied.code, 4410)
  assert.equal(s.readOnly, true)
  assert.deepEqual(events, [true])
  await assert.rejects(s.whenSynced(), error => error.code === 4410 && error.reason === 'session_ended')
  // Reopened for the read-only review: still read-only, syncs.
  s.connect()
  await s.whenSynced()
  assert.equal(s.readOnly, true)
  close(s)
})
