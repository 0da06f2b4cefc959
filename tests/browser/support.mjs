// Helpers shared by the browser tests: start the real `lectern serve` and a fake model
// server for it, launch Debian's Chromium, sign up through the form, and read the notes
// editor. Every wait is on a condition with a deadline.
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium } from 'playwright-core'

export const CHROMIUM = process.env.LECTERN_CHROMIUM ?? '/usr/bin/chromium'
const MODELS = process.env.LECTERN_TEST_MODELS_DIR ?? new URL('../../.cache/models', import.meta.url).pathname
/** The longest any one condition is waited for. */
export const DEADLINE_MS = 20_000

const cleanups = []
/** Registers `cleanup` for `runCleanups`. */
export function onCleanup (cleanup) { cleanups.push(cleanup) }
/** Stops what was started (browsers, servers), last started first. Test files call it from
 * `after`; bench.mjs at its end. Not registered here so that bench.mjs, a plain script,
 * does not pull in node:test. */
export async function runCleanups () {
  for (const cleanup of cleanups.reverse()) await cleanup()
  cleanups.length = 0
}

/** Starts `lectern serve` (binary `bin`) on 127.0.0.1:0 with a fresh data dir; resolves
 * with its http root once it listens. `aiBaseUrl` points the OpenAI-compatible backend at
 * a test's fake model server; by default it points at a port nobody listens on. `args` are
 * added to the command line (e.g. short token lifetimes). */
export async function startServer (bin = process.env.LECTERN_BIN, { aiBaseUrl, args = [] } = {}) {
  if (!bin) throw new Error('LECTERN_BIN must point at the lectern binary (the Rust test harness sets it)')
  const dataDir = mkdtempSync(join(tmpdir(), 'lectern-browser-'))
  const child = spawn(bin, [
    'serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--models-dir', MODELS,
    '--registration', 'open',
    // By default an AI backend that is never reached: a chat with no course material fails
    // before asking the model, with a reason written into the chat document.
    '--ai-backend', 'openai',
    '--ai-base-url', aiBaseUrl ?? 'http://127.0.0.1:9/v1',
    '--ai-model', aiBaseUrl === undefined ? 'unused' : 'fake',
    ...args
  ], {
    env: { ...process.env, LECTERN_LOG_FORMAT: 'json', LECTERN_LOG: 'info' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  onCleanup(() => { child.kill('SIGKILL') })
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
  return `http://${address}`
}

/** A fake OpenAI-compatible model server (node:http), stopped when the test file ends:
 * `POST /v1/chat/completions` is answered by `answer(body)` (the parsed request body),
 * which returns `{ deltas, holdAt }`: the stream's content deltas, and the index of the
 * delta before which the stream waits for `release()` (-1 or none: never), or `undefined`
 * for a request it does not know (answered 400). The stream ends with a stop, a usage
 * chunk and `[DONE]`. Resolves with its /v1 URL (`startServer`'s `aiBaseUrl`) and
 * `release`, which lets every held stream go on. */
export async function startFakeModel (answer) {
  const held = []
  const release = () => { for (const go of held.splice(0)) go() }
  const server = createServer((request, response) => {
    if (request.method !== 'POST' || request.url !== '/v1/chat/completions') {
      response.writeHead(404).end()
      return
    }
    let body = ''
    request.on('data', chunk => { body += chunk })
    request.on('end', async () => {
      const answered = answer(JSON.parse(body))
      if (answered === undefined) {
        response.writeHead(400, { 'content-type': 'application/json' })
        response.end(JSON.stringify({ error: { message: 'the fake model does not know this request' } }))
        return
      }
      const { deltas, holdAt = -1 } = answered
      response.writeHead(200, { 'content-type': 'text/event-stream' })
      const event = data => response.write(`data: ${JSON.stringify(data)}\n\n`)
      for (const [index, content] of deltas.entries()) {
        if (index === holdAt) await new Promise(resolve => held.push(resolve))
        event({ choices: [{ index: 0, delta: { content }, finish_reason: null }] })
      }
      event({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })
      event({ choices: [], usage: { prompt_tokens: 10, completion_tokens: deltas.length, total_tokens: 10 + deltas.length } })
      response.end('data: [DONE]\n\n')
    })
  })
  const origin = await listen(server)
  // Registered after the server's close, so it runs first (last registered, first run):
  // held streams finish before their connections are closed.
  onCleanup(release)
  return { url: `${origin}/v1`, release }
}

/** Starts `server` on 127.0.0.1 on a free port, closed when the test file ends; resolves
 * with its origin. */
async function listen (server) {
  await new Promise(resolve => server.listen(0, '127.0.0.1', resolve))
  onCleanup(() => new Promise(resolve => {
    server.closeAllConnections()
    server.close(resolve)
  }))
  return `http://127.0.0.1:${server.address().port}`
}

/** Serves an embedder's page on a port of its own, another origin than Lectern's:
 * `script(path)` gives the JavaScript of a path (a string or bytes), or `undefined`; every
 * other path is `html`. Resolves with the page's origin. */
export async function servePage (html, script) {
  return listen(createServer((request, response) => {
    const body = script(new URL(request.url, 'http://page').pathname)
    if (body !== undefined) {
      response.writeHead(200, { 'content-type': 'text/javascript' })
      response.end(body)
    } else {
      response.writeHead(200, { 'content-type': 'text/html' })
      response.end(html)
    }
  }))
}

/** From a session page (faculty), uploads `cells.md` on the classroom page, waits until it
 * is ready, and comes back to the session, connected. */
export async function uploadCells (page) {
  const sessionUrl = page.url()
  await page.getByRole('link', { name: '← Classroom' }).click()
  await page.getByLabel(/Upload a file/).setInputFiles({
    name: 'cells.md',
    mimeType: 'text/markdown',
    buffer: Buffer.from('# Cells\n\nMitochondria are the powerhouse of the cell: they make ATP.\n')
  })
  await page.getByRole('list', { name: 'Materials' }).getByRole('listitem')
    .filter({ hasText: 'cells.md' }).getByText('(ready)').waitFor()
  await page.goto(sessionUrl)
  await page.getByText('connected', { exact: true }).first().waitFor()
}

/** Launches headless Chromium, closed when the test file ends. */
export async function launchBrowser (args = []) {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args })
  onCleanup(() => browser.close())
  return browser
}

/** A page in a fresh browser context (its own storage), waiting at most DEADLINE_MS. */
export async function newPage (browser, viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport })
  context.setDefaultTimeout(DEADLINE_MS)
  return context.newPage()
}

