// The readers of AI-made documents (mindmapTree, structuredDocument) on documents built
// here in the shapes of docs/ai.md, and on junk a member could write into them: they read
// what they can and never throw.
import test from 'node:test'
import assert from 'node:assert/strict'
import * as Y from 'yjs'
import { mindmapTree, structuredDocument } from '../dist/index.js'

function node (label, parent, children) {
  return new Y.Map(Object.entries({ label, parent, children: Y.Array.from(children) }))
}

test('mindmapTree nests the nodes in order and grows as nodes arrive', () => {
  const doc = new Y.Doc()
  assert.deepEqual(mindmapTree(doc), { root: null, size: 0 })
  const map = doc.getMap('mindmap')
  const nodes = new Y.Map()
  map.set('nodes', nodes)
  map.set('root', 'n1')
  nodes.set('n1', node('Cells', null, []))
  assert.deepEqual(mindmapTree(doc), { root: { id: 'n1', label: 'Cells', children: [] }, size: 1 })
  nodes.set('n2', node('Organelles', 'n1', []))
  nodes.get('n1').get('children').push(['n2'])
  nodes.set('n3', node('Mitochondria', 'n2', []))
  nodes.get('n2').get('children').push(['n3'])
  nodes.set('n4', node('Membrane', 'n1', []))
  nodes.get('n1').get('children').push(['n4'])
  assert.deepEqual(mindmapTree(doc), {
    root: {
      id: 'n1',
      label: 'Cells',
      children: [
        { id: 'n2', label: 'Organelles', children: [{ id: 'n3', label: 'Mitochondria', children: [] }] },
        { id: 'n4', label: 'Membrane', children: [] }
      ]
    },
    size: 4
  })
})

test('mindmapTree survives cycles, dangling ids and ill-typed fields', () => {
  const doc = new Y.Doc()
  const map = doc.getMap('mindmap')
  const nodes = new Y.Map()
  map.set('nodes', nodes)
  map.set('root', 'a')
  nodes.set('a', node('A', null, ['b', 'missing', 42, 'a']))
  nodes.set('b', node(7, 'a', ['a', 'c']))
  nodes.set('c', 'not a node')
  assert.deepEqual(mindmapTree(doc), {
    root: { id: 'a', label: 'A', children: [{ id: 'b', label: '', children: [] }] },
    size: 2
  })
  map.set('root', 5)
  assert.deepEqual(mindmapTree(doc), { root: null, size: 0 })
  const other = new Y.Doc()
  other.getText('mindmap').insert(0, 'a text where a map belongs')
  assert.deepEqual(mindmapTree(other), { root: null, size: 0 })
})

test('structuredDocument reads a draft, then the finished quiz with its sources', () => {
  const doc = new Y.Doc()
  assert.deepEqual(structuredDocument(doc), { kind: 'empty', sources: {} })
  doc.getText('draft').insert(0, '{"title":"Cells","questions":[')
  assert.deepEqual(structuredDocument(doc), { kind: 'draft', text: '{"title":"Cells","questions":[', sources: {} })
  doc.transact(() => {
    const quiz = doc.getMap('quiz')
    quiz.set('title', 'Cells')
    const question = (prompt, options, answer) => new Y.Map(Object.entries({
      prompt, options: Y.Array.from(options), answer, explanation: 'See [1].', marks: 1
    }))
    quiz.set('questions', Y.Array.from([
      question('What makes ATP?', ['Mitochondria', 'Ribosomes'], 0),
      question('No options', [], 0),
      question('Bad answer', ['x', 'y'], 9),
      'junk'
    ]))
    doc.getMap('sources').set('1', { material_id: 'm1', file_name: 'cells.md', page: null, heading: 'Cells', marker: 1, ordinal: 0, line_start: 1, line_end: 3, location: 'lines 1–3' })
    doc.getMap('sources').set('2', 'not a citation')
    // A key that is no marker, written by a member, must not become the object's prototype.
    doc.getMap('sources').set('__proto__', { material_id: 'm2', file_name: 'evil.md' })
  })
  const read = structuredDocument(doc)
  assert.equal(read.kind, 'quiz')
  assert.equal(read.title, 'Cells')
  assert.deepEqual(read.questions, [
    { prompt: 'What makes ATP?', options: ['Mitochondria', 'Ribosomes'], answer: 0, explanation: 'See [1].', marks: 1 },
    { prompt: 'Bad answer', options: ['x', 'y'], answer: -1, explanation: 'See [1].', marks: 1 }
  ])
  assert.deepEqual(Object.keys(read.sources), ['1'])
  assert.equal(Object.getPrototypeOf(read.sources), Object.prototype)
  assert.equal(read.sources['1'].file_name, 'cells.md')
})

