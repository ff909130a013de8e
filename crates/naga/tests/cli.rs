//! The `naga` client subcommands against a running `naga serve`: data on
//! stdout (`--json`: JSON), progress and errors on stderr, an error one
//! line and a non-zero exit.

mod common;
use common::{post_json, Receiver};
use serde_json::{json, Value};
use std::process::Child;
use std::time::Duration;

struct Cli {
    url: String,
    token: Option<String>,
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Out {
    /// Each line of stdout as JSON.
    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

impl Cli {
    async fn run(&self, args: &[&str]) -> Out {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_naga"));
        cmd.args(args)
            .env("NAGA_AGENT_URL", &self.url)
            .env_remove("NAGA_AUTH_TOKEN");
        if let Some(t) = &self.token {
            cmd.env("NAGA_AUTH_TOKEN", t);
        }
        let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("`naga {}` did not end within 60 s", args.join(" ")))
            .unwrap();
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn ok(&self, args: &[&str]) -> Out {
        let out = self.run(args).await;
        assert!(out.ok, "`naga {}` failed: {}", args.join(" "), out.stderr);
        out
    }
}

fn serve(dir: &tempfile::TempDir, extra: &[&str]) -> (Child, Cli) {
    let (child, url) = common::spawn_naga(|cmd| {
        cmd.arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(extra);
    });
    (child, Cli { url, token: None })
}

/// An echo batch whose calls take `delay_ms` each, scheduled over HTTP.
async fn slow_batch(cli: &Cli, id: &str, calls: usize, delay_ms: u64, callback: Option<&str>) {
    let instructions: Vec<String> = (0..calls).map(|i| format!("step {i}")).collect();
    let refs: Vec<&str> = instructions.iter().map(String::as_str).collect();
    let body = common::echo_batch(id, id, &refs, delay_ms, callback);
    let client = reqwest::Client::new();
    let (status, answer) = post_json(&client, &format!("{}/schedule", cli.url), &body).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn schedule_wait_show_and_watch_a_batch_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, cli) = serve(&dir, &[]);
    let out = cli
        .ok(&[
            "schedule",
            "--wait",
            "--session",
            "w",
            "--request-id",
            "w-1",
            "one",
            "two",
        ])
        .await;
    let line: Vec<&str> = out.stdout.trim().split('\t').collect();
    assert_eq!(
        line[..4],
        ["w-1", "succeeded", "w", "2 steps"],
        "{}",
        out.stdout
    );

    let out = cli.ok(&["tasks", "show", "w-1", "--json"]).await;
    let task: Value = serde_json::from_str(&out.stdout).unwrap();
    let statuses: Vec<&Value> = task["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["status"])
        .collect();
    assert_eq!(statuses, [&json!("succeeded"), &json!("succeeded")]);
    let out = cli.ok(&["tasks", "show", "w-1"]).await;
    assert!(
        out.stdout.contains("  step 2\techo: two\ttwo"),
        "{}",
        out.stdout
    );

    // Followed live: its state as it changes, each step as it is recorded.
    slow_batch(&cli, "live-1", 3, 400, None).await;
    let out = cli.ok(&["tasks", "watch", "live-1", "--json"]).await;
    let events = out.json_lines();
    let states: Vec<&str> = events.iter().filter_map(|e| e["status"].as_str()).collect();
    assert!(states.contains(&"running"), "seen running: {events:?}");
    assert_eq!(states.last(), Some(&"succeeded"), "{events:?}");
    let steps: Vec<i64> = events
        .iter()
        .filter_map(|e| e["step_id"].as_i64())
        .collect();
    assert_eq!(steps, [1, 2, 3], "each step once, in order: {events:?}");

    let out = cli.ok(&["tasks", "list", "--session", "w"]).await;
    assert!(
        out.stdout.starts_with("w-1\tsucceeded\tw"),
        "{}",
        out.stdout
    );
    let out = cli.ok(&["sessions", "list", "--json"]).await;
    let sessions: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["session_id"] == "w"));
    child.kill().unwrap();
    let _ = child.wait();
}

#[tokio::test]
async fn cancel_stops_a_running_batch_and_watch_then_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, cli) = serve(&dir, &[]);
    slow_batch(&cli, "long-1", 2, 30_000, None).await;
    let out = cli.ok(&["tasks", "cancel", "long-1"]).await;
    assert_eq!(out.stdout.trim(), "long-1\tcancelled");
    let out = cli.run(&["tasks", "watch", "long-1"]).await;
    assert!(!out.ok, "a cancelled task's watch fails: {}", out.stdout);
    assert!(out.stdout.contains("long-1\tcancelled"), "{}", out.stdout);
    assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);
    assert!(
        out.stderr.starts_with("naga: task long-1 cancelled"),
        "{}",
        out.stderr
    );
    child.kill().unwrap();
    let _ = child.wait();
}

