-- Retention (see the SQLite migration 0012): a pruned task's request id,
-- and the times what is pruned is found by.
CREATE TABLE pruned_tasks (
    id          TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL,
    status      TEXT NOT NULL,
    finished_at BIGINT,
    pruned_at   BIGINT NOT NULL
);
CREATE INDEX pruned_tasks_by_time ON pruned_tasks(pruned_at);
CREATE INDEX dispatches_by_time ON dispatches(created_at);
CREATE INDEX callback_inbox_by_time ON callback_inbox(received_at);
CREATE INDEX compressed_by_time ON compressed_memories(created_at);
