//! Retention: what is done with goes after its window (docs/
//! configuration.md, "Retention"), a bounded batch per command, so that
//! the writes of requests go between batches. Unfinished work is never
//! pruned: a queued or running task, a pending callback, and a task that
//! anything kept still hangs on (its callback, a push not yet made).
//!
//! Two kinds of command: a [`Rule`] removes rows of one table past one
//! time (`DELETE … WHERE key IN (SELECT key … LIMIT n)`); the task stage
//! ([`Store::prune_tasks`]) walks the tasks in their order and removes an
//! ended task with its steps, callbacks and push configs, leaving its
//! request id behind (`pruned_tasks`). A session's tasks go oldest first:
//! one of them kept keeps the later ones of its session in that pass, so
//! that a session's chain (`tasks.prev_seq`) only ever loses its tail.

use crate::{backend::on_backend, backend::Commands, ReadPool, Store, StoreError};
use naga_core::{time::Millis, TaskStatus};
use std::collections::HashSet;

/// The times before which each kind of record goes: `None` keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cutoffs {
    pub tasks: Option<Millis>,
    pub callbacks: Option<Millis>,
    pub dead_callbacks: Option<Millis>,
    pub conversations: Option<Millis>,
    pub requests: Option<Millis>,
}

impl Cutoffs {
    /// A cutoff as a bound: nothing is older than `i64::MIN`.
    pub(crate) fn bound(cutoff: Option<Millis>) -> Millis {
        cutoff.unwrap_or(i64::MIN)
    }
}

/// The rows one condition on one table prunes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    DeliveredCallbacks,
    DeadCallbacks,
    DeliveredNotifications,
    DeadNotifications,
    RequestIds,
    Messages,
    Dispatches,
    ReceivedCallbacks,
    CompressedMemories,
    FailedAttempts,
}

impl Rule {
    /// The outbox's rules (before the tasks, whose callbacks then are
    /// gone), then the others.
    pub const OUTBOX: [Rule; 4] = [
        Self::DeliveredCallbacks,
        Self::DeadCallbacks,
        Self::DeliveredNotifications,
        Self::DeadNotifications,
    ];
    pub const AFTER_TASKS: [Rule; 6] = [
        Self::RequestIds,
        Self::Messages,
        Self::Dispatches,
        Self::ReceivedCallbacks,
        Self::CompressedMemories,
        Self::FailedAttempts,
    ];

    /// What the log and the report call the rows.
    pub fn label(self) -> &'static str {
        match self {
            Self::DeliveredCallbacks => "callbacks",
            Self::DeadCallbacks => "dead_callbacks",
            Self::DeliveredNotifications => "notifications",
            Self::DeadNotifications => "dead_notifications",
            Self::RequestIds => "request_ids",
            Self::Messages => "messages",
            Self::Dispatches => "dispatches",
            Self::ReceivedCallbacks => "received_callbacks",
            Self::CompressedMemories => "compressed_memories",
            Self::FailedAttempts => "failed_attempts",
        }
    }

    pub fn cutoff(self, c: &Cutoffs) -> Option<Millis> {
        match self {
            Self::DeliveredCallbacks | Self::DeliveredNotifications => c.callbacks,
            Self::DeadCallbacks | Self::DeadNotifications => c.dead_callbacks,
            Self::RequestIds => c.requests,
            Self::Messages
            | Self::Dispatches
            | Self::ReceivedCallbacks
            | Self::CompressedMemories
            | Self::FailedAttempts => c.conversations,
        }
    }

    /// The table, its key, and the condition on `$1` (the cutoff).
    fn parts(self) -> (&'static str, &'static str, &'static str) {
        const DELIVERED: &str = "status = 'delivered' AND delivered_at < $1";
        // A dead row's last attempt is its `next_attempt_at`.
        const DEAD: &str = "status = 'dead' AND next_attempt_at < $1";
        match self {
            Self::DeliveredCallbacks => ("callbacks", "seq", DELIVERED),
            Self::DeadCallbacks => ("callbacks", "seq", DEAD),
            Self::DeliveredNotifications => ("notifications", "seq", DELIVERED),
            Self::DeadNotifications => ("notifications", "seq", DEAD),
            Self::RequestIds => ("pruned_tasks", "id", "pruned_at < $1"),
            Self::Messages => ("messages", "id", "created_at < $1"),
            Self::Dispatches => ("dispatches", "request_id", "created_at < $1"),
            Self::ReceivedCallbacks => (
                "callback_inbox",
                "key",
                "status <> 'pending' AND received_at < $1",
            ),
            Self::CompressedMemories => ("compressed_memories", "id", "created_at < $1"),
            Self::FailedAttempts => (
                "failed_attempts",
                "(session_id, command)",
                "updated_at < $1",
            ),
        }
    }

    /// Removes at most `$2` of the rows (`$1`: the cutoff).
    pub(crate) fn delete_sql(self) -> String {
        let (table, key, condition) = self.parts();
        let columns = key.trim_matches(|c| c == '(' || c == ')');
        format!(
            "DELETE FROM {table} WHERE {key} IN \
             (SELECT {columns} FROM {table} WHERE {condition} LIMIT $2)"
        )
    }

    /// Counts the rows (`$1`: the cutoff).
    pub(crate) fn count_sql(self) -> String {
        let (table, _, condition) = self.parts();
        format!("SELECT COUNT(*) FROM {table} WHERE {condition}")
    }
}

