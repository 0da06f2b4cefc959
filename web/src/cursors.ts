/**
 * Remote cursors and selections, labelled with each person's name, coloured by class.
 *
 * y-codemirror.next's own plugin colours them with `style` attributes, which the server's
 * `style-src 'self'` refuses (the colours vanish and Chromium logs a violation per cursor).
 * This plugin does the same work with a class per palette colour instead: people carry
 * their palette index in awareness (`user.colour`), and the theme holds the colours.
 * It also publishes the local selection to awareness as `cursor: { anchor, head }`
 * (relative positions), the field y-codemirror.next uses, so both interoperate.
 */
import { Decoration, EditorView, ViewPlugin, WidgetType, type DecorationSet, type ViewUpdate } from '@codemirror/view'
import { Annotation, type Extension, type Range } from '@codemirror/state'
import * as Y from 'yjs'
import type { Awareness } from '@lectern/client'

/** Cursor colours, dark enough for white label text (WCAG AA on white). */
export const COLOURS = ['#1d5fd1', '#b3261e', '#146c2e', '#7a3fb0', '#9a5b00', '#00707a', '#b0306a', '#4a5568']

/** A stable palette index for a user id. */
export function colourIndex (userId: string): number {
  let hash = 0
  for (const char of userId) hash = (hash * 31 + char.charCodeAt(0)) >>> 0
  return hash % COLOURS.length
}

/** The awareness `user` field this app writes. */
export interface AwarenessUser { id: string, name: string, colour: number }

export function readUser (state: unknown): AwarenessUser | null {
  const user = (state as { user?: Partial<AwarenessUser> } | null)?.user
  if (typeof user?.name !== 'string' || typeof user.id !== 'string') return null
  const colour = typeof user.colour === 'number' && COLOURS[user.colour] !== undefined ? user.colour : 0
  return { id: user.id, name: user.name, colour }
}

/** Marks the transactions that only redraw after a remote awareness change. */
const redraw = Annotation.define<null>()

class Caret extends WidgetType {
  constructor (readonly name: string, readonly colour: number) { super() }

  override eq (other: Caret): boolean {
    return other.name === this.name && other.colour === this.colour
  }

  toDOM (): HTMLElement {
    const caret = document.createElement('span')
    caret.className = `cm-remoteCaret cm-colour-${this.colour}`
    const label = document.createElement('span')
    label.className = 'cm-remoteName'
    label.textContent = this.name
    caret.append('\u2060', label, '\u2060')
    return caret
  }

  override ignoreEvent (): boolean {
    return true
  }
}

const theme = EditorView.theme({
  '.cm-remoteCaret': { position: 'relative', borderLeft: '2px solid', marginLeft: '-1px', marginRight: '-1px' },
  '.cm-remoteName': {
    position: 'absolute', top: '-1.3em', left: '-2px', whiteSpace: 'nowrap', userSelect: 'none',
    fontFamily: 'system-ui, sans-serif', fontSize: '12px', lineHeight: '1.2', color: '#fff',
    padding: '0 3px', borderRadius: '3px 3px 3px 0', zIndex: '10'
  },
  ...Object.fromEntries(COLOURS.flatMap((colour, index) => [
    [`.cm-remoteCaret.cm-colour-${index}`, { borderColor: colour }],
    [`.cm-colour-${index} .cm-remoteName`, { backgroundColor: colour }],
    [`.cm-remoteSelection.cm-colour-${index}`, { backgroundColor: `${colour}33` }]
  ]))
})

/** The extension: publish the local selection, draw everyone else's. */
export function remoteCursors (text: Y.Text, awareness: Awareness): Extension {
  const plugin = ViewPlugin.fromClass(class {
    decorations: DecorationSet = Decoration.none
    readonly #onChange: (change: { added: number[], updated: number[], removed: number[] }) => void

    constructor (readonly view: EditorView) {
      this.#onChange = ({ added, updated, removed }) => {
        const others = [...added, ...updated, ...removed].some(id => id !== awareness.clientID)
        // Awareness changes come outside CodeMirror's update cycle: redraw on the next tick.
        if (others) queueMicrotask(() => view.dispatch({ annotations: redraw.of(null) }))
      }
      awareness.on('change', this.#onChange)
    }

    update (update: ViewUpdate): void {
      this.#publish(update)
      this.decorations = this.#draw(update.view)
    }

    destroy (): void {
      awareness.off('change', this.#onChange)
      awareness.setLocalStateField('cursor', null)
    }

    #publish (update: ViewUpdate): void {
      const focused = update.view.hasFocus
      const local = awareness.getLocalState() as { cursor?: { anchor: unknown, head: unknown } | null } | null
      if (local === null) return
      if (!focused) return
      const selection = update.state.selection.main
      const anchor = Y.createRelativePositionFromTypeIndex(text, selection.anchor)
      const head = Y.createRelativePositionFromTypeIndex(text, selection.head)
      const current = local.cursor
      if (current != null &&
        Y.compareRelativePositions(Y.createRelativePositionFromJSON(current.anchor), anchor) &&
        Y.compareRelativePositions(Y.createRelativePositionFromJSON(current.head), head)) return
      awareness.setLocalStateField('cursor', { anchor, head })
    }

    #draw (view: EditorView): DecorationSet {
      const doc = text.doc
      if (doc === null) return Decoration.none
      const ranges: Array<Range<Decoration>> = []
      const length = view.state.doc.length
      for (const [clientId, state] of awareness.getStates()) {
        if (clientId === awareness.clientID) continue
        const user = readUser(state)
        const cursor = (state as { cursor?: { anchor?: unknown, head?: unknown } | null }).cursor
        if (user === null || cursor?.anchor == null || cursor.head == null) continue
        const anchor = Y.createAbsolutePositionFromRelativePosition(Y.createRelativePositionFromJSON(cursor.anchor), doc)
        const head = Y.createAbsolutePositionFromRelativePosition(Y.createRelativePositionFromJSON(cursor.head), doc)
        if (anchor === null || head === null || anchor.type !== text || head.type !== text) continue
        const from = Math.min(anchor.index, head.index, length)
        const to = Math.min(Math.max(anchor.index, head.index), length)
        const colour = `cm-colour-${user.colour}`
        if (from < to) ranges.push(Decoration.mark({ class: `cm-remoteSelection ${colour}` }).range(from, to))
        ranges.push(Decoration.widget({
          widget: new Caret(user.name, user.colour),
          side: head.index > anchor.index ? -1 : 1
        }).range(Math.min(head.index, length)))
      }
      return Decoration.set(ranges, true)
    }
  }, { decorations: value => value.decorations })
  return [theme, plugin]
}
