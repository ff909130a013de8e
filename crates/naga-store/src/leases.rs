//! Leases: which node holds a task or a pending callback, renewed by its
//! holder, taken over once expired, let go of at shutdown.

use crate::{commands::*, postgres, rows::*, sqlite, Backend, Store, StoreError};
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
}
