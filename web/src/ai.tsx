/**
 * The session page's AI pieces: the buttons that start AI jobs, the jobs' status from the
 * session's lectern document (written only by the server, so every member sees the same
 * feed), the room-wide "AI is writing…" indicator, and an AI answer's citations, each of
 * which opens a dialog with the cited passage.
 */
import { useEffect, useRef, useState } from 'preact/hooks'
import type * as Y from 'yjs'
import {
  aiJobs, isFinalJobStatus, lecternDocId,
  type AiJobEntry, type AiJobKind, type Chunk, type Citation, type User
} from '@lectern/client'

import { client, describeError } from './lectern.js'
import { useSessionSocket } from './socket.js'
import { ErrorLine, useAction } from './ui.js'

interface KindButton {
  kind: AiJobKind
  label: string
  /** The field the job cannot start without, if any. */
  needs: 'prompt' | 'language' | null
}

/** The kinds every member may start (docs/ai.md); `chat` is asked from the chat box. */
const MEMBER_KINDS: KindButton[] = [
  { kind: 'qa', label: 'Q&A on the notes', needs: 'prompt' },
  { kind: 'notes', label: 'Write notes', needs: null },
  { kind: 'mindmap', label: 'Draw a mind map', needs: null }
]

/** The kinds only faculty may start. */
const FACULTY_KINDS: KindButton[] = [
  { kind: 'quiz', label: 'Make a quiz', needs: null },
  { kind: 'flashcards', label: 'Make flashcards', needs: null },
  { kind: 'exam', label: 'Make an exam', needs: null },
  { kind: 'lesson_plan', label: 'Make a lesson plan', needs: null },
  // Translates the session notes (the default source) into the language field's language.
  { kind: 'translate', label: 'Translate the notes', needs: 'language' }
]

function describeStatus (job: AiJobEntry): string {
  if (job.status === 'queued') {
    return job.queue_position !== undefined && job.queue_position !== null
      ? `queued (number ${job.queue_position} in line)`
      : 'queued'
  }
  if (job.status === 'failed') return `failed: ${job.error ?? 'no reason given'}`
  return job.status
}

/** The AI buttons, the jobs' status and the "AI is writing…" indicator of one session. */
export function AiPanel ({ sessionId, lecternDoc, user, faculty }: {
  sessionId: string, lecternDoc: Y.Doc, user: User, faculty: boolean
}) {
  const [jobs, setJobs] = useState<Array<[string, AiJobEntry]>>([])
  const { busy, error, setError, run } = useAction()
  const socket = useSessionSocket()

  useEffect(() => {
    const update = (): void => setJobs([...aiJobs(lecternDoc).entries()])
    lecternDoc.on('update', update)
    update()
    return () => { lecternDoc.off('update', update) }
  }, [lecternDoc])

  const start = async (button: KindButton, form: HTMLFormElement): Promise<void> => {
    const fields = new FormData(form)
    const prompt = String(fields.get('ai-prompt') ?? '').trim()
    const language = String(fields.get('ai-language') ?? '').trim()
    if (button.needs === 'prompt' && prompt === '') {
      setError(`${button.label} needs a question or topic.`)
      return
    }
    if (button.needs === 'language' && language === '') {
      setError(`${button.label} needs a language.`)
      return
    }
    await run(async () => {
      // Over the page's socket (a control message on the lectern document, open on it).
      await socket.startAiJob(lecternDocId(sessionId), sessionId, {
        kind: button.kind,
        ...(prompt !== '' && button.needs !== 'language' ? { prompt } : {}),
        ...(button.needs === 'language' ? { language } : {})
      })
    })
  }

  const cancel = async (jobId: string): Promise<void> => {
    setError(null)
    try {
      await socket.cancelAiJob(lecternDocId(sessionId), jobId)
    } catch (failure) {
      setError(describeError(failure))
    }
  }

  const writing = jobs.some(([, job]) => job.status === 'streaming')
  const buttons = faculty ? [...MEMBER_KINDS, ...FACULTY_KINDS] : MEMBER_KINDS
  return (
    <section class='ai' aria-labelledby='ai-heading'>
      <div class='section-head'>
        <h2 id='ai-heading'>AI</h2>
        <span role='status'>{writing ? <span class='status status-connecting'>AI is writing…</span> : ''}</span>
      </div>
      <form class='ai-form' onSubmit={event => event.preventDefault()}>
        <label>Question or topic <input name='ai-prompt' autocomplete='off' maxLength={4000} /></label>
        {faculty && <label>Translate into <input name='ai-language' autocomplete='off' placeholder='e.g. French' /></label>}
        <div class='actions'>
          {buttons.map(button => (
            <button
              key={button.kind} type='button' class='secondary' disabled={busy}
              onClick={event => { void start(button, (event.currentTarget as HTMLButtonElement).form!) }}
            >
              {button.label}
            </button>
          ))}
        </div>
      </form>
      <ol class='jobs' aria-label='AI jobs'>
        {jobs.length === 0 && <li class='muted'>No AI jobs yet.</li>}
        {jobs.map(([jobId, job]) => (
          <li key={jobId}>
            <span class='job-kind'>{job.kind}</span>{' '}
            <span class={`job-status job-${job.status}`}>{describeStatus(job)}</span>
            {!isFinalJobStatus(job.status) && (faculty || job.started_by === user.id) && (
              <button type='button' class='secondary' onClick={() => { void cancel(jobId) }}>
                Cancel {job.kind}
              </button>
            )}
          </li>
        ))}
      </ol>
      <ErrorLine error={error} />
    </section>
  )
}

