/**
 * What the session's AI jobs made, rendered as what it is: the session mind map
 * (mindmap.tsx), and the documents quiz, flashcards, exam, lesson plan and translate jobs
 * write (each job's `doc_id` in the lectern document's job feed). A quiz can be answered
 * and graded, flashcards flip, an exam's answers are shown to faculty only on request, a
 * lesson plan is laid out, a translation is rendered Markdown, and a job still writing shows
 * its raw draft. `[n]` markers open the cited passage, as in the chat.
 *
 * Faculty hand a finished document out from the list (handouts.tsx): each student then
 * gets their own copy, which handouts.tsx renders with `Content`, the one renderer here.
 */
import type { ComponentChildren } from 'preact'
import { useEffect, useId, useRef, useState } from 'preact/hooks'
import {
  aiJobs, structuredDocument,
  type AiJobEntry, type AiJobKind, type Citation, type ExamQuestion, type LecternProvider,
  type LiveSession, type StructuredContent, type StructuredDocument
} from '@lectern/client'
import type * as Y from 'yjs'

import { PassageDialog, citationLabel } from './ai.js'
import { Markdown } from './markdown.js'
import { MindMap } from './mindmap.js'
import { accessMessage, useProviderState } from './provider.js'
import { useSessionSocket } from './socket.js'
import { useViewing } from './viewing.js'

/** The job kinds that write a document of their own, and what to call it. */
const DOCUMENT_KINDS: Partial<Record<AiJobKind, string>> = {
  quiz: 'Quiz',
  flashcards: 'Flashcards',
  exam: 'Exam',
  lesson_plan: 'Lesson plan',
  translate: 'Translation'
}

type Sources = Record<string, Citation>

export interface MadeDocument {
  jobId: string
  /** "Quiz 2": the kind's name and its number among the session's jobs of that kind. */
  name: string
  job: AiJobEntry
}

/** What a faculty member can do with a finished document (`docId`, called `name`): the
 * session page passes handouts.tsx's "Hand out" button, so that this module does not
 * import handouts.tsx, which imports it. `undefined` for students and ended sessions. */
export type HandOutAction = (docId: string, name: string) => ComponentChildren

/** The session's mind map and the documents its AI jobs made, below the session grid. */
export function SessionDocuments ({ session, lecternDoc, faculty, handOut }: {
  session: LiveSession, lecternDoc: Y.Doc, faculty: boolean, handOut?: HandOutAction
}) {
  const mindmap = session.documents.find(document => document.kind === 'mindmap')
  return (
    <>
      {mindmap !== undefined && <MindMap docId={mindmap.doc_id} />}
      <AiDocuments lecternDoc={lecternDoc} faculty={faculty} handOut={handOut} />
    </>
  )
}

function madeDocuments (lecternDoc: Y.Doc): MadeDocument[] {
  const counts = new Map<string, number>()
  const made: MadeDocument[] = []
  for (const [jobId, job] of aiJobs(lecternDoc)) {
    const kindName = DOCUMENT_KINDS[job.kind]
    if (kindName === undefined || typeof job.doc_id !== 'string') continue
    const number = (counts.get(job.kind) ?? 0) + 1
    counts.set(job.kind, number)
    made.push({ jobId, name: `${kindName} ${number}`, job })
  }
  return made
}

/** The documents the session's AI jobs made (from `lecternDoc`, the session's lectern
 * document; none while it is `null`), kept up to date. */
export function useMadeDocuments (lecternDoc: Y.Doc | null): MadeDocument[] {
  const [made, setMade] = useState<MadeDocument[]>([])
  useEffect(() => {
    if (lecternDoc === null) return
    const update = (): void => setMade(madeDocuments(lecternDoc))
    lecternDoc.on('update', update)
    update()
    return () => { lecternDoc.off('update', update) }
  }, [lecternDoc])
  return made
}

