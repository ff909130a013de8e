//! The store's commands on PostgreSQL: each one transaction, correct when
//! several nodes run the same command at the same moment.
//!
//! What SQLite gets from its single writer, these get from the database:
//! - a task's row is locked (`FOR UPDATE`) before a step or its end is
//!   written, so step numbers never collide and a node that lost the lease
//!   is refused (fencing);
//! - a session's row is locked while a task joins its chain, so chains and
//!   counts stay whole;
//! - callback sequence numbers come from the table's sequence, not `MAX+1`;
//! - two nodes accepting the same request id at once: `ON CONFLICT` lets
//!   one in, the other waits for its commit and answers with its task.

use crate::{
    commands::{
        AnalysisOwners, CallFinish, DeliveryOutcome, Finished, FirstAnswer, Inserted, Lease,
        NewStep, NewTask, TaskFinish, OUTBOXES,
    },
    conversations::{DispatchRow, InboxRow, NewMessage, NewNotification},
    reads::session_task_seqs,
    rows::*,
    MemoryScope, StoreError,
};
use naga_core::{config::SessionPolicy, time::Millis};
use sqlx::{postgres::PgRow, FromRow, PgPool, Postgres, Row, Transaction};

type Tx = Transaction<'static, Postgres>;

/// The PostgreSQL backend: its pool, and the analysis sessions known to be
/// committed with their session (as the SQLite writer keeps them).
#[derive(Clone)]
pub(crate) struct Pg {
    pub pool: PgPool,
    pub analysis_owners: AnalysisOwners,
    /// Whether writes fail for a reason of the database's (as the SQLite
    /// writer keeps it): `/health` says degraded, `/ready` 503.
    pub health: std::sync::Arc<crate::writer::Health>,
}

impl Pg {
    /// Notes how a command ended: a storage fault starts (or continues) a
    /// failing period, a success ends it.
    pub fn observe<T>(&self, result: &Result<T, StoreError>) {
        match result {
            Ok(_) => self.health.record(None),
            Err(e) if e.is_transient() => self.health.record(Some(e.to_string())),
            Err(_) => {}
        }
    }
}

impl std::ops::Deref for Pg {
    type Target = PgPool;
    fn deref(&self) -> &PgPool {
        &self.pool
    }
}

const FIRST_ANSWER: &str =
    "SELECT response, id, kind, session_id, analysis_session_id, calls_count, accepted_at FROM tasks";

fn first_answer(r: &PgRow) -> Result<FirstAnswer, sqlx::Error> {
    Ok(FirstAnswer {
        response: r.try_get(0)?,
        id: r.try_get(1)?,
        kind: r.try_get(2)?,
        session_id: r.try_get(3)?,
        analysis_session_id: r.try_get(4)?,
        calls_count: r.try_get(5)?,
        accepted_at: r.try_get(6)?,
    })
}

