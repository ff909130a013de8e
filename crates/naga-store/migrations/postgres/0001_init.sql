-- naga's store on PostgreSQL: the same tables as SQLite's after its
-- migrations 0001-0006, in PostgreSQL's types (times are Unix milliseconds
-- in BIGINT, flags BOOLEAN). Several nodes share it.

CREATE TABLE sessions (
    id               TEXT PRIMARY KEY,
    created_at       BIGINT NOT NULL,
    last_activity_at BIGINT NOT NULL,
    -- The session's newest task: the head of its chain (tasks.prev_seq).
    last_task_seq    BIGINT,
    task_count       BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE analysis_sessions (
    id         TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    created_at BIGINT NOT NULL
);
CREATE INDEX analysis_sessions_by_session ON analysis_sessions(session_id);

CREATE TABLE tasks (
    seq                 BIGSERIAL PRIMARY KEY,
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
    calls_count         BIGINT NOT NULL,
    calls               TEXT NOT NULL DEFAULT '[]',
    response            TEXT NOT NULL,
    accepted_at         BIGINT NOT NULL,
    started_at          BIGINT,
    finished_at         BIGINT,
    lease_owner         TEXT,
    lease_expires_at    BIGINT,
    summary             TEXT,
    prev_seq            BIGINT,
    -- The number of the task's last step: a step takes the next one by
    -- updating this row (which also locks it), in the statement that
    -- writes the step.
    last_step_no        BIGINT NOT NULL DEFAULT 0
-- Room on each page for a row's next version: a step's number and a
-- lease's renewal change no indexed column and then stay on the page
-- (a HOT update: no index is written).
) WITH (fillfactor = 70);
-- Few indexes: every index is written at each version of a row that
-- changes an indexed column. Leases are found among the unfinished tasks.
CREATE INDEX tasks_unfinished ON tasks(seq) WHERE status IN ('queued', 'running');
CREATE INDEX tasks_by_fingerprint ON tasks(session_id, fingerprint) WHERE fingerprint IS NOT NULL;

CREATE TABLE steps (
    task_seq   BIGINT NOT NULL REFERENCES tasks(seq),
    step_no    BIGINT NOT NULL,
    task_id    TEXT NOT NULL,
    session_id TEXT NOT NULL,
    call_idx   BIGINT,
    purpose    TEXT,
    content    TEXT,
    output     TEXT,
    analysis   TEXT,
    success    BOOLEAN NOT NULL,
    error      TEXT,
    created_at BIGINT NOT NULL,
    in_memory  BOOLEAN NOT NULL DEFAULT TRUE,
    -- Only on the step that ends call `call_idx`: its outcome, and when it began.
    result     TEXT,
    started_at BIGINT,
    PRIMARY KEY (task_seq, step_no)
);

-- (Steps are never deleted: the last step's number is their count.)
CREATE VIEW task_rows AS
SELECT t.*, t.last_step_no AS steps_count
FROM tasks t;

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
FROM steps WHERE in_memory;

CREATE TABLE failed_attempts (
    session_id   TEXT NOT NULL,
    command      TEXT NOT NULL,
    count        BIGINT NOT NULL,
    last_error   TEXT,
    last_task_id TEXT,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (session_id, command)
);

CREATE TABLE compressed_memories (
    id         BIGSERIAL PRIMARY KEY,
    session_id TEXT NOT NULL,
    task_id    TEXT,
    method     TEXT NOT NULL,
    summary    TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX compressed_by_session ON compressed_memories(session_id);
CREATE INDEX compressed_by_task ON compressed_memories(task_id);

CREATE TABLE callbacks (
    -- From its sequence before the row is written: the body carries it.
    seq             BIGSERIAL PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    task_id         TEXT NOT NULL REFERENCES tasks(id),
    url             TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    delivered_at    BIGINT,
    -- The node delivering it, until when (see tasks.lease_owner).
    lease_owner      TEXT,
    lease_expires_at BIGINT
);
CREATE INDEX callbacks_by_status ON callbacks(status, next_attempt_at);
CREATE INDEX callbacks_pending_by_owner ON callbacks(lease_owner) WHERE status = 'pending';

CREATE TABLE messages (
    id         BIGSERIAL PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    role       TEXT NOT NULL,
    content    TEXT NOT NULL,
    kind       TEXT NOT NULL DEFAULT 'chat',
    task_id    TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX messages_by_session ON messages(session_id, id);
CREATE INDEX messages_by_time ON messages(created_at);

CREATE TABLE dispatches (
    request_id          TEXT PRIMARY KEY,
    session_id          TEXT NOT NULL,
    analysis_session_id TEXT NOT NULL,
    kind                TEXT NOT NULL,
    user_message        TEXT NOT NULL,
    created_at          BIGINT NOT NULL
);

CREATE TABLE callback_inbox (
    key              TEXT PRIMARY KEY,
    task_id          TEXT NOT NULL,
    session_id       TEXT NOT NULL,
    body             TEXT NOT NULL,
    status           TEXT NOT NULL,
    reply_message_id BIGINT,
    received_at      BIGINT NOT NULL
);
CREATE INDEX callback_inbox_pending ON callback_inbox(status) WHERE status = 'pending';

CREATE TABLE notifications (
    seq             BIGSERIAL PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    task_id         TEXT NOT NULL,
    url             TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    delivered_at    BIGINT,
    lease_owner      TEXT,
    lease_expires_at BIGINT
);
CREATE INDEX notifications_by_status ON notifications(status, next_attempt_at);
CREATE INDEX notifications_pending_by_owner ON notifications(lease_owner) WHERE status = 'pending';
