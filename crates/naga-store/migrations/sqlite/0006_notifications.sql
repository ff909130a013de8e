-- The outbox of UI notifications: every follow-up the API server writes is
-- also POSTed (upstream's show_tool_ai_response) to `[callbacks]
-- ui_notify_url` when one is set, delivered as callbacks are. No foreign
-- key to tasks: a follow-up may answer a task of upstream's own servers.
CREATE TABLE notifications (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    task_id         TEXT NOT NULL,
    url             TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER
);
CREATE INDEX notifications_by_status ON notifications(status, next_attempt_at);
