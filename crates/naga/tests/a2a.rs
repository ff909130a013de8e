//! naga as an A2A agent (JSON-RPC binding at `/a2a`, the card at
//! `/.well-known/agent-card.json`), driven by the official Python SDK
//! (`a2a-sdk`): a message is a durable naga task in its context's session,
//! it survives kill -9 and a restart, and can be listed and cancelled.

mod common;
use common::{peers::*, *};
use reqwest::StatusCode;
use serde_json::Value;
use std::sync::Arc;

const TOKEN: &str = "a2a-token-0123456789abcdef";

async fn a2a(url: &str, args: &[&str], token: Option<&str>) -> Value {
    a2a_over("JSONRPC", url, args, token).await
}

/// The client over one of the card's bindings (`JSONRPC`, `HTTP+JSON`).
async fn a2a_over(binding: &str, url: &str, args: &[&str], token: Option<&str>) -> Value {
    let mut all = vec![url];
    all.extend_from_slice(args);
    let mut cmd = python("a2a_client.py", &all);
    cmd.env("A2A_BINDING", binding);
    run_client(&format!("the A2A client ({binding}) {args:?}"), cmd, token).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_official_a2a_client_runs_a_task_that_survives_kill_9_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let database = test_database_url();
    let data = dir.path().join("a");
    let (mut a, url) = node(&data, database.as_deref());
    // Answered at once (the client polls): the task is committed, working.
    let sent = a2a(
        &url,
        &["send", "a2a-context", "a2a-msg-1", "你好 A2A", "3000"],
        None,
    )
    .await;
    assert_eq!(sent["id"], "a2a-msg-1", "{sent}");
    assert_eq!(sent["contextId"], "a2a-context", "{sent}");
    assert!(
        ["TASK_STATE_SUBMITTED", "TASK_STATE_WORKING"]
            .contains(&sent["status"]["state"].as_str().unwrap()),
        "{sent}"
    );
    // A naga task in the context's session.
    let (status, task) = read(
        reqwest::get(format!("{url}/tasks/a2a-msg-1"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{task}");
    assert_eq!(task["session_id"], "a2a-context", "{task}");

    a.kill_9();
    let (_a, url) = node(&data, database.as_deref());
    let done = a2a(&url, &["wait", "a2a-msg-1"], None).await;
    assert_eq!(done["status"]["state"], "TASK_STATE_COMPLETED", "{done}");
    assert_eq!(
        done["artifacts"][0]["parts"][0]["text"], "你好 A2A",
        "{done}"
    );
    // The same message again is the same task, not a second one.
    let again = a2a(
        &url,
        &["send", "a2a-context", "a2a-msg-1", "你好 A2A", "3000"],
        None,
    )
    .await;
    assert_eq!(again["status"]["state"], "TASK_STATE_COMPLETED", "{again}");
    let listed = a2a(&url, &["list", "a2a-context"], None).await;
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 1, "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_a2a_task_cancelled_by_its_client_is_cancelled_in_naga() {
    let app = TestApp::spawn().await;
    let sent = a2a(
        &app.agent,
        &["send", "a2a-cancel", "a2a-long", "等很久", "60000"],
        None,
    )
    .await;
    assert_eq!(sent["status"]["state"], "TASK_STATE_WORKING", "{sent}");
    let cancelled = a2a(&app.agent, &["cancel", "a2a-long"], None).await;
    assert_eq!(
        cancelled["status"]["state"], "TASK_STATE_CANCELED",
        "{cancelled}"
    );
    let (_, task) = app.get("/tasks/a2a-long").await;
    assert_eq!(task["status"], "cancelled", "{task}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_card_names_the_bearer_scheme_and_only_the_token_gets_in() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.auth.token = Some(TOKEN.into());
    let app = TestApp::spawn_with(dir, config).await;
    // The card is open: it is how a client learns what to send.
    let (status, card) = read(
        app.client
            .get(format!("{}/.well-known/agent-card.json", app.agent))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        card["securitySchemes"]["bearer"]["httpAuthSecurityScheme"]["scheme"], "Bearer",
        "{card}"
    );
    let skills: Vec<&str> = card["skills"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert!(skills.contains(&"echo"), "{card}");
    let refused = app
        .client
        .post(format!("{}/a2a", app.agent))
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let sent = a2a(
        &app.agent,
        &["send", "a2a-token", "a2a-t1", "hello", "0"],
        Some(TOKEN),
    )
    .await;
    assert_eq!(sent["contextId"], "a2a-token", "{sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_a2a_client_follows_its_task_to_the_end() {
    let app = TestApp::spawn().await;
    let out = a2a(
        &app.agent,
        &["stream", "a2a-stream", "a2a-s1", "一步一步", "500"],
        None,
    )
    .await;
    let events = out["events"].as_array().unwrap();
    // The task first, then its states, the artifact before the last.
    assert_eq!(events[0]["task"]["id"], "a2a-s1", "{out}");
    let states: Vec<&str> = events
        .iter()
        .filter_map(|e| e["statusUpdate"]["status"]["state"].as_str())
        .collect();
    assert_eq!(states.last(), Some(&"TASK_STATE_COMPLETED"), "{out}");
    let artifact = events
        .iter()
        .position(|e| e.get("artifactUpdate").is_some())
        .unwrap_or_else(|| panic!("no artifact: {out}"));
    assert_eq!(artifact, events.len() - 2, "{out}");
    assert_eq!(
        events[artifact]["artifactUpdate"]["artifact"]["parts"][0]["text"], "一步一步",
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_notification_comes_through_the_outbox_signed_and_verifies() {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.callbacks.secret = Some(SECRET.into());
    let app = TestApp::spawn_with(dir, config).await;
    // The receiver is down for the first attempt: the outbox tries again.
    let receiver = Receiver::start_on(0, &[(503, None)]).await;
    let push = receiver.url();
    let sent = a2a(
        &app.agent,
        &[
            "send",
            "a2a-push",
            "a2a-p1",
            "推送",
            "0",
            &push,
            "push-token-1",
            "push-credentials-1",
        ],
        None,
    )
    .await;
    assert_eq!(sent["id"], "a2a-p1", "{sent}");
    // The body is the task's StreamResponse: `{"task": …}`, nothing else.
    let got = receiver
        .wait_for_body(|b| b["task"]["id"] == "a2a-p1")
        .await;
    assert_eq!(got.headers["x-a2a-notification-token"], "push-token-1");
    // The config's authentication is what the delivery authenticates with.
    assert_eq!(got.headers["authorization"], "Bearer push-credentials-1");
    let attempts: Vec<_> = receiver
        .all()
        .into_iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    assert!(attempts.len() >= 2, "retried after the 503: {attempts:?}");
    assert!(
        attempts.iter().all(|id| *id == attempts[0]),
        "one webhook-id: {attempts:?}"
    );
    let headers: serde_json::Map<String, Value> =
        ["webhook-id", "webhook-timestamp", "webhook-signature"]
            .iter()
            .map(|h| {
                (
                    h.to_string(),
                    Value::String(got.headers[*h].to_str().unwrap().to_owned()),
                )
            })
            .collect();
    let verified = run_client(
        "the push verification",
        python(
            "verify_push.py",
            &[SECRET, &Value::Object(headers).to_string(), &got.raw],
        ),
        None,
    )
    .await;
    assert_eq!(verified["verified"], true, "{verified}");
    assert_eq!(verified["task_id"], "a2a-p1", "{verified}");
    assert_eq!(verified["context_id"], "a2a-push", "{verified}");
    assert_eq!(verified["state"], "TASK_STATE_COMPLETED", "{verified}");
    assert_eq!(verified["artifact"], "推送", "{verified}");
    // The token is not shown by naga's API.
    let (_, task) = app.get("/tasks/a2a-p1").await;
    assert_eq!(task["callback_url"], push.as_str(), "{task}");
    let (_, config) = read(
        app.client
            .post(format!("{}/a2a", app.agent))
            .header("a2a-version", "1.0")
            .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1,
                "method": "GetTaskPushNotificationConfig", "params": {"taskId": "a2a-p1"}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(config["result"]["url"], push.as_str(), "{config}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_json_binding_serves_the_same_tasks() {
    let app = TestApp::spawn().await;
    let rest = |args: &'static [&'static str]| a2a_over("HTTP+JSON", &app.agent, args, None);
    let sent = rest(&["send", "a2a-rest", "a2a-r1", "经由 REST", "300"]).await;
    assert_eq!(sent["id"], "a2a-r1", "{sent}");
    let done = rest(&["wait", "a2a-r1"]).await;
    assert_eq!(done["status"]["state"], "TASK_STATE_COMPLETED", "{done}");
    assert_eq!(
        done["artifacts"][0]["parts"][0]["text"], "经由 REST",
        "{done}"
    );
    let listed = rest(&["list", "a2a-rest"]).await;
    assert_eq!(listed["tasks"][0]["id"], "a2a-r1", "{listed}");
    let streamed = rest(&["stream", "a2a-rest", "a2a-r2", "流", "200"]).await;
    let events = streamed["events"].as_array().unwrap();
    assert_eq!(
        events.last().unwrap()["statusUpdate"]["status"]["state"],
        "TASK_STATE_COMPLETED",
        "{streamed}"
    );
    rest(&["send", "a2a-rest", "a2a-r3", "很久", "60000"]).await;
    let cancelled = rest(&["cancel", "a2a-r3"]).await;
    assert_eq!(
        cancelled["status"]["state"], "TASK_STATE_CANCELED",
        "{cancelled}"
    );
    // An unknown task is A2A's TaskNotFound, not a bare 404.
    let (status, body) =
        rest_answer(app.client.get(format!("{}/a2a/rest/tasks/nope", app.agent))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body["error"]["details"][0]["reason"], "TASK_NOT_FOUND",
        "{body}"
    );
}

/// A message needs its `messageId` and its `role`: one without either is
/// -32602 on JSON-RPC (400 on HTTP+JSON), and no task is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_without_its_id_or_role_is_refused_and_creates_nothing() {
    let app = TestApp::spawn().await;
    let part = serde_json::json!([{"text": "你好"}]);
    let incomplete = [
        serde_json::json!({"role": "ROLE_USER", "parts": part, "contextId": "a2a-bad"}),
        serde_json::json!({"messageId": "a2a-bad-1", "parts": part, "contextId": "a2a-bad"}),
        serde_json::json!({"messageId": "a2a-bad-2", "role": "ROLE_NOBODY", "parts": part}),
    ];
    for message in &incomplete {
        let rpc = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
            "params": {"message": message}});
        let body = json_rpc(&app, &rpc).await;
        assert_eq!(body["error"]["code"], -32602, "{message}: {body}");
        let rest = app
            .client
            .post(format!("{}/a2a/rest/message:send", app.agent))
            .header("a2a-version", "1.0")
            .json(&serde_json::json!({"message": message}))
            .send()
            .await
            .unwrap();
        assert_eq!(rest.status(), StatusCode::BAD_REQUEST, "{message}");
    }
    let (_, tasks) = app.get("/tasks").await;
    assert_eq!(tasks["count"], 0, "nothing created: {tasks}");
}

/// A JSON-RPC A2A error carries its `google.rpc.ErrorInfo` in `data`, as
/// the HTTP+JSON binding's carries it in `details`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_rpc_error_carries_its_error_info() {
    let app = TestApp::spawn().await;
    let rpc = serde_json::json!({"jsonrpc": "2.0", "id": "g", "method": "GetTask",
        "params": {"id": "no-such-task"}});
    let body = json_rpc(&app, &rpc).await;
    assert_eq!(body["error"]["code"], -32001, "{body}");
    let info = &body["error"]["data"][0];
    assert_eq!(
        info["@type"], "type.googleapis.com/google.rpc.ErrorInfo",
        "{body}"
    );
    assert_eq!(info["reason"], "TASK_NOT_FOUND", "{body}");
    assert_eq!(info["domain"], "a2a-protocol.org", "{body}");
}

/// A JSON-RPC request to naga's A2A face (version 1.0); its answer.
async fn json_rpc(app: &TestApp, rpc: &Value) -> Value {
    let resp = app
        .client
        .post(format!("{}/a2a", app.agent))
        .header("a2a-version", "1.0")
        .json(rpc)
        .send()
        .await
        .unwrap();
    resp.json().await.unwrap()
}

/// A message runs on a skill the card advertises: one that names none runs
/// `[agents] default_agent` when that is advertised; when it is not (here
/// `computer_control`, on a display that does not exist) the message is
/// refused with -32602 naming the card's skills, and nothing is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_without_a_skill_runs_an_advertised_one_or_is_refused_naming_them() {
    // nextest runs each test in a process of its own: this display is ours.
    std::env::set_var("DISPLAY", ":4242");
    let app = TestApp::spawn().await;
    let send = |id: &str| {
        serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "SendMessage",
            "params": {"message": {"messageId": id, "role": "ROLE_USER",
                "parts": [{"text": "你好"}]}}})
    };
    let body = json_rpc(&app, &send("no-skill-1")).await;
    assert_eq!(body["error"]["code"], -32602, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("computer_control"), "{body}");
    assert!(
        message.contains("echo"),
        "the card's skills are named: {body}"
    );
    let (_, tasks) = app.get("/tasks").await;
    assert_eq!(tasks["count"], 0, "nothing created: {tasks}");

    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.agents.default_agent = "echo".into();
    let app = TestApp::spawn_with(dir, config).await;
    let body = json_rpc(&app, &send("no-skill-2")).await;
    let task = &body["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{body}");
}

/// POSTs `body` to `path` with `content_type` (and A2A 1.0, and MCP's
/// Accept); the status, and the answer, which must be JSON.
async fn raw(app: &TestApp, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = app
        .client
        .post(format!("{}{path}", app.agent))
        .header("a2a-version", "1.0")
        .header("content-type", content_type)
        .header("accept", "application/json, text/event-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{path} answered {status} without JSON: {text}"));
    (status, json)
}

/// What is not a JSON-RPC request gets JSON-RPC's error, and is not
/// executed; a notification (no `id`) is neither executed nor answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_rpc_envelope_is_checked_before_anything_runs() {
    let app = TestApp::spawn().await;
    let message = |id: &str| {
        serde_json::json!({"message": {"messageId": id, "role": "ROLE_USER",
            "parts": [{"text": "你好"}], "metadata": {"skill": "echo"}}})
    };
    let json = "application/json";
    let cases: Vec<(Vec<u8>, i64)> = vec![
        (b"{\"jsonrpc\": \"2.0\", \"method\"".to_vec(), -32700),
        (
            serde_json::to_vec(&serde_json::json!({"jsonrpc": "1.0", "id": 1,
            "method": "SendMessage", "params": message("env-1")}))
            .unwrap(),
            -32600,
        ),
        (
            serde_json::to_vec(&serde_json::json!({"jsonrpc": "2.0", "id": 2,
            "params": message("env-2")}))
            .unwrap(),
            -32600,
        ),
        (
            serde_json::to_vec(&serde_json::json!({"jsonrpc": "2.0", "id": {"bad": 1},
            "method": "SendMessage", "params": message("env-3")}))
            .unwrap(),
            -32600,
        ),
        (
            serde_json::to_vec(&serde_json::json!([{"jsonrpc": "2.0", "id": 4,
            "method": "SendMessage", "params": message("env-4")}]))
            .unwrap(),
            -32600,
        ),
        (("[".repeat(100) + &"]".repeat(100)).into_bytes(), -32600),
    ];
    for (body, code) in cases {
        let shown = String::from_utf8_lossy(&body)
            .chars()
            .take(80)
            .collect::<String>();
        let (status, answer) = raw(&app, "/a2a", json, body).await;
        assert_eq!(status, 200, "{shown}: {answer}");
        assert_eq!(answer["jsonrpc"], "2.0", "{shown}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{shown}: {answer}");
    }
    // The transport's refusals are JSON-RPC errors too.
    let (status, answer) = raw(&app, "/a2a", "text/plain", b"{}".to_vec()).await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (415, &serde_json::json!(-32600)),
        "{answer}"
    );
    // A notification: not answered, not executed.
    let note = serde_json::json!({"jsonrpc": "2.0", "method": "SendMessage",
        "params": message("env-note")});
    let resp = app
        .client
        .post(format!("{}/a2a", app.agent))
        .header("a2a-version", "1.0")
        .json(&note)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(resp.text().await.unwrap(), "");
    // Then a request that is one runs: it is the only task there is.
    let sent = json_rpc(
        &app,
        &serde_json::json!({"jsonrpc": "2.0", "id": 9,
        "method": "SendMessage", "params": message("env-ok")}),
    )
    .await;
    assert_eq!(
        sent["result"]["task"]["status"]["state"], "TASK_STATE_COMPLETED",
        "{sent}"
    );
    let (_, tasks) = app.get("/tasks").await;
    assert_eq!(tasks["count"], 1, "only the valid request ran: {tasks}");
}

