//! `POST /schedule` of the agent server: the seed's contract, asynchronous
//! execution, callbacks, ordering, idempotency and per-session scheduling.

mod common;
use common::*;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn seed_example_is_accepted_and_called_back() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (status, resp) = app.post_schedule(&seed_request(&receiver.url())).await;

    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp["success"], true);
    assert_eq!(resp["status"], "scheduled");
    assert_eq!(resp["task_id"], "req_456789");
    assert_eq!(resp["message"], "已调度 2 个Agent任务");
    assert_eq!(resp["session_id"], "user_session_123");
    assert_eq!(
        resp["analysis_session_id"],
        "analysis_user_session_123_1703123456"
    );
    let accepted = resp["accepted_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(accepted).is_ok(),
        "{accepted}"
    );

    let cb = receiver.wait_for("req_456789").await.body;
    assert_eq!(cb["request_id"], "req_456789");
    assert_eq!(cb["kind"], "agent");
    assert_eq!(cb["session_id"], "user_session_123");
    assert_eq!(
        cb["analysis_session_id"],
        "analysis_user_session_123_1703123456"
    );
    // No display here: computer_control fails clearly, and so does the batch.
    assert_eq!(cb["status"], "failed");
    assert_eq!(cb["success"], false);
    let results = cb["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["step_index"], i);
        assert_eq!(r["agent_call"]["tool_name"], "computer_control");
        assert_eq!(r["result"]["success"], false);
        assert_eq!(r["result"]["task_type"], "computer_control");
        assert!(
            r["result"]["error"]
                .as_str()
                .unwrap()
                .contains("no display"),
            "{r}"
        );
    }
    assert_eq!(results[0]["result"]["instruction"], "打开记事本");
    assert_eq!(results[1]["result"]["instruction"], "输入文本");
    assert!(cb["sequence"].as_i64().unwrap() >= 1);
    assert!(chrono::DateTime::parse_from_rfc3339(cb["completed_at"].as_str().unwrap()).is_ok());
}

#[tokio::test]
async fn answers_before_a_slow_batch_finishes_then_calls_back_in_order() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let body = echo_batch(
        "s-slow",
        "slow-1",
        &["first", "second", "third"],
        400,
        Some(&receiver.url()),
    );
    let (status, resp) = app.post_schedule(&body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(resp["status"], "scheduled");

    // The answer came while the batch was still queued or running.
    let (_, task) = app.get("/tasks/slow-1").await;
    assert!(
        matches!(task["status"].as_str(), Some("queued" | "running")),
        "{task}"
    );
    assert!(receiver.all().is_empty());

    let cb = receiver.wait_for("slow-1").await.body;
    assert_eq!(cb["status"], "succeeded");
    assert_eq!(cb["success"], true);
    assert_eq!(cb["error"], json!(null));
    let texts: Vec<_> = cb["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["result"]["result"].clone())
        .collect();
    assert_eq!(texts, vec![json!("first"), json!("second"), json!("third")]);

    let task = app.wait_for_task_end("slow-1").await;
    assert_eq!(task["steps_count"], 3);
    let calls = task["calls"].as_array().unwrap();
    // Calls ran one after the other.
    for pair in calls.windows(2) {
        assert!(
            pair[0]["finished_at"].as_str() <= pair[1]["started_at"].as_str(),
            "{pair:?}"
        );
    }
}

#[tokio::test]
async fn same_request_id_answers_the_first_time_and_runs_once() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let body = echo_batch(
        "s-idem",
        "idem-1",
        &["only once"],
        50,
        Some(&receiver.url()),
    );
    let (_, first) = app.post_schedule(&body).await;
    // Repeats, at the same time, half of them with other calls.
    let mut handles = Vec::new();
    for i in 0..8 {
        let mut b = body.clone();
        if i % 2 == 0 {
            b["agent_calls"][0]["instruction"] = json!(format!("changed {i}"));
        }
        let client = app.client.clone();
        let url = format!("{}/schedule", app.agent);
        handles.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&b)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }));
    }
    // The same body gets the first answer; another body under the same
    // request id is refused (422) and changes nothing.
    for (i, h) in handles.into_iter().enumerate() {
        let again: serde_json::Value = serde_json::from_str(&h.await.unwrap()).unwrap();
        match i % 2 {
            0 => assert_eq!(again["code"], "request_id_reused", "{again}"),
            _ => assert_eq!(again, first),
        }
    }
    receiver.wait_for("idem-1").await;
    let task = app.wait_for_task_end("idem-1").await;
    assert_eq!(task["steps_count"], 1);
    assert_eq!(task["calls"][0]["call"]["instruction"], "only once");
    let (_, list) = app.get("/tasks?session_id=s-idem").await;
    assert_eq!(list["count"], 1);
    // Still one callback after the batch ended and the repeat came again.
    let (_, again) = app.post_schedule(&body).await;
    assert_eq!(again, first);
    let (_, outbox) = app.get("/callbacks").await;
    assert_eq!(outbox["count"], 1, "one callback in the outbox: {outbox}");
    assert_eq!(outbox["callbacks"][0]["status"], "delivered");
    assert_eq!(receiver.all().len(), 1);
}

