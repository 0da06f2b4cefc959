/**
 * The live session page: the shared notes and who is here (notes.tsx), the chat (chat.tsx),
 * the AI panel (ai.tsx), which starts the other job kinds and shows every job's status, the
 * mind map and the documents AI jobs made (structured.tsx), and the student's handed-out
 * copies (handouts.tsx). Faculty lock, unlock and end the session
 * and hand the notes out; a locked session's notes are read-only for students. Below,
 * "After class" (history.tsx): downloads, and for faculty the notes' versions and who
 * contributed what.
 *
 * The session's state and its handouts are pushed by the server into the session's
 * `lectern` document (`sessionState`, `onHandouts`): the page asks for the session again
 * only when one of them changes (for the documents' new access, or a new fork), never on a
 * timer.
 */
import { useEffect, useRef, useState } from 'preact/hooks'
import {
  onHandouts, onSessionState, sessionHandouts, sessionState,
  type LecternSocket, type LiveSession, type User
} from '@lectern/client'
import type * as Y from 'yjs'

import { AiPanel } from './ai.js'
import { Chat } from './chat.js'
import { HandOutButton, Handouts } from './handouts.js'
import { AfterClass } from './history.js'
import { client, describeError } from './lectern.js'
import { Notes } from './notes.js'
import { SessionSocket, useNewSessionSocket } from './socket.js'
import { SessionDocuments } from './structured.js'
import { ErrorLine, ErrorPage, Link } from './ui.js'
import { SetViewing } from './viewing.js'