async fn touch_session(tx: &mut Tx, session_id: &str, now: Millis) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO sessions (id, created_at, last_activity_at) VALUES ($1, $2, $2)
         ON CONFLICT (id) DO UPDATE SET last_activity_at = GREATEST(sessions.last_activity_at,
                                                                    EXCLUDED.last_activity_at)",
    )
    .bind(session_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Two nodes accepting the same request id (or creating the same session
/// or analysis session) at once need no retry: every insert below is
/// `ON CONFLICT`, which waits for the other's commit and then sees its row.
pub(crate) async fn insert_task(pg: &Pg, task: &mut NewTask) -> Result<Inserted, StoreError> {
    let (inserted, learned) = try_insert_task(pg, task).await?;
    if let Some((analysis, session)) = learned {
        pg.analysis_owners.learn(analysis, session);
    }
    Ok(inserted)
}

/// Four round trips for a new batch: the session's row (created or touched,
/// and locked, so that its chain grows one task at a time; its newest task
/// read), its analysis session (unless known), the task with the session's
/// chain, the commit.
async fn try_insert_task(
    pg: &Pg,
    task: &mut NewTask,
) -> Result<(Inserted, Option<(String, String)>), StoreError> {
    let mut tx = pg.pool.begin().await?;
    // (The time once a connection was had, then once the session's row is
    // locked: the session's batches are stored in the order of their times.)
    task.restamp();
    let prev_seq: Option<i64> = sqlx::query_scalar(
        "INSERT INTO sessions (id, created_at, last_activity_at) VALUES ($1, $2, $2)
         ON CONFLICT (id) DO UPDATE SET last_activity_at = GREATEST(sessions.last_activity_at,
                                                                    EXCLUDED.last_activity_at)
         RETURNING last_task_seq",
    )
    .bind(&task.session_id)
    .bind(task.accepted_at)
    .fetch_one(&mut *tx)
    .await?;
    task.restamp();
    let task = &*task;
    // Whether the session has unfinished batches, where that decides: a
    // `reject` batch is refused, a batch asked to start at once waits. (The
    // session's row is locked: none of its batches is accepted meanwhile; a
    // session without a task has none.)
    let reject = task.policy == SessionPolicy::Reject;
    let asks = reject || (task.started && task.policy != SessionPolicy::Parallel);
    let busy = if asks && prev_seq.is_some() {
        let (busy, known): (bool, bool) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE session_id = $1
                            AND status IN ('queued', 'running')),
                    EXISTS (SELECT 1 FROM tasks WHERE id = $2)",
        )
        .bind(&task.session_id)
        .bind(&task.id)
        .fetch_one(&mut *tx)
        .await?;
        if reject && busy && !known {
            return Ok((Inserted::Busy, None));
        }
        busy
    } else {
        false
    };
    let started = task.started && !busy;
    if let Some(fp) = &task.fingerprint {
        let active = sqlx::query(&format!(
            "{FIRST_ANSWER} WHERE session_id = $1 AND fingerprint = $2
             AND status IN ('queued', 'running') ORDER BY seq LIMIT 1"
        ))
        .bind(&task.session_id)
        .bind(fp)
        .fetch_optional(&mut *tx)
        .await?;
        // (A known request id answers as itself, below.)
        if let Some(row) = active {
            let known: Option<i64> = sqlx::query_scalar("SELECT seq FROM tasks WHERE id = $1")
                .bind(&task.id)
                .fetch_optional(&mut *tx)
                .await?;
            if known.is_none() {
                return Ok((Inserted::Duplicate(first_answer(&row)?), None));
            }
        }
    }
    let learned = claim_analysis(&mut tx, pg, task).await?;
    let seq: Option<i64> = sqlx::query_scalar(
        "WITH t AS (
             INSERT INTO tasks (id, kind, session_id, analysis_session_id, query, callback_url,
                 policy, fingerprint, status, calls_count, calls, response, accepted_at,
                 started_at, lease_owner, lease_expires_at, prev_seq)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
             ON CONFLICT (id) DO NOTHING
             RETURNING seq)
         UPDATE sessions SET last_task_seq = t.seq, task_count = task_count + 1
         FROM t WHERE sessions.id = $3
         RETURNING t.seq",
    )
    .bind(&task.id)
    .bind(task.kind.as_str())
    .bind(&task.session_id)
    .bind(&task.analysis_session_id)
    .bind(&task.query)
    .bind(&task.callback_url)
    .bind(task.policy.as_str())
    .bind(&task.fingerprint)
    .bind(if started { "running" } else { "queued" })
    .bind(task.calls_count as i64)
    .bind(&task.calls)
    .bind(&task.response)
    .bind(task.accepted_at)
    .bind(started.then_some(task.accepted_at))
    .bind(&task.lease.owner)
    .bind(task.lease.until)
    .bind(prev_seq)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(seq) = seq else {
        // The request id is known: nothing of this transaction stays.
        let row = sqlx::query(&format!("{FIRST_ANSWER} WHERE id = $1"))
            .bind(&task.id)
            .fetch_one(&mut *tx)
            .await?;
        let first = first_answer(&row)?;
        return Ok(match repeated(&mut tx, task).await? {
            true => (Inserted::Existing(first), None),
            false => (Inserted::Reused(first), None),
        });
    };
    tx.commit().await?;
    Ok((
        Inserted::New {
            seq,
            started,
            accepted_at: task.accepted_at,
        },
        learned,
    ))
}

