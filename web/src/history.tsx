/**
 * After class: take the class's work home and look back.
 *
 * Everyone downloads the notes or the whole session (PDF, Word, Markdown; students get
 * quizzes and exams without their answer keys, as the server decides). Faculty also see the
 * notes' kept versions, preview one and bring it back (the server applies the restore as a
 * new edit, so every open editor follows it and "Undo restore" is one more restore), and
 * who contributed what, with the CSV the report also comes as.
 */
import { useState } from 'preact/hooks'
import type { Contributions, DocumentVersion, ExportFormat, LiveSession } from '@lectern/client'

import { client } from './lectern.js'
import { Markdown } from './markdown.js'
import { ErrorLine, useAction } from './ui.js'

const FORMATS: ReadonlyArray<[ExportFormat, string]> = [['pdf', 'PDF'], ['docx', 'Word'], ['md', 'Markdown']]

/** What a version's `reason` means to a teacher. */
const REASONS: Record<string, string> = {
  session_started: 'Session started',
  session_ended: 'Session ended',
  before_ai_job: 'Before an AI job',
  after_ai_job: 'After an AI job',
  checkpoint: 'Checkpoint',
  activity: 'While editing',
  before_restore: 'Before a restore'
}

/** Hands `blob` to the browser as a download named `name`. */
function download (blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob)
  const link = document.createElement('a')
  link.href = url
  link.download = name
  link.click()
  // The click starts the download synchronously; the URL is not needed after it.
  setTimeout(() => URL.revokeObjectURL(url), 0)
}

export function AfterClass ({ session, faculty }: { session: LiveSession, faculty: boolean }) {
  const notes = session.documents.find(document => document.kind === 'notes')
  const { busy, error, run } = useAction()
  const exportNotes = (format: ExportFormat): Promise<void> => run(async () => {
    if (notes === undefined) return
    download(await client.exportDocument(notes.doc_id, format), `notes.${format}`)
  })
  const exportSession = (format: ExportFormat): Promise<void> => run(async () => {
    download(await client.exportSession(session.id, format), `session-${format}.zip`)
  })
  return (
    <section class='after-class' aria-labelledby='after-class-heading'>
      <h2 id='after-class-heading'>After class</h2>
      <div class='actions' role='group' aria-label='Download'>
        {notes !== undefined && FORMATS.map(([format, name]) => (
          <button key={format} type='button' disabled={busy} onClick={() => { void exportNotes(format) }}>
            Notes as {name}
          </button>
        ))}
        <button type='button' disabled={busy} onClick={() => { void exportSession('pdf') }}>Whole session (zip)</button>
      </div>
      <ErrorLine error={error} />
      {faculty && notes !== undefined && <Versions docId={notes.doc_id} />}
      {faculty && <ContributionsReport sessionId={session.id} />}
    </section>
  )
}

function Versions ({ docId }: { docId: string }) {
  const [versions, setVersions] = useState<DocumentVersion[] | null>(null)
  const [preview, setPreview] = useState<{ id: number, text: string } | null>(null)
  const [undo, setUndo] = useState<number | null>(null)
  const { busy, error, run } = useAction()
  const load = (): Promise<void> => run(async () => setVersions(await client.listVersions(docId)))
  const show = (id: number): Promise<void> => run(async () => {
    const content = (await client.getVersion(docId, id)).content
    setPreview({ id, text: typeof content === 'string' ? content : '' })
  })
  const restore = (id: number): Promise<void> => run(async () => {
    const result = await client.restoreVersion(docId, id)
    setUndo(result.before_restore)
    setPreview(null)
    setVersions(await client.listVersions(docId))
  })
  const checkpoint = (): Promise<void> => run(async () => {
    await client.checkpoint(docId, 'Checkpoint')
    setVersions(await client.listVersions(docId))
  })
  return (
    <div class='versions'>
      <h3>Notes history</h3>
      <div class='actions'>
        <button type='button' disabled={busy} onClick={() => { void load() }}>{versions === null ? 'Show history' : 'Refresh'}</button>
        <button type='button' disabled={busy} onClick={() => { void checkpoint() }}>Keep a checkpoint</button>
        {undo !== null && <button type='button' disabled={busy} onClick={() => { void restore(undo) }}>Undo restore</button>}
      </div>
      {versions !== null && versions.length === 0 && <p class='muted'>No versions kept yet.</p>}
      {versions !== null && versions.length > 0 && (
        <ol class='version-list' aria-label='Versions of the notes'>
          {versions.map(version => (
            <li key={version.id}>
              <span>{new Date(version.created_at_ms).toLocaleString()}</span>{' '}
              <span class='muted'>{REASONS[version.reason] ?? version.reason}{version.label !== null && version.label !== '' ? `: ${version.label}` : ''}</span>{' '}
              <button type='button' disabled={busy} onClick={() => { void show(version.id) }}>Preview</button>{' '}
              <button type='button' disabled={busy} onClick={() => { void restore(version.id) }}>Restore</button>
            </li>
          ))}
        </ol>
      )}
      {preview !== null && (
        <div class='version-preview' aria-label='Version preview'>
          <Markdown text={preview.text} label='The notes as they were' />
        </div>
      )}
      <ErrorLine error={error} />
    </div>
  )
}

function ContributionsReport ({ sessionId }: { sessionId: string }) {
  const [report, setReport] = useState<Contributions | null>(null)
  const { busy, error, run } = useAction()
  const load = (): Promise<void> => run(async () => setReport(await client.getContributions(sessionId)))
  const csv = (): Promise<void> => run(async () => {
    download(new Blob([await client.getContributionsCsv(sessionId)], { type: 'text/csv' }), 'contributions.csv')
  })
  return (
    <div class='contributions'>
      <h3>Who contributed</h3>
      <div class='actions'>
        <button type='button' disabled={busy} onClick={() => { void load() }}>{report === null ? 'Show contributions' : 'Refresh'}</button>
        <button type='button' disabled={busy} onClick={() => { void csv() }}>Download CSV</button>
      </div>
      {report !== null && (
        <table aria-label='Contributions'>
          <thead>
            <tr><th>Who</th><th>Typed</th><th>Deleted</th><th>By their AI jobs</th><th>Active minutes</th></tr>
          </thead>
          <tbody>
            {report.people.map(person => (
              <tr key={person.author}>
                <td>{person.display_name ?? person.author}</td>
                <td>{person.inserted}</td>
                <td>{person.deleted}</td>
                <td>{person.ai_inserted}</td>
                <td>{person.active_minutes}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <ErrorLine error={error} />
    </div>
  )
}