/// One batch of the task stage: which tasks to look at (`pass`), and
/// whether to remove them or only count them (`dry_run`).
#[derive(Debug, Clone)]
pub struct PruneTasks {
    pub cutoffs: Cutoffs,
    /// The time written on the request ids left behind.
    pub now: Millis,
    pub limit: i64,
    pub dry_run: bool,
    pub pass: TaskPass,
}

/// Where a walk through the tasks has got to.
#[derive(Debug, Clone, Default)]
pub struct TaskPass {
    /// The last task looked at (`seq`); the next batch starts after it.
    pub after: i64,
    /// Sessions with a task kept in this pass: their later tasks stay too.
    pub kept_sessions: HashSet<String>,
    /// The walk reached tasks accepted within the window (or the end).
    pub done: bool,
}

/// What one batch of the task stage removed (or would remove).
#[derive(Debug, Clone, Default)]
pub struct TasksPruned {
    pub pass: TaskPass,
    pub tasks: u64,
    pub steps: u64,
    pub callbacks: u64,
    pub push_configs: u64,
}

/// A task as the task stage sees it.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub seq: i64,
    pub id: String,
    pub session_id: String,
    pub status: TaskStatus,
    pub finished_at: Option<Millis>,
    pub accepted_at: Millis,
    /// Something kept hangs on it: a callback within its window (or
    /// pending), a pending notification, a push not made yet.
    pub held: bool,
}

/// The tasks after `$3` in their order, at most `$4`, each with whether
/// something kept hangs on it (`$1`, `$2`: the delivered and the dead
/// callbacks' cutoffs).
pub(crate) const SCAN_TASKS: &str = "\
SELECT t.seq, t.id, t.session_id, t.status, t.finished_at, t.accepted_at,
       (EXISTS (SELECT 1 FROM callbacks c WHERE c.task_id = t.id
                  AND NOT ((c.status = 'delivered' AND c.delivered_at < $1)
                        OR (c.status = 'dead' AND c.next_attempt_at < $2)))
        OR EXISTS (SELECT 1 FROM notifications n WHERE n.status = 'pending' AND n.task_id = t.id)
        OR EXISTS (SELECT 1 FROM push_configs p WHERE p.task_id = t.id AND NOT p.pushed)) AS held
FROM tasks t WHERE t.seq > $3 ORDER BY t.seq LIMIT $4";

impl PruneTasks {
    /// The tasks of `rows` (the batch [`SCAN_TASKS`] read, in order) to
    /// prune; the pass moves past what was looked at.
    pub(crate) fn choose(&self, rows: Vec<Candidate>) -> (TaskPass, Vec<Candidate>) {
        let mut pass = self.pass.clone();
        let Some(cutoff) = self.cutoffs.tasks else {
            pass.done = true;
            return (pass, Vec::new());
        };
        pass.done = (rows.len() as i64) < self.limit;
        let mut chosen = Vec::new();
        for row in rows {
            if row.accepted_at >= cutoff {
                // Accepted within the window: so are (nearly) all after it.
                pass.done = true;
                break;
            }
            pass.after = row.seq;
            let prunable = row.status.is_terminal()
                && row.finished_at.is_some_and(|at| at < cutoff)
                && !row.held
                && !pass.kept_sessions.contains(&row.session_id);
            match prunable {
                true => chosen.push(row),
                false => {
                    pass.kept_sessions.insert(row.session_id);
                }
            }
        }
        (pass, chosen)
    }
}

