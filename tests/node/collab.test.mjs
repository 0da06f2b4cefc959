// End-to-end: stock Yjs clients (y-websocket's WebsocketProvider from npm) against the real
// lectern binary. Run through `cargo nextest` (server/tests/main.rs sets LECTERN_BIN).
import test from 'node:test'
import assert from 'node:assert/strict'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import * as syncProtocol from 'y-protocols/sync'
import {
  Y, startServer, startBalancer, connect, synced, eventually, destroy, metric, rawSocket, closed
} from './support.mjs'

test('two stock clients converge on concurrent text edits', async () => {
  const server = await startServer()
  const a = connect(server, 'concurrent')
  const b = connect(server, 'concurrent')
  await Promise.all([synced(a), synced(b)])
  // Both edit position 0 before seeing each other's edit.
  a.text.insert(0, 'alpha ')
  b.text.insert(0, 'beta ')
  await eventually(() => a.text.length === 11 && a.text.toString() === b.text.toString(),
    { message: 'convergence' })
  assert.match(a.text.toString(), /alpha/)
  assert.match(a.text.toString(), /beta/)
  destroy(a, b)
  assert.equal(await server.stop(), 0)
})

test('a late joiner receives the full state', async () => {
  const server = await startServer()
  const writer = connect(server, 'late')
  await synced(writer)
  for (let i = 0; i < 100; i++) writer.text.insert(writer.text.length, `line ${i}\n`)
  writer.doc.getMap('meta').set('title', 'Photosynthesis')
  const watcher = connect(server, 'late')
  await synced(watcher)
  await eventually(() => watcher.text.toString() === writer.text.toString(), { message: 'late state' })
  assert.equal(watcher.doc.getMap('meta').get('title'), 'Photosynthesis')
  destroy(writer, watcher)
  await server.stop()
})

test('awareness appears, and disappears when its client drops without saying goodbye', async () => {
  const server = await startServer()
  const a = connect(server, 'presence')
  const b = connect(server, 'presence')
  await Promise.all([synced(a), synced(b)])
  a.provider.awareness.setLocalStateField('user', { name: 'alice' })
  await eventually(() => b.provider.awareness.getStates().get(a.doc.clientID)?.user?.name === 'alice',
    { message: 'awareness to appear' })
  // Cut the TCP connection without a close frame or an awareness removal from the client:
  // only the server can tell the others that alice left.
  a.provider.shouldConnect = false
  a.provider.ws.terminate()
  await eventually(() => !b.provider.awareness.getStates().has(a.doc.clientID),
    { message: 'awareness to disappear' })
  destroy(a, b)
  await server.stop()
})

test('edits made offline merge after reconnect', async () => {
  const server = await startServer()
  const a = connect(server, 'offline')
  const b = connect(server, 'offline')
  await Promise.all([synced(a), synced(b)])
  a.text.insert(0, 'shared ')
  await eventually(() => b.text.toString() === 'shared ')
  a.provider.disconnect()
  a.text.insert(a.text.length, 'offline-edit ')
  b.text.insert(0, 'online-edit ')
  a.provider.connect()
  await eventually(() => a.text.toString() === b.text.toString() &&
    a.text.toString().includes('offline-edit') && a.text.toString().includes('online-edit'),
  { message: 'offline merge' })
  destroy(a, b)
  await server.stop()
})

test('a 5 MB document syncs to a new client', async () => {
  const server = await startServer()
  const writer = connect(server, 'big')
  await synced(writer)
  const chunk = 'x'.repeat(100 * 1024)
  for (let i = 0; i < 50; i++) writer.text.insert(writer.text.length, chunk)
  const reader = connect(server, 'big')
  await synced(reader)
  await eventually(() => reader.text.length === 50 * chunk.length, { message: '5 MB sync', timeoutMs: 30000 })
  destroy(writer, reader)
  await server.stop()
})

test('a garbage frame closes only its own socket with 1007', async () => {
  const server = await startServer()
  const a = connect(server, 'garbage')
  const b = connect(server, 'garbage')
  await Promise.all([synced(a), synced(b)])
  const rogue = await rawSocket(`${server.ws}/garbage`)
  const rogueClosed = closed(rogue)
  rogue.send(Buffer.from([0x00, 0x02, 0xff, 0xff, 0xff, 0x0f, 0x01]))
  const { code } = await rogueClosed
  assert.equal(code, 1007)
  a.text.insert(0, 'still fine')
  await eventually(() => b.text.toString() === 'still fine', { message: 'others unaffected' })
  destroy(a, b)
  await server.stop()
})

