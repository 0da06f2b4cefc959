// Presence helpers over awareness against the real server (issue 13, SDK gaps): who is
// here with name and colour, and who is idle, as another member sees it.
import test from 'node:test'
import assert from 'node:assert/strict'
import { presence } from '../dist/index.js'
import { startServer, signUp, open, close, eventually } from './support.mjs'

test('members see each other with name and colour; idle after a quiet period, active on edit', async () => {
  const server = await startServer()
  try {
    const faculty = await signUp(server, 'faculty')
    const student = await signUp(server, 'student')
    const classroom = await faculty.createClassroom('History')
    await student.joinClassroom(classroom.join_code)
    const session = await faculty.startSession(classroom.id)
    const notes = session.documents.find(d => d.kind === 'notes').doc_id
    const f = open(faculty, notes)
    const s = open(student, notes)
    await Promise.all([f.whenSynced(), s.whenSynced()])
    const fp = presence(f.awareness, { idleAfterMs: 1000 })
    const sp = presence(s.awareness, { idleAfterMs: 1000 })
    fp.setUser({ name: 'Dr Ada', color: '#d33' })
    sp.setUser({ name: 'Bo', color: '#33d', colorLight: '#33d3' })
    const seen = []
    fp.subscribe(peers => seen.push(peers))

    const bo = () => fp.peers().find(peer => !peer.local && peer.user?.name === 'Bo')
    await eventually(() => bo() !== undefined, { message: 'the student in the teacher\'s presence' })
    assert.deepEqual(bo().user, { name: 'Bo', color: '#33d', colorLight: '#33d3' })
    assert.equal(fp.peers()[0].local, true, 'the local client first')
    assert.equal(fp.peers()[0].user.name, 'Dr Ada')
    assert.equal(bo().idle, false)

    await eventually(() => bo().idle, { message: 'the quiet student turning idle' })
    await eventually(() => seen.some(peers => peers.some(peer => peer.user?.name === 'Bo' && peer.idle)), { message: 'subscribers told of the idle student' })
    s.doc.getText('content').insert(0, 'back')
    await eventually(() => !bo().idle, { message: 'the student active again after an edit' })
    fp.destroy()
    sp.destroy()
    close(f, s)
  } finally {
    await server.stop()
  }
})
