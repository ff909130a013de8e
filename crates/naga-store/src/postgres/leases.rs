//! Leases on PostgreSQL: renewed by their holder, taken over once expired,
//! let go of at shutdown.

use super::*;

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

/// A node's heartbeat; `starting` also records when it started (and that
/// it runs again).
pub(crate) async fn node_heartbeat(
    pool: &PgPool,
    id: &str,
    now: Millis,
    starting: bool,
) -> Result<(), StoreError> {
    let sql = if starting {
        "INSERT INTO nodes (id, started_at, heartbeat_at) VALUES ($1, $2, $2)
         ON CONFLICT (id) DO UPDATE SET started_at = $2, heartbeat_at = $2, stopped_at = NULL"
    } else {
        "INSERT INTO nodes (id, started_at, heartbeat_at) VALUES ($1, $2, $2)
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = $2, stopped_at = NULL"
    };
    sqlx::query(sql).bind(id).bind(now).execute(pool).await?;
    Ok(())
}

pub(crate) async fn node_stopped(pool: &PgPool, id: &str, now: Millis) -> Result<(), StoreError> {
    sqlx::query("UPDATE nodes SET stopped_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(pool)
        .await?;
    Ok(())
}
