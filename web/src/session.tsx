/**
 * The live session page: the shared notes and who is here (notes.tsx), the chat (chat.tsx)
 * and the AI panel (ai.tsx), which starts the other job kinds and shows every job's
 * status. Faculty lock, unlock and end the session; a locked session's notes are
 * read-only for students.
 */
import { useEffect, useRef, useState } from 'preact/hooks'
import type { LiveSession, User } from '@lectern/client'

import { AiPanel } from './ai.js'
import { Chat } from './chat.js'
import { client, describeError } from './lectern.js'
import { Notes } from './notes.js'
import { ErrorLine, Link } from './ui.js'

/** How often a running session is asked for again, to learn of a lock or unlock. */
const SESSION_POLL_MS = 1500

export function SessionPage ({ id, user }: { id: string, user: User }) {
  const [session, setSession] = useState<LiveSession | null>(null)
  const [faculty, setFaculty] = useState(false)
  const [names, setNames] = useState<Map<string, string>>(new Map())
  const [error, setError] = useState<string | null>(null)
  const loadNames = async (classroomId: string): Promise<void> => {
    const members = await client.listMembers(classroomId)
    setNames(new Map(members.map(member => [member.user_id, member.display_name])))
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
  // The server does not tell an open socket that the session was locked or unlocked (it
  // downgrades it in place), nor does the lectern document carry the session's state, so
  // the page asks for the session again every few seconds while it runs.
  const running = session !== null && session.state !== 'ended'
  useEffect(() => {
    if (!running) return
    let stopped = false
    let timer: ReturnType<typeof setTimeout> | undefined
    const poll = async (): Promise<void> => {
      try {
        const loaded = await client.getSession(id)
        if (!stopped) setSession(loaded)
      } catch {
        // A network blip or a refreshed token: the next poll tries again, and the
        // editors show their own connection state meanwhile.
      }
      if (!stopped) timer = setTimeout(() => { void poll() }, SESSION_POLL_MS)
    }
    timer = setTimeout(() => { void poll() }, SESSION_POLL_MS)
    return () => {
      stopped = true
      clearTimeout(timer)
    }
  }, [id, running])

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

  if (session === null) return <main><p>Loading…</p><ErrorLine error={error} /></main>
  const notes = session.documents.find(document => document.kind === 'notes')
  const chat = session.documents.find(document => document.kind === 'chat')
  const lectern = session.documents.find(document => document.kind === 'lectern')
  return (
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
          </div>
        )}
      </div>
      {session.state === 'locked' && (
        <p class='banner' role='status'>
          {faculty ? 'Locked: students can read but not write.' : 'Locked by the teacher'}
        </p>
      )}
      <div class='session-grid'>
        {notes !== undefined && <Notes docId={notes.doc_id} user={user} readOnly={notes.access === 'read'} onEnded={ended} />}
        {chat !== undefined && <Chat docId={chat.doc_id} sessionId={session.id} names={names} onUnknownAuthor={unknownAuthor} />}
      </div>
      {lectern !== undefined && <AiPanel sessionId={session.id} lecternDocId={lectern.doc_id} user={user} faculty={faculty} />}
      <ErrorLine error={error} />
    </main>
  )
}

