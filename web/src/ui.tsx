/** Small pieces every screen uses. */
import type { ComponentChildren } from 'preact'
import { useState } from 'preact/hooks'

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
 * `error` when it fails (cleared when the next one starts). */
export function useAction (): {
  busy: boolean
  error: string | null
  setError: (error: string | null) => void
  run: (action: () => Promise<void>) => Promise<void>
} {
  const [error, setError] = useState<string | null>(null)
  const [busy, setBusy] = useState(false)
  const run = async (action: () => Promise<void>): Promise<void> => {
    setBusy(true)
    setError(null)
    try {
      await action()
    } catch (failure) {
      setError(describeError(failure))
    } finally {
      setBusy(false)
    }
  }
  return { busy, error, setError, run }
}