test('oversized messages close with 1009 and text frames with 1003', async () => {
  const server = await startServer({ args: ['--max-message-bytes', '1024'] })
  const big = await rawSocket(`${server.ws}/limits`)
  const bigClosed = closed(big)
  big.send(Buffer.alloc(4096, 1))
  assert.equal((await bigClosed).code, 1009)
  const text = await rawSocket(`${server.ws}/limits`)
  const textClosed = closed(text)
  text.send('hello')
  assert.equal((await textClosed).code, 1003)
  // The server is still up.
  assert.equal((await fetch(`${server.http}/healthz`)).status, 200)
  await server.stop()
})

async function restartKeepsWhatOthersSaw (extraArgs) {
  const first = await startServer({ args: extraArgs })
  const a = connect(first, 'durable')
  const b = connect(first, 'durable')
  await Promise.all([synced(a), synced(b)])
  for (let i = 0; i < 50; i++) a.text.insert(a.text.length, `edit ${i};`)
  await eventually(() => b.text.toString() === a.text.toString(), { message: 'b to see every edit' })
  const seen = b.text.toString()
  assert.equal(await first.stop('SIGKILL'), 'SIGKILL')
  // Destroy the clients before the restart: if they reconnected they would resend their
  // state and hide any loss on the server side.
  destroy(a, b)
  const second = await startServer({ dataDir: first.dataDir, args: extraArgs })
  const c = connect(second, 'durable')
  await synced(c)
  assert.equal(c.text.toString(), seen)
  destroy(c)
  await second.stop()
}

test('after SIGKILL every update another client saw is still there (SQLite)', async () => {
  await restartKeepsWhatOthersSaw([])
})

test('after SIGKILL every update another client saw is still there (PostgreSQL)', async (t) => {
  const url = process.env.LECTERN_TEST_POSTGRES_URL_FOR_NODE
  if (!url) {
    if (process.env.CI === 'true') throw new Error('PostgreSQL is required under CI=true')
    t.skip('no PostgreSQL database provided')
    return
  }
  await restartKeepsWhatOthersSaw(['--database-url', url])
})

test('SIGTERM closes sockets with the drain code 4503 and exits cleanly', async () => {
  const server = await startServer()
  const a = connect(server, 'shutdown')
  const watcher = connect(server, 'shutdown')
  await Promise.all([synced(a), synced(watcher)])
  a.text.insert(0, 'before shutdown')
  // Once another client has it, the server has made it durable (write-ahead).
  await eventually(() => watcher.text.toString() === 'before shutdown', { message: 'edit to reach the server' })
  destroy(watcher)
  const closeCode = new Promise(resolve => a.provider.on('connection-close', event => resolve(event?.code)))
  a.provider.shouldConnect = false
  assert.equal(await server.stop('SIGTERM'), 0)
  assert.equal(await closeCode, 4503)
  destroy(a)
  const again = await startServer({ dataDir: server.dataDir })
  const b = connect(again, 'shutdown')
  await synced(b)
  assert.equal(b.text.toString(), 'before shutdown')
  destroy(b)
  await again.stop()
})

test('on 4503 a stock client reconnects by itself and lands on another node (PostgreSQL)', async (t) => {
  const url = process.env.LECTERN_TEST_POSTGRES_URL_FOR_NODE
  if (!url) {
    if (process.env.CI === 'true') throw new Error('PostgreSQL is required under CI=true')
    t.skip('no PostgreSQL database provided')
    return
  }
  // Two nodes on one database, behind a balancer that sends each connection to the first
  // node that accepts it: node A while it runs, then node B.
  const nodeA = await startServer({ args: ['--database-url', url] })
  const nodeB = await startServer({ args: ['--database-url', url] })
  const balancer = await startBalancer([nodeA, nodeB])
  const room = `drain-${process.pid}-${Date.now()}`
  const client = connect(balancer, room)
  await synced(client)
  client.text.insert(0, 'typed on A')
  const onA = connect(nodeA, room)
  await eventually(() => onA.text.toString() === 'typed on A', { message: 'the edit on node A' })
  destroy(onA)
  // Node B loads the document from the database A wrote it to (write-ahead).
  const onB = connect(nodeB, room)
  await eventually(() => onB.text.toString() === 'typed on A', { message: 'node B to load the edit' })
  const closes = []
  client.provider.on('connection-close', event => closes.push(event?.code))

  assert.equal(await nodeA.stop('SIGTERM'), 0)
  // The stock provider keeps `shouldConnect`: y-websocket 3 gives up on 44xx closes only.
  await eventually(() => closes.length > 0 && client.provider.synced, { message: 'the client to resync on node B' })
  assert.deepEqual(closes, [4503])
  client.text.insert(client.text.length, ', then on B')
  await eventually(() => onB.text.toString() === 'typed on A, then on B', { message: 'the edit through node B' })
  destroy(client, onB)
  balancer.close()
  assert.equal(await nodeB.stop(), 0)
})

