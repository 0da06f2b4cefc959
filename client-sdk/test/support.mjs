// Test helpers: start the real `lectern` binary on 127.0.0.1:0 (as tests/node/support.mjs
// does; nothing is imported from there) and make SDK clients for it.
import { spawn } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import { after } from 'node:test'
import WebSocket from 'ws'
import { LecternClient, openDocument } from '../dist/index.js'

// Every provider adds a process 'exit' listener.
process.setMaxListeners(100)

const BIN = process.env.LECTERN_BIN
if (!BIN) throw new Error('LECTERN_BIN must point at the lectern binary (the Rust test harness sets it)')

// Servers and providers a failed test left behind are cleaned up, so a failure is
// reported instead of hanging the runner.
const running = new Set()
const providers = new Set()
after(() => {
  for (const provider of providers) { provider.destroy(); provider.doc.destroy() }
  for (const child of running) child.kill('SIGKILL')
})

/** Starts `lectern serve` (no anonymous access, AI off unless `args` says otherwise);
 * `env` adds environment variables (e.g. a `LECTERN_JWT_SECRET` shared by two nodes). */
export async function startServer ({ args = [], env = {} } = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), 'lectern-sdk-'))
  const models = process.env.LECTERN_TEST_MODELS_DIR ?? new URL('../../.cache/models', import.meta.url).pathname
  const base = ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--anonymous-access', 'none',
    '--ai-backend', 'off', '--models-dir', models, '--registration', 'open']
  const child = spawn(BIN, [...base, ...args], {
    env: { ...process.env, LECTERN_LOG_FORMAT: 'json', LECTERN_LOG: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
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
    http: `http://${address}`,
    /** Sends SIGTERM (unless it exited) and resolves with the exit code (or signal name). */
    async stop () {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      const [code, signal] = await exited
      return code ?? signal
    }
  }
}

export { startBalancer } from '../../tests/node/balancer.mjs'

let counter = 0
/** A client for `server`, signed up as a new `role` account. */
export async function signUp (server, role, options = {}) {
  const client = new LecternClient({ baseUrl: server.http, WebSocketPolyfill: WebSocket, ...options })
  const email = `${role}-${process.pid}-${++counter}@school.test`
  await client.register({ email, display_name: email, password: 'correct horse battery', role })
  return client
}

/** `openDocument` with short backoff, destroyed at the end of the file if a test does not. */
export function open (client, docId, options = {}) {
  const provider = openDocument(client, docId, { maxBackoffTime: 200, ...options })
  providers.add(provider)
  return provider
}

export function close (...targets) {
  for (const provider of targets) {
    provider.destroy()
    provider.doc.destroy()
    providers.delete(provider)
  }
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
