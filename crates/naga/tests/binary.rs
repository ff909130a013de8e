//! The real `naga` binary, as a newcomer runs it.

mod common;
use common::{free_port, post_json, read, wait_until, Receiver};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::process::{Child, Command};
use std::time::Duration;

/// `naga serve` on a free port with its data in `data_dir`.
fn serve(data_dir: &std::path::Path, extra: &[&str]) -> (Child, String) {
    common::spawn_naga(|cmd| {
        cmd.arg("--data-dir").arg(data_dir).args(extra);
    })
}

#[tokio::test]
async fn serve_schedules_calls_back_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (child, url) = serve(&dir.path().join("data"), &[]);
    let receiver = Receiver::start().await;
    let client = reqwest::Client::new();
    let body = json!({"agent_calls": [{"tool_name": "echo", "instruction": "hi"}],
                      "session_id": "bin", "request_id": "bin-1", "callback_url": receiver.url()});
    let (status, resp) = post_json(&client, &format!("{url}/schedule"), &body).await;
    assert_eq!(status, 200, "{resp}");
    let cb = receiver.wait_for("bin-1").await;
    assert_eq!(cb.body["results"][0]["result"]["result"], "hi");
    assert!(cb.headers.get("webhook-id").is_some());

    let status = terminate(child).await;
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
    let out = naga(&["tasks", "list", "--session", "cli", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tasks"][0]["task_id"], "cli-1");
    let out = naga(&["demo"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(docs[0]["status"], "scheduled");
    assert_eq!(docs[1]["task_id"], docs[0]["task_id"]);
    assert_eq!(docs[1]["results"][0]["result"]["result"], "打开记事本");
    assert!(docs[1]["results"][1]["result"]["error"]
        .as_str()
        .unwrap()
        .contains("no display"));
    let out = naga(&["sessions", "list"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("cli\t1 tasks"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    child.kill().unwrap();
    let _ = child.wait();
}

/// Sends SIGTERM and waits (off the async threads) for the exit status.
async fn terminate(child: Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let waited = tokio::task::spawn_blocking(move || {
        let mut child = child;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    waited.expect("naga still running 30 s after SIGTERM")
}

/// A config file for crash tests: short leases, quick retries that never give up.
fn crash_config(dir: &std::path::Path) -> String {
    let file = dir.join("naga.toml");
    std::fs::write(
        &file,
        "[scheduler]\nlease_ms = 500\n[callbacks]\nretry_schedule_ms = []\nbackoff_base_ms = 20\nbackoff_max_ms = 200\nmax_attempts = 100000\n",
    )
    .unwrap();
    file.display().to_string()
}

async fn get(client: &reqwest::Client, url: String) -> serde_json::Value {
    read(client.get(url).send().await.unwrap()).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_many_batches_with_the_receiver_down_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = crash_config(dir.path());
    let (mut naga, url) = serve(&data, &["--config", &config]);
    let client = reqwest::Client::new();

    // The receiver is down: nothing listens on its port yet.
    let port = free_port();
    let callback = format!("http://127.0.0.1:{port}/agent_result_callback");
    let (sessions, per_session, calls) = (8, 5, 3);
    let mut ids = Vec::new();
    for s in 0..sessions {
        for b in 0..per_session {
            let id = format!("crash-{s}-{b}");
            let calls: Vec<_> = (0..calls)
                .map(|c| json!({"tool_name": "echo", "instruction": format!("{id}/{c}"), "parameters": {"delay_ms": 40}}))
                .collect();
            let body = json!({"agent_calls": calls, "session_id": format!("crash-s{s}"),
                              "analysis_session_id": format!("analysis_crash-s{s}_1"),
                              "request_id": id, "callback_url": callback});
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
            ids.push(id);
        }
    }
    // Kill it while some batches are done, some running, some queued.
    let done_url = format!("{url}/tasks?status=succeeded&limit=1000");
    wait_until(
        Duration::from_secs(60),
        "batches ending before the kill",
        || async {
            let done = get(&client, done_url.clone()).await["count"]
                .as_u64()
                .unwrap();
            (done >= (sessions * 2) as u64).then_some(())
        },
    )
    .await;
    naga.kill().unwrap(); // SIGKILL
    naga.wait().unwrap();

    // The receiver comes up; naga restarts on the same database.
    let receiver = Receiver::start_on(port, &[]).await;
    let (mut naga, url) = serve(&data, &["--config", &config]);
    for id in &ids {
        let cb = receiver.wait_for(id).await.body;
        assert_eq!(cb["status"], "succeeded", "{cb}");
        let texts: Vec<_> = cb["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["result"]["result"].clone())
            .collect();
        let want: Vec<_> = (0..calls).map(|c| json!(format!("{id}/{c}"))).collect();
        assert_eq!(texts, want, "every result, in order");
    }
    // Every batch completed once: each call has exactly one step (a call
    // that finished before the kill did not run again).
    let tasks = get(&client, format!("{url}/tasks?limit=1000")).await;
    assert_eq!(tasks["count"], ids.len());
    for t in tasks["tasks"].as_array().unwrap() {
        assert_eq!(t["status"], "succeeded");
        assert_eq!(t["steps_count"], calls, "{t}");
    }
    // One webhook-id per task, whatever was redelivered.
    let mut webhook_ids: HashMap<String, HashSet<String>> = HashMap::new();
    for r in receiver.accepted() {
        webhook_ids
            .entry(r.body["task_id"].as_str().unwrap().to_owned())
            .or_default()
            .insert(r.headers["webhook-id"].to_str().unwrap().to_owned());
    }
    assert_eq!(webhook_ids.len(), ids.len());
    assert!(
        webhook_ids.values().all(|s| s.len() == 1),
        "{webhook_ids:?}"
    );
    // FIFO per session held across the crash.
    for s in 0..sessions {
        let list = get(&client, format!("{url}/tasks?session_id=crash-s{s}")).await;
        let mut runs: Vec<_> = list["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["task_id"].as_str().unwrap().to_owned(),
                    t["finished_at"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        runs.sort();
        assert!(runs.windows(2).all(|w| w[0].1 <= w[1].1), "{runs:?}");
    }
    naga.kill().unwrap();
    naga.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_running_call_finish_and_the_restart_resumes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (naga, url) = serve(&data, &[]);
    let client = reqwest::Client::new();
    let receiver = Receiver::start().await;
    let body = json!({"agent_calls": [
            {"tool_name": "echo", "instruction": "first", "parameters": {"delay_ms": 1000}},
            {"tool_name": "echo", "instruction": "second"}],
        "session_id": "term", "request_id": "term-1", "callback_url": receiver.url()});
    client
        .post(format!("{url}/schedule"))
        .json(&body)
        .send()
        .await
        .unwrap();
    wait_until(Duration::from_secs(30), "term-1 running", || async {
        (get(&client, format!("{url}/tasks/term-1")).await["status"] == "running").then_some(())
    })
    .await;
    let status = terminate(naga).await;
    assert!(status.success());
    let exited = chrono::Utc::now();

    // The running call finished within the grace period; the next did not start.
    let (naga, url) = serve(&data, &[]);
    let cb = receiver.wait_for("term-1").await.body;
    assert_eq!(cb["status"], "succeeded");
    let t = get(&client, format!("{url}/tasks/term-1")).await;
    assert_eq!(t["steps_count"], 2, "each call ran once: {t}");
    let at = |i: usize| {
        chrono::DateTime::parse_from_rfc3339(t["steps"][i]["created_at"].as_str().unwrap()).unwrap()
    };
    assert!(at(0) < exited, "the first call ended before naga exited");
    assert!(at(1) > exited, "the second call ran after the restart");
    let mut naga = naga;
    naga.kill().unwrap();
    naga.wait().unwrap();
}

/// Logs go out through their own thread: every session-management line of
/// a batch reaches stderr by the time a stopped server exits, and a stderr
/// that is not a terminal gets no colour codes.
#[tokio::test]
async fn decision_logs_reach_stderr_whole_and_without_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (child, url, stderr) = common::spawn_naga_logged(|cmd| {
        cmd.arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("RUST_LOG", "info");
    });
    let receiver = Receiver::start().await;
    let client = reqwest::Client::new();
    for i in 0..20 {
        let mut body = json!({"agent_calls": [{"tool_name": "echo", "instruction": "hi"}],
                              "session_id": "logs", "request_id": format!("log-{i}")});
        if i == 19 {
            // The session's batches run in order: the last one's callback
            // comes after every batch has ended (and logged its end).
            body["callback_url"] = json!(receiver.url());
        }
        let (status, resp) = post_json(&client, &format!("{url}/schedule"), &body).await;
        assert_eq!(status, 200, "{resp}");
    }
    receiver.wait_for("log-19").await;
    assert!(terminate(child).await.success());
    let text = stderr.join().unwrap();
    assert!(!text.contains('\u{1b}'), "colour codes on a pipe:\n{text}");
    for i in 0..20 {
        let id = format!("request_id=\"log-{i}\"");
        assert!(
            text.lines()
                .any(|l| l.contains("batch committed") && l.contains(&id)),
            "no commit line for log-{i}:\n{text}"
        );
    }
    let finished = text
        .lines()
        .filter(|l| l.contains("task finished") && l.contains("session_id=logs "))
        .count();
    assert_eq!(finished, 20, "{text}");
}

/// Every line a task's run logs carries the task's ids in its span, as does
/// every line of the request that scheduled it (JSON logs: `span`).
#[tokio::test]
async fn every_log_line_of_a_task_carries_its_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (child, url, stderr) = common::spawn_naga_logged(|cmd| {
        cmd.arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("NAGA_LOG_JSON", "true")
            .env("RUST_LOG", "debug");
    });
    let receiver = Receiver::start().await;
    let client = reqwest::Client::new();
    let body = json!({"agent_calls": [{"tool_name": "echo", "instruction": "a"},
                                      {"tool_name": "echo", "instruction": "b"}],
                      "session_id": "spans", "analysis_session_id": "an-1",
                      "request_id": "span-1", "callback_url": receiver.url()});
    let (status, resp) = post_json(&client, &format!("{url}/schedule"), &body).await;
    assert_eq!(status, 200, "{resp}");
    receiver.wait_for("span-1").await;
    assert!(terminate(child).await.success());
    let text = stderr.join().unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let in_span = |name: &str| -> Vec<&serde_json::Value> {
        lines
            .iter()
            .filter(|l| l["span"]["name"] == name && l["span"]["request_id"] == "span-1")
            .collect()
    };
    let run = in_span("task");
    assert!(
        run.len() >= 3,
        "the run's lines (two calls starting, the end) are in its span:\n{text}"
    );
    for l in &run {
        assert_eq!(l["span"]["session_id"], "spans", "{l}");
        assert_eq!(l["span"]["analysis_session_id"], "an-1", "{l}");
        assert_eq!(l["span"]["task_id"], "span-1", "{l}");
    }
    let request = in_span("schedule");
    assert!(
        request.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("batch committed"))),
        "the commit is logged in the request's span:\n{text}"
    );
}

/// `naga backup` copies a running node's store; naga started on the copy
/// finds every task. PostgreSQL is pointed to pg_dump; an existing file is
/// not overwritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_copies_a_running_store_that_a_new_node_restores() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut naga, url) = serve(&data, &[]);
    let client = reqwest::Client::new();
    let receiver = Receiver::start().await;
    let ids: Vec<String> = (0..30).map(|i| format!("bk-{i}")).collect();
    for id in &ids {
        let body = json!({"agent_calls": [{"tool_name": "echo", "instruction": id}],
                          "session_id": "bk", "request_id": id, "callback_url": receiver.url()});
        let (status, resp) = post_json(&client, &format!("{url}/schedule"), &body).await;
        assert_eq!(status, 200, "{resp}");
    }
    for id in &ids {
        receiver.wait_for(id).await;
    }
    let copy = dir.path().join("copy.db");
    let backup = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_naga"))
            .arg("backup")
            .arg(&copy)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = backup(&["--data-dir", data.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = backup(&["--data-dir", data.to_str().unwrap()]);
    assert!(
        !again.status.success(),
        "an existing file is not overwritten"
    );
    let pg = backup(&["--database-url", "postgres://naga@127.0.0.1:1/naga"]);
    assert!(String::from_utf8_lossy(&pg.stderr).contains("pg_dump"));
    naga.kill().unwrap();
    naga.wait().unwrap();

    let restored = dir.path().join("restored");
    std::fs::create_dir_all(&restored).unwrap();
    std::fs::copy(&copy, restored.join("naga.db")).unwrap();
    let (mut naga, url) = serve(&restored, &[]);
    let tasks = get(&client, format!("{url}/tasks?session_id=bk&limit=1000")).await;
    assert_eq!(tasks["count"], ids.len(), "{tasks}");
    for id in &ids {
        let t = get(&client, format!("{url}/tasks/{id}")).await;
        assert_eq!(t["status"], "succeeded", "{t}");
        assert_eq!(t["steps"][0]["output"], id.as_str(), "{t}");
    }
    naga.kill().unwrap();
    naga.wait().unwrap();
}
