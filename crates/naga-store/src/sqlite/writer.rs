//! The single writer with group commit.
//!
//! Requests hand a job (a closure over the connection) to the writer
//! thread. The writer takes every job waiting, up to `max_batch`, runs them
//! all in one transaction, commits once, and only then answers each
//! request. One commit serves the whole group, which is what lets a durable
//! `/schedule` keep up with a bare HTTP server.
//!
//! A job that fails must leave no trace while the others commit. Jobs run
//! optimistically, without savepoints (a savepoint per job copied every
//! page it touched into the sub-journal: a fifth of the writer's time).
//! When one fails, the transaction is rolled back and the group runs again
//! from the start, each job in its own savepoint, the failed one left out:
//! it keeps the error it got, since the jobs before it see the same state
//! again. So jobs may run twice and must be plain functions of their
//! inputs (`Fn`), which they are: times and ids are decided by the caller.
//!
//! Why a thread and rusqlite rather than sqlx: sqlx's SQLite driver runs
//! each statement on its own worker thread and hands every statement across
//! threads; measured, those hand-offs were 70% of naga's CPU time. Here a
//! job runs all its statements (prepared once, cached) on the writer
//! thread, and only the job crosses threads. sqlx still migrates the schema
//! and serves the reads.

use super::stmts::Db;
use crate::{health::Health, StoreError};
use rusqlite::Connection;
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};
use tokio::sync::{mpsc, oneshot};

/// One request's work, as the writer thread sees it.
trait Job: Send {
    /// Runs against the open transaction, keeping its result; false when
    /// it failed (its changes must not stay).
    fn run(&mut self, conn: &Db) -> bool;
    /// Answers the caller once the transaction holding the job committed
    /// (`None`) or failed to (`Some(reason)`).
    fn answer(self: Box<Self>, commit_error: Option<String>);
    /// Why the job failed, when the storage was at fault (a full disk).
    fn storage_fault(&self) -> Option<String>;
}

struct Pending<T, F> {
    work: F,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<(Result<T, StoreError>, F)>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send,
    F: Fn(&Db) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Db) -> bool {
        let result = (self.work)(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn storage_fault(&self) -> Option<String> {
        match &self.result {
            Some(Err(e)) if e.is_transient() => Some(e.to_string()),
            _ => None,
        }
    }

    fn answer(self: Box<Self>, commit_error: Option<String>) {
        let answer = match (commit_error, self.result) {
            (None, Some(result)) => result,
            (Some(e), _) => Err(StoreError::Commit(e)),
            (None, None) => Err(StoreError::NotCommitted),
        };
        // The work goes back with the answer: the caller frees what it
        // holds, not the writer thread, which every request waits on.
        let _ = self.reply.send((answer, self.work));
    }
}

enum Msg {
    Job(Box<dyn Job>),
    Close(oneshot::Sender<()>),
}

#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::UnboundedSender<Msg>,
    health: Arc<Health>,
}

impl Writer {
    /// Starts the writer thread, and a checkpointer thread with its own
    /// connection: it folds the WAL into the database beside the writer, so
    /// that no commit pays for a checkpoint.
    pub(crate) fn spawn(conn: Connection, checkpoints: Connection, max_batch: usize) -> Self {
        Self::spawn_with(conn, checkpoints, max_batch, RESTART_FRAMES)
    }

    /// `spawn`, restarting the WAL past `restart_frames` frames.
    fn spawn_with(
        conn: Connection,
        checkpoints: Connection,
        max_batch: usize,
        restart_frames: i64,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let health = Arc::new(Health::default());
        let writer_health = health.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let restart = Arc::new(AtomicBool::new(false));
        let (stop_checkpoints, restart_wanted) = (stop.clone(), restart.clone());
        std::thread::Builder::new()
            .name("naga-checkpoint".into())
            .spawn(move || {
                checkpoint_loop(
                    checkpoints,
                    restart_frames,
                    &stop_checkpoints,
                    &restart_wanted,
                )
            })
            .expect("the checkpoint thread starts");
        std::thread::Builder::new()
            .name("naga-writer".into())
            .spawn(move || {
                run(conn, rx, max_batch, &restart, &writer_health);
                stop.store(true, Ordering::Relaxed);
            })
            .expect("the writer thread starts");
        Self { tx, health }
    }

