//! Every change to the store, each one job of the group-commit writer.

use crate::{rows::*, Store, StoreError};
use naga_core::{time::Millis, wire::CallbackEnvelope, TaskStatus};
use sqlx::SqliteConnection;

/// A batch to register (the seed's `create_task`).
#[derive(Debug, Clone)]
pub struct NewTask {
    pub id: String,
    pub kind: &'static str,
    pub session_id: String,
    pub analysis_session_id: Option<String>,
    pub query: Option<String>,
    pub callback_url: Option<String>,
    pub policy: &'static str,
    pub fingerprint: Option<String>,
    /// JSON of each call, in order.
    pub calls: Vec<String>,
    /// JSON of the answer to give for this request id, now and on every repeat.
    pub response: String,
    pub accepted_at: Millis,
    /// The node that accepted it holds its lease until `lease_until`.
    pub lease: Lease,
}

/// Who holds a task, and until when. A node renews the leases of every task
/// it holds; an expired lease lets another node (or the next run) take over.
#[derive(Debug, Clone)]
pub struct Lease {
    pub owner: String,
    pub until: Millis,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Inserted {
    New,
    /// The request id was known: the first answer, verbatim.
    Existing {
        response: String,
    },
    /// An identical batch (same session and fingerprint) is still active:
    /// its answer; nothing was stored.
    Duplicate {
        task_id: String,
        response: String,
    },
}

/// One step to record.
#[derive(Debug, Clone, Default)]
pub struct NewStep {
    pub task_id: String,
    pub call_idx: Option<i64>,
    pub purpose: Option<String>,
    pub content: Option<String>,
    pub output: Option<String>,
    pub analysis: Option<String>,
    pub success: bool,
    pub error: Option<String>,
    pub created_at: Millis,
}

/// The end of one call: its result, its step, and what memory learns.
#[derive(Debug, Clone)]
pub struct CallFinish {
    /// The lease holder; the write is refused when another holds the task.
    pub owner: String,
    pub idx: i64,
    pub status: &'static str,
    pub result: String,
    pub started_at: Millis,
    pub step: NewStep,
    /// `command …` text of the key fact and of the failed-attempt counter.
    pub command: String,
}

/// The end of a task, with its callback and summary in the same transaction.
#[derive(Debug, Clone)]
pub struct TaskFinish {
    pub task_id: String,
    /// The lease holder; a task held by another node is not ended here.
    pub owner: String,
    pub status: TaskStatus,
    pub error: Option<String>,
    pub finished_at: Millis,
    /// URL and envelope (its `sequence` is assigned here).
    pub callback: Option<(String, CallbackEnvelope)>,
    pub callback_id: String,
    /// (method, summary JSON)
    pub memory: Option<(String, String)>,
}

pub(crate) async fn touch_session(
    c: &mut SqliteConnection,
    session_id: &str,
    now: Millis,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO sessions (id, created_at, last_activity_at) VALUES (?1, ?2, ?2)
         ON CONFLICT (id) DO UPDATE SET last_activity_at = excluded.last_activity_at",
    )
    .bind(session_id)
    .bind(now)
    .execute(&mut *c)
    .await?;
    Ok(())
}