#[tokio::test]
async fn dead_callbacks_are_listed_retried_and_redriven() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, cli) = serve(&dir, &[]);
    // The receiver refuses twice (400: dead at once), then takes them.
    let receiver = Receiver::start_on(0, &[(400, None), (400, None)]).await;
    for id in ["cb-1", "cb-2"] {
        slow_batch(&cli, id, 1, 0, Some(&receiver.url())).await;
    }
    let dead = common::wait_until(Duration::from_secs(30), "two dead callbacks", || async {
        let out = cli.ok(&["callbacks", "list", "--dead", "--json"]).await;
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        let dead = v["callbacks"].as_array().unwrap().clone();
        (dead.len() == 2).then_some(dead)
    })
    .await;
    let out = cli.ok(&["callbacks", "list", "--dead"]).await;
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
    assert!(
        out.stdout.contains("receiver answered 400"),
        "{}",
        out.stdout
    );

    let first = dead.iter().find(|c| c["task_id"] == "cb-1").unwrap();
    cli.ok(&["callbacks", "retry", first["id"].as_str().unwrap()])
        .await;
    receiver.wait_for("cb-1").await;
    let out = cli.ok(&["callbacks", "redrive"]).await;
    let second = dead.iter().find(|c| c["task_id"] == "cb-2").unwrap();
    assert_eq!(
        out.stdout.trim(),
        second["id"].as_str().unwrap(),
        "only cb-2 was still dead"
    );
    receiver.wait_for("cb-2").await;
    let out = cli.ok(&["callbacks", "list", "--dead", "--json"]).await;
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["callbacks"], json!([]));
    child.kill().unwrap();
    let _ = child.wait();
}

#[tokio::test]
async fn prune_dry_run_counts_and_prune_removes_while_naga_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, cli) = serve(&dir, &[]);
    let receiver = Receiver::start().await;
    slow_batch(&cli, "done-1", 2, 0, Some(&receiver.url())).await;
    receiver.wait_for("done-1").await;
    let data = dir.path().join("data");
    let store = ["--data-dir", data.to_str().unwrap()];
    let windows = ["--retention-tasks", "1ms", "--retention-callbacks", "1ms"];
    let prune = |dry: bool| {
        let mut args = vec!["prune", "--json"];
        args.extend(dry.then_some("--dry-run"));
        args.extend(store.iter().chain(&windows));
        args
    };
    let out = cli.ok(&prune(true)).await;
    let would: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(would["dry_run"], true, "{would}");
    assert_eq!(would["removed"]["tasks"], 1, "{would}");
    assert_eq!(would["removed"]["steps"], 2, "{would}");
    assert_eq!(would["removed"]["callbacks"], 1, "{would}");
    cli.ok(&["tasks", "show", "done-1"]).await;

    let out = cli.ok(&prune(false)).await;
    let removed: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(removed["removed"], would["removed"], "{removed}");
    let out = cli.run(&["tasks", "show", "done-1"]).await;
    assert!(!out.ok && out.stderr.contains("404"), "{}", out.stderr);
    // Without --json: a line per kind, then the total.
    let out = cli.ok(&["prune", "--dry-run", store[0], store[1]]).await;
    assert!(out.stdout.contains("would remove 0 rows"), "{}", out.stdout);
    child.kill().unwrap();
    let _ = child.wait();
}

#[tokio::test]
async fn errors_are_one_line_on_stderr_and_the_token_comes_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let token = "cli-token-0123456789abcdef";
    let (mut child, mut cli) = serve(&dir, &["--auth-token", token]);
    let out = cli.run(&["tasks", "list"]).await;
    assert!(!out.ok);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.starts_with("naga: 401"), "{}", out.stderr);
    assert!(out.stdout.is_empty());

    cli.token = Some(token.into());
    let out = cli.run(&["tasks", "show", "nope"]).await;
    assert!(!out.ok);
    assert_eq!(out.stderr.trim(), "naga: 404 Not Found: no task `nope`");
    assert!(!out.stderr.contains("backtrace") && !out.stderr.contains("panicked"));
    cli.ok(&["schedule", "--wait", "hello"]).await;

    let unreachable = Cli {
        url: format!("http://127.0.0.1:{}", common::free_port()),
        token: None,
    };
    let out = unreachable.run(&["sessions", "list"]).await;
    assert!(!out.ok);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot reach the agent server"),
        "{}",
        out.stderr
    );
    child.kill().unwrap();
    let _ = child.wait();
}