    pub(crate) fn health(&self) -> &Health {
        &self.health
    }

    pub(crate) fn health_handle(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// Runs `work` in the next group transaction (possibly twice, see the
    /// module's note); resolves after its commit.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Db) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Pending {
            work,
            result: None,
            reply,
        });
        self.tx
            .send(Msg::Job(job))
            .map_err(|_| StoreError::NotCommitted)?;
        let (answer, work) = answer.await.map_err(|_| StoreError::NotCommitted)?;
        drop(work);
        answer
    }

    pub(crate) async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

fn run(
    conn: Connection,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    max_batch: usize,
    restart: &AtomicBool,
    health: &Health,
) {
    let conn = Db::new(conn);
    let mut jobs: Vec<Box<dyn Job>> = Vec::with_capacity(max_batch);
    while let Some(msg) = rx.blocking_recv() {
        let mut closing = None;
        match msg {
            Msg::Job(job) => jobs.push(job),
            Msg::Close(done) => closing = Some(done),
        }
        while closing.is_none() && jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(Msg::Job(job)) => jobs.push(job),
                Ok(Msg::Close(done)) => closing = Some(done),
                Err(_) => break,
            }
        }
        if !jobs.is_empty() {
            let n = jobs.len();
            let began = std::time::Instant::now();
            let error = commit_group(&conn, &mut jobs).err();
            metrics::histogram!("naga_store_commit_seconds").record(began.elapsed().as_secs_f64());
            if let Some(e) = &error {
                tracing::error!(jobs = n, error = %e, "group commit failed");
            }
            health.record(
                error
                    .clone()
                    .or_else(|| jobs.iter().find_map(|j| j.storage_fault())),
            );
            for job in jobs.drain(..) {
                job.answer(error.clone());
            }
            if restart.swap(false, Ordering::Relaxed) {
                // Most frames are already copied by the checkpointer: this
                // copies the rest and makes the next commit start the log over.
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "WAL restart failed; the checkpointer asks again");
                }
            }
        }
        if let Some(done) = closing {
            // Fold the WAL into the database file on a clean shutdown.
            let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
            let _ = done.send(());
            return;
        }
    }
}

/// Most WAL frames before the writer restarts the log (64 MiB of 4 KiB
/// pages). A restart holds the writer (and every request waiting on it) for
/// its copies and syncs: 2–6 ms here once the checkpointer has caught up and
/// synced the database file (below); 10–45 ms before, which set the p99.
const RESTART_FRAMES: i64 = 16384;

/// Before asking for a restart, the checkpointer runs up to this many more
/// rounds of a passive checkpoint and a sync of the database file, until a
/// round leaves fewer than `CATCH_UP_FRAMES` frames to copy and its sync
/// took under `CAUGHT_UP_SYNC`: the restart (which holds the writer) then
/// copies and syncs only what arrived during that last short round.
const CATCH_UP_ROUNDS: usize = 20;
const CATCH_UP_FRAMES: i64 = 256;
const CAUGHT_UP_SYNC: std::time::Duration = std::time::Duration::from_millis(2);

/// How often the checkpointer copies while commits arrive, and while none
/// did since its last round. Copying every 100 ms under load moved ~1,600
/// pages at once and held a core for several ms, all requests in flight
/// waiting behind it: the `/schedule` p99 in naga-bench went 8–10 ms → 5–8
/// ms at 25 ms, for ~0.7 µs more checkpointer CPU per request (a page
/// rewritten within 100 ms is now copied up to four times).
const CHECKPOINT_BUSY: std::time::Duration = std::time::Duration::from_millis(25);
const CHECKPOINT_IDLE: std::time::Duration = std::time::Duration::from_millis(100);

