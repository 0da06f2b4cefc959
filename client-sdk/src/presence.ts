/**
 * Presence over y-websocket's awareness: who is here, their name and colour, and who is
 * idle.
 *
 * The user is published as the awareness field `user: { name, color, colorLight? }`, the
 * field the Yjs editor bindings (y-codemirror.next, y-quill, y-prosemirror) read for remote
 * cursors, so cursors and the presence list show the same name and colour. Awareness is
 * display data any member can write: never use it to decide anything (the server keeps its
 * own state in the session's lectern document).
 *
 * Idle is measured on the observer's clock, not trusted from the peer's: a peer is idle
 * when its `active_at` field has not changed for `idleAfterMs`. Each client republishes
 * `active_at` when its user is active (local edits, or `active()`), at most four times per
 * `idleAfterMs`, so presence stays well under the server's awareness rate limit.
 */

import type { Awareness } from './realtime.js'

/** The user as the editor bindings display them. */
export interface PresenceUser {
  /** The name shown next to the cursor and in the list. */
  name: string
  /** A CSS colour for the cursor and avatar. */
  color: string
  /** A lighter colour for the selection (y-codemirror.next's `colorLight`). */
  colorLight?: string
  /** The user id, if the app shares it. Display only: anyone can claim any id. */
  id?: string
}

/** One client in the document's awareness (a person may have several: tabs, devices). */
export interface Peer {
  /** The awareness (Yjs) client id. */
  clientId: number
  /** Whether this is the local client. */
  local: boolean
  /** The user it published, if any. */
  user: PresenceUser | undefined
  /** No activity seen for `idleAfterMs`. */
  idle: boolean
  /** Its whole awareness state (cursor, app fields...). */
  state: Record<string, unknown>
}

/** Options of {@link presence}. */
export interface PresenceOptions {
  /** After how long without activity a client counts as idle, ms (default 60 000). */
  idleAfterMs?: number
}

/** A presence view of one awareness; see the module doc. */
export interface Presence {
  /** The awareness it reads and writes. */
  readonly awareness: Awareness
  /** Publishes the local user (name, colour). */
  setUser (user: PresenceUser): void
  /** Marks the local user active now (call it on input that is not a document edit, e.g.
   * scrolling; local document edits count already). */
  active (): void
  /** Every client with a state, the local one first, then by client id. */
  peers (): Peer[]
  /** Calls `listener` with `peers()` after every awareness change and every idle change;
   * returns the unsubscribe function. */
  subscribe (listener: (peers: Peer[]) => void): () => void
  /** Stops watching (the awareness and its state are left as they are). */
  destroy (): void
}

/** Starts presence on `awareness` (e.g. `provider.awareness`), and marks the local user
 * active. */
export function presence (awareness: Awareness, { idleAfterMs = 60_000 }: PresenceOptions = {}): Presence {
  /** When this client last saw each client's `active_at` change, on its own clock. */
  const seen = new Map<number, { activeAt: unknown, at: number }>()
  const listeners = new Set<(peers: Peer[]) => void>()
  let lastPublished = 0
  let lastIdle = ''

  const observe = (): void => {
    const now = Date.now()
    for (const [clientId, state] of awareness.getStates()) {
      const activeAt = (state as Record<string, unknown>).active_at
      const known = seen.get(clientId)
      if (known === undefined || known.activeAt !== activeAt) seen.set(clientId, { activeAt, at: now })
    }
    for (const clientId of seen.keys()) {
      if (!awareness.getStates().has(clientId)) seen.delete(clientId)
    }
  }

  const peers = (): Peer[] => {
    const now = Date.now()
    const result: Peer[] = []
    for (const [clientId, raw] of awareness.getStates()) {
      const state = raw as Record<string, unknown>
      const at = seen.get(clientId)?.at ?? now
      result.push({ clientId, local: clientId === awareness.clientID, user: readUser(state.user), idle: now - at > idleAfterMs, state })
    }
    return result.sort((a, b) => Number(b.local) - Number(a.local) || a.clientId - b.clientId)
  }

  const notify = (): void => {
    const current = peers()
    lastIdle = idleKey(current)
    for (const listener of listeners) listener(current)
  }

  const active = (): void => {
    const now = Date.now()
    if (now - lastPublished < idleAfterMs / 4) return
    lastPublished = now
    awareness.setLocalStateField('active_at', now)
  }

  const onChange = (): void => { observe(); notify() }
  const onUpdate = (_update: Uint8Array, _origin: unknown, _doc: unknown, transaction: { local: boolean }): void => {
    if (transaction.local) active()
  }
  awareness.on('change', onChange)
  awareness.doc.on('update', onUpdate)
  // Idle is a matter of time passing, not of a change: check a few times per period.
  const timer = setInterval(() => {
    if (listeners.size > 0 && idleKey(peers()) !== lastIdle) notify()
  }, Math.max(50, idleAfterMs / 4))
  ;(timer as { unref?: () => void }).unref?.() // never keeps a Node process alive
  observe()
  active()

  return {
    awareness,
    setUser: user => awareness.setLocalStateField('user', { ...user }),
    active,
    peers,
    subscribe (listener) {
      listeners.add(listener)
      return () => { listeners.delete(listener) }
    },
    destroy () {
      clearInterval(timer)
      listeners.clear()
      awareness.off('change', onChange)
      awareness.doc.off('update', onUpdate)
    }
  }
}

function readUser (value: unknown): PresenceUser | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  const user = value as Record<string, unknown>
  if (typeof user.name !== 'string' || typeof user.color !== 'string') return undefined
  const result: PresenceUser = { name: user.name, color: user.color }
  if (typeof user.colorLight === 'string') result.colorLight = user.colorLight
  if (typeof user.id === 'string') result.id = user.id
  return result
}

function idleKey (peers: Peer[]): string {
  return peers.map(peer => `${peer.clientId}:${peer.idle ? 1 : 0}`).join(',')
}
