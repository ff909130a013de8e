//! Leases: which node holds a task or a pending callback, renewed by its
//! holder, taken over once expired, let go of at shutdown.

use crate::sql::unfinished;
use crate::{
    backend::{on_backend, Commands},
    commands::{Claim, Holding, Unheld},
    read,
    rows::{NodeRow, TaskRow},
    Store, StoreError,
};
use naga_core::time::Millis;

impl Store {
    /// Extends the leases `owner` holds on what it works on (`holding`);
    /// any other row held in its name lapses (see [`Holding`]). Returns how
    /// many tasks' leases it extended.
    pub async fn renew_leases(
        &self,
        owner: &str,
        until: Millis,
        holding: Holding,
    ) -> Result<u64, StoreError> {
        on_backend!(self, |b| b.renew_leases(owner, until, holding).await)
    }

    /// Claims and starts (as running, held by `claim.lease`) up to `limit`
    /// runnable tasks, the earliest accepted first: ready (its session's
    /// earliest unfinished batch, or `parallel`) and held by nobody (never
    /// claimed, let go of, its lease expired, or its holder's heartbeat
    /// older than `claim.dead_before`). Each goes to one node. What a node
    /// with free workers runs next: the backlog, a restart's or a dead
    /// node's tasks alike.
    pub async fn claim_runnable(
        &self,
        claim: Claim,
        limit: i64,
    ) -> Result<Vec<TaskRow>, StoreError> {
        on_backend!(self, |b| b.claim_runnable(claim, limit).await)
    }

    /// Claims, without starting them, the unfinished tasks of `which` that
    /// nobody else holds (as [`Store::claim_runnable`] says), ready or not:
    /// to end them (a cancel, an interrupt).
    pub async fn claim_unheld(
        &self,
        claim: Claim,
        which: Unheld,
    ) -> Result<Vec<TaskRow>, StoreError> {
        on_backend!(self, |b| b.claim_unheld(claim, which).await)
    }

    /// Readies every session's earliest unfinished batch that is not (the
    /// repair of a task's end whose node died before it readied the next:
    /// on PostgreSQL that is a statement after the end's commit; SQLite
    /// does both in one transaction). Returns how many waiting unheld ones
    /// it readied.
    pub async fn ready_heads(&self) -> Result<u64, StoreError> {
        on_backend!(self, |b| b.ready_heads().await)
    }

    /// Lets go of one task `owner` holds (one it cannot run now), so that
    /// the next sweep claims it again.
    pub async fn release_lease(&self, task_id: &str, owner: &str) -> Result<(), StoreError> {
        on_backend!(self, |b| b.release_lease(task_id, owner).await)
    }

    /// Lets go of every task and delivery `owner` holds, so that the next
    /// run or another node resumes them at once (a graceful stop; and a
    /// start, for what the node's last run held).
    pub async fn release_leases(&self, owner: &str) -> Result<u64, StoreError> {
        on_backend!(self, |b| b.release_leases(owner).await)
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
        on_backend!(self, |b| b.node_heartbeat(id, now, starting).await)
    }

    /// A node stopped cleanly (after letting go of its leases).
    pub async fn node_stopped(&self, id: &str, now: Millis) -> Result<(), StoreError> {
        on_backend!(self, |b| b.node_stopped(id, now).await)
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
            let tasks = sqlx::query_as(concat!(
                "SELECT lease_owner, COUNT(*) FROM tasks
                     WHERE ",
                unfinished!(),
                " AND lease_owner IS NOT NULL
                     GROUP BY lease_owner"
            ))
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
