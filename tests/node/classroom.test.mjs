// End-to-end: the live-session flow with stock y-websocket clients passing tokens, against
// the real lectern binary and its REST API. Close codes are documented in docs/protocol.md.
import test from 'node:test'
import assert from 'node:assert/strict'
import { startServer, connect, synced, eventually, destroy, rawSocket, closed, WebSocket } from './support.mjs'

/** A tiny JSON client for /api/v1. */
function api (server) {
  async function call (method, path, body, token) {
    const response = await fetch(`${server.http}/api/v1${path}`, {
      method,
      headers: {
        'content-type': 'application/json',
        ...(token ? { authorization: `Bearer ${token}` } : {})
      },
      body: body === undefined ? undefined : JSON.stringify(body)
    })
    const text = await response.text()
    const json = text ? JSON.parse(text) : null
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`)
    return json
  }
  return {
    post: (path, body, token) => call('POST', path, body ?? {}, token),
    get: (path, token) => call('GET', path, undefined, token),
    register: (email, role) =>
      call('POST', '/auth/register', { email, display_name: email, password: 'correct horse battery', role })
  }
}

/** Resolves with the close code of the provider's next connection close. */
function nextClose (client) {
  return new Promise(resolve => {
    client.provider.once('connection-close', event => resolve(event?.code))
  })
}

test('a class co-edits with tokens; lock refuses student edits; end closes with 4410', async () => {
  const server = await startServer({ args: ['--anonymous-access', 'none'] })
  const rest = api(server)
  const faculty = await rest.register('prof@school.test', 'faculty')
  const ann = await rest.register('ann@school.test', 'student')
  const bob = await rest.register('bob@school.test', 'student')
  const outsider = await rest.register('eve@school.test', 'student')
  const classroom = await rest.post('/classrooms', { name: 'Biology' }, faculty.access_token)
  for (const student of [ann, bob]) {
    await rest.post('/classrooms/join', { join_code: classroom.join_code }, student.access_token)
  }
  const session = await rest.post(`/classrooms/${classroom.id}/sessions`, {}, faculty.access_token)
  const notes = session.documents.find(doc => doc.kind === 'notes').doc_id

  // All three co-edit through stock providers that pass their token as a query parameter.
  const [f, a, b] = [faculty, ann, bob].map(who =>
    connect(server, notes, { params: { token: who.access_token } }))
  await Promise.all([f, a, b].map(synced))
  f.text.insert(0, 'Photosynthesis. ')
  a.text.insert(0, 'Ann: chlorophyll. ')
  b.text.insert(0, 'Bob: light. ')
  await eventually(() => [a, b].every(c => c.text.toString() === f.text.toString()) &&
    f.text.length === 'Photosynthesis. Ann: chlorophyll. Bob: light. '.length, { message: 'co-editing' })

  // A tokenless client and a non-member are refused with documented codes.
  const anonymous = await rawSocket(`${server.ws}/${notes}`)
  assert.equal((await closed(anonymous)).code, 4401)
  const stranger = await rawSocket(`${server.ws}/${notes}?token=${outsider.access_token}`)
  assert.equal((await closed(stranger)).code, 4403)
  const forged = await rawSocket(`${server.ws}/${notes}?token=${ann.access_token.slice(0, -4)}AAAA`)
  assert.equal((await closed(forged)).code, 4401)

  // Removing a student from the class closes their open sockets with 4403 at once.
  const extra = await rest.register('zoe@school.test', 'student')
  await rest.post('/classrooms/join', { join_code: classroom.join_code }, extra.access_token)
  const z = connect(server, notes, { params: { token: extra.access_token } })
  await synced(z)
  const removed = nextClose(z)
  z.provider.shouldConnect = false
  const response = await fetch(`${server.http}/api/v1/classrooms/${classroom.id}/members/${extra.user.id}`,
    { method: 'DELETE', headers: { authorization: `Bearer ${faculty.access_token}` } })
  assert.ok(response.ok, `remove member: ${response.status}`)
  assert.equal(await removed, 4403)
  destroy(z)

  // Lock: Ann's edit stays local to her and never reaches the others.
  await rest.post(`/sessions/${session.id}/lock`, {}, faculty.access_token)
  a.text.insert(0, 'LOCKED-OUT ')
  f.text.insert(f.text.length, 'Teacher continues.')
  await eventually(() => b.text.toString().includes('Teacher continues.') &&
    a.text.toString().includes('Teacher continues.'), { message: 'teacher edit after lock' })
  assert.ok(!f.text.toString().includes('LOCKED-OUT'), 'a locked student edit reached faculty')
  assert.ok(!b.text.toString().includes('LOCKED-OUT'), 'a locked student edit reached a student')

  // End: every socket closes with 4410.
  const codes = Promise.all([f, a, b].map(nextClose))
  for (const client of [f, a, b]) client.provider.shouldConnect = false
  await rest.post(`/sessions/${session.id}/end`, {}, faculty.access_token)
  assert.deepEqual(await codes, [4410, 4410, 4410])
  destroy(f, a, b)

  // The notes stay readable for review.
  const review = connect(server, notes, { params: { token: bob.access_token } })
  await synced(review)
  assert.ok(review.text.toString().includes('Teacher continues.'))
  destroy(review)
  await server.stop()
})

test('a token passed as a bearer subprotocol works and the server selects `lectern`', async () => {
  const server = await startServer({ args: ['--anonymous-access', 'none'] })
  const rest = api(server)
  const faculty = await rest.register('prof@school.test', 'faculty')
  const classroom = await rest.post('/classrooms', { name: 'Chemistry' }, faculty.access_token)
  const session = await rest.post(`/classrooms/${classroom.id}/sessions`, {}, faculty.access_token)
  const chat = session.documents.find(doc => doc.kind === 'chat').doc_id
  const socket = new WebSocket(`${server.ws}/${chat}`, ['lectern', `bearer.${faculty.access_token}`])
  const firstMessage = new Promise(resolve => socket.once('message', resolve))
  await new Promise((resolve, reject) => { socket.once('open', resolve); socket.once('error', reject) })
  assert.equal(socket.protocol, 'lectern')
  // The server greets an admitted client with its sync step 1 (message type 0, sync 0).
  const greeting = new Uint8Array(await firstMessage)
  assert.deepEqual([...greeting.slice(0, 2)], [0, 0])
  socket.close()
  await server.stop()
})

test('handouts: each student edits a copy of the template that other students cannot open', async () => {
  const server = await startServer({ args: ['--anonymous-access', 'none'] })
  const rest = api(server)
  const faculty = await rest.register('prof@school.test', 'faculty')
  const ann = await rest.register('ann@school.test', 'student')
  const bob = await rest.register('bob@school.test', 'student')
  const classroom = await rest.post('/classrooms', { name: 'Physics' }, faculty.access_token)
  for (const student of [ann, bob]) {
    await rest.post('/classrooms/join', { join_code: classroom.join_code }, student.access_token)
  }
  const template = await rest.post(`/classrooms/${classroom.id}/templates`, {}, faculty.access_token)
  const author = connect(server, template.doc_id, { params: { token: faculty.access_token } })
  await synced(author)
  author.text.insert(0, 'Worksheet: measure g.')
  // The template is written before it is handed out: read it back through a second client.
  const check = connect(server, template.doc_id, { params: { token: faculty.access_token } })
  await eventually(() => check.text.toString() === 'Worksheet: measure g.', { message: 'template saved' })
  destroy(author, check)

  const session = await rest.post(`/classrooms/${classroom.id}/sessions`, {}, faculty.access_token)
  await rest.post(`/sessions/${session.id}/handouts`, { template_doc_id: template.doc_id }, faculty.access_token)
  const annView = await rest.get(`/sessions/${session.id}`, ann.access_token)
  const annFork = annView.documents.find(doc => doc.kind === 'fork')
  assert.equal(annFork.owner_user_id, ann.user.id)

  const mine = connect(server, annFork.doc_id, { params: { token: ann.access_token } })
  await synced(mine)
  assert.equal(mine.text.toString(), 'Worksheet: measure g.')
  mine.text.insert(mine.text.length, ' Ann: 9.8')
  const teacher = connect(server, annFork.doc_id, { params: { token: faculty.access_token } })
  await eventually(() => teacher.text.toString() === 'Worksheet: measure g. Ann: 9.8', { message: 'faculty sees the fork' })

  const peek = await rawSocket(`${server.ws}/${annFork.doc_id}?token=${bob.access_token}`)
  assert.equal((await closed(peek)).code, 4403)

  // Follow the teacher: the focus lands in the session's server-owned `lectern` document,
  // which every member may read (and nobody may write).
  const notesDoc = session.documents.find(doc => doc.kind === 'notes').doc_id
  const bobView = await rest.get(`/sessions/${session.id}`, bob.access_token)
  const lecternDoc = bobView.documents.find(doc => doc.kind === 'lectern')
  assert.deepEqual([lecternDoc.doc_id, lecternDoc.access], [`session/${session.id}/lectern`, 'read'])
  const follower = connect(server, lecternDoc.doc_id, { params: { token: bob.access_token } })
  await synced(follower)
  const focus = { doc_id: notesDoc, section: 'results' }
  const response = await fetch(`${server.http}/api/v1/sessions/${session.id}/focus`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${faculty.access_token}` },
    body: JSON.stringify(focus)
  })
  assert.ok(response.ok, `focus: ${response.status}`)
  await eventually(() => follower.doc.getMap('lectern').get('focus')?.section === 'results', { message: 'focus to arrive' })
  destroy(mine, teacher, follower)
  await server.stop()
})

