//! Retention on SQLite: each batch is one job of the writer, so that the
//! accepts queued behind it wait for one batch, not for the whole prune.

use super::{decoded, stmts::Db, writer::Writer};
use crate::{
    retention::{Candidate, PruneTasks, Rule, TasksPruned, SCAN_TASKS},
    StoreError,
};
use naga_core::time::Millis;
use rusqlite::params;

pub(crate) async fn prune_rule(
    writer: &Writer,
    rule: Rule,
    cutoff: Millis,
    limit: i64,
    dry_run: bool,
) -> Result<Option<u64>, StoreError> {
    let sql = match dry_run {
        true => rule.count_sql(),
        false => rule.delete_sql(),
    };
    writer
        .write(move |c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let n = match dry_run {
                true => stmt.query_row(params![cutoff], |r| r.get::<_, i64>(0))? as u64,
                false => stmt.execute(params![cutoff, limit])? as u64,
            };
            Ok(Some(n))
        })
        .await
}

pub(crate) async fn prune_tasks(
    writer: &Writer,
    batch: PruneTasks,
) -> Result<Option<TasksPruned>, StoreError> {
    writer
        .write(move |c| {
            let (pass, chosen) = batch.choose(scan(c, &batch)?);
            let mut pruned = TasksPruned {
                pass,
                ..Default::default()
            };
            for task in &chosen {
                match batch.dry_run {
                    true => count_task(c, task, &mut pruned)?,
                    false => remove_task(c, task, batch.now, &mut pruned)?,
                }
            }
            Ok(Some(pruned))
        })
        .await
}

fn scan(c: &Db, batch: &PruneTasks) -> Result<Vec<Candidate>, StoreError> {
    let cutoffs = &batch.cutoffs;
    let rows = c
        .cached(SCAN_TASKS)?
        .query_map(
            params![
                crate::Cutoffs::bound(cutoffs.callbacks),
                crate::Cutoffs::bound(cutoffs.dead_callbacks),
                batch.pass.after,
                batch.limit
            ],
            |r| {
                Ok(Candidate {
                    seq: r.get(0)?,
                    id: r.get(1)?,
                    session_id: r.get(2)?,
                    status: decoded(r, 3)?,
                    finished_at: r.get(4)?,
                    accepted_at: r.get(5)?,
                    held: r.get(6)?,
                })
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// What pruning `task` would remove.
fn count_task(c: &Db, task: &Candidate, pruned: &mut TasksPruned) -> Result<(), StoreError> {
    let count = |sql: &'static str, key: rusqlite::types::Value| -> Result<u64, StoreError> {
        Ok(c.cached(sql)?.query_row([key], |r| r.get::<_, i64>(0))? as u64)
    };
    pruned.tasks += 1;
    pruned.steps += count(
        "SELECT COUNT(*) FROM steps WHERE task_seq = $1",
        task.seq.into(),
    )?;
    // (Its callbacks are past their windows: the outbox's rules counted them.)
    pruned.push_configs += count(
        "SELECT COUNT(*) FROM push_configs WHERE task_id = $1",
        task.id.clone().into(),
    )?;
    Ok(())
}

/// Removes `task` with what hangs on it, and leaves its request id.
fn remove_task(
    c: &Db,
    task: &Candidate,
    now: Millis,
    pruned: &mut TasksPruned,
) -> Result<(), StoreError> {
    pruned.steps += c
        .cached("DELETE FROM steps WHERE task_seq = $1")?
        .execute(params![task.seq])? as u64;
    pruned.callbacks += c
        .cached("DELETE FROM callbacks WHERE task_id = $1")?
        .execute(params![task.id])? as u64;
    pruned.push_configs += c
        .cached("DELETE FROM push_configs WHERE task_id = $1")?
        .execute(params![task.id])? as u64;
    pruned.tasks += c
        .cached("DELETE FROM tasks WHERE seq = $1")?
        .execute(params![task.seq])? as u64;
    c.cached(crate::sql::LEAVE_REQUEST_ID)?.execute(params![
        task.id,
        task.session_id,
        task.status.as_str(),
        task.finished_at,
        now
    ])?;
    c.cached("UPDATE sessions SET task_count = task_count - 1 WHERE id = $1")?
        .execute(params![task.session_id])?;
    Ok(())
}