/// Every `CHECKPOINT_BUSY` (`CHECKPOINT_IDLE` when nothing was committed
/// since the last round), a passive checkpoint: copies committed WAL frames
/// into the database without blocking the writer. Under steady load a passive
/// checkpoint never catches up with the writer, so the WAL would grow
/// without end: past `RESTART_FRAMES` it asks the writer (`restart`) to
/// restart the log between two groups, where no writer competes.
fn checkpoint_loop(conn: Connection, most: i64, stop: &AtomicBool, restart: &AtomicBool) {
    // The database file, to sync from this thread: a passive checkpoint
    // syncs the WAL before it copies, but leaves the database file unsynced
    // until a checkpoint completes, which under load only the restart does.
    let db = conn
        .path()
        .filter(|p| !p.is_empty())
        .and_then(|p| std::fs::File::open(p).ok());
    let passive = || {
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        })
    };
    // Rounds of a passive checkpoint and a sync, until one is short (see
    // `CATCH_UP_ROUNDS`).
    let catch_up = || {
        for _ in 0..CATCH_UP_ROUNDS {
            let Ok((frames, done)) = passive() else { break };
            let synced = std::time::Instant::now();
            if let Some(Err(e)) = db.as_ref().map(std::fs::File::sync_data) {
                tracing::warn!(error = %e, "cannot sync the database file");
                break;
            }
            if frames - done <= CATCH_UP_FRAMES && synced.elapsed() < CAUGHT_UP_SYNC {
                break;
            }
        }
    };
    let wal = conn
        .path()
        .filter(|p| !p.is_empty())
        .map(|p| std::path::PathBuf::from(format!("{p}-wal")));
    // The log's size at the last round: unchanged means nothing was committed.
    let mut last_frames = 0;
    let mut idle_rounds = 0;
    let mut pause = CHECKPOINT_IDLE;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(pause);
        pause = CHECKPOINT_BUSY;
        match passive() {
            // (A restart asked for stays asked for until the writer's next group.)
            Ok((frames, _)) if frames == last_frames => {
                pause = CHECKPOINT_IDLE;
                idle_rounds += 1;
                if idle_rounds >= TRUNCATE_AFTER_IDLE_ROUNDS {
                    idle_rounds = 0;
                    truncate_when_idle(&conn, wal.as_deref());
                }
            }
            Ok((frames, _)) => {
                idle_rounds = 0;
                last_frames = frames;
                if frames > most {
                    catch_up();
                    restart.store(true, Ordering::Relaxed)
                }
            }
            Err(e) => tracing::warn!(error = %e, "checkpoint failed"),
        }
    }
}

/// After this many idle rounds of the checkpointer (~1 s without a commit),
/// the WAL file is cut to nothing. Under load it keeps its size (up to
/// `WAL_KEEP_BYTES` in lib.rs) so that restarts do not pay for a truncate,
/// but a burst left it at its high-water mark for good: on a small volume,
/// the space the next start needed (issue 27: 5.5 MB of WAL on 8 MiB).
const TRUNCATE_AFTER_IDLE_ROUNDS: u32 = 10;

/// A `TRUNCATE` checkpoint, when the WAL file holds anything: copies what is
/// left and cuts the file to zero bytes. It must wait for readers to leave
/// the log and would hold new writes while it waits, so it does not wait: a
/// reader in the way makes it give up until the next idle second.
fn truncate_when_idle(conn: &Connection, wal: Option<&std::path::Path>) {
    let size = wal
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len());
    if size == 0 {
        return;
    }
    let _ = conn.busy_timeout(std::time::Duration::ZERO);
    match conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(0) => tracing::debug!(bytes = size, "idle: the WAL file was cut to nothing"),
        Ok(_) => tracing::debug!(
            bytes = size,
            "idle: a reader kept the WAL; tried again later"
        ),
        Err(e) => tracing::debug!(error = %e, "idle: the WAL could not be cut; tried again later"),
    }
}

