-- A task's kind, policy and status, and an outbox row's status, hold only
-- the values naga writes: each column gets a CHECK, as the store's edge
-- decodes them into enums (an unknown value is an error there, never a
-- default).
--
-- SQLite adds a CHECK only by rebuilding the table
-- (https://sqlite.org/lang_altertable.html#otheralter), with foreign keys
-- off (`Store::open` migrates on a connection without them): each table is
-- copied row for row into one with the constraints, the old one dropped and
-- the copy renamed (the other tables' references then point at the copy);
-- the view over `tasks` and the indexes are made again. Columns keep their
-- order, and `tasks` its AUTOINCREMENT high-water mark. A row outside the
-- sets fails the copy, and then nothing changes (one transaction).

DROP VIEW task_rows;

CREATE TABLE tasks_checked (
    seq                 INTEGER PRIMARY KEY AUTOINCREMENT,
    id                  TEXT NOT NULL UNIQUE,
    kind                TEXT NOT NULL CHECK (kind IN ('agent', 'mcp')),
    session_id          TEXT NOT NULL REFERENCES sessions(id),
    analysis_session_id TEXT REFERENCES analysis_sessions(id),
    query               TEXT,
    callback_url        TEXT,
    policy              TEXT NOT NULL
                        CHECK (policy IN ('enqueue', 'parallel', 'reject', 'interrupt')),
    fingerprint         TEXT,
    status              TEXT NOT NULL
                        CHECK (status IN ('queued', 'running', 'succeeded', 'failed',
                                          'cancelled', 'timed_out')),
    error               TEXT,
    calls_count         INTEGER NOT NULL,
    -- The first answer to /schedule, replayed verbatim for the same request_id.
    response            TEXT NOT NULL,
    accepted_at         INTEGER NOT NULL,
    started_at          INTEGER,
    finished_at         INTEGER,
    lease_owner         TEXT,
    lease_expires_at    INTEGER,
    -- Memory: the deterministic summary written when the task ended.
    summary             TEXT,
    calls               TEXT NOT NULL DEFAULT '[]',
    prev_seq            INTEGER
);
INSERT INTO tasks_checked SELECT * FROM tasks;
-- The copy's sequence is its highest seq; the old table's may be higher
-- (its newest tasks deleted): seqs are never reused.
UPDATE sqlite_sequence
   SET seq = MAX(seq, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'tasks'), 0))
 WHERE name = 'tasks_checked';
DROP TABLE tasks;
ALTER TABLE tasks_checked RENAME TO tasks;
CREATE INDEX tasks_unfinished ON tasks(seq) WHERE status IN ('queued', 'running');
CREATE INDEX tasks_by_fingerprint ON tasks(session_id, fingerprint) WHERE fingerprint IS NOT NULL;

CREATE VIEW task_rows AS
SELECT t.*, (SELECT COUNT(*) FROM steps s WHERE s.task_seq = t.seq) AS steps_count
FROM tasks t;

CREATE TABLE callbacks_checked (
    seq              INTEGER PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    task_id          TEXT NOT NULL REFERENCES tasks(id),
    url              TEXT NOT NULL,
    body             TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    delivered_at     INTEGER,
    lease_owner      TEXT,
    lease_expires_at INTEGER
);
INSERT INTO callbacks_checked SELECT * FROM callbacks;
DROP TABLE callbacks;
ALTER TABLE callbacks_checked RENAME TO callbacks;
CREATE INDEX callbacks_by_status ON callbacks(status, next_attempt_at);

CREATE TABLE notifications_checked (
    seq              INTEGER PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    task_id          TEXT NOT NULL,
    url              TEXT NOT NULL,
    body             TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    delivered_at     INTEGER,
    lease_owner      TEXT,
    lease_expires_at INTEGER
);
INSERT INTO notifications_checked SELECT * FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_checked RENAME TO notifications;
CREATE INDEX notifications_by_status ON notifications(status, next_attempt_at);
