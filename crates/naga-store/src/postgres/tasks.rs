//! Tasks on PostgreSQL: the next batch of a session readied, each call's
//! end, steps, and a task's end with the callback it owes (a batch accepted:
//! `accept.rs`).

use super::ready_sessions;
use crate::sql::unfinished;
use crate::{
    commands::{CallFinish, Finished, NewStep, TaskFinish},
    rows::StepRow,
    StoreError,
};
use sqlx::PgPool;

/// Makes the session's earliest unfinished batch ready, if it is not yet
/// (its turn came): `Some(unheld)` when it did, and then tells the nodes
/// if the batch waits unheld for a worker.
///
/// Run after the commit of every task's end, and of every batch stored
/// behind an unfinished one, each in a statement of its own: a statement
/// sees what was committed before it began, so of two ends of a session
/// (or an end and a new batch) committed at once, the one committed last
/// sees the other. (The node's claimer also repairs, in case a node died
/// between the two: `ready_heads`.)
pub(crate) async fn ready_next(
    pool: &PgPool,
    session_id: &str,
) -> Result<Option<bool>, StoreError> {
    let readied: Option<bool> = sqlx::query_scalar(concat!(
        "WITH r AS (
             UPDATE tasks SET ready = TRUE
             WHERE seq = (SELECT seq FROM tasks WHERE session_id = $1
                            AND ",
        unfinished!(),
        " ORDER BY seq LIMIT 1)
               AND NOT ready
             RETURNING lease_owner IS NULL AS unheld),
         told AS (
             SELECT pg_notify('naga_work', '{\"ready\":true}') FROM r WHERE unheld)
         SELECT unheld FROM r WHERE (SELECT COUNT(*) FROM told) >= 0"
    ))
    .bind(session_id)
    .fetch_optional(pool)
    .await?;
    Ok(readied)
}

/// Makes every session's earliest unfinished batch ready that is not: the
/// repair of an end whose `ready_next` never ran (its node died between
/// the two). Returns how many waiting unheld it readied.
pub(crate) async fn ready_heads(pool: &PgPool) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query_scalar(concat!(
        "WITH r AS (
             UPDATE tasks SET ready = TRUE
             WHERE seq IN (SELECT DISTINCT ON (session_id) seq FROM tasks
                           WHERE ",
        unfinished!(),
        "
                           ORDER BY session_id, seq)
               AND NOT ready
             RETURNING lease_owner IS NULL AS unheld)
         SELECT COUNT(*) FROM r WHERE unheld"
    ))
    .fetch_one(pool)
    .await?;
    Ok(n as u64)
}

/// The statement that records a call's end, in one round trip: the task's
/// row takes the step's number (`last_step_no`) only while `$3` holds it
/// unfinished (fencing: else nothing is written); a failed call also counts
/// in memory's failed attempts. Returns the step's number.
const RECORD_CALL: &str = concat!("
    WITH t AS (
        UPDATE tasks SET last_step_no = last_step_no + 1
        WHERE seq = $1 AND id = $2 AND lease_owner = $3 AND ", unfinished!(), "
        RETURNING session_id, last_step_no),
    s AS (
        INSERT INTO steps (task_seq, step_no, task_id, session_id, call_idx, purpose, content,
                           output, analysis, success, error, created_at, result, started_at)
        SELECT $1, t.last_step_no, $2, t.session_id, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13
        FROM t
        RETURNING step_no),
    f AS (
        INSERT INTO failed_attempts (session_id, command, count, last_error, last_task_id, updated_at)
        SELECT t.session_id, $14, 1, $10, $2, $11 FROM t WHERE NOT $9
        ON CONFLICT (session_id, command) DO UPDATE SET count = failed_attempts.count + 1,
            last_error = EXCLUDED.last_error, last_task_id = EXCLUDED.last_task_id,
            updated_at = EXCLUDED.updated_at)
    SELECT step_no FROM s");

pub(crate) async fn finish_call(pool: &PgPool, f: &CallFinish) -> Result<(), StoreError> {
    let step = &f.step;
    let recorded: Option<i64> = sqlx::query_scalar(RECORD_CALL)
        .bind(f.task_seq)
        .bind(&step.task_id)
        .bind(&f.owner)
        .bind(step.call_idx)
        .bind(&step.purpose)
        .bind(&step.content)
        .bind(&step.output)
        .bind(&step.analysis)
        .bind(step.success)
        .bind(&step.error)
        .bind(step.created_at)
        .bind(&f.result)
        .bind(f.started_at)
        .bind(step.command())
        .fetch_optional(pool)
        .await?;
    match recorded {
        Some(_) => Ok(()),
        None => Err(StoreError::LeaseLost(step.task_id.clone())),
    }
}

pub(crate) async fn add_step(pool: &PgPool, step: &NewStep) -> Result<StepRow, StoreError> {
    let added: Option<(i64, String)> = sqlx::query_as(
        "WITH t AS (
             UPDATE tasks SET last_step_no = last_step_no + 1 WHERE id = $1
             RETURNING seq, session_id, last_step_no),
         s AS (
             INSERT INTO steps (task_seq, step_no, task_id, session_id, call_idx, purpose,
                                content, output, analysis, success, error, created_at)
             SELECT t.seq, t.last_step_no, $1, t.session_id, $2, $3, $4, $5, $6, $7, $8, $9
             FROM t
             RETURNING step_no, session_id),
         f AS (
             INSERT INTO failed_attempts (session_id, command, count, last_error, last_task_id,
                                          updated_at)
             SELECT t.session_id, $10, 1, $8, $1, $9 FROM t WHERE NOT $7
             ON CONFLICT (session_id, command) DO UPDATE SET count = failed_attempts.count + 1,
                 last_error = EXCLUDED.last_error, last_task_id = EXCLUDED.last_task_id,
                 updated_at = EXCLUDED.updated_at)
         SELECT step_no, session_id FROM s",
    )
    .bind(&step.task_id)
    .bind(step.call_idx)
    .bind(&step.purpose)
    .bind(&step.content)
    .bind(&step.output)
    .bind(&step.analysis)
    .bind(step.success)
    .bind(&step.error)
    .bind(step.created_at)
    .bind(step.command())
    .fetch_optional(pool)
    .await?;
    let Some((step_no, session_id)) = added else {
        return Err(StoreError::Conflict(format!("no task `{}`", step.task_id)));
    };
    Ok(step.row(session_id, step_no))
}

