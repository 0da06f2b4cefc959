/**
 * The session chat, where AI answers stream in, with a box to ask the AI (`kind: chat`)
 * and each answer's citations.
 */
import { useEffect, useState } from 'preact/hooks'
import { chatMessages, type ChatMessage, type LecternProvider } from '@lectern/client'

import { Citations } from './ai.js'
import { ConnectionStatus, accessMessage, useProviderState } from './provider.js'
import { useSessionSocket } from './socket.js'
import { ErrorLine, useAction } from './ui.js'

export function Chat ({ docId, sessionId, names, onUnknownAuthor }: {
  docId: string, sessionId: string, names: Map<string, string>, onUnknownAuthor: (userId: string) => void
}) {
  const socket = useSessionSocket()
  const [provider, setProvider] = useState<LecternProvider | null>(null)
  const [messages, setMessages] = useState<ChatMessage[]>([])
  const { busy, error, run } = useAction()
  const providerState = useProviderState(provider)
  const { access } = providerState

  useEffect(() => {
    const opened = socket.open(docId)
    const chat = chatMessages(opened.doc)
    const unsubscribe = chat.subscribe(setMessages)
    setMessages(chat.list())
    setProvider(opened)
    return () => {
      unsubscribe()
      opened.destroy()
    }
  }, [socket, docId])

  useEffect(() => {
    for (const message of messages) {
      if (message.role === 'user' && !names.has(message.author)) onUnknownAuthor(message.author)
    }
  }, [messages, names])

  const ask = async (event: Event): Promise<void> => {
    event.preventDefault()
    const form = event.currentTarget as HTMLFormElement
    const prompt = String(new FormData(form).get('prompt')).trim()
    if (prompt === '') return
    await run(async () => {
      // The job writes the question and then the answer into the chat document. Asked
      // over the page's socket, on the chat document.
      await socket.startAiJob(docId, sessionId, { kind: 'chat', prompt })
      form.reset()
    })
  }

  return (
    <section class='chat' aria-labelledby='chat-heading'>
      <div class='section-head'>
        <h2 id='chat-heading'>Chat</h2>
        <ConnectionStatus state={providerState} editable={false} />
      </div>
      {access !== null && <p class='error' role='alert'>{accessMessage(access)}</p>}
      <ol class='messages' aria-label='Chat messages' aria-live='polite'>
        {messages.length === 0 && <li class='muted'>No messages yet.</li>}
        {messages.map(message => {
          const ai = message.role === 'assistant'
          return (
            <li key={message.id} class={ai ? 'message ai' : 'message'}>
              <span class='author'>{ai ? 'AI' : names.get(message.author) ?? 'Someone'}</span>
              <span class='text'>{message.text}{message.status === 'streaming' ? ' …' : ''}</span>
              {message.status === 'failed' && <span class='error'> {message.error ?? 'The answer failed.'}</span>}
              {ai && message.citations.length > 0 && <Citations citations={message.citations} />}
            </li>
          )
        })}
      </ol>
      <form class='row' onSubmit={event => { void ask(event) }}>
        <label>Ask the AI <input name='prompt' autocomplete='off' required maxLength={2000} /></label>
        <button type='submit' disabled={busy}>Ask</button>
      </form>
      <ErrorLine error={error} />
    </section>
  )
}
