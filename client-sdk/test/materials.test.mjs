// Course material through the SDK: upload a small text file, watch the classroom feed
// document until it is ready, search it, read its passages and bytes, delete it.
// Needs the embedding model in LECTERN_TEST_MODELS_DIR (scripts/test.sh prepares it).
import test from 'node:test'
import assert from 'node:assert/strict'
import { LecternError, materialsFeed, materialsFeedDocId } from '../dist/index.js'
import { startServer, signUp, open, close, eventually } from './support.mjs'

const TEXT = `Mitochondria are the powerhouse of the cell. They make ATP through the electron transport chain.

Chloroplasts capture light energy in plants and turn it into sugar by photosynthesis.
`

test('upload → feed reaches ready → search finds the passage → delete', async () => {
  const server = await startServer()
  try {
    const faculty = await signUp(server, 'faculty')
    const student = await signUp(server, 'student')
    const classroom = await faculty.createClassroom('Biology')
    await student.joinClassroom(classroom.join_code)

    const progress = []
    const material = await student.uploadMaterial(classroom.id,
      new File([TEXT], 'cells.txt', { type: 'text/plain' }), undefined, { onProgress: fraction => progress.push(fraction) })
    // Node has no XMLHttpRequest: progress is reported once, when the upload is accepted.
    assert.deepEqual(progress, [1])
    assert.equal(material.format, 'text')
    assert.equal(material.file_name, 'cells.txt')
    assert.equal(material.feed_doc_id, `classroom/${classroom.id}/materials`)
    assert.equal(materialsFeedDocId(classroom.id), material.feed_doc_id)

    const provider = open(faculty, material.feed_doc_id)
    const feed = materialsFeed(provider.doc)
    const statuses = new Set()
    const unsubscribe = feed.subscribe(materials => {
      for (const m of materials) if (m.id === material.id) statuses.add(m.status)
    })
    const ready = await feed.waitFor(material.id, undefined, { timeoutMs: 20000 })
    unsubscribe()
    assert.equal(ready.status, 'ready', ready.error)
    assert.ok(ready.chunk_count >= 1)
    assert.equal(ready.uploaded_by, (await student.me()).id)

    const { hits } = await student.search(classroom.id, { query: 'how do cells make energy?', k: 3 })
    assert.ok(hits.length >= 1)
    assert.equal(hits[0].material_id, material.id)
    assert.equal(hits[0].file_name, 'cells.txt')
    assert.match(hits[0].text, /Mitochondria/)
    assert.equal(typeof hits[0].score, 'number')

    const chunks = await faculty.materialChunks(material.id)
    assert.equal(chunks[0].ordinal, 0)
    const download = await faculty.downloadMaterial(material.id)
    assert.equal(await download.text(), TEXT)
    assert.equal(faculty.materialContentUrl(material.id), `${server.http}/api/v1/materials/${material.id}/content`)
    assert.deepEqual((await faculty.listMaterials(classroom.id)).map(m => m.id), [material.id])

    // A binary file is refused by its bytes, whatever its name.
    const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52])
    await assert.rejects(faculty.uploadMaterial(classroom.id, new Blob([png]), 'notes.txt'),
      error => error instanceof LecternError && error.status === 415 && error.code === 'unsupported_file_type')
    await assert.rejects(faculty.uploadMaterial(classroom.id, new Blob([]), 'empty.txt'),
      error => error instanceof LecternError && error.status === 422 && error.code === 'unreadable_file')

    await faculty.deleteMaterial(material.id)
    await eventually(() => feed.get(material.id) === undefined, { timeoutMs: 5000, message: 'removal from the feed' })
    await assert.rejects(faculty.getMaterial(material.id), error => error.code === 'not_found')
    close(provider)
  } finally {
    await server.stop()
  }
})
