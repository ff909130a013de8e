//! How many async worker threads a naga process runs.

/// `NAGA_WORKER_THREADS` when set, else one fewer than the cores (at least
/// one): the store's writer is a thread of its own and keeps a core busy
/// under load. On two cores, one worker measured faster than two (less
/// switching between the workers and the writer): see BENCHMARKS.md.
pub fn worker_threads() -> usize {
    std::env::var("NAGA_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get().saturating_sub(1).max(1))
                .unwrap_or(1)
        })
}
