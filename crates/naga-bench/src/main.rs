//! naga's benchmark harness: measures, in one run and with one load client,
//! a bare axum server and naga, and prints the ratios the targets are about.
//!
//!   cargo run --release -p naga-bench -- [--requests N] [--batches N] [--concurrency N]
//!
//! 1. accept: a bare axum server that parses the `/schedule` JSON and
//!    answers, then naga's durable `/schedule` (committed before answering);
//!    throughput and latency percentiles under the same load.
//! 2. end to end: a bare server that answers and POSTs a callback per
//!    request through one pooled client (no storage, no scheduling) — the
//!    ceiling — then naga with batches of two `echo` calls, each batch
//!    called back to a local receiver; drained batches/s and lost callbacks.
//! 3. naga's resident memory after the end-to-end run.
//! 4. CPU per request or batch: naga's (and its writer's), and for the
//!    accept runs the bare server's and this process's (the load client):
//!    with both cores busy, a rate is ~2 cores / (server + client CPU).
//!
//! Every server is a child process on loopback; naga is the release binary
//! next to this one, on a fresh database in a temporary folder.
#![forbid(unsafe_code)]

mod baseline;
mod children;
mod load;

use baseline::{baseline_server, receiver_server};
use children::{cpu_per, rss_mib, spawn_baseline, spawn_naga, spawn_naga_on, thread_cpu_us};
use load::{drain, drain_spread, load, Load, Receiver};

use clap::{Parser, ValueEnum};
use serde_json::{json, Value};
use std::{collections::BTreeMap, process::Command, time::Duration};

#[derive(Parser, Clone)]
#[command(about = "naga benchmarks: bare axum baselines vs naga, in one run")]
struct Args {
    /// Requests of each accept run.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Batches of each end-to-end run.
    #[arg(long, default_value_t = 20_000)]
    batches: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Calls per batch.
    #[arg(long, default_value_t = 2)]
    calls: usize,
    /// Sessions the batches are spread over, round robin: 1,000 is many
    /// shallow ones (~20 batches queued each at 20,000), 97 a few deep ones
    /// (~200 each: a conversation scheduling batch after batch).
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Only the end-to-end runs of naga (no accept runs, no bare ceiling):
    /// to compare builds or backends, alternated, in less time.
    #[arg(long)]
    end_to_end_only: bool,
    /// `[store] synchronous` of naga: normal or full.
    #[arg(long, default_value = "normal")]
    synchronous: String,
    /// The naga binary [default: next to this one].
    #[arg(long)]
    naga: Option<std::path::PathBuf>,
    /// Rounds of the four runs, interleaved; the summary gives medians and
    /// the range of the ratios (this machine is noisy: one round's baseline
    /// can be off by 25%, so a ratio of one round says little).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Request ids: UUIDs, as NagaAgent sends (each new id lands anywhere
    /// in the store's index of ids), or sequential numbers (`accept1-1`,
    /// `accept1-2`…: neighbours in that index, which is cheaper).
    #[arg(long, value_enum, default_value_t = Ids::Uuid)]
    ids: Ids,
    /// A PostgreSQL server (`postgres://user@host:port`): each round also
    /// drains the end-to-end batches through one and then two naga nodes on
    /// a fresh database of it, beside the SQLite node.
    #[arg(long)]
    postgres: Option<String>,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Internal: run a bare baseline server (`answer` or `callback`), or a
    /// callback receiver that answers every POST (`receive`, for profiling
    /// naga end to end under another load tool).
    #[arg(long, hide = true)]
    baseline_server: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Ids {
    Uuid,
    Sequential,
}

/// The allocator naga runs with, so that the bare baselines (and the load
/// client) get the same advantage: ratios compare the servers, not mallocs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.baseline_server.clone() {
        // The baselines run with the runtime naga sizes for itself.
        Some(mode) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(naga_core::runtime::worker_threads())
            .enable_all()
            .build()?
            .block_on(async {
                match mode.as_str() {
                    "receive" => receiver_server().await,
                    mode => baseline_server(mode == "callback").await,
                }
            }),
        None => tokio::runtime::Runtime::new()?.block_on(run(args)),
    }
}

