// End-to-end: stock y-websocket clients on two lectern nodes joined through Redis (issue
// #11). The nodes share one PostgreSQL database and a Redis key prefix of their own; a
// client on each must see the other's text and presence.
import test from 'node:test'
import { connect as netConnect } from 'node:net'
import { startServer, connect, synced, eventually, destroy } from './support.mjs'

/** Whether a Redis answers PING at `url` (`redis://host:port`). */
async function redisAnswers (url) {
  const { hostname, port } = new URL(url)
  return new Promise(resolve => {
    const socket = netConnect({ host: hostname, port: Number(port || 6379) })
    const done = answer => { socket.destroy(); resolve(answer) }
    socket.setTimeout(1000, () => done(false))
    socket.once('error', () => done(false))
    socket.once('connect', () => socket.write('PING\r\n'))
    socket.once('data', data => done(data.toString().startsWith('+PONG')))
  })
}

/** Waits until the node's /readyz says `ready` (database reachable, Redis link up). */
async function ready (server) {
  await eventually(async () => {
    try {
      return (await (await fetch(`${server.http}/readyz`)).text()) === 'ready'
    } catch {
      return false
    }
  }, { timeoutMs: 30000, message: `${server.address} to be ready` })
}

test('stock clients on two nodes converge on text and see each other\'s awareness (PostgreSQL, Redis)', async (t) => {
  const database = process.env.LECTERN_TEST_POSTGRES_URL_FOR_NODE
  const redis = process.env.LECTERN_TEST_REDIS_URL_FOR_NODE
  const missing = !database ? 'PostgreSQL' : !redis ? 'Redis' : !(await redisAnswers(redis)) ? `Redis at ${redis}` : null
  if (missing) {
    if (process.env.CI === 'true') throw new Error(`${missing} is required under CI=true`)
    t.skip(`no ${missing}`)
    return
  }
  const args = [
    '--database-url', database,
    '--redis-url', redis,
    '--redis-prefix', `node-cluster-test-${process.pid}-${Date.now()}`,
    '--jwt-secret', 'node-cluster-test-secret-of-at-least-32-bytes'
  ]
  const nodeA = await startServer({ args })
  const nodeB = await startServer({ args })
  await Promise.all([ready(nodeA), ready(nodeB)])

  const room = 'cluster-stock-clients'
  const onA = connect(nodeA, room)
  const onB = connect(nodeB, room)
  await Promise.all([synced(onA), synced(onB)])
  onA.text.insert(0, 'typed on A. ')
  onB.text.insert(0, 'typed on B. ')
  await eventually(() => [onA, onB].every(client =>
    client.text.toString().includes('typed on A. ') && client.text.toString().includes('typed on B. ')),
  { message: 'both edits on both nodes' })
  if (onA.text.toString() !== onB.text.toString()) {
    throw new Error(`the replicas differ: ${JSON.stringify(onA.text.toString())} vs ${JSON.stringify(onB.text.toString())}`)
  }

  onA.provider.awareness.setLocalStateField('user', { name: 'Ann, on node A' })
  await eventually(() => onB.provider.awareness.getStates().get(onA.doc.clientID)?.user?.name === 'Ann, on node A',
    { message: 'the awareness of the client on A to reach the client on B' })

  destroy(onA, onB)
  await Promise.all([nodeA.stop(), nodeB.stop()])
})
