//! Leases on SQLite.

use super::writer::Writer;
use crate::sql::{
    release_outbox_leases, NODE_BEAT, NODE_STARTED, NODE_STOPPED, RELEASE_LEASE,
    RELEASE_TASK_LEASES,
};
use crate::sql::{unfinished, unheld};
use crate::{
    commands::{Claim, Holding, Unheld, OUTBOXES},
    StoreError,
};
use naga_core::time::Millis;
use rusqlite::params;

pub(crate) async fn renew_leases(
    writer: &Writer,
    owner: &str,
    until: Millis,
    holding: Holding,
) -> Result<u64, StoreError> {
    let owner = owner.to_owned();
    writer
        .write(move |c| {
            let mut renewed = 0;
            let mut task = c.cached(concat!(
                "UPDATE tasks SET lease_expires_at = ?2
                 WHERE seq = ?3 AND lease_owner = ?1 AND ",
                unfinished!()
            ))?;
            for seq in &holding.tasks {
                renewed += task.execute(params![owner, until, seq])? as u64;
            }
            drop(task);
            for (outbox, seqs) in holding.deliveries() {
                if seqs.is_empty() {
                    continue;
                }
                let mut row = c.prepare(&format!(
                    "UPDATE {outbox} SET lease_expires_at = ?2
                     WHERE seq = ?3 AND lease_owner = ?1 AND status = 'pending'"
                ))?;
                for seq in seqs {
                    row.execute(params![owner, until, seq])?;
                }
            }
            Ok(renewed)
        })
        .await
}

/// The ids of the runnable tasks claimed and started (read back by the caller).
pub(crate) async fn claim_runnable(
    writer: &Writer,
    claim: Claim,
    limit: i64,
) -> Result<Vec<String>, StoreError> {
    writer
        .write(move |c| {
            // (Stamped as written: the time of this group commit.)
            let mut claim = claim.clone();
            claim.restamp();
            let mut stmt = c.cached(concat!(
                concat!(
                    "UPDATE tasks SET lease_owner = ?1, lease_expires_at = ?2, status = 'running',
                     started_at = COALESCE(started_at, ?3)
                 WHERE seq IN (SELECT seq FROM tasks
                               WHERE ready = 1 AND ",
                    unfinished!(),
                    " AND "
                ),
                unheld!("?", "?6"),
                " ORDER BY seq LIMIT ?5)
                 RETURNING id"
            ))?;
            let c = &claim;
            let ids = stmt
                .query_map(
                    params![
                        c.lease.owner,
                        c.lease.until,
                        c.now,
                        c.dead_before,
                        limit,
                        c.lapsed_before
                    ],
                    |r| r.get(0),
                )?
                .collect::<Result<_, _>>()?;
            Ok(ids)
        })
        .await
}

/// The ids of the unfinished tasks claimed (not started) among one task
/// (`task`) or a session's accepted before a `seq` (`session`).
pub(crate) async fn claim_unheld(
    writer: &Writer,
    claim: Claim,
    which: Unheld,
) -> Result<Vec<String>, StoreError> {
    writer
        .write(move |c| {
            let c0 = &claim;
            let (sql, key, before) = match &which {
                Unheld::Task(id) => (
                    concat!(
                        concat!(
                            "UPDATE tasks SET lease_owner = ?1, lease_expires_at = ?2
                         WHERE id = ?5 AND ?6 IS NULL AND ",
                            unfinished!(),
                            " AND "
                        ),
                        unheld!("?", "?7"),
                        " RETURNING id"
                    ),
                    id.as_str(),
                    None,
                ),
                Unheld::SessionBefore(session, before) => (
                    concat!(
                        concat!(
                            "UPDATE tasks SET lease_owner = ?1, lease_expires_at = ?2
                         WHERE session_id = ?5 AND seq < ?6 AND ",
                            unfinished!(),
                            "
                           AND "
                        ),
                        unheld!("?", "?7"),
                        " RETURNING id"
                    ),
                    session.as_str(),
                    Some(*before),
                ),
            };
            let mut stmt = c.cached(sql)?;
            let ids = stmt
                .query_map(
                    params![
                        c0.lease.owner,
                        c0.lease.until,
                        c0.now,
                        c0.dead_before,
                        key,
                        before,
                        c0.lapsed_before
                    ],
                    |r| r.get(0),
                )?
                .collect::<Result<_, _>>()?;
            Ok(ids)
        })
        .await
}

pub(crate) async fn release_lease(
    writer: &Writer,
    task_id: &str,
    owner: &str,
) -> Result<(), StoreError> {
    let (task_id, owner) = (task_id.to_owned(), owner.to_owned());
    writer
        .write(move |c| {
            c.cached(RELEASE_LEASE)?.execute(params![task_id, owner])?;
            Ok(())
        })
        .await
}

pub(crate) async fn release_leases(writer: &Writer, owner: &str) -> Result<u64, StoreError> {
    let owner = owner.to_owned();
    writer
        .write(move |c| {
            let n = c.cached(RELEASE_TASK_LEASES)?.execute(params![owner])?;
            for outbox in OUTBOXES {
                c.execute(&release_outbox_leases(outbox), params![owner])?;
            }
            Ok(n as u64)
        })
        .await
}

/// The node's heartbeat; `starting` also records when it started.
pub(crate) async fn node_heartbeat(
    writer: &Writer,
    id: &str,
    now: Millis,
    starting: bool,
) -> Result<(), StoreError> {
    let id = id.to_owned();
    writer
        .write(move |c| {
            let sql = if starting { NODE_STARTED } else { NODE_BEAT };
            c.cached(sql)?.execute(params![id, now])?;
            Ok(())
        })
        .await
}

pub(crate) async fn node_stopped(writer: &Writer, id: &str, now: Millis) -> Result<(), StoreError> {
    let id = id.to_owned();
    writer
        .write(move |c| {
            c.cached(NODE_STOPPED)?.execute(params![now, id])?;
            Ok(())
        })
        .await
}
