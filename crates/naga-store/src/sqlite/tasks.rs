//! Tasks on SQLite: each command one job of the group-commit writer.

use super::{decoded, stmts::Db, writer::Writer};
use crate::sql::unfinished;
use crate::{
    commands::{
        same_batch, stored_batch_columns, AnalysisOwners, CallFinish, Finished, FirstAnswer,
        Inserted, NewStep, NewTask, PrunedTask, StoredBatch, TaskFinish,
    },
    rows::{HandedTask, StepRow, TaskRow},
    StoreError,
};
use naga_core::{time::Millis, TaskStatus};
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
        kind: super::decoded(r, 2)?,
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

/// A batch the store knows already: its request id's (the same batch, or
/// another one under that id), or an identical one still active in its
/// session (`fingerprint`).
fn known_batch(c: &Db, task: &NewTask) -> Result<Option<Inserted>, StoreError> {
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
        return Ok(Some(match same_batch(&stored, task) {
            true => Inserted::Existing(first),
            false => Inserted::Reused(first),
        }));
    }
    let pruned = c
        .cached(crate::sql::PRUNED_TASK)?
        .query_row(params![task.id], |r| {
            Ok(PrunedTask {
                id: r.get(0)?,
                session_id: r.get(1)?,
                status: super::decoded(r, 2)?,
                finished_at: r.get(3)?,
                pruned_at: r.get(4)?,
            })
        })
        .optional()?;
    if let Some(pruned) = pruned {
        return Ok(Some(Inserted::Pruned(pruned)));
    }
    if let Some(fp) = &task.fingerprint {
        let active = c
            .cached(concat!(
                "SELECT ",
                first_answer_columns!(),
                concat!(
                    " FROM tasks
                 WHERE session_id = ?1 AND fingerprint = ?2 AND ",
                    unfinished!(),
                    "
                 ORDER BY seq LIMIT 1"
                )
            ))?
            .query_row(params![task.session_id, fp], first_answer)
            .optional()?;
        if let Some(first) = active {
            return Ok(Some(Inserted::Duplicate(first)));
        }
    }
    Ok(None)
}

