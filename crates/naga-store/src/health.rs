//! Whether the store can write just now, and what the integrity check found:
//! kept by each backend (the SQLite writer, the PostgreSQL commands) and read
//! by `/health` and `/ready`.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether writes are failing for a reason of the storage's (a full disk,
/// an I/O error): set by a group whose commit or a job failed so, cleared
/// by one that committed without such a failure. Kept by the writer thread,
/// in commit order.
#[derive(Default)]
pub(crate) struct Health {
    failing: AtomicBool,
    fault: std::sync::Mutex<Option<crate::StoreFault>>,
    /// What the integrity check found wrong with the file.
    damage: std::sync::Mutex<Option<String>>,
}

impl Health {
    pub(crate) fn record(&self, fault: Option<String>) {
        match fault {
            None if self.failing.load(Ordering::Relaxed) => {
                self.failing.store(false, Ordering::Relaxed);
                if let Some(f) = self.fault.lock().unwrap().take() {
                    tracing::warn!(since = f.since_ms, error = %f.error, "the store writes again");
                }
            }
            None => {}
            Some(error) => {
                let mut fault = self.fault.lock().unwrap();
                if fault.is_none() {
                    tracing::error!(%error, "the store cannot write; writes are retried");
                }
                let since_ms = fault.as_ref().map_or_else(now_ms, |f| f.since_ms);
                *fault = Some(crate::StoreFault { error, since_ms });
                self.failing.store(true, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn set_damage(&self, damage: String) {
        *self.damage.lock().unwrap() = Some(damage);
    }

    pub(crate) fn damage(&self) -> Option<String> {
        self.damage.lock().unwrap().clone()
    }

    pub(crate) fn fault(&self) -> Option<crate::StoreFault> {
        if !self.failing.load(Ordering::Relaxed) {
            return None;
        }
        self.fault.lock().unwrap().clone()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
