//! When a failed delivery is tried again: the configured schedule, else
//! exponential backoff, both with jitter.

use std::time::Duration;

/// The wait before retry number `attempt` (1-based) on a schedule: its
/// `attempt`th wait (the last one past its end), within ±10% by `jitter`
/// in `[0, 1)`. `None` when the schedule is empty.
pub fn scheduled_delay(attempt: u32, schedule: &[u64], jitter: f64) -> Option<Duration> {
    let index = (attempt.max(1) as usize - 1).min(schedule.len().checked_sub(1)?);
    let d = schedule[index] as f64;
    Some(Duration::from_millis(
        (d * (0.9 + 0.2 * jitter.clamp(0.0, 1.0))) as u64,
    ))
}

/// The wait before retry number `attempt` (1-based): `base · 2^(attempt-1)`
/// capped at `max`, with "equal jitter": somewhere in `[d/2, d]` by `jitter`
/// in `[0, 1)`, so that callbacks failed together do not retry together.
pub fn backoff_delay(attempt: u32, base_ms: u64, max_ms: u64, jitter: f64) -> Duration {
    let base = base_ms.max(1);
    let exp = base.saturating_mul(1u64 << attempt.saturating_sub(1).min(30));
    let d = exp.min(max_ms.max(base));
    let half = d / 2;
    Duration::from_millis(half + ((d - half) as f64 * jitter.clamp(0.0, 1.0)) as u64)
}
