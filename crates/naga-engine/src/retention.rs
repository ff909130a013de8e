//! Retention (docs/configuration.md, "Retention"): every `[retention]
//! every`, a node prunes what is past its window, a bounded batch at a
//! time with a pause between batches (the writes of requests go first),
//! and then measures the store (`/health`, `/metrics`, the dashboard).
//! On a shared PostgreSQL one node prunes at a time: a node that finds
//! another one pruning leaves the round to it. `naga prune` runs one
//! round by hand ([`prune_store`]).

use crate::{clock::Clock, EngineError};
use naga_core::{
    config::{Config, RetentionConfig},
    time::Millis,
};
use naga_store::{Cutoffs, PruneTasks, Rule, Store, StoreError, StoreSize, TaskPass};
use serde::Serialize;
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio_util::sync::CancellationToken;

/// The pause between two batches of one round: the writes waiting behind
/// a batch go first.
const PAUSE: Duration = Duration::from_millis(5);

/// What one round removed (or, with `dry_run`, would remove), per kind of
/// row.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    /// Another node was pruning: this round left it to that node.
    pub left_to_another_node: bool,
    pub removed: BTreeMap<&'static str, u64>,
    pub batches: u64,
    pub took_ms: u64,
}

impl PruneReport {
    pub fn total(&self) -> u64 {
        self.removed.values().sum()
    }

    fn add(&mut self, kind: &'static str, n: u64) {
        *self.removed.entry(kind).or_default() += n;
    }
}

/// The cutoffs of `config`'s windows at `now`.
pub fn cutoffs(config: &RetentionConfig, now: Millis) -> Cutoffs {
    let before = |w: naga_core::config::Window| w.millis().map(|ms| now.saturating_sub(ms));
    Cutoffs {
        tasks: before(config.tasks),
        callbacks: before(config.callbacks),
        dead_callbacks: before(config.dead_callbacks),
        conversations: before(config.conversations),
        requests: before(config.requests),
    }
}

/// One round: the outbox's rules, the tasks, then the rest, each until
/// nothing of it is left (a dry run counts each once). Stops early when
/// `stop` fires or another node is pruning.
pub async fn prune(
    store: &Store,
    config: &RetentionConfig,
    now: Millis,
    dry_run: bool,
    stop: &CancellationToken,
) -> Result<PruneReport, StoreError> {
    let began = std::time::Instant::now();
    let mut round = Round {
        store,
        cutoffs: cutoffs(config, now),
        now,
        limit: config.batch.max(1) as i64,
        stop,
        report: PruneReport {
            dry_run,
            ..Default::default()
        },
    };
    if round.rules(&Rule::OUTBOX).await? && round.tasks().await? {
        round.rules(&Rule::AFTER_TASKS).await?;
    }
    round.report.took_ms = began.elapsed().as_millis() as u64;
    Ok(round.report)
}

/// A round under way.
struct Round<'a> {
    store: &'a Store,
    cutoffs: Cutoffs,
    now: Millis,
    limit: i64,
    stop: &'a CancellationToken,
    report: PruneReport,
}

impl Round<'_> {
    /// Counts a batch; `false`: the round stops (stopping, or another
    /// node prunes: `done` is `None`).
    fn go_on<T>(&mut self, done: &Option<T>) -> bool {
        self.report.batches += 1;
        if done.is_none() {
            self.report.left_to_another_node = true;
        }
        done.is_some() && !self.stop.is_cancelled()
    }

    async fn rules(&mut self, rules: &[Rule]) -> Result<bool, StoreError> {
        let dry_run = self.report.dry_run;
        for &rule in rules {
            loop {
                let (cutoffs, limit) = (self.cutoffs, self.limit);
                let n = self.store.prune_rule(rule, cutoffs, limit, dry_run).await?;
                if !self.go_on(&n) {
                    return Ok(false);
                }
                let n = n.unwrap_or_default();
                self.report.add(rule.label(), n);
                if dry_run || (n as i64) < self.limit {
                    break;
                }
                tokio::time::sleep(PAUSE).await;
            }
        }
        Ok(true)
    }

    async fn tasks(&mut self) -> Result<bool, StoreError> {
        if self.cutoffs.tasks.is_none() {
            // Ended tasks are kept for ever: no walk through them.
            return Ok(true);
        }
        let mut pass = TaskPass::default();
        while !pass.done {
            let batch = PruneTasks {
                cutoffs: self.cutoffs,
                now: self.now,
                limit: self.limit,
                dry_run: self.report.dry_run,
                pass,
            };
            let pruned = self.store.prune_tasks(batch).await?;
            if !self.go_on(&pruned) {
                return Ok(false);
            }
            let pruned = pruned.unwrap_or_default();
            self.report.add("tasks", pruned.tasks);
            self.report.add("steps", pruned.steps);
            self.report.add("callbacks", pruned.callbacks);
            self.report.add("push_configs", pruned.push_configs);
            pass = pruned.pass;
            if !pass.done {
                tokio::time::sleep(PAUSE).await;
            }
        }
        Ok(true)
    }
}

/// `naga prune`: opens the store of `config`, runs one round, closes it.
pub async fn prune_store(
    config: &Config,
    now: Millis,
    dry_run: bool,
) -> Result<PruneReport, EngineError> {
    let store = Store::open(&config.database_url(), &config.store).await?;
    let report = prune(
        &store,
        &config.retention,
        now,
        dry_run,
        &CancellationToken::new(),
    )
    .await;
    store.close().await;
    Ok(report?)
}

/// The store's last measured size, with when it was measured.
#[derive(Debug, Clone, Serialize)]
pub struct MeasuredSize {
    pub measured_at: Millis,
    #[serde(flatten)]
    pub size: StoreSize,
}

/// Where the pruner leaves the last size it measured.
pub(crate) type SizeCell = Arc<Mutex<Option<MeasuredSize>>>;

/// The pruner's loop (see the module's header): until `stop` fires.
pub(crate) async fn keep_pruning(
    store: Store,
    config: RetentionConfig,
    clock: Arc<dyn Clock>,
    size: SizeCell,
    stop: CancellationToken,
) {
    // (`every = 0`: the default.)
    let every = match config.every.millis() {
        Some(_) => config.every,
        None => RetentionConfig::default().every,
    }
    .duration();
    // (Every window 0: every record kept, nothing to look for.)
    let keeps_all = cutoffs(&config, 0) == Cutoffs::default();
    loop {
        if !keeps_all {
            prune_round(&store, &config, clock.now_ms(), &stop).await;
        }
        match store.size().await {
            Ok(s) => {
                crate::metrics::store_size(&s);
                let measured = MeasuredSize {
                    measured_at: clock.now_ms(),
                    size: s,
                };
                *size.lock().unwrap_or_else(|p| p.into_inner()) = Some(measured);
            }
            Err(e) => tracing::warn!(error = %e, "cannot measure the store; trying again"),
        }
        tokio::select! {
            _ = clock.sleep(every) => {}
            _ = stop.cancelled() => return,
        }
    }
}

async fn prune_round(
    store: &Store,
    config: &RetentionConfig,
    now: Millis,
    stop: &CancellationToken,
) {
    match prune(store, config, now, false, stop).await {
        Ok(report) => {
            crate::metrics::pruned(&report);
            if report.total() > 0 {
                tracing::info!(removed = ?report.removed, batches = report.batches,
                    took_ms = report.took_ms, "pruned what is past its retention window");
            } else if report.left_to_another_node {
                tracing::debug!("another node is pruning: round left to it");
            }
        }
        Err(e) => tracing::warn!(error = %e, "pruning failed; trying again next round"),
    }
}
