// Speech input through the SDK: `speakToChat` posts a recording, the server has it
// transcribed and the text lands in the session chat as the speaker's message. The speech
// backend here is a small scripted OpenAI-compatible server (real recognition is tested in
// server/tests/speech.rs); what is checked is the SDK's form and the typed results.
import test from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import { once } from 'node:events'
import { LecternError, chatMessages } from '../dist/index.js'
import { startServer, signUp, open, close, eventually } from './support.mjs'

/** `seconds` of 8 kHz mono 16-bit silence as a WAV file. */
function silentWav (seconds = 1) {
  const rate = 8000
  const data = rate * 2 * seconds
  const view = new DataView(new ArrayBuffer(44 + data))
  const ascii = (offset, text) => [...text].forEach((c, i) => view.setUint8(offset + i, c.charCodeAt(0)))
  ascii(0, 'RIFF'); view.setUint32(4, 36 + data, true); ascii(8, 'WAVE')
  ascii(12, 'fmt '); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true)
  view.setUint32(24, rate, true); view.setUint32(28, rate * 2, true); view.setUint16(32, 2, true); view.setUint16(34, 16, true)
  ascii(36, 'data'); view.setUint32(40, data, true)
  return new Blob([view.buffer], { type: 'audio/wav' })
}

/** A transcription server answering " Hello\nclass " to every WAV upload; returns its
 * API root, the forms it received, and a close function. */
async function scriptedSpeechServer () {
  const forms = []
  const server = createServer(async (request, response) => {
    const chunks = []
    for await (const chunk of request) chunks.push(chunk)
    const body = Buffer.concat(chunks).toString('latin1')
    forms.push(body)
    response.setHeader('content-type', 'application/json')
    response.end(JSON.stringify({ text: body.includes('filename="audio.wav"') ? ' Hello\nclass ' : '' }))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { baseUrl: `http://127.0.0.1:${server.address().port}/v1`, forms, close: () => server.close() }
}

async function liveSession (server) {
  const faculty = await signUp(server, 'faculty')
  const student = await signUp(server, 'student')
  const classroom = await faculty.createClassroom('Astronomy')
  await student.joinClassroom(classroom.join_code)
  const session = await faculty.startSession(classroom.id)
  return { faculty, student, session }
}

test('speakToChat posts the transcript as the speaker\'s chat message', async () => {
  const speech = await scriptedSpeechServer()
  const server = await startServer({ args: ['--speech-base-url', speech.baseUrl] })
  try {
    const { faculty, student, session } = await liveSession(server)
    const result = await student.speakToChat(session.id, silentWav(), { askAi: true, language: 'en' })
    assert.equal(result.text, 'Hello class')
    assert.equal(result.doc_id, `session/${session.id}/chat`)
    assert.equal(result.job, null)
    // AI is off on this server: the message is posted anyway, and the result says why no job.
    assert.equal(result.ai_error?.code, 'ai_unavailable')
    assert.match(speech.forms[0], /name="language"\r\n\r\nen\r\n/)

    const provider = open(faculty, result.doc_id)
    const chat = chatMessages(provider.doc)
    await eventually(() => chat.list().some(message => message.id === result.message_id), { message: 'the spoken message' })
    const message = chat.list().find(message => message.id === result.message_id)
    assert.equal(message.text, 'Hello class')
    assert.equal(message.role, 'user')
    assert.equal(message.author, (await student.me()).id)
    close(provider)

    await assert.rejects(student.speakToChat(session.id, new Blob(['%PDF-1.7'])),
      error => error instanceof LecternError && error.status === 415 && error.code === 'unsupported_file_type')
  } finally {
    await server.stop()
    speech.close()
  }
})

test('without a speech backend speakToChat fails with speech_unavailable', async () => {
  const server = await startServer()
  try {
    const { student, session } = await liveSession(server)
    // A recording of some size: the refusal comes before the server reads it, and must
    // still reach a client that is sending it (not a broken pipe).
    await assert.rejects(student.speakToChat(session.id, silentWav(60)),
      error => error instanceof LecternError && error.status === 503 &&
        error.code === 'speech_unavailable' && error.message.includes('--speech-base-url'))
  } finally {
    await server.stop()
  }
})