/// One round: the four runs, each on a fresh server (and database).
async fn round(args: &Args, receiver: &Receiver, cb: &str, r: usize) -> anyhow::Result<Value> {
    if args.end_to_end_only {
        return end_to_end_round(args, receiver, cb, r).await;
    }
    let c = args.concurrency;
    eprintln!(
        "round {r}: accept, bare axum, {} requests, {c} clients",
        args.requests
    );
    let (bare, bare_cpu) = {
        let s = spawn_baseline(false)?;
        let before = thread_cpu_us(s.child.id());
        let l = load(&s.url, args, args.requests, None, &format!("bare{r}")).await;
        (l, cpu_per(s.child.id(), &before, args.requests).0)
    };
    eprintln!("round {r}: accept, naga durable /schedule");
    let dir = tempfile::tempdir()?;
    let (accept, accept_rss, accept_cpu) = {
        let s = spawn_naga(args, dir.path())?;
        let before = thread_cpu_us(s.child.id());
        let l = load(&s.url, args, args.requests, None, &format!("accept{r}")).await;
        (
            l,
            rss_mib(s.child.id()),
            cpu_per(s.child.id(), &before, args.requests),
        )
    };
    eprintln!(
        "round {r}: end to end, bare axum + one callback per request, {} batches",
        args.batches
    );
    let (ceiling, ceiling_lost, _) = {
        let s = spawn_baseline(true)?;
        drain(&s.url, args, receiver, cb, &format!("ceiling{r}")).await
    };
    eprintln!(
        "round {r}: end to end, naga, {} batches of {} echo calls",
        args.batches, args.calls
    );
    let (e2e, lost, e2e_load, rss, e2e_cpu) = naga_end_to_end(args, receiver, cb, r).await?;
    let postgres = postgres_round(args, receiver, cb, r, e2e).await?;
    Ok(json!({
        "postgres": postgres,
        "accept": {
            "bare_rps": bare.rps(), "naga_rps": accept.rps(), "ratio": accept.rps() / bare.rps(),
            "bare_p50_ms": bare.percentile(0.5), "bare_p99_ms": bare.percentile(0.99),
            "naga_p50_ms": accept.percentile(0.5), "naga_p99_ms": accept.percentile(0.99),
            "naga_errors": accept.errors, "naga_rss_mib": accept_rss,
            // CPU during the run (the accepted batches also run meanwhile).
            "naga_cpu_us_per_request": accept_cpu.0, "naga_writer_cpu_us_per_request": accept_cpu.1,
            // The bare server's, and the load client's (this process) under each.
            "bare_cpu_us_per_request": bare_cpu,
            "client_cpu_us_per_request_bare": bare.client_cpu_us_per_request,
            "client_cpu_us_per_request_naga": accept.client_cpu_us_per_request,
        },
        "end_to_end": {
            "ceiling_batches_per_s": ceiling, "ceiling_lost": ceiling_lost,
            "naga_batches_per_s": e2e, "ratio": e2e / ceiling, "naga_lost_callbacks": lost,
            "naga_p99_ms": e2e_load.percentile(0.99), "naga_errors": e2e_load.errors,
            "naga_rss_mib_after": rss,
            "naga_cpu_us_per_batch": e2e_cpu.0, "naga_writer_cpu_us_per_batch": e2e_cpu.1,
        },
    }))
}

/// What naga's end-to-end run on SQLite gave: batches/s, callbacks lost,
/// the load, RSS after, and CPU per batch (naga's, its writer's).
type EndToEnd = (f64, usize, Load, Option<f64>, (f64, f64));

/// naga's end-to-end run on SQLite: a fresh node drains the batches.
async fn naga_end_to_end(
    args: &Args,
    receiver: &Receiver,
    cb: &str,
    r: usize,
) -> anyhow::Result<EndToEnd> {
    let dir = tempfile::tempdir()?;
    let s = spawn_naga(args, dir.path())?;
    let before = thread_cpu_us(s.child.id());
    let (rate, lost, l) = drain(&s.url, args, receiver, cb, &format!("e2e{r}")).await;
    let cpu = cpu_per(s.child.id(), &before, args.batches);
    Ok((rate, lost, l, rss_mib(s.child.id()), cpu))
}

