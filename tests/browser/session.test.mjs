// The web app in a real headless Chromium (Debian's, driven by playwright-core; never a
// downloaded browser) against the real `lectern serve`, which serves the built app at `/`.
//
// A faculty signs up, creates a classroom, starts a session and types in the notes; a
// student in a second browser context (phone-sized) signs up, joins with the code, opens
// the session and sees the teacher's text, types, and the teacher sees it with the
// student's named cursor. The student asks the AI: the question, with its author's name,
// and the AI's answer (failed: no course material) reach both chats. The teacher locks the
// session: the student sees "Locked by the teacher" and the notes take no typing; after the
// unlock the student writes again. The teacher ends the session: the student's notes turn
// read-only. The student's page learns of each of these from the session's lectern document
// (pushed), never by asking for the session on a timer: it fetches the session once on load
// and at most once per change. On the classroom page the teacher sees the members (faculty first), gets a new
// join code and removes the student, uploads a Markdown file, sees it become ready and
// finds its passage by search. Screenshots of the main screens
// go to target/browser-artifacts/. Every wait is on a condition, with a deadline. A console
// error (a Content-Security-Policy violation, a second copy of yjs, an exception) fails it;
// LECTERN_BROWSER_DEBUG=1 prints the pages' console.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { chromium } from 'playwright-core'
import {
  CHROMIUM, DEADLINE_MS, notes, notesText, onCleanup, runCleanups, signUp, startServer
} from './support.mjs'

const ARTIFACTS = process.env.LECTERN_BROWSER_ARTIFACTS ??
  new URL('../../target/browser-artifacts', import.meta.url).pathname

after(runCleanups)

async function shot (page, name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true })
}

