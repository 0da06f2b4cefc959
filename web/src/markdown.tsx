/**
 * A small Markdown renderer to Preact elements, for text any member can write (the notes
 * preview, an AI translation): headings, paragraphs, bullet and numbered lists, code
 * blocks, bold, italic, inline code and links. It builds elements and text nodes only, never
 * HTML strings (`innerHTML`), so what someone types is shown, never run: `<script>` is
 * text, and a link opens only an http or https address.
 */
import type { ComponentChildren, VNode } from 'preact'
import { useEffect, useState } from 'preact/hooks'
import type * as Y from 'yjs'

type Block =
  | { type: 'heading', level: number, text: string }
  | { type: 'paragraph', text: string }
  | { type: 'list', ordered: boolean, start: number, items: string[] }
  | { type: 'code', text: string }

const HEADING = /^(#{1,6})\s+(.*?)\s*#*\s*$/
const BULLET = /^\s*[-*+]\s+(.*)$/
const NUMBERED = /^\s*(\d{1,9})[.)]\s+(.*)$/
const FENCE = /^\s*(```|~~~)/

/** Splits Markdown into blocks, line by line. */
function blocks (markdown: string): Block[] {
  const lines = markdown.replace(/\r\n?/g, '\n').split('\n')
  const result: Block[] = []
  let paragraph: string[] = []
  let list: Extract<Block, { type: 'list' }> | null = null
  const endParagraph = (): void => {
    if (paragraph.length > 0) result.push({ type: 'paragraph', text: paragraph.join(' ') })
    paragraph = []
  }
  const endList = (): void => {
    if (list !== null) result.push(list)
    list = null
  }
  for (let at = 0; at < lines.length; at++) {
    const line = lines[at]
    const fence = FENCE.exec(line)
    if (fence !== null) {
      endParagraph()
      endList()
      const code: string[] = []
      at++
      while (at < lines.length && !lines[at].trimStart().startsWith(fence[1])) code.push(lines[at++])
      result.push({ type: 'code', text: code.join('\n') })
      continue
    }
    const heading = HEADING.exec(line)
    const bullet = BULLET.exec(line)
    const numbered = NUMBERED.exec(line)
    if (line.trim() === '') {
      endParagraph()
      endList()
    } else if (heading !== null) {
      endParagraph()
      endList()
      result.push({ type: 'heading', level: heading[1].length, text: heading[2] })
    } else if (bullet !== null || numbered !== null) {
      endParagraph()
      const ordered = bullet === null
      if (list === null || list.ordered !== ordered) {
        endList()
        list = { type: 'list', ordered, start: numbered !== null ? Number(numbered[1]) : 1, items: [] }
      }
      list.items.push(bullet !== null ? bullet[1] : numbered![2])
    } else if (list !== null && /^\s+\S/.test(line)) {
      // An indented line under a list item continues it.
      list.items[list.items.length - 1] += ' ' + line.trim()
    } else {
      endList()
      paragraph.push(line.trim())
    }
  }
  endParagraph()
  endList()
  return result
}

// The first of these that matches, leftmost, is rendered; the text before it stays text.
const INLINE = /`([^`]+)`|\*\*(.+?)\*\*|__(.+?)__|\*(\S(?:.*?\S)?)\*|(?<!\w)_(\S(?:.*?\S)?)_(?!\w)|\[([^\]]+)\]\(([^)\s]+)\)/

/** An address a link may open: http or https only (no `javascript:`, `data:`, ...). */
function safeHref (address: string): string | null {
  try {
    const url = new URL(address)
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null
  } catch {
    return null
  }
}

/** Longer paragraphs are shown as plain text: a failed match of INLINE may scan to the end
 * of the text from every opening `*`, `_` or `[`, so the work grows with the square of the
 * length, and anyone can paste a long line into the notes everyone previews. */
const MAX_INLINE_CHARS = 4000

/** The inline Markdown of `text` as text and elements. */
export function inline (text: string): ComponentChildren[] {
  if (text.length > MAX_INLINE_CHARS) return [text]
  const out: ComponentChildren[] = []
  let rest = text
  while (rest !== '') {
    const match = INLINE.exec(rest)
    if (match === null) {
      out.push(rest)
      break
    }
    if (match.index > 0) out.push(rest.slice(0, match.index))
    const [whole, code, strong, strongUnderscore, em, emUnderscore, label, address] = match
    if (code !== undefined) out.push(<code>{code}</code>)
    else if (strong !== undefined || strongUnderscore !== undefined) out.push(<strong>{inline(strong ?? strongUnderscore)}</strong>)
    else if (em !== undefined || emUnderscore !== undefined) out.push(<em>{inline(em ?? emUnderscore)}</em>)
    else {
      const href = safeHref(address)
      out.push(href !== null ? <a href={href} rel='noopener noreferrer'>{inline(label)}</a> : whole)
    }
    rest = rest.slice(match.index + whole.length)
  }
  return out
}

function renderBlock (block: Block, key: number): VNode {
  switch (block.type) {
    case 'heading': {
      // Headings inside the rendered text sit below the panel's own heading (an h2).
      const Tag = (['h3', 'h4', 'h5', 'h6', 'h6', 'h6'] as const)[block.level - 1]
      return <Tag key={key}>{inline(block.text)}</Tag>
    }
    case 'paragraph':
      return <p key={key}>{inline(block.text)}</p>
    case 'list': {
      const items = block.items.map((item, index) => <li key={index}>{inline(item)}</li>)
      return block.ordered
        ? <ol key={key} start={block.start}>{items}</ol>
        : <ul key={key}>{items}</ul>
    }
    case 'code':
      return <pre key={key}><code>{block.text}</code></pre>
  }
}

/** `text` rendered as Markdown. */
export function Markdown ({ text, label }: { text: string, label?: string }) {
  return <div class='markdown' aria-label={label} role={label !== undefined ? 'region' : undefined}>{blocks(text).map(renderBlock)}</div>
}

/** A live Y.Text rendered as Markdown, re-rendered on every change. */
export function TextPreview ({ text, label }: { text: Y.Text, label: string }) {
  const [value, setValue] = useState(() => text.toString())
  useEffect(() => {
    const update = (): void => setValue(text.toString())
    text.observe(update)
    update()
    return () => text.unobserve(update)
  }, [text])
  return <Markdown text={value} label={label} />
}
