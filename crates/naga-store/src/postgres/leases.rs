//! Leases on PostgreSQL: renewed by their holder, taken over once expired,
//! let go of at shutdown.

use crate::sql::{
    release_outbox_leases, NODE_BEAT, NODE_STARTED, NODE_STOPPED, RELEASE_LEASE,
    RELEASE_TASK_LEASES,
};
use crate::sql::{unfinished, unheld};
use crate::{
    commands::{Claim, Holding, Unheld, OUTBOXES},
    rows::TaskRow,
    StoreError,
};
use naga_core::time::Millis;
use sqlx::PgPool;

pub(crate) async fn renew_leases(
    pool: &PgPool,
    owner: &str,
    until: Millis,
    holding: &Holding,
) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await?;
    let n = sqlx::query(concat!(
        "UPDATE tasks SET lease_expires_at = $2
         WHERE seq = ANY($3) AND lease_owner = $1 AND ",
        unfinished!()
    ))
    .bind(owner)
    .bind(until)
    .bind(&holding.tasks)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    for (outbox, seqs) in holding.deliveries() {
        sqlx::query(&format!(
            "UPDATE {outbox} SET lease_expires_at = $2
             WHERE seq = ANY($3) AND lease_owner = $1 AND status = 'pending'"
        ))
        .bind(owner)
        .bind(until)
        .bind(seqs)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(n)
}

/// Claims and starts runnable tasks (ready, unheld), the earliest first;
/// rows another node is claiming at this moment are skipped (`SKIP
/// LOCKED`), so each task goes to one node. Started at `now`, or when the
/// batch before it ended if that is later: the end's time is taken before
/// its commit, and this claim's may be taken just before the end's
/// readying commits.
pub(crate) async fn claim_runnable(
    pool: &PgPool,
    claim: &Claim,
    limit: i64,
) -> Result<Vec<TaskRow>, StoreError> {
    let mut conn = pool.acquire().await?;
    let mut claim = claim.clone();
    claim.restamp();
    Ok(sqlx::query_as(concat!(
        concat!(
            "WITH claimed AS (
             UPDATE tasks SET lease_owner = $1, lease_expires_at = $2, status = 'running',
                 started_at = COALESCE(started_at, GREATEST($3,
                     (SELECT p.finished_at FROM tasks p WHERE p.seq = tasks.prev_seq)))
             WHERE seq IN (SELECT seq FROM tasks
                           WHERE ready AND ",
            unfinished!(),
            " AND "
        ),
        unheld!("$", "$6"),
        " ORDER BY seq LIMIT $5
                           FOR UPDATE SKIP LOCKED)
             RETURNING seq)
         SELECT t.* FROM task_rows t JOIN claimed c ON c.seq = t.seq ORDER BY t.seq"
    ))
    .bind(&claim.lease.owner)
    .bind(claim.lease.until)
    .bind(claim.now)
    .bind(claim.dead_before)
    .bind(limit)
    .bind(claim.lapsed_before)
    .fetch_all(&mut *conn)
    .await?)
}

/// Claims (without starting) unfinished tasks nobody else holds: one task,
/// or a session's accepted before a `seq`.
pub(crate) async fn claim_unheld(
    pool: &PgPool,
    claim: &Claim,
    which: &Unheld,
) -> Result<Vec<TaskRow>, StoreError> {
    let (which_sql, key, before) = match which {
        Unheld::Task(id) => ("id = $5 AND $6::BIGINT IS NULL", id, None),
        Unheld::SessionBefore(session, before) => {
            ("session_id = $5 AND seq < $6", session, Some(*before))
        }
    };
    Ok(sqlx::query_as(&format!(
        concat!(
            "WITH claimed AS (
             UPDATE tasks SET lease_owner = $1, lease_expires_at = $2
             WHERE {which_sql} AND ",
            unfinished!(),
            " AND ",
            unheld!("$", "$7"),
            "
             RETURNING seq)
         SELECT t.* FROM task_rows t JOIN claimed c ON c.seq = t.seq ORDER BY t.seq"
        ),
        which_sql = which_sql
    ))
    .bind(&claim.lease.owner)
    .bind(claim.lease.until)
    .bind(claim.now)
    .bind(claim.dead_before)
    .bind(key)
    .bind(before)
    .bind(claim.lapsed_before)
    .fetch_all(pool)
    .await?)
}

pub(crate) async fn release_lease(
    pool: &PgPool,
    task_id: &str,
    owner: &str,
) -> Result<(), StoreError> {
    sqlx::query(RELEASE_LEASE)
        .bind(task_id)
        .bind(owner)
        .execute(pool)
        .await?;
    Ok(())
}

pub(crate) async fn release_leases(pool: &PgPool, owner: &str) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await?;
    let n = sqlx::query(RELEASE_TASK_LEASES)
        .bind(owner)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    for outbox in OUTBOXES {
        sqlx::query(&release_outbox_leases(outbox))
            .bind(owner)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(n)
}

/// A node's heartbeat; `starting` also records when it started (and that
/// it runs again).
pub(crate) async fn node_heartbeat(
    pool: &PgPool,
    id: &str,
    now: Millis,
    starting: bool,
) -> Result<(), StoreError> {
    let sql = if starting { NODE_STARTED } else { NODE_BEAT };
    sqlx::query(sql).bind(id).bind(now).execute(pool).await?;
    Ok(())
}

pub(crate) async fn node_stopped(pool: &PgPool, id: &str, now: Millis) -> Result<(), StoreError> {
    sqlx::query(NODE_STOPPED)
        .bind(now)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}
