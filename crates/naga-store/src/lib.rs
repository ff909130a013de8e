//! naga's durable store: sessions, analysis sessions, tasks, calls, steps,
//! memory and the callback outbox.
//!
//! [`Store`] is the seam: its methods are the domain commands and queries,
//! one file an entity (`tasks`, `leases`, `outbox`, `memory`,
//! `conversations`; queries in `reads`), and two backends sit behind it,
//! chosen by the database URL, each in a folder with the same files:
//! - `sqlite/` (`sqlite:`, the embedded default): every write goes through
//!   one writer thread that commits many requests in one transaction (group
//!   commit) and answers each when its commit is done; reads use a separate
//!   pool of connections (WAL lets them run beside it).
//! - `postgres/` (`postgres://`): several nodes share one database; each
//!   command is one transaction of its own, safe against the same command
//!   from another node at the same moment.
//!
//! The commands every backend implements are declared once, in
//! `backend::Commands` (one signature each, the same rows back); each
//! entity's `Store` method runs its command on the store's backend
//! (`on_backend!`). A command's data (what it writes, what it answers) is in
//! `commands`, the rows read back in `rows`; queries are written once for
//! both backends (`reads`, through [`read!`]). A PostgreSQL outcome also
//! feeds the write health (`health`).

// Only the SQLite writer (`sqlite::stmts`, `sqlite::wal_vfs`) is unsafe.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

mod backend;
mod commands;
mod conversations;
mod error;
mod health;
mod leases;
mod memory;
mod outbox;
mod postgres;
mod push_configs;
mod reads;
mod retention;
mod rows;
mod sql;
mod sqlite;
mod tasks;

pub use commands::*;
pub use error::StoreError;
pub use reads::{Counts, Gauges, MemoryScope, TaskFilter};
pub use retention::{Cutoffs, PruneTasks, Rule, StoreSize, TableSize, TaskPass, TasksPruned};
pub use rows::*;
/// rusqlite's error types, for callers that build or match them.
pub use rusqlite::{ffi::Error as SqliteFfiError, Error as SqliteError};

use backend::{on_backend, Commands};
use naga_core::config::{StoreConfig, Synchronous};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::ConnectOptions;
use std::{str::FromStr, time::Duration};

/// What the nodes sharing a PostgreSQL database tell each other
/// ([`Store::broadcast`], [`Store::listen`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Session events for SSE listeners connected to another node.
    Events,
    /// Scheduling: a session's batch ended (its next may start), a batch
    /// to interrupt or cancel wherever it runs.
    Work,
}

impl Channel {
    /// The PostgreSQL channel's name (the task ends in `finish_task` name
    /// `naga_work` in their SQL too).
    pub fn name(self) -> &'static str {
        match self {
            Self::Events => "naga_events",
            Self::Work => "naga_work",
        }
    }
}

/// A cheap, cloneable handle to the store.
#[derive(Clone)]
pub struct Store {
    read: ReadPool,
    backend: Backend,
    background: Background,
}

/// The store's own background tasks (listeners of other nodes, the
/// integrity check): they end on `stop`, which [`Store::close`] fires
/// and then waits for them, before the connections close.
#[derive(Clone, Default)]
struct Background {
    stop: tokio_util::sync::CancellationToken,
    tracker: tokio_util::task::TaskTracker,
}

/// Where queries go.
#[derive(Clone)]
enum ReadPool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Where commands go: a backend implementing [`backend::Commands`].
#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Pg),
}

/// Runs `$body` with `$pool` bound to the store's read pool, whichever
/// backend it is (the body is compiled once per backend), and `$pg` (when
/// named) telling whether it is PostgreSQL, for the few queries whose SQL
/// differs. Placeholders are `$1, $2…`, which both take.
macro_rules! read {
    // On a read pool itself (`read!(on_pool &store.read, |pool| …)`).
    (on_pool $read:expr, |$pool:ident $(, $pg:ident)?| $body:expr) => {
        match $read {
            $crate::ReadPool::Sqlite($pool) => {
                $(let $pg = false;)?
                $body
            }
            $crate::ReadPool::Postgres($pool) => {
                $(let $pg = true;)?
                $body
            }
        }
    };
    ($store:expr, |$pool:ident $(, $pg:ident)?| $body:expr) => {
        $crate::read!(on_pool &$store.read, |$pool $(, $pg)?| $body)
    };
}
pub(crate) use read;

/// The columns of an outbox row without its body (which may be megabytes):
/// what a listing shows, and what a claim takes (the body is read as the
/// attempt starts), with the body's length.
macro_rules! callback_without_body {
    () => {
        "seq, id, task_id, url, '' AS body, status, attempts, next_attempt_at, last_error, \
         created_at, delivered_at, CAST(LENGTH(body) AS BIGINT) AS body_len"
    };
}
pub(crate) use callback_without_body;