test('idle rooms unload and rooms, sockets and tasks return to baseline', async () => {
  const server = await startServer({ args: ['--room-grace-ms', '50'] })
  const baselineTasks = await metric(server, 'lectern_runtime_alive_tasks')
  const clients = []
  for (let room = 0; room < 10; room++) {
    clients.push(connect(server, `room-${room}`), connect(server, `room-${room}`))
  }
  await Promise.all(clients.map(synced))
  clients.forEach((client, i) => client.text.insert(0, `client ${i}`))
  assert.equal(await metric(server, 'lectern_rooms_loaded'), 10)
  assert.equal(await metric(server, 'lectern_connections'), 20)
  destroy(...clients)
  await eventually(async () => await metric(server, 'lectern_rooms_loaded') === 0 &&
    await metric(server, 'lectern_room_tasks') === 0 &&
    await metric(server, 'lectern_connections') === 0 &&
    await metric(server, 'lectern_room_members') === 0, { message: 'rooms to unload' })
  // HTTP keep-alive connections from these scrapes may hold a task or two.
  await eventually(async () => await metric(server, 'lectern_runtime_alive_tasks') <= baselineTasks + 2,
    { message: 'tasks back to baseline' })
  await server.stop()
})

/** One multiplexed frame: varString(doc) + y-sync message. */
function envelope (doc, writeMessage) {
  const encoder = encoding.createEncoder()
  encoding.writeVarString(encoder, doc)
  writeMessage(encoder)
  return encoding.toUint8Array(encoder)
}

test('one multiplexed socket carries several documents', async () => {
  const server = await startServer()
  const mux = await rawSocket(server.ws)
  const docs = { notes: new Y.Doc(), chat: new Y.Doc() }
  const received = []
  mux.on('message', data => {
    const decoder = decoding.createDecoder(new Uint8Array(data))
    const name = decoding.readVarString(decoder)
    received.push(name)
    const reply = encoding.createEncoder()
    encoding.writeVarString(reply, name)
    const type = decoding.readVarUint(decoder)
    if (type === 0) {
      syncProtocol.readSyncMessage(decoder, reply, docs[name], 'server')
      if (encoding.length(reply) > name.length + 1) mux.send(encoding.toUint8Array(reply))
    }
  })
  for (const [name, doc] of Object.entries(docs)) {
    mux.send(envelope(name, encoder => {
      encoding.writeVarUint(encoder, 0)
      syncProtocol.writeSyncStep1(encoder, doc)
    }))
  }
  // A stock client on /ws/notes sees what the multiplexed socket writes, and vice versa.
  const stock = connect(server, 'notes')
  await synced(stock)
  stock.text.insert(0, 'from stock')
  await eventually(() => docs.notes.getText('body').toString() === 'from stock', { message: 'mux to receive' })
  docs.notes.on('update', (update, origin) => {
    if (origin === 'server') return
    mux.send(envelope('notes', encoder => {
      encoding.writeVarUint(encoder, 0)
      syncProtocol.writeUpdate(encoder, update)
    }))
  })
  docs.notes.getText('body').insert(0, 'from mux, ')
  await eventually(() => stock.text.toString() === 'from mux, from stock', { message: 'stock to receive' })
  assert.ok(received.includes('chat'))

  // Leaving a document stops its traffic on this socket.
  mux.send(envelope('notes', encoder => encoding.writeUint8(encoder, 100)))
  const before = received.length
  stock.text.insert(0, 'after leave ')
  docs.chat.getText('body') // keep chat open
  const probe = connect(server, 'notes')
  await synced(probe)
  await eventually(() => probe.text.toString().startsWith('after leave'))
  assert.equal(received.slice(before).filter(name => name === 'notes').length, 0)
  destroy(stock, probe)
  mux.close()
  await server.stop()
})
