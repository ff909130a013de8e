//! Prometheus metrics (`GET /metrics` on every service): counters and
//! histograms recorded where things happen, through the `metrics` facade;
//! the gauges read from the store at each scrape (so that every node of a
//! shared database shows the same queue).
//!
//! One recorder per process (a naga process is one node; tests that start
//! several apps in one process share it), installed by the first engine.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use naga_core::{wire::TaskKind, TaskStatus};
use std::{sync::OnceLock, time::Duration};

/// Histogram buckets, in seconds: a millisecond to five minutes.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// How often the recorder folds recorded samples into its buckets when
/// nobody scrapes (samples wait in memory until then).
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's recorder, installed at the first call (`None` if another
/// recorder was installed first: metrics are then not served).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let installed = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .and_then(PrometheusBuilder::install_recorder);
            match installed {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed: /metrics is empty");
                    None
                }
            }
        })
        .as_ref()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "naga_schedule_requests_total",
        "Schedule requests by service (agent, mcp) and outcome (created, repeated, duplicate, \
         no_tasks, or the error's code)"
    );
    describe_counter!(
        "naga_tasks_completed_total",
        "Tasks ended, by kind (agent, mcp) and final status"
    );
    describe_histogram!(
        "naga_task_duration_seconds",
        Unit::Seconds,
        "From a task's start to its end, for tasks that ran here"
    );
    describe_histogram!(
        "naga_call_duration_seconds",
        Unit::Seconds,
        "One call of a batch, by the agent (or MCP service) that ran it"
    );
    describe_counter!(
        "naga_callback_deliveries_total",
        "Callback and notification delivery attempts by outcome (delivered, retry, dead)"
    );
    describe_gauge!(
        "naga_callbacks_dead",
        "Callbacks dead-lettered and not replayed (read from the store at the scrape)"
    );
    describe_gauge!(
        "naga_queue_depth",
        "Batches accepted and not yet started, on every node (read from the store at the scrape)"
    );
    describe_gauge!(
        "naga_tasks_running",
        "Batches running, on every node (read from the store at the scrape)"
    );
    describe_gauge!(
        "naga_store_bytes",
        Unit::Bytes,
        "The store's size (SQLite: its file; PostgreSQL: the database), measured every \
         [retention] every"
    );
    describe_gauge!(
        "naga_store_free_bytes",
        Unit::Bytes,
        "Of the store's bytes, pages free for reuse (SQLite)"
    );
    describe_gauge!(
        "naga_store_rows",
        "Rows per table (PostgreSQL: the statistics' estimate)"
    );
    describe_gauge!(
        "naga_store_table_bytes",
        Unit::Bytes,
        "A table's bytes with its indexes (PostgreSQL)"
    );
    describe_gauge!(
        "naga_store_dead_rows",
        "A table's dead row versions waiting for vacuum (PostgreSQL)"
    );
    describe_counter!(
        "naga_pruned_rows_total",
        "Rows removed by retention, by kind (tasks, steps, callbacks, messages…)"
    );
    describe_histogram!(
        "naga_prune_round_seconds",
        Unit::Seconds,
        "One round of retention on this node"
    );
    describe_histogram!(
        "naga_store_commit_seconds",
        Unit::Seconds,
        "One commit of the store (SQLite: a group commit of the writer; PostgreSQL: a command)"
    );
}

pub(crate) fn schedule_request(kind: TaskKind, outcome: &'static str) {
    metrics::counter!("naga_schedule_requests_total",
        "service" => kind.as_str(), "outcome" => outcome)
    .increment(1);
}

pub(crate) fn task_completed(kind: TaskKind, status: TaskStatus) {
    metrics::counter!("naga_tasks_completed_total",
        "kind" => kind.as_str(), "status" => status.as_str())
    .increment(1);
}

pub(crate) fn task_duration(kind: TaskKind, took: Duration) {
    metrics::histogram!("naga_task_duration_seconds", "kind" => kind.as_str())
        .record(took.as_secs_f64());
}

pub(crate) fn call_duration(agent: std::borrow::Cow<'static, str>, took: Duration) {
    metrics::histogram!("naga_call_duration_seconds", "agent" => agent).record(took.as_secs_f64());
}

pub(crate) fn callback_delivery(outcome: &'static str) {
    metrics::counter!("naga_callback_deliveries_total", "outcome" => outcome).increment(1);
}

/// The gauges read from the store, then the text a scraper reads.
pub(crate) fn render(gauges: Option<naga_store::Gauges>) -> String {
    let Some(handle) = handle() else {
        return String::new();
    };
    if let Some(g) = gauges {
        metrics::gauge!("naga_callbacks_dead").set(g.dead_callbacks as f64);
        metrics::gauge!("naga_queue_depth").set(g.queued_tasks as f64);
        metrics::gauge!("naga_tasks_running").set(g.running_tasks as f64);
    }
    handle.run_upkeep();
    handle.render()
}

/// The store's size as last measured (`naga_store_*`).
pub(crate) fn store_size(size: &naga_store::StoreSize) {
    metrics::gauge!("naga_store_bytes").set(size.bytes as f64);
    metrics::gauge!("naga_store_free_bytes").set(size.free_bytes as f64);
    for t in &size.tables {
        let table = t.table.clone();
        metrics::gauge!("naga_store_rows", "table" => table.clone()).set(t.rows as f64);
        if let Some(bytes) = t.bytes {
            metrics::gauge!("naga_store_table_bytes", "table" => table.clone()).set(bytes as f64);
        }
        if let Some(dead) = t.dead_rows {
            metrics::gauge!("naga_store_dead_rows", "table" => table).set(dead as f64);
        }
    }
}

/// What a round of retention removed (`naga_pruned_rows_total`).
pub(crate) fn pruned(report: &crate::retention::PruneReport) {
    for (&kind, &n) in &report.removed {
        if n > 0 {
            metrics::counter!("naga_pruned_rows_total", "kind" => kind).increment(n);
        }
    }
    metrics::histogram!("naga_prune_round_seconds").record(report.took_ms as f64 / 1000.0);
}
