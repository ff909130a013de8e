//! Leases on SQLite.

use super::writer::Writer;
use crate::{commands::*, StoreError};
use naga_core::time::Millis;
use rusqlite::params;

pub(crate) async fn renew_leases(
    writer: &Writer,
    owner: &str,
    until: Millis,
) -> Result<u64, StoreError> {
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

/// The ids of the tasks taken over (read back by the caller).
pub(crate) async fn claim_expired(
    writer: &Writer,
    lease: Lease,
    now: Millis,
    own: Option<&str>,
    limit: i64,
) -> Result<Vec<String>, StoreError> {
    let own = own.map(str::to_owned);
    writer
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
            c.cached(
                "UPDATE tasks SET lease_owner = NULL, lease_expires_at = NULL
                     WHERE id = ?1 AND lease_owner = ?2 AND status IN ('queued', 'running')",
            )?
            .execute(params![task_id, owner])?;
            Ok(())
        })
        .await
}

pub(crate) async fn release_unheld_leases(
    writer: &Writer,
    owner: &str,
    after_seq: i64,
) -> Result<u64, StoreError> {
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

pub(crate) async fn release_leases(writer: &Writer, owner: &str) -> Result<u64, StoreError> {
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
            let sql = if starting {
                "INSERT INTO nodes (id, started_at, heartbeat_at) VALUES (?1, ?2, ?2)
                 ON CONFLICT (id) DO UPDATE SET started_at = ?2, heartbeat_at = ?2, stopped_at = NULL"
            } else {
                "INSERT INTO nodes (id, started_at, heartbeat_at) VALUES (?1, ?2, ?2)
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = ?2, stopped_at = NULL"
            };
            c.cached(sql)?.execute(params![id, now])?;
            Ok(())
        })
        .await
}

pub(crate) async fn node_stopped(writer: &Writer, id: &str, now: Millis) -> Result<(), StoreError> {
    let id = id.to_owned();
    writer
        .write(move |c| {
            c.execute(
                "UPDATE nodes SET stopped_at = ?2 WHERE id = ?1",
                params![id, now],
            )?;
            Ok(())
        })
        .await
}
