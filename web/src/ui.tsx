/** Small pieces every screen uses. */
import type { ComponentChildren } from 'preact'
import { useEffect, useState } from 'preact/hooks'
import { LecternError } from '@lectern/client'

import { describeError } from './lectern.js'
import { onLinkClick } from './router.js'

/** A link that routes without reloading the page. */
export function Link (props: { to: string, class?: string, children: ComponentChildren }) {
  return <a href={props.to} class={props.class} onClick={event => onLinkClick(event, props.to)}>{props.children}</a>
}

/** An error line that screen readers announce. */
export function ErrorLine ({ error }: { error: string | null }) {
  return <p class='error' role='alert'>{error ?? ''}</p>
}

/** A form's or button's request: `busy` while `run` runs one, and the API's message in
 * `error` when it fails, the failure itself in `failure` (both cleared when the next one
 * starts). */
export function useAction (): {
  busy: boolean
  error: string | null
  failure: unknown
  setError: (error: string | null) => void
  run: (action: () => Promise<void>) => Promise<void>
} {
  const [error, setError] = useState<string | null>(null)
  const [failure, setFailure] = useState<unknown>(null)
  const [busy, setBusy] = useState(false)
  const run = async (action: () => Promise<void>): Promise<void> => {
    setBusy(true)
    setError(null)
    setFailure(null)
    try {
      await action()
    } catch (caught) {
      setError(describeError(caught))
      setFailure(caught)
    } finally {
      setBusy(false)
    }
  }
  return { busy, error, failure, setError, run }
}

/** The seconds left before a rate-limited request (`429`, `Retry-After`) may be tried
 * again, counting down to 0; 0 for any other failure. */
export function useRetryAfter (failure: unknown): number {
  const [left, setLeft] = useState(0)
  useEffect(() => {
    const seconds = failure instanceof LecternError ? failure.retryAfter ?? 0 : 0
    if (seconds <= 0) {
      setLeft(0)
      return
    }
    const until = Date.now() + seconds * 1000
    const tick = (): void => setLeft(Math.max(0, Math.ceil((until - Date.now()) / 1000)))
    tick()
    const timer = setInterval(tick, 1000)
    return () => clearInterval(timer)
  }, [failure])
  return left
}

/** A page that could not be shown (no such classroom or session, or not a member): the
 * reason and a way back. */
export function ErrorPage ({ title, error }: { title: string, error: string }) {
  return (
    <main>
      <h1>{title}</h1>
      <p class='error' role='alert'>{error}</p>
      <p><Link to='/'>Back to your classrooms</Link></p>
    </main>
  )
}