/// Runs the group and commits it: first without savepoints; when a job
/// fails, again from the start with a savepoint per job, the failed one
/// left out (it keeps its error).
fn commit_group(conn: &Db, jobs: &mut [Box<dyn Job>]) -> Result<(), String> {
    let failed = {
        let group = Group::begin(conn)?;
        match jobs.iter_mut().position(|job| !job.run(group.0)) {
            None => return group.commit(),
            Some(failed) => failed,
        }
        // Dropping `group` rolls the whole group back.
    };
    tracing::debug!(
        jobs = jobs.len(),
        failed,
        "a job failed: the group runs again with savepoints"
    );
    let group = Group::begin(conn)?;
    for (i, job) in jobs.iter_mut().enumerate() {
        if i == failed {
            continue;
        }
        group.run("SAVEPOINT job")?;
        if !job.run(group.0) {
            group.run("ROLLBACK TO job")?;
        }
        group.run("RELEASE job")?;
    }
    group.commit()
}

/// A group's transaction, begun, committed and (when dropped before its
/// commit) rolled back through cached statements: SQLite parses `BEGIN`
/// and `COMMIT` once, not at every group.
struct Group<'c>(&'c Db);

impl<'c> Group<'c> {
    fn begin(conn: &'c Db) -> Result<Self, String> {
        let group = Self(conn);
        group.run("BEGIN IMMEDIATE")?;
        Ok(group)
    }

    fn run(&self, sql: &'static str) -> Result<(), String> {
        self.0
            .cached(sql)
            .and_then(|mut st| st.execute([]))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn commit(self) -> Result<(), String> {
        let done = self.run("COMMIT");
        if done.is_ok() {
            std::mem::forget(self);
        }
        done
    }
}

impl Drop for Group<'_> {
    fn drop(&mut self) {
        if !self.0.is_autocommit() {
            let _ = self.run("ROLLBACK");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::params;

    fn open(dir: &tempfile::TempDir) -> Connection {
        let c = Connection::open(dir.path().join("w.db")).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
             CREATE TABLE IF NOT EXISTS t (n INTEGER PRIMARY KEY, pad BLOB)",
        )
        .unwrap();
        c
    }

    fn writer(dir: &tempfile::TempDir) -> Writer {
        Writer::spawn(open(dir), open(dir), 512)
    }

    /// Commits a row of a page (4,000 bytes).
    async fn insert_page(w: &Writer, n: i64) {
        w.write(move |c| {
            c.execute(
                "INSERT INTO t (n, pad) VALUES (?1, zeroblob(4000))",
                params![n],
            )?;
            Ok(())
        })
        .await
        .unwrap();
    }

    /// Rows the database file itself holds (what checkpoints copied), read
    /// from a copy of it without its WAL; `None` while a copy is torn by a
    /// checkpoint writing it.
    fn rows_in_database_file(dir: &tempfile::TempDir) -> Option<i64> {
        let copy = dir.path().join("copy.db");
        std::fs::copy(dir.path().join("w.db"), &copy).ok()?;
        let c = Connection::open(&copy).ok()?;
        c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).ok()
    }