test('a teacher and a student co-edit the session notes in two browsers', async () => {
  mkdirSync(ARTIFACTS, { recursive: true })
  const root = await startServer()

  // The server serves the app itself (same origin as the API and the WebSocket).
  const index = await fetch(`${root}/`)
  const html = await index.text()
  assert.ok(index.ok && html.includes('<div id="app">'),
    `lectern serve does not serve the web app at / (status ${index.status}): ${html.slice(0, 200)}`)

  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true })
  onCleanup(() => browser.close())
  const problems = []
  const newPage = async (who, viewport) => {
    const context = await browser.newContext({ viewport })
    context.setDefaultTimeout(DEADLINE_MS)
    const page = await context.newPage()
    // A refused script or style (the server's CSP), or an uncaught error, fails the test.
    page.on('console', message => { if (message.type() === 'error') problems.push(`${who}: ${message.text()}`) })
    page.on('pageerror', error => problems.push(`${who}: ${error.message}`))
    if (process.env.LECTERN_BROWSER_DEBUG === '1') page.on('console', message => console.error(`[${who}] ${message.type()}: ${message.text()}`))
    return page
  }
  const teacher = await newPage('teacher', { width: 1280, height: 800 })
  // The student is on a phone-sized screen.
  const student = await newPage('student', { width: 390, height: 844 })
  // Every GET of a session by the student's page.
  const sessionGets = []
  student.on('request', request => {
    if (request.method() === 'GET' && /^\/api\/v1\/sessions\/[^/]+$/.test(new URL(request.url()).pathname)) {
      sessionGets.push(request.url())
    }
  })

  // Sign-in errors show the API's message.
  await teacher.goto(`${root}/signin`)
  await teacher.getByLabel('Email').fill('nobody@school.test')
  await teacher.getByLabel('Password').fill('not the password')
  await teacher.getByRole('button', { name: 'Sign in' }).click()
  await teacher.getByRole('alert').filter({ hasText: /\S/ }).waitFor()
  await shot(teacher, '01-sign-in-error')

  await signUp(teacher, root, { name: 'Ada Teacher', email: 'ada@school.test', role: 'faculty' })
  await teacher.getByLabel('New classroom name').fill('Biology 101')
  await teacher.getByRole('button', { name: 'Create classroom' }).click()
  await teacher.getByRole('heading', { name: 'Biology 101' }).waitFor()
  const code = (await teacher.getByLabel('Join code').textContent()).trim()
  assert.match(code, /\S{4,}/)
  await shot(teacher, '02-classroom-faculty')

  await teacher.getByRole('button', { name: 'Start a live session' }).click()
  await teacher.getByRole('heading', { name: /Live session/ }).waitFor()
  await teacher.getByText('connected', { exact: true }).first().waitFor()
  await notes(teacher).click()
  await teacher.keyboard.type('Cells are the unit of life.')

  await signUp(student, root, { name: 'Ben Student', email: 'ben@school.test', role: 'student' })
  await shot(student, '03-classrooms-student')
  await student.getByLabel('Join code').fill(code)
  await student.getByRole('button', { name: 'Join classroom' }).click()
  await student.getByRole('heading', { name: 'Biology 101' }).waitFor()
  await student.getByRole('link', { name: 'Join the live session' }).click()

  // The student sees the teacher's text, and both are listed as here.
  await notes(student).getByText('Cells are the unit of life.').waitFor()
  const people = list => list.getByRole('list', { name: 'People in this session' })
  await people(student).getByText('Ada Teacher').waitFor()
  await people(teacher).getByText('Ben Student').waitFor()

  await notes(student).click()
  await student.keyboard.press('Control+End')
  await student.keyboard.type(' Mitochondria make energy.')
  await notes(teacher).getByText('Mitochondria make energy.').waitFor()
  // The teacher's page shows the student's cursor labelled with the student's name.
  await teacher.locator('.cm-remoteName', { hasText: 'Ben Student' }).waitFor()

  // A question to the AI lands in everyone's chat, with the AI's (here: failed) answer.
  await student.getByLabel('Ask the AI').fill('What do mitochondria do?')
  await student.getByRole('button', { name: 'Ask' }).click()
  const chat = page => page.getByRole('list', { name: 'Chat messages' })
  const question = page => chat(page).locator('.message', { hasText: 'What do mitochondria do?' })
  await question(teacher).getByText('Ben Student').waitFor()
  await question(student).getByText('Ben Student').waitFor()
  // No course material: the answer ends failed, with the reason, on both pages.
  await chat(teacher).locator('.message.ai .error').waitFor()
  await chat(student).locator('.message.ai .error').waitFor()

  await shot(teacher, '04-session-teacher')
  await shot(student, '05-session-student-phone')

  const teacherText = await notesText(teacher)
  const studentText = await notesText(student)
  assert.equal(teacherText, 'Cells are the unit of life. Mitochondria make energy.')
  assert.equal(studentText, teacherText)

  // So far the student's page asked for the session once, on load: nothing changed since.
  assert.equal(sessionGets.length, 1, `asked for the session before any change: ${sessionGets.join(', ')}`)

  // The teacher locks the session: the student sees it, and typing changes nothing.
  await teacher.getByRole('button', { name: 'Lock session' }).click()
  await student.getByText('Locked by the teacher').waitFor()
  await student.waitForFunction(
    () => document.querySelector('[data-testid="notes-editor"]')?.shadowRoot
      ?.querySelector('.cm-content')?.getAttribute('contenteditable') === 'false')
  await notes(student).click()
  await student.keyboard.press('Control+End')
  await student.keyboard.type(' Written while locked.')
  assert.equal(await notesText(student), teacherText)
  await shot(student, '06-session-locked-student')

  // Unlocked, the student writes again and the teacher sees it.
  await teacher.getByRole('button', { name: 'Unlock session' }).click()
  await student.getByText('Locked by the teacher').waitFor({ state: 'detached' })
  await student.waitForFunction(
    () => document.querySelector('[data-testid="notes-editor"]')?.shadowRoot
      ?.querySelector('.cm-content')?.getAttribute('contenteditable') === 'true')
  await notes(student).click()
  await student.keyboard.press('Control+End')
  await student.keyboard.type(' Ribosomes make proteins.')
  await notes(teacher).getByText('Ribosomes make proteins.').waitFor()
  assert.equal(await notesText(teacher), `${teacherText} Ribosomes make proteins.`)

  // The teacher ends the session: the student's notes turn read-only.
  await teacher.getByRole('button', { name: 'End session' }).click()
  const notesRegion = student.getByRole('region', { name: 'Notes' })
  await notesRegion.getByText('The session has ended.').waitFor()
  await notesRegion.getByText('Read only.').waitFor()
  await student.getByRole('heading', { name: 'Live session (ended)' }).waitFor()
  assert.equal(await notes(student).getAttribute('contenteditable'), 'false')
  // Once on load, then once for each of lock, unlock and end (the documents' new access):
  // a page polling the session would have asked many more times by now.
  assert.ok(sessionGets.length >= 1 && sessionGets.length <= 4,
    `the student's page asked for the session ${sessionGets.length} times: ${sessionGets.join(', ')}`)
  await shot(student, '07-session-ended-student')

  // Sign out returns to the sign-in screen.
  await student.getByRole('button', { name: 'Sign out' }).click()
  await student.getByRole('heading', { name: 'Sign in' }).waitFor()

  // The classroom page lists the members, faculty first; the teacher gets a new join code
  // and removes the student.
  await teacher.getByRole('link', { name: '← Classroom' }).click()
  const members = teacher.getByRole('list', { name: 'Members' })
  await members.getByText('Ben Student').waitFor()
  assert.match(await members.getByRole('listitem').first().textContent(), /Ada Teacher/)
  await teacher.getByRole('button', { name: 'New join code' }).click()
  await teacher.waitForFunction(
    old => document.querySelector('[aria-label="Join code"]')?.textContent.trim() !== old, code)
  await shot(teacher, '08-classroom-members')
  await teacher.getByRole('button', { name: 'Remove Ben Student' }).click()
  await members.getByText('Ben Student').waitFor({ state: 'detached' })

  // Course material: the teacher uploads a Markdown file, sees it become ready, and finds
  // its passage by meaning, with the file and the place.
  await teacher.getByLabel(/Upload a file/).setInputFiles({
    name: 'cells.md',
    mimeType: 'text/markdown',
    buffer: Buffer.from('# Cells\n\nMitochondria are the powerhouse of the cell: they make energy.\n')
  })
  const materials = teacher.getByRole('list', { name: 'Materials' })
  await materials.getByRole('listitem').filter({ hasText: 'cells.md' }).getByText('(ready)').waitFor()
  await teacher.getByLabel('Search the material').fill('Which organelle produces energy?')
  await teacher.getByRole('button', { name: 'Search' }).click()
  const hit = teacher.getByRole('list', { name: 'Search results' }).getByRole('listitem').first()
  await hit.getByText('Mitochondria are the powerhouse').waitFor()
  assert.match(await hit.textContent(), /cells\.md · Cells · lines? \d/)
  await shot(teacher, '09-classroom-materials')

  assert.deepEqual(problems.filter(problem => !expectedProblem(problem)), [])
})

/** Console errors the scenario causes on purpose, logged by Chromium as failed resources:
 * the failed sign-in (401), the classroom with no session yet (404), and the AI request on
 * a server without AI (503). */
function expectedProblem (text) {
  return /Failed to load resource: the server responded with a status of (401|404|503)/.test(text)
}
