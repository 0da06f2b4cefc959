// A class in three browser contexts: a teacher and two students (one on a phone-sized
// screen), against a fake OpenAI-compatible model server (support.mjs `startFakeModel`)
// that answers every request with an SSE stream of a few deltas and `[DONE]`, holding the
// stream halfway until the test lets it go.
//
// All three co-edit the notes, converge, and see each other's named cursors; a session page
// holds one WebSocket for all its documents. The teacher
// uploads a Markdown file and sees it ready, then asks the AI in the chat: while the answer
// is held halfway, all three see its first words and "AI is writing…", and the teacher the
// job streaming with a Cancel button; the whole answer then reaches all three chats, its
// citation opens a dialog with the cited passage's text, and the job shows done. A second
// question, cancelled while it streams, shows cancelled. The teacher locks the session:
// both students' editors turn read-only; ends it: both see the end and a read-only review,
// which a student later reopens from the classroom page's past sessions.
// Screenshots go to LECTERN_BROWSER_ARTIFACTS.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import {
  launchBrowser, newPage, notes, notesText, openSession, runCleanups, startFakeModel, startServer, until,
  uploadCells
} from './support.mjs'

const ARTIFACTS = process.env.LECTERN_BROWSER_ARTIFACTS ??
  new URL('../../target/browser-artifacts', import.meta.url).pathname

after(runCleanups)

// Every completion request streams this, stopping after two deltas until `release()`.
const ANSWER = ['Mitochondria ', 'make ', 'ATP ', '[1]', '.']

async function shot (page, name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true })
}