    /// The checkpointer slows down while nothing new is committed, but
    /// every committed row still reaches the database file: bursts of
    /// writes with pauses between them (each pause long enough for it to
    /// slow down) are all copied, the last one included.
    #[tokio::test]
    async fn every_burst_of_commits_reaches_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(&dir);
        for burst in 0..3i64 {
            for n in 0..50 {
                w.write(move |c| {
                    c.execute("INSERT INTO t (n) VALUES (?1)", params![burst * 50 + n])?;
                    Ok(())
                })
                .await
                .unwrap();
            }
            let expected = (burst + 1) * 50;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while rows_in_database_file(&dir) != Some(expected) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "burst {burst}: the database file holds {:?} rows, not {expected}",
                    rows_in_database_file(&dir)
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            // Long enough for the checkpointer to find nothing new, twice.
            tokio::time::sleep(3 * CHECKPOINT_IDLE).await;
        }
        w.close().await;
    }

    /// Under steady writes a passive checkpoint never catches up, and the
    /// WAL grew without end (900 MB in 30 s once): past its bound the
    /// writer restarts it.
    #[tokio::test]
    async fn the_wal_stays_bounded_under_steady_writes() {
        let dir = tempfile::tempdir().unwrap();
        let w = Writer::spawn_with(open(&dir), open(&dir), 512, 64);
        let wal = dir.path().join("w.db-wal");
        let mut largest = 0;
        // 3,000 commits of a page each: 12 MB of log without restarts.
        for n in 0..3000i64 {
            insert_page(&w, n).await;
            if n % 100 == 0 {
                largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        // Restarts come at most every 25 ms (the checkpointer's pace), and
        // the pauses cap the pace of writes: a few MB at most, not 12.
        assert!(
            largest < 6_000_000,
            "the WAL reached {largest} bytes with a bound of 64 frames"
        );
        w.close().await;
    }

    /// A burst left the WAL file at its high-water mark until the next
    /// clean stop; once the store is idle it is cut to nothing, and the rows
    /// are all in the database file.
    #[tokio::test]
    async fn an_idle_store_cuts_its_wal_to_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(&dir);
        let wal = dir.path().join("w.db-wal");
        for n in 0..200i64 {
            insert_page(&w, n).await;
        }
        let size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        assert!(size() > 400_000, "the burst wrote {} bytes of WAL", size());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while size() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the WAL still holds {} bytes 10 s after the last commit",
                size()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(rows_in_database_file(&dir), Some(200));
        // Writes go on after the cut.
        w.write(|c| {
            c.execute("INSERT INTO t (n) VALUES (1000)", [])?;
            Ok(())
        })
        .await
        .unwrap();
        w.close().await;
        assert_eq!(rows_in_database_file(&dir), Some(201));
    }

    /// Jobs that fail in the middle of a group leave nothing behind; every
    /// other job of the group commits, and each caller gets its own answer,
    /// computed on the state that was committed.
    #[tokio::test]
    async fn a_failed_job_leaves_no_trace_and_the_rest_of_its_group_commits() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(&dir);
        // The first job holds the writer so that the others queue into one group.
        let hold = w.write(|c| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            c.execute("INSERT INTO t (n) VALUES (0)", [])?;
            Ok(0)
        });
        let jobs = (1..=40i64).map(|n| {
            w.write(move |c| {
                c.execute("INSERT INTO t (n) VALUES (?1)", params![n])?;
                if n % 7 == 0 {
                    return Err(StoreError::Conflict(format!("job {n} fails after writing")));
                }
                // What this job saw: rows so far (the failed ones must not count).
                Ok(c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get::<_, i64>(0))?)
            })
        });
        let (first, answers) = tokio::join!(hold, futures::future::join_all(jobs));
        assert_eq!(first.unwrap(), 0);
        let mut committed = 1;
        for (n, answer) in (1..=40i64).zip(answers) {
            match answer {
                Err(StoreError::Conflict(e)) if n % 7 == 0 => assert!(e.contains(&n.to_string())),
                Ok(seen) if n % 7 != 0 => {
                    committed += 1;
                    assert_eq!(seen, committed, "job {n} saw the rows before it");
                }
                other => panic!("job {n}: {other:?}"),
            }
        }
        let rows: Vec<i64> = w
            .write(|c| {
                let mut st = c.prepare("SELECT n FROM t ORDER BY n")?;
                let rows = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
                Ok(rows)
            })
            .await
            .unwrap();
        let expected: Vec<i64> = (0..=40).filter(|n| n % 7 != 0 || *n == 0).collect();
        assert_eq!(rows, expected);
        w.close().await;
    }
}
