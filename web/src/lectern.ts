/**
 * The one `LecternClient` of the page, same-origin, with its tokens kept in
 * `localStorage` so a reload stays signed in. The signed-in user is cached next to them.
 */
import { LecternClient, LecternError, type Tokens, type User } from '@lectern/client'

const TOKENS_KEY = 'lectern.tokens'
const USER_KEY = 'lectern.user'

function load<T> (key: string): T | undefined {
  const raw = localStorage.getItem(key)
  if (raw === null) return undefined
  try {
    return JSON.parse(raw) as T
  } catch {
    localStorage.removeItem(key)
    return undefined
  }
}

/** Listeners told when the client signs out (a refused refresh, or `signOut`). */
const signedOutListeners = new Set<() => void>()

export const client = new LecternClient({
  baseUrl: location.origin,
  tokens: load<Tokens>(TOKENS_KEY),
  onTokens: tokens => {
    if (tokens === null) {
      localStorage.removeItem(TOKENS_KEY)
      localStorage.removeItem(USER_KEY)
      for (const listener of signedOutListeners) listener()
    } else {
      localStorage.setItem(TOKENS_KEY, JSON.stringify(tokens))
    }
  }
})

/** The cached user, if the client holds tokens. */
export function storedUser (): User | null {
  return client.signedIn ? load<User>(USER_KEY) ?? null : null
}

export function rememberUser (user: User): void {
  localStorage.setItem(USER_KEY, JSON.stringify(user))
}

export function onSignedOut (listener: () => void): () => void {
  signedOutListeners.add(listener)
  return () => signedOutListeners.delete(listener)
}

/** The message to show for a failed call: the API's own message, or a network failure. */
export function describeError (error: unknown): string {
  if (error instanceof LecternError) {
    const wait = error.retryAfter !== undefined ? ` Try again in ${error.retryAfter} s.` : ''
    return `${error.message}${wait}`
  }
  if (error instanceof TypeError) return 'The server cannot be reached. Check your connection.'
  return error instanceof Error ? error.message : String(error)
}