test('a socket closes with 4401 when its token expires', async () => {
  const server = await startServer({ args: ['--anonymous-access', 'none', '--access-token-ttl-secs', '1'] })
  const rest = api(server)
  const faculty = await rest.register('prof@school.test', 'faculty')
  const classroom = await rest.post('/classrooms', { name: 'History' }, faculty.access_token)
  const session = await rest.post(`/classrooms/${classroom.id}/sessions`, {}, faculty.access_token)
  const notes = session.documents.find(doc => doc.kind === 'notes').doc_id
  const socket = await rawSocket(`${server.ws}/${notes}?token=${faculty.access_token}`)
  const started = Date.now()
  const { code } = await closed(socket)
  assert.equal(code, 4401)
  assert.ok(Date.now() - started < 3000, 'closed within a second of expiry')
  await server.stop()
})

test('signing out closes that login\'s sockets with 4401 and refuses its tokens', async () => {
  const server = await startServer({ args: ['--anonymous-access', 'none'] })
  const rest = api(server)
  const faculty = await rest.register('prof@school.test', 'faculty')
  const classroom = await rest.post('/classrooms', { name: 'Art' }, faculty.access_token)
  const session = await rest.post(`/classrooms/${classroom.id}/sessions`, {}, faculty.access_token)
  const notes = session.documents.find(doc => doc.kind === 'notes').doc_id
  // A second login (another device) of the same account is not signed out.
  const otherDevice = await rest.post('/auth/login', { email: 'prof@school.test', password: 'correct horse battery' })

  const laptop = await rawSocket(`${server.ws}/${notes}?token=${faculty.access_token}`)
  const phone = connect(server, notes, { params: { token: otherDevice.access_token } })
  await synced(phone)
  const laptopClosed = closed(laptop)
  await rest.post('/auth/logout', { refresh_token: faculty.refresh_token })
  assert.equal((await laptopClosed).code, 4401)
  const again = await rawSocket(`${server.ws}/${notes}?token=${faculty.access_token}`)
  assert.equal((await closed(again)).code, 4401)

  phone.text.insert(0, 'still connected')
  const check = connect(server, notes, { params: { token: otherDevice.access_token } })
  await eventually(() => check.text.toString() === 'still connected', { message: 'other device unaffected' })
  destroy(phone, check)
  await server.stop()
})