test('structuredDocument reads flashcards, an exam, a lesson plan and a translation', () => {
  const flashcards = new Y.Doc()
  const cards = flashcards.getMap('flashcards')
  cards.set('title', 'Cells')
  cards.set('cards', Y.Array.from([new Y.Map([['front', 'ATP'], ['back', 'Energy']]), new Y.Map([['front', 3]])]))
  assert.deepEqual(structuredDocument(flashcards), { kind: 'flashcards', title: 'Cells', cards: [{ front: 'ATP', back: 'Energy' }], sources: {} })

  const exam = new Y.Doc()
  const paper = exam.getMap('exam')
  paper.set('title', 'Final')
  paper.set('duration_minutes', 60)
  paper.set('total_marks', 'lots')
  paper.set('sections', Y.Array.from([new Y.Map(Object.entries({
    title: 'A',
    questions: Y.Array.from([
      new Y.Map(Object.entries({ prompt: 'Pick', kind: 'multiple_choice', options: Y.Array.from(['a', 'b']), answer: 1, marks: 2 })),
      new Y.Map(Object.entries({ prompt: 'Explain', kind: 'essay', guidance: 'Mention ATP', marks: 5 })),
      new Y.Map(Object.entries({ prompt: 'Name', kind: 'riddle', model_answer: 'ATP', marks: -1 }))
    ])
  }))]))
  const read = structuredDocument(exam)
  assert.equal(read.kind, 'exam')
  assert.deepEqual([read.title, read.duration_minutes, read.total_marks], ['Final', 60, 0])
  assert.deepEqual(read.sections[0].questions.map(q => [q.kind, q.answer, q.marks, q.guidance, q.model_answer]),
    [['multiple_choice', 1, 2, '', ''], ['essay', -1, 5, 'Mention ATP', ''], ['short_answer', -1, 0, '', 'ATP']])

  const lesson = new Y.Doc()
  const plan = lesson.getMap('lesson_plan')
  plan.set('title', 'Cells')
  plan.set('objectives', Y.Array.from(['Name organelles', 4]))
  plan.set('timeline', Y.Array.from([new Y.Map([['minutes', 10], ['activity', 'Warm-up']])]))
  plan.set('activities', Y.Array.from([new Y.Map([['name', 'Sketch'], ['description', 'Draw a cell']])]))
  plan.set('assessment', 'not a list')
  assert.deepEqual(structuredDocument(lesson), {
    kind: 'lesson_plan',
    title: 'Cells',
    objectives: ['Name organelles'],
    timeline: [{ minutes: 10, activity: 'Warm-up' }],
    activities: [{ name: 'Sketch', description: 'Draw a cell' }],
    assessment: [],
    sources: {}
  })

  const translation = new Y.Doc()
  translation.getText('content').insert(0, '# Cellules')
  assert.deepEqual(structuredDocument(translation), { kind: 'text', text: '# Cellules', sources: {} })
  // A root defined with another type (a member wrote `quiz` as text) reads as nothing.
  const junk = new Y.Doc()
  junk.getText('quiz').insert(0, 'junk')
  junk.getArray('draft').push(['junk'])
  assert.deepEqual(structuredDocument(junk), { kind: 'empty', sources: {} })
})
