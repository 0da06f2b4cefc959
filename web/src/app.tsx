/**
 * The screens: sign in / sign up, the classroom list, one classroom (its course material
 * in materials.tsx, its members in members.tsx), and the live session page (session.tsx).
 * Every call goes through `@lectern/client`; errors show the API's message.
 */
import type { ComponentChildren } from 'preact'
import { useEffect, useState } from 'preact/hooks'
import type { Classroom, RegisterRole, SessionSummary, User } from '@lectern/client'

import { client, describeError, onSignedOut, rememberUser, signOut, storedUser, type SignOutReason } from './lectern.js'
import { Materials } from './materials.js'
import { Members } from './members.js'
import { navigate, useRoute } from './router.js'
import { SessionPage } from './session.js'
import { ErrorLine, ErrorPage, Link, useAction, useRetryAfter } from './ui.js'

export function App () {
  const route = useRoute()
  const [user, setUser] = useState<User | null>(storedUser())
  const [signedOut, setSignedOut] = useState<SignOutReason | null>(null)
  useEffect(() => onSignedOut(reason => {
    setUser(null)
    setSignedOut(reason)
  }), [])

  const signedIn = (next: User): void => {
    rememberUser(next)
    setUser(next)
    setSignedOut(null)
    navigate('/')
  }
  const leave = async (): Promise<void> => {
    await signOut()
    setUser(null)
    navigate('/signin')
  }

  let page: ComponentChildren
  if (user === null) {
    // The page the person was on stays in the address bar: after signing in again they
    // are taken home, and the browser's back button returns to it.
    page = route.name === 'signup'
      ? <SignUp onDone={signedIn} />
      : <SignIn onDone={signedIn} expired={signedOut === 'expired'} />
  } else if (route.name === 'classroom') {
    page = <ClassroomPage id={route.id} user={user} />
  } else if (route.name === 'session') {
    page = <SessionPage id={route.id} user={user} />
  } else if (route.name === 'missing') {
    page = <main><h1>Not found</h1><p><Link to='/'>Back to your classrooms</Link></p></main>
  } else {
    page = <Classrooms user={user} />
  }
  return (
    <>
      <header class='top'>
        <Link to='/' class='brand'>Lectern</Link>
        {user !== null && (
          <div class='who'>
            <span>{user.display_name} ({user.role})</span>
            <button type='button' onClick={() => { void leave() }}>Sign out</button>
          </div>
        )}
      </header>
      {page}
    </>
  )
}

function SignIn ({ onDone, expired }: { onDone: (user: User) => void, expired: boolean }) {
  const { busy, error, failure, run } = useAction()
  const waiting = useRetryAfter(failure)
  const submit = async (event: Event): Promise<void> => {
    event.preventDefault()
    const form = new FormData(event.currentTarget as HTMLFormElement)
    await run(async () => {
      const session = await client.login({ email: String(form.get('email')), password: String(form.get('password')) })
      onDone(session.user)
    })
  }
  return (
    <main class='narrow'>
      <h1>Sign in</h1>
      {expired && (
        <p class='banner' role='alert'>
          Your sign-in has expired, or it was ended on another device. Sign in again.
        </p>
      )}
      <form onSubmit={event => { void submit(event) }}>
        <label>Email <input name='email' type='email' autocomplete='username' required /></label>
        <label>Password <input name='password' type='password' autocomplete='current-password' required /></label>
        <button type='submit' disabled={busy || waiting > 0}>Sign in</button>
        {waiting > 0 && <p class='muted' role='status'>You can try again in {waiting} s.</p>}
        <ErrorLine error={error} />
      </form>
      <p>No account yet? <Link to='/signup'>Sign up</Link></p>
    </main>
  )
}

function SignUp ({ onDone }: { onDone: (user: User) => void }) {
  const { busy, error, run } = useAction()
  const submit = async (event: Event): Promise<void> => {
    event.preventDefault()
    const form = new FormData(event.currentTarget as HTMLFormElement)
    await run(async () => {
      const session = await client.register({
        display_name: String(form.get('display_name')),
        email: String(form.get('email')),
        password: String(form.get('password')),
        role: String(form.get('role')) as RegisterRole
      })
      onDone(session.user)
    })
  }
  return (
    <main class='narrow'>
      <h1>Sign up</h1>
      <form onSubmit={event => { void submit(event) }}>
        <label>Name <input name='display_name' autocomplete='name' required maxLength={100} /></label>
        <label>Email <input name='email' type='email' autocomplete='username' required /></label>
        <label>Password <input name='password' type='password' autocomplete='new-password' required minLength={8} /></label>
        <fieldset>
          <legend>I am</legend>
          <label class='inline'><input type='radio' name='role' value='student' checked /> a student</label>
          <label class='inline'><input type='radio' name='role' value='faculty' /> faculty</label>
        </fieldset>
        <button type='submit' disabled={busy}>Sign up</button>
        <ErrorLine error={error} />
      </form>
      <p>Already have an account? <Link to='/signin'>Sign in</Link></p>
    </main>
  )
}

