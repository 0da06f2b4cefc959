// The browser build in a real headless Chromium (Debian's /usr/bin/chromium; no browser
// download): a page with no bundler imports dist/browser/lectern-client.js, opens a
// document with a token callback and edits it; a Node client sees the edit.
import test from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:http'
import { once } from 'node:events'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startServer, signUp, open, close, eventually } from './support.mjs'

const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium'
const BUNDLE = readFileSync(new URL('../dist/browser/lectern-client.js', import.meta.url))

// No import map, no bundler: the page imports the one file.
const PAGE = `<!doctype html><meta charset="utf-8"><title>SDK page</title>
<script type="module">
  import { LecternClient, openDocument, Y } from './lectern-client.js'
  const query = new URLSearchParams(location.search)
  const client = new LecternClient({ baseUrl: query.get('server') })
  const notes = openDocument(client, query.get('doc'), { doc: new Y.Doc(), token: async () => query.get('token') })
  await notes.whenSynced()
  notes.doc.getText('content').insert(0, 'typed in Chromium')
</script>`

/** Serves the page and the bundle from another origin than the Lectern server. */
async function servePage () {
  const server = createServer((request, response) => {
    if (request.url.startsWith('/lectern-client.js')) {
      response.writeHead(200, { 'content-type': 'text/javascript' })
      response.end(BUNDLE)
    } else {
      response.writeHead(200, { 'content-type': 'text/html' })
      response.end(PAGE)
    }
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return server
}

test('a page without a bundler syncs a document through the browser build', { skip: !existsSync(CHROMIUM) && process.env.CI !== 'true' && `no ${CHROMIUM}` }, async () => {
  const lectern = await startServer()
  const pages = await servePage()
  const userDataDir = mkdtempSync(join(tmpdir(), 'lectern-sdk-chromium-'))
  let chromium
  let exited
  try {
    const faculty = await signUp(lectern, 'faculty')
    const classroom = await faculty.createClassroom('Music')
    const session = await faculty.startSession(classroom.id)
    const notes = session.documents.find(d => d.kind === 'notes').doc_id
    const watcher = open(faculty, notes)
    await watcher.whenSynced()
    const query = new URLSearchParams({ server: lectern.http, doc: notes, token: await faculty.accessToken() })
    const url = `http://127.0.0.1:${pages.address().port}/?${query}`
    chromium = spawn(CHROMIUM, ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
      `--user-data-dir=${userDataDir}`, url], { stdio: 'ignore', detached: true })
    exited = once(chromium, 'exit')
    await eventually(() => watcher.doc.getText('content').toString() === 'typed in Chromium',
      { timeoutMs: 30000, message: 'the edit made in Chromium' })
    assert.equal(chromium.exitCode, null, 'Chromium was still running the page')
    close(watcher)
  } finally {
    // SIGTERM to its process group: Chromium stops (and reaps) its helper processes.
    if (chromium?.exitCode === null) {
      process.kill(-chromium.pid, 'SIGTERM')
      await exited
    }
    rmSync(userDataDir, { recursive: true, force: true })
    pages.close()
    await lectern.stop()
  }
})