/** The list of the documents AI jobs made, and the one opened. */
function AiDocuments ({ lecternDoc, faculty, handOut }: { lecternDoc: Y.Doc, faculty: boolean, handOut?: HandOutAction }) {
  const made = useMadeDocuments(lecternDoc)
  const [openJob, setOpenJob] = useState<string | null>(null)

  const opened = made.find(document => document.jobId === openJob)
  return (
    <section class='ai-documents' aria-labelledby='ai-documents-heading'>
      <h2 id='ai-documents-heading'>AI documents</h2>
      <ul class='made' aria-label='AI documents'>
        {made.length === 0 && <li class='muted'>None yet. {faculty ? 'The AI buttons above make quizzes, flashcards, exams, lesson plans and translations.' : 'Your teacher can have the AI make quizzes and flashcards.'}</li>}
        {made.map(document => {
          // A document being written can be watched; a failed or cancelled job's
          // document was taken back, so there is nothing to open.
          const openable = document.job.status === 'done' || document.job.status === 'streaming'
          return (
            <li key={document.jobId}>
              <span class='job-kind'>{document.name}</span>{' '}
              <span class={`job-status job-${document.job.status}`}>{document.job.status}</span>
              {openable && (
                <button
                  type='button' class='secondary' aria-pressed={openJob === document.jobId}
                  onClick={() => setOpenJob(openJob === document.jobId ? null : document.jobId)}
                >
                  Open {document.name.toLowerCase()}
                </button>
              )}
              {/* A copy of a document still being written would be cut short. */}
              {handOut !== undefined && document.job.status === 'done' && handOut(document.job.doc_id, document.name)}
            </li>
          )
        })}
      </ul>
      {opened !== undefined && (
        <TemplateView key={opened.job.doc_id} docId={opened.job.doc_id} name={opened.name} faculty={faculty} onClose={() => setOpenJob(null)} />
      )}
    </section>
  )
}

/** One AI-made document, opened read-only (the app shows templates; it does not edit
 * them), re-rendered on every change. */
function TemplateView ({ docId, name, faculty, onClose }: {
  docId: string, name: string, faculty: boolean, onClose: () => void
}) {
  const socket = useSessionSocket()
  const [provider, setProvider] = useState<LecternProvider | null>(null)
  const [document, setDocument] = useState<StructuredDocument>({ kind: 'empty', sources: {} })
  const { access } = useProviderState(provider)
  const heading = useRef<HTMLHeadingElement>(null)
  const headingId = useId()
  useViewing(name)

  useEffect(() => {
    const opened = socket.open(docId, { readOnly: true })
    const update = (): void => setDocument(structuredDocument(opened.doc))
    opened.doc.on('update', update)
    update()
    setProvider(opened)
    return () => {
      opened.doc.off('update', update)
      opened.destroy()
    }
  }, [socket, docId])
  // Opening moves the focus to the document, so a keyboard or screen reader user lands on it.
  useEffect(() => { heading.current?.focus() }, [docId])

  const title = 'title' in document && document.title !== '' ? document.title : name
  return (
    <article class='template' aria-labelledby={headingId}>
      <div class='section-head'>
        <h3 id={headingId} ref={heading} tabIndex={-1}>{title}</h3>
        <button type='button' class='secondary' onClick={onClose}>Close</button>
      </div>
      {access !== null && <p class='error' role='alert'>{accessMessage(access)}</p>}
      <Content content={document} sources={document.sources} faculty={faculty} />
    </article>
  )
}

/** `content` rendered as what it is: a quiz to answer, flashcards to flip, an exam, a
 * lesson plan, rendered Markdown. Used for the templates here and for a student's copy of
 * one (handouts.tsx). */
export function Content ({ content, sources, faculty }: { content: StructuredContent, sources: Sources, faculty: boolean }) {
  switch (content.kind) {
    case 'quiz':
      return <QuizView questions={content.questions} sources={sources} />
    case 'flashcards':
      return <FlashcardsView cards={content.cards} />
    case 'exam':
      return <ExamView exam={content} sources={sources} faculty={faculty} />
    case 'lesson_plan':
      return <LessonPlanView plan={content} sources={sources} />
    case 'draft':
      // The raw output of a quiz or an exam holds its answers: students wait for the
      // finished document, whose answers are graded or hidden.
      return (
        <div class='draft'>
          <p role='status'><span class='status status-connecting'>AI is writing…</span></p>
          {faculty
            ? <pre aria-label='Draft'>{content.text}</pre>
            : <p class='muted'>It appears here when it is done.</p>}
        </div>
      )
    case 'text':
      return <Markdown text={content.text} label='Translation' />
    case 'empty':
      return <p class='muted'>Nothing here yet.</p>
  }
}

