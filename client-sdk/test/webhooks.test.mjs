// Webhooks through the SDK against the real server: faculty register one (its secret shown
// once), list it without the secret, read its delivery log and delete it; private addresses
// are refused by default, and students may not touch webhooks.
import test from 'node:test'
import assert from 'node:assert/strict'
import { LecternError } from '../dist/index.js'
import { startServer, signUp } from './support.mjs'

const server = await startServer()
test.after(() => server.stop())

test('faculty manage a classroom\'s webhooks; private addresses and students are refused', async () => {
  const faculty = await signUp(server, 'faculty')
  const student = await signUp(server, 'student')
  const classroom = await faculty.createClassroom('Physics')
  await student.joinClassroom(classroom.join_code)

  await assert.rejects(faculty.createWebhook(classroom.id, { url: 'http://127.0.0.1:9/hook', events: ['session.started'] }),
    error => error instanceof LecternError && error.status === 400 && error.code === 'webhook_address_refused')
  await assert.rejects(student.createWebhook(classroom.id, { url: 'http://93.184.216.34/hook', events: ['session.started'] }),
    error => error instanceof LecternError && error.status === 403)

  // A public address given as an IP literal: no DNS needed to check it.
  const created = await faculty.createWebhook(classroom.id, { url: 'http://93.184.216.34/hook', events: ['session.started', 'member.joined'] })
  assert.equal(typeof created.secret, 'string')
  assert.ok(created.secret.length >= 32)
  const listed = await faculty.listWebhooks(classroom.id)
  assert.deepEqual(listed.map(webhook => webhook.id), [created.id])
  assert.equal(listed[0].secret, undefined, 'the secret is shown once')
  assert.deepEqual(await faculty.listWebhookDeliveries(classroom.id, created.id, { limit: 10 }), [])
  await assert.rejects(student.listWebhooks(classroom.id), error => error instanceof LecternError && error.status === 403)
  await faculty.deleteWebhook(classroom.id, created.id)
  assert.deepEqual(await faculty.listWebhooks(classroom.id), [])
})
