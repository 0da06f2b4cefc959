/** What the session page's panels share about an open document's provider. */
import { useEffect, useState } from 'preact/hooks'
import type { AccessEvent, LecternProvider } from '@lectern/client'

export type Connection = 'connecting' | 'connected' | 'disconnected'

/** Keeps a provider's connection state and its last `access` refusal. */
export function useProviderState (provider: LecternProvider | null): { connection: Connection, access: AccessEvent | null } {
  const [connection, setConnection] = useState<Connection>('connecting')
  const [access, setAccess] = useState<AccessEvent | null>(null)
  useEffect(() => {
    if (provider === null) return
    provider.on('status', ({ status }) => setConnection(status))
    provider.on('access', event => setAccess(event))
  }, [provider])
  return { connection, access }
}

export function accessMessage (access: AccessEvent): string {
  if (access.reason === 'session_ended') return 'The session has ended.'
  if (access.reason === 'unauthenticated') return 'You are signed out. Sign in again to keep working.'
  return `You no longer have access to this document (${access.message}).`
}

