-- A task's kind, policy and status, and an outbox row's status, hold only
-- the values naga writes, as the store's edge decodes them into enums (an
-- unknown value is an error there, never a default). Existing rows are
-- checked as the constraints are added: a row outside the sets fails the
-- migration, and then nothing changes.
ALTER TABLE tasks
    ADD CONSTRAINT tasks_kind_check CHECK (kind IN ('agent', 'mcp')),
    ADD CONSTRAINT tasks_policy_check
        CHECK (policy IN ('enqueue', 'parallel', 'reject', 'interrupt')),
    ADD CONSTRAINT tasks_status_check
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out'));
ALTER TABLE callbacks
    ADD CONSTRAINT callbacks_status_check CHECK (status IN ('pending', 'delivered', 'dead'));
ALTER TABLE notifications
    ADD CONSTRAINT notifications_status_check CHECK (status IN ('pending', 'delivered', 'dead'));
