/**
 * The shared notes editor: CodeMirror 6 bound to a Y.Text by y-codemirror.next (sync and
 * undo), with remote cursors labelled from awareness (cursors.ts).
 *
 * The editor lives in a shadow root. CodeMirror injects its styles with style-mod, which
 * writes a `<style>` element into a document (refused by the server's `style-src 'self'`)
 * but a constructed stylesheet into a shadow root (allowed), so inside one the editor is
 * styled under the strict Content-Security-Policy.
 */
import { EditorView, basicSetup } from 'codemirror'
import { Decoration } from '@codemirror/view'
import { Compartment, EditorSelection, EditorState, StateEffect, StateField } from '@codemirror/state'
import { yCollab } from 'y-codemirror.next'
import type * as Y from 'yjs'
import type { Awareness } from '@lectern/client'

import { remoteCursors } from './cursors.js'

const theme = EditorView.theme({
  '&': { border: '1px solid #8a8f98', borderRadius: '6px', backgroundColor: '#fff', color: '#1b1f24', minHeight: '16rem' },
  '&.cm-focused': { outline: '3px solid #1d5fd1', outlineOffset: '1px' },
  '.cm-scroller': { fontFamily: 'ui-monospace, SFMono-Regular, Menlo, monospace', fontSize: '15px', minHeight: '16rem' },
  // Room above the first line for a remote cursor's name label.
  '.cm-content': { padding: '1.3rem 0 0.5rem' },
  // The line `reveal` brought into view (follow the teacher), for a moment.
  '.cm-revealed': { backgroundColor: '#fff3bf' }
})

/** How long a revealed line stays highlighted. */
const REVEAL_HIGHLIGHT_MS = 2000

/** Sets (a document position) or clears (`null`) the highlighted line. */
const highlightLine = StateEffect.define<number | null>()

/** The line `reveal` highlights, as a line decoration; mapped through edits meanwhile. */
const revealedLine = StateField.define({
  create: () => Decoration.none,
  update (lines, transaction) {
    lines = lines.map(transaction.changes)
    for (const effect of transaction.effects) {
      if (!effect.is(highlightLine)) continue
      lines = effect.value === null
        ? Decoration.none
        : Decoration.set([Decoration.line({ class: 'cm-revealed' }).range(effect.value)])
    }
    return lines
  },
  provide: field => EditorView.decorations.from(field)
})

/** A mounted editor: destroy it on unmount. */
export interface NotesEditor {
  view: EditorView
  /** Follows the document's access: read-only takes no edits. */
  setReadOnly: (readOnly: boolean) => void
  /** Scrolls the line holding character `index` (clamped to the document) to the top,
   * puts the cursor at its start and highlights it for a moment (follow the teacher). */
  reveal: (index: number) => void
  /** The character offset of the cursor. */
  cursorIndex: () => number
}

function readOnlyExtensions (readOnly: boolean) {
  return [EditorState.readOnly.of(readOnly), EditorView.editable.of(!readOnly)]
}

/** Mounts an editor on `text` into `host`. */
export function mountNotesEditor (host: HTMLElement, text: Y.Text, awareness: Awareness,
  options: { label: string, readOnly: boolean }): NotesEditor {
  // Read access (a student in a locked session, an ended session): the server would drop
  // every edit, so the editor takes none.
  const access = new Compartment()
  const root = host.shadowRoot ?? host.attachShadow({ mode: 'open' })
  const view = new EditorView({
    root,
    parent: root,
    state: EditorState.create({
      doc: text.toString(),
      extensions: [
        basicSetup,
        EditorView.lineWrapping,
        theme,
        EditorView.contentAttributes.of({ 'aria-label': options.label, 'aria-multiline': 'true' }),
        access.of(readOnlyExtensions(options.readOnly)),
        revealedLine,
        // No awareness for y-codemirror.next: its cursors use inline styles (see cursors.ts).
        yCollab(text, null),
        remoteCursors(text, awareness)
      ]
    })
  })
  const setReadOnly = (readOnly: boolean): void => {
    view.dispatch({ effects: access.reconfigure(readOnlyExtensions(readOnly)) })
  }
  let unhighlight: ReturnType<typeof setTimeout> | undefined
  const reveal = (index: number): void => {
    const doc = view.state.doc
    const at = doc.lineAt(Math.min(Math.max(0, Math.floor(index)), doc.length)).from
    view.dispatch({
      selection: EditorSelection.cursor(at),
      effects: [highlightLine.of(at), EditorView.scrollIntoView(at, { y: 'start', yMargin: 24 })]
    })
    clearTimeout(unhighlight)
    unhighlight = setTimeout(() => {
      // The editor may be gone by then (the page was left).
      if (view.dom.isConnected) view.dispatch({ effects: highlightLine.of(null) })
    }, REVEAL_HIGHLIGHT_MS)
  }
  const cursorIndex = (): number => view.state.selection.main.head
  return { view, setReadOnly, reveal, cursorIndex }
}
