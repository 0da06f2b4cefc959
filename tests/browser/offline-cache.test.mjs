// The SDK README's offline-cache recipe (y-indexeddb under `openDocument`), in real
// Chromium, as an embedder's page on its own origin would use it: the SDK's browser build
// and y-indexeddb from npm, loaded with an import map (no bundler), the two sharing the one
// `Y` the SDK exports. A page types into the session notes and the server stores it; a
// second page of the same browser profile, whose Lectern server cannot be reached, shows
// that text from the cache and takes an edit; a third, with the server back, sends that
// edit, which a page without a cache then reads from the server.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { launchBrowser, runCleanups, servePage, startServer, DEADLINE_MS } from './support.mjs'

after(runCleanups)

const MODULES = new URL('./node_modules/', import.meta.url).pathname
const FILES = {
  '/lectern-client.js': new URL('../../client-sdk/dist/browser/lectern-client.js', import.meta.url).pathname,
  '/y-indexeddb.js': join(MODULES, 'y-indexeddb/src/y-indexeddb.js')
}

// y-indexeddb imports 'yjs': the import map hands it the SDK's own Y (a second copy of yjs
// would make documents that silently diverge), through this module.
const YJS_FROM_SDK = `import { Y } from './lectern-client.js'
export const { Doc, applyUpdate, encodeStateAsUpdate, transact } = Y`

const PAGE = `<!doctype html><html lang="en"><meta charset="utf-8"><title>Cached notes</title>
<script type="importmap">{"imports": {"yjs": "/yjs.js",
  "lib0/indexeddb": "/lib0/indexeddb.js", "lib0/promise": "/lib0/promise.js", "lib0/observable": "/lib0/observable.js"}}</script>
<script type="module">
  import { LecternClient, openDocument, Y } from '/lectern-client.js'
  import { IndexeddbPersistence } from '/y-indexeddb.js'
  const query = new URLSearchParams(location.search)
  const client = new LecternClient({ baseUrl: query.get('server') })
  const docId = query.get('doc')
  const doc = new Y.Doc()
  // The recipe: the cache first (one per user and document), then the provider on the same doc.
  const cache = query.get('cache') === '1' ? new IndexeddbPersistence('lectern:' + query.get('user') + ':' + docId, doc) : null
  if (cache !== null) await cache.whenSynced
  const text = doc.getText('content')
  window.notes = {
    text: () => text.toString(),
    append: words => text.insert(text.length, words)
  }
  const provider = openDocument(client, docId, { doc, token: async () => query.get('token') })
  window.notes.saved = () => provider.synced && provider.saved
  window.notes.ready = true
</script></html>`

/** The page's scripts: the SDK's browser build, y-indexeddb, lib0 and the yjs shim. */
function script (path) {
  if (path === '/yjs.js') return YJS_FROM_SDK
  const file = FILES[path] ?? (path.startsWith('/lib0/') && !path.includes('..') ? join(MODULES, path.slice(1)) : undefined)
  return file === undefined ? undefined : readFileSync(file)
}

async function api (root, path, token, body) {
  const response = await fetch(`${root}/api/v1${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body)
  })
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`)
  return response.json()
}

test('the y-indexeddb recipe keeps the notes readable and editable while the server is unreachable', async () => {
  const pages = await servePage(PAGE, script)
  const root = await startServer(undefined, { args: ['--cors-origins', pages] })
  const { access_token: token, user } = await api(root, '/auth/register', null,
    { email: 'eve@school.test', display_name: 'Eve Teacher', password: 'a long enough password', role: 'faculty' })
  const classroom = await api(root, '/classrooms', token, { name: 'Physics' })
  const session = await api(root, `/classrooms/${classroom.id}/sessions`, token, {})
  const doc = session.documents.find(document => document.kind === 'notes').doc_id
  const url = (server, cache) => `${pages}/?${new URLSearchParams({ server, cache, doc, token, user: user.id })}`

  const browser = await launchBrowser()
  const context = await browser.newContext()
  context.setDefaultTimeout(DEADLINE_MS)
  const open = async address => {
    const page = await context.newPage()
    await page.goto(address)
    await page.waitForFunction(() => window.notes?.ready === true)
    return page
  }

  const first = await open(url(root, '1'))
  await first.evaluate(() => window.notes.append('Typed online.'))
  await first.waitForFunction(() => window.notes.saved())
  await first.close()

  // Nobody listens on port 9: the notes come from the cache alone.
  const unreachable = await open(url('http://127.0.0.1:9', '1'))
  assert.equal(await unreachable.evaluate(() => window.notes.text()), 'Typed online.')
  await unreachable.evaluate(() => window.notes.append(' Typed while unreachable.'))
  assert.equal(await unreachable.evaluate(() => window.notes.saved()), false)
  await unreachable.close()

  // The server is back: the cached edit is sent and stored.
  const back = await open(url(root, '1'))
  await back.waitForFunction(() => window.notes.saved())
  const reader = await open(url(root, '0'))
  await reader.waitForFunction(() => window.notes.text() === 'Typed online. Typed while unreachable.')
})
