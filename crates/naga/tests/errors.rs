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

    let (s, b) = app.post_schedule(&json!({"agent_calls": call})).await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(b["detail"].as_str().unwrap().contains("session_id"));

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