/// One round of naga's end-to-end runs only (`--end-to-end-only`).
async fn end_to_end_round(
    args: &Args,
    receiver: &Receiver,
    cb: &str,
    r: usize,
) -> anyhow::Result<Value> {
    eprintln!(
        "round {r}: end to end, naga, {} batches of {} echo calls over {} sessions",
        args.batches, args.calls, args.sessions
    );
    let (e2e, lost, l, rss, cpu) = naga_end_to_end(args, receiver, cb, r).await?;
    let postgres = postgres_round(args, receiver, cb, r, e2e).await?;
    Ok(json!({
        "postgres": postgres,
        "accept": {},
        "end_to_end": {
            "naga_batches_per_s": e2e, "naga_lost_callbacks": lost,
            "naga_p99_ms": l.percentile(0.99), "naga_errors": l.errors,
            "naga_rss_mib_after": rss,
            "naga_cpu_us_per_batch": cpu.0, "naga_writer_cpu_us_per_batch": cpu.1,
        },
    }))
}

/// The round's PostgreSQL runs (one node, then two), when asked for;
/// `e2e` is the round's SQLite figure the ratios compare with.
async fn postgres_round(
    args: &Args,
    receiver: &Receiver,
    cb: &str,
    r: usize,
    e2e: f64,
) -> anyhow::Result<Value> {
    Ok(match &args.postgres {
        None => Value::Null,
        Some(server) => {
            let mut drained = Vec::new();
            for nodes in [1, 2] {
                eprintln!("round {r}: end to end, naga on PostgreSQL, {nodes} node(s)");
                let database = format!(
                    "{}/naga_bench_{}",
                    server.trim_end_matches('/'),
                    uuid::Uuid::new_v4().simple()
                );
                let dir = tempfile::tempdir()?;
                let servers = (0..nodes)
                    .map(|n| spawn_naga_on(args, &dir.path().join(n.to_string()), Some(&database)))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let urls: Vec<&str> = servers.iter().map(|s| s.url.as_str()).collect();
                let before = pg_counters(&database);
                let (rate, lost, _) =
                    drain_spread(&urls, args, receiver, cb, &format!("pg{nodes}n{r}")).await;
                let rss: f64 = servers.iter().filter_map(|s| rss_mib(s.child.id())).sum();
                let per_batch = pg_per_batch(&database, &before, args.batches);
                drained.push((rate, lost, rss, per_batch));
            }
            let (one, lost_one, _, ref per_one) = drained[0];
            let (two, lost_two, rss_two, ref per_two) = drained[1];
            json!({
                "one_node_per_batch": per_one, "two_nodes_per_batch": per_two,
                "one_node_batches_per_s": one, "one_node_lost_callbacks": lost_one,
                "two_nodes_batches_per_s": two, "two_nodes_lost_callbacks": lost_two,
                "two_nodes_rss_mib_after": rss_two,
                // The target: two nodes on PostgreSQL ≥ 0.2× one node on SQLite.
                "two_nodes_to_sqlite": two / e2e, "one_node_to_sqlite": one / e2e,
            })
        }
    })
}

