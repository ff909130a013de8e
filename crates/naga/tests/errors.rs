//! Bad input gets a clear JSON error with the right status, and changes
//! nothing that is stored.

mod common;
use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn assert_nothing_stored(app: &TestApp) {
    let (_, tasks) = app.get("/tasks").await;
    assert_eq!(tasks["count"], 0, "{tasks}");
    let (_, sessions) = app.get("/sessions").await;
    assert_eq!(sessions["count"], 0, "{sessions}");
}

fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(!body["detail"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn malformed_and_mistyped_bodies() {
    let app = TestApp::spawn().await;
    let json_ct = Some("application/json");

    let (s, b) = app
        .post_raw("/schedule", b"{\"session_id\": ".to_vec(), json_ct)
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "malformed_json");

    let (s, b) = app.post_raw("/schedule", b"".to_vec(), json_ct).await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "malformed_json");

    // Calls are kept as the text sent: text no parser could read back (half
    // a surrogate pair) is refused as it arrives.
    let lone =
        br#"{"agent_calls": [{"tool_name": "echo", "instruction": "\ud800"}], "session_id": "s"}"#;
    let (s, b) = app.post_raw("/schedule", lone.to_vec(), json_ct).await;
    assert!(s.is_client_error(), "{s} {b}");
    assert!(b["detail"].as_str().unwrap().contains("surrogate"), "{b}");

    let (s, b) = app
        .post_raw("/schedule", b"{}".to_vec(), Some("text/plain"))
        .await;
    assert_error(
        s,
        &b,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );

    let (s, b) = app
        .post_schedule(&json!({"agent_calls": "open notepad", "session_id": "s"}))
        .await;
    assert_error(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_fields");
    assert!(b["detail"].as_str().unwrap().contains("agent_calls"), "{b}");

    // Each call must be an object (calls are kept as the text sent).
    for calls in [
        json!([1, 2]),
        json!([{"tool_name": "echo"}, "open notepad"]),
        json!([null]),
        json!([[{"tool_name": "echo"}]]),
    ] {
        let (s, b) = app
            .post_schedule(&json!({"agent_calls": calls, "session_id": "s"}))
            .await;
        assert_error(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_fields");
        assert!(b["detail"].as_str().unwrap().contains("agent_calls"), "{b}");
    }

    let (s, b) = app
        .post_schedule(&json!({"agent_calls": [{"tool_name": "echo"}], "session_id": 42}))
        .await;
    assert_error(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_fields");

    let (s, b) = app.post_schedule(&json!([1, 2, 3])).await;
    assert_error(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_fields");

    let (s, b) = app
        .post_schedule(&json!({"agent_calls": [{"tool_name": "echo"}], "session_id": "s", "multitask_strategy": "yolo"}))
        .await;
    assert_error(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "invalid_fields");

    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn invalid_values_are_refused_with_what_to_do() {
    let app = TestApp::spawn().await;
    let call = json!([{"tool_name": "echo", "instruction": "x"}]);

    // (Without a session_id a batch runs in a session of its own, as
    // upstream takes it: see compat.rs.)

    let (s, b) = app
        .post_schedule(&json!({"agent_calls": call, "session_id": "  "}))
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_request");

    let (s, b) = app
        .post_schedule(&json!({"agent_calls": call, "session_id": "x".repeat(300)}))
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_request");

    for url in [
        "http://example.com/cb",
        "http://10.1.2.3:8000/cb",
        "file:///etc/passwd",
        "not a url",
    ] {
        let (s, b) = app
            .post_schedule(&json!({"agent_calls": call, "session_id": "s", "request_id": "r1", "callback_url": url}))
            .await;
        assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_request");
    }

    let many: Vec<Value> = (0..1001).map(|_| json!({"tool_name": "echo"})).collect();
    let (s, b) = app
        .post_schedule(&json!({"agent_calls": many, "session_id": "s"}))
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_request");

    assert_nothing_stored(&app).await;
    let (s, _) = app.get("/tasks/r1").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn huge_body_is_413() {
    let app = TestApp::spawn().await;
    let big = "x".repeat(2 * 1024 * 1024);
    let (s, b) = app
        .post_schedule(
            &json!({"agent_calls": [{"tool_name": "echo", "instruction": big}], "session_id": "s"}),
        )
        .await;
    assert_error(s, &b, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn unknown_ids_routes_and_methods_are_json_404_and_405() {
    let app = TestApp::spawn().await;
    for path in [
        "/tasks/nope",
        "/tasks/nope/memory",
        "/tasks/nope/steps",
        "/sessions/nope",
        "/sessions/nope/memory",
        "/sessions/nope/tasks",
        "/sessions/nope/key_facts",
        "/sessions/nope/failed_attempts",
        "/sessions/nope/compressed_memories",
        "/toolkits/nope",
        "/no/such/endpoint",
    ] {
        let (s, b) = app.get(path).await;
        assert_error(s, &b, StatusCode::NOT_FOUND, "not_found");
    }
    let (s, b) = app
        .post("/tasks/nope/steps", &json!({"purpose": "p"}))
        .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found");
    let (s, b) = app.delete("/sessions/nope/memory").await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found");
    let (s, b) = app.post("/callbacks/nope/retry", &json!({})).await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found");
    let (s, b) = app.get("/schedule").await;
    assert_error(s, &b, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    let (s, b) = app.get("/tasks?status=done").await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_status");
    let (s, b) = app.get("/tasks?limit=abc").await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_query");
    let (s, b) = app.get("/tasks?limit=0").await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_limit");
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn analysis_session_of_another_session_is_a_conflict() {
    let app = TestApp::spawn().await;
    let call = json!([{"tool_name": "echo", "instruction": "x"}]);
    let (s, _) = app
        .post_schedule(&json!({"agent_calls": call, "session_id": "a", "analysis_session_id": "analysis_a_1", "request_id": "r-a"}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = app
        .post_schedule(&json!({"agent_calls": call, "session_id": "b", "analysis_session_id": "analysis_a_1", "request_id": "r-b"}))
        .await;
    assert_error(s, &b, StatusCode::CONFLICT, "conflict");
    let (s, _) = app.get("/tasks/r-b").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app.get("/sessions/b").await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "the refused batch left no session behind"
    );
    // The session's next valid batch runs.
    let (s, _) = app
        .post_schedule(&json!({"agent_calls": call, "session_id": "b", "request_id": "r-b2"}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(app.wait_for_task_end("r-b2").await["status"], "succeeded");
}

#[tokio::test]
async fn legacy_endpoint_refuses_non_list_messages() {
    let app = TestApp::spawn().await;
    let (s, b) = app
        .post(
            "/analyze_and_execute",
            &json!({"messages": "hi", "session_id": "s"}),
        )
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_messages");
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn file_tools_refuse_escapes_with_400() {
    let app = TestApp::spawn().await;
    let (s, b) = app
        .post(
            "/file/write",
            &json!({"path": "../evil.txt", "content": "x"}),
        )
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "path_refused");
    let (s, b) = app
        .post(
            "/file/write",
            &json!({"path": "/tmp/evil.txt", "content": "x"}),
        )
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "path_refused");
    let (s, b) = app.get("/file/read?path=missing.txt").await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found");
    let (s, b) = app.post("/file/write", &json!({"path": "a.txt"})).await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_arguments");
    let (s, b) = app
        .post("/tools/file_edit/delete_everything", &json!({}))
        .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found");
    assert!(!app.dir.path().join("evil.txt").exists());
    assert!(!app.data_dir().join("evil.txt").exists());
}

#[tokio::test]
async fn unusable_paths_and_files_that_are_not_text_are_client_errors_not_500() {
    let app = TestApp::spawn().await;
    let long_name = "n".repeat(300);
    let long_path = "d/".repeat(2100);
    for path in ["a\u{0}b.txt", long_name.as_str(), long_path.as_str()] {
        for route in ["/file/write", "/tools/file_edit/write_file"] {
            let (s, r) = app
                .post(route, &json!({"path": path, "content": "x"}))
                .await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{route} {r}");
            assert_eq!(r["success"], false);
        }
        let (s, r) = app
            .post(
                "/file/edit",
                &json!({"path": path, "diff": "<<<<<<< SEARCH\n=======\nx\n>>>>>>> REPLACE"}),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{r}");
    }
    let (s, r) = app.get("/file/read?path=a%00b").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{r}");

    let root = app.config.file_edit_root();
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("latin1.txt"), b"caf\xe9\n").unwrap();
    let (s, r) = app.get("/file/read?path=latin1.txt").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{r}");
    assert!(r["detail"].as_str().unwrap().contains("not UTF-8"), "{r}");
    let (s, r) = app
        .post("/file/edit", &json!({"path": "latin1.txt", "diff": "<<<<<<< SEARCH\ncaf\n=======\ntea\n>>>>>>> REPLACE"}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{r}");
    assert_eq!(
        std::fs::read(root.join("latin1.txt")).unwrap(),
        b"caf\xe9\n",
        "unchanged"
    );
    let (s, r) = app.get("/file/read?path=.").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a directory: {r}");
}

#[tokio::test]
async fn ids_and_timeouts_are_checked_on_every_route_that_takes_them() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.api_addr = "127.0.0.1:0".into();
    config.mcp_addr = "127.0.0.1:0".into();
    config.only = vec![];
    let app = TestApp::spawn_with(dir, config).await;
    let disguised = "user\u{202E}321";
    let mut b = echo_batch(disguised, "ids-1", &["x"], 0, None);
    let (s, r) = app.post_schedule(&b).await;
    assert_error(s, &r, StatusCode::BAD_REQUEST, "invalid_request");
    b["session_id"] = json!("ids");
    b["request_id"] = json!("ids\u{200B}1");
    let (s, r) = app.post_schedule(&b).await;
    assert_error(s, &r, StatusCode::BAD_REQUEST, "invalid_request");
    let (s, r) = app
        .post(
            "/analyze_and_execute",
            &json!({"messages": [], "session_id": disguised}),
        )
        .await;
    assert_error(s, &r, StatusCode::BAD_REQUEST, "invalid_request");
    let (s, r) = app
        .api_post(
            "/tool_notification",
            &json!({"session_id": "x".repeat(300), "message": "m"}),
        )
        .await;
    assert_error(s, &r, StatusCode::BAD_REQUEST, "invalid_request");
    let (s, r) = app
        .api_post(
            "/tool_result_callback",
            &json!({"task_id": "t".repeat(10_000), "session_id": "ids", "success": true}),
        )
        .await;
    assert_error(s, &r, StatusCode::BAD_REQUEST, "invalid_request");

    // A call's timeout is a positive number of milliseconds, or absent.
    for bad in [json!("5000"), json!(-1), json!(0), json!(1.5)] {
        let mut b = echo_batch("ids", "ids-2", &["x"], 0, None);
        b["agent_calls"][0]["timeout_ms"] = bad.clone();
        let (s, r) = app.post_schedule(&b).await;
        assert_error(s, &r, StatusCode::BAD_REQUEST, "invalid_request");
        assert!(
            r["detail"].as_str().unwrap().contains("timeout_ms"),
            "{bad}: {r}"
        );
    }
    assert_nothing_stored(&app).await;
    let mut b = echo_batch("ids", "ids-3", &["x"], 0, None);
    b["agent_calls"][0]["timeout_ms"] = json!(5000);
    assert_eq!(app.post_schedule(&b).await.0, StatusCode::OK);
}

#[tokio::test]
async fn the_callback_receivers_answer_json_for_bodies_they_cannot_take() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.api_addr = "127.0.0.1:0".into();
    config.only = vec![
        naga_core::config::Service::Api,
        naga_core::config::Service::Agent,
    ];
    let app = TestApp::spawn_with(dir, config).await;
    for route in ["/agent_result_callback", "/tool_result_callback"] {
        let url = format!("{}{route}", app.api);
        // (Sent as JSON, as every sender does: other bodies are refused
        // before a handler sees them, see security.rs.)
        let not_utf8 = app
            .client
            .post(&url)
            .header("content-type", "application/json")
            .body(b"{\"task_id\": \"\xff\"}".to_vec());
        let (s, r) = read(not_utf8.send().await.unwrap()).await;
        assert_error(s, &r, StatusCode::BAD_REQUEST, "invalid_utf8");
        let huge = app
            .client
            .post(&url)
            .header("content-type", "application/json")
            .body(vec![b' '; 2 * 1024 * 1024]);
        let (s, r) = read(huge.send().await.unwrap()).await;
        assert_error(s, &r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    }
}