/// Whether a task with this request id is stored with the same batch.
async fn repeated(tx: &mut Tx, task: &NewTask) -> Result<bool, StoreError> {
    let stored: Option<crate::commands::StoredBatch> = sqlx::query_as(concat!(
        "SELECT ",
        crate::commands::stored_batch_columns!(),
        " FROM tasks WHERE id = $1"
    ))
    .bind(&task.id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(stored.is_some_and(|s| crate::commands::same_batch(&s, task)))
}

/// Records that the task's analysis session belongs to its session, or
/// refuses it when it belongs to another (known ones are not asked again:
/// an analysis session never changes its session).
async fn claim_analysis(
    tx: &mut Tx,
    pg: &Pg,
    task: &NewTask,
) -> Result<Option<(String, String)>, StoreError> {
    let Some(analysis) = &task.analysis_session_id else {
        return Ok(None);
    };
    let owner = match pg.analysis_owners.owner(analysis, &task.session_id) {
        Some(Ok(())) => return Ok(None),
        Some(Err(owner)) => owner,
        None => {
            let created: Option<String> = sqlx::query_scalar(
                "INSERT INTO analysis_sessions (id, session_id, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO NOTHING RETURNING session_id",
            )
            .bind(analysis)
            .bind(&task.session_id)
            .bind(task.accepted_at)
            .fetch_optional(&mut **tx)
            .await?;
            match created {
                Some(owner) => owner,
                None => {
                    sqlx::query_scalar("SELECT session_id FROM analysis_sessions WHERE id = $1")
                        .bind(analysis)
                        .fetch_one(&mut **tx)
                        .await?
                }
            }
        }
    };
    if owner != task.session_id {
        return Err(StoreError::Conflict(format!(
            "analysis_session_id `{analysis}` belongs to session `{owner}`, not `{}`",
            task.session_id
        )));
    }
    Ok(Some((analysis.clone(), owner)))
}

pub(crate) async fn start_task(
    pool: &PgPool,
    task_id: &str,
    owner: &str,
    now: Millis,
) -> Result<bool, StoreError> {
    let n = sqlx::query(
        "UPDATE tasks SET status = 'running', started_at = COALESCE(started_at, $2)
         WHERE id = $1 AND status IN ('queued', 'running') AND lease_owner = $3",
    )
    .bind(task_id)
    .bind(now)
    .bind(owner)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n == 1)
}

pub(crate) async fn renew_leases(
    pool: &PgPool,
    owner: &str,
    until: Millis,
) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await?;
    let n = sqlx::query(
        "UPDATE tasks SET lease_expires_at = $2
         WHERE lease_owner = $1 AND status IN ('queued', 'running')",
    )
    .bind(owner)
    .bind(until)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    for outbox in OUTBOXES {
        sqlx::query(&format!(
            "UPDATE {outbox} SET lease_expires_at = $2 WHERE lease_owner = $1 AND status = 'pending'"
        ))
        .bind(owner)
        .bind(until)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(n)
}

