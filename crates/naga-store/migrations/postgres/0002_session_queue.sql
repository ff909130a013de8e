-- A session's unfinished tasks in acceptance order: the queue of a session
-- that several nodes share (a batch waits for the earlier ones to end; a
-- `reject` batch is refused while there are any).
CREATE INDEX tasks_unfinished_by_session ON tasks(session_id, seq)
    WHERE status IN ('queued', 'running');
