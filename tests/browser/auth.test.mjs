// Signing in and staying signed in, in real Chromium: with 3-second access tokens the
// session page renews them silently (its socket is closed with 4401 when its token expires
// and reconnects with a fresh one) and editing goes on; a refresh token used
// elsewhere (as a thief would) signs the page out with a clear message; and repeated wrong
// passwords lock this address out of that account with a countdown.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import {
  launchBrowser, newPage, notes, notesText, openSession, runCleanups, signUp, startServer, until
} from './support.mjs'

after(runCleanups)

/** How many WebSockets `page` opened so far (the session page holds one for all its
 * documents, `/ws`). */
function countSockets (page) {
  const counter = { opened: 0 }
  page.on('websocket', () => { counter.opened++ })
  return counter
}

test('short-lived access tokens are renewed silently and editing goes on', async () => {
  const root = await startServer(undefined, { args: ['--access-token-ttl-secs', '3'] })
  const browser = await launchBrowser()
  const teacher = await newPage(browser)
  const student = await newPage(browser)
  const teacherSockets = countSockets(teacher)
  await openSession(root, teacher, student)
  const signIns = []
  for (const page of [teacher, student]) {
    page.on('request', request => { if (request.url().endsWith('/auth/login')) signIns.push(request.url()) })
  }

  // The token the session page's socket opened with expires: the server closes it (4401)
  // and the page reconnects with a renewed token, more than once over a few lifetimes.
  await until(async () => teacherSockets.opened >= 3,
    async () => `the teacher's page opened ${teacherSockets.opened} sockets`)
  await notes(teacher).click()
  await teacher.keyboard.type('Still here after renewals.')
  await until(async () => (await notesText(student)) === 'Still here after renewals.',
    async () => `student sees ${JSON.stringify(await notesText(student))}`)
  await teacher.getByText('saved', { exact: true }).waitFor()
  // REST calls go on too, and nobody was sent to the sign-in page.
  await teacher.getByRole('link', { name: '← Classroom' }).click()
  await teacher.getByRole('heading', { name: 'Biology 101' }).waitFor()
  assert.equal(await teacher.getByRole('heading', { name: 'Sign in' }).count(), 0)
  assert.deepEqual(signIns, [])
})

test('a refresh token used elsewhere signs the page out with a clear message', async () => {
  const root = await startServer(undefined, { args: ['--access-token-ttl-secs', '3'] })
  const browser = await launchBrowser()
  const page = await newPage(browser)
  await signUp(page, root, { name: 'Cleo Student', email: 'cleo@school.test', role: 'student' })
  // Someone else uses the page's refresh token first (a copied token, a thief): the server
  // revokes the whole login, so the page's own renewal is refused.
  const { refreshToken } = JSON.parse(await page.evaluate(() => localStorage.getItem('lectern.tokens')))
  const stolen = await fetch(`${root}/api/v1/auth/refresh`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ refresh_token: refreshToken })
  })
  assert.equal(stolen.status, 200)
  // The student comes back to the page: its next call is refused and so is its renewal.
  await page.reload()
  await page.getByRole('heading', { name: 'Sign in' }).waitFor()
  await page.getByText('Your sign-in has expired, or it was ended on another device.').waitFor()
  assert.equal(await page.evaluate(() => localStorage.getItem('lectern.tokens')), null)
})

test('wrong passwords lock this address out of the account, with a countdown', async () => {
  const root = await startServer(undefined, { args: ['--login-rate-limit-per-minute', '2'] })
  const browser = await launchBrowser()
  const page = await newPage(browser)
  await signUp(page, root, { name: 'Dan Student', email: 'dan@school.test', role: 'student' })
  await page.getByRole('button', { name: 'Sign out' }).click()
  await page.getByRole('heading', { name: 'Sign in' }).waitFor()
  await page.getByLabel('Email').fill('dan@school.test')
  await page.getByLabel('Password').fill('not the password')
  // Wrong passwords until the server refuses to check any more (the registration counted
  // as one failure too); each attempt is one login request.
  const statuses = []
  while (!statuses.includes(429) && statuses.length < 5) {
    const [response] = await Promise.all([
      page.waitForResponse(response => response.url().endsWith('/auth/login')),
      page.getByRole('button', { name: 'Sign in' }).click()
    ])
    statuses.push(response.status())
    if (response.status() === 401) await page.getByText('Wrong email or password.').waitFor()
  }
  assert.equal(statuses.at(-1), 429, `login answers: ${statuses}`)
  await page.getByText(/Too many requests or failed sign-ins from here\. Try again in \d+ s\./).waitFor()
  await page.getByText(/You can try again in \d+ s\./).waitFor()
  assert.equal(await page.getByRole('button', { name: 'Sign in' }).isDisabled(), true)
})