/// Claims pending outbox rows whose lease expired (or own ones), skipping
/// rows another node is claiming at this moment.
pub(crate) async fn claim_deliveries(
    pool: &PgPool,
    lease: &Lease,
    now: Millis,
    own: Option<&str>,
) -> Result<Vec<CallbackRow>, StoreError> {
    let mut rows = Vec::new();
    for (outbox, table) in [Outbox::Callbacks, Outbox::Notifications]
        .into_iter()
        .zip(OUTBOXES)
    {
        let mut claimed: Vec<CallbackRow> = sqlx::query_as(&format!(
            "UPDATE {table} SET lease_owner = $1, lease_expires_at = $2
             WHERE seq IN (SELECT seq FROM {table}
                           WHERE status = 'pending'
                             AND (lease_owner IS NULL OR lease_expires_at IS NULL
                                  OR (lease_expires_at < $3 AND lease_owner <> $1)
                                  OR lease_owner = $4)
                           FOR UPDATE SKIP LOCKED)
             RETURNING *"
        ))
        .bind(&lease.owner)
        .bind(lease.until)
        .bind(now)
        .bind(own)
        .fetch_all(pool)
        .await?;
        claimed.sort_by_key(|r| r.seq);
        for r in &mut claimed {
            r.outbox = outbox;
        }
        rows.extend(claimed);
    }
    Ok(rows)
}

/// Claims expired (or own) leases; rows another node is claiming at this
/// moment are skipped (`SKIP LOCKED`), so each task goes to one node.
pub(crate) async fn claim_expired(
    pool: &PgPool,
    lease: &Lease,
    now: Millis,
    own: Option<&str>,
    limit: i64,
) -> Result<Vec<TaskRow>, StoreError> {
    Ok(sqlx::query_as(
        "WITH claimed AS (
             UPDATE tasks SET lease_owner = $1, lease_expires_at = $2
             WHERE seq IN (SELECT seq FROM tasks
                           WHERE status IN ('queued', 'running')
                             AND (lease_owner IS NULL OR lease_expires_at IS NULL
                                  OR lease_expires_at < $3 OR lease_owner = $4)
                           ORDER BY seq LIMIT $5
                           FOR UPDATE SKIP LOCKED)
             RETURNING seq)
         SELECT t.* FROM task_rows t JOIN claimed c ON c.seq = t.seq ORDER BY t.seq",
    )
    .bind(&lease.owner)
    .bind(lease.until)
    .bind(now)
    .bind(own)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

pub(crate) async fn release_unheld_leases(
    pool: &PgPool,
    owner: &str,
    after_seq: i64,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "UPDATE tasks SET lease_owner = NULL, lease_expires_at = NULL
         WHERE lease_owner = $1 AND seq > $2 AND status IN ('queued', 'running')",
    )
    .bind(owner)
    .bind(after_seq)
    .execute(pool)
    .await?
    .rows_affected())
}

pub(crate) async fn release_lease(
    pool: &PgPool,
    task_id: &str,
    owner: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE tasks SET lease_owner = NULL, lease_expires_at = NULL
         WHERE id = $1 AND lease_owner = $2 AND status IN ('queued', 'running')",
    )
    .bind(task_id)
    .bind(owner)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn release_leases(pool: &PgPool, owner: &str) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await?;
    let n = sqlx::query(
        "UPDATE tasks SET lease_owner = NULL, lease_expires_at = NULL
         WHERE lease_owner = $1 AND status IN ('queued', 'running')",
    )
    .bind(owner)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    for outbox in OUTBOXES {
        sqlx::query(&format!(
            "UPDATE {outbox} SET lease_owner = NULL, lease_expires_at = NULL
             WHERE lease_owner = $1 AND status = 'pending'"
        ))
        .bind(owner)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(n)
}