/// Per field of `section`: the median over rounds, except counts of
/// losses and errors (summed) and memory (the largest); the ratio and the
/// p99s also get their smallest and largest (`…_min`, `…_max`).
fn summarize(rounds: &[Value], section: &str) -> Value {
    let mut out = serde_json::Map::new();
    let Some(first) = rounds.first().and_then(|r| r[section].as_object()) else {
        return Value::Object(out);
    };
    for key in first.keys() {
        let mut v: Vec<f64> = rounds
            .iter()
            .filter_map(|r| r[section][key].as_f64())
            .collect();
        v.sort_by(f64::total_cmp);
        let value = if key.contains("lost") || key.contains("errors") {
            v.iter().sum::<f64>()
        } else if key.contains("rss") {
            v.last().copied().unwrap_or(f64::NAN)
        } else {
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        out.insert(key.clone(), json!(value));
        if key == "ratio" || key.ends_with("_p99_ms") {
            let (min, max) = (v.first().copied(), v.last().copied());
            out.insert(format!("{key}_min"), json!(min.unwrap_or(f64::NAN)));
            out.insert(format!("{key}_max"), json!(max.unwrap_or(f64::NAN)));
        }
    }
    Value::Object(out)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let receiver = Receiver::default();
    let cb = receiver.start().await?;
    let mut rounds = Vec::new();
    for r in 1..=args.rounds.max(1) {
        rounds.push(round(&args, &receiver, &cb, r).await?);
    }
    let results = json!({
        "machine": {"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)},
        "concurrency": args.concurrency, "requests": args.requests, "batches": args.batches,
        "calls_per_batch": args.calls, "sessions": args.sessions,
        "synchronous": args.synchronous,
        "ids": args.ids.to_possible_value().map(|v| v.get_name().to_owned()),
        "rounds": rounds,
        // Medians over the rounds (losses and errors summed, memory the largest).
        "accept": summarize(&rounds, "accept"),
        "end_to_end": summarize(&rounds, "end_to_end"),
        "postgres": if args.postgres.is_some() { summarize(&rounds, "postgres") } else { Value::Null },
    });
    if args.json {
        println!("{results}");
        return Ok(());
    }
    if args.end_to_end_only {
        print_end_to_end(&results);
        return Ok(());
    }
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    for (i, r) in rounds.iter().enumerate() {
        let (a, e) = (&r["accept"], &r["end_to_end"]);
        println!(
            "round {}     accept {:>6.0} / {:>6.0} req/s = {:.2}, p99 {:>5.2} ms;  end to end {:>6.0} / {:>6.0} batches/s = {:.2}, lost {}",
            i + 1,
            f(&a["naga_rps"]),
            f(&a["bare_rps"]),
            f(&a["ratio"]),
            f(&a["naga_p99_ms"]),
            f(&e["naga_batches_per_s"]),
            f(&e["ceiling_batches_per_s"]),
            f(&e["ratio"]),
            e["naga_lost_callbacks"]
        );
    }
    let (a, e) = (&results["accept"], &results["end_to_end"]);
    // The smallest and largest of the rounds (see `summarize`).
    let span = |v: &Value, key: &str| {
        let (min, max) = (&v[format!("{key}_min")], &v[format!("{key}_max")]);
        format!("{:.2}–{:.2}", f(min), f(max))
    };
    println!("median of {} rounds:", rounds.len());
    println!(
        "accept      bare {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms",
        f(&a["bare_rps"]),
        f(&a["bare_p50_ms"]),
        f(&a["bare_p99_ms"])
    );
    println!(
        "            naga {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  ratio {:.2} (target ≥ 0.50, p99 ≤ 10 ms)",
        f(&a["naga_rps"]),
        f(&a["naga_p50_ms"]),
        f(&a["naga_p99_ms"]),
        f(&a["ratio"])
    );
    println!(
        "            rounds: ratio {}, p99 {} ms",
        span(a, "ratio"),
        span(a, "naga_p99_ms")
    );
    println!(
        "end to end  ceiling {:>7.0} batches/s (lost {:.0})",
        f(&e["ceiling_batches_per_s"]),
        f(&e["ceiling_lost"])
    );
    println!(
        "            naga    {:>7.0} batches/s  ratio {:.2} (target ≥ 0.50), lost callbacks {:.0} (target 0)",
        f(&e["naga_batches_per_s"]),
        f(&e["ratio"]),
        f(&e["naga_lost_callbacks"])
    );
    println!("            rounds: ratio {}", span(e, "ratio"));
    println!(
        "cpu         naga {:.0} µs per accepted request (writer {:.0}), {:.0} µs per batch end to end (writer {:.0})",
        f(&a["naga_cpu_us_per_request"]),
        f(&a["naga_writer_cpu_us_per_request"]),
        f(&e["naga_cpu_us_per_batch"]),
        f(&e["naga_writer_cpu_us_per_batch"])
    );
    println!(
        "            accept: bare {:.0} µs per request, the load client {:.0} (bare) / {:.0} (naga)",
        f(&a["bare_cpu_us_per_request"]),
        f(&a["client_cpu_us_per_request_bare"]),
        f(&a["client_cpu_us_per_request_naga"])
    );
    println!(
        "memory      naga RSS after {} batches: {:.1} MiB, the largest of the rounds (target ≤ 100)",
        args.batches,
        f(&e["naga_rss_mib_after"])
    );
    let p = &results["postgres"];
    if !p.is_null() {
        println!(
            "postgres    one node {:>7.0} batches/s ({:.2} of SQLite), lost {:.0}",
            f(&p["one_node_batches_per_s"]),
            f(&p["one_node_to_sqlite"]),
            f(&p["one_node_lost_callbacks"])
        );
        println!(
            "            two nodes {:>6.0} batches/s ({:.2} of SQLite, target ≥ 0.20), lost {:.0}; RSS of both {:.1} MiB",
            f(&p["two_nodes_batches_per_s"]),
            f(&p["two_nodes_to_sqlite"]),
            f(&p["two_nodes_lost_callbacks"]),
            f(&p["two_nodes_rss_mib_after"])
        );
    }
    Ok(())
}

/// The figures of `--end-to-end-only`: each round's, then the medians.
fn print_end_to_end(results: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let line = |what: &str, e: &Value, p: &Value| {
        let mut out = format!(
            "{what:<9} sqlite {:>6.0} batches/s, lost {}, RSS {:.1} MiB, {:.0} µs CPU per batch",
            f(&e["naga_batches_per_s"]),
            e["naga_lost_callbacks"],
            f(&e["naga_rss_mib_after"]),
            f(&e["naga_cpu_us_per_batch"])
        );
        if !p.is_null() {
            out.push_str(&format!(
                ";  postgres 1 node {:>6.0} ({:.2}×), 2 nodes {:>6.0} ({:.2}×), lost {} / {}",
                f(&p["one_node_batches_per_s"]),
                f(&p["one_node_to_sqlite"]),
                f(&p["two_nodes_batches_per_s"]),
                f(&p["two_nodes_to_sqlite"]),
                p["one_node_lost_callbacks"],
                p["two_nodes_lost_callbacks"]
            ));
        }
        println!("{out}");
    };
    let rounds = results["rounds"].as_array().cloned().unwrap_or_default();
    for (i, r) in rounds.iter().enumerate() {
        line(
            &format!("round {}", i + 1),
            &r["end_to_end"],
            &r["postgres"],
        );
    }
    line("median", &results["end_to_end"], &results["postgres"]);
}

/// PostgreSQL's counters of `database` (commits, index and sequential
/// scans, and statements when `pg_stat_statements` is loaded), read with
/// `psql`; empty when it cannot say.
fn pg_counters(database: &str) -> BTreeMap<String, f64> {
    let (server, name) = database.rsplit_once('/').unwrap_or_default();
    let sql = format!(
        "SELECT 'commits', xact_commit FROM pg_stat_database WHERE datname = '{name}' UNION ALL
         SELECT 'index_scans', COALESCE(SUM(idx_scan), 0) FROM pg_stat_user_tables UNION ALL
         SELECT 'seq_scans', COALESCE(SUM(seq_scan), 0) FROM pg_stat_user_tables UNION ALL
         SELECT 'rows_updated', COALESCE(SUM(n_tup_upd), 0) FROM pg_stat_user_tables"
    );
    let mut counters = BTreeMap::new();
    let read = |url: &str, sql: &str| {
        Command::new("psql")
            .args([url, "-AtF", "\t", "-c", sql])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let statements = format!(
        "SELECT 'statements', COALESCE(SUM(calls), 0) FROM pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '{name}')"
    );
    let out = read(database, &sql) + &read(&format!("{server}/postgres"), &statements);
    for line in out.lines() {
        if let Some((k, v)) = line.split_once('\t') {
            if let Ok(v) = v.parse() {
                counters.insert(k.to_owned(), v);
            }
        }
    }
    counters
}

/// The counters' growth since `before`, per batch.
fn pg_per_batch(database: &str, before: &BTreeMap<String, f64>, batches: usize) -> Value {
    // (A backend's counters reach the shared ones within a second.)
    std::thread::sleep(Duration::from_millis(1500));
    let after = pg_counters(database);
    let per: serde_json::Map<String, Value> = after
        .iter()
        .map(|(k, v)| {
            let grown = v - before.get(k).copied().unwrap_or(0.0);
            (
                k.clone(),
                json!((grown / batches as f64 * 100.0).round() / 100.0),
            )
        })
        .collect();
    Value::Object(per)
}