/// An idle session's batch is committed as running: `/schedule` answers
/// with the batch already started. A repeat of a finished batch reserves
/// the idle session too; it must give the slot back, or the session's next
/// batch would wait for ever.
#[tokio::test]
async fn an_idle_sessions_batch_is_running_at_once_and_a_repeat_gives_its_slot_back() {
    let app = TestApp::spawn().await;
    let first = echo_batch("s-idle", "idle-1", &["one"], 300, None);
    app.post_schedule(&first).await;
    let (_, task) = app.get("/tasks/idle-1").await;
    assert_eq!(task["status"], "running", "{task}");
    assert!(task["started_at"].is_string(), "{task}");
    app.wait_for_task_end("idle-1").await;

    for _ in 0..3 {
        let (status, again) = app.post_schedule(&first).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(again["task_id"], "idle-1");
    }
    app.post_schedule(&echo_batch("s-idle", "idle-2", &["two"], 10, None))
        .await;
    let next = app.wait_for_task_end("idle-2").await;
    assert_eq!(next["status"], "succeeded", "{next}");
    let (_, list) = app.get("/tasks?session_id=s-idle").await;
    assert_eq!(list["count"], 2);
}

#[tokio::test]
async fn empty_agent_calls_are_no_tasks_and_store_nothing() {
    let app = TestApp::spawn().await;
    let (status, resp) = app
        .post_schedule(
            &json!({"query": "nothing", "agent_calls": [], "session_id": "s-empty",
                               "request_id": "empty-1", "callback_url": "http://localhost:1/cb"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(resp["success"], true);
    assert_eq!(resp["status"], "no_tasks");
    assert_eq!(resp["session_id"], "s-empty");
    let (status, _) = app.get("/tasks/empty-1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, sessions) = app.get("/sessions").await;
    assert_eq!(sessions["count"], 0);
}

#[tokio::test]
async fn one_session_runs_fifo_while_sessions_run_in_parallel() {
    let app = TestApp::spawn().await;
    app.post_schedule(&echo_batch("fifo", "fifo-1", &["a"], 300, None))
        .await;
    app.post_schedule(&echo_batch("fifo", "fifo-2", &["b"], 10, None))
        .await;
    app.post_schedule(&echo_batch("other", "other-1", &["c"], 300, None))
        .await;

    let (_, second) = app.get("/tasks/fifo-2").await;
    assert_eq!(
        second["status"], "queued",
        "second batch of a busy session waits"
    );

    let t1 = app.wait_for_task_end("fifo-1").await;
    let t2 = app.wait_for_task_end("fifo-2").await;
    let t3 = app.wait_for_task_end("other-1").await;
    assert!(
        t2["started_at"].as_str() >= t1["finished_at"].as_str(),
        "{t1} {t2}"
    );
    // The other session did not wait for the first.
    assert!(
        t3["started_at"].as_str() < t1["finished_at"].as_str(),
        "{t1} {t3}"
    );
}

#[tokio::test]
async fn parallel_strategy_runs_beside_the_active_batch() {
    let app = TestApp::spawn().await;
    app.post_schedule(&echo_batch("par", "par-1", &["a"], 300, None))
        .await;
    let mut b = echo_batch("par", "par-2", &["b"], 10, None);
    b["multitask_strategy"] = json!("parallel");
    app.post_schedule(&b).await;
    let t2 = app.wait_for_task_end("par-2").await;
    let (_, t1) = app.get("/tasks/par-1").await;
    assert_eq!(t2["status"], "succeeded");
    assert_eq!(
        t1["status"], "running",
        "par-2 finished while par-1 still ran"
    );
}

#[tokio::test]
async fn unknown_agent_and_file_edit_calls_give_results_with_reasons() {
    // Without a default agent (see the test of the default below).
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.agents.default_agent = String::new();
    let app = TestApp::spawn_with(dir, config).await;
    let receiver = Receiver::start().await;
    let body = json!({
        "agent_calls": [
            {"tool_name": "teleport", "instruction": "go"},
            {"task_type": "file_edit", "parameters": {"tool": "write_file", "path": "notes/a.txt", "content": "hello\n"}},
            {"tool_name": "file_edit", "parameters": {"tool": "read_file", "path": "../../etc/passwd"}},
            {"tool_name": "file_edit", "parameters": {"tool": "read_file", "path": "notes/a.txt"}}
        ],
        "session_id": "s-files", "request_id": "files-1", "callback_url": receiver.url()
    });
    app.post_schedule(&body).await;
    let cb = receiver.wait_for("files-1").await.body;
    let r = cb["results"].as_array().unwrap();
    let unknown = r[0]["result"]["error"].as_str().unwrap();
    assert!(
        unknown.contains("teleport") && unknown.contains("echo") && unknown.contains("file_edit"),
        "{unknown}"
    );
    assert_eq!(r[1]["result"]["success"], true);
    assert_eq!(r[2]["result"]["success"], false);
    assert!(r[2]["result"]["error"].as_str().unwrap().contains(".."));
    assert_eq!(r[3]["result"]["result"]["content"], "hello\n");
    assert_eq!(cb["status"], "failed");
    let written = std::fs::read_to_string(app.data_dir().join("workspace/notes/a.txt")).unwrap();
    assert_eq!(written, "hello\n");
}

#[tokio::test]
async fn cancelling_a_running_batch_stops_it_and_says_so_in_the_callback() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    app.post_schedule(&echo_batch(
        "s-cancel",
        "cancel-1",
        &["long", "never"],
        30_000,
        Some(&receiver.url()),
    ))
    .await;
    app.wait_for_status("cancel-1", "running").await;
    let (status, resp) = app.post("/tasks/cancel-1/cancel", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp["status"], "cancelled");
    let cb = receiver.wait_for("cancel-1").await.body;
    assert_eq!(cb["status"], "cancelled");
    assert_eq!(cb["success"], false);
    let task = app.wait_for_task_end("cancel-1").await;
    assert_eq!(task["calls"][1]["status"], "skipped");

    let (status, resp) = app.delete("/tasks/cancel-1").await;
    assert_eq!(status, StatusCode::CONFLICT, "{resp}");
    assert_eq!(resp["code"], "conflict");
    let (status, _) = app.post("/tasks/nope/cancel", &json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A repeat gets the first answer byte for byte: while the batch runs,
/// after it ended, and from a restarted server (which rebuilds the answer
/// from the task's row; the store keeps no copy of it).
#[tokio::test]
async fn a_repeat_gets_the_first_answer_byte_for_byte() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let text = |app: &TestApp, body: serde_json::Value| {
        let (client, url) = (app.client.clone(), format!("{}/schedule", app.agent));
        async move {
            let resp = client.post(url).json(&body).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            resp.text().await.unwrap()
        }
    };
    // With an analysis session, and without one (null in the answer).
    // Called back when they end.
    let cb = Some(receiver.url());
    let with = echo_batch("s-bytes", "bytes-1", &["一", "two"], 200, cb.as_deref());
    let mut without = echo_batch("s-bytes", "bytes-2", &["three"], 0, cb.as_deref());
    without
        .as_object_mut()
        .unwrap()
        .remove("analysis_session_id");
    let first_with = text(&app, with.clone()).await;
    let first_without = text(&app, without.clone()).await;
    assert!(
        first_with.contains("\"message\":\"已调度 2 个Agent任务\""),
        "{first_with}"
    );
    assert!(
        first_without.contains("\"analysis_session_id\":null"),
        "{first_without}"
    );

    assert_eq!(text(&app, with.clone()).await, first_with, "while it runs");
    receiver.wait_for("bytes-1").await;
    receiver.wait_for("bytes-2").await;
    assert_eq!(text(&app, with.clone()).await, first_with, "after it ended");
    let app = app.restart().await;
    assert_eq!(text(&app, with).await, first_with, "after a restart");
    assert_eq!(text(&app, without).await, first_without, "after a restart");
}

#[tokio::test]
async fn a_call_that_names_no_agent_here_runs_on_the_default_agent() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    // computer_control by default, as upstream; echo here (no display).
    config.agents.default_agent = "echo".into();
    let app = TestApp::spawn_with(dir, config).await;
    let receiver = Receiver::start().await;
    let body = json!({"agent_calls": [
            {"tool_name": "浏览器助手", "instruction": "打开浏览器", "agentType": "agent"},
            {"agentType": "agent", "instruction": "输入文本"}],
        "session_id": "default-agent", "request_id": "default-1", "callback_url": receiver.url()});
    assert_eq!(app.post_schedule(&body).await.0, StatusCode::OK);
    let cb = receiver.wait_for("default-1").await.body;
    assert_eq!(cb["status"], "succeeded", "{cb}");
    for (i, text) in ["打开浏览器", "输入文本"].iter().enumerate() {
        assert_eq!(cb["results"][i]["result"]["result"], *text);
        assert_eq!(cb["results"][i]["result"]["task_type"], "echo");
    }

    // No default: such a call fails and says which agents there are.
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.agents.default_agent = String::new();
    let app = TestApp::spawn_with(dir, config).await;
    let mut body = body.clone();
    body["request_id"] = json!("default-2");
    assert_eq!(app.post_schedule(&body).await.0, StatusCode::OK);
    let cb = receiver.wait_for("default-2").await.body;
    assert_eq!(cb["status"], "failed");
    let error = cb["results"][0]["result"]["error"].as_str().unwrap();
    assert!(
        error.contains("unknown agent `浏览器助手`") && error.contains("echo"),
        "{error}"
    );
}
