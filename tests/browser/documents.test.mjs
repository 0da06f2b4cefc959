// The documents AI jobs make, rendered as what they are, against a fake OpenAI-compatible
// model server (support.mjs `startFakeModel`) that answers by what the request asks: an
// indented outline for a mind map, JSON for a quiz, flashcards, exam or lesson plan.
// - The mind map: with the stream held midway, teacher and student both see the first
//   nodes of the tree, then all of them, nested.
// - The teacher uploads a Markdown file and makes a quiz; the student opens it, answers,
//   checks it, sees the score and the wrong answer marked with the right one, tries again,
//   and an explanation's `[1]` opens the cited passage. The teacher hands the quiz out: the
//   student's "Your copy of Quiz 1" appears without a reload, and they answer and grade it.
// - Flashcards flip. While an exam is written, faculty see its raw draft and students do
//   not; done, its answers show for faculty on request only. A lesson plan's timeline is a
//   table.
// - A translation of the notes is rendered Markdown. The notes' Markdown preview renders
//   live and shows markup typed in the notes as text.
// axe-core checks the new screens; screenshots go to LECTERN_BROWSER_ARTIFACTS.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import {
  launchBrowser, newPage, notes, openSession, runCleanups, seriousViolations, startFakeModel, startServer,
  uploadCells
} from './support.mjs'

const ARTIFACTS = process.env.LECTERN_BROWSER_ARTIFACTS ??
  new URL('../../target/browser-artifacts', import.meta.url).pathname

after(runCleanups)

// "Cells" is the topic the teacher types: the outline's first line repeats it and adds no
// node, so the map has the six nodes below the root "Cells" plus the root.
const OUTLINE = [
  '- Cells\n',
  '  - Organelles\n',
  '    - Mitochondria\n',
  // The stream is held here: the tree has Cells, Organelles and Mitochondria.
  '    - Ribosomes\n',
  '  - Membrane\n',
  '    - Lipid bilayer\n'
]
const HOLD_MINDMAP_AT = 3

const QUIZ = {
  title: 'Cells quiz',
  questions: [
    { prompt: 'What makes ATP?', options: ['Mitochondria', 'Ribosomes', 'Nucleus', 'Membrane'], answer: 0, explanation: 'Mitochondria make ATP [1].', marks: 1 },
    { prompt: 'What makes proteins?', options: ['Mitochondria', 'Ribosomes', 'Vacuole', 'Membrane'], answer: 1, explanation: 'Ribosomes build proteins.', marks: 1 },
    { prompt: 'What surrounds the cell?', options: ['Nucleus', 'Ribosomes', 'Membrane', 'Golgi'], answer: 2, explanation: 'The membrane encloses it.', marks: 1 }
  ]
}

const FLASHCARDS = {
  title: 'Cells cards',
  cards: [
    { front: 'ATP', back: 'The energy currency of the cell.' },
    { front: 'Ribosome', back: 'Where proteins are made.' }
  ]
}

const EXAM = {
  title: 'Cells exam',
  duration_minutes: 30,
  sections: [{
    title: 'Part A',
    questions: [
      { prompt: 'Which organelle makes ATP?', kind: 'multiple_choice', options: ['Mitochondria', 'Ribosome', 'Nucleus', 'Vacuole'], answer: 0, marks: 2 },
      { prompt: 'What does a ribosome do?', kind: 'short_answer', model_answer: 'It builds proteins from amino acids.', marks: 3 },
      { prompt: 'Discuss the cell membrane.', kind: 'essay', guidance: 'Mentions the lipid bilayer and transport.', marks: 5 }
    ]
  }],
  total_marks: 10
}

const LESSON_PLAN = {
  title: 'Cells lesson',
  objectives: ['Name the organelles'],
  timeline: [{ minutes: 10, activity: 'Warm-up quiz' }, { minutes: 20, activity: 'Draw a cell' }, { minutes: 15, activity: 'Exit ticket' }],
  activities: [{ name: 'Cell drawing', description: 'Pairs draw and label a cell.' }],
  assessment: ['Exit ticket answers']
}

const TRANSLATION = ['# Le plan\n\n', '- **ATP** : la monnaie ', 'énergétique de la cellule\n']