/// The HTTP+JSON binding answers bad bodies with its own error shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_json_binding_answers_bad_bodies_in_its_error_shape() {
    let app = TestApp::spawn().await;
    let path = "/a2a/rest/message:send";
    let deep = ("[".repeat(100) + &"]".repeat(100)).into_bytes();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("application/json", b"{\"message\": ".to_vec(), 400),
        ("text/plain", b"{}".to_vec(), 415),
        ("application/json", deep, 422),
    ];
    for (content_type, body, want) in cases {
        let (status, answer) = raw(&app, path, content_type, body).await;
        assert_eq!(status, want, "{answer}");
        assert_eq!(answer["error"]["code"], want, "{answer}");
        assert!(answer["error"]["status"].is_string(), "{answer}");
        assert!(answer["error"]["message"].is_string(), "{answer}");
    }
    let (status, answer) = raw(
        &app,
        "/a2a/rest/no-such-route",
        "application/json",
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["status"], "NOT_FOUND", "{answer}");
    let (_, tasks) = app.get("/tasks").await;
    assert_eq!(tasks["count"], 0, "nothing created: {tasks}");
}

/// naga speaks A2A 1.0: a request in another version (`A2A-Version`, a
/// header or a query parameter; none means 0.3) is VersionNotSupportedError
/// (-32009, 400 on HTTP+JSON), on both bindings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_a_version_naga_does_not_speak_is_refused() {
    let app = TestApp::spawn().await;
    let get = serde_json::json!({"jsonrpc": "2.0", "id": "v", "method": "GetTask",
        "params": {"id": "no-such-task"}});
    for version in [Some("9.9"), Some("0.5"), Some("2.0"), None] {
        let mut rpc = app.client.post(format!("{}/a2a", app.agent)).json(&get);
        let mut rest = app
            .client
            .get(format!("{}/a2a/rest/tasks/no-such-task", app.agent));
        if let Some(v) = version {
            rpc = rpc.header("a2a-version", v);
            rest = rest.header("a2a-version", v);
        }
        let answer: Value = rpc.send().await.unwrap().json().await.unwrap();
        assert_eq!(answer["error"]["code"], -32009, "{version:?}: {answer}");
        assert_eq!(
            answer["error"]["data"][0]["reason"], "VERSION_NOT_SUPPORTED",
            "{answer}"
        );
        let resp = rest.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{version:?}");
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(
            answer["error"]["details"][0]["reason"], "VERSION_NOT_SUPPORTED",
            "{answer}"
        );
    }
    // 1.0, as a header, a patch version, or a query parameter, is served.
    let answer = json_rpc(&app, &get).await;
    assert_eq!(answer["error"]["code"], -32001, "{answer}");
    for url in [
        format!("{}/a2a/rest/tasks/no-such-task?A2A-Version=1.0", app.agent),
        format!(
            "{}/a2a/rest/tasks/no-such-task?A2A-Version=1.0.2",
            app.agent
        ),
    ] {
        let resp = app.client.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{url}");
    }
}

