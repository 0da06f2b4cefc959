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
