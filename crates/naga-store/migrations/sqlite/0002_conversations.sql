-- The API server's side: conversations, the dispatches of the analyzer,
-- and the callbacks received (an inbox: each is answered once).

-- One message of a conversation (`sessions.id` is the conversation).
CREATE TABLE messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    role       TEXT NOT NULL,
    content    TEXT NOT NULL,
    -- chat: a turn of /chat; followup: the reply to a callback.
    kind       TEXT NOT NULL DEFAULT 'chat',
    task_id    TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX messages_by_session ON messages(session_id, id);

-- A batch the analyzer sent, with the user message it came from.
CREATE TABLE dispatches (
    request_id          TEXT PRIMARY KEY,
    session_id          TEXT NOT NULL,
    analysis_session_id TEXT NOT NULL,
    kind                TEXT NOT NULL,
    user_message        TEXT NOT NULL,
    created_at          INTEGER NOT NULL
);

-- Callbacks received. `key` is the webhook-id (else `task:<task_id>`), so a
-- redelivery is recognised; `status` pending until its follow-up is saved.
CREATE TABLE callback_inbox (
    key              TEXT PRIMARY KEY,
    task_id          TEXT NOT NULL,
    session_id       TEXT NOT NULL,
    body             TEXT NOT NULL,
    status           TEXT NOT NULL,
    reply_message_id INTEGER,
    received_at      INTEGER NOT NULL
);
CREATE INDEX callback_inbox_pending ON callback_inbox(status) WHERE status = 'pending';
