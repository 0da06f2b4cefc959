// Follow the teacher, handouts and presence in two browsers (issue 13): the teacher brings
// everyone to the line of their cursor and the student's notes scroll there and highlight
// it, still the same line after text is typed above it; the teacher hands the notes out and the student's copy appears live, writable apart
// from the notes and read-only once the session ends; "Who is here" marks the teacher and
// shows a quiet student as idle (after `?idle_ms=`, not a minute) until they act again.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import {
  launchBrowser, newPage, notes, notesText, openSession, runCleanups, startServer
} from './support.mjs'

after(runCleanups)

test('follow the teacher, a live handout, idle presence', async () => {
  const root = await startServer()
  const browser = await launchBrowser()
  const teacher = await newPage(browser)
  const student = await newPage(browser, { width: 390, height: 844 })
  const problems = []
  for (const [who, page] of [['teacher', teacher], ['student', student]]) {
    page.on('console', message => { if (message.type() === 'error') problems.push(`${who}: ${message.text()}`) })
    page.on('pageerror', error => problems.push(`${who}: ${error.message}`))
    if (process.env.LECTERN_BROWSER_DEBUG === '1') page.on('console', message => console.error(`[${who}] ${message.type()}: ${message.text()}`))
  }
  await openSession(root, teacher, student)

  // Presence: both pages again with a short idle time.
  for (const page of [teacher, student]) {
    await page.goto(`${page.url()}?idle_ms=1500`)
    await page.getByText('connected', { exact: true }).first().waitFor()
  }
  const person = (page, name) => page.getByRole('list', { name: 'People in this session' })
    .getByRole('listitem').filter({ hasText: name })
  await person(student, 'Ada Teacher').getByText('teacher', { exact: true }).waitFor()
  assert.equal(await person(teacher, 'Ben Student').getByText('teacher', { exact: true }).count(), 0)
  await person(teacher, 'Ben Student').getByText('idle', { exact: true }).waitFor()
  await student.getByRole('heading', { name: /Live session/ }).click()
  await student.keyboard.press('Shift')
  await person(teacher, 'Ben Student').getByText('idle', { exact: true }).waitFor({ state: 'detached' })

  // Follow the teacher: sixty lines, the teacher's cursor on line 50.
  const lines = Array.from({ length: 60 }, (_, index) => index === 49 ? '# Part two' : `Line ${index + 1}`)
  await notes(teacher).click()
  await teacher.keyboard.insertText(lines.join('\n'))
  // One edit, one update: once its first line is there, all of it is. (CodeMirror draws only
  // the lines near the screen, so later lines are not looked for in the page.)
  await notes(student).getByText('Line 1', { exact: true }).waitFor()
  const toggle = student.getByRole('button', { name: 'Follow the teacher' })
  assert.equal(await toggle.getAttribute('aria-pressed'), 'true', 'on by default')
  // The teacher's cursor ends on line 60: up ten lines (short lines, no wrapping).
  for (let step = 0; step < 10; step++) await teacher.keyboard.press('ArrowUp')
  await teacher.getByRole('button', { name: 'Bring everyone here' }).click()
  const revealed = student.locator('[data-testid="notes-editor"] .cm-revealed')
  await revealed.waitFor()
  const revealedText = () => revealed.evaluate(line => {
    const copy = line.cloneNode(true)
    for (const caret of copy.querySelectorAll('.cm-remoteCaret')) caret.remove() // the teacher's cursor
    return copy.textContent
  })
  assert.equal(await revealedText(), '# Part two')
  const onScreen = await revealed.evaluate(line => {
    const box = line.getBoundingClientRect()
    return box.top >= 0 && box.bottom <= window.innerHeight
  })
  assert.ok(onScreen, 'the student\'s page scrolled the focused line into view')
  await revealed.waitFor({ state: 'detached' }) // the highlight is brief
  await toggle.click()
  assert.equal(await toggle.getAttribute('aria-pressed'), 'false')
  // Lines typed above the focus before the student catches up do not move it: switched back
  // on, the student's page lands on the same text, three lines further down.
  await notes(teacher).click()
  await teacher.keyboard.press('Control+Home')
  await teacher.keyboard.insertText('Added 1\nAdded 2\nAdded 3\n')
  await notes(student).getByText('Added 1', { exact: true }).waitFor()
  await toggle.click()
  await revealed.waitFor()
  assert.equal(await revealedText(), '# Part two')
  await revealed.waitFor({ state: 'detached' })
  await toggle.click()
  assert.equal(await toggle.getAttribute('aria-pressed'), 'false')

  // A handout: the student's copy appears without a reload.
  await teacher.getByRole('button', { name: 'Hand out the notes' }).click()
  await teacher.getByText('Handed out: 1 copy.').waitFor()
  const copy = student.getByRole('textbox', { name: 'Your copy of the notes' })
  await copy.getByText('Line 1', { exact: true }).waitFor()
  await copy.click()
  await student.keyboard.press('Control+End')
  await student.keyboard.type(' (mine)')
  await copy.getByText('Line 60 (mine)').waitFor()
  assert.ok(!(await notesText(teacher)).includes('(mine)'), 'the copy is the student\'s own')

  // Ended: the copy stays for review, read-only.
  await teacher.getByRole('button', { name: 'End session' }).click()
  await student.waitForFunction(
    () => document.querySelector('[data-testid="fork-editor"]')?.shadowRoot
      ?.querySelector('.cm-content')?.getAttribute('contenteditable') === 'false')
  // The classroom page asks for a running session before the teacher starts one (404).
  const expected = /Failed to load resource: the server responded with a status of 404/
  assert.deepEqual(problems.filter(problem => !expected.test(problem)), [])
})
