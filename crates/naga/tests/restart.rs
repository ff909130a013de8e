//! Durability: what was accepted survives a restart, and unfinished work
//! resumes at its first unfinished call.

mod common;
use common::*;
use reqwest::StatusCode;

#[tokio::test]
async fn tasks_and_steps_survive_a_restart() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    app.post_schedule(&echo_batch(
        "keep",
        "keep-1",
        &["a", "b"],
        0,
        Some(&receiver.url()),
    ))
    .await;
    receiver.wait_for("keep-1").await;
    let before = app.wait_for_task_end("keep-1").await;

    let app = app.restart().await;
    let (s, after) = app.get("/tasks/keep-1").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(after["status"], "succeeded");
    assert_eq!(after["steps"], before["steps"]);
    assert_eq!(after["calls"], before["calls"]);
    let (_, m) = app.get("/sessions/keep/memory").await;
    assert_eq!(m["key_facts"].as_array().unwrap().len(), 2);
    // Nothing is sent twice after the restart.
    let (_, outbox) = app.get("/callbacks?status=delivered").await;
    assert_eq!(outbox["count"], 1);
    assert_eq!(receiver.all().len(), 1);
}

#[tokio::test]
async fn an_interrupted_batch_resumes_at_its_first_unfinished_call() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let mut b = echo_batch(
        "resume",
        "resume-1",
        &["quick", "slow", "last"],
        0,
        Some(&receiver.url()),
    );
    b["agent_calls"][1]["parameters"]["delay_ms"] = serde_json::json!(60_000);
    app.post_schedule(&b).await;
    // Wait until the first call is recorded and the second is running.
    for _ in 0..500 {
        let (_, t) = app.get("/tasks/resume-1").await;
        if t["steps_count"] == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut app = app;
    app.stop().await;

    // Make the slow call quick for the resumed run: the store has the
    // payload; the restart runs it again, since it never finished.
    let mut config = app.config.clone();
    config.scheduler.call_timeout_ms = 300;
    let app = TestApp::spawn_with(app.dir.clone(), config).await;
    let cb = receiver.wait_for("resume-1").await.body;
    // The call that finished before the restart is reported, not re-run.
    assert_eq!(cb["results"][0]["result"]["result"], "quick");
    assert_eq!(cb["status"], "timed_out");
    assert!(
        cb["error"].as_str().unwrap().contains("call 1 timed out"),
        "{cb}"
    );
    let t = app.wait_for_task_end("resume-1").await;
    let steps = t["steps"].as_array().unwrap();
    assert_eq!(
        steps.len(),
        2,
        "quick ran once, slow once (then timed out): {steps:?}"
    );
    assert_eq!(steps[0]["output"], "quick");
    assert_eq!(t["calls"][2]["status"], "skipped");
}

/// A node restarted on a backlog holds only what its workers run (the rest
/// waits in the store), and still runs all of it, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_on_a_backlog_holds_only_what_it_runs_and_runs_it_in_order() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.scheduler.workers = 1;
    let mut app = TestApp::spawn_with(dir.clone(), config.clone()).await;
    let ids: Vec<String> = (0..12).map(|i| format!("backlog-{i}")).collect();
    for id in &ids {
        let (s, r) = app
            .post_schedule(&echo_batch("backlog", id, &["x"], 100, None))
            .await;
        assert_eq!(s, StatusCode::OK, "{r}");
    }
    app.stop().await;

    config.scheduler.workers = 2;
    let app = TestApp::spawn_with(dir, config).await;
    let mut ended = Vec::new();
    for id in &ids {
        let task = app.wait_for_task_end(id).await;
        let (_, health) = app.get("/health").await;
        assert!(health["queue"]["agent"].as_u64().unwrap() <= 1, "{health}");
        assert_eq!(task["status"], "succeeded", "{task}");
        ended.push(task);
    }
    for pair in ended.windows(2) {
        assert!(
            pair[1]["started_at"].as_str() >= pair[0]["finished_at"].as_str(),
            "in order: {} {}",
            pair[0],
            pair[1]
        );
    }
}
