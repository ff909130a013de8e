-- A session's tasks as a chain instead of an index.
--
-- `tasks_by_session` (session_id, seq) took one entry per accepted task on
-- the page of its session: with many sessions active at once, every task
-- dirtied a random page of that index, which each group commit wrote to the
-- WAL and each checkpoint copied again (under wrk with 1,000 sessions, 25%
-- of the accept throughput, growing with the store). Instead each task
-- points at the previous task of its session (`prev_seq`) and the session
-- at its newest (`last_task_seq`): accepting a task rewrites the session's
-- row, which the accept rewrote anyway, and appends the task. The session
-- also counts its tasks. Reading a session's tasks walks the chain from the
-- newest, which is the order they are listed in.

ALTER TABLE tasks ADD COLUMN prev_seq INTEGER;
ALTER TABLE sessions ADD COLUMN last_task_seq INTEGER;
ALTER TABLE sessions ADD COLUMN task_count INTEGER NOT NULL DEFAULT 0;

UPDATE tasks SET prev_seq = (
    SELECT MAX(p.seq) FROM tasks p WHERE p.session_id = tasks.session_id AND p.seq < tasks.seq
);
UPDATE sessions SET
    last_task_seq = (SELECT MAX(t.seq) FROM tasks t WHERE t.session_id = sessions.id),
    task_count = (SELECT COUNT(*) FROM tasks t WHERE t.session_id = sessions.id);

DROP INDEX tasks_by_session;