/// A task that ended has nothing to stream: SubscribeToTask answers
/// UnsupportedOperationError (-32004; 400 on HTTP+JSON).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_to_a_task_that_ended_is_unsupported() {
    let app = TestApp::spawn().await;
    let sent = json_rpc(
        &app,
        &serde_json::json!({"jsonrpc": "2.0", "id": 1,
        "method": "SendMessage", "params": {"message": {"messageId": "sub-ended",
        "role": "ROLE_USER", "parts": [{"text": "x"}], "metadata": {"skill": "echo"}}}}),
    )
    .await;
    let task = &sent["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{sent}");
    let id = task["id"].as_str().unwrap();
    let answer = json_rpc(
        &app,
        &serde_json::json!({"jsonrpc": "2.0", "id": 2,
        "method": "SubscribeToTask", "params": {"id": id}}),
    )
    .await;
    assert_eq!(answer["error"]["code"], -32004, "{answer}");
    let url = format!("{}/a2a/rest/tasks/{id}:subscribe", app.agent);
    // A2A 1.0 §11.3.2 names POST for it; GET is taken too.
    for request in [
        app.client.get(&url),
        app.client.post(&url).json(&serde_json::json!({})),
    ] {
        let (status, answer) = rest_answer(request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            answer["error"]["details"][0]["reason"], "UNSUPPORTED_OPERATION",
            "{answer}"
        );
    }
}

