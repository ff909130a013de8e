//! Time behind a trait: what time it is, and waiting for time to pass
//! (callback backoff, store retries, lease heartbeats and sweeps), so that
//! tests drive leases and backoff with a [`ManualClock`] instead of waiting
//! for the wall clock.

use chrono::{DateTime, Utc};
use naga_core::time::Millis;
use std::{
    collections::BTreeMap,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicI64, Ordering},
        Mutex,
    },
    time::Duration,
};
use tokio::sync::oneshot;

/// A wait for time to pass (see [`Clock::sleep`]).
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
    fn now_ms(&self) -> Millis {
        self.now().timestamp_millis()
    }
    /// Resolves once `d` has passed on this clock.
    fn sleep(&self, d: Duration) -> Sleep;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    /// Straight from the system time: `Utc::now()` would build a calendar
    /// date only for `timestamp_millis` to take it apart again (~500
    /// instructions, a few times per batch).
    fn now_ms(&self) -> Millis {
        use std::time::{SystemTime, UNIX_EPOCH};
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_millis() as Millis,
            Err(e) => -(e.duration().as_millis() as Millis),
        }
    }

    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock that moves only when told to ([`ManualClock::advance`]): every
/// sleep due by then wakes, in deadline order.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
    /// Sleepers by deadline (ms), then arrival.
    sleepers: Mutex<BTreeMap<(Millis, u64), oneshot::Sender<()>>>,
    next: AtomicI64,
}

impl ManualClock {
    /// A clock standing at `now_ms` (Unix milliseconds).
    pub fn at(now_ms: Millis) -> Self {
        Self {
            now: AtomicI64::new(now_ms),
            sleepers: Mutex::default(),
            next: AtomicI64::new(0),
        }
    }

    /// Moves the clock forward by `d` and wakes every sleep due by then.
    pub fn advance(&self, d: Duration) {
        let now = self
            .now
            .fetch_add(d.as_millis() as Millis, Ordering::SeqCst)
            + d.as_millis() as Millis;
        let due: Vec<oneshot::Sender<()>> = {
            let mut sleepers = self.sleepers.lock().unwrap();
            let later = sleepers.split_off(&(now + 1, 0));
            std::mem::replace(&mut *sleepers, later)
                .into_values()
                .collect()
        };
        for wake in due {
            let _ = wake.send(());
        }
    }

    /// How many sleeps are waiting (for a test to know that a timer is set).
    pub fn sleepers(&self) -> usize {
        let mut sleepers = self.sleepers.lock().unwrap();
        sleepers.retain(|_, tx| !tx.is_closed());
        sleepers.len()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.now_ms()).unwrap_or_default()
    }

    fn now_ms(&self) -> Millis {
        self.now.load(Ordering::SeqCst)
    }

    fn sleep(&self, d: Duration) -> Sleep {
        if d.is_zero() {
            return Box::pin(std::future::ready(()));
        }
        let (tx, rx) = oneshot::channel();
        let deadline = self.now_ms() + d.as_millis().max(1) as Millis;
        let order = self.next.fetch_add(1, Ordering::SeqCst) as u64;
        self.sleepers.lock().unwrap().insert((deadline, order), tx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// The shortcut reads the same clock as the calendar path: a reading
    /// taken between two calendar readings lies between them.
    #[test]
    fn system_millis_match_the_calendar_clock() {
        for _ in 0..1000 {
            let before = Utc::now().timestamp_millis();
            let ms = SystemClock.now_ms();
            let after = Utc::now().timestamp_millis();
            assert!(before <= ms && ms <= after, "{before} ≤ {ms} ≤ {after}");
        }
    }

    #[tokio::test]
    async fn manual_sleeps_wake_when_the_clock_passes_their_deadline_in_order() {
        let clock = Arc::new(ManualClock::at(1_000));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for (name, ms) in [("late", 300), ("early", 100), ("middle", 200)] {
            let (clock, tx) = (clock.clone(), tx.clone());
            let sleep = clock.sleep(Duration::from_millis(ms));
            tokio::spawn(async move {
                sleep.await;
                tx.send((name, clock.now_ms())).unwrap();
            });
        }
        tokio::task::yield_now().await;
        assert_eq!(clock.sleepers(), 3);
        clock.advance(Duration::from_millis(99));
        tokio::task::yield_now().await;
        assert!(rx.try_recv().is_err(), "nothing is due yet");
        clock.advance(Duration::from_millis(150));
        assert_eq!(rx.recv().await.unwrap().0, "early");
        assert_eq!(rx.recv().await.unwrap().0, "middle");
        assert!(rx.try_recv().is_err(), "late is not due");
        clock.advance(Duration::from_secs(3600));
        assert_eq!(
            rx.recv().await.unwrap(),
            ("late", 1_000 + 99 + 150 + 3_600_000)
        );
        assert_eq!(clock.sleepers(), 0);
    }
}