/// The store's size: rows per table, and bytes where the backend says.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StoreSize {
    /// The database's bytes: SQLite's file (pages in use and free), or
    /// PostgreSQL's database.
    pub bytes: i64,
    /// Of those, pages free for reuse (SQLite; 0 on PostgreSQL).
    pub free_bytes: i64,
    pub tables: Vec<TableSize>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TableSize {
    pub table: String,
    pub rows: i64,
    /// With its indexes (PostgreSQL; SQLite: not measured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
    /// Row versions waiting for vacuum (PostgreSQL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_rows: Option<i64>,
}

/// The tables whose rows are counted.
pub(crate) const TABLES: [&str; 14] = [
    "sessions",
    "analysis_sessions",
    "tasks",
    "steps",
    "callbacks",
    "notifications",
    "push_configs",
    "pruned_tasks",
    "messages",
    "dispatches",
    "callback_inbox",
    "compressed_memories",
    "failed_attempts",
    "nodes",
];

impl Store {
    /// Removes (or with `dry_run` counts) at most `limit` rows of `rule`
    /// older than its cutoff. `None`: another node is pruning now
    /// (PostgreSQL: one node at a time).
    pub async fn prune_rule(
        &self,
        rule: Rule,
        cutoffs: Cutoffs,
        limit: i64,
        dry_run: bool,
    ) -> Result<Option<u64>, StoreError> {
        let Some(cutoff) = rule.cutoff(&cutoffs) else {
            return Ok(Some(0));
        };
        on_backend!(self, |b| b.prune_rule(rule, cutoff, limit, dry_run).await)
    }

    /// One batch of the task stage (see the module's header). `None`:
    /// another node is pruning now.
    pub async fn prune_tasks(&self, batch: PruneTasks) -> Result<Option<TasksPruned>, StoreError> {
        on_backend!(self, |b| b.prune_tasks(batch).await)
    }

    /// Rows per table and bytes, read off the request path: on SQLite
    /// each table's rows are counted (its smallest index is read); on
    /// PostgreSQL they are the statistics' estimates, with each table's
    /// bytes and dead row versions.
    pub async fn size(&self) -> Result<StoreSize, StoreError> {
        match &self.read {
            ReadPool::Sqlite(pool) => sqlite_size(pool).await,
            ReadPool::Postgres(pool) => postgres_size(pool).await,
        }
    }
}

async fn sqlite_size(pool: &sqlx::SqlitePool) -> Result<StoreSize, StoreError> {
    let page: (i64, i64, i64) = sqlx::query_as(
        "SELECT p.page_size, c.page_count, f.freelist_count
         FROM pragma_page_size() p, pragma_page_count() c, pragma_freelist_count() f",
    )
    .fetch_one(pool)
    .await?;
    let mut tables = Vec::new();
    for table in TABLES {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(pool)
            .await?;
        tables.push(TableSize {
            table: table.to_owned(),
            rows,
            ..Default::default()
        });
    }
    Ok(StoreSize {
        bytes: page.0 * page.1,
        free_bytes: page.0 * page.2,
        tables,
    })
}

async fn postgres_size(pool: &sqlx::PgPool) -> Result<StoreSize, StoreError> {
    let bytes: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(pool)
        .await?;
    let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT relname::TEXT, n_live_tup, n_dead_tup, pg_total_relation_size(relid)
         FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname = ANY($1)
         ORDER BY array_position($1, relname::TEXT)",
    )
    .bind(&TABLES[..])
    .fetch_all(pool)
    .await?;
    let tables = rows
        .into_iter()
        .map(|(table, rows, dead, bytes)| TableSize {
            table,
            rows,
            bytes: Some(bytes),
            dead_rows: Some(dead),
        })
        .collect();
    Ok(StoreSize {
        bytes,
        free_bytes: 0,
        tables,
    })
}
