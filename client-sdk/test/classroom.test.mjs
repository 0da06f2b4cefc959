// The classroom flow through the SDK against the real server: accounts, a live session,
// co-editing through openDocument, typed errors, token rotation, and access events.
import test from 'node:test'
import assert from 'node:assert/strict'
import WebSocket from 'ws'
import { LecternClient, LecternError } from '../dist/index.js'
import { startServer, signUp, open, close, eventually } from './support.mjs'

const server = await startServer()
test.after(() => server.stop())

test('faculty and a student co-edit the session notes through openDocument', async () => {
  const faculty = await signUp(server, 'faculty')
  const student = await signUp(server, 'student')
  const classroom = await faculty.createClassroom('Biology')
  assert.equal(classroom.role, 'faculty')
  assert.match(classroom.join_code, /^[2-9A-HJKMNP-Z]{8}$/)
  const joined = await student.joinClassroom(classroom.join_code.toLowerCase())
  assert.equal(joined.id, classroom.id)
  assert.equal(joined.join_code, null)
  const members = await faculty.listMembers(classroom.id)
  assert.deepEqual(members.map(m => m.role), ['faculty', 'student'])

  const session = await faculty.startSession(classroom.id)
  assert.equal(session.state, 'live')
  const current = await student.currentSession(classroom.id)
  assert.equal(current.id, session.id)
  const notes = current.documents.find(d => d.kind === 'notes')
  assert.equal(notes.access, 'write')

  const f = open(faculty, notes.doc_id)
  const s = open(student, notes.doc_id)
  await Promise.all([f.whenSynced(), s.whenSynced()])
  f.doc.getText('content').insert(0, 'Photosynthesis. ')
  s.doc.getText('content').insert(0, 'Chlorophyll. ')
  await eventually(() => f.doc.getText('content').length === 29 &&
    s.doc.getText('content').toString() === f.doc.getText('content').toString(), { message: 'convergence' })

  // Locking keeps the socket open; ending the session closes it with 4410 → 'access'.
  assert.equal((await faculty.lockSession(session.id)).state, 'locked')
  const ended = new Promise(resolve => s.on('access', event => resolve(event)))
  await faculty.endSession(session.id)
  const event = await ended
  assert.equal(event.reason, 'session_ended')
  assert.equal(event.code, 4410)
  assert.equal(s.accessDenied, event)
  close(f, s)

  // The ended session is listed for review, newest first.
  const listed = await student.listSessions(classroom.id)
  assert.deepEqual(listed.map(({ id, state }) => ({ id, state })), [{ id: session.id, state: 'ended' }])
  assert.equal(typeof listed[0].ended_at, 'number')
})

test('errors are typed LecternErrors with the documented codes', async () => {
  const faculty = await signUp(server, 'faculty')
  const student = await signUp(server, 'student')
  const classroom = await faculty.createClassroom('Chemistry')
  await student.joinClassroom(classroom.join_code)

  const stranger = new LecternClient({ baseUrl: server.http })
  await assert.rejects(stranger.login({ email: 'nobody@school.test', password: 'wrong password' }),
    error => error instanceof LecternError && error.status === 401 && error.code === 'invalid_credentials')
  await assert.rejects(student.createClassroom('Not mine'),
    error => error instanceof LecternError && error.status === 403 && error.code === 'forbidden')
  await assert.rejects(student.joinClassroom('AAAAAAAA'),
    error => error instanceof LecternError && error.status === 404 && error.code === 'invalid_join_code')
  const session = await faculty.startSession(classroom.id)
  await assert.rejects(student.lockSession(session.id), error => error.code === 'forbidden')
  await assert.rejects(faculty.startSession(classroom.id), error => error.code === 'session_already_running')
  // With --ai-backend off, AI answers 503 ai_unavailable.
  await assert.rejects(faculty.startAiJob(session.id, { kind: 'chat', prompt: 'What is ATP?' }),
    error => error instanceof LecternError && error.status === 503 && error.code === 'ai_unavailable')
  await faculty.endSession(session.id)
})

