// How the SDK is installed and loaded (issue 13, SDK gaps): a Y.Doc from a second copy of
// yjs is refused loudly instead of silently diverging, and the browser build is one
// self-contained ES module that syncs with the real server.
import test from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import * as Y from 'yjs'
import { openDocument } from '../dist/index.js'
import { startServer, signUp, open, close, eventually } from './support.mjs'

const BROWSER_BUILD = new URL('../dist/browser/lectern-client.js', import.meta.url)

test('a Y.Doc from another copy of yjs is refused with an error that says how to install', async () => {
  // `require('yjs')` loads yjs's CommonJS build: a second copy, as a symlinked install gives.
  const OtherY = createRequire(import.meta.url)('yjs')
  assert.notEqual(OtherY.Doc, Y.Doc, 'the test really has two copies')
  const client = { wsUrl: 'ws://127.0.0.1:9', WebSocketPolyfill: class {} }
  assert.throws(() => openDocument(client, 'd', { doc: new OtherY.Doc(), connect: false }),
    error => error instanceof TypeError && /another copy of yjs/.test(error.message) && /npm pack/.test(error.message))
  // The SDK's own copy is accepted.
  const provider = openDocument(client, 'd', { doc: new Y.Doc(), connect: false })
  provider.destroy()
  provider.doc.destroy()
})

test('the browser build is one ES module without bare imports', () => {
  const code = readFileSync(BROWSER_BUILD, 'utf8')
  const bare = /(?:\bfrom\s*|\bimport\s*\(?\s*)["'](?![./])([^"']+)["']/g
  assert.deepEqual([...code.matchAll(bare)].map(m => m[1]), [], 'every import is bundled')
})

test('the browser build syncs with the real server, and refuses a Y.Doc of another yjs copy', async () => {
  const server = await startServer()
  try {
    const browser = await import(BROWSER_BUILD)
    assert.notEqual(browser.Y.Doc, Y.Doc, 'the build carries its own yjs')
    const faculty = await signUp(server, 'faculty')
    const classroom = await faculty.createClassroom('Art')
    const session = await faculty.startSession(classroom.id)
    const notes = session.documents.find(d => d.kind === 'notes').doc_id
    const pageClient = new browser.LecternClient({ baseUrl: server.http, WebSocketPolyfill: faculty.WebSocketPolyfill, tokens: faculty.tokens })
    assert.throws(() => browser.openDocument(pageClient, notes, { doc: new Y.Doc(), connect: false }), /another copy of yjs/)
    const page = browser.openDocument(pageClient, notes, { doc: new browser.Y.Doc(), maxBackoffTime: 200 })
    const node = open(faculty, notes)
    await Promise.all([page.whenSynced(), node.whenSynced()])
    page.doc.getText('content').insert(0, 'from the page')
    await eventually(() => node.doc.getText('content').toString() === 'from the page', { message: 'the page\'s edit' })
    page.destroy()
    page.doc.destroy()
    close(node)
  } finally {
    await server.stop()
  }
})
