// `saved` and the `'saved'` event against the real server: false from a local edit until
// the server has stored it (answered a sync step 1 sent after it), kept false offline and
// while read-only, and a burst of keystrokes costs one or two questions, not one each.
import test from 'node:test'
import assert from 'node:assert/strict'
import { startServer, signUp, open, close, eventually } from './support.mjs'

const server = await startServer()
test.after(() => server.stop())

async function liveNotes () {
  const faculty = await signUp(server, 'faculty')
  const classroom = await faculty.createClassroom('Chemistry')
  const session = await faculty.startSession(classroom.id)
  return { faculty, notes: session.documents.find(d => d.kind === 'notes').doc_id }
}

/** Resolves with the notes' text as a fresh client reads it from the server. */
async function storedText (client, docId) {
  const reader = open(client, docId, { readOnly: true })
  await reader.whenSynced()
  const text = reader.doc.getText('content').toString()
  close(reader)
  return text
}

/** Counts the sync step 1 messages (`0, 0, …`) `provider` sends. */
function countQuestions (provider) {
  const counter = { questions: 0 }
  const ws = provider.ws
  const send = ws.send.bind(ws)
  ws.send = (data, ...rest) => {
    const bytes = new Uint8Array(data)
    if (bytes[0] === 0 && bytes[1] === 0) counter.questions++
    return send(data, ...rest)
  }
  return counter
}

test('an edit is unsaved until the server stored it, and a burst asks once or twice', async () => {
  const { faculty, notes } = await liveNotes()
  const writer = open(faculty, notes)
  await writer.whenSynced()
  assert.equal(writer.saved, true, 'nothing typed yet')
  const asked = countQuestions(writer)
  const savedEvents = []
  writer.on('saved', saved => savedEvents.push(saved))
  const text = writer.doc.getText('content')
  for (const letter of 'photosynthesis') text.insert(text.length, letter)
  assert.equal(writer.saved, false, 'unsaved right after the edit')
  await eventually(() => writer.saved, { message: 'saved' })
  assert.deepEqual(savedEvents, [false, true])
  assert.equal(await storedText(faculty, notes), 'photosynthesis', 'saved means stored')
  assert.ok(asked.questions >= 1 && asked.questions <= 2, `${asked.questions} questions for 14 keystrokes`)
  close(writer)
})

test('offline edits stay unsaved until the connection is back and they are stored', async () => {
  const { faculty, notes } = await liveNotes()
  const writer = open(faculty, notes)
  await writer.whenSynced()
  writer.disconnect()
  writer.doc.getText('content').insert(0, 'typed offline')
  assert.equal(writer.saved, false)
  // A round trip of another client: the offline one still has no answer.
  assert.equal(await storedText(faculty, notes), '')
  assert.equal(writer.saved, false, 'no answer while offline')
  writer.connect()
  await eventually(() => writer.saved, { message: 'saved after reconnecting' })
  assert.equal(await storedText(faculty, notes), 'typed offline')
  close(writer)
})

test('edits held while read-only are unsaved until they are sent and stored', async () => {
  const { faculty, notes } = await liveNotes()
  const writer = open(faculty, notes)
  await writer.whenSynced()
  writer.setReadOnly(true)
  writer.doc.getText('content').insert(0, 'held')
  assert.equal(writer.saved, false)
  assert.equal(await storedText(faculty, notes), '')
  assert.equal(writer.saved, false, 'held edits are not saved')
  writer.setReadOnly(false)
  await eventually(() => writer.saved, { message: 'saved once writable' })
  assert.equal(await storedText(faculty, notes), 'held')
  close(writer)
})
