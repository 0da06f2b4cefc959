/**
 * "Who is here": every client in a document's awareness, through the SDK's `presence`
 * (name, colour, idle), with the teacher marked and what each looks at besides the notes
 * (the awareness field `viewing`, see viewing.ts).
 *
 * Names and colours come from the awareness `user` field the notes publish
 * (`{ id, name, colour, color }`: `colour` is the palette index cursors.ts colours carets
 * by, `color` the CSS colour the SDK's presence and the Yjs editor bindings read). Who is
 * faculty comes from the classroom's member list, by the user id a client published:
 * awareness is display data anyone can write, so this only labels, it never grants.
 */
import { useEffect, useState } from 'preact/hooks'
import { presence, type Awareness, type Peer } from '@lectern/client'

import { readUser } from './cursors.js'
import { MAX_VIEWING_LABEL } from './viewing.js'

/** After how long without activity a person shows as idle. A page may ask for a shorter
 * time with `?idle_ms=` (the browser tests do, so that they need not wait a minute). */
const IDLE_AFTER_MS = 60_000

function idleAfterMs (): number {
  const asked = Number(new URLSearchParams(location.search).get('idle_ms'))
  return Number.isFinite(asked) && asked > 0 ? asked : IDLE_AFTER_MS
}

interface Person {
  clientId: number
  name: string
  colour: number
  me: boolean
  idle: boolean
  teacher: boolean
  /** What they look at besides the notes (viewing.ts), if anything. */
  viewing: string | null
}

function toPerson (peer: Peer, facultyIds: ReadonlySet<string>): Person | null {
  const user = readUser(peer.state)
  if (user === null) return null
  const viewing = typeof peer.state.viewing === 'string' && peer.state.viewing !== ''
    ? peer.state.viewing.slice(0, MAX_VIEWING_LABEL)
    : null
  return { clientId: peer.clientId, name: user.name, colour: user.colour, me: peer.local, idle: peer.idle, teacher: facultyIds.has(user.id), viewing }
}

export function People ({ awareness, facultyIds }: { awareness: Awareness, facultyIds: ReadonlySet<string> }) {
  const [peers, setPeers] = useState<Peer[]>([])
  useEffect(() => {
    const watched = presence(awareness, { idleAfterMs: idleAfterMs() })
    // Reading and clicking count as being here, not only typing into the notes.
    const active = (): void => watched.active()
    window.addEventListener('keydown', active, { passive: true })
    window.addEventListener('pointerdown', active, { passive: true })
    const stop = watched.subscribe(setPeers)
    setPeers(watched.peers())
    return () => {
      stop()
      window.removeEventListener('keydown', active)
      window.removeEventListener('pointerdown', active)
      watched.destroy()
    }
  }, [awareness])

  const people = peers.map(peer => toPerson(peer, facultyIds)).filter((person): person is Person => person !== null)
  people.sort((a, b) => Number(b.me) - Number(a.me) || Number(b.teacher) - Number(a.teacher) || a.name.localeCompare(b.name))
  return (
    <section class='people' aria-labelledby='people-heading'>
      <h2 id='people-heading'>Who is here</h2>
      <ul aria-label='People in this session'>
        {people.map(person => (
          <li key={person.clientId} class={person.idle ? 'person idle' : 'person'}>
            <span class={`dot dot-${person.colour}`} aria-hidden='true' />
            <span class='person-name'>{person.name}{person.me ? ' (you)' : ''}</span>
            {person.teacher && <span class='tag'>teacher</span>}
            {person.idle && <span class='tag tag-idle'>idle</span>}
            {person.viewing !== null && <span class='muted'> · viewing {person.viewing}</span>}
          </li>
        ))}
      </ul>
    </section>
  )
}