/** `text` with each `[n]` that names a source as a button opening its passage. */
function CitedText ({ text, sources }: { text: string, sources: Sources }) {
  const [open, setOpen] = useState<Citation | null>(null)
  return (
    <>
      {text.split(/(\[\d+\])/).map((part, index) => {
        // The split's odd parts are the markers.
        const citation = index % 2 === 1 ? sources[part.slice(1, -1)] : undefined
        if (citation === undefined) return part
        return (
          <button key={index} type='button' class='link' aria-label={`${part} ${citationLabel(citation)}`} onClick={() => setOpen(citation)}>
            {part}
          </button>
        )
      })}
      {open !== null && <PassageDialog citation={open} onClose={() => setOpen(null)} />}
    </>
  )
}

type QuizQuestions = Extract<StructuredContent, { kind: 'quiz' }>['questions']

/** A quiz to answer: "Check answers" grades it, "Try again" clears it. */
function QuizView ({ questions, sources }: { questions: QuizQuestions, sources: Sources }) {
  const [chosen, setChosen] = useState<Map<number, number>>(new Map())
  const [checked, setChecked] = useState(false)
  const group = useId()
  // A question whose answer key names no option cannot be graded.
  const graded = questions.filter(question => question.answer >= 0)
  const right = questions.filter((question, index) => question.answer >= 0 && chosen.get(index) === question.answer).length
  const choose = (question: number, option: number): void => setChosen(new Map(chosen).set(question, option))
  const reset = (): void => {
    setChosen(new Map())
    setChecked(false)
  }

  if (questions.length === 0) return <p class='muted'>This quiz has no questions.</p>
  return (
    <form class='quiz' onSubmit={event => { event.preventDefault(); setChecked(true) }}>
      <ol class='questions'>
        {questions.map((question, index) => {
          const correct = chosen.get(index) === question.answer
          return (
            <li key={index} class={checked && question.answer >= 0 ? (correct ? 'question correct' : 'question incorrect') : 'question'}>
              <fieldset>
                <legend>{question.prompt}</legend>
                {question.options.map((option, optionIndex) => (
                  <label key={optionIndex} class='inline'>
                    <input
                      type='radio' name={`${group}-${index}`} value={optionIndex} disabled={checked}
                      checked={chosen.get(index) === optionIndex} onChange={() => choose(index, optionIndex)}
                    />
                    {option}
                  </label>
                ))}
              </fieldset>
              {checked && question.answer >= 0 && (
                <div class='verdict'>
                  <p class='mark'>
                    {correct ? '✓ Correct' : `✗ Incorrect. The answer is: ${question.options[question.answer]}`}
                  </p>
                  {question.explanation !== '' && <p><CitedText text={question.explanation} sources={sources} /></p>}
                </div>
              )}
            </li>
          )
        })}
      </ol>
      <p role='status' class='score'>{checked ? `Score: ${right} / ${graded.length}` : ''}</p>
      <div class='actions'>
        {/* Keyed apart: were the element reused, the click on "Try again" would, after the
            re-render, activate the button as "Check answers" and submit the quiz again. */}
        {checked
          ? <button key='again' type='button' onClick={reset}>Try again</button>
          : <button key='check' type='submit'>Check answers</button>}
      </div>
    </form>
  )
}

type Cards = Extract<StructuredContent, { kind: 'flashcards' }>['cards']

