//! Store writes tried again through storage faults.
//!
//! A write that fails because the disk is full or an I/O failed may
//! succeed later; the work it records must not be dropped meanwhile (a
//! task left `running` with nothing to finish it, a callback's outcome
//! never recorded). So such writes are tried again with growing waits.

use crate::clock::Clock;
use naga_store::StoreError;
use std::{future::Future, time::Duration};
use tokio_util::sync::CancellationToken;

/// The first and the longest wait between tries.
const FIRST_WAIT: Duration = Duration::from_millis(50);
const MAX_WAIT: Duration = Duration::from_secs(5);

/// Runs `write` until it commits, fails for a reason of its own, or `stop`
/// fires. Storage faults ([`StoreError::is_transient`]) are tried again
/// for as long as they last; other errors (not a lost lease, a conflict,
/// corrupt data or a closed store, which are final) `other_tries` times
/// in all. `what` names the write in the log lines.
pub async fn retry_store<T, F, Fut>(
    clock: &dyn Clock,
    stop: &CancellationToken,
    other_tries: u32,
    what: impl Fn() -> String,
    write: F,
) -> Result<T, StoreError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut wait = FIRST_WAIT;
    let mut tries = 0;
    loop {
        let e = match write().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        tries += 1;
        let again = match &e {
            StoreError::LeaseLost(_)
            | StoreError::NotCommitted
            | StoreError::Conflict(_)
            | StoreError::Corrupt(_) => false,
            e if e.is_transient() => true,
            _ => tries < other_tries,
        };
        if !again || stop.is_cancelled() {
            return Err(e);
        }
        tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64,
            "cannot {}: the store write is tried again", what());
        tokio::select! {
            _ = clock.sleep(wait) => {}
            _ = stop.cancelled() => return Err(e),
        }
        wait = (wait * 2).min(MAX_WAIT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn full() -> StoreError {
        StoreError::Sqlite(rusqlite_full())
    }

    fn rusqlite_full() -> naga_store::SqliteError {
        naga_store::SqliteError::SqliteFailure(
            naga_store::SqliteFfiError::new(13), // SQLITE_FULL
            Some("database or disk is full".into()),
        )
    }

    /// How many times `retry_store` tries a write that always fails with `e`.
    async fn tries_of(e: fn() -> StoreError) -> u32 {
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = retry_store(
            &SystemClock,
            &CancellationToken::new(),
            3,
            || "write".into(),
            || async {
                calls.fetch_add(1, Ordering::Relaxed);
                Err(e())
            },
        )
        .await;
        assert!(r.is_err());
        calls.load(Ordering::Relaxed)
    }

    #[tokio::test(start_paused = true)]
    async fn a_storage_fault_is_tried_until_it_passes_other_errors_a_few_times() {
        let stop = CancellationToken::new();
        let calls = AtomicU32::new(0);
        let r = retry_store(
            &SystemClock,
            &stop,
            3,
            || "write".into(),
            || async {
                match calls.fetch_add(1, Ordering::Relaxed) {
                    0..=9 => Err(full()),
                    _ => Ok(7),
                }
            },
        )
        .await;
        assert_eq!(r.unwrap(), 7);
        assert_eq!(calls.load(Ordering::Relaxed), 11);
        assert_eq!(tries_of(|| StoreError::Unsupported("no".into())).await, 3);
        assert_eq!(
            tries_of(|| StoreError::LeaseLost("t".into())).await,
            1,
            "a lost lease is final"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_ends_the_tries() {
        let stop = CancellationToken::new();
        stop.cancel();
        let r: Result<(), _> = retry_store(
            &SystemClock,
            &stop,
            3,
            || "write".into(),
            || async { Err(full()) },
        )
        .await;
        assert!(r.is_err());
    }
}