export function SessionPage ({ id, user }: { id: string, user: User }) {
  const [session, setSession] = useState<LiveSession | null>(null)
  const [faculty, setFaculty] = useState(false)
  const [names, setNames] = useState<Map<string, string>>(new Map())
  const [facultyIds, setFacultyIds] = useState<ReadonlySet<string>>(new Set())
  const [error, setError] = useState<string | null>(null)
  const loadNames = async (classroomId: string): Promise<void> => {
    const members = await client.listMembers(classroomId)
    setNames(new Map(members.map(member => [member.user_id, member.display_name])))
    setFacultyIds(new Set(members.filter(member => member.role === 'faculty').map(member => member.user_id)))
  }
  useEffect(() => {
    void (async () => {
      try {
        const loaded = await client.getSession(id)
        setSession(loaded)
        setFaculty((await client.getClassroom(loaded.classroom_id)).role === 'faculty')
        await loadNames(loaded.classroom_id)
      } catch (failure) {
        setError(describeError(failure))
      }
    })()
  }, [id])
  // A message by someone who joined the classroom after the page loaded: fetch the members
  // again, once per unknown author.
  const asked = useRef(new Set<string>())
  const unknownAuthor = (authorId: string): void => {
    if (session === null || asked.current.has(authorId)) return
    asked.current.add(authorId)
    void loadNames(session.classroom_id).catch(failure => setError(describeError(failure)))
  }

  const end = async (): Promise<void> => {
    if (session === null) return
    setError(null)
    try {
      // Everyone's sockets on the session's documents close (4410): the editors turn
      // read-only through the provider's 'read-only' event.
      setSession(await client.endSession(session.id))
    } catch (failure) {
      setError(describeError(failure))
    }
  }

  const setLocked = async (locked: boolean): Promise<void> => {
    if (session === null) return
    setError(null)
    try {
      setSession(await (locked ? client.lockSession(session.id) : client.unlockSession(session.id)))
    } catch (failure) {
      setError(describeError(failure))
    }
  }

  // The server closed the notes with 4410: show the session as ended without asking again.
  const ended = (): void => setSession(current => current && { ...current, state: 'ended' })

  const socket = useNewSessionSocket(id)
  // What this person looks at besides the notes (an opened quiz...), for "Who is here".
  const [viewing, setViewing] = useState<string | null>(null)
  const lecternDoc = useServerDocument(socket, session?.documents.find(document => document.kind === 'lectern')?.doc_id)

  // The session as last fetched, for the lectern document's observers below.
  const current = useRef(session)
  current.current = session
  useEffect(() => {
    if (lecternDoc === null) return
    const refetch = (): void => {
      client.getSession(id).then(setSession, failure => setError(describeError(failure)))
    }
    // A lock, an unlock or the end: shown at once; the documents' access under the new
    // state (which the server decides) comes with the session fetched again.
    const stateChanged = (): void => {
      const state = sessionState(lecternDoc)
      if (state === undefined || state === current.current?.state) return
      setSession(session => session && { ...session, state })
      refetch()
    }
    // A handout: fetched again when it names a template this page has no fork of yet. (A
    // student who joined the classroom after it never gets one: one fetch per change.)
    const handoutsChanged = (): void => {
      const known = new Set(current.current?.documents.map(document => document.template_doc_id))
      if ([...sessionHandouts(lecternDoc).keys()].some(template => !known.has(template))) refetch()
    }
    const stopState = onSessionState(lecternDoc, stateChanged)
    const stopHandouts = onHandouts(lecternDoc, handoutsChanged)
    // The document may have synced before these observers were set.
    stateChanged()
    handoutsChanged()
    return () => {
      stopState()
      stopHandouts()
    }
  }, [lecternDoc, id])

  if (session === null) {
    return error === null ? <main><p>Loading…</p></main> : <ErrorPage title='This session cannot be shown' error={error} />
  }
  const notes = session.documents.find(document => document.kind === 'notes')
  const chat = session.documents.find(document => document.kind === 'chat')
  // A student's own copies; faculty see every student's forks listed, but not as editors.
  const forks = faculty ? [] : session.documents.filter(document => document.kind === 'fork')
  // For a student the lock applies at once, before the session is fetched again.
  const notesReadOnly = notes?.access === 'read' || (!faculty && session.state !== 'live')
  return (
    <SessionSocket.Provider value={socket}>
      <SetViewing.Provider value={setViewing}>
        <main class='session'>
          <p><Link to={`/classrooms/${encodeURIComponent(session.classroom_id)}`}>← Classroom</Link></p>
          <div class='section-head'>
            <h1>Live session <span class='muted'>({session.state})</span></h1>
            {faculty && session.state !== 'ended' && (
              <div class='actions'>
                {session.state === 'live'
                  ? <button type='button' onClick={() => { void setLocked(true) }}>Lock session</button>
                  : <button type='button' onClick={() => { void setLocked(false) }}>Unlock session</button>}
                <button type='button' onClick={() => { void end() }}>End session</button>
                {notes !== undefined && <HandOutButton sessionId={session.id} templateDocId={notes.doc_id} label='Hand out the notes' />}
              </div>
            )}
          </div>
          {session.state === 'locked' && (
            <p class='banner' role='status'>
              {faculty ? 'Locked: students can read but not write.' : 'Locked by the teacher'}
            </p>
          )}
          <div class='session-grid'>
            {notes !== undefined && (
              <Notes
                docId={notes.doc_id} user={user} readOnly={notesReadOnly} onEnded={ended}
                sessionId={session.id} lecternDoc={lecternDoc} faculty={faculty} facultyIds={facultyIds}
              viewing={viewing}
              />
            )}
            {chat !== undefined && <Chat docId={chat.doc_id} sessionId={session.id} names={names} onUnknownAuthor={unknownAuthor} />}
          </div>
          <Handouts forks={forks} notesDocId={notes?.doc_id} lecternDoc={lecternDoc} user={user} />
          {lecternDoc !== null && <AiPanel sessionId={session.id} lecternDoc={lecternDoc} user={user} faculty={faculty} />}
          {lecternDoc !== null && (
            <SessionDocuments
              session={session} lecternDoc={lecternDoc} faculty={faculty}
              handOut={faculty && session.state !== 'ended'
                ? (docId, name) => <HandOutButton sessionId={session.id} templateDocId={docId} label={`Hand out ${name}`} />
                : undefined}
            />
          )}
          <AfterClass session={session} faculty={faculty} />
          <ErrorLine error={error} />
        </main>
      </SetViewing.Provider>
    </SessionSocket.Provider>
  )
}

/** The session's `lectern` document (state, focus, AI job feed), opened once for the whole page.
 * Read-only for everyone: only the server writes it. `null` until the session is known. */
function useServerDocument (socket: LecternSocket, docId: string | undefined): Y.Doc | null {
  const [doc, setDoc] = useState<Y.Doc | null>(null)
  useEffect(() => {
    if (docId === undefined) return
    const opened = socket.open(docId, { readOnly: true })
    setDoc(opened.doc)
    return () => {
      setDoc(null)
      opened.destroy()
    }
  }, [socket, docId])
  return doc
}
