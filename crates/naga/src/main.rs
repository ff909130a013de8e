//! `naga`: the server (`naga serve`) and a small client for it.
//! Data goes to stdout, everything else (logs, errors) to stderr.

// Unsafe only where the allocator and the open-files limit are reached.
#![deny(unsafe_code)]

mod cli;
mod config;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::{process::ExitCode, sync::Arc, time::Duration};

/// mimalloc for Rust and, through its `override` feature, for SQLite too:
/// glibc's malloc was a fifth of the store writer's time under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "naga",
    version,
    about = "naga: session-managed task scheduling for AI assistants"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the services (API 8000, agent 8001, MCP 8003) on embedded defaults.
    Serve(config::ServeArgs),
    /// Schedule a batch of agent calls on the agent server (`--wait`: follow
    /// it to its end).
    Schedule(cli::schedule::ScheduleArgs),
    /// The agent server's tasks: list, show, watch, cancel.
    Tasks(cli::tasks::TasksArgs),
    /// The agent server's sessions.
    Sessions(cli::sessions::SessionsArgs),
    /// The callback outbox: list, retry, redrive.
    Callbacks(cli::callbacks::CallbacksArgs),
    /// Schedule the seed's example on a running naga and print its callback.
    Demo(cli::demo::DemoArgs),
    /// Write a consistent copy of the SQLite store (also while naga runs);
    /// start naga on a data dir holding it as naga.db to restore it.
    Backup(BackupArgs),
    /// Remove now what is past its retention window ([retention]); the
    /// store may be in use. `--dry-run`: only count it.
    Prune(PruneArgs),
}

#[derive(clap::Args)]
struct PruneArgs {
    /// Count what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// The store and its retention: the same options as `naga serve`.
    #[command(flatten)]
    serve: config::ServeArgs,
}

#[derive(clap::Args)]
struct BackupArgs {
    /// Where to write the copy (a new file).
    to: std::path::PathBuf,
    /// The store to copy: the same options as `naga serve`.
    #[command(flatten)]
    serve: config::ServeArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(naga_core::runtime::worker_threads())
        .on_thread_park(return_this_threads_freed_memory)
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("naga: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Schedule(args) => cli::schedule::run(args).await,
            Command::Tasks(args) => cli::tasks::run(args).await,
            Command::Sessions(args) => cli::sessions::run(args).await,
            Command::Callbacks(args) => cli::callbacks::run(args).await,
            Command::Demo(args) => cli::demo::demo(args).await,
            Command::Backup(args) => backup(args).await,
            Command::Prune(args) => prune(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("naga: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A database URL as it may be logged: a password in it is replaced.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{name}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

async fn serve(args: config::ServeArgs) -> anyhow::Result<()> {
    // Held until `serve` returns: dropping it writes out what is queued.
    let _log = init_logging(args.log_json);
    let config = args.load().context("invalid configuration")?;
    raise_open_files_limit();
    // Listened for before anything starts: a SIGTERM that arrives as soon
    // as the addresses are printed still stops naga gracefully.
    let stop = shutdown_signal();
    tracing::info!(data_dir = %config.data_dir.display(), database = %without_password(&config.database_url()),
        synchronous = ?config.store.synchronous, "starting naga");
    let running = naga_server::start(config, Arc::new(naga_server::SystemClock)).await?;
    return_freed_memory(&running.engine);
    if let Some(addr) = running.api_addr {
        eprintln!("naga: API server on http://{addr}");
    }
    if let Some(addr) = running.agent_addr {
        eprintln!("naga: agent server on http://{addr}");
    }
    if let Some(addr) = running.mcp_addr {
        eprintln!("naga: MCP server on http://{addr}");
    }
    stop.await;
    tracing::info!("shutting down: no new requests; running calls get a grace period");
    running.shutdown(Duration::from_secs(10)).await;
    Ok(())
}

/// mimalloc (v3) hands freed pages back to the system after a delay, and
/// only when a thread calls into it again: after a burst of large requests,
/// idle workers kept hundreds of MiB of freed pages (60 callbacks of ~0.9
/// MB waiting for their retry: 461 MiB resident). A forced collection once
/// a second returns them (90 MiB), at no cost naga-bench can tell apart;
/// purging at every free (`MIMALLOC_PURGE_DELAY=0`) returned as much but
/// cost 10–15% more CPU per batch (BENCHMARKS.md, session 14).
#[allow(unsafe_code)]
fn return_freed_memory(engine: &naga_engine::Engine) {
    let stopping = engine.stopping().clone();
    engine.spawn_background(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = every.tick() => {
                    // SAFETY: a collection of mimalloc's own free lists; valid at any time.
                    unsafe { libmimalloc_sys::mi_collect(true) }
                }
                _ = stopping.cancelled() => return,
            }
        }
    });
}

/// What [`return_freed_memory`] does for the thread it runs on, done by
/// each worker thread as it goes idle, at most once a second: mimalloc's
/// heaps are per thread, and a worker that freed a burst of large bodies
/// and then idles kept their pages (an idle node held 455 MiB after 60
/// callbacks of ~0.9 MB had failed, until later requests woke its threads).
#[allow(unsafe_code)]
fn return_this_threads_freed_memory() {
    use std::{cell::Cell, time::Instant};
    thread_local! {
        static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    LAST.with(|last| {
        let now = Instant::now();
        if last
            .get()
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            last.set(Some(now));
            // SAFETY: a collection of this thread's mimalloc heap; valid at any time.
            unsafe { libmimalloc_sys::mi_collect(true) }
        }
    });
}

async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let config = args.serve.load().context("invalid configuration")?;
    let bytes = naga_engine::backup(&config.database_url(), &args.to)
        .await
        .context("backup failed")?;
    println!("{}\t{bytes} bytes", args.to.display());
    Ok(())
}