/// The statement that records a call's end, in one round trip: the task's
/// row takes the step's number (`last_step_no`) only while `$3` holds it
/// unfinished (fencing: else nothing is written); a failed call also counts
/// in memory's failed attempts. Returns the step's number.
const RECORD_CALL: &str = "
    WITH t AS (
        UPDATE tasks SET last_step_no = last_step_no + 1
        WHERE seq = $1 AND id = $2 AND lease_owner = $3 AND status IN ('queued', 'running')
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
    SELECT step_no FROM s";

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
/// callback goes to the outbox with the next sequence number in its body;
/// when the session has later batches, the nodes are told (`naga_work`,
/// on commit) that the next may start.
pub(crate) async fn finish_task(pool: &PgPool, f: &TaskFinish) -> Result<Finished, StoreError> {
    if let Some((_, head)) = &f.callback {
        if !head.starts_with('{') || !head.ends_with("\"sequence\":") {
            return Err(StoreError::Corrupt(format!(
                "callback of `{}`: not an envelope's JSON up to its sequence",
                f.task_id
            )));
        }
    }
    let call = f.last_call.as_ref();
    let step = call.map(|c| &c.step);
    let (ended, seq, body, _woke): (i64, Option<i64>, Option<String>, i64) = sqlx::query_as(
        "WITH ended AS (
             UPDATE tasks SET status = $2, error = $3, finished_at = $4, summary = $6,
                 lease_owner = NULL, lease_expires_at = NULL,
                 last_step_no = last_step_no + CASE WHEN $8 THEN 1 ELSE 0 END
             WHERE seq = $7 AND id = $1 AND status IN ('queued', 'running') AND lease_owner = $5
             RETURNING session_id, last_step_no),
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
             WHERE $21 IS NOT NULL
             RETURNING seq, body),
         woke AS (
             SELECT pg_notify('naga_work', json_build_object('ended', ended.session_id)::text)
             FROM ended WHERE EXISTS (
                 SELECT 1 FROM tasks t WHERE t.session_id = ended.session_id AND t.seq > $7
                 AND t.status IN ('queued', 'running')))
         SELECT (SELECT COUNT(*) FROM ended), (SELECT seq FROM cb), (SELECT body FROM cb),
                (SELECT COUNT(*) FROM woke)",
    )
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
    Ok(Finished::Ended { callback })
}

pub(crate) async fn add_compressed_memory(
    pool: &PgPool,
    task_id: &str,
    method: &str,
    summary: &str,
    now: Millis,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO compressed_memories (session_id, task_id, method, summary, created_at)
         SELECT session_id, id, $2, $3, $4 FROM tasks WHERE id = $1",
    )
    .bind(task_id)
    .bind(method)
    .bind(summary)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// Delivery attempts of many rows in one statement.
