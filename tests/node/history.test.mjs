// After class with stock clients: a note vandalised by one student is brought back to a
// kept version while stock y-websocket providers are connected (they follow the restore
// live, nothing rewritten under them), an update posted over REST reaches them, and the
// contributions report counts exactly what each typed.
import test from 'node:test'
import assert from 'node:assert/strict'
import { startServer, connect, synced, eventually, destroy, Y } from './support.mjs'

function api (server) {
  async function call (method, path, { json, bytes, token } = {}) {
    const headers = token ? { authorization: `Bearer ${token}` } : {}
    let body
    if (json !== undefined) {
      headers['content-type'] = 'application/json'
      body = JSON.stringify(json)
    } else if (bytes !== undefined) {
      headers['content-type'] = 'application/octet-stream'
      body = bytes
    }
    const response = await fetch(`${server.http}/api/v1${path}`, { method, headers, body })
    const text = await response.text()
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`)
    return text ? JSON.parse(text) : null
  }
  return {
    call,
    register: (email, role) => call('POST', '/auth/register', {
      json: { email, display_name: email, password: 'correct horse battery', role }
    })
  }
}

/** `/documents/{doc}` with the id as one segment. */
const docPath = (doc, rest = '') => `/documents/${encodeURIComponent(doc)}${rest}`

/** A stock provider on the notes' `content` text. */
function open (server, doc, token) {
  const client = connect(server, doc, { params: { token } })
  client.text = client.doc.getText('content')
  return client
}

test('a restore reaches connected stock clients live, and contributions count what each typed', async () => {
  // A short log: compaction runs during the test and must keep the history.
  const server = await startServer({ args: ['--anonymous-access', 'none', '--compact-after-updates', '2'] })
  const rest = api(server)
  const faculty = await rest.register('prof@school.test', 'faculty')
  const ann = await rest.register('ann@school.test', 'student')
  const bob = await rest.register('bob@school.test', 'student')
  const classroom = await rest.call('POST', '/classrooms', { json: { name: 'Biology' }, token: faculty.access_token })
  for (const student of [ann, bob]) {
    await rest.call('POST', '/classrooms/join', { json: { join_code: classroom.join_code }, token: student.access_token })
  }
  const session = await rest.call('POST', `/classrooms/${classroom.id}/sessions`, { json: {}, token: faculty.access_token })
  const notes = session.documents.find(doc => doc.kind === 'notes').doc_id

  const [f, a, b] = [faculty, ann, bob].map(who => open(server, notes, who.access_token))
  await Promise.all([f, a, b].map(synced))
  for (const word of ['Ann ', 'wrote ', 'this. ']) a.text.insert(a.text.length, word)
  await eventually(() => f.text.toString() === 'Ann wrote this. ', { message: 'ann typed' })
  f.text.insert(0, 'Prof: ')
  const good = 'Prof: Ann wrote this. '
  await eventually(() => [a, b].every(c => c.text.toString() === good), { message: 'prof typed' })

  const checkpoint = await rest.call('POST', docPath(notes, '/versions'),
    { json: { label: 'before group work' }, token: faculty.access_token })

  // Bob vandalises the notes.
  b.doc.transact(() => {
    b.text.delete(0, b.text.length)
    b.text.insert(0, 'JUNK')
  })
  await eventually(() => [f, a].every(c => c.text.toString() === 'JUNK'), { message: 'vandalised' })

  const restored = await rest.call('POST', docPath(notes, `/versions/${checkpoint.id}/restore`),
    { json: {}, token: faculty.access_token })
  assert.equal(restored.changed, true)
  await eventually(() => [f, a, b].every(c => c.text.toString() === good), { message: 'restored on every stock client' })
  const asWas = await rest.call('GET', docPath(notes, `/versions/${checkpoint.id}`), { token: ann.access_token })
  assert.equal(asWas.content, good)

  // A backend writes over REST; the stock clients see it.
  const backend = new Y.Doc()
  Y.applyUpdate(backend, new Uint8Array(await (await fetch(`${server.http}/api/v1${docPath(notes, '?format=update')}`,
    { headers: { authorization: `Bearer ${faculty.access_token}` } })).arrayBuffer()))
  const before = Y.encodeStateVector(backend)
  backend.getText('content').insert(backend.getText('content').length, 'Graded.')
  await rest.call('POST', docPath(notes, '/update'),
    { bytes: Y.encodeStateAsUpdate(backend, before), token: faculty.access_token })
  await eventually(() => [f, a, b].every(c => c.text.toString() === `${good}Graded.`), { message: 'REST update reached the clients' })

  const report = await rest.call('GET', `/sessions/${session.id}/contributions`, { token: faculty.access_token })
  const row = who => report.people.find(person => person.user_id === who.user.id)
  assert.equal(row(ann).inserted, 'Ann wrote this. '.length)
  assert.equal(row(ann).deleted, 0)
  assert.equal(row(bob).inserted, 'JUNK'.length)
  assert.equal(row(bob).deleted, good.length)
  assert.equal(row(faculty).inserted, 'Prof: '.length + 'Graded.'.length)
  destroy(f, a, b)
  await server.stop()
})
