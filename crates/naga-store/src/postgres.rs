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
//! - two nodes accepting the same request id at once: the unique key lets
//!   one in, the other finds its task when it tries again.

use crate::{
    conversations::{DispatchRow, InboxRow, NewMessage, NewNotification},
    reads::session_task_seqs,
    rows::*,
    writes::{
        CallFinish, DeliveryOutcome, Finished, FirstAnswer, Inserted, Lease, NewStep, NewTask,
        TaskFinish, OUTBOXES,
    },
    MemoryScope, StoreError,
};
use naga_core::time::Millis;
use sqlx::{postgres::PgRow, FromRow, PgPool, Postgres, Row, Transaction};

type Tx = Transaction<'static, Postgres>;

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

fn is_unique_violation(e: &StoreError) -> bool {
    matches!(e, StoreError::Db(sqlx::Error::Database(d)) if d.is_unique_violation())
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

pub(crate) async fn insert_task(pool: &PgPool, task: &NewTask) -> Result<Inserted, StoreError> {
    // A unique key refused the row: another node accepted the same request
    // id (or created the same analysis session) at the same moment; the
    // second try sees what it committed.
    match try_insert_task(pool, task).await {
        Err(e) if is_unique_violation(&e) => try_insert_task(pool, task).await,
        other => other,
    }
}

async fn try_insert_task(pool: &PgPool, task: &NewTask) -> Result<Inserted, StoreError> {
    let mut tx = pool.begin().await?;
    let existing = sqlx::query(&format!("{FIRST_ANSWER} WHERE id = $1"))
        .bind(&task.id)
        .fetch_optional(&mut *tx)
        .await?;
    if let Some(row) = existing {
        let first = first_answer(&row)?;
        let same: bool = sqlx::query_scalar(
            "SELECT kind = $2 AND session_id = $3 AND calls = $4 FROM tasks WHERE id = $1",
        )
        .bind(&task.id)
        .bind(task.kind)
        .bind(&task.session_id)
        .bind(&task.calls)
        .fetch_one(&mut *tx)
        .await?;
        return Ok(match same {
            true => Inserted::Existing(first),
            false => Inserted::Reused(first),
        });
    }
    // The session's row, locked: its chain grows one task at a time.
    touch_session(&mut tx, &task.session_id, task.accepted_at).await?;
    let prev_seq: Option<i64> =
        sqlx::query_scalar("SELECT last_task_seq FROM sessions WHERE id = $1 FOR UPDATE")
            .bind(&task.session_id)
            .fetch_one(&mut *tx)
            .await?;
    if let Some(fp) = &task.fingerprint {
        let active = sqlx::query(&format!(
            "{FIRST_ANSWER} WHERE session_id = $1 AND fingerprint = $2
             AND status IN ('queued', 'running') ORDER BY seq LIMIT 1"
        ))
        .bind(&task.session_id)
        .bind(fp)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = active {
            return Ok(Inserted::Duplicate(first_answer(&row)?));
        }
    }
    if let Some(analysis) = &task.analysis_session_id {
        sqlx::query(
            "INSERT INTO analysis_sessions (id, session_id, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(analysis)
        .bind(&task.session_id)
        .bind(task.accepted_at)
        .execute(&mut *tx)
        .await?;
        let owner: String =
            sqlx::query_scalar("SELECT session_id FROM analysis_sessions WHERE id = $1")
                .bind(analysis)
                .fetch_one(&mut *tx)
                .await?;
        if owner != task.session_id {
            return Err(StoreError::Conflict(format!(
                "analysis_session_id `{analysis}` belongs to session `{owner}`, not `{}`",
                task.session_id
            )));
        }
    }
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO tasks (id, kind, session_id, analysis_session_id, query, callback_url, policy,
             fingerprint, status, calls_count, calls, response, accepted_at, started_at,
             lease_owner, lease_expires_at, prev_seq)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
         RETURNING seq",
    )
    .bind(&task.id)
    .bind(task.kind)
    .bind(&task.session_id)
    .bind(&task.analysis_session_id)
    .bind(&task.query)
    .bind(&task.callback_url)
    .bind(task.policy)
    .bind(&task.fingerprint)
    .bind(if task.started { "running" } else { "queued" })
    .bind(task.calls_count as i64)
    .bind(&task.calls)
    .bind(&task.response)
    .bind(task.accepted_at)
    .bind(task.started.then_some(task.accepted_at))
    .bind(&task.lease.owner)
    .bind(task.lease.until)
    .bind(prev_seq)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE sessions SET last_task_seq = $2, task_count = task_count + 1 WHERE id = $1",
    )
    .bind(&task.session_id)
    .bind(seq)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Inserted::New { seq })
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
) -> Result<Vec<TaskRow>, StoreError> {
    let mut rows: Vec<TaskRow> = sqlx::query_as(
        "WITH claimed AS (
             UPDATE tasks SET lease_owner = $1, lease_expires_at = $2
             WHERE seq IN (SELECT seq FROM tasks
                           WHERE status IN ('queued', 'running')
                             AND (lease_owner IS NULL OR lease_expires_at IS NULL
                                  OR lease_expires_at < $3 OR lease_owner = $4)
                           FOR UPDATE SKIP LOCKED)
             RETURNING seq)
         SELECT t.* FROM task_rows t JOIN claimed c ON c.seq = t.seq ORDER BY t.seq",
    )
    .bind(&lease.owner)
    .bind(lease.until)
    .bind(now)
    .bind(own)
    .fetch_all(pool)
    .await?;
    rows.sort_by_key(|r| r.seq);
    Ok(rows)
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

