// Refusals and tokens of realtime documents against the real server (issue 13, SDK gaps):
// `whenSynced()` rejects with an AccessError instead of never settling, and a token
// callback is asked again for a fresh token after a 4401.
import test from 'node:test'
import assert from 'node:assert/strict'
import { AccessError, LecternClient } from '../dist/index.js'
import { startServer, signUp, open, close } from './support.mjs'

const server = await startServer()
test.after(() => server.stop())

async function liveNotes () {
  const faculty = await signUp(server, 'faculty')
  const classroom = await faculty.createClassroom('Chemistry')
  const session = await faculty.startSession(classroom.id)
  return { faculty, classroom, session, notes: session.documents.find(d => d.kind === 'notes').doc_id }
}

test('whenSynced rejects with an AccessError when access is refused (4403)', async () => {
  const { notes } = await liveNotes()
  const outsider = await signUp(server, 'student')
  const provider = open(outsider, notes)
  const error = await provider.whenSynced().catch(e => e)
  assert.ok(error instanceof AccessError, `an AccessError, not ${error}`)
  assert.equal(error.code, 4403)
  assert.equal(error.reason, 'forbidden')
  // Asked again after the refusal: rejects at once, does not hang.
  await assert.rejects(provider.whenSynced(), AccessError)
  close(provider)
})

test('whenSynced rejects with an AccessError when the token is refused (4401 after retries)', async () => {
  const { notes, faculty } = await liveNotes()
  let calls = 0
  const provider = open(faculty, notes, { token: async () => { calls++; return 'not-a-token' } })
  const error = await provider.whenSynced().catch(e => e)
  assert.ok(error instanceof AccessError, `an AccessError, not ${error}`)
  assert.equal(error.code, 4401)
  assert.equal(error.reason, 'unauthenticated')
  assert.ok(calls >= 2, `the callback was asked again after the 4401 (${calls} calls)`)
  close(provider)
})

test('a token callback is called again for a fresh token on 4401', async () => {
  const { notes, faculty } = await liveNotes()
  const tokens = ['expired-or-forged', await faculty.accessToken()]
  const given = []
  // A client with no tokens of its own (the embedder model): only the callback's token.
  const embedder = new LecternClient({ baseUrl: faculty.baseUrl, WebSocketPolyfill: faculty.WebSocketPolyfill })
  const provider = open(embedder, notes, { token: async () => { const token = tokens.shift(); given.push(token); return token } })
  await provider.whenSynced()
  assert.equal(given.length, 2, 'first token refused (4401), the second one asked for and used')
  assert.equal(provider.params.token, given[1])
  close(provider)
})

test('a fixed token string is used; refused, it ends with an AccessError', async () => {
  const { notes, faculty } = await liveNotes()
  const anonymous = new LecternClient({ baseUrl: faculty.baseUrl, WebSocketPolyfill: faculty.WebSocketPolyfill })
  const good = open(anonymous, notes, { token: await faculty.accessToken() })
  await good.whenSynced()
  const bad = open(anonymous, notes, { token: 'forged' })
  await assert.rejects(bad.whenSynced(), error => error instanceof AccessError && error.code === 4401)
  close(good, bad)
})
