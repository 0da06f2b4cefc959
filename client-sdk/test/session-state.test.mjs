// The session's state and its handouts, pushed by the server into the session's `lectern`
// document: a page learns of a lock, an unlock, a handout and the end without asking the
// API again (`sessionState`/`onSessionState`, `sessionHandouts`/`onHandouts`).
import test from 'node:test'
import assert from 'node:assert/strict'
import { lecternDocId, onHandouts, onSessionState, sessionHandouts, sessionState } from '../dist/index.js'
import { startServer, signUp, open, close, eventually } from './support.mjs'

const server = await startServer()
test.after(() => server.stop())

test('a student sees lock, unlock, a handout and the end as they happen', async () => {
  const faculty = await signUp(server, 'faculty')
  const student = await signUp(server, 'student')
  const classroom = await faculty.createClassroom('Chemistry')
  await student.joinClassroom(classroom.join_code)
  const session = await faculty.startSession(classroom.id)

  const lectern = open(student, lecternDocId(session.id), { readOnly: true })
  await lectern.whenSynced()
  assert.equal(sessionState(lectern.doc), 'live')
  const states = []
  const stopStates = onSessionState(lectern.doc, state => states.push(state))
  const handouts = []
  const stopHandouts = onHandouts(lectern.doc, next => handouts.push(next))

  await faculty.lockSession(session.id)
  await eventually(() => sessionState(lectern.doc) === 'locked', { message: 'locked' })
  await faculty.unlockSession(session.id)
  await eventually(() => sessionState(lectern.doc) === 'live', { message: 'live again' })
  assert.deepEqual(states, ['locked', 'live'])

  const template = await faculty.createTemplate(classroom.id)
  await faculty.handOut(session.id, template.doc_id)
  await eventually(() => sessionHandouts(lectern.doc).has(template.doc_id), { message: 'the handout' })
  const at = sessionHandouts(lectern.doc).get(template.doc_id)
  assert.ok(Math.abs(at - Date.now() / 1000) < 60, `a unix time: ${at}`)
  assert.equal(handouts.length, 1)
  // The student's fork is listed by the session, as the handout said.
  const mine = await student.getSession(session.id)
  assert.equal(mine.documents.filter(document => document.kind === 'fork').length, 1)
  // A second template changes the nested map only: still reported.
  const second = await faculty.createTemplate(classroom.id)
  await faculty.handOut(session.id, second.doc_id)
  await eventually(() => handouts.length === 2, { message: 'the second handout' })
  assert.deepEqual([...handouts[1].keys()].sort(), [template.doc_id, second.doc_id].sort())

  // Ended: written before the sockets close, so the open document has it.
  await faculty.endSession(session.id)
  await eventually(() => sessionState(lectern.doc) === 'ended', { message: 'ended' })
  assert.deepEqual(states, ['locked', 'live', 'ended'])
  stopStates()
  stopHandouts()
  close(lectern)
})
