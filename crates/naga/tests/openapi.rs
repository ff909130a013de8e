//! `GET /openapi.json` of every service: every route is in it, everything
//! in it is served, it is valid OpenAPI 3.1 to a validator nobody here
//! wrote, and its schemas are the answers the routes give.

mod common;
use common::*;
use naga_core::config::Service;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::{collections::BTreeSet, path::PathBuf, time::Duration};

/// Every route of each service, as the contract (docs/design.md, upstream's
/// clients, docs/api.md) has them: a route missing from a document fails.
const AGENT: &[&str] = &[
    "GET /health",
    "GET /ready",
    "GET /metrics",
    "GET /openapi.json",
    "POST /schedule",
    "POST /analyze_and_execute",
    "GET /events",
    "GET /ui",
    "GET /ui/app.js",
    "GET /ui/app.css",
    "GET /.well-known/agent-card.json",
    "POST /a2a",
    "POST /a2a/rest/message:send",
    "POST /a2a/rest/message:stream",
    "GET /a2a/rest/tasks",
    "GET /a2a/rest/tasks/{id}",
    "POST /a2a/rest/tasks/{id}",
    "GET /a2a/rest/tasks/{id}/pushNotificationConfigs",
    "POST /a2a/rest/tasks/{id}/pushNotificationConfigs",
    "GET /a2a/rest/tasks/{id}/pushNotificationConfigs/{config}",
    "DELETE /a2a/rest/tasks/{id}/pushNotificationConfigs/{config}",
    "GET /mcp",
    "POST /mcp",
    "DELETE /mcp",
    "GET /.well-known/oauth-protected-resource",
    "GET /.well-known/oauth-protected-resource/mcp",
    "POST /ui/chat",
    "GET /ui/chat/{id}",
    "GET /tasks",
    "GET /tasks/{id}",
    "DELETE /tasks/{id}",
    "POST /tasks/{id}/cancel",
    "GET /tasks/{id}/steps",
    "POST /tasks/{id}/steps",
    "GET /tasks/{id}/memory",
    "DELETE /tasks/{id}/memory",
    "GET /memory/global",
    "DELETE /memory/global",
    "GET /sessions",
    "GET /sessions/{id}",
    "GET /sessions/{id}/memory",
    "DELETE /sessions/{id}/memory",
    "GET /sessions/{id}/tasks",
    "GET /sessions/{id}/key_facts",
    "GET /sessions/{id}/failed_attempts",
    "GET /sessions/{id}/compressed_memories",
    "GET /nodes",
    "GET /callbacks",
    "POST /callbacks/{id}/retry",
    "POST /callbacks/redrive",
    "GET /tools",
    "GET /toolkits",
    "GET /toolkits/{name}",
    "POST /tools/{toolkit}/{tool}",
    "POST /file/edit",
    "POST /file/write",
    "GET /file/read",
    "GET /file/list",
    "GET /computer_control/availability",
    "POST /computer_control/execute",
];

const MCP: &[&str] = &[
    "GET /health",
    "GET /ready",
    "GET /metrics",
    "GET /openapi.json",
    "POST /schedule",
    "GET /status",
    "GET /tasks",
    "GET /tasks/{id}",
    "DELETE /tasks/{id}",
    "GET /tools",
];

const API: &[&str] = &[
    "GET /",
    "GET /health",
    "GET /ready",
    "GET /metrics",
    "GET /openapi.json",
    "GET /ui",
    "POST /chat",
    "POST /chat/stream",
    "GET /sessions",
    "DELETE /sessions",
    "GET /sessions/{id}",
    "DELETE /sessions/{id}",
    "GET /sessions/{id}/events",
    "GET /system/info",
    "GET /memory/stats",
    "GET /logs/context/statistics",
    "GET /logs/context/load",
    "POST /tool_result",
    "POST /save_tool_conversation",
    "POST /ui_notification",
    "POST /tool_notification",
    "POST /tool_result_callback",
    "POST /agent_result_callback",
];

async fn all_services() -> TestApp {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.only = vec![Service::Api, Service::Agent, Service::Mcp];
    config.api_addr = "127.0.0.1:0".into();
    config.mcp_addr = "127.0.0.1:0".into();
    TestApp::spawn_with(dir, config).await
}

