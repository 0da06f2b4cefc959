/**
 * Handouts: faculty hand a document out (every student gets their own copy, a fork), and
 * each student edits their copy here, writable until the session ends.
 *
 * Students learn of a new handout from the session's `lectern` document (`handouts`, which
 * only the server writes); the session page then asks for the session again, whose
 * documents list the student's forks (session.tsx).
 */
import { useEffect, useRef, useState } from 'preact/hooks'
import { type DocumentInfo, type Handout, type User } from '@lectern/client'

import { colourIndex, COLOURS } from './cursors.js'
import { mountNotesEditor } from './editor.js'
import { client } from './lectern.js'
import { useSessionSocket } from './socket.js'
import { ErrorLine, useAction } from './ui.js'

/** Hands document `templateDocId` (a template or a document of the session) out in session
 * `sessionId`: a copy of it as it is now for every student. Faculty only. */
export function handOut (sessionId: string, templateDocId: string): Promise<Handout> {
  return client.handOut(sessionId, templateDocId)
}

/** The awareness `user` field for `user`: cursors.ts reads `colour`, the SDK's presence
 * and the Yjs bindings `color`. */
export function awarenessUser (user: User): { id: string, name: string, colour: number, color: string } {
  const colour = colourIndex(user.id)
  return { id: user.id, name: user.display_name, colour, color: COLOURS[colour] }
}

/** Faculty's "Hand out" button: hands out `templateDocId` (the session notes). */
export function HandOutButton ({ sessionId, templateDocId, label }: { sessionId: string, templateDocId: string, label: string }) {
  const { busy, error, run } = useAction()
  const [done, setDone] = useState<string | null>(null)
  const click = (): Promise<void> => run(async () => {
    setDone(null)
    const handout = await handOut(sessionId, templateDocId)
    const count = handout.forks.length
    setDone(`Handed out: ${count} ${count === 1 ? 'copy' : 'copies'}.`)
  })
  return (
    <span class='hand-out'>
      <button type='button' disabled={busy} onClick={() => { void click() }}>{label}</button>
      <span role='status' class='muted'>{done ?? ''}</span>
      {error !== null && <ErrorLine error={error} />}
    </span>
  )
}

/** What a fork is a copy of, in words. */
function copyOf (fork: DocumentInfo, notesDocId: string | undefined): string {
  return fork.template_doc_id !== null && fork.template_doc_id === notesDocId ? 'the notes' : 'a handout'
}

/** The student's forks, each in its own editor. */
export function Handouts ({ forks, notesDocId, user }: { forks: DocumentInfo[], notesDocId: string | undefined, user: User }) {
  if (forks.length === 0) return null
  return (
    <section class='handouts' aria-labelledby='handouts-heading'>
      <h2 id='handouts-heading'>Your copies</h2>
      {forks.map(fork => <ForkEditor key={fork.doc_id} fork={fork} label={`Your copy of ${copyOf(fork, notesDocId)}`} user={user} />)}
    </section>
  )
}

function ForkEditor ({ fork, label, user }: { fork: DocumentInfo, label: string, user: User }) {
  const socket = useSessionSocket()
  const host = useRef<HTMLDivElement>(null)
  const [readOnly, setReadOnly] = useState(fork.access === 'read')
  useEffect(() => {
    const opened = socket.open(fork.doc_id, { readOnly: fork.access === 'read' })
    opened.awareness.setLocalStateField('user', awarenessUser(user))
    const editor = mountNotesEditor(host.current!, opened.doc.getText('content'), opened.awareness,
      { label, readOnly: opened.readOnly })
    setReadOnly(opened.readOnly)
    // The session ended (4410): the copy stays readable for review.
    opened.on('read-only', next => {
      editor.setReadOnly(next)
      setReadOnly(next)
    })
    return () => {
      editor.view.destroy()
      opened.destroy()
    }
  }, [socket, fork.doc_id, fork.access, user.id])
  return (
    <div class='fork'>
      <h3>{label}</h3>
      {readOnly && <p class='muted' role='status'>Read only.</p>}
      <div ref={host} class='editor-host' data-testid='fork-editor' />
    </div>
  )
}
