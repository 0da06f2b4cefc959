/**
 * The session page's one WebSocket: a `LecternSocket` (the multiplexed `/ws` endpoint)
 * that every document on the page opens on, and that starts and cancels AI jobs through its
 * control messages. Created by the session page, shared with its panels through a context,
 * closed when the page goes.
 */
import { createContext } from 'preact'
import { useContext, useEffect, useMemo } from 'preact/hooks'
import { LecternSocket } from '@lectern/client'

import { client } from './lectern.js'

export const SessionSocket = createContext<LecternSocket | null>(null)

/** The socket of the session page this component is on. */
export function useSessionSocket (): LecternSocket {
  const socket = useContext(SessionSocket)
  if (socket === null) throw new Error('useSessionSocket is only for the session page')
  return socket
}

/** A new socket for session `sessionId`, destroyed (with every document opened on it)
 * when the page leaves the session. Made during render, not in an effect, so the panels'
 * effects (which run before their parent's) find it. */
export function useNewSessionSocket (sessionId: string): LecternSocket {
  const socket = useMemo(() => new LecternSocket(client), [sessionId])
  useEffect(() => () => socket.destroy(), [socket])
  return socket
}
