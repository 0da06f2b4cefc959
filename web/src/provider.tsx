/** What the session page's panels share about an open document's provider: its
 * connection, whether the server has stored every local edit, and its last refusal. */
import { useEffect, useState } from 'preact/hooks'
import type { AccessEvent, LecternProvider } from '@lectern/client'

export type Connection = 'connecting' | 'connected' | 'disconnected'

export interface ProviderState {
  connection: Connection
  /** The server has stored every local edit (`provider.saved`). */
  saved: boolean
  /** The browser says it has no network (`navigator.onLine`). */
  offline: boolean
  access: AccessEvent | null
}

/** Keeps a provider's connection state, saved state and its last `access` refusal. */
export function useProviderState (provider: LecternProvider | null): ProviderState {
  const [connection, setConnection] = useState<Connection>('connecting')
  const [saved, setSaved] = useState(true)
  const [offline, setOffline] = useState(!navigator.onLine)
  const [access, setAccess] = useState<AccessEvent | null>(null)
  useEffect(() => {
    if (provider === null) return
    const onStatus = ({ status }: { status: Connection }): void => setConnection(status)
    const onSaved = (next: boolean): void => setSaved(next)
    const onAccess = (event: AccessEvent): void => setAccess(event)
    provider.on('status', onStatus)
    provider.on('saved', onSaved)
    provider.on('access', onAccess)
    setSaved(provider.saved)
    return () => {
      provider.off('status', onStatus)
      provider.off('saved', onSaved)
      provider.off('access', onAccess)
    }
  }, [provider])
  useEffect(() => {
    const update = (): void => setOffline(!navigator.onLine)
    addEventListener('online', update)
    addEventListener('offline', update)
    return () => {
      removeEventListener('online', update)
      removeEventListener('offline', update)
    }
  }, [])
  return { connection, saved, offline, access }
}

/** The connection badge and, for a document the user edits, whether their edits are
 * stored: "saved", "saving…", or kept in the page until the connection is back. */
export function ConnectionStatus ({ state, editable }: { state: ProviderState, editable: boolean }) {
  const { connection, saved, offline } = state
  // The browser knows before the socket does: an open socket only notices a dead network
  // when its watchdog gives up on it (up to 30 s).
  const online = connection === 'connected' && !offline
  const label = offline ? 'offline' : connection === 'connected' ? 'connected' : connection === 'connecting' ? 'connecting…' : 'reconnecting…'
  let edits = ''
  if (editable && !saved) edits = online ? 'saving…' : 'edits kept here, sent when back online'
  else if (editable && online) edits = 'saved'
  return (
    <span class='connection' role='status'>
      <span class={`status status-${online ? 'connected' : 'disconnected'}`}>{label}</span>
      {edits !== '' && <span class='saved-state'>{edits}</span>}
    </span>
  )
}

export function accessMessage (access: AccessEvent): string {
  if (access.reason === 'session_ended') return 'The session has ended.'
  if (access.reason === 'unauthenticated') return 'You are signed out. Sign in again to keep working.'
  return `You no longer have access to this document (${access.message}).`
}
