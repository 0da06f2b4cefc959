// The web app's budgets, measured by hand (`node bench.mjs`), never by the test suite:
// figures belong in notes, not in timed tests. Against a release `lectern serve`
// (LECTERN_BIN, default ../../target/release/lectern) on loopback, in Debian's Chromium:
//   (a) first load of the session page: navigation start -> the notes editor accepts input
//       (editable), cold cache, signed in;          target < 1 s (median)
//   (b) JavaScript the session page loads, as transferred with Accept-Encoding: gzip;
//                                                    target < 250 KB
//   (c) typing latency: a key pressed in one page -> the character in the other page's
//       editor, one key at a time;                   target p50 < 50 ms (p95 printed too)
import { request } from 'node:http'
import { startServer, launchBrowser, newPage, openSession, notes, runCleanups } from './support.mjs'

const BIN = process.env.LECTERN_BIN ?? new URL('../../target/release/lectern', import.meta.url).pathname
const LOAD_RUNS = 7
const KEYSTROKES = 100

const quantile = (values, q) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
}

/** Runs in the page: performance.now() once the notes editor (searched through shadow
 * roots) is editable, else false. A function, not a string: the app's CSP forbids eval. */
function editableAt () {
  const find = root => {
    const hit = root.querySelector('[aria-label="Shared notes"]')
    if (hit) return hit
    for (const element of root.querySelectorAll('*')) {
      if (element.shadowRoot) {
        const inner = find(element.shadowRoot)
        if (inner) return inner
      }
    }
    return null
  }
  const editor = find(document)
  return editor && editor.getAttribute('contenteditable') === 'true' ? performance.now() : false
}

/** Bytes of `url` as sent with Accept-Encoding: gzip (not decompressed), and its encoding. */
function transferred (url) {
  return new Promise((resolve, reject) => {
    request(url, { headers: { 'Accept-Encoding': 'gzip' } }, response => {
      let bytes = 0
      response.on('data', chunk => { bytes += chunk.length })
      response.on('end', () => resolve({ bytes, encoding: response.headers['content-encoding'] ?? 'identity' }))
    }).on('error', reject).end()
  })
}

const root = await startServer(BIN)
const browser = await launchBrowser()
const teacher = await newPage(browser)
const student = await newPage(browser)
await openSession(root, teacher, student)
const sessionUrl = student.url()
const signedIn = await student.context().storageState()

// (a) and (b): fresh contexts (cold HTTP cache) with the student's stored sign-in.
const loads = []
const scripts = new Set()
for (let run = 0; run < LOAD_RUNS; run++) {
  const context = await browser.newContext({ storageState: signedIn })
  const page = await context.newPage()
  page.on('response', response => {
    if (response.request().resourceType() === 'script') scripts.add(response.url())
  })
  await page.goto(sessionUrl, { waitUntil: 'commit' })
  const ready = await page.waitForFunction(editableAt, null, { polling: 'raf', timeout: 20_000 })
  loads.push(await ready.jsonValue())
  await context.close()
}
let jsBytes = 0
const encodings = new Set()
for (const url of scripts) {
  const { bytes, encoding } = await transferred(url)
  jsBytes += bytes
  encodings.add(encoding)
}

// (c): the teacher types one key at a time; the student's editor records when each lands.
await notes(student).evaluate(editor => {
  // Counts the typed 'x's, leaving out the remote cursors' name labels (which also change
  // the editor's text when the teacher's cursor appears or moves).
  const typed = () => {
    const copy = editor.cloneNode(true)
    for (const caret of copy.querySelectorAll('.cm-remoteCaret')) caret.remove()
    return copy.textContent.split('x').length - 1
  }
  window.__landed = []
  new MutationObserver(() => {
    const now = Date.now()
    while (window.__landed.length < typed()) window.__landed.push(now)
  }).observe(editor, { subtree: true, childList: true, characterData: true })
})
// Both pages stamp with Date.now() (the one wall clock; performance.timeOrigin is not
// comparable across pages). The teacher's stamp is the keydown, before the app sees it.
await teacher.evaluate(() => {
  window.__pressed = []
  window.addEventListener('keydown', () => window.__pressed.push(Date.now()), { capture: true })
})
await notes(teacher).click()
await teacher.keyboard.press('Control+End')
await teacher.evaluate(() => { window.__pressed.length = 0 })
for (let key = 0; key < KEYSTROKES; key++) {
  await teacher.keyboard.press('x')
  // One key at a time: the next is pressed once this one has landed.
  await student.waitForFunction(count => window.__landed.length >= count, key + 1, { timeout: 20_000 })
}
const pressed = await teacher.evaluate(() => window.__pressed)
const landed = await student.evaluate(() => window.__landed)
const latencies = pressed.map((at, key) => landed[key] - at)

const ms = value => `${value.toFixed(1)} ms`
console.log(`(a) session page, navigation start -> editor editable: median ${ms(quantile(loads, 0.5))} over ${LOAD_RUNS} cold loads (min ${ms(Math.min(...loads))}, max ${ms(Math.max(...loads))}); target < 1000 ms`)
console.log(`(b) JavaScript for the session page: ${(jsBytes / 1024).toFixed(1)} KB in ${scripts.size} script(s), content-encoding ${[...encodings].join(', ')}; target < 250 KB`)
console.log(`(c) typing latency teacher -> student over ${KEYSTROKES} keys: p50 ${ms(quantile(latencies, 0.5))}, p95 ${ms(quantile(latencies, 0.95))}; target p50 < 50 ms`)
await runCleanups()