/** Cuts `text` into pieces of `size` characters, the deltas of a stream. */
function pieces (text, size) {
  const out = []
  for (let at = 0; at < text.length; at += size) out.push(text.slice(at, at + size))
  return out
}

/** The fake model's answer (support.mjs `startFakeModel`) to a request: OUTLINE for a
 * mind map (held before line HOLD_MINDMAP_AT until `release()`), the JSON of a quiz,
 * flashcards, exam (held after its second piece) or lesson plan, TRANSLATION for a
 * translation. */
function answer (body) {
  // The server's prompts: crates/ai/src/structured/prompt.rs.
  const asked = body.messages.map(message => message.content).join('\n')
  if (asked.includes('mind map')) return { deltas: OUTLINE, holdAt: HOLD_MINDMAP_AT }
  if (asked.includes('Write a quiz')) return { deltas: pieces(JSON.stringify(QUIZ), 40) }
  if (asked.includes('flashcards')) return { deltas: pieces(JSON.stringify(FLASHCARDS), 40) }
  if (asked.includes('exam paper')) return { deltas: pieces(JSON.stringify(EXAM), 40), holdAt: 2 }
  if (asked.includes('You are a translator')) return { deltas: TRANSLATION }
  if (asked.includes('lesson plan')) return { deltas: pieces(JSON.stringify(LESSON_PLAN), 40) }
  return undefined
}

async function shot (page, name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true })
}

/** The labels of the mind map's nodes, in tree order. */
function mindmapLabels (page) {
  return page.getByRole('list', { name: 'Mind map' }).locator('.node').allTextContents()
}

