//! Leases: which node holds a task or a pending callback, renewed by its
//! holder, taken over once expired, let go of at shutdown.

use crate::{commands::*, postgres, read, rows::*, sqlite, Backend, Store, StoreError};
use naga_core::time::Millis;

impl Store {
    /// Extends every lease `owner` holds (its heartbeat). Returns how many.
    pub async fn renew_leases(&self, owner: &str, until: Millis) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite { writer, .. } => {
                sqlite::leases::renew_leases(writer, owner, until).await
            }
            Backend::Postgres(pg) => pg.observed(postgres::renew_leases(pg, owner, until)).await,
        }
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
        match &self.backend {
            Backend::Sqlite { writer, .. } => {
                let ids = sqlite::leases::claim_expired(writer, lease, now, own, limit).await?;
                let mut rows = Vec::with_capacity(ids.len());
                for id in ids {
                    rows.extend(self.task(&id).await?);
                }
                rows.sort_by_key(|r| r.seq);
                Ok(rows)
            }
            Backend::Postgres(pg) => {
                pg.observed(postgres::claim_expired(pg, &lease, now, own, limit))
                    .await
            }
        }
    }

    /// Lets go of one task `owner` holds (one it cannot run now), so that
    /// the next sweep claims it again.
    pub async fn release_lease(&self, task_id: &str, owner: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite { writer, .. } => {
                sqlite::leases::release_lease(writer, task_id, owner).await
            }
            Backend::Postgres(pg) => {
                pg.observed(postgres::release_lease(pg, task_id, owner))
                    .await
            }
        }
    }

    /// Lets go of the tasks `owner` holds accepted after `after_seq` (a
    /// restarted node that took back only the first of its own).
    pub async fn release_unheld_leases(
        &self,
        owner: &str,
        after_seq: i64,
    ) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite { writer, .. } => {
                sqlite::leases::release_unheld_leases(writer, owner, after_seq).await
            }
            Backend::Postgres(pg) => {
                pg.observed(postgres::release_unheld_leases(pg, owner, after_seq))
                    .await
            }
        }
    }

    /// Lets go of every task `owner` holds, so that the next run or another
    /// node resumes them at once (graceful shutdown).
    pub async fn release_leases(&self, owner: &str) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite { writer, .. } => sqlite::leases::release_leases(writer, owner).await,
            Backend::Postgres(pg) => pg.observed(postgres::release_leases(pg, owner)).await,
        }
    }

    /// A node's heartbeat, as it renews its leases (`starting`: its first
    /// of this run). What operators see of it (`nodes`); which node runs
    /// what is decided by the leases alone.
    pub async fn node_heartbeat(
        &self,
        id: &str,
        now: Millis,
        starting: bool,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite { writer, .. } => {
                sqlite::leases::node_heartbeat(writer, id, now, starting).await
            }
            Backend::Postgres(pg) => {
                pg.observed(postgres::node_heartbeat(pg, id, now, starting))
                    .await
            }
        }
    }

    /// A node stopped cleanly (after letting go of its leases).
    pub async fn node_stopped(&self, id: &str, now: Millis) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite { writer, .. } => sqlite::leases::node_stopped(writer, id, now).await,
            Backend::Postgres(pg) => pg.observed(postgres::node_stopped(pg, id, now)).await,
        }
    }

    /// The nodes that ran on this store, last heard from first, each with
    /// the unfinished tasks and pending callbacks it holds.
    pub async fn nodes(&self, limit: i64) -> Result<Vec<NodeRow>, StoreError> {
        /// How many of something each lease owner holds.
        type Held = Vec<(String, i64)>;
        let (mut nodes, tasks, callbacks): (Vec<NodeRow>, Held, Held) = read!(self, |pool| {
            let nodes = sqlx::query_as(
                "SELECT id, started_at, heartbeat_at, stopped_at,
                            CAST(0 AS BIGINT) AS tasks, CAST(0 AS BIGINT) AS callbacks
                     FROM nodes ORDER BY heartbeat_at DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await?;
            let tasks = sqlx::query_as(
                "SELECT lease_owner, COUNT(*) FROM tasks
                     WHERE status IN ('queued', 'running') AND lease_owner IS NOT NULL
                     GROUP BY lease_owner",
            )
            .fetch_all(pool)
            .await?;
            let callbacks = sqlx::query_as(
                "SELECT lease_owner, COUNT(*) FROM callbacks
                     WHERE status = 'pending' AND lease_owner IS NOT NULL
                     GROUP BY lease_owner",
            )
            .fetch_all(pool)
            .await?;
            (nodes, tasks, callbacks)
        });
        for node in &mut nodes {
            let held = |list: &[(String, i64)]| {
                list.iter()
                    .find(|(id, _)| *id == node.id)
                    .map_or(0, |(_, n)| *n)
            };
            node.tasks = held(&tasks);
            node.callbacks = held(&callbacks);
        }
        Ok(nodes)
    }
}
