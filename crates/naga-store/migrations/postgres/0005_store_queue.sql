-- The store is the queue (see the SQLite migration 0009): a batch that
-- does not start as it is accepted waits here unheld; any node with a free
-- worker claims the runnable ones (`ready`: its session's earliest
-- unfinished batch, or `parallel`), `FOR UPDATE SKIP LOCKED`, in groups.
ALTER TABLE tasks ADD COLUMN ready BOOLEAN NOT NULL DEFAULT FALSE;

UPDATE tasks SET ready = TRUE
WHERE status IN ('queued', 'running')
  AND (policy = 'parallel' OR NOT EXISTS (
        SELECT 1 FROM tasks e WHERE e.session_id = tasks.session_id AND e.seq < tasks.seq
          AND e.status IN ('queued', 'running')));

CREATE INDEX tasks_ready ON tasks(seq) WHERE ready AND status IN ('queued', 'running');