/// An HTTP+JSON request sent in A2A 1.0: the status, and the JSON answer.
async fn rest_answer(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let resp = request.header("a2a-version", "1.0").send().await.unwrap();
    (resp.status(), resp.json().await.unwrap())
}

/// ListTasks filters by state and status time, counts what it selects,
/// leaves artifacts out unless asked, gives back the message each task was
/// sent with, and refuses parameters out of range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_tasks_filters_counts_and_checks_its_parameters() {
    let app = TestApp::spawn().await;
    let rpc = |method: &str, params: Value| serde_json::json!({"jsonrpc": "2.0", "id": method, "method": method, "params": params});
    let send = |id: &str, delay: u64| {
        rpc(
            "SendMessage",
            serde_json::json!({"message": {"messageId": id, "role": "ROLE_USER",
            "contextId": "lt", "parts": [{"text": format!("说 {id}")}, {"data": {"delay_ms": delay}}],
            "metadata": {"skill": "echo"}}, "configuration": {"returnImmediately": delay > 0}}),
        )
    };
    for (id, delay) in [("lt-1", 0), ("lt-2", 0), ("lt-3", 60_000)] {
        let sent = json_rpc(&app, &send(id, delay)).await;
        assert!(sent["result"]["task"].is_object(), "{sent}");
    }
    let cancelled = json_rpc(&app, &rpc("CancelTask", serde_json::json!({"id": "lt-3"}))).await;
    assert_eq!(
        cancelled["result"]["status"]["state"], "TASK_STATE_CANCELED",
        "{cancelled}"
    );
    let list = |params: Value| {
        let request = rpc("ListTasks", params);
        let app = &app;
        async move { json_rpc(app, &request).await }
    };

    let done = list(serde_json::json!({"contextId": "lt", "status": "TASK_STATE_COMPLETED"})).await;
    let tasks = done["result"]["tasks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(tasks.len(), 2, "{done}");
    assert_eq!(done["result"]["totalSize"], 2, "{done}");
    assert!(
        tasks.iter().all(|t| t.get("artifacts").is_none()),
        "left out unless asked: {done}"
    );
    let with = list(
        serde_json::json!({"contextId": "lt", "includeArtifacts": true,
        "status": "TASK_STATE_COMPLETED", "historyLength": 1}),
    )
    .await;
    let first = &with["result"]["tasks"][0];
    assert_eq!(
        first["artifacts"][0]["parts"][0]["text"], "说 lt-2",
        "{with}"
    );
    assert_eq!(first["history"][0]["parts"][0]["text"], "说 lt-2", "{with}");
    assert_eq!(first["history"][0]["role"], "ROLE_USER", "{with}");

    let page = list(serde_json::json!({"contextId": "lt", "pageSize": 1})).await;
    assert_eq!(
        page["result"]["tasks"].as_array().map(Vec::len),
        Some(1),
        "{page}"
    );
    assert_eq!(page["result"]["totalSize"], 3, "{page}");
    assert_eq!(page["result"]["nextPageToken"], "1", "{page}");
    let later = list(serde_json::json!({"contextId": "lt",
        "statusTimestampAfter": "2999-01-01T00:00:00Z"}))
    .await;
    assert_eq!(later["result"]["totalSize"], 0, "{later}");

    for bad in [
        serde_json::json!({"pageSize": 0}),
        serde_json::json!({"pageSize": -1}),
        serde_json::json!({"pageSize": 150}),
        serde_json::json!({"historyLength": -1}),
        serde_json::json!({"status": "TASK_STATE_BOGUS"}),
        serde_json::json!({"statusTimestampAfter": "yesterday"}),
    ] {
        let answer = list(bad.clone()).await;
        assert_eq!(answer["error"]["code"], -32602, "{bad}: {answer}");
    }
}

