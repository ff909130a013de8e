//! This node's identity, kept across restarts.
//!
//! Leases name their owner. A node killed -9 and started again must take
//! its own leases back at once, not wait for them to expire: meanwhile its
//! recovered batches would not run, cancel would answer 409, a newer batch
//! of the same session would overtake an older one, and `reject` would not
//! see the session as busy. So a node reuses the id of an earlier run on
//! the same data dir. Each id has a lock file (`nodes/<id>.lock`) that its
//! process holds while it runs and the kernel releases when it ends, even
//! by kill -9: an id whose lock can be taken belongs to no running process.
//! Two processes on one data dir (`--only agent` beside `--only mcp`) thus
//! get different ids, and neither takes the other's tasks.

use std::{fs::File, io, path::Path};

pub struct NodeIdentity {
    id: String,
    /// Held while this process runs.
    _lock: File,
}

impl NodeIdentity {
    /// The id of an earlier run whose process ended, else a new one.
    pub fn acquire(data_dir: &Path) -> io::Result<Self> {
        let dir = data_dir.join("nodes");
        std::fs::create_dir_all(&dir)?;
        let mut known: Vec<String> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|name| Some(name.strip_suffix(".lock")?.to_owned()))
            .collect();
        known.sort();
        for id in known {
            let file = File::options()
                .write(true)
                .open(dir.join(format!("{id}.lock")))?;
            if file.try_lock().is_ok() {
                tracing::info!(node_id = %id, "node identity of an earlier run taken back");
                return Ok(Self { id, _lock: file });
            }
        }
        let id = format!("node-{}", uuid::Uuid::new_v4());
        let file = File::create_new(dir.join(format!("{id}.lock")))?;
        file.lock()?;
        tracing::info!(node_id = %id, "new node identity");
        Ok(Self { id, _lock: file })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ended_run_s_id_is_reused_a_running_one_s_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let first = NodeIdentity::acquire(dir.path()).unwrap();
        let second = NodeIdentity::acquire(dir.path()).unwrap();
        assert_ne!(first.id(), second.id(), "both run: two identities");
        let first_id = first.id().to_owned();
        drop(first);
        let again = NodeIdentity::acquire(dir.path()).unwrap();
        assert_eq!(again.id(), first_id, "the ended run's identity comes back");
    }
}
