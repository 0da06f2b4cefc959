/**
 * History routing: the server answers every unknown non-API path with index.html, so
 * `/classrooms/…` and `/sessions/…` can be plain paths.
 */
import { useEffect, useState } from 'preact/hooks'

export type Route =
  | { name: 'home' }
  | { name: 'signin' }
  | { name: 'signup' }
  | { name: 'classroom', id: string }
  | { name: 'session', id: string }
  | { name: 'missing' }

export function parse (path: string): Route {
  if (path === '/' || path === '') return { name: 'home' }
  if (path === '/signin') return { name: 'signin' }
  if (path === '/signup') return { name: 'signup' }
  const classroom = /^\/classrooms\/([^/]+)$/.exec(path)
  if (classroom) return { name: 'classroom', id: decodeURIComponent(classroom[1]) }
  const session = /^\/sessions\/([^/]+)$/.exec(path)
  if (session) return { name: 'session', id: decodeURIComponent(session[1]) }
  return { name: 'missing' }
}

const listeners = new Set<() => void>()
addEventListener('popstate', () => { for (const listener of listeners) listener() })

export function navigate (path: string): void {
  if (path === location.pathname) return
  history.pushState(null, '', path)
  for (const listener of listeners) listener()
}

export function useRoute (): Route {
  const [path, setPath] = useState(location.pathname)
  useEffect(() => {
    const listener = (): void => setPath(location.pathname)
    listeners.add(listener)
    return () => { listeners.delete(listener) }
  }, [])
  return parse(path)
}

/** A link that routes without reloading the page. */
export function onLinkClick (event: MouseEvent, path: string): void {
  if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return
  event.preventDefault()
  navigate(path)
}
