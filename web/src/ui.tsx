/** Small pieces every screen uses. */
import type { ComponentChildren } from 'preact'

import { onLinkClick } from './router.js'

/** A link that routes without reloading the page. */
export function Link (props: { to: string, class?: string, children: ComponentChildren }) {
  return <a href={props.to} class={props.class} onClick={event => onLinkClick(event, props.to)}>{props.children}</a>
}

/** An error line that screen readers announce. */
export function ErrorLine ({ error }: { error: string | null }) {
  return <p class='error' role='alert'>{error ?? ''}</p>
}