async fn prune(args: PruneArgs) -> anyhow::Result<()> {
    let config = args.serve.load().context("invalid configuration")?;
    let now = naga_engine::clock::Clock::now_ms(&naga_server::SystemClock);
    let report = naga_engine::retention::prune_store(&config, now, args.dry_run)
        .await
        .context("prune failed")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    if report.left_to_another_node {
        println!("another node is pruning now: this round stopped early");
    }
    for (kind, n) in &report.removed {
        println!("{verb}\t{n}\t{kind}");
    }
    println!("{verb} {} rows in {} ms", report.total(), report.took_ms);
    Ok(())
}

/// Raises the open-files soft limit to the hard limit (each connection is a
/// file: a soft limit of 1,024 is reached by a thousand idle clients) and
/// says so.
#[cfg(unix)]
#[allow(unsafe_code)]
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write only `limit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    let before = limit.rlim_cur;
    if before >= limit.rlim_max {
        tracing::info!(open_files = before, "open-files limit");
        return;
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: as above.
    match unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } {
        0 => tracing::info!(
            from = before,
            to = limit.rlim_cur,
            "open-files limit raised to its hard limit"
        ),
        _ => tracing::warn!(open_files = before, error = %std::io::Error::last_os_error(),
            "cannot raise the open-files limit"),
    }
}

#[cfg(not(unix))]
fn raise_open_files_limit() {}

/// Logs go to stderr through a thread of their own: a request formats its
/// lines but does not wait on a `write(2)` per line (three info lines per
/// batch: measured at `RUST_LOG=info`, below). The queue never drops a line:
/// when it is full, the caller waits, as it did on stderr itself. Colours
/// only on a terminal.
fn init_logging(json: bool) -> tracing_appender::non_blocking::WorkerGuard {
    use std::io::IsTerminal;
    use tracing_subscriber::{fmt, EnvFilter};
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let ansi = std::io::stderr().is_terminal();
    // A buffered writer: the log thread writes what it has queued at once
    // and flushes when the queue is empty.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("naga-log")
        .finish(std::io::BufWriter::new(std::io::stderr()));
    let builder = fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    guard
}

/// Resolves at SIGTERM or Ctrl-C (SIGINT); both are listened for from the
/// call on, not from the first poll.
#[cfg(unix)]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
            match s {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = wait(term) => {},
            _ = wait(int) => {},
        }
    }
}

#[cfg(not(unix))]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_database_password_is_not_logged() {
        use super::without_password as w;
        assert_eq!(
            w("postgres://naga:s3cret@db:5432/naga"),
            "postgres://naga:***@db:5432/naga"
        );
        assert_eq!(w("postgres://naga@db/naga"), "postgres://naga@db/naga");
        assert_eq!(w("sqlite://data/naga.db"), "sqlite://data/naga.db");
    }
}
