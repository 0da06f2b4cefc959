/**
 * The live session page: the shared notes (CodeMirror on the notes document's `content`
 * Y.Text), who is here (the notes document's awareness), and the chat, where AI answers
 * stream in, with a box to ask the AI (`kind: chat`) and each answer's citations; the AI
 * panel (ai.tsx) starts the other job kinds and shows every job's status. Faculty lock, unlock and end the
 * session; a locked session's notes are read-only for students.
 */
import { useEffect, useRef, useState } from 'preact/hooks'
import {
  chatMessages, openDocument,
  type AccessEvent, type ChatMessage, type LecternProvider, type LiveSession, type User
} from '@lectern/client'

import { AiPanel, Citations } from './ai.js'
import { colourIndex, readUser } from './cursors.js'
import { mountNotesEditor } from './editor.js'
import { client, describeError } from './lectern.js'
import { ErrorLine, Link, useAction } from './ui.js'

/** How often a running session is asked for again, to learn of a lock or unlock. */
const SESSION_POLL_MS = 1500

interface Person { clientId: number, name: string, colour: number, me: boolean }

type Connection = 'connecting' | 'connected' | 'disconnected'

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

/** Keeps a provider's connection state and its last `access` refusal. */
function useProviderState (provider: LecternProvider | null): { connection: Connection, access: AccessEvent | null } {
  const [connection, setConnection] = useState<Connection>('connecting')
  const [access, setAccess] = useState<AccessEvent | null>(null)
  useEffect(() => {
    if (provider === null) return
    provider.on('status', ({ status }) => setConnection(status))
    provider.on('access', event => setAccess(event))
  }, [provider])
  return { connection, access }
}

function accessMessage (access: AccessEvent): string {
  if (access.reason === 'session_ended') return 'The session has ended.'
  if (access.reason === 'unauthenticated') return 'You are signed out. Sign in again to keep working.'
  return `You no longer have access to this document (${access.message}).`
}

function Notes ({ docId, user, readOnly, onEnded }: {
  docId: string, user: User, readOnly: boolean, onEnded: () => void
}) {
  const host = useRef<HTMLDivElement>(null)
  const [provider, setProvider] = useState<LecternProvider | null>(null)
  const [people, setPeople] = useState<Person[]>([])
  const [readOnlyNow, setReadOnlyNow] = useState(readOnly)
  const { connection, access } = useProviderState(provider)
  // The access at the moment the document opens; later changes (a lock, an unlock) go
  // through `setReadOnly` below instead of reopening the document.
  const initialReadOnly = useRef(readOnly)
  initialReadOnly.current = readOnly
  useEffect(() => { provider?.setReadOnly(readOnly) }, [provider, readOnly])
  useEffect(() => { if (access?.reason === 'session_ended') onEnded() }, [access])

  useEffect(() => {
    const opened = openDocument(client, docId, { readOnly: initialReadOnly.current })
    const awareness = opened.awareness
    awareness.setLocalStateField('user', { id: user.id, name: user.display_name, colour: colourIndex(user.id) })
    const editor = mountNotesEditor(host.current!, opened.doc.getText('content'), awareness,
      { label: 'Shared notes', readOnly: opened.readOnly })
    setReadOnlyNow(opened.readOnly)
    opened.on('read-only', next => {
      editor.setReadOnly(next)
      setReadOnlyNow(next)
    })
    const updatePeople = (): void => {
      const list: Person[] = []
      for (const [clientId, state] of awareness.getStates()) {
        const who = readUser(state)
        if (who === null) continue
        list.push({ clientId, name: who.name, colour: who.colour, me: clientId === awareness.clientID })
      }
      list.sort((a, b) => Number(b.me) - Number(a.me) || a.name.localeCompare(b.name))
      setPeople(list)
    }
    awareness.on('change', updatePeople)
    updatePeople()
    setProvider(opened)
    return () => {
      awareness.off('change', updatePeople)
      editor.view.destroy()
      opened.destroy()
    }
  }, [docId, user.id, user.display_name])

  return (
    <>
      <section class='notes' aria-labelledby='notes-heading'>
        <div class='section-head'>
          <h2 id='notes-heading'>Notes</h2>
          <span class={`status status-${connection}`} role='status'>{connection}</span>
        </div>
        {readOnlyNow && <p class='muted' role='status'>Read only.</p>}
        {access !== null && <p class='error' role='alert'>{accessMessage(access)}</p>}
        <div ref={host} class='editor-host' data-testid='notes-editor' />
      </section>
      <section class='people' aria-labelledby='people-heading'>
        <h2 id='people-heading'>Who is here</h2>
        <ul aria-label='People in this session'>
          {people.map(person => (
            <li key={person.clientId}>
              <span class={`dot dot-${person.colour}`} aria-hidden='true' />
              {person.name}{person.me ? ' (you)' : ''}
            </li>
          ))}
        </ul>
      </section>
    </>
  )
}

function Chat ({ docId, sessionId, names, onUnknownAuthor }: {
  docId: string, sessionId: string, names: Map<string, string>, onUnknownAuthor: (userId: string) => void
}) {
  const [provider, setProvider] = useState<LecternProvider | null>(null)
  const [messages, setMessages] = useState<ChatMessage[]>([])
  const { busy, error, run } = useAction()
  const { connection, access } = useProviderState(provider)

  useEffect(() => {
    const opened = openDocument(client, docId)
    const chat = chatMessages(opened.doc)
    const unsubscribe = chat.subscribe(setMessages)
    setMessages(chat.list())
    setProvider(opened)
    return () => {
      unsubscribe()
      opened.destroy()
    }
  }, [docId])

  useEffect(() => {
    for (const message of messages) {
      if (message.role === 'user' && !names.has(message.author)) onUnknownAuthor(message.author)
    }
  }, [messages, names])

  const ask = async (event: Event): Promise<void> => {
    event.preventDefault()
    const form = event.currentTarget as HTMLFormElement
    const prompt = String(new FormData(form).get('prompt')).trim()
    if (prompt === '') return
    await run(async () => {
      // The job writes the question and then the answer into the chat document.
      await client.startAiJob(sessionId, { kind: 'chat', prompt })
      form.reset()
    })
  }

  return (
    <section class='chat' aria-labelledby='chat-heading'>
      <div class='section-head'>
        <h2 id='chat-heading'>Chat</h2>
        <span class={`status status-${connection}`}>{connection}</span>
      </div>
      {access !== null && <p class='error' role='alert'>{accessMessage(access)}</p>}
      <ol class='messages' aria-label='Chat messages' aria-live='polite'>
        {messages.length === 0 && <li class='muted'>No messages yet.</li>}
        {messages.map(message => {
          const ai = message.role === 'assistant'
          return (
            <li key={message.id} class={ai ? 'message ai' : 'message'}>
              <span class='author'>{ai ? 'AI' : names.get(message.author) ?? 'Someone'}</span>
              <span class='text'>{message.text}{message.status === 'streaming' ? ' …' : ''}</span>
              {message.status === 'failed' && <span class='error'> {message.error ?? 'The answer failed.'}</span>}
              {ai && message.citations.length > 0 && <Citations citations={message.citations} />}
            </li>
          )
        })}
      </ol>
      <form class='row' onSubmit={event => { void ask(event) }}>
        <label>Ask the AI <input name='prompt' autocomplete='off' required maxLength={2000} /></label>
        <button type='submit' disabled={busy}>Ask</button>
      </form>
      <ErrorLine error={error} />
    </section>
  )
}
