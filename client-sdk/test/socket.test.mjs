// Many documents on one socket (the multiplexed `GET /ws` endpoint) against the real server
// (issue 13, SDK gaps): one WebSocket for a session page, a refused document that does not
// disturb the others, AI control messages, and the token expiring under all of them.
import test from 'node:test'
import assert from 'node:assert/strict'
import WebSocket from 'ws'
import { AccessError, LecternError, LecternSocket } from '../dist/index.js'
import { startServer, signUp, open, close, eventually } from './support.mjs'

/** The `ws` WebSocket, counting the sockets made. */
function countingWebSocket () {
  const made = []
  class Counted extends WebSocket {
    constructor (...args) {
      super(...args)
      made.push(this)
    }
  }
  return { Counted, made }
}

async function liveSession (server) {
  const faculty = await signUp(server, 'faculty')
  const student = await signUp(server, 'student')
  const classroom = await faculty.createClassroom('Geography')
  await student.joinClassroom(classroom.join_code)
  const session = await faculty.startSession(classroom.id)
  const doc = kind => session.documents.find(d => d.kind === kind).doc_id
  return { faculty, student, session, notes: doc('notes'), chat: doc('chat'), lectern: doc('lectern') }
}

test('one socket carries several documents; a refused one leaves the others alone; AI control replies', async () => {
  const server = await startServer()
  try {
    const { faculty, student, session, notes, chat, lectern } = await liveSession(server)
    const { Counted, made } = countingWebSocket()
    const socket = new LecternSocket(student, { WebSocketPolyfill: Counted })
    const sNotes = socket.open(notes)
    const sChat = socket.open(chat)
    const sLectern = socket.open(lectern)
    await Promise.all([sNotes.whenSynced(), sChat.whenSynced(), sLectern.whenSynced()])
    assert.equal(made.length, 1, 'one WebSocket for three documents')
    assert.equal(sLectern.readOnly, true)

    const fNotes = open(faculty, notes)
    const fChat = open(faculty, chat)
    await Promise.all([fNotes.whenSynced(), fChat.whenSynced()])
    sNotes.doc.getText('content').insert(0, 'notes over the shared socket')
    fChat.doc.getArray('messages').push(['hello'])
    await eventually(() => fNotes.doc.getText('content').toString() === 'notes over the shared socket', { message: 'the student\'s notes edit' })
    await eventually(() => sChat.doc.getArray('messages').length === 1, { message: 'the faculty\'s chat edit' })

    // A document of another class: refused (101 · 4403) on the same socket.
    const other = await liveSession(server)
    const refused = socket.open(other.notes)
    await assert.rejects(refused.whenSynced(), error => error instanceof AccessError && error.code === 4403)
    sNotes.doc.getText('content').insert(0, 'still here: ')
    await eventually(() => fNotes.doc.getText('content').toString().startsWith('still here: '), { message: 'an edit after the refusal' })

    // AI control messages (the server runs without AI): a typed error, in a reply to us.
    await assert.rejects(socket.startAiJob(chat, session.id, { kind: 'chat', prompt: 'hi' }),
      error => error instanceof LecternError && error.code === 'ai_unavailable' && error.status === 0)
    await assert.rejects(socket.getAiJob(chat, '00000000-0000-0000-0000-000000000000'),
      error => error instanceof LecternError && error.code === 'not_found')
    assert.equal(made.length, 1, 'still one WebSocket')
    socket.destroy()
    for (const provider of [sNotes, sChat, sLectern, refused]) provider.doc.destroy()
    close(fNotes, fChat)
  } finally {
    await server.stop()
  }
})

test('the shared socket survives access-token expiry: one refresh, every document back', async () => {
  const server = await startServer({ args: ['--access-token-ttl-secs', '2'] })
  try {
    const { faculty, student, notes, chat } = await liveSession(server)
    const { Counted, made } = countingWebSocket()
    const socket = new LecternSocket(student, { WebSocketPolyfill: Counted })
    const sNotes = socket.open(notes, { maxBackoffTime: 200 })
    const sChat = socket.open(chat, { maxBackoffTime: 200 })
    await Promise.all([sNotes.whenSynced(), sChat.whenSynced()])
    const closes = []
    made[0].on('close', code => closes.push(code))
    await eventually(() => closes.includes(4401), { timeoutMs: 5000, message: 'the 4401 at expiry' })
    await eventually(() => made.length === 2 && sNotes.synced && sChat.synced, { timeoutMs: 5000, message: 'both documents back on a new socket' })
    const fNotes = open(faculty, notes)
    await fNotes.whenSynced()
    sNotes.doc.getText('content').insert(0, 'after expiry')
    await eventually(() => fNotes.doc.getText('content').toString() === 'after expiry', { message: 'an edit after the reconnect' })
    assert.equal(made.length, 2, 'one new socket for both documents')
    socket.destroy()
    for (const provider of [sNotes, sChat]) provider.doc.destroy()
    close(fNotes)
  } finally {
    await server.stop()
  }
})
