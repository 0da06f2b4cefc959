// Accessibility: axe-core on the sign-in, classrooms and session pages, in real Chromium.
// A `serious` or `critical` violation fails. (documents.test.mjs runs the same check on the
// mind map and a graded quiz, which need its fake model.)
//
// How axe gets in: the app's CSP (script-src 'self') refuses `page.addScriptTag`, which
// injects an inline <script>. So axe's source is run with `page.evaluate`, which Chromium
// runs through the DevTools protocol, outside the page's CSP; the app's own policy stays on.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { runCleanups, seriousViolations, startServer, launchBrowser, newPage, openSession } from './support.mjs'

after(runCleanups)

test('the sign-in, classrooms and session pages have no serious accessibility violation', async () => {
  const root = await startServer()
  const browser = await launchBrowser()
  const teacher = await newPage(browser)
  const student = await newPage(browser, { width: 390, height: 844 })
  const found = []

  await teacher.goto(`${root}/signin`)
  await teacher.getByRole('heading', { name: 'Sign in' }).waitFor()
  found.push(...await seriousViolations(teacher, 'sign-in'))

  await openSession(root, teacher, student)
  found.push(...await seriousViolations(teacher, 'session (teacher)'))
  found.push(...await seriousViolations(student, 'session (student, phone)'))
  await student.goto(`${root}/`)
  await student.getByRole('heading', { name: 'Your classrooms' }).waitFor()
  found.push(...await seriousViolations(student, 'classrooms (student)'))

  assert.deepEqual(found, [])
})
