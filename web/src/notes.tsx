/**
 * The session's shared notes: CodeMirror on the notes document's `content` Y.Text, who is
 * here (people.tsx, on the notes document's awareness), and follow the teacher: faculty
 * bring everyone to the line their cursor is on, students' editors follow while their
 * toggle is on.
 *
 * The focus `section` this page writes is `pos:` and a Yjs relative position of the
 * teacher's cursor in the notes' `content` (base64): it needs no Markdown heading to exist,
 * cannot be ambiguous the way a repeated heading can, and, unlike a line number, stays on
 * the same text while anyone types above it before a student catches up.
 */
import { useEffect, useRef, useState } from 'preact/hooks'
import { onFocus, sessionFocus, type Focus, type LecternProvider, type User } from '@lectern/client'
import * as Y from 'yjs'

import { mountNotesEditor, type NotesEditor } from './editor.js'
import { awarenessUser } from './handouts.js'
import { client, describeError } from './lectern.js'
import { TextPreview } from './markdown.js'
import { People } from './people.js'
import { ConnectionStatus, accessMessage, useProviderState } from './provider.js'
import { useSessionSocket } from './socket.js'

/** The focus `section` for character `index` of `text`. */
function sectionAt (text: Y.Text, index: number): string {
  const position = Y.encodeRelativePosition(Y.createRelativePositionFromTypeIndex(text, index))
  return `pos:${btoa(String.fromCharCode(...position))}`
}

/** Where in `text` (a character offset) a focus points, if it is a `pos:` focus on
 * document `docId` whose text is still there. Anyone with faculty rights writes the focus:
 * anything unreadable is ignored. */
function focusedIndex (focus: Focus | undefined, docId: string, text: Y.Text): number | null {
  if (focus?.doc_id !== docId) return null
  const match = /^pos:([A-Za-z0-9+/=]{1,200})$/.exec(focus.section ?? '')
  if (match === null) return null
  try {
    const bytes = Uint8Array.from(atob(match[1]), char => char.charCodeAt(0))
    const position = Y.createAbsolutePositionFromRelativePosition(Y.decodeRelativePosition(bytes), text.doc!)
    return position !== null && position.type === text ? position.index : null
  } catch {
    return null
  }
}

export function Notes ({ docId, user, readOnly, onEnded, sessionId, lecternDoc, faculty, facultyIds, viewing }: {
  docId: string
  user: User
  readOnly: boolean
  onEnded: () => void
  sessionId: string
  /** The session's server-owned document (the focus), once open. */
  lecternDoc: Y.Doc | null
  faculty: boolean
  /** The classroom's faculty, to mark the teacher in "Who is here". */
  facultyIds: ReadonlySet<string>
  /** What this person looks at besides the notes, published for "Who is here". */
  viewing: string | null
}) {
  const socket = useSessionSocket()
  const host = useRef<HTMLDivElement>(null)
  const editorRef = useRef<NotesEditor | null>(null)
  const [provider, setProvider] = useState<LecternProvider | null>(null)
  // On by default: when the teacher says "bring everyone here", that is where the class
  // should be; a student reading ahead switches it off.
  const [following, setFollowing] = useState(true)
  const [focusError, setFocusError] = useState<string | null>(null)
  const [readOnlyNow, setReadOnlyNow] = useState(readOnly)
  // The rendered Markdown of the live notes, shown below the editor while toggled on.
  const [preview, setPreview] = useState(false)
  const providerState = useProviderState(provider)
  const { access } = providerState
  // The access at the moment the document opens; later changes (a lock, an unlock) go
  // through `setReadOnly` below instead of reopening the document.
  const initialReadOnly = useRef(readOnly)
  initialReadOnly.current = readOnly
  useEffect(() => { provider?.setReadOnly(readOnly) }, [provider, readOnly])
  useEffect(() => { if (access?.reason === 'session_ended') onEnded() }, [access])

  useEffect(() => {
    const opened = socket.open(docId, { readOnly: initialReadOnly.current })
    const awareness = opened.awareness
    awareness.setLocalStateField('user', awarenessUser(user))
    const editor = mountNotesEditor(host.current!, opened.doc.getText('content'), awareness,
      { label: 'Shared notes', readOnly: opened.readOnly })
    setReadOnlyNow(opened.readOnly)
    opened.on('read-only', next => {
      editor.setReadOnly(next)
      setReadOnlyNow(next)
    })
    editorRef.current = editor
    setProvider(opened)
    return () => {
      editorRef.current = null
      editor.view.destroy()
      opened.destroy()
    }
  }, [socket, docId, user.id, user.display_name])

  useEffect(() => { provider?.awareness.setLocalStateField('viewing', viewing) }, [provider, viewing])

  // Follow the teacher: every focus change on these notes scrolls the editor there.
  useEffect(() => {
    if (faculty || !following || lecternDoc === null) return
    return onFocus(lecternDoc, focus => {
      const index = provider === null ? null : focusedIndex(focus, docId, provider.doc.getText('content'))
      if (index !== null) editorRef.current?.reveal(index)
    })
  }, [faculty, following, lecternDoc, docId, provider])

  const toggleFollowing = (): void => {
    const next = !following
    setFollowing(next)
    // Switched back on: catch up with where the teacher is now.
    const index = next && lecternDoc !== null && provider !== null
      ? focusedIndex(sessionFocus(lecternDoc), docId, provider.doc.getText('content'))
      : null
    if (index !== null) editorRef.current?.reveal(index)
  }

  const bringEveryoneHere = async (): Promise<void> => {
    const editor = editorRef.current
    if (editor === null || provider === null) return
    setFocusError(null)
    try {
      const section = sectionAt(provider.doc.getText('content'), editor.cursorIndex())
      await client.setFocus(sessionId, { doc_id: docId, section })
    } catch (failure) {
      setFocusError(describeError(failure))
    }
  }

  return (
    <>
      <section class='notes' aria-labelledby='notes-heading'>
        <div class='section-head'>
          <h2 id='notes-heading'>Notes</h2>
          <ConnectionStatus state={providerState} editable={!readOnlyNow} />
        </div>
        {readOnlyNow && <p class='muted' role='status'>Read only.</p>}
        {access !== null && <p class='error' role='alert'>{accessMessage(access)}</p>}
        <div class='actions follow'>
          {faculty
            ? <button type='button' class='secondary' onClick={() => { void bringEveryoneHere() }}>Bring everyone here</button>
            : <button type='button' class='secondary' aria-pressed={following} onClick={toggleFollowing}>Follow the teacher</button>}
        </div>
        {focusError !== null && <p class='error' role='alert'>{focusError}</p>}
        <div ref={host} class='editor-host' data-testid='notes-editor' />
        <button type='button' class='secondary preview-toggle' aria-pressed={preview} onClick={() => setPreview(!preview)}>Preview</button>
        {preview && provider !== null && <TextPreview text={provider.doc.getText('content')} label='Notes preview' />}
      </section>
      {provider !== null && <People awareness={provider.awareness} facultyIds={facultyIds} />}
    </>
  )
}