test('removing a student emits a forbidden access event on their open document', async () => {
  const faculty = await signUp(server, 'faculty')
  const student = await signUp(server, 'student')
  const classroom = await faculty.createClassroom('Physics')
  await student.joinClassroom(classroom.join_code)
  const session = await faculty.startSession(classroom.id)
  const provider = open(student, session.documents.find(d => d.kind === 'chat').doc_id)
  await provider.whenSynced()
  const denied = new Promise(resolve => provider.on('access', resolve))
  await faculty.removeMember(classroom.id, (await student.me()).id)
  assert.deepEqual((await denied).code, 4403)
  assert.equal(provider.accessDenied.reason, 'forbidden')
  close(provider)
})

test('refresh rotates tokens; concurrent callers share one refresh; reuse revokes the login', async () => {
  let refreshes = 0
  const counting = (input, init) => {
    if (String(input).endsWith('/auth/refresh')) refreshes++
    return fetch(input, init)
  }
  const saved = []
  const client = await signUp(server, 'student', { fetch: counting, onTokens: tokens => saved.push(tokens) })
  const before = client.tokens
  const [a, b] = await Promise.all([client.refresh(), client.refresh()])
  assert.equal(refreshes, 1)
  assert.equal(a.refresh_token, b.refresh_token)
  assert.notEqual(client.tokens.refreshToken, before.refreshToken)
  assert.equal(client.tokens.accessToken, a.access_token)
  assert.deepEqual(saved.at(-1), client.tokens)
  assert.equal((await client.me()).id, a.user.id)

  // Presenting the rotated-away refresh token revokes the whole family.
  const thief = new LecternClient({ baseUrl: server.http, tokens: before })
  await assert.rejects(thief.refresh(), error => error.code === 'refresh_token_reused')
  assert.equal(thief.signedIn, false)
  await assert.rejects(client.refresh(), error => error.code === 'invalid_refresh_token')
  assert.equal(client.signedIn, false)
  assert.equal(saved.at(-1), null)
})

test('a call answered 401 token_expired refreshes once and is retried', async () => {
  let expireNext = false
  const seen = []
  const flaky = async (input, init) => {
    const path = new URL(String(input)).pathname
    seen.push(path)
    if (expireNext && path === '/api/v1/me') {
      expireNext = false
      return new Response(JSON.stringify({ error: { code: 'token_expired', message: 'token expired' } }),
        { status: 401, headers: { 'content-type': 'application/json' } })
    }
    return fetch(input, init)
  }
  const client = await signUp(server, 'faculty', { fetch: flaky })
  const oldRefresh = client.tokens.refreshToken
  expireNext = true
  seen.length = 0
  const me = await client.me()
  assert.equal(me.role, 'faculty')
  assert.deepEqual(seen, ['/api/v1/me', '/api/v1/auth/refresh', '/api/v1/me'])
  // (The access token may be byte-identical when minted in the same second: compare the
  // refresh token, which is random.)
  assert.notEqual(client.tokens.refreshToken, oldRefresh)
  // Other 401s are not retried.
  const bogus = new LecternClient({ baseUrl: server.http, tokens: { accessToken: 'not.a.jwt', refreshToken: 'x' } })
  await assert.rejects(bogus.me(), error => error.code === 'invalid_token')
})

test('logout closes the login\'s sockets; the provider reports unauthenticated', async () => {
  const faculty = await signUp(server, 'faculty', { WebSocketPolyfill: WebSocket })
  const classroom = await faculty.createClassroom('History')
  const session = await faculty.startSession(classroom.id)
  const provider = open(faculty, session.documents[0].doc_id)
  await provider.whenSynced()
  const denied = new Promise(resolve => provider.on('access', resolve))
  await faculty.logout()
  const event = await denied
  assert.equal(event.reason, 'unauthenticated')
  assert.equal(faculty.signedIn, false)
  close(provider)
})
