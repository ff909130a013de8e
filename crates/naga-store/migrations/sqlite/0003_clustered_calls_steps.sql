-- Calls and steps keyed by their task's `seq` instead of its text id.
--
-- Request ids are chosen by clients (UUIDs, mostly): keyed by them, every
-- new call and step landed on a random page of its b-tree, and a group
-- commit wrote one 4 KiB page per call and per step. Keyed by `seq`, which
-- grows with every accepted task, they land at the right edge, beside the
-- rows written in the same commit. The steps' own index goes: their key is
-- (task_seq, step_no). Existing rows are copied over.

DROP VIEW key_facts;

CREATE TABLE calls_by_seq (
    task_seq    INTEGER NOT NULL REFERENCES tasks(seq),
    idx         INTEGER NOT NULL,
    payload     TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending',
    result      TEXT,
    started_at  INTEGER,
    finished_at INTEGER,
    PRIMARY KEY (task_seq, idx)
) WITHOUT ROWID;
INSERT INTO calls_by_seq (task_seq, idx, payload, status, result, started_at, finished_at)
SELECT t.seq, c.idx, c.payload, c.status, c.result, c.started_at, c.finished_at
FROM calls c JOIN tasks t ON t.id = c.task_id;
DROP TABLE calls;
ALTER TABLE calls_by_seq RENAME TO calls;

-- `task_id` and `session_id` stay on the step (read back with it), unindexed.
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
    PRIMARY KEY (task_seq, step_no)
) WITHOUT ROWID;
INSERT INTO steps_by_seq (task_seq, step_no, task_id, session_id, call_idx, purpose, content,
                          output, analysis, success, error, created_at, in_memory)
SELECT t.seq, s.step_no, s.task_id, s.session_id, s.call_idx, s.purpose, s.content, s.output,
       s.analysis, s.success, s.error, s.created_at, s.in_memory
FROM steps s JOIN tasks t ON t.id = s.task_id;
DROP TABLE steps;
ALTER TABLE steps_by_seq RENAME TO steps;

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

-- A task's step count is read off its steps (a step no longer rewrites the
-- task's row); `task_rows` is the task as the store reads it.
ALTER TABLE tasks DROP COLUMN steps_count;
CREATE VIEW task_rows AS
SELECT t.*, (SELECT COUNT(*) FROM steps s WHERE s.task_seq = t.seq) AS steps_count
FROM tasks t;
