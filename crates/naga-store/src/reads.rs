//! Queries, written once for both backends ([`read!`]). On SQLite they read
//! through the pool and never wait for the writer.

use crate::sql::unfinished;
use crate::{
    read,
    rows::{
        CallRow, CallbackRow, CompressedMemoryRow, FailedAttemptRow, KeyFactRow, Outbox,
        SessionRow, StepRow, TaskRow,
    },
    ReadPool, Store, StoreError,
};
use naga_core::{wire::TaskKind, CallStatus, DeliveryStatus, TaskStatus};
use sqlx::{Database, QueryBuilder};

/// Whose memory.
#[derive(Debug, Clone)]
pub enum MemoryScope {
    Task(String),
    Session(String),
    Global,
}

#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub session_id: Option<String>,
    pub status: Option<TaskStatus>,
    /// Any of these statuses (beside `status`); empty: any.
    pub statuses: Vec<TaskStatus>,
    /// Only tasks whose status last changed at or after this time
    /// ([`crate::TaskRow::updated_at`]).
    pub updated_after: Option<naga_core::time::Millis>,
    pub kind: Option<TaskKind>,
    pub limit: i64,
    pub offset: i64,
}

/// `FROM … WHERE …` of the tasks `filter` selects (`t` the task).
fn push_task_filter<'q, DB: Database>(
    q: &mut QueryBuilder<'q, DB>,
    filter: &'q TaskFilter,
    pg: bool,
) where
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    if let Some(s) = &filter.session_id {
        push_session_task_seqs(q, s);
        // (`CROSS JOIN … ON` is SQLite's way to fix the join order.)
        q.push(if pg { " AS c JOIN" } else { " AS c CROSS JOIN" });
        q.push(" task_rows t ON t.seq = c.seq WHERE 1 = 1");
    } else {
        q.push("task_rows t WHERE 1 = 1");
    }
    if let Some(s) = filter.status {
        q.push(" AND t.status = ").push_bind(s.as_str());
    }
    if !filter.statuses.is_empty() {
        q.push(" AND t.status IN (");
        let mut each = q.separated(", ");
        for s in &filter.statuses {
            each.push_bind(s.as_str());
        }
        q.push(")");
    }
    if let Some(after) = filter.updated_after {
        q.push(" AND COALESCE(t.finished_at, t.started_at, t.accepted_at) >= ")
            .push_bind(after);
    }
    if let Some(k) = filter.kind {
        q.push(" AND t.kind = ").push_bind(k.as_str());
    }
}

/// The seqs of a session's tasks, newest first, as a subquery: its chain,
/// walked from the session's newest task through each task's previous one
/// (see migration 0004). `param` is the placeholder of the session id.
pub(crate) fn session_task_seqs(param: &str) -> String {
    let (head, tail) = SESSION_TASK_SEQS;
    format!("{head}{param}{tail}")
}

/// [`session_task_seqs`] around its placeholder. The recursion adds one row
/// per step, so rows come out in chain order (newest first) and a reader
/// that stops early walks only as far as it reads.
const SESSION_TASK_SEQS: (&str, &str) = (
    "(WITH RECURSIVE chain(seq) AS (
         SELECT last_task_seq FROM sessions WHERE id = ",
    " UNION ALL
         SELECT t.prev_seq FROM chain JOIN tasks t ON t.seq = chain.seq
     ) SELECT seq FROM chain WHERE seq IS NOT NULL)",
);

fn push_session_task_seqs<'q, DB: Database>(q: &mut QueryBuilder<'q, DB>, session_id: &str)
where
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let (head, tail) = SESSION_TASK_SEQS;
    q.push(head).push_bind(session_id.to_owned()).push(tail);
}

impl MemoryScope {
    fn push_where<'q, DB: Database>(&self, q: &mut QueryBuilder<'q, DB>, task_column: &str)
    where
        String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        match self {
            Self::Task(id) => {
                q.push(format_args!(" WHERE {task_column} = "))
                    .push_bind(id.clone());
            }
            Self::Session(id) => {
                q.push(" WHERE session_id = ").push_bind(id.clone());
            }
            Self::Global => {}
        }
    }

    /// ` AND …` selecting the scope's rows of `tasks`.
    fn push_and_tasks<'q, DB: Database>(&self, q: &mut QueryBuilder<'q, DB>)
    where
        String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        match self {
            Self::Task(id) => {
                q.push(" AND id = ").push_bind(id.clone());
            }
            Self::Session(id) => {
                q.push(" AND seq IN ");
                push_session_task_seqs(q, id);
            }
            Self::Global => {}
        }
    }

    /// The same for tables reached through their task (steps have no
    /// session index: the session's chain of tasks leads to them).
    fn push_where_via_task<'q, DB: Database>(&self, q: &mut QueryBuilder<'q, DB>)
    where
        String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        match self {
            Self::Task(id) => {
                q.push(" WHERE task_seq = (SELECT seq FROM tasks WHERE id = ")
                    .push_bind(id.clone())
                    .push(")");
            }
            Self::Session(id) => {
                q.push(" WHERE task_seq IN ");
                push_session_task_seqs(q, id);
            }
            Self::Global => {}
        }
    }
}

