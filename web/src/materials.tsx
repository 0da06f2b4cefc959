/**
 * A classroom's course material on the classroom page: upload (file picker or drag and
 * drop onto the same zone) with the transfer's progress, then ingestion's progress from
 * the classroom's materials feed document; the list with download and delete; semantic
 * search showing each passage with its file and place.
 */
import { useEffect, useRef, useState } from 'preact/hooks'
import {
  materialsFeed, materialsFeedDocId, openDocument,
  type FeedMaterial, type SearchHit, type User
} from '@lectern/client'

import { client, describeError } from './lectern.js'
import { ErrorLine } from './ui.js'

/** Where a passage is: page, heading, lines — whichever the file has. */
function place (hit: SearchHit): string {
  const parts: string[] = []
  if (hit.page !== null) parts.push(`page ${hit.page}`)
  if (hit.heading !== null) parts.push(hit.heading)
  if (hit.line_start !== null) {
    const end = hit.line_end ?? hit.line_start
    parts.push(end === hit.line_start ? `line ${hit.line_start}` : `lines ${hit.line_start}–${end}`)
  }
  return parts.join(' · ')
}

export function Materials ({ classroomId, faculty, user }: {
  classroomId: string, faculty: boolean, user: User
}) {
  const [materials, setMaterials] = useState<FeedMaterial[]>([])
  // The transfer in progress: its file name and percent sent.
  const [sending, setSending] = useState<{ name: string, percent: number } | null>(null)
  const [hits, setHits] = useState<SearchHit[] | null>(null)
  const [error, setError] = useState<string | null>(null)
  const [dragging, setDragging] = useState(false)
  const input = useRef<HTMLInputElement>(null)

  useEffect(() => {
    const opened = openDocument(client, materialsFeedDocId(classroomId))
    const feed = materialsFeed(opened.doc)
    const unsubscribe = feed.subscribe(setMaterials)
    setMaterials(feed.list())
    return () => {
      unsubscribe()
      opened.destroy()
    }
  }, [classroomId])

  const upload = async (files: FileList | null): Promise<void> => {
    if (files === null || files.length === 0) return
    setError(null)
    for (const file of files) {
      setSending({ name: file.name, percent: 0 })
      try {
        await client.uploadMaterial(classroomId, file, file.name,
          { onProgress: fraction => setSending({ name: file.name, percent: Math.round(100 * fraction) }) })
      } catch (failure) {
        setError(describeError(failure))
      }
    }
    setSending(null)
    if (input.current !== null) input.current.value = ''
  }

  const download = async (material: FeedMaterial): Promise<void> => {
    setError(null)
    try {
      // The content needs the Authorization header, so a plain link cannot fetch it.
      const blob = await (await client.downloadMaterial(material.id)).blob()
      const url = URL.createObjectURL(blob)
      const link = document.createElement('a')
      link.href = url
      link.download = material.file_name
      link.click()
      setTimeout(() => URL.revokeObjectURL(url), 60_000)
    } catch (failure) {
      setError(describeError(failure))
    }
  }

  const remove = async (material: FeedMaterial): Promise<void> => {
    setError(null)
    try {
      // The feed drops it; the list follows.
      await client.deleteMaterial(material.id)
    } catch (failure) {
      setError(describeError(failure))
    }
  }

  const search = async (event: Event): Promise<void> => {
    event.preventDefault()
    const query = String(new FormData(event.currentTarget as HTMLFormElement).get('query')).trim()
    if (query === '') return
    setError(null)
    try {
      setHits((await client.search(classroomId, { query })).hits)
    } catch (failure) {
      setError(describeError(failure))
    }
  }

  return (
    <section aria-labelledby='materials-heading'>
      <h2 id='materials-heading'>Course material</h2>
      <label class={dragging ? 'dropzone dragging' : 'dropzone'}
        onDragOver={event => { event.preventDefault(); setDragging(true) }}
        onDragLeave={() => setDragging(false)}
        onDrop={event => { event.preventDefault(); setDragging(false); void upload(event.dataTransfer?.files ?? null) }}>
        Upload a file (PDF, Word, Markdown or text), or drop it here
        <input ref={input} type='file' multiple accept='.pdf,.docx,.md,.markdown,.txt,text/plain,text/markdown,application/pdf'
          onChange={event => { void upload((event.currentTarget as HTMLInputElement).files) }} />
      </label>
      {sending !== null && (
        <label class='inline'>Sending {sending.name}{' '}
          <progress max={100} value={sending.percent} aria-label={`Sending ${sending.name}`} />
        </label>
      )}
      <ul class='members' aria-label='Materials'>
        {materials.length === 0 && <li class='muted'>No material yet.</li>}
        {materials.map(material => (
          <li key={material.id}>
            <span>
              {material.file_name} <span class='muted'>({material.status === 'failed'
                ? `failed: ${material.error ?? 'unknown reason'}`
                : material.status})</span>
              {material.status !== 'ready' && material.status !== 'failed' && (
                <progress max={100} value={material.progress} aria-label={`Ingesting ${material.file_name}`} />
              )}
            </span>
            <span class='actions'>
              <button type='button' class='secondary' aria-label={`Download ${material.file_name}`}
                onClick={() => { void download(material) }}>Download</button>
              {(faculty || material.uploaded_by === user.id) && (
                <button type='button' class='secondary' aria-label={`Delete ${material.file_name}`}
                  onClick={() => { void remove(material) }}>Delete</button>
              )}
            </span>
          </li>
        ))}
      </ul>
      <form class='row' role='search' onSubmit={event => { void search(event) }}>
        <label>Search the material <input name='query' type='search' required maxLength={500} /></label>
        <button type='submit'>Search</button>
      </form>
      {hits !== null && (
        <ol class='hits' aria-label='Search results'>
          {hits.length === 0 && <li class='muted'>Nothing found.</li>}
          {hits.map(hit => (
            <li key={`${hit.material_id}-${hit.ordinal}`}>
              <blockquote>{hit.text}</blockquote>
              <span class='muted'>{hit.file_name}{place(hit) === '' ? '' : ` · ${place(hit)}`}</span>
            </li>
          ))}
        </ol>
      )}
      <ErrorLine error={error} />
    </section>
  )
}