/** Signs up through the form and waits for the classroom list. */
export async function signUp (page, root, { name, email, role }) {
  await page.goto(`${root}/signup`)
  await page.getByLabel('Name').fill(name)
  await page.getByLabel('Email').fill(email)
  await page.getByLabel('Password').fill('a long enough password')
  await page.getByLabel(role === 'faculty' ? 'faculty' : 'a student').check()
  await page.getByRole('button', { name: 'Sign up' }).click()
  await page.getByRole('heading', { name: 'Your classrooms' }).waitFor()
}

/** The notes editor's editable content (inside the editor's shadow root). */
export function notes (page) {
  return page.getByRole('textbox', { name: 'Shared notes' })
}

/** The notes' text, without the remote cursors' name labels. */
export function notesText (page) {
  return notes(page).evaluate(content => {
    const copy = content.cloneNode(true)
    for (const caret of copy.querySelectorAll('.cm-remoteCaret')) caret.remove()
    return copy.textContent
  })
}

/** The names and emails of the students `openSession` signs up, in order. */
export const STUDENTS = [
  { name: 'Ben Student', email: 'ben@school.test' },
  { name: 'Cai Student', email: 'cai@school.test' }
]

/** Teacher creates a classroom and starts a session; each student (one page each, names
 * from STUDENTS) joins it and opens the session page. All end on the session page,
 * connected. */
export async function openSession (root, teacher, ...students) {
  await signUp(teacher, root, { name: 'Ada Teacher', email: 'ada@school.test', role: 'faculty' })
  await teacher.getByLabel('New classroom name').fill('Biology 101')
  await teacher.getByRole('button', { name: 'Create classroom' }).click()
  await teacher.getByRole('heading', { name: 'Biology 101' }).waitFor()
  const code = (await teacher.getByLabel('Join code').textContent()).trim()
  await teacher.getByRole('button', { name: 'Start a live session' }).click()
  await teacher.getByRole('heading', { name: /Live session/ }).waitFor()
  await teacher.getByText('connected', { exact: true }).first().waitFor()

  for (const [index, student] of students.entries()) {
    await signUp(student, root, { ...STUDENTS[index], role: 'student' })
    await student.getByLabel('Join code').fill(code)
    await student.getByRole('button', { name: 'Join classroom' }).click()
    await student.getByRole('heading', { name: 'Biology 101' }).waitFor()
    await student.getByRole('link', { name: 'Join the live session' }).click()
    await student.getByRole('heading', { name: /Live session/ }).waitFor()
    await student.getByText('connected', { exact: true }).first().waitFor()
  }
}

/** Polls `check` until it returns true, failing with `describe()` after DEADLINE_MS. */
export async function until (check, describe) {
  const deadline = Date.now() + DEADLINE_MS
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${await describe()}`)
    await new Promise(resolve => setTimeout(resolve, 25))
  }
}

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8')

/** The serious and critical violations axe-core finds on the page as it is, one line each,
 * prefixed by `where`. axe's source runs through `page.evaluate` (the DevTools protocol),
 * because the app's CSP refuses an injected inline script (README "How axe-core gets into
 * the page"). */
export async function seriousViolations (page, where) {
  await page.evaluate(AXE_SOURCE)
  const violations = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const results = await axe.run(document)
    return results.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' ')) }))
  })
  return violations
    .filter(v => v.impact === 'serious' || v.impact === 'critical')
    .map(v => `${where}: ${v.impact} ${v.id} (${v.help}) at ${v.nodes.join(', ')}`)
}
