// Shared helpers for the end-to-end tests: start the real `lectern` binary on port 0 and
// connect stock Yjs clients (y-websocket's WebsocketProvider) to it.
import { spawn } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import { after } from 'node:test'
import WebSocket from 'ws'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'

export { Y, WebSocket }

// Every provider adds a process 'exit' listener; a test file opens more than ten.
process.setMaxListeners(100)

const BIN = process.env.LECTERN_BIN
if (!BIN) {
  throw new Error('LECTERN_BIN must point at the lectern binary (the Rust test harness sets it)')
}

// Servers still running when the file's tests end (a failed test skips its stop()) are
// killed, so a failure is reported instead of hanging the runner on their open pipes.
// Clients a failed test did not destroy are destroyed too (their timers would keep the
// runner alive as well).
const running = new Set()
const clients = new Set()
after(() => {
  for (const child of running) child.kill('SIGKILL')
  destroy(...clients)
})

export function freshDataDir () {
  return mkdtempSync(join(tmpdir(), 'lectern-node-'))
}

/**
 * Starts `lectern serve` on 127.0.0.1:0 and resolves once it listens.
 * @param {{dataDir?: string, args?: string[], env?: Record<string,string>}} options
 */
export async function startServer ({ dataDir = freshDataDir(), args = [], env = {} } = {}) {
  // These tests exercise the y-websocket protocol with tokenless stock clients; the token
  // and permission tests set their own access flags after these (later flags win).
  // The models directory the Rust tests share (prepared by scripts/test.sh), so a server
  // started here finds its models instead of downloading them.
  const models = process.env.LECTERN_TEST_MODELS_DIR ?? new URL('../../.cache/models', import.meta.url).pathname
  const base = ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--anonymous-access', 'write', '--models-dir', models,
    '--registration', 'open']
  const child = spawn(BIN, [...base, ...args], {
    env: { ...process.env, LECTERN_LOG_FORMAT: 'json', LECTERN_LOG: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const logs = []
  let stderr = ''
  child.stderr.on('data', chunk => { stderr += chunk })
  const address = await new Promise((resolve, reject) => {
    let buffered = ''
    child.stdout.on('data', chunk => {
      buffered += chunk
      let newline
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline)
        buffered = buffered.slice(newline + 1)
        try {
          const entry = JSON.parse(line)
          logs.push(entry)
          if (entry.fields?.message === 'lectern listening') resolve(entry.fields.address)
        } catch { /* not a log line */ }
      }
    })
    child.on('exit', code => reject(new Error(`lectern exited early (${code}): ${stderr}`)))
  })
  running.add(child)
  const exited = once(child, 'exit').finally(() => running.delete(child))
  return {
    address,
    dataDir,
    logs,
    http: `http://${address}`,
    ws: `ws://${address}/ws`,
    /** Sends `signal` and resolves with the exit code (or signal name). */
    async stop (signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      const [code, signalName] = await exited
      return code ?? signalName
    }
  }
}

export { startBalancer } from './balancer.mjs'

/** A stock y-websocket client for `room`. */
export function connect (server, room, { doc = new Y.Doc(), ...options } = {}) {
  const provider = new WebsocketProvider(server.ws, room, doc, {
    WebSocketPolyfill: WebSocket,
    disableBc: true,
    maxBackoffTime: 200,
    ...options
  })
  const client = { doc, provider, text: doc.getText('body') }
  clients.add(client)
  return client
}

export function synced (client) {
  if (client.provider.synced) return Promise.resolve()
  return new Promise(resolve => {
    const onSync = isSynced => {
      if (isSynced) {
        client.provider.off('sync', onSync)
        resolve()
      }
    }
    client.provider.on('sync', onSync)
  })
}

/** Polls `condition` until it holds; fails after `timeoutMs`. */
export async function eventually (condition, { timeoutMs = 10000, message = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await condition()) return
    await new Promise(resolve => setTimeout(resolve, 10))
  }
  throw new Error(`timed out waiting for ${message}`)
}

/** Disconnects clients for good. The doc is destroyed too: that stops its awareness timer,
 * which would otherwise keep the test process alive. */
export function destroy (...targets) {
  for (const client of targets) {
    client.provider.destroy()
    client.doc.destroy()
    clients.delete(client)
  }
}

/** Reads a metric value from /metrics (first sample whose name matches exactly). */
export async function metric (server, name) {
  const text = await (await fetch(`${server.http}/metrics`)).text()
  const line = text.split('\n').find(line => line.startsWith(`${name} `) || line.startsWith(`${name}{`))
  if (!line) throw new Error(`metric ${name} not found`)
  return Number(line.split(' ').at(-1))
}

/** Opens a raw WebSocket and resolves when it is open. */
export async function rawSocket (url) {
  const socket = new WebSocket(url)
  await once(socket, 'open')
  return socket
}

/** Resolves with {code, reason} when `socket` closes. */
export function closed (socket) {
  return new Promise(resolve => socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() })))
}