/// Inserts a step as number (last + 1) of task `task_seq`, whose row the
/// transaction holds locked.
async fn insert_step(
    tx: &mut Tx,
    task_seq: i64,
    session_id: &str,
    step: &NewStep,
    end: Option<(&str, Millis)>,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO steps (task_seq, step_no, task_id, session_id, call_idx, purpose, content,
                            output, analysis, success, error, created_at, result, started_at)
         VALUES ($1, (SELECT COALESCE(MAX(step_no), 0) + 1 FROM steps WHERE task_seq = $1),
                 $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         RETURNING step_no",
    )
    .bind(task_seq)
    .bind(&step.task_id)
    .bind(session_id)
    .bind(step.call_idx)
    .bind(&step.purpose)
    .bind(&step.content)
    .bind(&step.output)
    .bind(&step.analysis)
    .bind(step.success)
    .bind(&step.error)
    .bind(step.created_at)
    .bind(end.map(|e| e.0))
    .bind(end.map(|e| e.1))
    .fetch_one(&mut **tx)
    .await?)
}

async fn count_failure(tx: &mut Tx, session_id: &str, step: &NewStep) -> Result<(), StoreError> {
    let command = step
        .purpose
        .as_deref()
        .or(step.content.as_deref())
        .unwrap_or_default();
    sqlx::query(
        "INSERT INTO failed_attempts (session_id, command, count, last_error, last_task_id, updated_at)
         VALUES ($1, $2, 1, $3, $4, $5)
         ON CONFLICT (session_id, command) DO UPDATE SET count = failed_attempts.count + 1,
             last_error = EXCLUDED.last_error, last_task_id = EXCLUDED.last_task_id,
             updated_at = EXCLUDED.updated_at",
    )
    .bind(session_id)
    .bind(command)
    .bind(&step.error)
    .bind(&step.task_id)
    .bind(step.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The end of one call, in `tx`: refused ([`StoreError::LeaseLost`]) when
/// `owner` no longer holds the unfinished task.
async fn record_call(tx: &mut Tx, f: &CallFinish) -> Result<(), StoreError> {
    let session_id: Option<String> = sqlx::query_scalar(
        "SELECT session_id FROM tasks
         WHERE seq = $1 AND id = $2 AND lease_owner = $3 AND status IN ('queued', 'running')
         FOR UPDATE",
    )
    .bind(f.task_seq)
    .bind(&f.step.task_id)
    .bind(&f.owner)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(session_id) = session_id else {
        return Err(StoreError::LeaseLost(f.step.task_id.clone()));
    };
    insert_step(
        tx,
        f.task_seq,
        &session_id,
        &f.step,
        Some((&f.result, f.started_at)),
    )
    .await?;
    if !f.step.success {
        count_failure(tx, &session_id, &f.step).await?;
    }
    Ok(())
}

pub(crate) async fn finish_call(pool: &PgPool, f: &CallFinish) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    record_call(&mut tx, f).await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn add_step(pool: &PgPool, step: &NewStep) -> Result<StepRow, StoreError> {
    let mut tx = pool.begin().await?;
    let target: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, session_id FROM tasks WHERE id = $1 FOR UPDATE")
            .bind(&step.task_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((task_seq, session_id)) = target else {
        return Err(StoreError::Conflict(format!("no task `{}`", step.task_id)));
    };
    let step_no = insert_step(&mut tx, task_seq, &session_id, step, None).await?;
    if !step.success {
        count_failure(&mut tx, &session_id, step).await?;
    }
    tx.commit().await?;
    Ok(StepRow {
        task_id: step.task_id.clone(),
        session_id,
        step_no,
        call_idx: step.call_idx,
        purpose: step.purpose.clone(),
        content: step.content.clone(),
        output: step.output.clone(),
        analysis: step.analysis.clone(),
        success: step.success,
        error: step.error.clone(),
        created_at: step.created_at,
    })
}

pub(crate) async fn finish_task(pool: &PgPool, f: &TaskFinish) -> Result<Finished, StoreError> {
    let mut tx = pool.begin().await?;
    if let Some(call) = &f.last_call {
        record_call(&mut tx, call).await?;
    }
    let ended = sqlx::query(
        "UPDATE tasks SET status = $2, error = $3, finished_at = $4, summary = $6,
             lease_owner = NULL, lease_expires_at = NULL
         WHERE seq = $7 AND id = $1 AND status IN ('queued', 'running') AND lease_owner = $5",
    )
    .bind(&f.task_id)
    .bind(f.status.as_str())
    .bind(&f.error)
    .bind(f.finished_at)
    .bind(&f.owner)
    .bind(&f.summary)
    .bind(f.task_seq)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if ended == 0 {
        return Ok(Finished::AlreadyEnded);
    }
    let callback = match &f.callback {
        None => None,
        Some((url, head)) => {
            if !head.starts_with('{') || !head.ends_with("\"sequence\":") {
                return Err(StoreError::Corrupt(format!(
                    "callback of `{}`: not an envelope's JSON up to its sequence",
                    f.task_id
                )));
            }
            let seq: i64 = sqlx::query_scalar("SELECT nextval('callbacks_seq_seq')")
                .fetch_one(&mut *tx)
                .await?;
            let body = format!("{head}{seq}}}");
            sqlx::query(
                "INSERT INTO callbacks (seq, id, task_id, url, body, status, attempts,
                                        next_attempt_at, created_at, lease_owner, lease_expires_at)
                 VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6, $7, $8)",
            )
            .bind(seq)
            .bind(&f.callback_id)
            .bind(&f.task_id)
            .bind(url)
            .bind(&body)
            .bind(f.finished_at)
            .bind(&f.owner)
            .bind(f.lease_until)
            .execute(&mut *tx)
            .await?;
            Some(CallbackRow {
                outbox: Outbox::Callbacks,
                seq,
                id: f.callback_id.clone(),
                task_id: f.task_id.clone(),
                url: url.clone(),
                body,
                status: "pending".into(),
                attempts: 0,
                next_attempt_at: f.finished_at,
                last_error: None,
                created_at: f.finished_at,
                delivered_at: None,
            })
        }
    };
    tx.commit().await?;
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

pub(crate) async fn record_deliveries_in(
    pool: &PgPool,
    outbox: Outbox,
    attempts: &[(i64, DeliveryOutcome, Millis)],
) -> Result<(), StoreError> {
    let table = match outbox {
        Outbox::Callbacks => "callbacks",
        Outbox::Notifications => "notifications",
    };
    let sql = format!(
        "UPDATE {table} SET status = $2, attempts = attempts + 1,
             last_error = COALESCE($3, last_error), next_attempt_at = $4,
             delivered_at = COALESCE($5, delivered_at)
         WHERE seq = $1"
    );
    let mut tx = pool.begin().await?;
    for (seq, outcome, now) in attempts {
        let now = *now;
        let (status, error, next, delivered) = match outcome {
            DeliveryOutcome::Delivered => ("delivered", None, now, Some(now)),
            DeliveryOutcome::Retry {
                error,
                next_attempt_at,
            } => ("pending", Some(error), *next_attempt_at, None),
            DeliveryOutcome::Dead { error } => ("dead", Some(error), now, None),
        };
        sqlx::query(&sql)
            .bind(seq)
            .bind(status)
            .bind(error)
            .bind(next)
            .bind(delivered)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn requeue_callback(
    pool: &PgPool,
    id: &str,
    now: Millis,
) -> Result<Option<CallbackRow>, StoreError> {
    Ok(sqlx::query_as(
        "UPDATE callbacks SET status = 'pending', attempts = 0, next_attempt_at = $2
         WHERE id = $1 RETURNING *",
    )
    .bind(id)
    .bind(now)
    .fetch_optional(pool)
    .await?)
}

pub(crate) async fn redrive_dead(
    pool: &PgPool,
    since: Millis,
    limit: i64,
    now: Millis,
) -> Result<Vec<CallbackRow>, StoreError> {
    let mut rows: Vec<CallbackRow> = sqlx::query_as(
        "UPDATE callbacks SET status = 'pending', attempts = 0, next_attempt_at = $3
         WHERE seq IN (SELECT seq FROM callbacks
                       WHERE status = 'dead' AND next_attempt_at >= $1
                       ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING *",
    )
    .bind(since)
    .bind(limit)
    .bind(now)
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
