//! naga as an MCP server (`/mcp` on the agent server), driven by official
//! MCP clients: the TypeScript SDK with the Tasks extension (protocol
//! 2026-07-28) and the Python SDK. A tool call is a naga task, committed
//! before the answer: it survives kill -9 and a restart, can be cancelled,
//! and is read from any node on PostgreSQL.

mod common;
use common::{peers::*, *};
use reqwest::StatusCode;
use serde_json::Value;
use std::path::PathBuf;

const TOKEN: &str = "mcp-face-token-0123456789";

/// The Tasks extension of 2026-07-28, and 2025-11-25's experimental tasks.
const MODERN: &str = "2026-07-28";
const EXPERIMENTAL: &str = "2025-11-25";

/// Runs `tests/peers/mcp_tasks.mjs` (the TypeScript SDK) from where its
/// packages are installed; its one JSON line.
async fn ts_client(mcp: &str, args: &[&str], token: Option<&str>) -> Value {
    ts_client_on(MODERN, mcp, args, token).await
}

/// `ts_client` speaking protocol `version`.
async fn ts_client_on(version: &str, mcp: &str, args: &[&str], token: Option<&str>) -> Value {
    let sdk = peers().join("node_modules/@modelcontextprotocol/ext-tasks");
    assert!(
        sdk.exists(),
        "the MCP TypeScript SDK is missing: `npm install --prefix target/test-peers \
         @modelcontextprotocol/client@2.4.0 @modelcontextprotocol/ext-tasks@0.2.2` (as .ci/run does)"
    );
    // ESM resolves packages from the script's folder: run a copy there.
    let script = peers().join(format!("mcp_tasks-{}.mjs", uuid::Uuid::new_v4().simple()));
    std::fs::copy(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/mcp_tasks.mjs"),
        &script,
    )
    .unwrap();
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(&script)
        .arg(mcp)
        .args(args)
        .env("NAGA_MCP_VERSION", version);
    let out = run_client(&format!("the MCP client {args:?}"), cmd, token).await;
    let _ = std::fs::remove_file(&script);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_official_mcp_client_runs_a_task_that_survives_kill_9_and_a_restart() {
    survives_kill_9_and_a_restart(MODERN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_on_2025_11_25_experimental_tasks_runs_one_across_a_restart_too() {
    survives_kill_9_and_a_restart(EXPERIMENTAL).await;
}

async fn survives_kill_9_and_a_restart(version: &str) {
    let ts = |url: String, args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ts_client_on(version, &url, &args, None).await
    };
    let dir = tempfile::tempdir().unwrap();
    let database = test_database_url();
    let data = dir.path().join("a");
    let (mut a, url) = node(&data, database.as_deref());
    let tools = ts(format!("{url}/mcp"), vec!["tools".into()]).await;
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        names.contains(&"echo") && names.contains(&"file_edit"),
        "{tools}"
    );

    // A task that runs 3 s: the client gets it at once and lets go of it.
    let started = ts(format!("{url}/mcp"), vec!["start".into(), "3000".into()]).await;
    let reference = started["reference"].clone();
    let task_id = reference["taskId"].as_str().unwrap().to_owned();
    let generation = if version == MODERN { "v2" } else { "v1" };
    assert_eq!(reference["generation"], generation, "{started}");
    // It is a naga task, committed before the answer.
    let client = reqwest::Client::new();
    let (status, task) = read(
        client
            .get(format!("{url}/tasks/{task_id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{task}");
    assert!(
        ["queued", "running"].contains(&task["status"].as_str().unwrap()),
        "{task}"
    );

    // kill -9 in the middle, and a restart on the same store.
    a.kill_9();
    let (_a, url) = node(&data, database.as_deref());
    let resumed = ts(
        format!("{url}/mcp"),
        vec!["resume".into(), reference.to_string()],
    )
    .await;
    let outcome = &resumed["outcome"];
    assert_eq!(outcome["status"], "completed", "{resumed}");
    assert_eq!(
        outcome["result"]["content"][0]["text"], "来自 MCP 客户端",
        "{resumed}"
    );
    assert_eq!(outcome["result"]["isError"], false, "{resumed}");

    if let Some(db) = &database {
        // PostgreSQL: another node answers for the same task.
        let (_b, url_b) = node(&dir.path().join("b"), Some(db));
        let again = ts(
            format!("{url_b}/mcp"),
            vec!["resume".into(), reference.to_string()],
        )
        .await;
        assert_eq!(again["outcome"]["status"], "completed", "{again}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_task_cancelled_by_its_client_stops_and_says_so_everywhere() {
    for version in [MODERN, EXPERIMENTAL] {
        cancelled_by_its_client(version).await;
    }
}

async fn cancelled_by_its_client(version: &str) {
    let app = TestApp::spawn().await;
    let out = ts_client_on(
        version,
        &format!("{}/mcp", app.agent),
        &["cancel", "60000"],
        None,
    )
    .await;
    assert_eq!(out["outcome"]["status"], "cancelled", "{out}");
    let task_id = out["taskId"].as_str().unwrap();
    let (status, task) = app.get(&format!("/tasks/{task_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(task["status"], "cancelled", "{task}");
    assert_eq!(task["kind"], "agent", "{task}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_sdk_lists_naga_s_tools_and_calls_one() {
    let app = TestApp::spawn().await;
    let mcp = format!("{}/mcp", app.agent);
    let cmd = python("mcp_client.py", &[&mcp, "你好，naga"]);
    let answer = run_client("the Python MCP client", cmd, None).await;
    assert!(
        answer["tools"].as_array().unwrap().contains(&"echo".into()),
        "{answer}"
    );
    assert_eq!(answer["is_error"], false, "{answer}");
    assert_eq!(answer["text"][0], "你好，naga", "{answer}");
    // The call was a task of naga's, like any other.
    let (_, tasks) = app.get("/tasks?kind=agent").await;
    assert_eq!(tasks["tasks"][0]["status"], "succeeded", "{tasks}");
    assert_eq!(tasks["tasks"][0]["query"], "MCP tools/call echo", "{tasks}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_mcp_face_takes_it_as_a_bearer_token() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.auth.token = Some(TOKEN.into());
    let app = TestApp::spawn_with(dir, config).await;
    let refused = app
        .client
        .post(format!("{}/mcp", app.agent))
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    // The refusal names /mcp's RFC 9728 metadata, open to all: a bearer
    // token in the header, and no authorization server to get one from.
    let challenge = refused.headers()["www-authenticate"].to_str().unwrap();
    let metadata = format!("{}/.well-known/oauth-protected-resource/mcp", app.agent);
    assert_eq!(
        challenge,
        format!("Bearer resource_metadata=\"{metadata}\"")
    );
    for url in [
        metadata.clone(),
        format!("{}/.well-known/oauth-protected-resource", app.agent),
    ] {
        let (status, document) = read(app.client.get(&url).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{url}");
        assert_eq!(
            document["resource"],
            format!("{}/mcp", app.agent),
            "{document}"
        );
        assert_eq!(
            document["bearer_methods_supported"],
            serde_json::json!(["header"])
        );
        assert!(
            document.get("authorization_servers").is_none(),
            "{document}"
        );
    }
    let tools = ts_client(&format!("{}/mcp", app.agent), &["tools"], Some(TOKEN)).await;
    assert!(
        tools["tools"].as_array().unwrap().contains(&"echo".into()),
        "{tools}"
    );
}

/// The tool called is the agent that runs: arguments naming another agent
/// (`tool_name`, `task_type`, `agentType`) are refused by the tool's
/// `inputSchema` (-32602) and nothing runs; a missing `instruction` is
/// -32602 too; an agent tools/list does not list cannot be called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_runs_the_tool_called_and_only_with_its_schema_s_arguments() {
    let app = TestApp::spawn().await;
    let mcp = format!("{}/mcp", app.agent);
    let cmd = python("mcp_hostile.py", &[&mcp, "pwned.txt"]);
    let answer = run_client("the Python MCP client", cmd, None).await;
    for key in ["tool_name", "task_type", "agentType", "no_instruction"] {
        assert_eq!(answer[key]["code"], -32602, "{key}: {answer}");
    }
    let unlisted = answer["unlisted"].as_object().unwrap();
    for (agent, outcome) in unlisted {
        assert_eq!(outcome["code"], -32602, "{agent}: {answer}");
    }
    assert_eq!(answer["plain"]["text"][0], "plain", "{answer}");
    // Only the plain call became a task; no file was written.
    let (_, tasks) = app.get("/tasks?kind=agent").await;
    assert_eq!(tasks["count"], 1, "{tasks}");
    let written = walk(&app.data_dir())
        .into_iter()
        .find(|p| p.ends_with("pwned.txt"));
    assert!(written.is_none(), "{written:?}");
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// naga's MCP face keeps at most `[mcp] max_sessions` sessions: a client
/// that initializes past the bound closes the least recently used one,
/// whose next request gets 404 (its client initializes again); the others
/// go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_sessions_are_bounded_and_the_least_recently_used_makes_room() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.mcp.max_sessions = 3;
    let app = TestApp::spawn_with(dir, config).await;
    let mcp = format!("{}/mcp", app.agent);
    let post = |session: Option<String>, body: Value| {
        let mut req = app
            .client
            .post(&mcp)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", EXPERIMENTAL)
            .json(&body);
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        req.send()
    };
    let initialize = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": EXPERIMENTAL, "capabilities": {},
                   "clientInfo": {"name": "bounded", "version": "1"}}});
    let list = serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let initialized = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let resp = post(None, initialize.clone()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let id = resp.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let resp = post(Some(id.clone()), initialized.clone()).await.unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        sessions.push(id);
    }
    // The first is used again: the second is now the least recently used.
    let resp = post(Some(sessions[0].clone()), list.clone()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = post(None, initialize.clone()).await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "a fourth session is made room for"
    );
    let fourth = resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let resp = post(Some(sessions[1].clone()), list.clone()).await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::NOT_FOUND,
        "the least recently used was closed"
    );
    for id in [&sessions[0], &sessions[2], &fourth] {
        let resp = post(Some(id.clone()), list.clone()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{id} goes on");
    }
}

/// naga's MCP face names itself: `serverInfo` is naga and its version, not
/// the SDK it is built with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_face_names_itself_naga_in_server_info() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .post(format!("{}/mcp", app.agent))
        .header("accept", "application/json, text/event-stream")
        .json(
            &serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": EXPERIMENTAL, "capabilities": {},
                       "clientInfo": {"name": "names", "version": "1"}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    // A JSON body, or an SSE event carrying it (after a priming one).
    let json = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .find(|d| !d.trim().is_empty())
        .unwrap_or(&text);
    let answer: Value = serde_json::from_str(json.trim()).unwrap();
    let info = &answer["result"]["serverInfo"];
    assert_eq!(info["name"], "naga", "{answer}");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"), "{answer}");
}

/// On 2025-11-25, `tasks/get` and `tasks/result` of a task id the server
/// does not know answer -32602 (invalid params), as that version says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_2025_11_25_an_unknown_task_id_is_invalid_params() {
    let app = TestApp::spawn().await;
    for method in ["tasks/get", "tasks/result"] {
        let resp = app
            .client
            .post(format!("{}/mcp", app.agent))
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", EXPERIMENTAL)
            .json(
                &serde_json::json!({"jsonrpc": "2.0", "id": 7, "method": method,
                "params": {"taskId": "no-such-task"}}),
            )
            .send()
            .await
            .unwrap();
        let (_, answer) = read(resp).await;
        assert_eq!(answer["error"]["code"], -32602, "{method}: {answer}");
        assert_eq!(answer["id"], 7, "{answer}");
    }
}

/// What is not a JSON-RPC message, or what the transport refuses, is
/// answered on `/mcp` as a JSON-RPC error (never plain text), and reaches
/// no tool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_on_mcp_get_json_rpc_errors() {
    let app = TestApp::spawn().await;
    let call = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"instruction": "x"}}});
    let mut batch = serde_json::to_vec(&serde_json::json!([call])).unwrap();
    let deep = ("[".repeat(100) + &"]".repeat(100)).into_bytes();
    let cases: Vec<(&str, &str, Vec<u8>, u16, i64)> = vec![
        (
            "application/json",
            "application/json, text/event-stream",
            b"{bad".to_vec(),
            400,
            -32700,
        ),
        (
            "application/json",
            "application/json, text/event-stream",
            std::mem::take(&mut batch),
            400,
            -32600,
        ),
        (
            "application/json",
            "application/json, text/event-stream",
            deep,
            400,
            -32600,
        ),
        (
            "text/plain",
            "application/json, text/event-stream",
            b"{}".to_vec(),
            415,
            -32600,
        ),
        (
            "application/json",
            "text/html",
            serde_json::to_vec(&call).unwrap(),
            406,
            -32600,
        ),
    ];
    for (content_type, accept, body, status, code) in cases {
        let resp = app
            .client
            .post(format!("{}/mcp", app.agent))
            .header("content-type", content_type)
            .header("accept", accept)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{content_type} {accept}");
        let text = resp.text().await.unwrap();
        let answer: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status} without JSON: {text}"));
        assert_eq!(answer["jsonrpc"], "2.0", "{answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
    }
    let (_, tasks) = app.get("/tasks").await;
    assert_eq!(tasks["count"], 0, "no tool ran: {tasks}");
}