/// `stamp`: the task's `(accepted_at, lease until)` as stored (see
/// [`NewTask::clock`]).
fn insert_task_in(
    c: &Db,
    task: &NewTask,
    stamp: (Millis, Millis),
    known: &AnalysisOwners,
) -> Result<TaskInserted, StoreError> {
    let (accepted_at, lease_until) = stamp;
    if let Some(known) = known_batch(c, task)? {
        return Ok((known, None));
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
    // Whether the session has unfinished batches: a `reject` batch is
    // refused, any other waits its turn (unless `parallel`). (A session
    // without a task has none.)
    let busy = prev_seq.is_some()
        && c.cached(concat!(
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE session_id = ?1
                            AND ",
            unfinished!(),
            ")"
        ))?
        .query_row(params![task.session_id], |r| r.get::<_, bool>(0))?;
    if busy && task.policy == naga_core::config::SessionPolicy::Reject {
        return Ok((Inserted::Busy, None));
    }
    let ready = !busy || task.policy == naga_core::config::SessionPolicy::Parallel;
    let started = task.started && ready;
    let learned = claim_analysis(c, task, accepted_at, known)?;
    // The task's texts are bound in place (`execute_borrowing`).
    c.execute_borrowing(
        "INSERT INTO tasks (id, kind, session_id, analysis_session_id, query, callback_url, policy,
             fingerprint, status, calls_count, calls, response, accepted_at, started_at,
             lease_owner, lease_expires_at, prev_seq, ready)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        &[
            task.id.as_str().into(),
            task.kind.as_str().into(),
            task.session_id.as_str().into(),
            task.analysis_session_id.as_deref().into(),
            task.query.as_deref().into(),
            task.callback_url.as_deref().into(),
            task.policy.as_str().into(),
            task.fingerprint.as_deref().into(),
            if started { "running" } else { "queued" }.into(),
            (task.calls_count as i64).into(),
            task.calls.as_str().into(),
            task.response.as_str().into(),
            accepted_at.into(),
            started.then_some(accepted_at).into(),
            started.then_some(task.lease.owner.as_str()).into(),
            started.then_some(lease_until).into(),
            prev_seq.into(),
            (ready as i64).into(),
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
            started,
            ready,
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
        concat!(
            "INSERT INTO steps (task_seq, step_no, task_id, session_id, call_idx, purpose, content,
                            output, analysis, success, error, created_at, result, started_at)
         VALUES (?1, (SELECT COALESCE(MAX(step_no), 0) + 1 FROM steps WHERE task_seq = ?1), ?2,
                 (SELECT session_id FROM tasks
                  WHERE seq = ?1 AND id = ?2 AND lease_owner = ?3
                    AND ",
            unfinished!(),
            "),
                 ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        ),
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

/// A task's end (see `Store::finish_task`).
fn finish_task_in(c: &Db, f: &TaskFinish) -> Result<Finished, StoreError> {
    if let Some(call) = &f.last_call {
        record_call(c, call)?;
    }
    let ended = c.execute_borrowing(
        concat!(
            "UPDATE tasks SET status = ?2, error = ?3, finished_at = ?4, summary = ?6,
             lease_owner = NULL, lease_expires_at = NULL
         WHERE seq = ?7 AND id = ?1 AND ",
            unfinished!(),
            " AND lease_owner = ?5"
        ),
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
    let (woke, next) = match ready_next(c, f.task_seq, f.take_next.then_some(f))? {
        Next::Nothing => (false, None),
        Next::Woke => (true, None),
        Next::Taken(handed) => (false, Some(handed)),
    };
    let Some((url, head)) = &f.callback else {
        let callback = None;
        return Ok(Finished::Ended {
            callback,
            woke,
            next,
        });
    };
    let seq: i64 = c
        .cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM callbacks")?
        .query_row([], |r| r.get(0))?;
    let body = head.body(seq);
    // Only while the task still has the callback it was sent with (a
    // client may drop it while it runs: an A2A push config deleted).
    let written = c.execute_borrowing(
        "INSERT INTO callbacks (seq, id, task_id, url, body, status, attempts, next_attempt_at,
                                created_at, lease_owner, lease_expires_at)
         SELECT ?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6, ?7, ?8 FROM tasks
         WHERE seq = ?9 AND callback_url IS NOT NULL",
        &[
            seq.into(),
            f.callback_id.as_str().into(),
            f.task_id.as_str().into(),
            url.as_str().into(),
            body.as_str().into(),
            f.finished_at.into(),
            f.owner.as_str().into(),
            f.lease_until.into(),
            f.task_seq.into(),
        ],
    )?;
    let callback = (written > 0).then(|| f.pending_callback(url, seq, body));
    Ok(Finished::Ended {
        callback,
        woke,
        next,
    })
}

/// What an end did to its session's next batch.
enum Next {
    /// None waits, or it was ready or held already.
    Nothing,
    /// Readied, waiting unheld: a free worker should claim it now.
    Woke,
    /// Readied and claimed for the ending node (read as it was claimed).
    Taken(Box<HandedTask>),
}

/// A batch an end claimed (see [`HandedTask`]), read on the writer's own
/// connection: no read of the pool, whose page cache every commit voids.
fn handed(c: &Db, seq: i64) -> Result<HandedTask, StoreError> {
    let mut stmt = c.cached(
        "SELECT seq, id, kind, session_id, analysis_session_id, query, callback_url, policy,
                fingerprint, status, error, calls_count, response, accepted_at, started_at,
                finished_at, calls, (SELECT COUNT(*) FROM steps WHERE task_seq = ?1)
         FROM tasks WHERE seq = ?1",
    )?;
    let handed = stmt.query_row(params![seq], |r| {
        let task = TaskRow {
            seq: r.get(0)?,
            id: r.get(1)?,
            kind: decoded(r, 2)?,
            session_id: r.get(3)?,
            analysis_session_id: r.get(4)?,
            query: r.get(5)?,
            callback_url: r.get(6)?,
            policy: decoded(r, 7)?,
            fingerprint: r.get(8)?,
            status: decoded(r, 9)?,
            error: r.get(10)?,
            calls_count: r.get(11)?,
            steps_count: r.get(17)?,
            response: r.get(12)?,
            accepted_at: r.get(13)?,
            started_at: r.get(14)?,
            finished_at: r.get(15)?,
        };
        Ok(HandedTask {
            task,
            calls: r.get(16)?,
        })
    });
    handed.map_err(|e| match e {
        rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => {
            StoreError::Corrupt(format!("task seq {seq} cannot be read back: {e}"))
        }
        e => e.into(),
    })
}

/// Once a task of a session ended: the session's earliest unfinished
/// batch becomes ready (its turn). When it waits unheld and `take` (the
/// end) asks for it, it is claimed for the ending node at once, running.
fn ready_next(c: &Db, ended_seq: i64, take: Option<&TaskFinish>) -> Result<Next, StoreError> {
    let next: Option<(i64, bool, bool)> = c
        .cached(concat!(
            "SELECT seq, ready, lease_owner IS NULL FROM tasks
             WHERE session_id = (SELECT session_id FROM tasks WHERE seq = ?1)
               AND ",
            unfinished!(),
            "
             ORDER BY seq LIMIT 1"
        ))?
        .query_row(params![ended_seq], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let Some((seq, false, unheld)) = next else {
        return Ok(Next::Nothing);
    };
    // (One that cannot be read back is left to a claim, which quarantines
    // it: the end itself commits.)
    let readable = match (unheld, take) {
        (true, Some(_)) => match handed(c, seq) {
            Ok(h) => Some(h),
            Err(StoreError::Corrupt(_)) => None,
            Err(e) => return Err(e),
        },
        _ => None,
    };
    match (readable, take) {
        (Some(mut h), Some(f)) => {
            c.cached(
                "UPDATE tasks SET ready = 1, lease_owner = ?2, lease_expires_at = ?3,
                     status = 'running', started_at = COALESCE(started_at, ?4)
                 WHERE seq = ?1",
            )?
            .execute(params![seq, f.owner, f.lease_until, f.finished_at])?;
            h.task.status = TaskStatus::Running;
            h.task.started_at = h.task.started_at.or(Some(f.finished_at));
            Ok(Next::Taken(Box::new(h)))
        }
        _ => {
            c.cached("UPDATE tasks SET ready = 1 WHERE seq = ?1")?
                .execute(params![seq])?;
            Ok(if unheld { Next::Woke } else { Next::Nothing })
        }
    }
}

pub(crate) async fn insert_task(
    writer: &Writer,
    analysis_owners: &AnalysisOwners,
    task: NewTask,
) -> Result<Inserted, StoreError> {
    let known = analysis_owners.clone();
    let (inserted, learned) = writer
        // (Stamped as written: the time of this group commit.)
        .write(move |c| insert_task_in(c, &task, task.stamp(), &known))
        .await?;
    if let Some((analysis, session)) = learned {
        analysis_owners.learn(analysis, session);
    }
    Ok(inserted)
}

pub(crate) async fn finish_call(writer: &Writer, f: Arc<CallFinish>) -> Result<(), StoreError> {
    writer.write(move |c| record_call(c, &f)).await
}

pub(crate) async fn add_step(writer: &Writer, step: NewStep) -> Result<StepRow, StoreError> {
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

pub(crate) async fn finish_task(
    writer: &Writer,
    finish: Arc<TaskFinish>,
) -> Result<Finished, StoreError> {
    writer.write(move |c| finish_task_in(c, &finish)).await
}
