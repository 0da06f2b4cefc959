/**
 * The session's shared notes: CodeMirror on the notes document's `content` Y.Text, and
 * who is here (the notes document's awareness).
 */
import { useEffect, useRef, useState } from 'preact/hooks'
import { openDocument, type LecternProvider, type User } from '@lectern/client'

import { colourIndex, readUser } from './cursors.js'
import { mountNotesEditor } from './editor.js'
import { client } from './lectern.js'
import { accessMessage, useProviderState } from './provider.js'

interface Person { clientId: number, name: string, colour: number, me: boolean }

export function Notes ({ docId, user, readOnly, onEnded }: {
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