/// ProtoJSON readers take a field by its proto name as well as by its JSON
/// name (`message_id` as `messageId`): so does naga, on both bindings; a
/// data part's own keys are the sender's and stay as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_are_read_by_their_proto_names_too() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start_on(0, &[]).await;
    let sent = json_rpc(
        &app,
        &serde_json::json!({"jsonrpc": "2.0", "id": 1,
        "method": "SendMessage", "params": {
            "message": {"message_id": "proto-1", "context_id": "proto", "role": "ROLE_USER",
                "parts": [{"text": "原名"}, {"data": {"delay_ms": 0}}],
                "metadata": {"skill": "echo"}},
            "configuration": {"return_immediately": false,
                "task_push_notification_config": {"url": receiver.url(), "token": "tok-p"}}}}),
    )
    .await;
    let task = &sent["result"]["task"];
    assert_eq!(task["id"], "proto-1", "{sent}");
    assert_eq!(task["contextId"], "proto", "{sent}");
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{sent}");
    assert_eq!(
        task["history"][0]["parts"][1]["data"]["delay_ms"], 0,
        "{sent}"
    );
    let configs = json_rpc(
        &app,
        &serde_json::json!({"jsonrpc": "2.0", "id": 2,
        "method": "ListTaskPushNotificationConfigs", "params": {"task_id": "proto-1"}}),
    )
    .await;
    assert_eq!(
        configs["result"]["configs"][0]["url"],
        receiver.url().as_str(),
        "{configs}"
    );
    let (status, listed) = rest_answer(app.client.get(format!(
        "{}/a2a/rest/tasks?context_id=proto&include_artifacts=true",
        app.agent
    )))
    .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["totalSize"], 1, "{listed}");
    assert_eq!(
        listed["tasks"][0]["artifacts"][0]["parts"][0]["text"], "原名",
        "{listed}"
    );
}

