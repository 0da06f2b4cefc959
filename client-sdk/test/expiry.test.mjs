// Access tokens that expire while a document is open: the server closes the socket with
// 4401 at expiry, and the provider renews the token and reconnects on its own.
import test from 'node:test'
import assert from 'node:assert/strict'
import { startServer, signUp, open, close, eventually } from './support.mjs'

test('an open document survives access-token expiry (4401 → refresh → reconnect)', async () => {
  const server = await startServer({ args: ['--access-token-ttl-secs', '2'] })
  try {
    const faculty = await signUp(server, 'faculty')
    const student = await signUp(server, 'student')
    const classroom = await faculty.createClassroom('Maths')
    await student.joinClassroom(classroom.join_code)
    const session = await faculty.startSession(classroom.id)
    const notes = session.documents.find(d => d.kind === 'notes').doc_id
    const f = open(faculty, notes)
    const s = open(student, notes)
    await Promise.all([f.whenSynced(), s.whenSynced()])
    const firstRefresh = student.tokens.refreshToken
    const closes = []
    s.on('connection-close', event => closes.push(event?.code))
    const denied = []
    s.on('access', event => denied.push(event))

    await eventually(() => closes.includes(4401), { timeoutMs: 5000, message: 'the 4401 at expiry' })
    await eventually(() => s.synced && s.params.token === student.tokens.accessToken, { timeoutMs: 5000, message: 'resync with a new token' })
    assert.notEqual(student.tokens.refreshToken, firstRefresh, 'the refresh token was rotated')

    s.doc.getText('content').insert(0, 'after expiry')
    await eventually(() => f.doc.getText('content').toString() === 'after expiry', { timeoutMs: 5000, message: 'edit after reconnect' })
    assert.deepEqual(denied, [])
    close(f, s)
  } finally {
    await server.stop()
  }
})