impl Store {
    pub async fn task(&self, id: &str) -> Result<Option<TaskRow>, StoreError> {
        task_row(&self.read, id).await
    }

    /// Whether at least `n` tasks of `kind` have not ended (queued or
    /// running, on any node): reads no more than `n` of them.
    pub async fn unfinished_at_least(&self, kind: TaskKind, n: i64) -> Result<bool, StoreError> {
        read!(self, |pool| {
            let count: i64 = sqlx::query_scalar(concat!(
                "SELECT COUNT(*) FROM (SELECT 1 FROM tasks
                     WHERE ",
                unfinished!(),
                " AND kind = $1 LIMIT $2) u"
            ))
            .bind(kind.as_str())
            .bind(n)
            .fetch_one(pool)
            .await?;
            Ok(count >= n)
        })
    }

    /// Tasks, newest first. A session's are read along its chain, which is
    /// newest first already (`CROSS JOIN` keeps the chain the outer loop):
    /// the walk stops once the page is full.
    pub async fn tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskRow>, StoreError> {
        read!(self, |pool, pg| {
            let mut q = QueryBuilder::new("SELECT t.* FROM ");
            push_task_filter(&mut q, filter, pg);
            // (PostgreSQL keeps no order of a join unless asked.)
            if filter.session_id.is_none() || pg {
                q.push(" ORDER BY t.seq DESC");
            }
            q.push(" LIMIT ")
                .push_bind(filter.limit)
                .push(" OFFSET ")
                .push_bind(filter.offset);
            Ok(q.build_query_as().fetch_all(pool).await?)
        })
    }

    /// How many tasks `filter` selects, whatever its page.
    pub async fn count_tasks(&self, filter: &TaskFilter) -> Result<i64, StoreError> {
        read!(self, |pool, pg| {
            let mut q = QueryBuilder::new("SELECT COUNT(*) FROM ");
            push_task_filter(&mut q, filter, pg);
            Ok(q.build_query_scalar().fetch_one(pool).await?)
        })
    }