test('the mind map grows live for everyone; a quiz is graded and cites its source; flashcards flip; exam answers for faculty only; Markdown', async () => {
  mkdirSync(ARTIFACTS, { recursive: true })
  const model = await startFakeModel(answer)
  const root = await startServer(undefined, { aiBaseUrl: model.url })
  const browser = await launchBrowser()
  const teacher = await newPage(browser)
  const student = await newPage(browser, { width: 390, height: 844 })
  const problems = []
  for (const [who, page] of [['teacher', teacher], ['student', student]]) {
    page.on('pageerror', error => problems.push(`${who}: ${error.message}`))
  }
  await openSession(root, teacher, student)

  // Course material, so that the quiz's explanation cites a passage.
  await uploadCells(teacher)

  // The notes preview: Markdown rendered as elements, what looks like markup shown as
  // text, a link only to http(s), live while it is on.
  await notes(teacher).click()
  await teacher.keyboard.insertText('# Plan\n\n- **ATP** <b>raw</b>\n- [bad](javascript:alert(1)) and [good](https://example.org/)\n')
  await teacher.getByRole('button', { name: 'Preview' }).click()
  const preview = teacher.getByRole('region', { name: 'Notes preview' })
  await preview.getByRole('heading', { name: 'Plan' }).waitFor()
  assert.equal(await preview.locator('strong').textContent(), 'ATP')
  assert.equal(await preview.locator('b').count(), 0)
  assert.match(await preview.getByRole('listitem').first().textContent(), /<b>raw<\/b>/)
  assert.deepEqual(await preview.getByRole('link').evaluateAll(links => links.map(link => link.getAttribute('href'))),
    ['https://example.org/'])
  await teacher.keyboard.insertText('Mitochondria *make* ATP.')
  await preview.locator('em', { hasText: 'make' }).waitFor()
  assert.equal(await teacher.getByRole('button', { name: 'Preview' }).getAttribute('aria-pressed'), 'true')
  await shot(teacher, 'notes-preview')

  // The mind map: while the model is held midway, both see the nodes written so far.
  await teacher.getByLabel('Question or topic').fill('Cells')
  await teacher.getByRole('button', { name: 'Draw a mind map' }).click()
  for (const page of [teacher, student]) {
    await page.getByRole('list', { name: 'Mind map' }).getByText('Mitochondria').waitFor()
    assert.deepEqual(await mindmapLabels(page), ['Cells', 'Organelles', 'Mitochondria'])
  }
  await shot(student, 'mindmap-growing-phone')
  model.release()
  for (const page of [teacher, student]) {
    await page.getByRole('list', { name: 'Mind map' }).getByText('Lipid bilayer').waitFor()
    assert.deepEqual(await mindmapLabels(page),
      ['Cells', 'Organelles', 'Mitochondria', 'Ribosomes', 'Membrane', 'Lipid bilayer'])
  }
  // Nested: Mitochondria sits in Organelles' list, which sits in the root's.
  const organelles = student.getByRole('list', { name: 'Mind map' }).getByText('Organelles', { exact: true })
  assert.deepEqual(await organelles.evaluate(node => [...node.parentElement.querySelectorAll(':scope > ul > li > .node')]
    .map(child => child.textContent)), ['Mitochondria', 'Ribosomes'])
  await shot(teacher, 'mindmap')
  await shot(student, 'mindmap-phone')
  const found = await seriousViolations(student, 'mind map (student, phone)')

  // The quiz: the teacher makes it; the student opens it from the list of AI documents.
  await teacher.getByRole('button', { name: 'Make a quiz' }).click()
  const made = page => page.getByRole('list', { name: 'AI documents' }).getByRole('listitem').filter({ hasText: 'Quiz 1' })
  await made(teacher).getByText('done').waitFor()
  await made(student).getByRole('button', { name: 'Open quiz 1' }).click()
  await student.getByRole('heading', { name: 'Cells quiz' }).waitFor()
  // "Who is here" on the teacher's page says where the student is.
  await teacher.getByRole('list', { name: 'People in this session' }).getByRole('listitem')
    .filter({ hasText: 'Ben Student' }).getByText('· viewing Quiz 1').waitFor()
  const question = prompt => student.getByRole('group', { name: prompt })
  await question('What makes ATP?').getByLabel('Mitochondria').check()
  await question('What makes proteins?').getByLabel('Ribosomes').check()
  await question('What surrounds the cell?').getByLabel('Nucleus').check()
  await student.getByRole('button', { name: 'Check answers' }).click()
  await student.getByRole('status').filter({ hasText: 'Score: 2 / 3' }).waitFor()
  const wrong = student.locator('.question.incorrect')
  assert.equal(await wrong.count(), 1)
  assert.match(await wrong.textContent(), /What surrounds the cell\?.*Incorrect\. The answer is: Membrane.*The membrane encloses it\./)
  assert.equal(await student.locator('.question.correct').count(), 2)
  await shot(student, 'quiz-graded-phone')
  found.push(...await seriousViolations(student, 'graded quiz (student, phone)'))
  // The explanation's [1] opens the cited passage.
  await question('What makes ATP?').locator('..').getByRole('button', { name: /^\[1\] cells\.md/ }).click()
  const dialog = student.getByRole('dialog')
  await dialog.getByText('Mitochondria are the powerhouse of the cell').waitFor()
  await student.keyboard.press('Escape')
  await dialog.waitFor({ state: 'hidden' })
  // "Try again" clears the answers and the grades.
  await student.getByRole('button', { name: 'Try again' }).click()
  await student.getByRole('button', { name: 'Check answers' }).waitFor()
  assert.equal(await student.locator('.question.incorrect, .question.correct').count(), 0)
  assert.equal(await question('What surrounds the cell?').getByLabel('Nucleus').isChecked(), false)

  // The teacher hands the quiz out: the student's own copy appears (pushed, no reload) as
  // a quiz they answer and grade, apart from the quiz they have open.
  await made(teacher).getByRole('button', { name: 'Hand out Quiz 1' }).click()
  await made(teacher).getByText('Handed out: 1 copy.').waitFor()
  const copy = student.getByRole('region', { name: 'Your copy of Quiz 1' })
  await copy.getByRole('group', { name: 'What makes ATP?' }).getByLabel('Mitochondria').check()
  await copy.getByRole('group', { name: 'What makes proteins?' }).getByLabel('Vacuole').check()
  await copy.getByRole('group', { name: 'What surrounds the cell?' }).getByLabel('Membrane').check()
  await copy.getByRole('button', { name: 'Check answers' }).click()
  await copy.getByRole('status').filter({ hasText: 'Score: 2 / 3' }).waitFor()
  assert.match(await copy.locator('.question.incorrect').textContent(),
    /What makes proteins\?.*Incorrect\. The answer is: Ribosomes/)
  await shot(student, 'quiz-copy-graded-phone')
  found.push(...await seriousViolations(student, 'graded copy of the quiz (student, phone)'))

  // Flashcards: one card at a time, flipped by a toggle button.
  await teacher.getByRole('button', { name: 'Make flashcards' }).click()
  const cards = teacher.getByRole('list', { name: 'AI documents' }).getByRole('listitem').filter({ hasText: 'Flashcards 1' })
  await cards.getByRole('button', { name: 'Open flashcards 1' }).click()
  await teacher.getByRole('heading', { name: 'Cells cards' }).waitFor()
  await teacher.getByText('Card 1 of 2').waitFor()
  const flip = teacher.getByRole('button', { name: 'Flip card' })
  await teacher.locator('.flashcard').getByText('ATP', { exact: true }).waitFor()
  await flip.click()
  await teacher.locator('.flashcard').getByText('The energy currency of the cell.').waitFor()
  assert.equal(await flip.getAttribute('aria-pressed'), 'true')
  await teacher.getByRole('button', { name: 'Next' }).click()
  await teacher.getByText('Card 2 of 2').waitFor()
  await teacher.locator('.flashcard').getByText('Ribosome', { exact: true }).waitFor()
  await shot(teacher, 'flashcards')
  found.push(...await seriousViolations(teacher, 'flashcards (teacher)'))

  // An exam: while it is written, faculty see the raw draft and students only that the AI
  // writes (the draft holds the answers). Done, its answers show for faculty on request
  // and never for students.
  await teacher.getByRole('button', { name: 'Make an exam' }).click()
  const exam = page => page.getByRole('list', { name: 'AI documents' }).getByRole('listitem').filter({ hasText: 'Exam 1' })
  await exam(teacher).getByText('streaming').waitFor()
  await exam(teacher).getByRole('button', { name: 'Open exam 1' }).click()
  await exam(student).getByRole('button', { name: 'Open exam 1' }).click()
  await teacher.getByRole('article').getByText('AI is writing…').waitFor()
  await teacher.getByLabel('Draft').getByText('Cells exam', { exact: false }).waitFor()
  await student.getByRole('article').getByText('AI is writing…').waitFor()
  assert.equal(await student.getByLabel('Draft').count(), 0)
  model.release()
  await student.getByRole('heading', { name: 'Cells exam' }).waitFor()
  await student.getByText('What does a ribosome do?').waitFor()
  assert.equal(await student.getByRole('button', { name: 'Show answers' }).count(), 0)
  assert.equal(await student.getByText('It builds proteins from amino acids.').count(), 0)
  await teacher.getByRole('heading', { name: 'Cells exam' }).waitFor()
  assert.match(await teacher.getByRole('article').textContent(), /30 minutes · 10 marks in total/)
  assert.equal(await teacher.getByText('It builds proteins from amino acids.').count(), 0)
  await teacher.getByRole('button', { name: 'Show answers' }).click()
  await teacher.getByText('Model answer: It builds proteins from amino acids.').waitFor()
  await teacher.getByText('Answer: Mitochondria').waitFor()
  await shot(teacher, 'exam-answers')

  // A lesson plan: its timeline is a table.
  await teacher.getByRole('button', { name: 'Make a lesson plan' }).click()
  await teacher.getByRole('list', { name: 'AI documents' }).getByRole('button', { name: 'Open lesson plan 1' }).click()
  const timeline = teacher.getByRole('table', { name: 'Timeline' })
  await timeline.waitFor()
  assert.deepEqual(await timeline.getByRole('row').allTextContents(),
    ['MinutesActivity', '10Warm-up quiz', '20Draw a cell', '15Exit ticket'])
  await shot(teacher, 'lesson-plan')
  found.push(...await seriousViolations(teacher, 'lesson plan (teacher)'))

  // A translation of the notes is rendered Markdown.
  await teacher.getByLabel('Translate into').fill('French')
  await teacher.getByRole('button', { name: 'Translate the notes' }).click()
  await teacher.getByRole('list', { name: 'AI documents' }).getByRole('button', { name: 'Open translation 1' }).click()
  const translation = teacher.getByRole('region', { name: 'Translation' })
  await translation.getByRole('heading', { name: 'Le plan' }).waitFor()
  assert.equal(await translation.locator('li strong').textContent(), 'ATP')
  assert.deepEqual(found, [])
  assert.deepEqual(problems, [])
})
