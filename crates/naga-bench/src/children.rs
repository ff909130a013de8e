//! The servers under test as child processes, and what they cost: CPU per
//! thread and resident memory, read from /proc.

use crate::Args;
use anyhow::{bail, Context};
use std::{
    collections::BTreeMap,
    process::{Child, Command, Stdio},
};

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn spawn_baseline(callback: bool) -> anyhow::Result<Server> {
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--baseline-server",
            if callback { "callback" } else { "answer" },
        ])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )?;
    Ok(Server {
        child,
        url: format!("http://{}", line.trim()),
    })
}

pub(crate) fn spawn_naga(args: &Args, dir: &std::path::Path) -> anyhow::Result<Server> {
    spawn_naga_on(args, dir, None)
}

/// naga on `database` (a `postgres://` URL), or on SQLite in `dir`.
pub(crate) fn spawn_naga_on(
    args: &Args,
    dir: &std::path::Path,
    database: Option<&str>,
) -> anyhow::Result<Server> {
    std::fs::create_dir_all(dir)?;
    let bin = match &args.naga {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("naga"),
    };
    let config = dir.join("naga.toml");
    std::fs::write(
        &config,
        format!("[store]\nsynchronous = \"{}\"\n", args.synchronous),
    )?;
    let mut child = Command::new(&bin)
        .args([
            "serve",
            "--only",
            "agent",
            "--agent-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.join("data"))
        .args(database.map(|d| format!("--database-url={d}")))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {} (build it: cargo build --release -p naga)",
                bin.display()
            )
        })?;
    let stderr = child.stderr.take().unwrap();
    let mut reader = std::io::BufReader::new(stderr);
    loop {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut reader, &mut line)? == 0 {
            bail!("naga exited before listening");
        }
        if let Some(url) = line.trim().strip_prefix("naga: agent server on ") {
            let url = url.to_owned();
            std::thread::spawn(move || for _ in std::io::BufRead::lines(reader) {});
            return Ok(Server { child, url });
        }
    }
}

/// CPU time (user + system) of the process's threads so far, in µs,
/// by thread name (`naga-writer`, `tokio-rt-worker`, …).
pub(crate) fn thread_cpu_us(pid: u32) -> BTreeMap<String, f64> {
    let mut by_name = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for task in tasks.flatten() {
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(task.path().join("comm")),
            std::fs::read_to_string(task.path().join("stat")),
        ) else {
            continue;
        };
        // Fields after the parenthesized name: utime and stime are the
        // 12th and 13th, in clock ticks (100 per second).
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
            .sum();
        *by_name.entry(name.trim().to_owned()).or_insert(0.0) += ticks * 10_000.0;
    }
    by_name
}

/// A process's CPU per unit of work since `before` (its threads' CPU when
/// the load began: starting and migrating is not the work measured), in
/// total and for its writer thread (naga's; 0 for other processes).
pub(crate) fn cpu_per(pid: u32, before: &BTreeMap<String, f64>, units: usize) -> (f64, f64) {
    let spent = |name: &str, now: f64| now - before.get(name).copied().unwrap_or(0.0);
    let cpu = thread_cpu_us(pid);
    let n = units.max(1) as f64;
    (
        cpu.iter().map(|(name, &us)| spent(name, us)).sum::<f64>() / n,
        cpu.get("naga-writer")
            .map_or(0.0, |&us| spent("naga-writer", us))
            / n,
    )
}

pub(crate) fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}
