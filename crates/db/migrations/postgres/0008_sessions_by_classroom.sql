-- A classroom's sessions, newest first (GET /classrooms/{id}/sessions): the review list.
CREATE INDEX sessions_by_classroom ON sessions (classroom_id, started_at DESC);
