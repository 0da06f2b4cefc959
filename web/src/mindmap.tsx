/**
 * The session mind map (`session/{id}/mindmap`), drawn as an indented tree of nested lists
 * with CSS elbow connectors: depth goes right, siblings go down in order. Nested lists are
 * what screen readers already announce as a tree ("list, 3 items, level 2"), so no ARIA tree
 * widget is needed. The tree is re-read on every change of the map, so it grows node by node
 * while the AI writes it.
 */
import { useEffect, useState } from 'preact/hooks'
import { mindmapTree, type LecternProvider, type MindmapNode, type MindmapTree } from '@lectern/client'

import { accessMessage, useProviderState } from './provider.js'
import { useSessionSocket } from './socket.js'

export function MindMap ({ docId }: { docId: string }) {
  const socket = useSessionSocket()
  const [provider, setProvider] = useState<LecternProvider | null>(null)
  const [tree, setTree] = useState<MindmapTree>({ root: null, size: 0 })
  const { access } = useProviderState(provider)

  useEffect(() => {
    // Read-only: members may edit the map, but this page only shows it.
    const opened = socket.open(docId, { readOnly: true })
    const map = opened.doc.getMap('mindmap')
    const update = (): void => setTree(mindmapTree(opened.doc))
    map.observeDeep(update)
    update()
    setProvider(opened)
    return () => {
      map.unobserveDeep(update)
      opened.destroy()
    }
  }, [socket, docId])

  return (
    <section class='mindmap' aria-labelledby='mindmap-heading'>
      <div class='section-head'>
        <h2 id='mindmap-heading'>Mind map</h2>
        {tree.size > 0 && <span class='muted'>{tree.size === 1 ? '1 idea' : `${tree.size} ideas`}</span>}
      </div>
      {access !== null && <p class='error' role='alert'>{accessMessage(access)}</p>}
      {tree.root === null
        ? <p class='muted'>No mind map yet. “Draw a mind map” asks the AI for one.</p>
        : (
          // Scrolls sideways on a narrow screen rather than squeezing the labels; focusable
          // so that a keyboard can scroll it.
          <div class='mindmap-scroll' tabIndex={0} role='region' aria-label='Mind map (scrolls)'>
            <ul class='tree' aria-label='Mind map'>
              <Branch node={tree.root} depth={0} />
            </ul>
          </div>
          )}
    </section>
  )
}

function Branch ({ node, depth }: { node: MindmapNode, depth: number }) {
  return (
    <li>
      <span class={`node depth-${Math.min(depth, 3)}`}>{node.label === '' ? '(no label)' : node.label}</span>
      {node.children.length > 0 && (
        <ul>
          {node.children.map(child => <Branch key={child.id} node={child} depth={depth + 1} />)}
        </ul>
      )}
    </li>
  )
}
