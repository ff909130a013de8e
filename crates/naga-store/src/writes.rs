//! Every change to the store, each one job of the group-commit writer.

use crate::sqlite::stmts::Db;
use crate::{commands::*, rows::*, sqlite_or, Store, StoreError};
use naga_core::time::Millis;
use rusqlite::{params, OptionalExtension};
use std::sync::Arc;

/// The columns of `FirstAnswer`, in its order (a macro, for `concat!`).
macro_rules! first_answer_columns {
    () => {
        "response, id, kind, session_id, analysis_session_id, calls_count, accepted_at"
    };
}

fn first_answer(r: &rusqlite::Row<'_>) -> rusqlite::Result<FirstAnswer> {
    Ok(FirstAnswer {
        response: r.get(0)?,
        id: r.get(1)?,
        kind: r.get(2)?,
        session_id: r.get(3)?,
        analysis_session_id: r.get(4)?,
        calls_count: r.get(5)?,
        accepted_at: r.get(6)?,
    })
}

pub(crate) fn touch_session(c: &Db, session_id: &str, now: Millis) -> Result<(), StoreError> {
    c.cached(
        "INSERT INTO sessions (id, created_at, last_activity_at) VALUES (?1, ?2, ?2)
         ON CONFLICT (id) DO UPDATE SET last_activity_at = excluded.last_activity_at",
    )?
    .execute(params![session_id, now])?;
    Ok(())
}