test('a teacher and two students co-edit, see an AI answer stream in with its citation, then a lock and the end', async () => {
  mkdirSync(ARTIFACTS, { recursive: true })
  const model = await startFakeModel(() => ({ deltas: ANSWER, holdAt: 2 }))
  const root = await startServer(undefined, { aiBaseUrl: model.url })
  const browser = await launchBrowser()
  const teacher = await newPage(browser)
  const ben = await newPage(browser, { width: 390, height: 844 })
  const cai = await newPage(browser)
  const students = [ben, cai]
  const everyone = [teacher, ...students]
  const problems = []
  for (const [who, page] of [['teacher', teacher], ['ben', ben], ['cai', cai]]) {
    page.on('pageerror', error => problems.push(`${who}: ${error.message}`))
  }
  const benSockets = []
  ben.on('websocket', socket => benSockets.push(new URL(socket.url()).pathname))
  await openSession(root, teacher, ben, cai)

  // Co-editing: each types a sentence; the three copies converge to one text holding all.
  await notes(teacher).click()
  await teacher.keyboard.type('Cells are the unit of life.')
  await until(async () => (await notesText(cai)) === 'Cells are the unit of life.',
    async () => `Cai sees ${JSON.stringify(await notesText(cai))}`)
  for (const [page, sentence] of [[ben, ' Ben: membranes.'], [cai, ' Cai: nuclei.']]) {
    await notes(page).click()
    await page.keyboard.press('Control+End')
    await page.keyboard.type(sentence)
  }
  const texts = async () => Promise.all(everyone.map(notesText))
  await until(async () => {
    const [a, b, c] = await texts()
    return a === b && b === c && ['unit of life.', 'Ben: membranes.', 'Cai: nuclei.'].every(part => a.includes(part))
  }, async () => `the notes read ${JSON.stringify(await texts())}`)
  // Everyone sees the others' cursors, labelled with their names.
  const cursor = (page, name) => page.locator('.cm-remoteName', { hasText: name })
  await cursor(teacher, 'Ben Student').waitFor()
  await cursor(teacher, 'Cai Student').waitFor()
  await cursor(ben, 'Cai Student').waitFor()
  await cursor(cai, 'Ada Teacher').waitFor()
  // The session page holds one socket (the multiplexed /ws) for the notes, the chat, the
  // lectern document and the mind map; none of the session's documents has its own.
  assert.deepEqual(benSockets.filter(path => path === '/ws' || path.startsWith('/ws/session')), ['/ws'])

  // The teacher uploads course material and waits for it to be ready.
  await uploadCells(teacher)

  await teacher.getByLabel('Ask the AI').fill('What do mitochondria make?')
  await teacher.getByRole('button', { name: 'Ask', exact: true }).click()

  // While the model is held mid-answer, everyone sees its first words stream in and that
  // the AI writes (from the job feed: the students did not start the job), and the
  // teacher can cancel it.
  const chat = page => page.getByRole('list', { name: 'Chat messages' })
  for (const page of everyone) {
    await chat(page).locator('.message.ai', { hasText: 'Mitochondria make' }).waitFor()
    await page.getByText('AI is writing…').waitFor()
  }
  assert.equal(await chat(ben).locator('.message.ai', { hasText: 'ATP' }).count(), 0,
    'the held part of the answer has not arrived')
  const jobs = teacher.getByRole('list', { name: 'AI jobs' })
  const chatJob = jobs.getByRole('listitem').filter({ hasText: 'chat' })
  await chatJob.getByText('streaming').waitFor()
  await chatJob.getByRole('button', { name: 'Cancel chat' }).waitFor()
  model.release()

  const answer = page => chat(page).locator('.message.ai', { hasText: 'Mitochondria make ATP [1].' })
  for (const page of everyone) await answer(page).waitFor()

  // The job's status, from the session's job feed, ends done.
  await chatJob.getByText('done').waitFor()
  // Nothing streams any more: the room's indicator is gone.
  for (const page of students) await page.getByText('AI is writing…').waitFor({ state: 'detached' })
  await shot(teacher, 'class-01-teacher-answer')
  await shot(ben, 'class-02-student-phone-answer')

  // The citation opens a dialog with the cited passage; Escape closes it.
  for (const page of [teacher, ben]) {
    await answer(page).getByRole('button', { name: /cells\.md/ }).click()
    const dialog = page.getByRole('dialog')
    await dialog.getByText('Mitochondria are the powerhouse of the cell').waitFor()
    assert.match(await dialog.textContent(), /cells\.md/)
    assert.ok(await dialog.evaluate(node => node.contains(document.activeElement)),
      'focus did not move into the citation dialog')
    if (page === ben) await shot(ben, 'class-03-student-phone-citation')
    await page.keyboard.press('Escape')
    await dialog.waitFor({ state: 'hidden' })
  }

  // A second question, cancelled while it streams, ends cancelled.
  await teacher.getByLabel('Ask the AI').fill('What do ribosomes make?')
  await teacher.getByRole('button', { name: 'Ask', exact: true }).click()
  const second = jobs.getByRole('listitem').filter({ hasText: 'streaming' })
  await second.getByRole('button', { name: 'Cancel chat' }).click()
  await jobs.getByRole('listitem').filter({ hasText: 'cancelled' }).waitFor()
  for (const page of students) await page.getByText('AI is writing…').waitFor({ state: 'detached' })
  model.release()

  // Locked: both students' editors take no typing.
  const editable = page => page.evaluate(() => document.querySelector('[data-testid="notes-editor"]')
    ?.shadowRoot?.querySelector('.cm-content')?.getAttribute('contenteditable'))
  await teacher.getByRole('button', { name: 'Lock session' }).click()
  for (const page of students) {
    await page.getByText('Locked by the teacher').waitFor()
    await until(async () => (await editable(page)) === 'false', async () => `contenteditable ${await editable(page)}`)
  }
  assert.equal(await editable(teacher), 'true', 'the teacher still writes')

  // Ended: both students see it and review the notes read-only.
  const final = await notesText(teacher)
  await teacher.getByRole('button', { name: 'End session' }).click()
  for (const page of students) {
    await page.getByText('The session has ended.').first().waitFor()
    await until(async () => (await editable(page)) === 'false', async () => `contenteditable ${await editable(page)}`)
    assert.equal(await notesText(page), final)
  }
  await shot(cai, 'class-04-student-ended')

  // Later, from the classroom page: the ended session is listed and opens for review.
  await cai.getByRole('link', { name: '← Classroom' }).click()
  await cai.getByText('No live session right now.').waitFor()
  await cai.getByRole('list', { name: 'Past sessions' }).getByRole('link').click()
  await until(async () => (await notesText(cai)) === final, async () => `Cai reviews ${JSON.stringify(await notesText(cai))}`)
  assert.equal(await editable(cai), 'false', 'the review is read-only')
  assert.deepEqual(problems, [])
})