/// Writes failing for a reason of the storage's, since `since_ms`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreFault {
    pub error: String,
    pub since_ms: i64,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Opens (creating if needed) the database at `url` and migrates it:
    /// `sqlite:…` or `postgres://…` (`postgresql://…`).
    pub async fn open(url: &str, config: &StoreConfig) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Self::open_postgres(url, config).await;
        }
        if !url.starts_with("sqlite:") {
            return Err(StoreError::Unsupported(format!(
                "database url `{url}`: naga stores in sqlite:… or postgres://… databases"
            )));
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match config.synchronous {
                Synchronous::Normal => SqliteSynchronous::Normal,
                Synchronous::Full => SqliteSynchronous::Full,
            })
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .pragma("temp_store", "memory")
            .log_statements(tracing::log::LevelFilter::Trace);
        let mut conn = options.connect().await?;
        MIGRATOR.run(&mut conn).await?;
        sqlx::Connection::close(conn).await?;
        // Every reader is opened now and kept: opening one later needs
        // file descriptors, which slow clients may hold every one of.
        let readers = config.read_connections.max(1);
        let read = SqlitePoolOptions::new()
            .max_connections(readers)
            .min_connections(readers)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.read_only(true))
            .await?;
        open_readers(&read, readers).await?;
        let writer = sqlite::writer(url, config)?;
        let read = ReadPool::Sqlite(read);
        let store = Self {
            backend: Backend::Sqlite(sqlite::Sqlite {
                writer,
                analysis_owners: Default::default(),
                read: read.clone(),
            }),
            read,
            background: Background::default(),
        };
        store.check_integrity_in_background();
        Ok(store)
    }

    /// A shared PostgreSQL database: one pool for commands and queries.
    /// Concurrent migrations by nodes starting together are serialized by
    /// sqlx's advisory lock.
    async fn open_postgres(url: &str, config: &StoreConfig) -> Result<Self, StoreError> {
        use sqlx::migrate::MigrateDatabase;
        if !sqlx::Postgres::database_exists(url).await? {
            // Created if missing, as the SQLite file is; two nodes starting
            // at once: one creates it, the other finds it (42P04), or
            // meets the first's row in the catalogue (23505).
            match sqlx::Postgres::create_database(url).await {
                Err(sqlx::Error::Database(e))
                    if matches!(e.code().as_deref(), Some("42P04" | "23505")) => {}
                other => other?,
            }
            tracing::info!("created the PostgreSQL database");
        }
        let options =
            PgConnectOptions::from_str(url)?.log_statements(tracing::log::LevelFilter::Trace);
        let pool = PgPoolOptions::new()
            .max_connections(config.read_connections.max(1) + 8)
            .min_connections(1)
            // Unreachable: a request fails fast (503), it does not hang.
            .acquire_timeout(PG_ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        POSTGRES_MIGRATOR.run(&pool).await?;
        postgres::define_functions(&pool).await?;
        let background = Background::default();
        let reach = std::sync::Arc::<postgres::Reach>::default();
        let pg = postgres::Pg {
            grouped: postgres::Grouped::start(
                pool.clone(),
                reach.clone(),
                background.stop.clone(),
                &background.tracker,
            ),
            pool: pool.clone(),
            analysis_owners: Default::default(),
            health: Default::default(),
            reach,
        };
        let store = Self {
            read: ReadPool::Postgres(pool),
            backend: Backend::Postgres(pg.clone()),
            background,
        };
        store.probe_in_background(pg);
        Ok(store)
    }

    /// Asks PostgreSQL every second whether it answers, so that a node
    /// with nothing to do also says `degraded` (and `/ready` 503) while the
    /// database is unreachable, and `healthy` again once it is back.
    fn probe_in_background(&self, pg: postgres::Pg) {
        let stop = self.background.stop.clone();
        self.background.tracker.spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(PG_PROBE_EVERY) => {}
                    _ = stop.cancelled() => return,
                }
                let seen = pg.seen();
                let probe = sqlx::query("SELECT 1").execute(&pg.pool);
                let result = tokio::select! {
                    r = tokio::time::timeout(PG_ACQUIRE_TIMEOUT, probe) => r,
                    _ = stop.cancelled() => return,
                };
                let result = match result {
                    Ok(r) => r.map(|_| ()).map_err(StoreError::from),
                    // No answer at all: unreachable, as a refused connection.
                    Err(_) => Err(StoreError::Db(sqlx::Error::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "PostgreSQL did not answer within {} ms",
                            PG_ACQUIRE_TIMEOUT.as_millis()
                        ),
                    )))),
                };
                pg.observe_since(seen, &result);
            }
        });
    }

    /// Sends `payload` to every node listening to `channel` on the same
    /// PostgreSQL database ([`Store::listen`]); nothing on SQLite (one
    /// node). PostgreSQL carries at most 8,000 bytes.
    pub async fn broadcast(&self, channel: Channel, payload: &str) -> Result<(), StoreError> {
        if let Backend::Postgres(pg) = &self.backend {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(channel.name())
                .bind(payload)
                .execute(&pg.pool)
                .await?;
        }
        Ok(())
    }

    /// What the nodes of this PostgreSQL database broadcast on `channel`,
    /// this one's included (`None` on SQLite). A lost connection is opened
    /// again; what was sent meanwhile is lost: a channel is a live view or
    /// a wake-up, never the record of anything.
    pub async fn listen(
        &self,
        channel: Channel,
    ) -> Result<Option<tokio::sync::mpsc::UnboundedReceiver<String>>, StoreError> {
        let Backend::Postgres(pg) = &self.backend else {
            return Ok(None);
        };
        let mut listener = sqlx::postgres::PgListener::connect_with(&pg.pool).await?;
        listener.listen(channel.name()).await?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let stop = self.background.stop.clone();
        self.background.tracker.spawn(async move {
            loop {
                let received = tokio::select! {
                    r = listener.recv() => r,
                    _ = stop.cancelled() => break,
                    _ = tx.closed() => break,
                };
                match received {
                    Ok(n) => {
                        if tx.send(n.payload().to_owned()).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, channel = channel.name(),
                            "broadcasts of other nodes: listening again");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                            _ = stop.cancelled() => break,
                        }
                    }
                }
            }
            // Its connection goes back to the pool, which then closes.
            drop(listener);
            tracing::debug!(
                channel = channel.name(),
                "stopped listening to the other nodes"
            );
        });
        Ok(Some(rx))
    }

    /// Whether other nodes may share this database (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Reads every page once (`PRAGMA quick_check`) beside the running
    /// node: a damaged page in the middle of the file would otherwise go
    /// unnoticed until a request reaches it. What it finds is logged and
    /// shown by [`Store::damage`] (and `/health`); start-up does not wait
    /// for it (it takes seconds on a large store).
    fn check_integrity_in_background(&self) {
        let (ReadPool::Sqlite(read), Backend::Sqlite(sqlite)) = (&self.read, &self.backend) else {
            return;
        };
        let (read, health) = (read.clone(), sqlite.writer.health_handle());
        let stop = self.background.stop.clone();
        self.background.tracker.spawn(async move {
            let check = sqlx::query_as("PRAGMA quick_check(20)").fetch_all(&read);
            let rows: Result<Vec<(String,)>, _> = tokio::select! {
                rows = check => rows,
                _ = stop.cancelled() => return,
            };
            let damage = match rows {
                Ok(rows) if rows.len() == 1 && rows[0].0 == "ok" => {
                    tracing::info!("store integrity checked: ok");
                    return;
                }
                Ok(rows) => rows.into_iter().map(|r| r.0).collect::<Vec<_>>().join("; "),
                Err(e) => e.to_string(),
            };
            tracing::error!(%damage, "the store's file is damaged: restore it from a backup \
                (tasks on readable pages keep working)");
            health.set_damage(damage);
        });
    }

    /// Damage the integrity check found in the store's file, if any.
    pub fn damage(&self) -> Option<String> {
        on_backend!(self, |b| b.damage())
    }

    /// Why writes are failing now (a full disk, an I/O error), if they are.
    pub fn write_fault(&self) -> Option<StoreFault> {
        on_backend!(self, |b| b.write_fault())
    }

    /// Stops the store's background tasks, waits until every write handed
    /// over so far is committed, then closes.
    pub async fn close(&self) {
        self.background.stop.cancel();
        self.background.tracker.close();
        self.background.tracker.wait().await;
        on_backend!(self, |b| b.close().await);
        read!(self, |pool| pool.close().await)
    }
}

