-- The store is the queue. A batch that does not start as it is accepted
-- is stored unheld (no lease owner) and waits there, not in a node's
-- memory; a node with a free worker claims the runnable ones. Runnable =
-- `ready` (its session's earliest unfinished batch, or `parallel`) and
-- unheld (no owner, an expired lease, or a holder whose heartbeat stopped).
-- `ready` is set as the batch is stored, else when the batch before it
-- ends; the index holds only the ready unfinished batches, so a claim
-- reads what it takes, whatever the backlog behind busy sessions.
ALTER TABLE tasks ADD COLUMN ready INTEGER NOT NULL DEFAULT 0;

-- A session's unfinished batches: whether it is busy, and which is next.
-- (Only unfinished rows: a few pages, not one entry per task ever.)
CREATE INDEX tasks_unfinished_by_session ON tasks(session_id, seq)
    WHERE status IN ('queued', 'running');

UPDATE tasks SET ready = 1
WHERE status IN ('queued', 'running')
  AND (policy = 'parallel' OR NOT EXISTS (
        SELECT 1 FROM tasks e WHERE e.session_id = tasks.session_id AND e.seq < tasks.seq
          AND e.status IN ('queued', 'running')));

CREATE INDEX tasks_ready ON tasks(seq) WHERE ready = 1 AND status IN ('queued', 'running');
