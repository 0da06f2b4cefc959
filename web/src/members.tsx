/**
 * A classroom's members (faculty first) on the classroom page. Faculty also get a new
 * join code (the old one stops working) and remove students.
 */
import { useEffect, useState } from 'preact/hooks'
import type { Classroom, Member } from '@lectern/client'

import { client, describeError } from './lectern.js'
import { ErrorLine } from './ui.js'

/** Faculty before students, then by name. */
function byRoleThenName (a: Member, b: Member): number {
  const rank = (member: Member): number => member.role === 'faculty' ? 0 : 1
  return rank(a) - rank(b) || a.display_name.localeCompare(b.display_name)
}

export function Members ({ classroom, onClassroom }: {
  classroom: Classroom, onClassroom: (classroom: Classroom) => void
}) {
  const [members, setMembers] = useState<Member[] | null>(null)
  const [error, setError] = useState<string | null>(null)
  const faculty = classroom.role === 'faculty'

  useEffect(() => {
    void client.listMembers(classroom.id)
      .then(list => setMembers([...list].sort(byRoleThenName)))
      .catch(failure => setError(describeError(failure)))
  }, [classroom.id])

  const rotate = async (): Promise<void> => {
    setError(null)
    try {
      onClassroom(await client.rotateJoinCode(classroom.id))
    } catch (failure) {
      setError(describeError(failure))
    }
  }

  const remove = async (member: Member): Promise<void> => {
    setError(null)
    try {
      await client.removeMember(classroom.id, member.user_id)
      setMembers(current => current?.filter(other => other.user_id !== member.user_id) ?? null)
    } catch (failure) {
      setError(describeError(failure))
    }
  }

  return (
    <section aria-labelledby='members-heading'>
      <div class='section-head'>
        <h2 id='members-heading'>Members</h2>
        {faculty && <button type='button' onClick={() => { void rotate() }}>New join code</button>}
      </div>
      {members === null && error === null && <p>Loading…</p>}
      {members !== null && (
        <ul class='members' aria-label='Members'>
          {members.map(member => (
            <li key={member.user_id}>
              <span>{member.display_name} <span class='muted'>({member.role})</span></span>
              {faculty && member.role === 'student' && (
                <button type='button' class='secondary' aria-label={`Remove ${member.display_name}`}
                  onClick={() => { void remove(member) }}>Remove</button>
              )}
            </li>
          ))}
        </ul>
      )}
      <ErrorLine error={error} />
    </section>
  )
}
