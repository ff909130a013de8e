//! The store's commands on PostgreSQL: each one transaction, correct when
//! several nodes run the same command at the same moment.
//!
//! What SQLite gets from its single writer, these get from the database:
//! - a task's row is locked (`FOR UPDATE`) before a step or its end is
//!   written, so step numbers never collide and a node that lost the lease
//!   is refused (fencing);
//! - a session's row is locked while a task joins its chain, so chains and
//!   counts stay whole;
//! - callback sequence numbers come from the table's sequence, not `MAX+1`;
//! - two nodes accepting the same request id at once: `ON CONFLICT` lets
//!   one in, the other waits for its commit and answers with its task.

mod accept;
mod backend;
mod conversations;
mod grouped;
mod leases;
mod memory;
mod outbox;
mod push_configs;
mod reach;
mod retention;
mod tasks;

pub(crate) use {
    accept::{accept_group, accept_one, insert_task, Accept, Accepted},
    conversations::{
        add_dispatch, add_message, answer_callback, delete_conversation, receive_callback,
    },
    grouped::{ready_sessions, Grouped},
    leases::{
        claim_runnable, claim_unheld, node_heartbeat, node_stopped, release_lease, release_leases,
        renew_leases,
    },
    memory::{add_compressed_memory, clear_memory},
    outbox::{claim_deliveries, record_deliveries_in, redrive_dead, requeue_callback},
    push_configs::{add_push_config, delete_push_config, drop_callback, enqueue_push},
    reach::Reach,
    tasks::{add_step, finish_call, finish_task, ready_heads, ready_next},
};

use crate::{
    commands::{AnalysisOwners, FirstAnswer},
    StoreError,
};
use naga_core::time::Millis;
use sqlx::{postgres::PgRow, PgPool, Postgres, Row, Transaction};

type Tx = Transaction<'static, Postgres>;

/// The accept rules (`functions.sql`): applied at every start, after the
/// migrations; nodes starting together take turns (an advisory lock held
/// until the transaction ends).
pub(crate) async fn define_functions(pool: &PgPool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('naga_functions'))")
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(include_str!("functions.sql"))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// The PostgreSQL backend: its pool, and the analysis sessions known to be
/// committed with their session (as the SQLite writer keeps them).
#[derive(Clone)]
pub(crate) struct Pg {
    pub pool: PgPool,
    pub analysis_owners: AnalysisOwners,
    /// Whether writes fail for a reason of the database's (as the SQLite
    /// writer keeps it): `/health` says degraded, `/ready` 503.
    pub health: std::sync::Arc<crate::health::Health>,
    /// The ends of calls and tasks, written in groups.
    pub grouped: Grouped,
    /// Whether the database was reached a moment ago: while it was not,
    /// a batch is refused at once (503) rather than after the pool's wait,
    /// until a command or the probe (every second) reaches it again.
    pub reach: std::sync::Arc<Reach>,
}

impl Pg {
    /// What a command notes as it begins (see [`Pg::observe_since`]).
    pub fn seen(&self) -> u64 {
        self.reach.seen()
    }

    /// Notes how a command that began at `seen` ended: a storage fault
    /// starts (or continues) a failing period, a success ends it; unless
    /// the database was found the other way since it began (see [`Reach`]).
    pub fn observe_since<T>(&self, seen: u64, result: &Result<T, StoreError>) {
        match result {
            Ok(_) => {
                if self.reach.reached_since(seen) {
                    self.health.record(None)
                }
            }
            Err(e) if e.is_transient() => {
                if self.reach.failed_since(seen, e.is_unreachable()) {
                    self.health.record(Some(e.to_string()))
                }
            }
            Err(_) => {}
        }
    }

    /// The database was unreachable a moment ago: an error saying so.
    pub fn known_unreachable(&self) -> Option<StoreError> {
        self.reach.is_down().then(|| {
            let fault = self.health.fault().map(|f| f.error).unwrap_or_default();
            unreachable_error(&fault)
        })
    }
}

/// What a command refused because the database was unreachable a moment
/// ago answers: unreachable (503), never a request's fault.
pub(crate) fn unreachable_error(fault: &str) -> StoreError {
    StoreError::Db(sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        format!("PostgreSQL is unreachable: {fault}"),
    )))
}

impl Pg {
    /// Runs a command and notes how it ended (see [`Pg::observe_since`]).
    pub async fn observed<T>(
        &self,
        command: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let began = std::time::Instant::now();
        let seen = self.seen();
        let result = command.await;
        metrics::histogram!("naga_store_commit_seconds").record(began.elapsed().as_secs_f64());
        self.observe_since(seen, &result);
        result
    }
}

impl std::ops::Deref for Pg {
    type Target = PgPool;
    fn deref(&self) -> &PgPool {
        &self.pool
    }
}

const FIRST_ANSWER: &str =
    "SELECT response, id, kind, session_id, analysis_session_id, calls_count, accepted_at FROM tasks";

fn first_answer(r: &PgRow) -> Result<FirstAnswer, sqlx::Error> {
    Ok(FirstAnswer {
        response: r.try_get(0)?,
        id: r.try_get(1)?,
        kind: r.try_get(2)?,
        session_id: r.try_get(3)?,
        analysis_session_id: r.try_get(4)?,
        calls_count: r.try_get(5)?,
        accepted_at: r.try_get(6)?,
    })
}

async fn touch_session(tx: &mut Tx, session_id: &str, now: Millis) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO sessions (id, created_at, last_activity_at) VALUES ($1, $2, $2)
         ON CONFLICT (id) DO UPDATE SET last_activity_at = GREATEST(sessions.last_activity_at,
                                                                    EXCLUDED.last_activity_at)",
    )
    .bind(session_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_storage_fault_makes_the_store_degraded_until_a_command_succeeds() {
        let pool = PgPool::connect_lazy("postgres://nobody@127.0.0.1:9/none").unwrap();
        let (stop, tracker) = (Default::default(), Default::default());
        let pg = Pg {
            grouped: Grouped::start(pool.clone(), Default::default(), stop, &tracker),
            pool,
            analysis_owners: AnalysisOwners::default(),
            health: Default::default(),
            reach: Default::default(),
        };
        assert!(pg.health.fault().is_none());
        pg.observe_since::<()>(
            pg.seen(),
            &Err(StoreError::Conflict("a request's own fault".into())),
        );
        assert!(pg.health.fault().is_none(), "not the storage's fault");
        pg.observe_since::<()>(pg.seen(), &Err(StoreError::Db(sqlx::Error::PoolTimedOut)));
        let fault = pg.health.fault().expect("degraded");
        pg.observe_since::<()>(pg.seen(), &Err(StoreError::Db(sqlx::Error::PoolTimedOut)));
        assert_eq!(
            pg.health.fault().unwrap().since_ms,
            fault.since_ms,
            "since the first"
        );
        let before = pg.seen();
        pg.observe_since(before, &Ok(()));
        assert!(pg.health.fault().is_none(), "writes again");
        // A command that began before that success and failed since (it
        // waited for a connection through the outage) is old news.
        pg.observe_since::<()>(before, &Err(StoreError::Db(sqlx::Error::PoolTimedOut)));
        assert!(pg.health.fault().is_none(), "still writing");
        assert!(pg.known_unreachable().is_none(), "batches are not refused");
    }
}
