//! The real `naga` binary, as a newcomer runs it.

mod common;
use common::{read, Receiver};
use serde_json::json;
use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
};

/// Starts `naga serve` on a free port; returns the child (the caller waits
/// for it) and its agent URL.
#[allow(clippy::zombie_processes)]
fn serve(data_dir: &std::path::Path, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_naga"))
        .args([
            "serve",
            "--agent-addr",
            "127.0.0.1:0",
            "--only",
            "agent",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "naga exited before listening"
        );
        if let Some(url) = line.trim().strip_prefix("naga: agent server on ") {
            let url = url.to_owned();
            // Keep draining stderr so the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in stderr.lines() {});
            return (child, url);
        }
    }
}

#[tokio::test]
async fn serve_schedules_calls_back_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (child, url) = serve(&dir.path().join("data"), &[]);
    let receiver = Receiver::start().await;
    let client = reqwest::Client::new();
    let body = json!({"agent_calls": [{"tool_name": "echo", "instruction": "hi"}],
                      "session_id": "bin", "request_id": "bin-1", "callback_url": receiver.url()});
    let (status, resp) = read(
        client
            .post(format!("{url}/schedule"))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{resp}");
    let cb = receiver.wait_for("bin-1").await;
    assert_eq!(cb.body["results"][0]["result"]["result"], "hi");
    assert!(cb.headers.get("webhook-id").is_some());

    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::task::spawn_blocking(move || {
        let mut child = child;
        child.wait().unwrap()
    })
    .await
    .unwrap();
    assert!(status.success(), "naga exits 0 after SIGTERM: {status}");
    assert!(dir.path().join("data/naga.db").exists());
}

#[test]
fn a_bad_config_file_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("naga.toml");
    std::fs::write(&file, "[scheduler]\nworkers = \"many\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_naga"))
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("workers"), "{err}");
}

#[test]
fn client_subcommands_print_data_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = serve(&dir.path().join("data"), &[]);
    let naga = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_naga"))
            .args(args)
            .env("NAGA_AGENT_URL", &url)
            .output()
            .unwrap()
    };
    let out = naga(&[
        "schedule",
        "--session",
        "cli",
        "--request-id",
        "cli-1",
        "hello",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "cli-1\tscheduled"
    );
    let out = naga(&["tasks", "--session", "cli", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tasks"][0]["task_id"], "cli-1");
    let out = naga(&["sessions"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("cli\t1 tasks"));
    child.kill().unwrap();
    let _ = child.wait();
}
