-- naga's data model. Times are integer milliseconds since the Unix epoch and
-- JSON is stored as text, so the same model maps onto PostgreSQL
-- (BIGINT / JSONB, BIGSERIAL for the AUTOINCREMENT keys).

-- One conversation.
CREATE TABLE sessions (
    id               TEXT PRIMARY KEY,
    created_at       INTEGER NOT NULL,
    last_activity_at INTEGER NOT NULL
);

-- One intent-analysis run; belongs to exactly one session.
CREATE TABLE analysis_sessions (
    id         TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    created_at INTEGER NOT NULL
);
CREATE INDEX analysis_sessions_by_session ON analysis_sessions(session_id);

-- One batch. `id` is the request_id (the idempotency key) and the task_id.
-- `seq` orders tasks by acceptance (FIFO per session, also after a restart).
CREATE TABLE tasks (
    seq                 INTEGER PRIMARY KEY AUTOINCREMENT,
    id                  TEXT NOT NULL UNIQUE,
    kind                TEXT NOT NULL,
    session_id          TEXT NOT NULL REFERENCES sessions(id),
    analysis_session_id TEXT REFERENCES analysis_sessions(id),
    query               TEXT,
    callback_url        TEXT,
    policy              TEXT NOT NULL,
    fingerprint         TEXT,
    status              TEXT NOT NULL,
    error               TEXT,
    calls_count         INTEGER NOT NULL,
    steps_count         INTEGER NOT NULL DEFAULT 0,
    -- The first answer to /schedule, replayed verbatim for the same request_id.
    response            TEXT NOT NULL,
    accepted_at         INTEGER NOT NULL,
    started_at          INTEGER,
    finished_at         INTEGER,
    lease_owner         TEXT,
    lease_expires_at    INTEGER,
    -- Memory: the deterministic summary written when the task ended.
    summary             TEXT
);
CREATE INDEX tasks_by_session ON tasks(session_id, seq);
-- Only unfinished tasks: what a restart or another node claims. (Listing a
-- terminal status walks tasks newest first.)
CREATE INDEX tasks_unfinished ON tasks(seq) WHERE status IN ('queued', 'running');

-- The calls of a batch, run in `idx` order.
CREATE TABLE calls (
    task_id     TEXT NOT NULL REFERENCES tasks(id),
    idx         INTEGER NOT NULL,
    payload     TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending',
    result      TEXT,
    started_at  INTEGER,
    finished_at INTEGER,
    PRIMARY KEY (task_id, idx)
) WITHOUT ROWID;

-- What was done, step by step. `step_no` counts from 1 within a task.
-- `in_memory` = 0 once its memory was cleared (the step itself stays).
CREATE TABLE steps (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id    TEXT NOT NULL REFERENCES tasks(id),
    session_id TEXT NOT NULL,
    step_no    INTEGER NOT NULL,
    call_idx   INTEGER,
    purpose    TEXT,
    content    TEXT,
    output     TEXT,
    analysis   TEXT,
    success    INTEGER NOT NULL,
    error      TEXT,
    created_at INTEGER NOT NULL,
    in_memory  INTEGER NOT NULL DEFAULT 1,
    UNIQUE (task_id, step_no)
);

-- Memory: `task:{task_id}:step:{step_no}` → "command …, result …", read off
-- the steps (a view: one write per step, not two).
CREATE VIEW key_facts AS
SELECT 'task:' || task_id || ':step:' || step_no AS key,
       session_id,
       task_id,
       'command ' || COALESCE(purpose, content, '') || ', result ' ||
           CASE WHEN success THEN substr(COALESCE(output, ''), 1, 2000)
                ELSE 'failed: ' || substr(COALESCE(error, ''), 1, 2000) END AS value,
       created_at,
       id AS step_row
FROM steps WHERE in_memory = 1;

-- Memory: how often a command failed in a session.
CREATE TABLE failed_attempts (
    session_id   TEXT NOT NULL,
    command      TEXT NOT NULL,
    count        INTEGER NOT NULL,
    last_error   TEXT,
    last_task_id TEXT,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (session_id, command)
);

-- Memory: summaries of finished tasks written later (by an LLM). They
-- never replace the steps.
CREATE TABLE compressed_memories (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    task_id    TEXT,
    method     TEXT NOT NULL,
    summary    TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX compressed_by_session ON compressed_memories(session_id);
CREATE INDEX compressed_by_task ON compressed_memories(task_id);

-- The callback outbox: written in the transaction that ends the task.
-- `seq` is the envelope's `sequence`; `id` its stable webhook-id.
CREATE TABLE callbacks (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    task_id         TEXT NOT NULL REFERENCES tasks(id),
    url             TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER
);
CREATE INDEX callbacks_by_status ON callbacks(status, next_attempt_at);
CREATE INDEX tasks_by_fingerprint ON tasks(session_id, fingerprint) WHERE fingerprint IS NOT NULL;
