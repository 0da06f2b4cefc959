/**
 * Handouts: faculty hand a document out (every student gets their own copy, a fork): the
 * notes (session.tsx) or a document an AI job made (structured.tsx's list). Each student
 * sees their copy here as what it is: a copy of a quiz, flashcards, an exam or a lesson plan
 * is rendered by structured.tsx's `Content` (the student answers and grades their quiz,
 * flips their cards); a copy of the notes or of a translation (the `content` text) is an
 * editor, writable until the session ends.
 *
 * Students learn of a new handout from the session's `lectern` document (`handouts`, which
 * only the server writes); the session page then asks for the session again, whose
 * documents list the student's forks (session.tsx).
 */
import { useEffect, useId, useRef, useState } from 'preact/hooks'
import {
  structuredDocument,
  type DocumentInfo, type Handout, type LecternProvider, type StructuredDocument, type User
} from '@lectern/client'
import type * as Y from 'yjs'

import { colourIndex, COLOURS } from './cursors.js'
import { mountNotesEditor } from './editor.js'
import { client } from './lectern.js'
import { accessMessage, useProviderState } from './provider.js'
import { useSessionSocket } from './socket.js'
import { Content, useMadeDocuments, type MadeDocument } from './structured.js'
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

/** Faculty's "Hand out" button: hands out `templateDocId` (the session notes, or a
 * document an AI job made). */
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

/** What a fork is a copy of, in words: "the notes", or the name the AI documents list
 * gives the document ("Quiz 1"). */
function copyOf (fork: DocumentInfo, notesDocId: string | undefined, made: MadeDocument[]): string {
  if (fork.template_doc_id === null) return 'a handout'
  if (fork.template_doc_id === notesDocId) return 'the notes'
  return made.find(document => document.job.doc_id === fork.template_doc_id)?.name ?? 'a handout'
}

/** The student's forks, each as what it is. `lecternDoc` (the session's lectern document)
 * names the copies of AI-made documents. */
export function Handouts ({ forks, notesDocId, lecternDoc, user }: {
  forks: DocumentInfo[], notesDocId: string | undefined, lecternDoc: Y.Doc | null, user: User
}) {
  const made = useMadeDocuments(lecternDoc)
  if (forks.length === 0) return null
  return (
    <section class='handouts' aria-labelledby='handouts-heading'>
      <h2 id='handouts-heading'>Your copies</h2>
      {forks.map(fork => <Fork key={fork.doc_id} fork={fork} label={`Your copy of ${copyOf(fork, notesDocId, made)}`} user={user} />)}
    </section>
  )
}

/** Whether a fork's document is rendered by `Content` rather than edited as text. */
function structured (document: StructuredDocument): boolean {
  return document.kind === 'quiz' || document.kind === 'flashcards' || document.kind === 'exam' || document.kind === 'lesson_plan'
}

/** One fork, opened on the session's socket; its shape decides how it is shown. Nothing is
 * shown until it has synced, so that a quiz does not flash up as an empty editor first. */
function Fork ({ fork, label, user }: { fork: DocumentInfo, label: string, user: User }) {
  const socket = useSessionSocket()
  const [provider, setProvider] = useState<LecternProvider | null>(null)
  const [document, setDocument] = useState<StructuredDocument | null>(null)
  useEffect(() => {
    const opened = socket.open(fork.doc_id, { readOnly: fork.access === 'read' })
    const update = (): void => { if (opened.synced) setDocument(structuredDocument(opened.doc)) }
    opened.doc.on('update', update)
    opened.on('sync', update)
    update()
    setProvider(opened)
    return () => {
      opened.doc.off('update', update)
      opened.off('sync', update)
      setProvider(null)
      opened.destroy()
    }
  }, [socket, fork.doc_id, fork.access])
  const { access } = useProviderState(provider)
  const headingId = useId()
  return (
    <section class='fork' aria-labelledby={headingId}>
      <h3 id={headingId}>{label}</h3>
      {/* Refused before it synced; a copy shown stays readable after the session ends. */}
      {access !== null && document === null && <p class='error' role='alert'>{accessMessage(access)}</p>}
      {provider === null || document === null
        ? <p class='muted'>Loading…</p>
        : structured(document)
          // A student's answers stay in their page: the copy itself is not changed.
          ? <Content content={document} sources={document.sources} faculty={false} />
          : <ForkEditor provider={provider} label={label} user={user} />}
    </section>
  )
}

/** A fork of the notes or of a translation: its `content` text in an editor. */
function ForkEditor ({ provider, label, user }: { provider: LecternProvider, label: string, user: User }) {
  const host = useRef<HTMLDivElement>(null)
  const [readOnly, setReadOnly] = useState(provider.readOnly)
  useEffect(() => {
    provider.awareness.setLocalStateField('user', awarenessUser(user))
    const editor = mountNotesEditor(host.current!, provider.doc.getText('content'), provider.awareness,
      { label, readOnly: provider.readOnly })
    setReadOnly(provider.readOnly)
    // The session ended (4410): the copy stays readable for review.
    const onReadOnly = (next: boolean): void => {
      editor.setReadOnly(next)
      setReadOnly(next)
    }
    provider.on('read-only', onReadOnly)
    return () => {
      provider.off('read-only', onReadOnly)
      editor.view.destroy()
    }
  }, [provider, label, user.id])
  return (
    <>
      {readOnly && <p class='muted' role='status'>Read only.</p>}
      <div ref={host} class='editor-host' data-testid='fork-editor' />
    </>
  )
}