/// A task's end in one statement (one round trip): the task's row ends
/// (only while `owner` holds it unfinished) and takes its last call's step
/// number, the step and a failed-attempt count are written, and the
/// callback goes to the outbox with the next sequence number in its body.
/// Then the session's next batch is readied (`ready_next`).
pub(crate) async fn finish_task(pool: &PgPool, f: &TaskFinish) -> Result<Finished, StoreError> {
    let call = f.last_call.as_ref();
    let step = call.map(|c| &c.step);
    let (ended, seq, body, session): (i64, Option<i64>, Option<String>, Option<String>) =
        sqlx::query_as(concat!(
            "WITH ended AS (
             UPDATE tasks SET status = $2, error = $3, finished_at = $4, summary = $6,
                 lease_owner = NULL, lease_expires_at = NULL,
                 last_step_no = last_step_no + CASE WHEN $8 THEN 1 ELSE 0 END
             WHERE seq = $7 AND id = $1 AND ",
            unfinished!(),
            " AND lease_owner = $5
             RETURNING session_id, last_step_no, callback_url),
         step AS (
             INSERT INTO steps (task_seq, step_no, task_id, session_id, call_idx, purpose, content,
                                output, analysis, success, error, created_at, result, started_at)
             SELECT $7, ended.last_step_no, $1, ended.session_id, $9, $10, $11, $12, $13, $14,
                    $15, $16, $17, $18
             FROM ended WHERE $8),
         fail AS (
             INSERT INTO failed_attempts (session_id, command, count, last_error, last_task_id,
                                          updated_at)
             SELECT ended.session_id, $19, 1, $15, $1, $16 FROM ended WHERE $8 AND NOT $14
             ON CONFLICT (session_id, command) DO UPDATE SET count = failed_attempts.count + 1,
                 last_error = EXCLUDED.last_error, last_task_id = EXCLUDED.last_task_id,
                 updated_at = EXCLUDED.updated_at),
         cb AS (
             INSERT INTO callbacks (seq, id, task_id, url, body, status, attempts,
                                    next_attempt_at, created_at, lease_owner, lease_expires_at)
             SELECT n.seq, $20, $1, $21, $22 || n.seq || '}', 'pending', 0, $4, $4, $5, $23
             FROM ended CROSS JOIN LATERAL (SELECT nextval('callbacks_seq_seq') AS seq) n
             WHERE $21 IS NOT NULL AND ended.callback_url IS NOT NULL
             RETURNING seq, body)
         SELECT (SELECT COUNT(*) FROM ended), (SELECT seq FROM cb), (SELECT body FROM cb),
                (SELECT session_id FROM ended)"
        ))
        .bind(&f.task_id)
        .bind(f.status.as_str())
        .bind(&f.error)
        .bind(f.finished_at)
        .bind(&f.owner)
        .bind(&f.summary)
        .bind(f.task_seq)
        .bind(call.is_some())
        .bind(step.and_then(|s| s.call_idx))
        .bind(step.and_then(|s| s.purpose.as_deref()))
        .bind(step.and_then(|s| s.content.as_deref()))
        .bind(step.and_then(|s| s.output.as_deref()))
        .bind(step.and_then(|s| s.analysis.as_deref()))
        .bind(step.is_some_and(|s| s.success))
        .bind(step.and_then(|s| s.error.as_deref()))
        .bind(step.map_or(f.finished_at, |s| s.created_at))
        .bind(call.map(|c| c.result.as_str()))
        .bind(call.map(|c| c.started_at))
        .bind(step.map(NewStep::command))
        .bind(&f.callback_id)
        .bind(f.callback.as_ref().map(|c| c.0.as_str()))
        .bind(f.callback.as_ref().map(|c| c.1.as_str()))
        .bind(f.lease_until)
        .fetch_one(pool)
        .await?;
    if ended == 0 {
        // As on SQLite: a last call that cannot be recorded is a lost lease.
        return match call {
            Some(_) => Err(StoreError::LeaseLost(f.task_id.clone())),
            None => Ok(Finished::AlreadyEnded),
        };
    }
    let callback = match (&f.callback, seq, body) {
        (Some((url, _)), Some(seq), Some(body)) => Some(f.pending_callback(url, seq, body)),
        _ => None,
    };
    // The session's next batch may be ready now (see `ready_next`; taken
    // at once when the end asks). The end is committed whatever this
    // says: if it fails, the node's repair readies it (`ready_heads`).
    let Some(session) = session else {
        return Ok(Finished::Ended {
            callback,
            woke: false,
            next: None,
        });
    };
    let readied = ready_sessions(pool, &[f], |_| Some(session.clone())).await;
    let (woke, next) = match readied.map(|mut r| r.remove(&session)) {
        Ok(Some(r)) => (r.woke, r.next),
        Ok(None) => (false, None),
        Err(e) => {
            tracing::warn!(error = %e, session_id = %session,
                "cannot ready the session's next batch now");
            (false, None)
        }
    };
    Ok(Finished::Ended {
        callback,
        woke,
        next,
    })
}
