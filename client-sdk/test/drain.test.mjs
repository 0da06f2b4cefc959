// A node that shuts down closes its sockets with 4503 (docs/protocol.md, "Close codes"):
// retryable, so the provider reconnects at once, through the load balancer, to another node
// of the cluster. Two real nodes share one PostgreSQL database and one JWT secret.
import test from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { CLOSE_CODES } from '../dist/index.js'
import { startServer, startBalancer, signUp, open, close, eventually } from './support.mjs'

test('on 4503 the provider reconnects at once, lands on another node, and raises no access event', async (t) => {
  const url = process.env.LECTERN_TEST_POSTGRES_URL_FOR_NODE
  if (!url) {
    if (process.env.CI === 'true') throw new Error('PostgreSQL is required under CI=true')
    t.skip('no PostgreSQL database provided')
    return
  }
  const shared = { args: ['--database-url', url], env: { LECTERN_JWT_SECRET: randomBytes(48).toString('base64') } }
  // One after the other: the first applies the migrations to the fresh database.
  const a = await startServer(shared)
  const b = await startServer(shared)
  const balancer = await startBalancer([a, b])
  try {
    // Every connection goes to node A while it accepts.
    const faculty = await signUp(balancer, 'faculty')
    const student = await signUp(balancer, 'student')
    const classroom = await faculty.createClassroom('Geography')
    await student.joinClassroom(classroom.join_code)
    const session = await faculty.startSession(classroom.id)
    const notes = session.documents.find(d => d.kind === 'notes').doc_id
    const s = open(student, notes)
    await s.whenSynced()
    s.doc.getText('content').insert(0, 'Rivers. ')
    const denied = []
    s.on('access', event => denied.push(event))
    const closes = []
    // At the 4503, note whether the provider is already connecting again before any timer
    // (a backoff is a timer) could run.
    const reconnectedAtOnce = new Promise(resolve => {
      s.on('connection-close', event => {
        closes.push(event?.code)
        if (event?.code !== CLOSE_CODES.draining) return
        let connecting = false
        const onStatus = ({ status }) => { if (status === 'connecting') connecting = true }
        s.on('status', onStatus)
        setTimeout(() => { s.off('status', onStatus); resolve(connecting) }, 0)
      })
    })

    assert.equal(await a.stop(), 0)
    assert.equal(await reconnectedAtOnce, true, 'reconnecting before any backoff timer')
    // Node A is gone: this sync is with node B, through the balancer.
    await eventually(() => s.synced, { message: 'resync through the balancer' })
    assert.deepEqual(closes, [CLOSE_CODES.draining])
    assert.deepEqual(denied, [])
    assert.equal(s.accessDenied, null)

    // B serves the document: what was typed on A (durable in the shared database) and
    // what is typed now.
    const f = open(faculty, notes)
    await f.whenSynced()
    s.doc.getText('content').insert(8, 'Deltas.')
    await eventually(() => f.doc.getText('content').toString() === 'Rivers. Deltas.', { message: 'edit on node B' })
    close(f, s)
  } finally {
    balancer.close()
    await Promise.all([a.stop(), b.stop()])
  }
})