pub(crate) async fn record_deliveries_in(
    pool: &PgPool,
    outbox: Outbox,
    attempts: &[(i64, DeliveryOutcome, Millis)],
) -> Result<(), StoreError> {
    let table = match outbox {
        Outbox::Callbacks => "callbacks",
        Outbox::Notifications => "notifications",
    };
    let n = attempts.len();
    let (mut seqs, mut statuses, mut errors, mut nexts, mut delivered) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (seq, outcome, now) in attempts {
        let now = *now;
        let (status, error, next, at) = match outcome {
            DeliveryOutcome::Delivered => ("delivered", None, now, Some(now)),
            DeliveryOutcome::Retry {
                error,
                next_attempt_at,
            } => ("pending", Some(error.clone()), *next_attempt_at, None),
            DeliveryOutcome::Dead { error } => ("dead", Some(error.clone()), now, None),
        };
        seqs.push(*seq);
        statuses.push(status);
        errors.push(error);
        nexts.push(next);
        delivered.push(at);
    }
    sqlx::query(&format!(
        "UPDATE {table} AS c SET status = d.status, attempts = c.attempts + 1,
             last_error = COALESCE(d.error, c.last_error), next_attempt_at = d.next,
             delivered_at = COALESCE(d.delivered, c.delivered_at)
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
              AS d(seq, status, error, next, delivered)
         WHERE c.seq = d.seq"
    ))
    .bind(seqs)
    .bind(statuses)
    .bind(errors)
    .bind(nexts)
    .bind(delivered)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn requeue_callback(
    pool: &PgPool,
    id: &str,
    lease: &Lease,
    now: Millis,
) -> Result<Option<CallbackRow>, StoreError> {
    // Concurrent replays: the second waits for the first's row lock, then
    // sees the row pending and changes nothing.
    Ok(sqlx::query_as(
        "UPDATE callbacks SET status = 'pending', attempts = 0, next_attempt_at = $2,
             lease_owner = $3, lease_expires_at = $4
         WHERE id = $1 AND status <> 'pending' RETURNING *",
    )
    .bind(id)
    .bind(now)
    .bind(&lease.owner)
    .bind(lease.until)
    .fetch_optional(pool)
    .await?)
}

pub(crate) async fn redrive_dead(
    pool: &PgPool,
    since: Millis,
    limit: i64,
    lease: &Lease,
    now: Millis,
) -> Result<Vec<CallbackRow>, StoreError> {
    let mut rows: Vec<CallbackRow> = sqlx::query_as(
        "UPDATE callbacks SET status = 'pending', attempts = 0, next_attempt_at = $3,
             lease_owner = $4, lease_expires_at = $5
         WHERE seq IN (SELECT seq FROM callbacks
                       WHERE status = 'dead' AND next_attempt_at >= $1
                       ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED)
           AND status = 'dead'
         RETURNING *",
    )
    .bind(since)
    .bind(limit)
    .bind(now)
    .bind(&lease.owner)
    .bind(lease.until)
    .fetch_all(pool)
    .await?;
    rows.sort_by_key(|r| r.seq);
    Ok(rows)
}

pub(crate) async fn clear_memory(pool: &PgPool, scope: &MemoryScope) -> Result<u64, StoreError> {
    let (by_task, by_session) = ("task_id = $1", "session_id = $1");
    let (steps, tasks, compressed, failed) = match scope {
        MemoryScope::Task(_) => (
            "task_seq = (SELECT seq FROM tasks WHERE id = $1)".to_owned(),
            "id = $1".to_owned(),
            by_task,
            "last_task_id = $1",
        ),
        MemoryScope::Session(_) => {
            let seqs = session_task_seqs("$1");
            (
                format!("task_seq IN {seqs}"),
                format!("seq IN {seqs}"),
                by_session,
                by_session,
            )
        }
        MemoryScope::Global => (
            "$1::text IS NULL".to_owned(),
            "$1::text IS NULL".to_owned(),
            "$1::text IS NULL",
            "$1::text IS NULL",
        ),
    };
    let value = match scope {
        MemoryScope::Task(id) | MemoryScope::Session(id) => Some(id.as_str()),
        MemoryScope::Global => None,
    };
    let mut tx = pool.begin().await?;
    let mut removed = 0;
    for sql in [
        format!("UPDATE steps SET in_memory = FALSE WHERE in_memory AND {steps}"),
        format!("UPDATE tasks SET summary = NULL WHERE summary IS NOT NULL AND {tasks}"),
        format!("DELETE FROM compressed_memories WHERE {compressed}"),
        format!("DELETE FROM failed_attempts WHERE {failed}"),
    ] {
        removed += sqlx::query(&sql)
            .bind(value)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    tx.commit().await?;
    Ok(removed)
}

async fn insert_message(tx: &mut Tx, m: &NewMessage) -> Result<i64, StoreError> {
    touch_session(tx, &m.session_id, m.created_at).await?;
    Ok(sqlx::query_scalar(
        "INSERT INTO messages (session_id, role, content, kind, task_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(&m.session_id)
    .bind(&m.role)
    .bind(&m.content)
    .bind(m.kind)
    .bind(&m.task_id)
    .bind(m.created_at)
    .fetch_one(&mut **tx)
    .await?)
}

pub(crate) async fn add_message(pool: &PgPool, m: &NewMessage) -> Result<i64, StoreError> {
    let mut tx = pool.begin().await?;
    let id = insert_message(&mut tx, m).await?;
    tx.commit().await?;
    Ok(id)
}

const CONVERSATION_TABLES: [&str; 3] = ["messages", "dispatches", "callback_inbox"];

pub(crate) async fn delete_conversation(
    pool: &PgPool,
    session_id: Option<&str>,
) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await?;
    let mut n = 0;
    let conversations: i64 = sqlx::query_scalar(
        "SELECT COUNT(DISTINCT session_id) FROM messages WHERE $1::text IS NULL",
    )
    .bind(session_id)
    .fetch_one(&mut *tx)
    .await?;
    for table in CONVERSATION_TABLES {
        n += sqlx::query(&format!(
            "DELETE FROM {table} WHERE $1::text IS NULL OR session_id = $1"
        ))
        .bind(session_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    tx.commit().await?;
    Ok(match session_id {
        Some(_) => n,
        None => conversations.max(0) as u64,
    })
}

pub(crate) async fn add_dispatch(pool: &PgPool, d: &DispatchRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO dispatches (request_id, session_id, analysis_session_id, kind, user_message, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (request_id) DO NOTHING",
    )
    .bind(&d.request_id)
    .bind(&d.session_id)
    .bind(&d.analysis_session_id)
    .bind(&d.kind)
    .bind(&d.user_message)
    .bind(d.created_at)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn receive_callback(pool: &PgPool, row: &InboxRow) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    touch_session(&mut tx, &row.session_id, row.received_at).await?;
    let n = sqlx::query(
        "INSERT INTO callback_inbox (key, task_id, session_id, body, status, received_at)
         VALUES ($1, $2, $3, $4, 'pending', $5) ON CONFLICT (key) DO NOTHING",
    )
    .bind(&row.key)
    .bind(&row.task_id)
    .bind(&row.session_id)
    .bind(&row.body)
    .bind(row.received_at)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(n == 1)
}

pub(crate) async fn answer_callback(
    pool: &PgPool,
    key: &str,
    reply: &NewMessage,
    notify: Option<&NewNotification>,
) -> Result<Option<(i64, Option<CallbackRow>)>, StoreError> {
    let mut tx = pool.begin().await?;
    // Locked: two nodes answering the same callback write one follow-up.
    let pending: Option<String> = sqlx::query_scalar(
        "SELECT status FROM callback_inbox WHERE key = $1 AND status = 'pending' FOR UPDATE",
    )
    .bind(key)
    .fetch_optional(&mut *tx)
    .await?;
    if pending.is_none() {
        return Ok(None);
    }
    let id = insert_message(&mut tx, reply).await?;
    sqlx::query("UPDATE callback_inbox SET status = 'done', reply_message_id = $2 WHERE key = $1")
        .bind(key)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let notification = match notify {
        None => None,
        Some(n) => {
            let body = crate::conversations::notification_body(reply, id);
            let task_id = reply.task_id.clone().unwrap_or_default();
            let mut row = CallbackRow::from_row(
                &sqlx::query(
                    "INSERT INTO notifications (id, task_id, url, body, status, attempts,
                                                next_attempt_at, created_at, lease_owner,
                                                lease_expires_at)
                     VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $6, $7) RETURNING *",
                )
                .bind(&n.id)
                .bind(&task_id)
                .bind(&n.url)
                .bind(&body)
                .bind(reply.created_at)
                .bind(&n.lease.owner)
                .bind(n.lease.until)
                .fetch_one(&mut *tx)
                .await?,
            )?;
            row.outbox = Outbox::Notifications;
            Some(row)
        }
    };
    tx.commit().await?;
    Ok(Some((id, notification)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_storage_fault_makes_the_store_degraded_until_a_command_succeeds() {
        let pg = Pg {
            pool: PgPool::connect_lazy("postgres://nobody@127.0.0.1:9/none").unwrap(),
            analysis_owners: AnalysisOwners::default(),
            health: Default::default(),
        };
        assert!(pg.health.fault().is_none());
        pg.observe::<()>(&Err(StoreError::Conflict("a request's own fault".into())));
        assert!(pg.health.fault().is_none(), "not the storage's fault");
        pg.observe::<()>(&Err(StoreError::Db(sqlx::Error::PoolTimedOut)));
        let fault = pg.health.fault().expect("degraded");
        pg.observe::<()>(&Err(StoreError::Db(sqlx::Error::PoolTimedOut)));
        assert_eq!(
            pg.health.fault().unwrap().since_ms,
            fault.since_ms,
            "since the first"
        );
        pg.observe(&Ok(()));
        assert!(pg.health.fault().is_none(), "writes again");
    }
}