    /// The calls of a task, in order: each with its outcome once it ended
    /// (read off the step that ended it), else pending while the task is
    /// unfinished, skipped after. The stored array is split here, not by
    /// SQLite's JSON functions, which refuse some JSON that serde_json
    /// reads (nesting deeper than 1,000); text that is not a JSON array is
    /// [`StoreError::Corrupt`].
    pub async fn calls(&self, task_id: &str) -> Result<Vec<CallRow>, StoreError> {
        read!(self, |pool| {
            let task: Option<(i64, TaskStatus, String)> =
                sqlx::query_as("SELECT seq, status, calls FROM tasks WHERE id = $1")
                    .bind(task_id)
                    .fetch_optional(pool)
                    .await
                    .map_err(|e| match e {
                        // Stored as something else than text (SQLite keeps
                        // any type in any column): damaged, not unavailable.
                        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
                            StoreError::Corrupt(format!(
                                "the calls of task `{task_id}` cannot be read back: {e}"
                            ))
                        }
                        e => e.into(),
                    })?;
            let Some((seq, status, calls)) = task else {
                return Ok(Vec::new());
            };
            let payloads: Vec<&serde_json::value::RawValue> = serde_json::from_str(&calls)
                .map_err(|e| {
                    StoreError::Corrupt(format!(
                        "the calls of task `{task_id}` cannot be read back: {e}"
                    ))
                })?;
            let rows: Vec<CallEnd> = sqlx::query_as(
                "SELECT call_idx, success, result, started_at, created_at FROM steps
                 WHERE task_seq = $1 AND call_idx IS NOT NULL AND result IS NOT NULL
                 ORDER BY step_no",
            )
            .bind(seq)
            .fetch_all(pool)
            .await?;
            // The first step that ended each call.
            let mut ends = std::collections::HashMap::with_capacity(rows.len());
            for row in rows {
                ends.entry(row.call_idx).or_insert(row);
            }
            let unfinished = !status.is_terminal();
            Ok(payloads
                .into_iter()
                .enumerate()
                .map(|(idx, payload)| {
                    let idx = idx as i64;
                    let end = ends.remove(&idx);
                    let status = match &end {
                        Some(e) if e.success => CallStatus::Succeeded,
                        Some(_) => CallStatus::Failed,
                        None if unfinished => CallStatus::Pending,
                        None => CallStatus::Skipped,
                    };
                    let end = end.unwrap_or_default();
                    CallRow {
                        task_id: task_id.to_owned(),
                        idx,
                        payload: payload.get().to_owned(),
                        status,
                        result: end.result,
                        started_at: end.started_at,
                        finished_at: end.created_at,
                    }
                })
                .collect())
        })
    }

    pub async fn steps(&self, task_id: &str) -> Result<Vec<StepRow>, StoreError> {
        read!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT task_id, session_id, step_no, call_idx, purpose, content, output, analysis,
                        success, error, created_at
                 FROM steps WHERE task_seq = (SELECT seq FROM tasks WHERE id = $1)
                 ORDER BY step_no",
            )
            .bind(task_id)
            .fetch_all(pool)
            .await?)
        })
    }

    /// A session with its counts: its tasks (counted as they are accepted),
    /// its unfinished ones (found through the index of unfinished tasks).
    /// (`INDEXED BY` is SQLite's; PostgreSQL picks its partial index of
    /// unfinished tasks by session.)
    fn session_select(pg: bool) -> String {
        format!(
            concat!("SELECT s.id, s.created_at, s.last_activity_at, s.task_count,
                (SELECT COUNT(*) FROM tasks t {}
                 WHERE ", unfinished!("t"), " AND t.session_id = s.id) AS active_tasks,
                (SELECT COUNT(*) FROM analysis_sessions a WHERE a.session_id = s.id) AS analysis_sessions
             FROM sessions s"),
            if pg { "" } else { "INDEXED BY tasks_unfinished" }
        )
    }

    /// Sessions, most recently active first.
    pub async fn sessions(&self, limit: i64, offset: i64) -> Result<Vec<SessionRow>, StoreError> {
        read!(self, |pool, pg| {
            Ok(sqlx::query_as(&format!(
                "{} ORDER BY s.last_activity_at DESC LIMIT $1 OFFSET $2",
                Self::session_select(pg)
            ))
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await?)
        })
    }

    pub async fn session(&self, id: &str) -> Result<Option<SessionRow>, StoreError> {
        read!(self, |pool, pg| {
            Ok(
                sqlx::query_as(&format!("{} WHERE s.id = $1", Self::session_select(pg)))
                    .bind(id)
                    .fetch_optional(pool)
                    .await?,
            )
        })
    }

    /// The analysis sessions of a session, oldest first.
    pub async fn analysis_sessions(
        &self,
        session_id: &str,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        read!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT id, created_at FROM analysis_sessions WHERE session_id = $1 ORDER BY created_at, id",
            )
            .bind(session_id)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Key facts, newest first.
    pub async fn key_facts(
        &self,
        scope: &MemoryScope,
        limit: i64,
    ) -> Result<Vec<KeyFactRow>, StoreError> {
        read!(self, |pool| {
            let mut q = QueryBuilder::new(
                "SELECT key, session_id, task_id, value, created_at FROM key_facts",
            );
            scope.push_where_via_task(&mut q);
            q.push(" ORDER BY task_seq DESC, step_no DESC LIMIT ")
                .push_bind(limit);
            Ok(q.build_query_as().fetch_all(pool).await?)
        })
    }

    /// Failed-attempt counters, most failed first.
    pub async fn failed_attempts(
        &self,
        scope: &MemoryScope,
        limit: i64,
    ) -> Result<Vec<FailedAttemptRow>, StoreError> {
        read!(self, |pool| {
            let mut q = QueryBuilder::new("SELECT * FROM failed_attempts");
            scope.push_where(&mut q, "last_task_id");
            q.push(" ORDER BY count DESC, command LIMIT ")
                .push_bind(limit);
            Ok(q.build_query_as().fetch_all(pool).await?)
        })
    }

    /// Summaries, newest first: the deterministic one of each finished task
    /// and those written later (by an LLM).
    pub async fn compressed_memories(
        &self,
        scope: &MemoryScope,
        limit: i64,
    ) -> Result<Vec<CompressedMemoryRow>, StoreError> {
        read!(self, |pool| {
            let mut q = QueryBuilder::new(
                "SELECT -seq AS id, session_id, id AS task_id, 'deterministic' AS method,
                        summary, finished_at AS created_at FROM tasks WHERE summary IS NOT NULL",
            );
            scope.push_and_tasks(&mut q);
            q.push(" UNION ALL SELECT id, session_id, task_id, method, summary, created_at FROM compressed_memories");
            scope.push_where(&mut q, "task_id");
            q.push(" ORDER BY created_at DESC, id DESC LIMIT ")
                .push_bind(limit);
            Ok(q.build_query_as().fetch_all(pool).await?)
        })
    }

    /// Tasks of one kind by state: `[all, queued or running, succeeded,
    /// failed or timed out]`.
    pub async fn task_counts(&self, kind: TaskKind) -> Result<[i64; 4], StoreError> {
        read!(self, |pool| {
            let (all, active, done, failed): (i64, i64, i64, i64) = sqlx::query_as(concat!(
                "SELECT COUNT(*),
                        COUNT(*) FILTER (WHERE ",
                unfinished!(),
                "),
                    COUNT(*) FILTER (WHERE status = 'succeeded'),
                    COUNT(*) FILTER (WHERE status IN ('failed', 'timed_out'))
                 FROM tasks WHERE kind = $1"
            ))
            .bind(kind.as_str())
            .fetch_one(pool)
            .await?;
            Ok([all, active, done, failed])
        })
    }

    /// How many summaries, key facts and failed-attempt counters a scope's
    /// memory holds.
    pub async fn memory_counts(&self, scope: &MemoryScope) -> Result<[usize; 3], StoreError> {
        read!(self, |pool| {
            let mut compressed =
                QueryBuilder::new("SELECT (SELECT COUNT(*) FROM tasks WHERE summary IS NOT NULL");
            scope.push_and_tasks(&mut compressed);
            compressed.push(") + (SELECT COUNT(*) FROM compressed_memories");
            scope.push_where(&mut compressed, "task_id");
            compressed.push(")");
            let mut facts = QueryBuilder::new("SELECT COUNT(*) FROM key_facts");
            scope.push_where_via_task(&mut facts);
            let mut failed = QueryBuilder::new("SELECT COUNT(*) FROM failed_attempts");
            scope.push_where(&mut failed, "last_task_id");
            let mut counts = [0; 3];
            for (n, mut q) in counts.iter_mut().zip([compressed, facts, failed]) {
                let found: i64 = q.build_query_scalar().fetch_one(pool).await?;
                *n = found.max(0) as usize;
            }
            Ok(counts)
        })
    }

    pub async fn callback(&self, id: &str) -> Result<Option<CallbackRow>, StoreError> {
        callback_row(&self.read, id).await
    }

    /// Callbacks, newest first, optionally of one status.
    pub async fn callbacks(
        &self,
        status: Option<DeliveryStatus>,
        limit: i64,
    ) -> Result<Vec<CallbackRow>, StoreError> {
        read!(self, |pool| {
            let mut q = QueryBuilder::new(concat!(
                "SELECT ",
                crate::callback_without_body!(),
                " FROM callbacks"
            ));
            if let Some(s) = status {
                q.push(" WHERE status = ").push_bind(s.as_str());
            }
            q.push(" ORDER BY seq DESC LIMIT ").push_bind(limit);
            Ok(q.build_query_as().fetch_all(pool).await?)
        })
    }

    /// The callbacks of a task (one, or none: a replay delivers the same
    /// row again), newest first.
    pub async fn callbacks_of_task(&self, task_id: &str) -> Result<Vec<CallbackRow>, StoreError> {
        read!(self, |pool| {
            Ok(sqlx::query_as(concat!(
                "SELECT ",
                crate::callback_without_body!(),
                " FROM callbacks WHERE task_id = $1 ORDER BY seq DESC"
            ))
            .bind(task_id)
            .fetch_all(pool)
            .await?)
        })
    }

    /// The body of an outbox row, read as its delivery starts.
    pub async fn callback_body(
        &self,
        outbox: Outbox,
        seq: i64,
    ) -> Result<Option<String>, StoreError> {
        let table = match outbox {
            Outbox::Callbacks => "callbacks",
            Outbox::Notifications => "notifications",
        };
        read!(self, |pool| {
            let sql = format!("SELECT body FROM {table} WHERE seq = $1");
            Ok(sqlx::query_scalar(&sql)
                .bind(seq)
                .fetch_optional(pool)
                .await?)
        })
    }

    /// Callbacks still to deliver, oldest first: what a restart sends.
    pub async fn pending_callbacks(&self) -> Result<Vec<CallbackRow>, StoreError> {
        read!(self, |pool| {
            Ok(
                sqlx::query_as("SELECT * FROM callbacks WHERE status = 'pending' ORDER BY seq")
                    .fetch_all(pool)
                    .await?,
            )
        })
    }

    /// The state `/metrics` shows: tasks queued and running (on every
    /// node of a shared database), callbacks dead. (The unfinished tasks'
    /// index's condition is stated as it is written, so that SQLite uses it.)
    pub async fn gauges(&self) -> Result<Gauges, StoreError> {
        read!(self, |pool| {
            Ok(sqlx::query_as(concat!(
                "SELECT (SELECT COUNT(*) FROM tasks WHERE ",
                unfinished!(),
                "
                                                     AND status = 'queued') AS queued_tasks,
                        (SELECT COUNT(*) FROM tasks WHERE ",
                unfinished!(),
                "
                                                     AND status = 'running') AS running_tasks,
                        (SELECT COUNT(*) FROM callbacks WHERE status = 'dead') AS dead_callbacks"
            ))
            .fetch_one(pool)
            .await?)
        })
    }

    /// Counts for `/health` and `/memory/global`.
    pub async fn counts(&self) -> Result<Counts, StoreError> {
        read!(self, |pool| {
            Ok(sqlx::query_as(
                concat!("SELECT (SELECT COUNT(*) FROM sessions) AS sessions,
                        (SELECT COUNT(*) FROM tasks) AS tasks,
                        (SELECT COUNT(*) FROM tasks WHERE ", unfinished!(), ") AS active_tasks,
                        (SELECT COUNT(*) FROM steps) AS steps,
                        (SELECT COUNT(*) FROM callbacks WHERE status = 'pending') AS pending_callbacks,
                        (SELECT COUNT(*) FROM callbacks WHERE status = 'dead') AS dead_callbacks"),
            )
            .fetch_one(pool)
            .await?)
        })
    }
}

/// What `/metrics` reads at each scrape, through indexes only (unfinished
/// tasks, callbacks by status): cheap however large the store.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct Gauges {
    pub queued_tasks: i64,
    pub running_tasks: i64,
    pub dead_callbacks: i64,
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Counts {
    pub sessions: i64,
    pub tasks: i64,
    pub active_tasks: i64,
    pub steps: i64,
    pub pending_callbacks: i64,
    pub dead_callbacks: i64,
}

/// The step that ended a call, as [`Store::calls`] reads it.
#[derive(Debug, Default, sqlx::FromRow)]
struct CallEnd {
    call_idx: i64,
    success: bool,
    result: Option<String>,
    started_at: Option<i64>,
    created_at: Option<i64>,
}

/// A task's row by id.
pub(crate) async fn task_row(read: &ReadPool, id: &str) -> Result<Option<TaskRow>, StoreError> {
    read!(on_pool read, |pool| {
        Ok(sqlx::query_as("SELECT * FROM task_rows WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?)
    })
}

/// A callback's row by id, body included (also what SQLite's requeue reads
/// back).
pub(crate) async fn callback_row(
    read: &ReadPool,
    id: &str,
) -> Result<Option<CallbackRow>, StoreError> {
    read!(on_pool read, |pool| {
        Ok(sqlx::query_as("SELECT * FROM callbacks WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?)
    })
}

/// The rows of `table` (a table or view with `id` and `seq`) whose id is in
/// `ids`, in `seq` order, by one query: what SQLite's claims and redrives
/// read back (they answer ids; PostgreSQL's answer rows).
pub(crate) async fn rows_by_id<T>(
    read: &ReadPool,
    table: &str,
    ids: &[String],
) -> Result<Vec<T>, StoreError>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + Send
        + Unpin,
{
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    read!(on_pool read, |pool| {
        let mut q = QueryBuilder::new(format!("SELECT * FROM {table} WHERE id IN ("));
        let mut list = q.separated(", ");
        for id in ids {
            list.push_bind(id.as_str());
        }
        q.push(") ORDER BY seq");
        Ok(q.build_query_as().fetch_all(pool).await?)
    })
}