/// Where a reported step goes: its task's seq and session, and the step's
/// number (counted from the steps themselves: the task's row is not
/// rewritten per step). A call's end finds its task by `seq` instead
/// (`record_call`).
fn step_target(c: &Db, task_id: &str) -> Result<Option<(i64, String, i64)>, StoreError> {
    Ok(c.cached(
        "SELECT seq, session_id,
                (SELECT COALESCE(MAX(step_no), 0) + 1 FROM steps WHERE task_seq = seq)
         FROM tasks WHERE id = ?1",
    )?
    .query_row(params![task_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
    .optional()?)
}

/// A step that ends no call (reported, or noted by an agent along the way).
/// (Two plain statements, a read and an INSERT: an INSERT … SELECT reading
/// its own table, or RETURNING, would build a temporary b-tree per step.)
fn insert_step(c: &Db, step: &NewStep) -> Result<StepRow, StoreError> {
    let Some((task_seq, session_id, step_no)) = step_target(c, &step.task_id)? else {
        return Err(StoreError::Conflict(format!("no task `{}`", step.task_id)));
    };
    c.cached(
        "INSERT INTO steps (task_seq, task_id, session_id, step_no, call_idx, purpose, content,
                            output, analysis, success, error, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        task_seq,
        step.task_id,
        session_id,
        step_no,
        step.call_idx,
        step.purpose,
        step.content,
        step.output,
        step.analysis,
        step.success,
        step.error,
        step.created_at,
    ])?;
    Ok(step.row(session_id, step_no))
}

/// Memory learns from a failed step: the command's failed-attempt count.
/// (Its key fact is read off the steps by the `key_facts` view.)
fn count_failure(
    c: &Db,
    session_id: &str,
    command: &str,
    error: Option<&str>,
    task_id: &str,
    at: Millis,
) -> Result<(), StoreError> {
    c.cached(
        "INSERT INTO failed_attempts (session_id, command, count, last_error, last_task_id, updated_at)
         VALUES (?1, ?2, 1, ?3, ?4, ?5)
         ON CONFLICT (session_id, command) DO UPDATE SET count = count + 1,
             last_error = excluded.last_error, last_task_id = excluded.last_task_id,
             updated_at = excluded.updated_at",
    )?
    .execute(params![session_id, command, error, task_id, at])?;
    Ok(())
}

/// Records that the task's analysis session belongs to its session, or
/// refuses it when it belongs to another. Known and committed: nothing to
/// read (the task's foreign key still checks the row). Else read, then
/// insert when new (an upsert that "sets" the key would count as a key
/// change and make SQLite check every task referencing it); the mapping is
/// returned, to be known once the commit holds it.
fn claim_analysis(
    c: &Db,
    task: &NewTask,
    accepted_at: Millis,
    known: &AnalysisOwners,
) -> Result<Option<(String, String)>, StoreError> {
    let Some(analysis) = &task.analysis_session_id else {
        return Ok(None);
    };
    let owner = match known.owner(analysis, &task.session_id) {
        Some(Ok(())) => return Ok(None),
        Some(Err(owner)) => Some(owner),
        None => c
            .cached("SELECT session_id FROM analysis_sessions WHERE id = ?1")?
            .query_row(params![analysis], |r| r.get::<_, String>(0))
            .optional()?,
    };
    match owner {
        None => {
            c.cached(
                "INSERT INTO analysis_sessions (id, session_id, created_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![analysis, task.session_id, accepted_at])?;
        }
        Some(owner) if owner != task.session_id => {
            return Err(StoreError::Conflict(format!(
                "analysis_session_id `{analysis}` belongs to session `{owner}`, not `{}`",
                task.session_id
            )));
        }
        Some(_) => {}
    }
    Ok(Some((analysis.clone(), task.session_id.clone())))
}

/// The task, and the analysis-session mapping its commit makes known.
type TaskInserted = (Inserted, Option<(String, String)>);

/// `stamp`: the task's `(accepted_at, lease until)` as stored (see
/// [`NewTask::clock`]).
fn insert_task(
    c: &Db,
    task: &NewTask,
    stamp: (Millis, Millis),
    known: &AnalysisOwners,
) -> Result<TaskInserted, StoreError> {
    let (accepted_at, lease_until) = stamp;
    let existing = c
        .cached(concat!(
            "SELECT ",
            first_answer_columns!(),
            " FROM tasks WHERE id = ?1"
        ))?
        .query_row(params![task.id], first_answer)
        .optional()?;
    if let Some(first) = existing {
        let stored: StoredBatch = c
            .cached(concat!(
                "SELECT ",
                stored_batch_columns!(),
                " FROM tasks WHERE id = ?1"
            ))?
            .query_row(params![task.id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?;
        return Ok(match same_batch(&stored, task) {
            true => (Inserted::Existing(first), None),
            false => (Inserted::Reused(first), None),
        });
    }
    if let Some(fp) = &task.fingerprint {
        let active = c
            .cached(concat!(
                "SELECT ",
                first_answer_columns!(),
                " FROM tasks
                 WHERE session_id = ?1 AND fingerprint = ?2 AND status IN ('queued', 'running')
                 ORDER BY seq LIMIT 1"
            ))?
            .query_row(params![task.session_id, fp], first_answer)
            .optional()?;
        if let Some(first) = active {
            return Ok((Inserted::Duplicate(first), None));
        }
    }
    // The session exists before its task (foreign key); the task joins the
    // end of its session's chain, and the session's row then points at it
    // (one write of that row, found by rowid, which also counts the task
    // and its activity).
    let session: Option<(i64, Option<i64>)> = c
        .cached("SELECT rowid, last_task_seq FROM sessions WHERE id = ?1")?
        .query_row(params![task.session_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (session_row, prev_seq) = match session {
        Some(found) => found,
        None => {
            c.cached(
                "INSERT INTO sessions (id, created_at, last_activity_at) VALUES (?1, ?2, ?2)",
            )?
            .execute(params![task.session_id, accepted_at])?;
            (c.last_insert_rowid(), None)
        }
    };
    let learned = claim_analysis(c, task, accepted_at, known)?;
    // The task's texts are bound in place (`execute_borrowing`).
    c.execute_borrowing(
        "INSERT INTO tasks (id, kind, session_id, analysis_session_id, query, callback_url, policy,
             fingerprint, status, calls_count, calls, response, accepted_at, started_at,
             lease_owner, lease_expires_at, prev_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        &[
            task.id.as_str().into(),
            task.kind.as_str().into(),
            task.session_id.as_str().into(),
            task.analysis_session_id.as_deref().into(),
            task.query.as_deref().into(),
            task.callback_url.as_deref().into(),
            task.policy.as_str().into(),
            task.fingerprint.as_deref().into(),
            if task.started { "running" } else { "queued" }.into(),
            (task.calls_count as i64).into(),
            task.calls.as_str().into(),
            task.response.as_str().into(),
            accepted_at.into(),
            task.started.then_some(accepted_at).into(),
            task.lease.owner.as_str().into(),
            lease_until.into(),
            prev_seq.into(),
        ],
    )?;
    let seq = c.last_insert_rowid();
    c.cached(
        "UPDATE sessions SET last_task_seq = ?2, task_count = task_count + 1, last_activity_at = ?3
         WHERE rowid = ?1",
    )?
    .execute(params![session_row, seq, accepted_at])?;
    Ok((
        Inserted::New {
            seq,
            started: task.started,
            accepted_at,
        },
        learned,
    ))
}

/// Records the end of one call: the step that carries its outcome (its key
/// fact is read off the step), and a failed-attempt count when it failed.
/// Refused when `owner` no longer holds the unfinished task (fencing).
///
/// One statement: the step's number comes from its task's steps, its
/// session from the task row, addressed by `seq` (the table's own key) and
/// read only while `owner` holds the task unfinished; otherwise the session
/// is NULL and the column's NOT NULL refuses the row. (A scalar subquery in
/// VALUES, unlike INSERT … SELECT from the same table, needs no temporary
/// b-tree.)
fn record_call(c: &Db, f: &CallFinish) -> Result<(), StoreError> {
    let step = &f.step;
    // The step's texts are bound in place (`execute_borrowing`).
    let inserted = c.execute_borrowing(
        "INSERT INTO steps (task_seq, step_no, task_id, session_id, call_idx, purpose, content,
                            output, analysis, success, error, created_at, result, started_at)
         VALUES (?1, (SELECT COALESCE(MAX(step_no), 0) + 1 FROM steps WHERE task_seq = ?1), ?2,
                 (SELECT session_id FROM tasks
                  WHERE seq = ?1 AND id = ?2 AND lease_owner = ?3
                    AND status IN ('queued', 'running')),
                 ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        &[
            f.task_seq.into(),
            step.task_id.as_str().into(),
            f.owner.as_str().into(),
            step.call_idx.into(),
            step.purpose.as_deref().into(),
            step.content.as_deref().into(),
            step.output.as_deref().into(),
            step.analysis.as_deref().into(),
            i64::from(step.success).into(),
            step.error.as_deref().into(),
            step.created_at.into(),
            f.result.as_str().into(),
            f.started_at.into(),
        ],
    );
    match inserted {
        Ok(_) => {}
        Err(rusqlite::Error::SqliteFailure(e, Some(m)))
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_NOTNULL
                && m.contains("steps.session_id") =>
        {
            return Err(StoreError::LeaseLost(step.task_id.clone()));
        }
        Err(e) => return Err(e.into()),
    }
    if !step.success {
        let session_id: String = c
            .cached("SELECT session_id FROM tasks WHERE seq = ?1")?
            .query_row(params![f.task_seq], |r| r.get(0))?;
        let error = step.error.as_deref();
        count_failure(
            c,
            &session_id,
            step.command(),
            error,
            &step.task_id,
            step.created_at,
        )?;
    }
    Ok(())
}

fn finish_task(c: &Db, f: &TaskFinish) -> Result<Finished, StoreError> {
    if let Some(call) = &f.last_call {
        record_call(c, call)?;
    }
    let ended = c.execute_borrowing(
        "UPDATE tasks SET status = ?2, error = ?3, finished_at = ?4, summary = ?6,
             lease_owner = NULL, lease_expires_at = NULL
         WHERE seq = ?7 AND id = ?1 AND status IN ('queued', 'running') AND lease_owner = ?5",
        &[
            f.task_id.as_str().into(),
            f.status.as_str().into(),
            f.error.as_deref().into(),
            f.finished_at.into(),
            f.owner.as_str().into(),
            f.summary.as_deref().into(),
            f.task_seq.into(),
        ],
    )?;
    if ended == 0 {
        return Ok(Finished::AlreadyEnded);
    }
    let Some((url, head)) = &f.callback else {
        return Ok(Finished::Ended { callback: None });
    };
    if !head.starts_with('{') || !head.ends_with("\"sequence\":") {
        // Never a body a receiver could not parse.
        return Err(StoreError::Corrupt(format!(
            "callback of `{}`: not an envelope's JSON up to its sequence",
            f.task_id
        )));
    }
    let seq: i64 = c
        .cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM callbacks")?
        .query_row([], |r| r.get(0))?;
    let body = format!("{head}{seq}}}");
    c.execute_borrowing(
        "INSERT INTO callbacks (seq, id, task_id, url, body, status, attempts, next_attempt_at,
                                created_at, lease_owner, lease_expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6, ?7, ?8)",
        &[
            seq.into(),
            f.callback_id.as_str().into(),
            f.task_id.as_str().into(),
            url.as_str().into(),
            body.as_str().into(),
            f.finished_at.into(),
            f.owner.as_str().into(),
            f.lease_until.into(),
        ],
    )?;
    Ok(Finished::Ended {
        callback: Some(f.pending_callback(url, seq, body)),
    })
}

fn add_compressed(
    c: &Db,
    task_id: &str,
    method: &str,
    summary: &str,
    now: Millis,
) -> Result<(), StoreError> {
    c.cached(
        "INSERT INTO compressed_memories (session_id, task_id, method, summary, created_at)
         SELECT session_id, id, ?2, ?3, ?4 FROM tasks WHERE id = ?1",
    )?
    .execute(params![task_id, method, summary, now])?;
    Ok(())
}

impl Store {
    /// Registers a batch and its calls, or answers the first registration of
    /// the same id, or (with a fingerprint) the identical batch still active.
    /// Also records the session and the analysis-session → session mapping;
    /// an analysis session claimed by another session is a conflict and
    /// stores nothing.
    pub async fn insert_task(&self, mut task: NewTask) -> Result<Inserted, StoreError> {
        // (On SQLite the task is stamped by the writer, as it is written.)
        let (writer, analysis_owners) =
            sqlite_or!(self, |pg| crate::postgres::insert_task(pg, &mut task));
        let known = analysis_owners.clone();
        let (inserted, learned) = writer
            // (Stamped as written: the time of this group commit.)
            .write(move |c| insert_task(c, &task, task.stamp(), &known))
            .await?;
        if let Some((analysis, session)) = learned {
            analysis_owners.learn(analysis, session);
        }
        Ok(inserted)
    }

    /// Marks a task running. Returns false (and changes nothing) when it has
    /// ended, e.g. cancelled while it waited, or when `owner` no longer holds it.
    pub async fn start_task(
        &self,
        task_id: &str,
        owner: &str,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let (writer, _) = sqlite_or!(self, |pg| crate::postgres::start_task(
            pg, task_id, owner, now
        ));
        let (task_id, owner) = (task_id.to_owned(), owner.to_owned());
        writer
            .write(move |c| {
                let n = c
                    .cached(
                        "UPDATE tasks SET status = 'running', started_at = COALESCE(started_at, ?2)
                         WHERE id = ?1 AND status IN ('queued', 'running') AND lease_owner = ?3",
                    )?
                    .execute(params![task_id, now, owner])?;
                Ok(n == 1)
            })
            .await
    }

    /// Extends every lease `owner` holds (its heartbeat). Returns how many.
    pub async fn renew_leases(&self, owner: &str, until: Millis) -> Result<u64, StoreError> {
        let (writer, _) = sqlite_or!(self, |pg| crate::postgres::renew_leases(pg, owner, until));
        let owner = owner.to_owned();
        writer
            .write(move |c| {
                let n = c
                    .cached(
                        "UPDATE tasks SET lease_expires_at = ?2
                         WHERE lease_owner = ?1 AND status IN ('queued', 'running')",
                    )?
                    .execute(params![owner, until])?;
                for outbox in OUTBOXES {
                    c.execute(
                        &format!("UPDATE {outbox} SET lease_expires_at = ?2 WHERE lease_owner = ?1 AND status = 'pending'"),
                        params![owner, until],
                    )?;
                }
                Ok(n as u64)
            })
            .await
    }

    /// Takes over the unfinished tasks whose lease expired (or that have
    /// none), and those whose lease `own` holds (a restarted node's own):
    /// the `limit` accepted first, in acceptance order: what a restart or
    /// another node resumes.
    pub async fn claim_expired(
        &self,
        lease: Lease,
        now: Millis,
        own: Option<&str>,
        limit: i64,
    ) -> Result<Vec<TaskRow>, StoreError> {
        let (writer, _) = sqlite_or!(self, |pg| crate::postgres::claim_expired(
            pg, &lease, now, own, limit
        ));
        let own = own.map(str::to_owned);
        let ids: Vec<String> = writer
            .write(move |c| {
                let mut stmt = c.cached(
                    "UPDATE tasks SET lease_owner = ?1, lease_expires_at = ?2
                     WHERE seq IN (SELECT seq FROM tasks
                                   WHERE status IN ('queued', 'running')
                                     AND (lease_owner IS NULL OR lease_expires_at IS NULL
                                          OR lease_expires_at < ?3 OR lease_owner = ?4)
                                   ORDER BY seq LIMIT ?5)
                     RETURNING id",
                )?;
                let ids = stmt
                    .query_map(params![lease.owner, lease.until, now, own, limit], |r| {
                        r.get(0)
                    })?
                    .collect::<Result<_, _>>()?;
                Ok(ids)
            })
            .await?;
        let mut rows = Vec::with_capacity(ids.len());
        for id in ids {
            rows.extend(self.task(&id).await?);
        }
        rows.sort_by_key(|r| r.seq);
        Ok(rows)
    }

    /// Takes over the pending callbacks and UI notifications of both
    /// outboxes whose lease expired (or that have none), and those whose
    /// lease `own` holds (a restarted node's own): what a restart or another
    /// node delivers. Oldest first, each outbox in turn. Rows of the
    /// claiming node itself are taken only through `own`: while it runs, it
    /// is delivering them (even when its heartbeat could not renew them).
    pub async fn claim_deliveries(
        &self,
        lease: Lease,
        now: Millis,
        own: Option<&str>,
    ) -> Result<Vec<CallbackRow>, StoreError> {
        let (writer, _) = sqlite_or!(self, |pg| crate::postgres::claim_deliveries(
            pg, &lease, now, own
        ));
        let own = own.map(str::to_owned);
        writer
            .write(move |c| {
                let mut rows = Vec::new();
                for (outbox, table) in [Outbox::Callbacks, Outbox::Notifications]
                    .into_iter()
                    .zip(OUTBOXES)
                {
                    let mut stmt = c.prepare(&format!(
                        "UPDATE {table} SET lease_owner = ?1, lease_expires_at = ?2
                         WHERE status = 'pending'
                           AND (lease_owner IS NULL OR lease_expires_at IS NULL
                                OR (lease_expires_at < ?3 AND lease_owner <> ?1)
                                OR lease_owner = ?4)
                         RETURNING seq, id, task_id, url, body, status, attempts, next_attempt_at,
                                   last_error, created_at, delivered_at"
                    ))?;
                    let mut claimed = stmt
                        .query_map(params![lease.owner, lease.until, now, own], |r| {
                            Ok(CallbackRow {
                                outbox,
                                seq: r.get(0)?,
                                id: r.get(1)?,
                                task_id: r.get(2)?,
                                url: r.get(3)?,
                                body: r.get(4)?,
                                status: r.get(5)?,
                                attempts: r.get(6)?,
                                next_attempt_at: r.get(7)?,
                                last_error: r.get(8)?,
                                created_at: r.get(9)?,
                                delivered_at: r.get(10)?,
                            })
                        })?
                        .collect::<Result<Vec<_>, _>>()?;
                    claimed.sort_by_key(|r| r.seq);
                    rows.extend(claimed);
                }
                Ok(rows)
            })
            .await
    }

    /// Lets go of one task `owner` holds (one it cannot run now), so that
    /// the next sweep claims it again.
    pub async fn release_lease(&self, task_id: &str, owner: &str) -> Result<(), StoreError> {
        let (writer, _) = sqlite_or!(self, |pg| crate::postgres::release_lease(
            pg, task_id, owner
        ));
        let (task_id, owner) = (task_id.to_owned(), owner.to_owned());
        writer
            .write(move |c| {
                c.cached(
                    "UPDATE tasks SET lease_owner = NULL, lease_expires_at = NULL
                     WHERE id = ?1 AND lease_owner = ?2 AND status IN ('queued', 'running')",
                )?
                .execute(params![task_id, owner])?;
                Ok(())
            })
            .await
    }

    /// Lets go of the tasks `owner` holds accepted after `after_seq` (a
    /// restarted node that took back only the first of its own).
    pub async fn release_unheld_leases(
        &self,
        owner: &str,
        after_seq: i64,
    ) -> Result<u64, StoreError> {
        let (writer, _) = sqlite_or!(self, |pg| crate::postgres::release_unheld_leases(
            pg, owner, after_seq
        ));
        let owner = owner.to_owned();
        writer
            .write(move |c| {
                let n = c
                    .cached(
                        "UPDATE tasks SET lease_owner = NULL, lease_expires_at = NULL
                         WHERE lease_owner = ?1 AND seq > ?2 AND status IN ('queued', 'running')",
                    )?
                    .execute(params![owner, after_seq])?;
                Ok(n as u64)
            })
            .await
    }

    /// Lets go of every task `owner` holds, so that the next run or another
    /// node resumes them at once (graceful shutdown).
    pub async fn release_leases(&self, owner: &str) -> Result<u64, StoreError> {
        let (writer, _) = sqlite_or!(self, |pg| crate::postgres::release_leases(pg, owner));
        let owner = owner.to_owned();
        writer
            .write(move |c| {
                let n = c
                    .cached(
                        "UPDATE tasks SET lease_owner = NULL, lease_expires_at = NULL
                         WHERE lease_owner = ?1 AND status IN ('queued', 'running')",
                    )?
                    .execute(params![owner])?;
                for outbox in OUTBOXES {
                    c.execute(
                        &format!("UPDATE {outbox} SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner = ?1 AND status = 'pending'"),
                        params![owner],
                    )?;
                }
                Ok(n as u64)
            })
            .await
    }

    /// Records the end of one call (see `record_call`).
    /// Shared (`Arc`), so that a caller trying the write again after a
    /// storage fault hands over the same record instead of a copy.
    pub async fn finish_call(&self, f: impl Into<Arc<CallFinish>>) -> Result<(), StoreError> {
        let f = f.into();
        let (writer, _) = sqlite_or!(self, |pg| crate::postgres::finish_call(pg, &f));
        writer.write(move |c| record_call(c, &f)).await
    }

    /// Records a step reported through `POST /tasks/{id}/steps`.
    pub async fn add_step(&self, step: NewStep) -> Result<StepRow, StoreError> {
        let (writer, _) = sqlite_or!(self, |pg| crate::postgres::add_step(pg, &step));
        writer
            .write(move |c| {
                let row = insert_step(c, &step)?;
                if !row.success {
                    let (error, at) = (row.error.as_deref(), row.created_at);
                    count_failure(c, &row.session_id, step.command(), error, &row.task_id, at)?;
                }
                Ok(row)
            })
            .await
    }

    /// Ends a task, and in the same transaction writes its callback to the
    /// outbox and its summary to memory. A task ends once: when it had
    /// already ended (or another node holds it) this changes nothing.
    /// Shared (`Arc`) for the same reason as [`Store::finish_call`].
    pub async fn finish_task(
        &self,
        finish: impl Into<Arc<TaskFinish>>,
    ) -> Result<Finished, StoreError> {
        let finish = finish.into();
        let (writer, _) = sqlite_or!(self, |pg| crate::postgres::finish_task(pg, &finish));
        writer.write(move |c| finish_task(c, &finish)).await
    }

    /// Adds a summary of a task to memory (e.g. one written by an LLM).
    pub async fn add_compressed_memory(
        &self,
        task_id: &str,
        method: &str,
        summary: String,
        now: Millis,
    ) -> Result<(), StoreError> {
        let (writer, _) = sqlite_or!(self, |pg| crate::postgres::add_compressed_memory(
            pg, task_id, method, &summary, now
        ));
        let (task_id, method) = (task_id.to_owned(), method.to_owned());
        writer
            .write(move |c| add_compressed(c, &task_id, &method, &summary, now))
            .await
    }

    /// Records one delivery attempt of a callback.
    pub async fn record_delivery(
        &self,
        seq: i64,
        outcome: DeliveryOutcome,
        now: Millis,
    ) -> Result<(), StoreError> {
        self.record_deliveries(vec![(seq, outcome, now)]).await
    }

    /// Records many delivery attempts in one job (the delivery worker
    /// batches its successes). Callbacks are addressed by `seq`, the
    /// table's own key (the text `id` would cost an index seek more).
    pub async fn record_deliveries(
        &self,
        attempts: Vec<(i64, DeliveryOutcome, Millis)>,
    ) -> Result<(), StoreError> {
        self.record_deliveries_in(Outbox::Callbacks, attempts).await
    }

    /// [`Store::record_deliveries`] in either outbox.
    pub async fn record_deliveries_in(
        &self,
        outbox: Outbox,
        attempts: Vec<(i64, DeliveryOutcome, Millis)>,
    ) -> Result<(), StoreError> {
        let (writer, _) = sqlite_or!(self, |pg| crate::postgres::record_deliveries_in(
            pg, outbox, &attempts
        ));
        writer
            .write(move |c| {
                let mut stmt = c.cached(match outbox {
                    Outbox::Callbacks => {
                        "UPDATE callbacks SET status = ?2, attempts = attempts + 1,
                             last_error = COALESCE(?3, last_error), next_attempt_at = ?4,
                             delivered_at = COALESCE(?5, delivered_at)
                         WHERE seq = ?1"
                    }
                    Outbox::Notifications => {
                        "UPDATE notifications SET status = ?2, attempts = attempts + 1,
                             last_error = COALESCE(?3, last_error), next_attempt_at = ?4,
                             delivered_at = COALESCE(?5, delivered_at)
                         WHERE seq = ?1"
                    }
                })?;
                for (seq, outcome, now) in &attempts {
                    let now = *now;
                    let (status, error, next, delivered) = match outcome {
                        DeliveryOutcome::Delivered => ("delivered", None, now, Some(now)),
                        DeliveryOutcome::Retry {
                            error,
                            next_attempt_at,
                        } => ("pending", Some(error), *next_attempt_at, None),
                        DeliveryOutcome::Dead { error } => ("dead", Some(error), now, None),
                    };
                    stmt.execute(params![seq, status, error, next, delivered])?;
                }
                Ok(())
            })
            .await
    }

    /// Puts a callback that is not pending back in the outbox to be
    /// delivered again (replay), with its attempts counted from zero: it
    /// retries like a first delivery. The replaying node takes its lease in
    /// the same statement (no other node's sweep takes it from under it).
    /// `None` when there is no such callback or it is pending already: of
    /// concurrent replays of one callback, one gets it.
    pub async fn requeue_callback(
        &self,
        id: &str,
        lease: &Lease,
        now: Millis,
    ) -> Result<Option<CallbackRow>, StoreError> {
        let (writer, _) = sqlite_or!(self, |pg| crate::postgres::requeue_callback(
            pg, id, lease, now
        ));
        let (key, lease) = (id.to_owned(), lease.clone());
        let found = writer
            .write(move |c| {
                let n = c
                    .cached(
                        "UPDATE callbacks SET status = 'pending', attempts = 0, next_attempt_at = ?2,
                             lease_owner = ?3, lease_expires_at = ?4
                         WHERE id = ?1 AND status <> 'pending'",
                    )?
                    .execute(params![key, now, lease.owner, lease.until])?;
                Ok(n == 1)
            })
            .await?;
        match found {
            true => self.callback(id).await,
            false => Ok(None),
        }
    }

    /// Puts back in the outbox, as first deliveries, at most `limit` dead
    /// callbacks, oldest first, that died at or after `since` (a dead row's
    /// `next_attempt_at` is when it died), under `lease`. Returns them.
    pub async fn redrive_dead(
        &self,
        since: Millis,
        limit: i64,
        lease: &Lease,
        now: Millis,
    ) -> Result<Vec<CallbackRow>, StoreError> {
        let (writer, _) = sqlite_or!(self, |pg| crate::postgres::redrive_dead(
            pg, since, limit, lease, now
        ));
        let lease = lease.clone();
        let ids: Vec<String> = writer
            .write(move |c| {
                let mut stmt = c.cached(
                    "UPDATE callbacks SET status = 'pending', attempts = 0, next_attempt_at = ?3,
                         lease_owner = ?4, lease_expires_at = ?5
                     WHERE seq IN (SELECT seq FROM callbacks
                                   WHERE status = 'dead' AND next_attempt_at >= ?1
                                   ORDER BY seq LIMIT ?2)
                     RETURNING id",
                )?;
                let ids = stmt
                    .query_map(params![since, limit, now, lease.owner, lease.until], |r| {
                        r.get(0)
                    })?
                    .collect::<Result<_, _>>()?;
                Ok(ids)
            })
            .await?;
        let mut rows = Vec::with_capacity(ids.len());
        for id in ids {
            rows.extend(self.callback(&id).await?);
        }
        rows.sort_by_key(|r| r.seq);
        Ok(rows)
    }

    /// Forgets memory (key facts, failed attempts, summaries) of a scope.
    /// Tasks and their steps stay: they are history, not memory.
    pub async fn clear_memory(&self, scope: crate::MemoryScope) -> Result<u64, StoreError> {
        let (writer, _) = sqlite_or!(self, |pg| crate::postgres::clear_memory(pg, &scope));
        use crate::MemoryScope::*;
        let (by_task, by_session) = ("task_id = ?1", "session_id = ?1");
        let (steps, tasks, compressed, failed) = match &scope {
            Task(_) => (
                "task_seq = (SELECT seq FROM tasks WHERE id = ?1)".to_owned(),
                "id = ?1".to_owned(),
                by_task,
                "last_task_id = ?1",
            ),
            // Steps and tasks are reached through the session's chain.
            Session(_) => {
                let seqs = crate::reads::session_task_seqs("?1");
                (
                    format!("task_seq IN {seqs}"),
                    format!("seq IN {seqs}"),
                    by_session,
                    by_session,
                )
            }
            Global => (
                "?1 IS NULL".to_owned(),
                "?1 IS NULL".to_owned(),
                "?1 IS NULL",
                "?1 IS NULL",
            ),
        };
        let statements = [
            format!("UPDATE steps SET in_memory = 0 WHERE in_memory = 1 AND {steps}"),
            format!("UPDATE tasks SET summary = NULL WHERE summary IS NOT NULL AND {tasks}"),
            format!("DELETE FROM compressed_memories WHERE {compressed}"),
            format!("DELETE FROM failed_attempts WHERE {failed}"),
        ];
        let value = match scope {
            Task(id) | Session(id) => Some(id),
            Global => None,
        };
        writer
            .write(move |c| {
                let mut removed = 0;
                for sql in &statements {
                    removed += c.execute(sql, params![value])? as u64;
                }
                Ok(removed)
            })
            .await
    }
}