async fn document(app: &TestApp, base: &str) -> Value {
    let resp = app
        .client
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{base}/openapi.json");
    assert_eq!(resp.headers()["content-type"], "application/json");
    resp.json().await.unwrap()
}

/// `METHOD /path` of every operation in a document.
fn operations(doc: &Value) -> BTreeSet<String> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, _) in item.as_object().unwrap() {
            ops.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    ops
}

#[tokio::test]
async fn every_route_of_every_service_is_in_its_document_and_everything_in_it_is_served() {
    let app = all_services().await;
    for (base, routes, title) in [
        (&app.agent, AGENT, "naga agent server"),
        (&app.mcp, MCP, "naga MCP server"),
        (&app.api, API, "naga API server"),
    ] {
        let doc = document(&app, base).await;
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["title"], title);
        let documented = operations(&doc);
        let contract: BTreeSet<String> = routes.iter().map(|r| r.to_string()).collect();
        let missing: Vec<_> = contract.difference(&documented).collect();
        assert!(
            missing.is_empty(),
            "{title}: routes missing from /openapi.json: {missing:?}"
        );
        let unknown: Vec<_> = documented.difference(&contract).collect();
        assert!(
            unknown.is_empty(),
            "{title}: /openapi.json describes routes this test does not know (add them): {unknown:?}"
        );
        // Each described route is served: the router's fallback (404 `no
        // endpoint`, 405) never answers it.
        for op in &documented {
            let (method, path) = op.split_once(' ').unwrap();
            let url = format!("{base}{}", path.replace(['{', '}'], ""));
            let req = app
                .client
                .request(method.parse().unwrap(), &url)
                .header("content-type", "application/json")
                .body("{}")
                .timeout(Duration::from_secs(10));
            let resp = req
                .send()
                .await
                .unwrap_or_else(|e| panic!("{title}: {op}: {e}"));
            let status = resp.status();
            let streams = resp
                .headers()
                .get("content-type")
                .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
            let body: Value = if streams {
                Value::Null
            } else {
                resp.json().await.unwrap_or(Value::Null)
            };
            assert_ne!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{title}: {op}: {body}"
            );
            let fallback = status == StatusCode::NOT_FOUND
                && body["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("no endpoint"));
            assert!(
                !fallback,
                "{title}: {op} is described but not served: {body}"
            );
        }
        // Every operation says what it answers, and every error is the
        // common error body.
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                assert!(
                    responses
                        .keys()
                        .any(|k| k.starts_with('2') || k.starts_with('3')),
                    "{title}: {method} {path} has no success response"
                );
                assert_eq!(
                    op["responses"]["default"]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{title}: {method} {path}"
                );
            }
        }
    }
}

/// The property names a schema gives an object (through `$ref`, `allOf`,
/// `oneOf`), or None where it allows any object.
fn properties(doc: &Value, schema: &Value) -> Option<BTreeSet<String>> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return properties(doc, &doc["components"]["schemas"][name]);
    }
    let mut names = BTreeSet::new();
    for key in ["allOf", "oneOf", "anyOf"] {
        for part in schema[key].as_array().into_iter().flatten() {
            names.extend(properties(doc, part)?);
        }
    }
    match schema["properties"].as_object() {
        Some(p) => names.extend(p.keys().cloned()),
        None if names.is_empty() => return None,
        None => {}
    }
    Some(names)
}

/// The schema of what `METHOD path` answers with 200.
fn answer_schema<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    &doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
}

/// The fields a schema requires (through `$ref` and `allOf`).
fn required(doc: &Value, schema: &Value) -> BTreeSet<String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return required(doc, &doc["components"]["schemas"][name]);
    }
    let mut names: BTreeSet<String> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().map(str::to_owned))
        .collect();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        names.extend(required(doc, part));
    }
    names
}

