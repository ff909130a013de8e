-- A task's callback, found by its task (the dashboard, `GET
-- /callbacks?task_id=`), however many callbacks are newer.
CREATE INDEX callbacks_by_task ON callbacks(task_id);
