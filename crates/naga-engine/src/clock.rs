//! Time behind a trait, so leases, backoff and timestamps can be tested
//! without depending on the wall clock.

use chrono::{DateTime, Utc};
use naga_core::time::Millis;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
    fn now_ms(&self) -> Millis {
        self.now().timestamp_millis()
    }
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
