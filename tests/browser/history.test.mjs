// After class in the web app (issue 14): the teacher keeps a checkpoint, a student
// vandalises the notes, the teacher previews the checkpoint and restores it, and both
// browsers' editors follow the restore live; "Undo restore" brings the vandalism back and a
// second restore removes it; the contributions table counts what the student typed; the
// notes download as a PDF and the student's page offers downloads but no history.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import {
  launchBrowser, newPage, notes, notesText, openSession, runCleanups, startServer, until
} from './support.mjs'

after(runCleanups)

test('a checkpoint is restored live in both browsers; contributions and downloads', async () => {
  const root = await startServer()
  const browser = await launchBrowser()
  const teacher = await newPage(browser)
  const student = await newPage(browser)
  const problems = []
  for (const [who, page] of [['teacher', teacher], ['student', student]]) {
    page.on('pageerror', error => problems.push(`${who}: ${error.message}`))
  }
  await openSession(root, teacher, student)

  await notes(student).click()
  await student.keyboard.insertText('Cells are small.')
  await until(async () => (await notesText(teacher)) === 'Cells are small.', async () => `teacher sees ${await notesText(teacher)}`)

  const history = teacher.getByRole('region', { name: 'After class' })
  await history.getByRole('button', { name: 'Keep a checkpoint' }).click()
  await history.getByRole('button', { name: 'Show history' }).click()
  const versions = history.getByRole('list', { name: 'Versions of the notes' })
  await versions.getByText('Checkpoint: Checkpoint').waitFor()

  // The student vandalises the notes.
  await notes(student).click()
  await student.keyboard.press('Control+A')
  await student.keyboard.insertText('JUNK')
  await until(async () => (await notesText(teacher)) === 'JUNK', async () => `teacher sees ${await notesText(teacher)}`)

  const checkpoint = versions.getByRole('listitem').filter({ hasText: 'Checkpoint: Checkpoint' })
  await checkpoint.getByRole('button', { name: 'Preview' }).click()
  await history.getByLabel('Version preview').getByText('Cells are small.').waitFor()
  await checkpoint.getByRole('button', { name: 'Restore' }).click()
  for (const page of [teacher, student]) {
    await until(async () => (await notesText(page)) === 'Cells are small.', async () => `restored? ${await notesText(page)}`)
  }
  await history.getByRole('button', { name: 'Undo restore' }).click()
  await until(async () => (await notesText(student)) === 'JUNK', async () => `undone? ${await notesText(student)}`)
  await versions.getByRole('listitem').filter({ hasText: 'Checkpoint: Checkpoint' }).getByRole('button', { name: 'Restore' }).click()
  await until(async () => (await notesText(student)) === 'Cells are small.', async () => `restored again? ${await notesText(student)}`)

  await history.getByRole('button', { name: 'Show contributions' }).click()
  const row = history.getByRole('table', { name: 'Contributions' }).getByRole('row').filter({ hasText: 'Ben Student' })
  await row.waitFor()
  const cells = await row.getByRole('cell').allTextContents()
  assert.deepEqual(cells.slice(1, 3), [String('Cells are small.'.length + 'JUNK'.length), String('Cells are small.'.length)])

  const [download] = await Promise.all([
    teacher.waitForEvent('download'),
    history.getByRole('button', { name: 'Notes as PDF' }).click()
  ])
  assert.equal(download.suggestedFilename(), 'notes.pdf')
  const pdf = await (async () => {
    const chunks = []
    for await (const chunk of await download.createReadStream()) chunks.push(chunk)
    return Buffer.concat(chunks)
  })()
  assert.equal(pdf.subarray(0, 5).toString(), '%PDF-')

  const studentPanel = student.getByRole('region', { name: 'After class' })
  await studentPanel.getByRole('button', { name: 'Notes as PDF' }).waitFor()
  assert.equal(await studentPanel.getByRole('button', { name: 'Show history' }).count(), 0)
  assert.deepEqual(problems, [])
})