/** One card at a time, flipped by a toggle button. */
function FlashcardsView ({ cards }: { cards: Cards }) {
  const [at, setAt] = useState(0)
  const [back, setBack] = useState(false)
  if (cards.length === 0) return <p class='muted'>There are no cards.</p>
  const current = Math.min(at, cards.length - 1)
  const card = cards[current]
  const go = (to: number): void => {
    setAt(to)
    setBack(false)
  }
  return (
    <div class='flashcards'>
      <p class='muted'>Card {current + 1} of {cards.length}</p>
      {/* Announces the side and its text whenever the card flips or changes. */}
      <div class={back ? 'flashcard back' : 'flashcard'} aria-live='polite'>
        <span class='side'>{back ? 'Back' : 'Front'}</span>
        <p>{back ? card.back : card.front}</p>
      </div>
      <div class='actions'>
        <button type='button' class='secondary' disabled={current === 0} onClick={() => go(current - 1)}>Previous</button>
        <button type='button' aria-pressed={back} onClick={() => setBack(!back)}>Flip card</button>
        <button type='button' class='secondary' disabled={current === cards.length - 1} onClick={() => go(current + 1)}>Next</button>
      </div>
    </div>
  )
}

type Exam = Extract<StructuredContent, { kind: 'exam' }>

function marks (count: number): string {
  return count === 1 ? '1 mark' : `${count} marks`
}

/** An exam paper; its answers only for faculty, and only when asked. */
function ExamView ({ exam, sources, faculty }: { exam: Exam, sources: Sources, faculty: boolean }) {
  const [answers, setAnswers] = useState(false)
  const shown = faculty && answers
  return (
    <div class='exam'>
      <p>{exam.duration_minutes} minutes · {marks(exam.total_marks)} in total</p>
      {faculty && (
        <button type='button' class='secondary' aria-pressed={answers} onClick={() => setAnswers(!answers)}>Show answers</button>
      )}
      {exam.sections.map((section, sectionIndex) => (
        <section key={sectionIndex} aria-label={section.title !== '' ? section.title : `Section ${sectionIndex + 1}`}>
          <h4>{section.title !== '' ? section.title : `Section ${sectionIndex + 1}`}</h4>
          <ol class='questions'>
            {section.questions.map((question, index) => (
              <li key={index} class='question'>
                <p>{question.prompt} <span class='muted'>({marks(question.marks)})</span></p>
                {question.kind === 'multiple_choice' && (
                  <ol class='options' type='a'>
                    {question.options.map((option, optionIndex) => <li key={optionIndex}>{option}</li>)}
                  </ol>
                )}
                {shown && <ExamAnswer question={question} sources={sources} />}
              </li>
            ))}
          </ol>
        </section>
      ))}
    </div>
  )
}

function ExamAnswer ({ question, sources }: { question: ExamQuestion, sources: Sources }) {
  if (question.kind === 'multiple_choice') {
    return <p class='answer'>Answer: {question.answer >= 0 ? question.options[question.answer] : 'not given'}</p>
  }
  const [label, text] = question.kind === 'essay' ? ['Guidance', question.guidance] : ['Model answer', question.model_answer]
  return <p class='answer'>{label}: <CitedText text={text !== '' ? text : 'not given'} sources={sources} /></p>
}

type LessonPlan = Extract<StructuredContent, { kind: 'lesson_plan' }>

function LessonPlanView ({ plan, sources }: { plan: LessonPlan, sources: Sources }) {
  return (
    <div class='lesson-plan'>
      <h4>Objectives</h4>
      <ul>{plan.objectives.map((objective, index) => <li key={index}><CitedText text={objective} sources={sources} /></li>)}</ul>
      <div class='table-scroll'>
        <table>
          <caption>Timeline</caption>
          <thead><tr><th scope='col'>Minutes</th><th scope='col'>Activity</th></tr></thead>
          <tbody>
            {plan.timeline.map((step, index) => (
              <tr key={index}><td>{step.minutes}</td><td><CitedText text={step.activity} sources={sources} /></td></tr>
            ))}
          </tbody>
        </table>
      </div>
      <h4>Activities</h4>
      <dl>
        {plan.activities.map((activity, index) => (
          <div key={index}>
            <dt>{activity.name}</dt>
            <dd><CitedText text={activity.description} sources={sources} /></dd>
          </div>
        ))}
      </dl>
      <h4>Assessment</h4>
      <ul>{plan.assessment.map((item, index) => <li key={index}><CitedText text={item} sources={sources} /></li>)}</ul>
    </div>
  )
}
