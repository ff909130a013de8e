//! The single writer with group commit.
//!
//! Requests hand a job (a closure over the connection) to the writer task.
//! The writer takes every job waiting, up to `max_batch`, runs each inside
//! its own SAVEPOINT of one transaction, commits once, and only then answers
//! each request. A failing job rolls back to its savepoint and fails alone;
//! a failing commit fails them all. One fsync serves the whole group, which is
//! what lets a durable `/schedule` keep up with a bare HTTP server.

use crate::StoreError;
use futures::future::BoxFuture;
use sqlx::{Executor, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

/// Called once the transaction holding the job has committed (`None`) or
/// failed to (`Some(reason)`).
type Reply = Box<dyn FnOnce(Option<String>) + Send>;
type Job = Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, (bool, Reply)> + Send>;

enum Msg {
    Job(Job),
    Close(oneshot::Sender<()>),
}

#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::UnboundedSender<Msg>,
}

impl Writer {
    pub(crate) fn spawn(conn: SqliteConnection, max_batch: usize) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(conn, rx, max_batch));
        Self { tx }
    }

    /// Runs `f` in the next group transaction; resolves after its commit.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            Box::pin(async move {
                let result = f(conn).await;
                let ok = result.is_ok();
                let reply: Reply = Box::new(move |commit_error| {
                    let _ = reply_tx.send(match commit_error {
                        None => result,
                        Some(e) => Err(StoreError::Commit(e)),
                    });
                });
                (ok, reply)
            })
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

async fn run(mut conn: SqliteConnection, mut rx: mpsc::UnboundedReceiver<Msg>, max_batch: usize) {
    let mut jobs: Vec<Job> = Vec::with_capacity(max_batch);
    let mut replies: Vec<Reply> = Vec::with_capacity(max_batch);
    while let Some(msg) = rx.recv().await {
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
            let error = commit_group(&mut conn, &mut jobs, &mut replies).await;
            if let Some(e) = &error {
                tracing::error!(jobs = n, error = %e, "group commit failed");
            }
            for reply in replies.drain(..) {
                reply(error.clone());
            }
        }
        if let Some(done) = closing {
            let _ = done.send(());
            break;
        }
    }
    // Fold the WAL into the database file on a clean shutdown.
    let _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").await;
    let _ = sqlx::Connection::close(conn).await;
}

async fn commit_group(
    conn: &mut SqliteConnection,
    jobs: &mut Vec<Job>,
    replies: &mut Vec<Reply>,
) -> Option<String> {
    // A job dropped without running (on an error below) answers its caller
    // with `StoreError::NotCommitted`.
    if let Err(e) = conn.execute("BEGIN IMMEDIATE").await {
        jobs.clear();
        return Some(e.to_string());
    }
    for job in jobs.drain(..) {
        if let Err(e) = conn.execute("SAVEPOINT job").await {
            let _ = conn.execute("ROLLBACK").await;
            return Some(e.to_string());
        }
        let (ok, reply) = job(conn).await;
        replies.push(reply);
        let end = if ok {
            "RELEASE job"
        } else {
            "ROLLBACK TO job; RELEASE job"
        };
        if let Err(e) = conn.execute(end).await {
            let _ = conn.execute("ROLLBACK").await;
            return Some(e.to_string());
        }
    }
    match conn.execute("COMMIT").await {
        Ok(_) => None,
        Err(e) => {
            let _ = conn.execute("ROLLBACK").await;
            Some(e.to_string())
        }
    }
}
