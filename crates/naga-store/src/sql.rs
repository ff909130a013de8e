//! SQL written once for both backends: the predicates every command and
//! query shares, as `concat!`-able literals (`unfinished!()` in a
//! statement's text). The take-over predicate is `unheld!`, with each
//! backend's placeholder sign.

use crate::reads::{session_task_seqs, MemoryScope};

/// A task that has not ended (queued or running): `unfinished!()`, or
/// `unfinished!("t")` for a table named `t` in the statement.
macro_rules! unfinished {
    () => {
        "status IN ('queued', 'running')"
    };
    ($table:literal) => {
        concat!($table, ".status IN ('queued', 'running')")
    };
}
pub(crate) use unfinished;

/// A task that has ended (succeeded, failed, cancelled, timed out):
/// `ended!()`, or `ended!("t")`.
macro_rules! ended {
    () => {
        "status NOT IN ('queued', 'running')"
    };
    ($table:literal) => {
        concat!($table, ".status NOT IN ('queued', 'running')")
    };
}
pub(crate) use ended;

/// Who may take a task or a pending callback over: nobody holds it, its
/// lease lapsed (before `$lapsed`), or its holder stopped beating
/// (heartbeat before parameter 4; parameter 1 the claimant). `$p` is the
/// backend's placeholder sign: `"?"` (SQLite) or `"$"` (PostgreSQL).
macro_rules! unheld {
    ($p:literal, $lapsed:literal) => {
        concat!(
            "(lease_owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at < ",
            $lapsed,
            " OR lease_owner IN (SELECT id FROM nodes WHERE heartbeat_at < ",
            $p,
            "4 AND id <> ",
            $p,
            "1))"
        )
    };
}
pub(crate) use unheld;

// Statements the same on both backends. Their placeholders are `$N`,
// numbered in the order they first appear: SQLite takes `$N` as a named
// parameter numbered by first appearance, so the same positions bind on
// both (the SQLite writer refuses a statement where they would not:
// `stmts.rs`).

/// Lets go of a task `$2` holds (`$1` its id).
pub(crate) const RELEASE_LEASE: &str = concat!(
    "UPDATE tasks SET lease_owner = NULL, lease_expires_at = NULL
     WHERE id = $1 AND lease_owner = $2 AND ",
    unfinished!()
);

/// Lets go of every unfinished task `$1` holds.
pub(crate) const RELEASE_TASK_LEASES: &str = concat!(
    "UPDATE tasks SET lease_owner = NULL, lease_expires_at = NULL
     WHERE lease_owner = $1 AND ",
    unfinished!()
);

/// Node `$1`'s first heartbeat of a run, at `$2`.
pub(crate) const NODE_STARTED: &str =
    "INSERT INTO nodes (id, started_at, heartbeat_at) VALUES ($1, $2, $2)
     ON CONFLICT (id) DO UPDATE SET started_at = $2, heartbeat_at = $2, stopped_at = NULL";

/// Node `$1`'s heartbeat at `$2`.
pub(crate) const NODE_BEAT: &str =
    "INSERT INTO nodes (id, started_at, heartbeat_at) VALUES ($1, $2, $2)
     ON CONFLICT (id) DO UPDATE SET heartbeat_at = $2, stopped_at = NULL";

/// A node stopped cleanly at `$1` (`$2` its id).
pub(crate) const NODE_STOPPED: &str = "UPDATE nodes SET stopped_at = $1 WHERE id = $2";

/// Push config `$2` of task `$1` deleted.
pub(crate) const DELETE_PUSH_CONFIG: &str =
    "DELETE FROM push_configs WHERE task_id = $1 AND id = $2";

/// Task `$1`'s own callback dropped (its `default` push config deleted).
pub(crate) const DROP_CALLBACK: &str =
    "UPDATE tasks SET callback_url = NULL WHERE id = $1 AND callback_url IS NOT NULL";

/// A conversation's message; answers its id.
pub(crate) const INSERT_MESSAGE: &str =
    "INSERT INTO messages (session_id, role, content, kind, task_id, created_at)
     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id";

