//! The single writer with group commit.
//!
//! Requests hand a job (a closure over the connection) to the writer
//! thread. The writer takes every job waiting, up to `max_batch`, runs each
//! inside its own SAVEPOINT of one transaction, commits once, and only then
//! answers each request. A failing job rolls back to its savepoint and fails
//! alone; a failing commit fails them all. One commit serves the whole
//! group, which is what lets a durable `/schedule` keep up with a bare HTTP
//! server.
//!
//! Why a thread and rusqlite rather than sqlx: sqlx's SQLite driver runs
//! each statement on its own worker thread and hands every statement across
//! threads; measured, those hand-offs were 70% of naga's CPU time. Here a
//! job runs all its statements (prepared once, cached) on the writer
//! thread, and only the job crosses threads. sqlx still migrates the schema
//! and serves the reads.

use crate::StoreError;
use rusqlite::{Connection, TransactionBehavior};
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};
use tokio::sync::{mpsc, oneshot};

/// Called once the transaction holding the job has committed (`None`) or
/// failed to (`Some(reason)`).
type Reply = Box<dyn FnOnce(Option<String>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> (bool, Reply) + Send>;

enum Msg {
    Job(Job),
    Close(oneshot::Sender<()>),
}

#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::UnboundedSender<Msg>,
}

impl Writer {
    /// Starts the writer thread, and a checkpointer thread with its own
    /// connection: it folds the WAL into the database beside the writer, so
    /// that no commit pays for a checkpoint.
    pub(crate) fn spawn(conn: Connection, checkpoints: Connection, max_batch: usize) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let restart = Arc::new(AtomicBool::new(false));
        let (stop_checkpoints, restart_wanted) = (stop.clone(), restart.clone());
        std::thread::Builder::new()
            .name("naga-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpoints, &stop_checkpoints, &restart_wanted))
            .expect("the checkpoint thread starts");
        std::thread::Builder::new()
            .name("naga-writer".into())
            .spawn(move || {
                run(conn, rx, max_batch, &restart);
                stop.store(true, Ordering::Relaxed);
            })
            .expect("the writer thread starts");
        Self { tx }
    }

    /// Runs `f` in the next group transaction; resolves after its commit.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = f(conn);
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |commit_error| {
                let _ = reply_tx.send(match commit_error {
                    None => result,
                    Some(e) => Err(StoreError::Commit(e)),
                });
            });
            (ok, reply)
        });
        self.tx
            .send(Msg::Job(job))
            .map_err(|_| StoreError::NotCommitted)?;
        reply_rx.await.map_err(|_| StoreError::NotCommitted)?
    }

    pub(crate) async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

fn run(
    mut conn: Connection,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    max_batch: usize,
    restart: &AtomicBool,
) {
    let mut jobs: Vec<Job> = Vec::with_capacity(max_batch);
    let mut replies: Vec<Reply> = Vec::with_capacity(max_batch);
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
            let error = commit_group(&mut conn, &mut jobs, &mut replies).err();
            if let Some(e) = &error {
                tracing::error!(jobs = n, error = %e, "group commit failed");
            }
            for reply in replies.drain(..) {
                reply(error.clone());
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

/// Most WAL frames before the writer restarts the log (16 MiB of pages).
const RESTART_FRAMES: i64 = 4096;

/// Every 100 ms, a passive checkpoint: copies committed WAL frames into the
/// database without blocking the writer. Under steady load a passive
/// checkpoint never catches up with the writer, so the WAL would grow
/// without end: past `RESTART_FRAMES` it asks the writer (`restart`) to
/// restart the log between two groups, where no writer competes.
fn checkpoint_loop(conn: Connection, stop: &AtomicBool, restart: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(100));
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)) {
            Ok(frames) if frames > RESTART_FRAMES => restart.store(true, Ordering::Relaxed),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "checkpoint failed"),
        }
    }
}

/// A job dropped without running (on an error here) answers its caller
/// with `StoreError::NotCommitted`.
fn commit_group(
    conn: &mut Connection,
    jobs: &mut Vec<Job>,
    replies: &mut Vec<Reply>,
) -> Result<(), String> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| {
            jobs.clear();
            e.to_string()
        })?;
    // Savepoints through cached statements: parsed once, not per job.
    let run = |sql: &str| -> Result<(), String> {
        tx.prepare_cached(sql)
            .and_then(|mut st| st.execute([]))
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    for job in jobs.drain(..) {
        run("SAVEPOINT job")?;
        let (ok, reply) = job(&tx);
        replies.push(reply);
        if !ok {
            run("ROLLBACK TO job")?;
        }
        run("RELEASE job")?;
    }
    tx.commit().map_err(|e| e.to_string())
}