/// Every field of the live answer is one the document names, and every
/// field the document requires is in the answer.
#[track_caller]
fn assert_matches(doc: &Value, method: &str, path: &str, answer: &Value) {
    let schema = answer_schema(doc, method, path);
    let names =
        properties(doc, schema).unwrap_or_else(|| panic!("{method} {path}: no object schema"));
    let live: BTreeSet<String> = answer.as_object().unwrap().keys().cloned().collect();
    let undocumented: Vec<_> = live.difference(&names).collect();
    assert!(
        undocumented.is_empty(),
        "{method} {path}: fields not in /openapi.json: {undocumented:?}"
    );
    let absent: Vec<_> = required(doc, schema)
        .into_iter()
        .filter(|n| !live.contains(n))
        .collect();
    assert!(
        absent.is_empty(),
        "{method} {path}: required fields not in the answer: {absent:?}"
    );
}

#[tokio::test]
async fn the_documented_schemas_are_the_answers_the_routes_give() {
    let app = all_services().await;
    let receiver = Receiver::start().await;
    let (status, body) = app
        .post_schedule(&echo_batch(
            "s-doc",
            "doc-1",
            &["a"],
            0,
            Some(&receiver.url()),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let agent_doc = document(&app, &app.agent).await;
    assert_matches(&agent_doc, "post", "/schedule", &body);
    app.wait_for_task_end("doc-1").await;
    receiver.wait_for("doc-1").await;
    for (path, live) in [
        ("/tasks/{id}", "/tasks/doc-1"),
        ("/tasks", "/tasks"),
        ("/sessions", "/sessions"),
        ("/sessions/{id}/tasks", "/sessions/s-doc/tasks"),
        ("/sessions/{id}/memory", "/sessions/s-doc/memory"),
        ("/memory/global", "/memory/global"),
        ("/callbacks", "/callbacks"),
        ("/nodes", "/nodes"),
        ("/health", "/health"),
        ("/tools", "/tools"),
    ] {
        let (status, answer) = app.get(live).await;
        assert_eq!(status, StatusCode::OK, "{live}: {answer}");
        assert_matches(&agent_doc, "get", path, &answer);
    }
    // The nested ones too: a task's calls and steps, a session's tasks.
    let (_, task) = app.get("/tasks/doc-1").await;
    let call_schema = json!({"$ref": "#/components/schemas/Call"});
    let call_fields = properties(&agent_doc, &call_schema).unwrap();
    for key in task["calls"][0].as_object().unwrap().keys() {
        assert!(
            call_fields.contains(key),
            "a call's `{key}` is not in the Call schema"
        );
    }

    let mcp_doc = document(&app, &app.mcp).await;
    let (status, answer) = app
        .mcp_post(
            "/schedule",
            &json!({"session_id": "s-doc", "request_id": "doc-mcp", "tool_calls": [
                {"agentType": "mcp", "service_name": "none", "tool_name": "none"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_matches(&mcp_doc, "post", "/schedule", &answer);
    app.wait_for_task_end("doc-mcp").await;
    for (path, live) in [
        ("/tasks/{id}", "/tasks/doc-mcp"),
        ("/tasks", "/tasks"),
        ("/status", "/status"),
    ] {
        let (status, answer) = app.mcp_get(live).await;
        assert_eq!(status, StatusCode::OK, "{live}: {answer}");
        assert_matches(&mcp_doc, "get", path, &answer);
    }

    let api_doc = document(&app, &app.api).await;
    for path in ["/", "/health", "/system/info", "/memory/stats", "/sessions"] {
        let (status, answer) = app.api_get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        assert_matches(&api_doc, "get", path, &answer);
    }
}

#[tokio::test]
async fn the_documents_are_valid_openapi_3_1_to_an_independent_validator() {
    let peers =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-peers/node_modules");
    assert!(
        peers.join("@seriousme/openapi-schema-validator").exists(),
        "the validator is missing: `npm install --prefix target/test-peers \
         @seriousme/openapi-schema-validator@2.11.0` (as .ci/run does)"
    );
    let app = all_services().await;
    for base in [&app.agent, &app.mcp, &app.api] {
        let doc = document(&app, base).await;
        let file = app.dir.path().join("openapi.json");
        std::fs::write(&file, doc.to_string()).unwrap();
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/validate_openapi.mjs");
        let run = tokio::process::Command::new("node")
            .arg(script)
            .arg(&file)
            .env("NAGA_PEERS", &peers)
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .expect("the validator did not end within 60 s")
            .unwrap();
        assert!(
            out.status.success(),
            "{base}/openapi.json is not valid OpenAPI: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