function Classrooms ({ user }: { user: User }) {
  const [classrooms, setClassrooms] = useState<Classroom[] | null>(null)
  const [error, setError] = useState<string | null>(null)
  const reload = async (): Promise<void> => {
    try {
      setClassrooms(await client.listClassrooms())
    } catch (failure) {
      setError(describeError(failure))
    }
  }
  useEffect(() => { void reload() }, [])

  const create = async (event: Event): Promise<void> => {
    event.preventDefault()
    const form = event.currentTarget as HTMLFormElement
    setError(null)
    try {
      const classroom = await client.createClassroom(String(new FormData(form).get('name')))
      navigate(`/classrooms/${encodeURIComponent(classroom.id)}`)
    } catch (failure) {
      setError(describeError(failure))
    }
  }
  const join = async (event: Event): Promise<void> => {
    event.preventDefault()
    const form = event.currentTarget as HTMLFormElement
    setError(null)
    try {
      const classroom = await client.joinClassroom(String(new FormData(form).get('code')).trim())
      navigate(`/classrooms/${encodeURIComponent(classroom.id)}`)
    } catch (failure) {
      setError(describeError(failure))
    }
  }

  return (
    <main>
      <h1>Your classrooms</h1>
      {classrooms === null
        ? <p>Loading…</p>
        : classrooms.length === 0
          ? <p>No classrooms yet.</p>
          : (
            <ul class='cards' aria-label='Classrooms'>
              {classrooms.map(classroom => (
                <li key={classroom.id}>
                  <Link to={`/classrooms/${encodeURIComponent(classroom.id)}`}>{classroom.name}</Link>
                  <span class='muted'> · {classroom.role}</span>
                </li>
              ))}
            </ul>
            )}
      {user.role === 'faculty' || user.role === 'admin'
        ? (
          <form class='row' onSubmit={event => { void create(event) }}>
            <label>New classroom name <input name='name' required maxLength={200} /></label>
            <button type='submit'>Create classroom</button>
          </form>
          )
        : (
          <form class='row' onSubmit={event => { void join(event) }}>
            <label>Join code <input name='code' required autocomplete='off' /></label>
            <button type='submit'>Join classroom</button>
          </form>
          )}
      <ErrorLine error={error} />
    </main>
  )
}

function ClassroomPage ({ id, user }: { id: string, user: User }) {
  const [classroom, setClassroom] = useState<Classroom | null>(null)
  // null: not known yet.
  const [sessions, setSessions] = useState<SessionSummary[] | null>(null)
  const [error, setError] = useState<string | null>(null)
  useEffect(() => {
    void (async () => {
      try {
        setClassroom(await client.getClassroom(id))
        setSessions(await client.listSessions(id))
      } catch (failure) {
        setError(describeError(failure))
      }
    })()
  }, [id])
  // The running session, if any, comes first (newest first); undefined while loading.
  const session = sessions === null ? undefined : sessions.find(listed => listed.state !== 'ended') ?? null
  const past = sessions?.filter(listed => listed.state === 'ended') ?? []

  const start = async (): Promise<void> => {
    setError(null)
    try {
      const started = await client.startSession(id)
      navigate(`/sessions/${encodeURIComponent(started.id)}`)
    } catch (failure) {
      setError(describeError(failure))
    }
  }

  if (classroom === null) {
    return error === null ? <main><p>Loading…</p></main> : <ErrorPage title='This classroom cannot be shown' error={error} />
  }
  const faculty = classroom.role === 'faculty'
  return (
    <main>
      <p><Link to='/'>← Classrooms</Link></p>
      <h1>{classroom.name}</h1>
      {classroom.join_code !== null && (
        <p>Join code: <strong class='code' aria-label='Join code'>{classroom.join_code}</strong></p>
      )}
      <section aria-labelledby='live-heading'>
        <h2 id='live-heading'>Live session</h2>
        {session === undefined && <p>Loading…</p>}
        {session === null && <p>No live session right now.{faculty ? '' : ' Your teacher starts it.'}</p>}
        {session != null && (
          <p>
            A session is {session.state}.{' '}
            <Link to={`/sessions/${encodeURIComponent(session.id)}`} class='button'>Join the live session</Link>
          </p>
        )}
        {faculty && session === null && user.role !== 'student' && (
          <button type='button' onClick={() => { void start() }}>Start a live session</button>
        )}
      </section>
      {past.length > 0 && (
        <section aria-labelledby='past-heading'>
          <h2 id='past-heading'>Past sessions</h2>
          <ul class='cards' aria-label='Past sessions'>
            {past.map(ended => (
              <li key={ended.id}>
                <Link to={`/sessions/${encodeURIComponent(ended.id)}`}>Session of {formatDate(ended.started_at)}</Link>
                <span class='muted'> · read-only review</span>
              </li>
            ))}
          </ul>
        </section>
      )}
      <Materials classroomId={classroom.id} faculty={faculty} user={user} />
      <Members classroom={classroom} onClassroom={setClassroom} />
      <ErrorLine error={error} />
    </main>
  )
}

/** A session's start, in the reader's own locale and time zone. */
function formatDate (unixSeconds: number): string {
  return new Date(unixSeconds * 1000).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' })
}