/// Push configs created, listed and deleted while a task runs, over one
/// binding with the official client: at the end, exactly the configs left
/// push (the one the task was sent with deleted too); one created after
/// the end is kept and pushes nothing.
async fn push_configs_over(binding: &str, ctx: &str) {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let url = receiver.url();
    let over = |args: Vec<String>| {
        let agent = app.agent.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            a2a_over(binding, &agent, &args, None).await
        }
    };
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let (t1, t2) = (format!("{ctx}-1"), format!("{ctx}-2"));
    // Answered at once (the client polls), while it works for a minute:
    // it ends when it is cancelled below.
    let sent = over(s(&["send", ctx, &t1, "先配置", "60000", &url, "tok-sent"])).await;
    assert_eq!(sent["status"]["state"], "TASK_STATE_WORKING", "{sent}");
    let later = over(s(&["push-create", &t1, "later", &url, "tok-later"])).await;
    assert_eq!(later["id"], "later", "{later}");
    assert_eq!(later["url"], url.as_str(), "{later}");
    over(s(&["push-create", &t1, "gone", &url, "tok-gone"])).await;
    over(s(&["push-delete", &t1, "gone"])).await;
    over(s(&["push-delete", &t1, "default"])).await;
    let listed = over(s(&["push-list", &t1])).await;
    let (_, task) = app.get(&format!("/tasks/{t1}")).await;
    assert_eq!(
        task["status"], "running",
        "configs changed before the end: {task}"
    );
    let ids: Vec<&Value> = listed["configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["id"])
        .collect();
    assert_eq!(ids, ["later"], "{listed}");
    over(s(&["cancel", &t1])).await;
    let done = over(s(&["wait", &t1])).await;
    assert_eq!(done["status"]["state"], "TASK_STATE_CANCELED", "{done}");
    // Created after the end: kept, shown, and nothing left to push.
    over(s(&["push-create", &t1, "too-late", &url, "tok-too-late"])).await;
    let kept = over(s(&["push-get", &t1, "too-late"])).await;
    assert_eq!(kept["token"], "tok-too-late", "{kept}");
    // A later task's push, once delivered, says the first one's are all
    // written: the pass that writes a push writes every one due.
    over(s(&["send", ctx, &t2, "再来", "60000"])).await;
    over(s(&["push-create", &t2, "after", &url, "tok-after"])).await;
    over(s(&["cancel", &t2])).await;
    let after = receiver
        .wait_for_body(|b| b["task"]["id"] == t2.as_str())
        .await;
    assert_eq!(after.headers["x-a2a-notification-token"], "tok-after");
    let pushed = receiver
        .wait_for_body(|b| b["task"]["id"] == t1.as_str())
        .await;
    assert_eq!(pushed.headers["x-a2a-notification-token"], "tok-later");
    assert_eq!(
        pushed.body["task"]["status"]["state"], "TASK_STATE_CANCELED",
        "exactly a StreamResponse: {}",
        pushed.raw
    );
    assert_eq!(pushed.body.as_object().unwrap().len(), 1, "{}", pushed.raw);
    let (_, callbacks) = app.get(&format!("/callbacks?task_id={t1}")).await;
    let urls = callbacks["callbacks"].as_array().unwrap();
    assert_eq!(urls.len(), 1, "only `later` pushed: {callbacks}");
    let tokens: Vec<_> = receiver
        .all()
        .iter()
        .map(|r| {
            r.headers["x-a2a-notification-token"]
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(tokens.len(), 2, "{tokens:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_configs_created_later_push_at_the_end_deleted_ones_do_not() {
    push_configs_over("JSONRPC", "a2a-configs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_configs_over_the_http_json_binding() {
    push_configs_over("HTTP+JSON", "a2a-rest-configs").await;
}
