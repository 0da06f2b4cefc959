// Offline convergence in real Chromium: the student's network is cut (Chromium's offline
// emulation), both sides type, the network comes back, and both editors converge to the
// same text holding both edits. The student's notes say what happens to their edits:
// "saved" once the server stored them, "offline" with the edits kept meanwhile.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { runCleanups, startServer, launchBrowser, newPage, openSession, notes, notesText, until } from './support.mjs'

after(runCleanups)

test('edits made while the student is offline converge once it is back', async () => {
  const root = await startServer()
  const browser = await launchBrowser()
  const teacher = await newPage(browser)
  const student = await newPage(browser)
  await openSession(root, teacher, student)

  await notes(teacher).click()
  await teacher.keyboard.type('Shared start.')
  await until(async () => (await notesText(student)) === 'Shared start.',
    async () => `student sees ${JSON.stringify(await notesText(student))}`)
  const notesStatus = page => page.getByRole('region', { name: 'Notes' }).getByRole('status').first()
  await teacher.getByRole('region', { name: 'Notes' }).getByText('saved', { exact: true }).waitFor()

  await student.context().setOffline(true)
  await notes(student).click()
  await student.keyboard.press('Control+End')
  await student.keyboard.type(' Student offline.')
  await notes(teacher).click()
  await teacher.keyboard.press('Control+Home')
  await teacher.keyboard.type('Teacher online. ')
  await notesStatus(student).getByText('offline', { exact: true }).waitFor()
  await notesStatus(student).getByText('edits kept here, sent when back online').waitFor()
  // Neither sees the other's edit while the student is cut off.
  assert.ok(!(await notesText(teacher)).includes('Student offline.'))
  assert.ok(!(await notesText(student)).includes('Teacher online.'))

  await student.context().setOffline(false)
  const converged = async () => {
    const [a, b] = [await notesText(teacher), await notesText(student)]
    return a === b && a.includes('Student offline.') && a.includes('Teacher online.')
  }
  await until(converged, async () =>
    `teacher ${JSON.stringify(await notesText(teacher))}, student ${JSON.stringify(await notesText(student))}`)
  assert.equal(await notesText(teacher), 'Teacher online. Shared start. Student offline.')
  await notesStatus(student).getByText('saved', { exact: true }).waitFor()
})