export function citationLabel (citation: Citation): string {
  const place = citation.location ?? citation.heading ?? (citation.page !== null ? `p. ${citation.page}` : '')
  return place === '' ? citation.file_name : `${citation.file_name} · ${place}`
}

/** An AI answer's sources, each a button that opens its passage. */
export function Citations ({ citations }: { citations: Citation[] }) {
  const [open, setOpen] = useState<Citation | null>(null)
  return (
    <span class='citations'>
      {' Sources: '}
      {citations.map((citation, index) => (
        <button key={index} type='button' class='link' onClick={() => setOpen(citation)}>
          {citation.marker !== undefined ? `[${citation.marker}] ` : ''}{citationLabel(citation)}
        </button>
      ))}
      {open !== null && <PassageDialog citation={open} onClose={() => setOpen(null)} />}
    </span>
  )
}

/** A modal dialog with the cited passage, fetched from the material's chunks. The native
 * `<dialog>` moves focus into itself, traps it, and closes on Escape. */
export function PassageDialog ({ citation, onClose }: { citation: Citation, onClose: () => void }) {
  const dialog = useRef<HTMLDialogElement>(null)
  const [chunk, setChunk] = useState<Chunk | null>(null)
  const [error, setError] = useState<string | null>(null)

  useEffect(() => {
    dialog.current?.showModal()
    let stale = false
    void (async () => {
      try {
        const chunks = await client.materialChunks(citation.material_id)
        const found = chunks.find(candidate => candidate.ordinal === (citation.ordinal ?? 0))
        if (stale) return
        if (found === undefined) setError('The cited passage is no longer in the material.')
        else setChunk(found)
      } catch (failure) {
        if (!stale) setError(describeError(failure))
      }
    })()
    return () => { stale = true }
  }, [citation])

  const lines = chunk?.line_start !== null && chunk?.line_start !== undefined
    ? (chunk.line_end !== null && chunk.line_end !== chunk.line_start ? `lines ${chunk.line_start}–${chunk.line_end}` : `line ${chunk.line_start}`)
    : null
  const place = [chunk?.page !== null && chunk?.page !== undefined ? `page ${chunk.page}` : null, chunk?.heading ?? null, lines]
    .filter(part => part !== null).join(' · ')
  return (
    <dialog ref={dialog} class='passage' aria-labelledby='passage-heading' onClose={onClose}>
      <h2 id='passage-heading'>{citation.file_name}</h2>
      {place !== '' && <p class='muted'>{place}</p>}
      {chunk === null && error === null && <p>Loading…</p>}
      {chunk !== null && <blockquote>{chunk.text}</blockquote>}
      <ErrorLine error={error} />
      <form method='dialog'>
        <button type='submit'>Close</button>
      </form>
    </dialog>
  )
}
