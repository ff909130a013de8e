-- A2A push configs created for a task after it was sent
-- (CreateTaskPushNotificationConfig); the one its SendMessage carried stays
-- the task's callback_url. `pushed`: the task's end went to the outbox for
-- this config, in the transaction that set it (or the task had ended when
-- the config was created: no update is left to push).
CREATE TABLE push_configs (
    task_id TEXT NOT NULL,
    id TEXT NOT NULL,
    url TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    pushed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (task_id, id)
) WITHOUT ROWID;
-- The configs whose push is still to come: few, read every second.
CREATE INDEX push_configs_due ON push_configs(task_id) WHERE NOT pushed;
