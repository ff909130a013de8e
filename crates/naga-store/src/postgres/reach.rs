//! Whether PostgreSQL was reached a moment ago: told by every command, the
//! writers' groups and the probe, read before a batch waits for a
//! connection (a batch is refused at once while it is unreachable).
//!
//! A command's result is news only if the database was not found the
//! other way since the command began: a command that waited for a
//! connection through an outage that has ended fails late, and a command
//! whose statement committed before the outage may succeed late (after a
//! step that swallowed a failure). Neither overrides what was learnt since.

use std::sync::atomic::{AtomicU64, Ordering};

/// How many times the database was found unreachable or reached again:
/// odd while it is unreachable.
#[derive(Debug, Default)]
pub(crate) struct Reach {
    turns: AtomicU64,
}

impl Reach {
    /// What a command notes as it begins, to tell its result by.
    pub fn seen(&self) -> u64 {
        self.turns.load(Ordering::Acquire)
    }

    /// Whether the database was unreachable a moment ago.
    pub fn is_down(&self) -> bool {
        down(self.seen())
    }

    /// A command that began at `seen` reached the database: whether that
    /// is news (not found unreachable since it began). It is reachable.
    pub fn reached_since(&self, seen: u64) -> bool {
        let now = self.seen();
        if !down(now) {
            return true;
        }
        if now != seen {
            return false;
        }
        self.turn(now);
        true
    }

    /// A command that began at `seen` failed: whether that is news (not
    /// found reachable again since it began). If it could not reach the
    /// database, the database is unreachable.
    pub fn failed_since(&self, seen: u64, unreachable: bool) -> bool {
        let now = self.seen();
        if down(now) {
            return true;
        }
        if now != seen {
            return false;
        }
        if unreachable {
            self.turn(now);
        }
        true
    }

    /// From `now` to the other way (unless another command turned it).
    fn turn(&self, now: u64) {
        let _ = (self.turns).compare_exchange(now, now + 1, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// Whether `turns` says unreachable (it is odd).
fn down(turns: u64) -> bool {
    turns % 2 == 1
}

#[cfg(test)]
mod tests {
    use super::Reach;

    #[test]
    fn a_late_result_does_not_override_what_was_learnt_since_it_began() {
        let reach = Reach::default();
        let (before_outage, also_before) = (reach.seen(), reach.seen());
        // Another command succeeded meanwhile: still news that this one
        // could not reach the database.
        assert!(reach.reached_since(also_before));
        assert!(reach.failed_since(before_outage, true));
        assert!(reach.is_down());
        // A statement committed before the outage, its command ends now.
        assert!(!reach.reached_since(also_before), "old news");
        assert!(reach.is_down());
        let during = reach.seen();
        assert!(reach.failed_since(during, true), "still down");
        assert!(reach.reached_since(during), "back");
        assert!(!reach.is_down());
        // It waited for a connection through the outage that ended.
        assert!(!reach.failed_since(during, true), "old news");
        assert!(!reach.is_down());
        // Not reaching it is not the only failure: others change nothing.
        let now = reach.seen();
        assert!(reach.failed_since(now, false));
        assert!(!reach.is_down());
    }
}
