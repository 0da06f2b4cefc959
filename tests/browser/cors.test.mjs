// CORS from a page on another origin, in real Chromium: an embedder's page (served here by
// a second HTTP server on its own port, with the SDK's browser build and no bundler) signs
// up, creates a classroom, starts a session and edits its notes through the API and the
// WebSocket of a server started with `--cors-origins` naming that origin. The same page
// served from a third origin, not named, is blocked by the browser at the first call.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { launchBrowser, newPage, runCleanups, servePage, startServer } from './support.mjs'

after(runCleanups)

const BUNDLE = readFileSync(new URL('../../client-sdk/dist/browser/lectern-client.js', import.meta.url))

// The embedder's page: every step through @lectern/client, the outcome in `window.outcome`.
const PAGE = `<!doctype html><html lang="en"><meta charset="utf-8"><title>Embedder</title>
<script type="module">
  import { LecternClient, openDocument, Y } from './lectern-client.js'
  const server = new URLSearchParams(location.search).get('server')
  try {
    const client = new LecternClient({ baseUrl: server })
    await client.register({ email: 'emb-' + location.port + '@school.test', display_name: 'Embedder',
      password: 'a long enough password', role: 'faculty' })
    const classroom = await client.createClassroom('Embedded class')
    const session = await client.startSession(classroom.id)
    const notes = session.documents.find(document => document.kind === 'notes').doc_id
    const writer = openDocument(client, notes, { doc: new Y.Doc() })
    await writer.whenSynced()
    writer.doc.getText('content').insert(0, 'written across origins')
    await new Promise(resolve => writer.saved ? resolve() : writer.on('saved', saved => { if (saved) resolve() }))
    const reader = openDocument(client, notes, { doc: new Y.Doc(), readOnly: true })
    await reader.whenSynced()
    window.outcome = { ok: true, text: reader.doc.getText('content').toString() }
  } catch (error) {
    window.outcome = { ok: false, error: String(error) }
  }
</script></html>`

async function outcome (page, origin, root) {
  await page.goto(`${origin}/?server=${encodeURIComponent(root)}`)
  await page.waitForFunction(() => window.outcome !== undefined)
  return page.evaluate(() => window.outcome)
}

test('a page on an allowed origin uses the API and the WebSocket; another origin is blocked', async () => {
  const script = path => path === '/lectern-client.js' ? BUNDLE : undefined
  const allowed = await servePage(PAGE, script)
  const other = await servePage(PAGE, script)
  const root = await startServer(undefined, { args: ['--cors-origins', allowed] })
  const browser = await launchBrowser()

  const page = await newPage(browser)
  assert.deepEqual(await outcome(page, allowed, root), { ok: true, text: 'written across origins' })

  const blocked = await newPage(browser)
  const refused = await outcome(blocked, other, root)
  assert.equal(refused.ok, false)
  assert.match(refused.error, /TypeError/, 'the browser refused the response (no CORS headers for this origin)')
})
