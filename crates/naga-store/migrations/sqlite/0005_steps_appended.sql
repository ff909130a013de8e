-- Steps appended in the order they are recorded, found through an index.
--
-- Keyed by (task_seq, step_no) without a rowid, a step landed beside the
-- steps of its own task: with ~64 batches running at once, each group
-- commit touched the pages of all their tasks (4–5 WAL frames per commit),
-- and a full page split in the middle (SQLite's cheap split is only for
-- appends to rowid tables). Now the rows are appended; the unique index on
-- (task_seq, step_no) holds a few bytes per step.

DROP VIEW key_facts;
DROP VIEW task_rows;

CREATE TABLE steps_appended (
    id         INTEGER PRIMARY KEY,
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
    started_at INTEGER
);
INSERT INTO steps_appended (task_seq, step_no, task_id, session_id, call_idx, purpose, content,
                            output, analysis, success, error, created_at, in_memory, result,
                            started_at)
SELECT task_seq, step_no, task_id, session_id, call_idx, purpose, content, output, analysis,
       success, error, created_at, in_memory, result, started_at
FROM steps ORDER BY task_seq, step_no;
DROP TABLE steps;
ALTER TABLE steps_appended RENAME TO steps;
CREATE UNIQUE INDEX steps_by_task ON steps(task_seq, step_no);

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
