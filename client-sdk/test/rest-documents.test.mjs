// A document's content over REST (`getDocument`, `getDocumentMarkdown`,
// `getDocumentUpdate`) against the real server: what a socket wrote, read back as JSON,
// Markdown and a Yjs update, and as a diff against a replica's state vector.
import test from 'node:test'
import assert from 'node:assert/strict'
import * as Y from 'yjs'
import { LecternError } from '../dist/index.js'
import { startServer, signUp, open, close, eventually } from './support.mjs'

const server = await startServer()
test.after(() => server.stop())

test('a document written over the socket reads back as JSON, Markdown and a Yjs update', async () => {
  const faculty = await signUp(server, 'faculty')
  const stranger = await signUp(server, 'student')
  const classroom = await faculty.createClassroom('Biology')
  const session = await faculty.startSession(classroom.id)
  const notes = session.documents.find(d => d.kind === 'notes').doc_id
  const writer = open(faculty, notes)
  await writer.whenSynced()
  writer.doc.getText('content').insert(0, '# Cells\n\nMitochondria make ATP.')
  await eventually(() => writer.saved, { message: 'saved' })

  assert.deepEqual(await faculty.getDocument(notes), { content: '# Cells\n\nMitochondria make ATP.' })
  assert.equal(await faculty.getDocumentMarkdown(notes), '# Cells\n\nMitochondria make ATP.')

  const replica = new Y.Doc()
  Y.applyUpdate(replica, await faculty.getDocumentUpdate(notes))
  assert.equal(replica.getText('content').toString(), writer.doc.getText('content').toString())

  writer.doc.getText('content').insert(0, 'Biology. ')
  await eventually(() => writer.saved, { message: 'saved again' })
  const diff = await faculty.getDocumentUpdate(notes, Y.encodeStateVector(replica))
  Y.applyUpdate(replica, diff)
  assert.equal(replica.getText('content').toString(), 'Biology. # Cells\n\nMitochondria make ATP.')

  await assert.rejects(stranger.getDocument(notes),
    error => error instanceof LecternError && error.status === 403 && error.code === 'forbidden')
  close(writer)
})

test('an update posted over REST reaches a connected provider; versions are kept and restored', async () => {
  const faculty = await signUp(server, 'faculty')
  const student = await signUp(server, 'student')
  const classroom = await faculty.createClassroom('Chemistry')
  await student.joinClassroom(classroom.join_code)
  const session = await faculty.startSession(classroom.id)
  const notes = session.documents.find(d => d.kind === 'notes').doc_id
  const watcher = open(student, notes)
  await watcher.whenSynced()

  const backend = new Y.Doc()
  Y.applyUpdate(backend, await faculty.getDocumentUpdate(notes))
  const before = Y.encodeStateVector(backend)
  backend.getText('content').insert(0, 'Acids donate protons.')
  assert.deepEqual(await faculty.postDocumentUpdate(notes, Y.encodeStateAsUpdate(backend, before)), { applied: true })
  await eventually(() => watcher.doc.getText('content').toString() === 'Acids donate protons.', { message: 'posted update seen' })
  await assert.rejects(student.postDocumentUpdate(notes, new Uint8Array([0xff, 0xff, 0xff])),
    error => error instanceof LecternError && error.status === 422 && error.code === 'update_refused')

  const kept = await faculty.checkpoint(notes, 'definitions')
  assert.equal(kept.label, 'definitions')
  assert.equal(kept.reason, 'checkpoint')
  await assert.rejects(student.checkpoint(notes),
    error => error instanceof LecternError && error.status === 403)
  watcher.doc.getText('content').insert(0, 'NOISE ')
  await eventually(() => watcher.saved, { message: 'noise saved' })
  const versions = await student.listVersions(notes)
  assert.ok(versions.some(v => v.id === kept.id))
  assert.deepEqual(await student.getVersion(notes, kept.id), { content: 'Acids donate protons.' })

  const restored = await faculty.restoreVersion(notes, kept.id)
  assert.equal(restored.changed, true)
  await eventually(() => watcher.doc.getText('content').toString() === 'Acids donate protons.', { message: 'restored live' })

  const report = await faculty.getContributions(session.id)
  const me = await student.me()
  const mine = report.people.find(person => person.user_id === me.id)
  assert.equal(mine.inserted, 'NOISE '.length)
  assert.match(await faculty.getContributionsCsv(session.id), /^user_id,display_name,author,doc_id/)
  close(watcher)
})
