-- Retention (docs/configuration.md, "Retention"): what is pruned is found
-- by its time; what is kept of a pruned task is its request id.
--
-- A pruned task's request id, kept `requests` after the prune: a resend
-- of it is refused as expired, never run again.
CREATE TABLE pruned_tasks (
    id          TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL,
    status      TEXT NOT NULL,
    finished_at INTEGER,
    pruned_at   INTEGER NOT NULL
);
CREATE INDEX pruned_tasks_by_time ON pruned_tasks(pruned_at);
-- Appended in time order: each entry lands at the index's right edge.
CREATE INDEX messages_by_time ON messages(created_at);
CREATE INDEX dispatches_by_time ON dispatches(created_at);
CREATE INDEX callback_inbox_by_time ON callback_inbox(received_at);
CREATE INDEX compressed_by_time ON compressed_memories(created_at);
