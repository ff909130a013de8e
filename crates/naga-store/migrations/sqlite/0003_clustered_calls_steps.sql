-- A lighter layout for the hot path: what a batch writes lands beside what
-- the same commit writes, and a call's end is one row.
--
-- * Steps are keyed by their task's `seq` (it grows with every accepted
--   task) instead of its text id: keyed by client-chosen request ids
--   (UUIDs, mostly), every new step landed on a random page of its b-tree,
--   and a group commit wrote a 4 KiB page per step. Their own index goes:
--   the key is (task_seq, step_no).
-- * The `calls` table goes. A batch's calls are a JSON array on its task
--   (written once, with the task), and a call's end is its step: the step
--   that carries `result` (the outcome as JSON) and `started_at`. Other
--   steps of the call (e.g. each action of a planner) have no `result`. A
--   call without such a step is pending while its task is unfinished, and
--   was skipped once it ended.
-- * A task's step count is read off its steps (a step no longer rewrites
--   the task's row); `task_rows` is the task as the store reads it.
--
-- Existing rows are carried over.

DROP VIEW key_facts;

ALTER TABLE tasks ADD COLUMN calls TEXT NOT NULL DEFAULT '[]';
UPDATE tasks SET calls = (
    SELECT json_group_array(json(payload))
    FROM (SELECT payload FROM calls c WHERE c.task_id = tasks.id ORDER BY idx)
) WHERE EXISTS (SELECT 1 FROM calls c WHERE c.task_id = tasks.id);

CREATE TABLE steps_by_seq (
    task_seq   INTEGER NOT NULL REFERENCES tasks(seq),
    step_no    INTEGER NOT NULL,
    task_id    TEXT NOT NULL,
    session_id TEXT NOT NULL,
    call_idx   INTEGER,
    purpose    TEXT,
    content    TEXT,
    output     TEXT,
    analysis   TEXT,
    success    INTEGER NOT NULL,
    error      TEXT,
    created_at INTEGER NOT NULL,
    in_memory  INTEGER NOT NULL DEFAULT 1,
    -- Only on the step that ends call `call_idx`: its outcome, and when it began.
    result     TEXT,
    started_at INTEGER,
    PRIMARY KEY (task_seq, step_no)
) WITHOUT ROWID;
INSERT INTO steps_by_seq (task_seq, step_no, task_id, session_id, call_idx, purpose, content,
                          output, analysis, success, error, created_at, in_memory)
SELECT t.seq, s.step_no, s.task_id, s.session_id, s.call_idx, s.purpose, s.content, s.output,
       s.analysis, s.success, s.error, s.created_at, s.in_memory
FROM steps s JOIN tasks t ON t.id = s.task_id;
-- A call's end moves onto the last step recorded for it; an ended call
-- without any step gets one.
UPDATE steps_by_seq SET
    result = (SELECT c.result FROM calls c WHERE c.task_id = steps_by_seq.task_id
                  AND c.idx = steps_by_seq.call_idx),
    started_at = (SELECT c.started_at FROM calls c WHERE c.task_id = steps_by_seq.task_id
                  AND c.idx = steps_by_seq.call_idx)
WHERE call_idx IS NOT NULL
  AND step_no = (SELECT MAX(s2.step_no) FROM steps_by_seq s2
                 WHERE s2.task_seq = steps_by_seq.task_seq AND s2.call_idx = steps_by_seq.call_idx)
  AND EXISTS (SELECT 1 FROM calls c WHERE c.task_id = steps_by_seq.task_id
                  AND c.idx = steps_by_seq.call_idx AND c.status IN ('succeeded', 'failed'));
INSERT INTO steps_by_seq (task_seq, step_no, task_id, session_id, call_idx, success, created_at,
                          result, started_at)
SELECT t.seq,
       (SELECT COALESCE(MAX(s.step_no), 0) FROM steps_by_seq s WHERE s.task_seq = t.seq)
           + ROW_NUMBER() OVER (PARTITION BY t.seq ORDER BY c.idx),
       t.id, t.session_id, c.idx, c.status = 'succeeded', COALESCE(c.finished_at, t.accepted_at),
       c.result, c.started_at
FROM calls c JOIN tasks t ON t.id = c.task_id
WHERE c.status IN ('succeeded', 'failed')
  AND NOT EXISTS (SELECT 1 FROM steps_by_seq s WHERE s.task_seq = t.seq AND s.call_idx = c.idx);
UPDATE tasks SET steps_count = (SELECT COUNT(*) FROM steps_by_seq s WHERE s.task_seq = tasks.seq);
DROP TABLE steps;
ALTER TABLE steps_by_seq RENAME TO steps;
DROP TABLE calls;

ALTER TABLE tasks DROP COLUMN steps_count;
CREATE VIEW task_rows AS
SELECT t.*, (SELECT COUNT(*) FROM steps s WHERE s.task_seq = t.seq) AS steps_count
FROM tasks t;

-- Memory: `task:{task_id}:step:{step_no}` → "command …, result …", read off
-- the steps; newest first is (task_seq, step_no) descending.
CREATE VIEW key_facts AS
SELECT 'task:' || task_id || ':step:' || step_no AS key,
       session_id,
       task_id,
       'command ' || COALESCE(purpose, content, '') || ', result ' ||
           CASE WHEN success THEN substr(COALESCE(output, ''), 1, 2000)
                ELSE 'failed: ' || substr(COALESCE(error, ''), 1, 2000) END AS value,
       created_at,
       task_seq,
       step_no
FROM steps WHERE in_memory = 1;