/// A batch the analyzer dispatched (once per request id).
pub(crate) const INSERT_DISPATCH: &str =
    "INSERT INTO dispatches (request_id, session_id, analysis_session_id, kind, user_message,
                             created_at)
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (request_id) DO NOTHING";

/// A received callback (once per key), waiting for its follow-up.
pub(crate) const RECEIVE_CALLBACK: &str =
    "INSERT INTO callback_inbox (key, task_id, session_id, body, status, received_at)
     VALUES ($1, $2, $3, $4, 'pending', $5) ON CONFLICT (key) DO NOTHING";

/// A received callback answered by message `$1` (`$2` its key).
pub(crate) const ANSWER_CALLBACK: &str =
    "UPDATE callback_inbox SET status = 'done', reply_message_id = $1 WHERE key = $2";

/// An A2A push config of task `$4` (replacing one of the same id), kept
/// as pushed when the task has ended already.
pub(crate) const ADD_PUSH_CONFIG: &str = concat!(
    "INSERT INTO push_configs (task_id, id, url, created_at, pushed)
     SELECT id, $1, $2, $3, ",
    ended!(),
    " FROM tasks WHERE id = $4
     ON CONFLICT (task_id, id) DO UPDATE SET url = EXCLUDED.url,
         created_at = EXCLUDED.created_at, pushed = EXCLUDED.pushed"
);

/// An LLM's summary of task `$4`'s memory (`$1` the method, `$2` the
/// summary, `$3` the time).
pub(crate) const ADD_COMPRESSED_MEMORY: &str =
    "INSERT INTO compressed_memories (session_id, task_id, method, summary, created_at)
     SELECT session_id, id, $1, $2, $3 FROM tasks WHERE id = $4";

/// Lets go of every pending row of `outbox` held by `$1`.
pub(crate) fn release_outbox_leases(outbox: &str) -> String {
    format!(
        "UPDATE {outbox} SET lease_owner = NULL, lease_expires_at = NULL
         WHERE lease_owner = $1 AND status = 'pending'"
    )
}

/// The statements that forget the memory of `scope`, with one value bound
/// as `$1`: the task's or the session's id, or NULL (everything).
pub(crate) fn clear_memory(scope: &MemoryScope) -> [String; 4] {
    let (by_task, by_session, all) = (
        "task_id = $1",
        "session_id = $1",
        "CAST($1 AS TEXT) IS NULL",
    );
    let (steps, tasks, compressed, failed) = match scope {
        MemoryScope::Task(_) => (
            "task_seq = (SELECT seq FROM tasks WHERE id = $1)".to_owned(),
            "id = $1".to_owned(),
            by_task,
            "last_task_id = $1",
        ),
        // Steps and tasks are reached through the session's chain.
        MemoryScope::Session(_) => {
            let seqs = session_task_seqs("$1");
            (
                format!("task_seq IN {seqs}"),
                format!("seq IN {seqs}"),
                by_session,
                by_session,
            )
        }
        MemoryScope::Global => (all.to_owned(), all.to_owned(), all, all),
    };
    [
        format!("UPDATE steps SET in_memory = FALSE WHERE in_memory AND {steps}"),
        format!("UPDATE tasks SET summary = NULL WHERE summary IS NOT NULL AND {tasks}"),
        format!("DELETE FROM compressed_memories WHERE {compressed}"),
        format!("DELETE FROM failed_attempts WHERE {failed}"),
    ]
}

/// What is kept of a pruned task: its request id (`$1`), session, status,
/// end, and when it was pruned.
pub(crate) const LEAVE_REQUEST_ID: &str =
    "INSERT INTO pruned_tasks (id, session_id, status, finished_at, pruned_at)
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING";

/// A pruned task's request id (`$1`), as it was left.
pub(crate) const PRUNED_TASK: &str =
    "SELECT id, session_id, status, finished_at, pruned_at FROM pruned_tasks WHERE id = $1";
