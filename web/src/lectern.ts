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

/** Why the page is signed out: the user signed out here, or the server refused to renew
 * the sign-in (it expired, was signed out elsewhere, or its refresh token was reused). */
export type SignOutReason = 'signed_out' | 'expired'

/** Listeners told when the client signs out (a refused refresh, or `signOut`). */
const signedOutListeners = new Set<(reason: SignOutReason) => void>()
/** Set while `signOut` runs, so its forgetting of the tokens is not taken for an expiry. */
let signingOut = false

export const client = new LecternClient({
  baseUrl: location.origin,
  tokens: load<Tokens>(TOKENS_KEY),
  onTokens: tokens => {
    if (tokens === null) {
      localStorage.removeItem(TOKENS_KEY)
      localStorage.removeItem(USER_KEY)
      const reason: SignOutReason = signingOut ? 'signed_out' : 'expired'
      for (const listener of signedOutListeners) listener(reason)
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

export function onSignedOut (listener: (reason: SignOutReason) => void): () => void {
  signedOutListeners.add(listener)
  return () => signedOutListeners.delete(listener)
}

/** Signs out here: revokes this login on the server (its sockets close) and forgets the
 * tokens, even when the server cannot be reached. */
export async function signOut (): Promise<void> {
  signingOut = true
  try {
    await client.logout()
  } catch {
    // Signed out locally regardless.
  } finally {
    signingOut = false
  }
}

/** The message to show for a failed call: a plain sentence for the codes a person meets
 * (docs/api.md, "Errors"), else the API's own message, or a network failure. */
export function describeError (error: unknown): string {
  if (error instanceof LecternError) {
    const wait = error.retryAfter !== undefined ? ` Try again in ${error.retryAfter} s.` : ''
    switch (error.code) {
      case 'invalid_credentials':
        return 'Wrong email or password.'
      case 'unauthenticated':
      case 'invalid_token':
      case 'token_expired':
      case 'invalid_refresh_token':
      case 'refresh_token_reused':
        return 'Your sign-in has expired. Sign in again.'
      case 'rate_limited':
        return `Too many requests or failed sign-ins from here.${wait}`
      case 'forbidden':
        return `You are not allowed to do this: ${error.message}`
      case 'not_found':
        return 'Not found: it does not exist, or it is not in one of your classrooms.'
      default:
        return `${error.message}${wait}`
    }
  }
  if (error instanceof TypeError) return 'The server cannot be reached. Check your connection.'
  return error instanceof Error ? error.message : String(error)
}