async fn insert_step(c: &mut SqliteConnection, step: &NewStep) -> Result<StepRow, StoreError> {
    let row: Option<(String, i64)> = sqlx::query_as(
        "UPDATE tasks SET steps_count = steps_count + 1 WHERE id = ?1
         RETURNING session_id, steps_count",
    )
    .bind(&step.task_id)
    .fetch_optional(&mut *c)
    .await?;
    let Some((session_id, step_no)) = row else {
        return Err(StoreError::Conflict(format!("no task `{}`", step.task_id)));
    };
    sqlx::query(
        "INSERT INTO steps (task_id, session_id, step_no, call_idx, purpose, content, output,
                            analysis, success, error, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .bind(&step.task_id)
    .bind(&session_id)
    .bind(step_no)
    .bind(step.call_idx)
    .bind(&step.purpose)
    .bind(&step.content)
    .bind(&step.output)
    .bind(&step.analysis)
    .bind(step.success)
    .bind(&step.error)
    .bind(step.created_at)
    .execute(&mut *c)
    .await?;
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

impl Store {
    /// Registers a batch and its calls, or answers the first registration of
    /// the same id. Also records the session and the analysis-session →
    /// session mapping; an analysis session claimed by another session is a
    /// conflict and stores nothing.
    pub async fn insert_task(&self, task: NewTask) -> Result<Inserted, StoreError> {
        self.writer
            .write(move |c| {
                Box::pin(async move {
                    let existing: Option<(String,)> =
                        sqlx::query_as("SELECT response FROM tasks WHERE id = ?1")
                            .bind(&task.id)
                            .fetch_optional(&mut *c)
                            .await?;
                    if let Some((response,)) = existing {
                        return Ok(Inserted::Existing { response });
                    }
                    if let Some(fp) = &task.fingerprint {
                        let active: Option<(String, String)> = sqlx::query_as(
                            "SELECT id, response FROM tasks
                             WHERE session_id = ?1 AND fingerprint = ?2 AND status IN ('queued', 'running')
                             ORDER BY seq LIMIT 1",
                        )
                        .bind(&task.session_id)
                        .bind(fp)
                        .fetch_optional(&mut *c)
                        .await?;
                        if let Some((task_id, response)) = active {
                            return Ok(Inserted::Duplicate { task_id, response });
                        }
                    }
                    touch_session(c, &task.session_id, task.accepted_at).await?;
                    if let Some(analysis) = &task.analysis_session_id {
                        let owner: (String,) = sqlx::query_as(
                            "INSERT INTO analysis_sessions (id, session_id, created_at)
                             VALUES (?1, ?2, ?3)
                             ON CONFLICT (id) DO UPDATE SET id = id
                             RETURNING session_id",
                        )
                        .bind(analysis)
                        .bind(&task.session_id)
                        .bind(task.accepted_at)
                        .fetch_one(&mut *c)
                        .await?;
                        if owner.0 != task.session_id {
                            return Err(StoreError::Conflict(format!(
                                "analysis_session_id `{analysis}` belongs to session `{}`, not `{}`",
                                owner.0, task.session_id
                            )));
                        }
                    }
                    sqlx::query(
                        "INSERT INTO tasks (id, kind, session_id, analysis_session_id, query,
                             callback_url, policy, fingerprint, status, calls_count, response,
                             accepted_at, lease_owner, lease_expires_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', ?9, ?10, ?11, ?12, ?13)",
                    )
                    .bind(&task.id)
                    .bind(task.kind)
                    .bind(&task.session_id)
                    .bind(&task.analysis_session_id)
                    .bind(&task.query)
                    .bind(&task.callback_url)
                    .bind(task.policy)
                    .bind(&task.fingerprint)
                    .bind(task.calls.len() as i64)
                    .bind(&task.response)
                    .bind(task.accepted_at)
                    .bind(&task.lease.owner)
                    .bind(task.lease.until)
                    .execute(&mut *c)
                    .await?;
                    for (idx, payload) in task.calls.iter().enumerate() {
                        sqlx::query("INSERT INTO calls (task_id, idx, payload) VALUES (?1, ?2, ?3)")
                            .bind(&task.id)
                            .bind(idx as i64)
                            .bind(payload)
                            .execute(&mut *c)
                            .await?;
                    }
                    Ok(Inserted::New)
                })
            })
            .await
    }

    /// Marks a task running. Returns false (and changes nothing) when it has
    /// ended, e.g. cancelled while it waited, or when `owner` no longer holds it.
    pub async fn start_task(
        &self,
        task_id: &str,
        owner: &str,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let (task_id, owner) = (task_id.to_owned(), owner.to_owned());
        self.writer
            .write(move |c| {
                Box::pin(async move {
                    let done = sqlx::query(
                        "UPDATE tasks SET status = 'running', started_at = COALESCE(started_at, ?2)
                         WHERE id = ?1 AND status IN ('queued', 'running') AND lease_owner = ?3",
                    )
                    .bind(&task_id)
                    .bind(now)
                    .bind(&owner)
                    .execute(&mut *c)
                    .await?;
                    Ok(done.rows_affected() == 1)
                })
            })
            .await
    }

    /// Extends every lease `owner` holds (its heartbeat). Returns how many.
    pub async fn renew_leases(&self, owner: &str, until: Millis) -> Result<u64, StoreError> {
        let owner = owner.to_owned();
        self.writer
            .write(move |c| {
                Box::pin(async move {
                    Ok(sqlx::query(
                        "UPDATE tasks SET lease_expires_at = ?2
                         WHERE lease_owner = ?1 AND status IN ('queued', 'running')",
                    )
                    .bind(&owner)
                    .bind(until)
                    .execute(&mut *c)
                    .await?
                    .rows_affected())
                })
            })
            .await
    }

    /// Takes over every unfinished task whose lease expired (or that has
    /// none), in acceptance order: what a restart or another node resumes.
    pub async fn claim_expired(
        &self,
        lease: Lease,
        now: Millis,
    ) -> Result<Vec<TaskRow>, StoreError> {
        self.writer
            .write(move |c| {
                Box::pin(async move {
                    let mut rows: Vec<TaskRow> = sqlx::query_as(
                        "UPDATE tasks SET lease_owner = ?1, lease_expires_at = ?2
                         WHERE status IN ('queued', 'running')
                           AND (lease_owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at < ?3)
                         RETURNING *",
                    )
                    .bind(&lease.owner)
                    .bind(lease.until)
                    .bind(now)
                    .fetch_all(&mut *c)
                    .await?;
                    rows.sort_by_key(|r| r.seq);
                    Ok(rows)
                })
            })
            .await
    }

    /// Lets go of every task `owner` holds, so that the next run or another
    /// node resumes them at once (graceful shutdown).
    pub async fn release_leases(&self, owner: &str) -> Result<u64, StoreError> {
        let owner = owner.to_owned();
        self.writer
            .write(move |c| {
                Box::pin(async move {
                    Ok(sqlx::query(
                        "UPDATE tasks SET lease_owner = NULL, lease_expires_at = NULL
                         WHERE lease_owner = ?1 AND status IN ('queued', 'running')",
                    )
                    .bind(&owner)
                    .execute(&mut *c)
                    .await?
                    .rows_affected())
                })
            })
            .await
    }

    /// Records the end of one call: its result, its step, a key fact
    /// `task:{id}:step:{n}` and, when it failed, the failed-attempt count.
    pub async fn finish_call(&self, finish: CallFinish) -> Result<StepRow, StoreError> {
        self.writer
            .write(move |c| {
                Box::pin(async move {
                    let f = finish;
                    ensure_held(c, &f.step.task_id, &f.owner).await?;
                    sqlx::query(
                        "UPDATE calls SET status = ?3, result = ?4, started_at = ?5, finished_at = ?6
                         WHERE task_id = ?1 AND idx = ?2",
                    )
                    .bind(&f.step.task_id)
                    .bind(f.idx)
                    .bind(f.status)
                    .bind(&f.result)
                    .bind(f.started_at)
                    .bind(f.step.created_at)
                    .execute(&mut *c)
                    .await?;
                    let step = insert_step(c, &f.step).await?;
                    record_memory(c, &step, &f.command).await?;
                    Ok(step)
                })
            })
            .await
    }

    /// Records a step reported through `POST /tasks/{id}/steps`.
    pub async fn add_step(&self, step: NewStep) -> Result<StepRow, StoreError> {
        self.writer
            .write(move |c| {
                Box::pin(async move {
                    let row = insert_step(c, &step).await?;
                    let command = row
                        .purpose
                        .clone()
                        .or(row.content.clone())
                        .unwrap_or_default();
                    record_memory(c, &row, &command).await?;
                    Ok(row)
                })
            })
            .await
    }

    /// Ends a task, and in the same transaction writes its callback to the
    /// outbox and its summary to memory. A task ends once: when it had
    /// already ended this changes nothing.
    pub async fn finish_task(&self, finish: TaskFinish) -> Result<Finished, StoreError> {
        self.writer
            .write(move |c| {
                Box::pin(async move {
                    let f = finish;
                    let ended = sqlx::query(
                        "UPDATE tasks SET status = ?2, error = ?3, finished_at = ?4,
                             lease_owner = NULL, lease_expires_at = NULL
                         WHERE id = ?1 AND status IN ('queued', 'running') AND lease_owner = ?5",
                    )
                    .bind(&f.task_id)
                    .bind(f.status.as_str())
                    .bind(&f.error)
                    .bind(f.finished_at)
                    .bind(&f.owner)
                    .execute(&mut *c)
                    .await?;
                    if ended.rows_affected() == 0 {
                        return Ok(Finished::AlreadyEnded);
                    }
                    sqlx::query(
                        "UPDATE calls SET status = 'skipped' WHERE task_id = ?1 AND status = 'pending'",
                    )
                    .bind(&f.task_id)
                    .execute(&mut *c)
                    .await?;
                    if let Some((method, summary)) = &f.memory {
                        sqlx::query(
                            "INSERT INTO compressed_memories (session_id, task_id, method, summary, created_at)
                             SELECT session_id, id, ?2, ?3, ?4 FROM tasks WHERE id = ?1",
                        )
                        .bind(&f.task_id)
                        .bind(method)
                        .bind(summary)
                        .bind(f.finished_at)
                        .execute(&mut *c)
                        .await?;
                    }
                    let Some((url, mut envelope)) = f.callback else {
                        return Ok(Finished::Ended { callback: None });
                    };
                    let (seq,): (i64,) =
                        sqlx::query_as("SELECT COALESCE(MAX(seq), 0) + 1 FROM callbacks")
                            .fetch_one(&mut *c)
                            .await?;
                    envelope.sequence = seq;
                    let body = serde_json::to_string(&envelope)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    let row = CallbackRow {
                        seq,
                        id: f.callback_id,
                        task_id: f.task_id,
                        url,
                        body,
                        status: "pending".into(),
                        attempts: 0,
                        next_attempt_at: f.finished_at,
                        last_error: None,
                        created_at: f.finished_at,
                        delivered_at: None,
                    };
                    sqlx::query(
                        "INSERT INTO callbacks (seq, id, task_id, url, body, status, attempts,
                             next_attempt_at, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6)",
                    )
                    .bind(row.seq)
                    .bind(&row.id)
                    .bind(&row.task_id)
                    .bind(&row.url)
                    .bind(&row.body)
                    .bind(row.created_at)
                    .execute(&mut *c)
                    .await?;
                    Ok(Finished::Ended { callback: Some(row) })
                })
            })
            .await
    }

    /// Adds a summary of a task to memory (e.g. one written by an LLM).
    pub async fn add_compressed_memory(
        &self,
        task_id: &str,
        method: &str,
        summary: String,
        now: Millis,
    ) -> Result<(), StoreError> {
        let (task_id, method) = (task_id.to_owned(), method.to_owned());
        self.writer
            .write(move |c| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO compressed_memories (session_id, task_id, method, summary, created_at)
                         SELECT session_id, id, ?2, ?3, ?4 FROM tasks WHERE id = ?1",
                    )
                    .bind(&task_id)
                    .bind(&method)
                    .bind(&summary)
                    .bind(now)
                    .execute(&mut *c)
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    /// Records one delivery attempt of a callback.
    pub async fn record_delivery(
        &self,
        id: &str,
        outcome: DeliveryOutcome,
        now: Millis,
    ) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.writer
            .write(move |c| {
                Box::pin(async move {
                    let (status, error, next, delivered) = match outcome {
                        DeliveryOutcome::Delivered => ("delivered", None, now, Some(now)),
                        DeliveryOutcome::Retry {
                            error,
                            next_attempt_at,
                        } => ("pending", Some(error), next_attempt_at, None),
                        DeliveryOutcome::Dead { error } => ("dead", Some(error), now, None),
                    };
                    sqlx::query(
                        "UPDATE callbacks SET status = ?2, attempts = attempts + 1,
                             last_error = COALESCE(?3, last_error), next_attempt_at = ?4,
                             delivered_at = COALESCE(?5, delivered_at)
                         WHERE id = ?1",
                    )
                    .bind(&id)
                    .bind(status)
                    .bind(error)
                    .bind(next)
                    .bind(delivered)
                    .execute(&mut *c)
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    /// Puts a callback back in the outbox to be delivered again (replay).
    pub async fn requeue_callback(
        &self,
        id: &str,
        now: Millis,
    ) -> Result<Option<CallbackRow>, StoreError> {
        let id = id.to_owned();
        self.writer
            .write(move |c| {
                Box::pin(async move {
                    let row: Option<CallbackRow> = sqlx::query_as(
                        "UPDATE callbacks SET status = 'pending', next_attempt_at = ?2
                         WHERE id = ?1 RETURNING *",
                    )
                    .bind(&id)
                    .bind(now)
                    .fetch_optional(&mut *c)
                    .await?;
                    Ok(row)
                })
            })
            .await
    }

    /// Forgets memory (key facts, failed attempts, summaries) of a scope.
    /// Tasks and their steps stay: they are history, not memory.
    pub async fn clear_memory(&self, scope: crate::MemoryScope) -> Result<u64, StoreError> {
        self.writer
            .write(move |c| {
                Box::pin(async move {
                    use crate::MemoryScope::*;
                    let (filter, value) = match &scope {
                        Task(id) => ("task_id = ?1", Some(id.as_str())),
                        Session(id) => ("session_id = ?1", Some(id.as_str())),
                        Global => ("?1 IS NULL", None),
                    };
                    let mut removed = 0;
                    for table in ["key_facts", "compressed_memories"] {
                        removed += sqlx::query(&format!("DELETE FROM {table} WHERE {filter}"))
                            .bind(value)
                            .execute(&mut *c)
                            .await?
                            .rows_affected();
                    }
                    let failed_filter = match &scope {
                        Task(_) => "last_task_id = ?1",
                        _ => filter,
                    };
                    removed += sqlx::query(&format!(
                        "DELETE FROM failed_attempts WHERE {failed_filter}"
                    ))
                    .bind(value)
                    .execute(&mut *c)
                    .await?
                    .rows_affected();
                    Ok(removed)
                })
            })
            .await
    }
}

#[derive(Debug, Clone)]
pub enum Finished {
    Ended { callback: Option<CallbackRow> },
    AlreadyEnded,
}

/// Fencing: refuses a write for a task whose lease `owner` lost.
async fn ensure_held(
    c: &mut SqliteConnection,
    task_id: &str,
    owner: &str,
) -> Result<(), StoreError> {
    let held: Option<(i64,)> = sqlx::query_as(
        "SELECT 1 FROM tasks WHERE id = ?1 AND lease_owner = ?2 AND status IN ('queued', 'running')",
    )
    .bind(task_id)
    .bind(owner)
    .fetch_optional(&mut *c)
    .await?;
    match held {
        Some(_) => Ok(()),
        None => Err(StoreError::LeaseLost(task_id.to_owned())),
    }
}

/// What one delivery attempt of a callback came to.
#[derive(Debug, Clone)]
pub enum DeliveryOutcome {
    Delivered,
    Retry {
        error: String,
        next_attempt_at: Millis,
    },
    Dead {
        error: String,
    },
}

async fn record_memory(
    c: &mut SqliteConnection,
    step: &StepRow,
    command: &str,
) -> Result<(), StoreError> {
    let result = match (&step.output, &step.error) {
        (_, Some(e)) if !step.success => format!("failed: {e}"),
        (Some(o), _) => o.clone(),
        (None, _) => String::new(),
    };
    sqlx::query(
        "INSERT INTO key_facts (key, session_id, task_id, value, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(format!("task:{}:step:{}", step.task_id, step.step_no))
    .bind(&step.session_id)
    .bind(&step.task_id)
    .bind(format!(
        "command {command}, result {}",
        truncate(&result, 2000)
    ))
    .bind(step.created_at)
    .execute(&mut *c)
    .await?;
    if !step.success {
        sqlx::query(
            "INSERT INTO failed_attempts (session_id, command, count, last_error, last_task_id, updated_at)
             VALUES (?1, ?2, 1, ?3, ?4, ?5)
             ON CONFLICT (session_id, command) DO UPDATE SET count = count + 1,
                 last_error = excluded.last_error, last_task_id = excluded.last_task_id,
                 updated_at = excluded.updated_at",
        )
        .bind(&step.session_id)
        .bind(command)
        .bind(&step.error)
        .bind(&step.task_id)
        .bind(step.created_at)
        .execute(&mut *c)
        .await?;
    }
    Ok(())
}

/// At most `max` bytes of `s`, cut at a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
