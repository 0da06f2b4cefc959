// AI jobs and citations in the web app, against a fake OpenAI-compatible model server
// written here (node:http): `POST /v1/chat/completions` answers an SSE stream of a few
// deltas and `[DONE]`, holding the stream halfway until the test lets it go. The teacher
// uploads a Markdown file and asks the AI in the chat; while the answer streams the
// student sees "AI is writing…" and the teacher the job streaming with a Cancel button; the
// answer reaches the teacher's and the student's chat, its citation opens a dialog with
// the cited passage's text, and the job's status shows done. A second question, cancelled
// while it streams, shows cancelled.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import { launchBrowser, newPage, onCleanup, openSession, runCleanups, startServer } from './support.mjs'

after(runCleanups)

const ANSWER = ['Mitochondria ', 'make ', 'ATP ', '[1]', '.']

/** The fake model: every completion request streams ANSWER, stopping after two deltas
 * until `release()` is called. Resolves with its /v1 URL and `release`. */
async function startFakeModel () {
  const held = []
  const release = () => { for (const go of held.splice(0)) go() }
  const server = createServer((request, response) => {
    if (request.method !== 'POST' || request.url !== '/v1/chat/completions') {
      response.writeHead(404).end()
      return
    }
    request.resume()
    request.on('end', async () => {
      response.writeHead(200, { 'content-type': 'text/event-stream' })
      const event = body => response.write(`data: ${JSON.stringify(body)}\n\n`)
      for (const [index, content] of ANSWER.entries()) {
        if (index === 2) await new Promise(resolve => held.push(resolve))
        event({ choices: [{ index: 0, delta: { content }, finish_reason: null }] })
      }
      event({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })
      event({ choices: [], usage: { prompt_tokens: 10, completion_tokens: ANSWER.length, total_tokens: 10 + ANSWER.length } })
      response.end('data: [DONE]\n\n')
    })
  })
  await new Promise(resolve => server.listen(0, '127.0.0.1', resolve))
  onCleanup(() => new Promise(resolve => {
    release()
    server.closeAllConnections()
    server.close(resolve)
  }))
  return { url: `http://127.0.0.1:${server.address().port}/v1`, release }
}

test('an AI chat answer reaches everyone, with a citation that opens its passage', async () => {
  const model = await startFakeModel()
  const root = await startServer(undefined, { aiBaseUrl: model.url })
  const browser = await launchBrowser()
  const teacher = await newPage(browser)
  const student = await newPage(browser, { width: 390, height: 844 })
  const problems = []
  for (const [who, page] of [['teacher', teacher], ['student', student]]) {
    page.on('pageerror', error => problems.push(`${who}: ${error.message}`))
  }
  await openSession(root, teacher, student)
  const sessionUrl = teacher.url()

  // The teacher uploads course material and waits for it to be ready.
  await teacher.getByRole('link', { name: '← Classroom' }).click()
  await teacher.getByLabel(/Upload a file/).setInputFiles({
    name: 'cells.md',
    mimeType: 'text/markdown',
    buffer: Buffer.from('# Cells\n\nMitochondria are the powerhouse of the cell: they make ATP.\n')
  })
  await teacher.getByRole('list', { name: 'Materials' }).getByRole('listitem')
    .filter({ hasText: 'cells.md' }).getByText('(ready)').waitFor()
  await teacher.goto(sessionUrl)
  await teacher.getByText('connected', { exact: true }).first().waitFor()

  await teacher.getByLabel('Ask the AI').fill('What do mitochondria make?')
  await teacher.getByRole('button', { name: 'Ask', exact: true }).click()

  // While the model is held mid-answer, everyone sees that the AI writes (from the job
  // feed: the student did not start the job), and the teacher can cancel it.
  await student.getByText('AI is writing…').waitFor()
  const jobs = teacher.getByRole('list', { name: 'AI jobs' })
  const chatJob = jobs.getByRole('listitem').filter({ hasText: 'chat' })
  await chatJob.getByText('streaming').waitFor()
  await chatJob.getByRole('button', { name: 'Cancel chat' }).waitFor()
  model.release()

  const answer = page => page.getByRole('list', { name: 'Chat messages' })
    .locator('.message.ai', { hasText: 'Mitochondria make ATP [1].' })
  await answer(teacher).waitFor()
  await answer(student).waitFor()

  // The job's status, from the session's job feed, ends done.
  await chatJob.getByText('done').waitFor()
  // Nothing streams any more: the room's indicator is gone.
  await student.getByText('AI is writing…').waitFor({ state: 'detached' })

  // The citation opens a dialog with the cited passage; Escape closes it.
  for (const page of [teacher, student]) {
    await answer(page).getByRole('button', { name: /cells\.md/ }).click()
    const dialog = page.getByRole('dialog')
    await dialog.getByText('Mitochondria are the powerhouse of the cell').waitFor()
    assert.match(await dialog.textContent(), /cells\.md/)
    assert.ok(await dialog.evaluate(node => node.contains(document.activeElement)),
      'focus did not move into the citation dialog')
    await page.keyboard.press('Escape')
    await dialog.waitFor({ state: 'hidden' })
  }

  // A second question, cancelled while it streams, ends cancelled.
  await teacher.getByLabel('Ask the AI').fill('What do ribosomes make?')
  await teacher.getByRole('button', { name: 'Ask', exact: true }).click()
  const second = jobs.getByRole('listitem').filter({ hasText: 'streaming' })
  await second.getByRole('button', { name: 'Cancel chat' }).click()
  await jobs.getByRole('listitem').filter({ hasText: 'cancelled' }).waitFor()
  await student.getByText('AI is writing…').waitFor({ state: 'detached' })
  model.release()
  assert.deepEqual(problems, [])
})