/// Writes a consistent copy of the SQLite store at `url` to `to` (which
/// must not exist), also while a naga runs on it: SQLite's `VACUUM INTO`
/// reads one snapshot (the WAL's newest pages included) and writes a
/// compact database that naga opens as it is. PostgreSQL is refused:
/// `pg_dump` copies it.
pub async fn backup(url: &str, to: &std::path::Path) -> Result<u64, StoreError> {
    if !url.starts_with("sqlite:") {
        return Err(StoreError::Unsupported(
            "naga backup copies an SQLite store; for PostgreSQL use pg_dump (e.g. \
             `pg_dump -Fc -f naga.dump <database>`, restored with pg_restore)"
                .into(),
        ));
    }
    if to.exists() {
        return Err(StoreError::Unsupported(format!(
            "`{}` exists already: a backup is written to a new file",
            to.display()
        )));
    }
    let from = sqlite::path(url).to_owned();
    if !std::path::Path::new(&from).exists() {
        return Err(StoreError::Unsupported(format!("no store at `{from}`")));
    }
    let to = to.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open_with_flags(
            &from,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
        )?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.execute("VACUUM INTO ?1", [to.to_string_lossy()])?;
        Ok(std::fs::metadata(&to).map(|m| m.len()).unwrap_or(0))
    })
    .await
    .map_err(|e| StoreError::Unsupported(format!("the backup stopped: {e}")))?
}

/// Longest wait for a PostgreSQL connection (and for the probe's answer).
const PG_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often a node asks PostgreSQL whether it answers.
const PG_PROBE_EVERY: Duration = Duration::from_secs(1);

/// Opens `n` connections of `pool` at once (a pool opens its
/// `min_connections` in the background): held together, then handed back.
async fn open_readers(pool: &sqlx::SqlitePool, n: u32) -> Result<(), StoreError> {
    let mut held = Vec::with_capacity(n as usize);
    for _ in 0..n {
        held.push(pool.acquire().await?);
    }
    Ok(())
}
