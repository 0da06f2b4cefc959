// The user's inbox through the SDK against the real server (issue #14): notifications
// arrive live in `user/{id}/inbox`, the typed reader skips junk, items are marked read
// over REST, only its user opens it, and the email opt-out round-trips.
import test from 'node:test'
import assert from 'node:assert/strict'
import * as Y from 'yjs'
import { AccessError, inbox, inboxDocId } from '../dist/index.js'
import { startServer, signUp, open, close, eventually } from './support.mjs'

const server = await startServer()
test.after(() => server.stop())

test('session starts and handouts arrive live in the inbox and are marked read', async () => {
  const faculty = await signUp(server, 'faculty')
  const student = await signUp(server, 'student')
  const classmate = await signUp(server, 'student')
  const classroom = await faculty.createClassroom('Geology')
  await student.joinClassroom(classroom.join_code)
  await classmate.joinClassroom(classroom.join_code)
  const me = await student.me()

  const provider = open(student, inboxDocId(me.id))
  await provider.whenSynced()
  const view = inbox(provider.doc)
  assert.deepEqual(view.list(), [])

  const session = await faculty.startSession(classroom.id)
  await eventually(() => view.list().length === 1, { message: 'the session start' })
  const [started] = view.list()
  assert.equal(started.kind, 'session_started')
  assert.equal(started.session_id, session.id)
  assert.equal(started.classroom_id, classroom.id)
  assert.match(started.title, /Geology/)
  assert.equal(started.read, false)
  assert.ok(started.created_at > 1e12, 'milliseconds')

  const template = await faculty.createTemplate(classroom.id)
  const handout = await faculty.handOut(session.id, template.doc_id)
  const mine = handout.forks.find(fork => fork.owner_user_id === me.id)
  await eventually(() => view.list().length === 2, { message: 'the handout' })
  assert.equal(view.list()[1].kind, 'handout')
  assert.equal(view.list()[1].doc_id, mine.doc_id, 'names the student\'s own copy')
  assert.equal(view.unreadCount(), 2)

  // Junk in the array (a plain value, a map of an unknown kind) is skipped by the reader.
  const junk = new Y.Doc()
  junk.getArray('items').push(['junk', new Y.Map([['id', 'x'], ['kind', 'mystery'], ['title', 't'], ['classroom_id', 'c']]), new Y.Map([['id', 'y'], ['kind', 'handout'], ['title', 't'], ['classroom_id', 'c'], ['created_at', 'soon']])])
  assert.deepEqual(inbox(junk).list(), [{ id: 'y', kind: 'handout', title: 't', classroom_id: 'c', created_at: 0, read: false }])

  await student.markInboxRead([started.id])
  await eventually(() => view.unreadCount() === 1, { message: 'one read' })
  assert.equal(view.list()[0].read, true)
  await student.markInboxRead('all')
  await eventually(() => view.unreadCount() === 0, { message: 'all read' })
  close(provider)
})

test('only its user opens an inbox', async () => {
  const student = await signUp(server, 'student')
  const other = await signUp(server, 'student')
  const me = await student.me()
  const provider = open(other, inboxDocId(me.id))
  const error = await provider.whenSynced().catch(e => e)
  assert.ok(error instanceof AccessError, `an AccessError, not ${error}`)
  assert.equal(error.code, 4403)
  close(provider)
})

test('the email opt-out round-trips', async () => {
  const student = await signUp(server, 'student')
  assert.deepEqual(await student.getNotificationSettings(), { email: true })
  assert.deepEqual(await student.setNotificationSettings({ email: false }), { email: false })
  assert.deepEqual(await student.getNotificationSettings(), { email: false })
})
