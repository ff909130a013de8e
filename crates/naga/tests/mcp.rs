//! The MCP server against real MCP servers: `@modelcontextprotocol/server-everything`
//! (npm, over stdio; `.ci/run` installs it) and a streamable-HTTP server
//! built here with rmcp.

mod common;
use common::*;
use reqwest::StatusCode;
use rmcp::{
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig},
    schemars, tool, tool_handler, tool_router,
    transport::streamable_http_server::{
        session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
    },
    ServerHandler,
};
use serde_json::{json, Value};
use std::{sync::Arc, time::Duration};

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct AddRequest {
    a: i64,
    b: i64,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct FailRequest {
    reason: String,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct SlowRequest {
    ms: u64,
}

#[derive(Clone)]
struct Calc {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Calc {
    #[tool(description = "Add two integers")]
    fn add(&self, Parameters(AddRequest { a, b }): Parameters<AddRequest>) -> String {
        (a + b).to_string()
    }

    #[tool(description = "Always fails with the given reason")]
    fn fail(&self, Parameters(FailRequest { reason }): Parameters<FailRequest>) -> CallToolResult {
        CallToolResult::error(vec![ContentBlock::text(format!("refused: {reason}"))])
    }

    #[tool(description = "Waits, then answers")]
    async fn slow(&self, Parameters(SlowRequest { ms }): Parameters<SlowRequest>) -> String {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        format!("slept {ms} ms")
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Calc {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// Starts the streamable-HTTP calculator; returns its MCP URL.
async fn start_calc() -> String {
    let service: StreamableHttpService<Calc, LocalSessionManager> = StreamableHttpService::new(
        || {
            Ok(Calc {
                tool_router: Calc::tool_router(),
            })
        },
        Default::default(),
        StreamableHttpServerConfig::default().with_sse_keep_alive(None),
    );
    let router = axum::Router::new().nest_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}/mcp")
}

async fn mcp_app(change: impl FnOnce(&mut naga_core::config::Config)) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.mcp_addr = "127.0.0.1:0".into();
    config.only.push(naga_core::config::Service::Mcp);
    let servers = json!({"mcpServers": {
        "everything": {"command": "node", "args": [everything(), "stdio"]},
        "calc": {"url": start_calc().await},
        "dead": {"command": "/bin/false"},
    }});
    let file = dir.path().join("mcp_servers.json");
    std::fs::write(&file, servers.to_string()).unwrap();
    config.mcp.config = Some(file);
    change(&mut config);
    TestApp::spawn_with(dir, config).await
}

fn batch(session: &str, request_id: &str, calls: Value, callback: Option<&str>) -> Value {
    json!({"query": "批量MCP工具调用", "tool_calls": calls, "session_id": session,
           "analysis_session_id": format!("analysis_{session}_1703123456"),
           "request_id": request_id, "callback_url": callback})
}

#[tokio::test]
async fn tools_of_every_server_are_listed() {
    let app = mcp_app(|_| {}).await;
    let (s, v) = app.mcp_get("/tools").await;
    assert_eq!(s, StatusCode::OK);
    let tools = v["tools"].as_array().unwrap();
    let has = |service: &str, name: &str| {
        tools
            .iter()
            .find(|t| t["service"] == service && t["name"] == name)
            .cloned()
    };
    let echo = has("everything", "echo").expect("server-everything's echo");
    assert_eq!(
        echo["input_schema"]["properties"]["message"]["type"],
        "string"
    );
    assert!(echo["description"].as_str().unwrap().contains("Echo"));
    assert!(has("everything", "get-sum").is_some());
    let add = has("calc", "add").expect("the HTTP server's add");
    assert_eq!(add["input_schema"]["required"], json!(["a", "b"]));
    assert_eq!(v["unavailable"][0]["service"], "dead");
    assert!(!v["unavailable"][0]["error"].as_str().unwrap().is_empty());
    let (_, h) = app.mcp_get("/health").await;
    assert_eq!(h["service"], "mcp_server");
}

#[tokio::test]
async fn a_batch_returns_every_real_result_in_order_and_calls_back() {
    let app = mcp_app(|_| {}).await;
    let receiver = Receiver::start().await;
    let calls = json!([
        {"agentType": "mcp", "service_name": "everything", "tool_name": "echo", "message": "你好 naga"},
        {"agentType": "mcp", "service_name": "calc", "tool_name": "add", "a": 2, "b": 40},
        {"agentType": "mcp", "service_name": "everything", "tool_name": "get-sum", "a": 1.5, "b": 2}
    ]);
    let (s, r) = app
        .mcp_post(
            "/schedule",
            &batch("m1", "m1-r", calls, Some(&receiver.url())),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "scheduled");
    assert_eq!(r["task_id"], "m1-r");
    assert_eq!(r["request_id"], "m1-r");
    assert_eq!(r["session_id"], "m1");
    assert_eq!(r["analysis_session_id"], "analysis_m1_1703123456");
    assert!(r["accepted_at"].is_string());

    let cb = receiver.wait_for("m1-r").await.body;
    assert_eq!(cb["kind"], "mcp");
    assert_eq!(cb["session_id"], "m1");
    assert_eq!(cb["analysis_session_id"], "analysis_m1_1703123456");
    assert_eq!(cb["status"], "succeeded");
    let results = cb["results"].as_array().unwrap();
    assert_eq!(
        results[0],
        json!({"tool": "echo", "service": "everything", "success": true, "result": "Echo: 你好 naga"})
    );
    assert_eq!(results[1]["result"], "42");
    assert!(
        results[2]["result"].as_str().unwrap().contains("3.5"),
        "{}",
        results[2]
    );
    assert_eq!(cb["result"]["success"], true);
    assert_eq!(cb["result"]["results"], cb["results"]);

    // One session's whole history is on the agent server too.
    let (_, tasks) = app.get("/sessions/m1/tasks").await;
    assert_eq!(tasks["tasks"][0]["kind"], "mcp");
    let (_, t) = app.mcp_get("/tasks/m1-r").await;
    assert_eq!(t["steps_count"], 3);
    let (_, list) = app.mcp_get("/tasks?session_id=m1").await;
    assert_eq!(list["count"], 1);
    let (s, d) = read(
        app.client
            .delete(format!("{}/tasks/m1-r", app.mcp))
            .send()
            .await
            .unwrap(),
    )
    .await;
    // A finished task is not cancelled; 200, as upstream's MCP server.
    assert_eq!(
        (s, d["cancelled"].clone()),
        (StatusCode::OK, false.into()),
        "{d}"
    );
    assert_eq!(app.mcp_get("/tasks/m1-r").await.1["status"], "succeeded");
}

#[tokio::test]
async fn tool_errors_unknown_tools_and_dead_servers_fail_with_reasons_and_the_batch_goes_on() {
    let app = mcp_app(|_| {}).await;
    let receiver = Receiver::start().await;
    let calls = json!([
        {"service_name": "calc", "tool_name": "fail", "reason": "no permission"},
        {"service_name": "everything", "tool_name": "no-such-tool"},
        {"service_name": "dead", "tool_name": "anything"},
        {"service_name": "nowhere", "tool_name": "x"},
        {"service_name": "everything", "tool_name": "echo"},
        {"service_name": "calc", "tool_name": "add", "a": 1, "b": 1}
    ]);
    app.mcp_post(
        "/schedule",
        &batch("m2", "m2-r", calls, Some(&receiver.url())),
    )
    .await;
    let cb = receiver.wait_for("m2-r").await.body;
    let r = cb["results"].as_array().unwrap();
    assert_eq!(r.len(), 6);
    assert_eq!(r[0]["success"], false);
    assert_eq!(r[0]["error"], "refused: no permission");
    let unknown = r[1]["error"].as_str().unwrap();
    assert!(
        unknown.contains("no-such-tool") && unknown.contains("echo"),
        "{unknown}"
    );
    let dead = r[2]["error"].as_str().unwrap();
    assert!(
        dead.contains("`dead`") && dead.contains("not available"),
        "{dead}"
    );
    let nowhere = r[3]["error"].as_str().unwrap();
    assert!(
        nowhere.contains("nowhere") && nowhere.contains("everything"),
        "{nowhere}"
    );
    assert_eq!(r[4]["success"], false, "missing argument: {}", r[4]);
    assert_eq!(
        r[5],
        json!({"tool": "add", "service": "calc", "success": true, "result": "2"})
    );
    assert_eq!(cb["status"], "failed");
    assert_eq!(cb["result"]["success"], false);
}

#[tokio::test]
async fn idempotency_duplicates_and_a_full_queue() {
    let app = mcp_app(|c| c.mcp.max_queued = 2).await;
    let slow = json!([{"service_name": "calc", "tool_name": "slow", "ms": 800}]);
    let (_, first) = app
        .mcp_post("/schedule", &batch("m3", "m3-a", slow.clone(), None))
        .await;
    assert_eq!(first["status"], "scheduled");

    // Same request id: the first answer, marked idempotent; nothing runs twice.
    let (s, again) = app
        .mcp_post("/schedule", &batch("m3", "m3-a", slow.clone(), None))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(again["idempotent"], true);
    assert_eq!(again["task_id"], "m3-a");
    assert_eq!(again["accepted_at"], first["accepted_at"]);
    // The id of an agent batch: refused, not answered with the agent's task.
    let (s, _) = app
        .post_schedule(&echo_batch("m3", "m3-agent", &["x"], 0, None))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, r) = app
        .mcp_post("/schedule", &batch("m3", "m3-agent", slow.clone(), None))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert_eq!(r["code"], "request_id_reused");

    // Same calls and arguments, new request id, still active: its task.
    let (_, dup) = app
        .mcp_post("/schedule", &batch("m3", "m3-b", slow.clone(), None))
        .await;
    assert_eq!(dup["duplicate"], true);
    assert_eq!(dup["task_id"], "m3-a");
    let (s, _) = app.mcp_get("/tasks/m3-b").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a duplicate stores nothing");

    // Same tool, other arguments: not a duplicate (upstream compared names only).
    let other = json!([{"service_name": "calc", "tool_name": "slow", "ms": 801}]);
    let (_, o) = app
        .mcp_post("/schedule", &batch("m3", "m3-c", other, None))
        .await;
    assert_eq!(o["task_id"], "m3-c");
    assert!(o.get("duplicate").is_none());

    // Two batches held, max_queued = 2: the next is refused with Retry-After.
    let resp = app
        .client
        .post(format!("{}/schedule", app.mcp))
        .json(&batch(
            "m3-other",
            "m3-d",
            json!([{"service_name": "calc", "tool_name": "add", "a": 1, "b": 2}]),
            None,
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "busy");

    let t = app.wait_for_task_end("m3-a").await;
    assert_eq!(t["steps_count"], 1);
    // Once the first is done the same calls are welcome again.
    app.wait_for_task_end("m3-c").await;
    let (_, later) = app
        .mcp_post("/schedule", &batch("m3", "m3-e", slow, None))
        .await;
    assert_eq!(later["task_id"], "m3-e");
}

#[tokio::test]
async fn bad_mcp_batches_are_refused_and_store_nothing() {
    let app = mcp_app(|_| {}).await;
    let (s, b) = app
        .mcp_post(
            "/schedule",
            &json!({"query": "", "tool_calls": [], "session_id": "m4"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["code"], "invalid_request");
    let (s, b) = app
        .mcp_post("/schedule", &json!({"tool_calls": [{"tool_name": "echo"}], "session_id": "m4", "request_id": "m4-r"}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(b["detail"].as_str().unwrap().contains("service_name"));
    let (s, b) = app
        .mcp_post(
            "/schedule",
            &json!({"query": "just talk", "tool_calls": [], "session_id": "m4"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["status"], "no_tasks");
    let (_, list) = app.mcp_get("/tasks").await;
    assert_eq!(list["count"], 0);
}

/// One server's entry of `GET /status`.
fn server(status: &Value, name: &str) -> Value {
    status["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == name)
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_crashed_stdio_server_is_started_again() {
    let app = mcp_app(|_| {}).await;
    let echo = |i: usize| json!([{"service_name": "everything", "tool_name": "echo", "message": format!("n{i}")}]);
    app.mcp_post("/schedule", &batch("m5", "m5-1", echo(1), None))
        .await;
    assert_eq!(app.wait_for_task_end("m5-1").await["status"], "succeeded");
    let (_, status) = app.mcp_get("/status").await;
    let everything = server(&status, "everything");
    let pid = everything["pid"].as_u64().expect("a pid");
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    // Wait until naga notices the child is gone.
    for _ in 0..500 {
        let (_, s) = app.mcp_get("/status").await;
        if server(&s, "everything")["connected"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.mcp_post("/schedule", &batch("m5", "m5-2", echo(2), None))
        .await;
    let t = app.wait_for_task_end("m5-2").await;
    assert_eq!(t["status"], "succeeded", "{t}");
    assert_eq!(t["calls"][0]["result"]["result"], "Echo: n2");
    let (_, status) = app.mcp_get("/status").await;
    let everything = server(&status, "everything");
    assert_eq!(everything["starts"], 2);
    assert_ne!(everything["pid"].as_u64(), Some(pid));
}
