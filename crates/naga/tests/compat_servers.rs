//! NagaAgent's own shapes on the other servers: the MCP server's routes
//! (upstream's `mcpserver/mcp_server.py`), the toolkit routes (738ac77) and
//! the API server's UI routes answer with upstream's keys, nesting and JSON
//! types, with naga's fields beside them.

mod common;
use common::shapes::*;
use common::*;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn the_mcp_server_answers_in_upstream_s_shapes() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.mcp_addr = "127.0.0.1:0".into();
    config.only.push(naga_core::config::Service::Mcp);
    let app = TestApp::spawn_with(dir, config).await;
    let batch = json!({"query": "天气", "tool_calls": [{"agentType": "mcp", "service_name": "weather",
        "tool_name": "today", "city": "北京"}], "session_id": "compat-mcp", "request_id": "compat-mcp-1"});
    let (s, answer) = app.mcp_post("/schedule", &batch).await;
    assert_eq!(s, StatusCode::OK, "{answer}");
    shaped(
        "MCP /schedule",
        &answer,
        &[
            ("success", T::Bool),
            ("task_id", T::Str),
            ("message", T::Str),
            ("request_id", T::Str),
        ],
    );
    assert!(answer.get("result").is_some(), "{answer}");
    app.wait_for_task_end("compat-mcp-1").await;

    let (_, t) = app.mcp_get("/tasks/compat-mcp-1").await;
    shaped(
        "MCP /tasks/{id}",
        &t,
        &[
            ("id", T::Str),
            ("tool_calls", T::Arr),
            ("result", T::Obj),
            ("message", T::Str),
            ("status", T::Str),
        ],
    );
    assert_eq!(t["tool_calls"][0]["city"], "北京");
    shaped(
        "MCP /tasks/{id} result",
        &t["result"],
        &[
            ("success", T::Bool),
            ("results", T::Arr),
            ("message", T::Str),
        ],
    );

    let (_, st) = app.mcp_get("/status").await;
    shaped(
        "MCP /status",
        &st,
        &[
            ("server", T::Str),
            ("timestamp", T::Str),
            ("tasks", T::Obj),
            ("scheduler", T::Obj),
        ],
    );
    shaped(
        "MCP /status tasks",
        &st["tasks"],
        &[
            ("total", T::Int),
            ("active", T::Int),
            ("completed", T::Int),
            ("failed", T::Int),
        ],
    );
    assert_eq!(st["tasks"]["total"], 1);

    const MCP_TASK: &[(&str, T)] = &[
        ("id", T::Str),
        ("tool_calls", T::Arr),
        ("success", T::Bool),
        ("message", T::Str),
        ("status", T::Str),
    ];
    for path in ["/tasks", "/tasks?session_id=compat-mcp"] {
        let (_, l) = app.mcp_get(path).await;
        shaped("MCP /tasks", &l, &[("tasks", T::Arr), ("count", T::Int)]);
        shaped("MCP /tasks entry", &l["tasks"][0], MCP_TASK);
        assert!(l["tasks"][0].get("result").is_some(), "{l}");
        assert_eq!(l["tasks"][0]["tool_calls"][0]["city"], "北京");
    }
    // Upstream's registry never marks a task ended: its DELETE answers 200.
    let (s, d) = read(
        app.client
            .delete(format!("{}/tasks/compat-mcp-1", app.mcp))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    shaped(
        "MCP DELETE /tasks/{id}",
        &d,
        &[("success", T::Bool), ("message", T::Str)],
    );
    assert_eq!(d["cancelled"], false, "{d}");

    // Only a query: upstream answers with its usual keys.
    let (s, q) = app
        .mcp_post(
            "/schedule",
            &json!({"query": "随便聊聊", "session_id": "compat-mcp"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{q}");
    shaped(
        "MCP /schedule with only a query",
        &q,
        &[
            ("success", T::Bool),
            ("task_id", T::Str),
            ("message", T::Str),
            ("request_id", T::Str),
        ],
    );
    assert!(q.get("result").is_some(), "{q}");
}

#[tokio::test]
async fn the_toolkit_routes_take_upstream_s_arguments_and_answer_its_shapes() {
    let app = TestApp::spawn().await;
    let (_, tk) = app.get("/toolkits").await;
    assert_eq!(tk["toolkits"], json!(["file_edit"]), "names, as upstream");
    shaped("/toolkits", &tk, &[("count", T::Int)]);
    let (_, one) = app.get("/toolkits/file_edit").await;
    shaped(
        "/toolkits/{name}",
        &one["toolkit"],
        &[("name", T::Str), ("tools", T::Arr)],
    );
    let (_, tools) = app.get("/tools").await;
    shaped("/tools", &tools, &[("tools", T::Arr), ("count", T::Int)]);

    // write_file with upstream's `file_text`.
    let (s, w) = app
        .post(
            "/tools/file_edit/write_file",
            &json!({"path": "docs/a.txt", "file_text": "你好\n"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{w}");
    shaped(
        "/tools/{toolkit}/{tool}",
        &w,
        &[("success", T::Bool), ("toolkit", T::Str), ("tool", T::Str)],
    );
    let (_, r) = app.get("/file/read?path=docs/a.txt").await;
    assert_eq!(r["content"], "你好\n", "the text at the top level: {r}");
    let (s, _) = app
        .post(
            "/tools/file_edit/create_directory",
            &json!({"path": "docs/sub/deeper"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, l) = app.get("/file/list?directory=docs").await;
    let names: Vec<&str> = l["result"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a.txt", "sub"], "{l}");
    let (s, d) = app
        .post(
            "/tools/file_edit/delete_file",
            &json!({"path": "docs/a.txt"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert!(!app.config.file_edit_root().join("docs/a.txt").exists());
    let (s, _) = app
        .post("/tools/file_edit/delete_file", &json!({"path": "docs/sub"}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a folder is not deleted");
    let (s, _) = app
        .post(
            "/tools/file_edit/delete_file",
            &json!({"path": "../outside"}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "nor anything outside the workspace"
    );
}

#[tokio::test]
async fn the_api_server_s_ui_routes_answer_in_upstream_s_shapes() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.api_addr = "127.0.0.1:0".into();
    config.only.push(naga_core::config::Service::Api);
    let app = TestApp::spawn_with(dir, config).await;

    let events = app
        .client
        .get(format!("{}/sessions/ui/events", app.api))
        .send()
        .await
        .unwrap();
    let mut events = sse(events);
    let (s, saved) = app
        .api_post(
            "/save_tool_conversation",
            &json!({"session_id": "ui", "user_message": "[工具执行结果]: 晴", "assistant_response": "今天是晴天。"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{saved}");
    shaped(
        "/save_tool_conversation",
        &saved,
        &[
            ("success", T::Bool),
            ("message", T::Str),
            ("session_id", T::Str),
        ],
    );
    let (s, _) = app
        .api_post("/save_tool_conversation", &json!({"user_message": "x"}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "no session_id");

    let (_, list) = app.api_get("/sessions").await;
    shaped(
        "/sessions",
        &list,
        &[
            ("status", T::Str),
            ("sessions", T::Obj),
            ("total_sessions", T::Int),
        ],
    );
    shaped(
        "/sessions[ui]",
        &list["sessions"]["ui"],
        &[
            ("session_id", T::Str),
            ("created_at", T::Num),
            ("last_activity", T::Num),
            ("message_count", T::Int),
            ("conversation_rounds", T::Int),
            ("last_message", T::Str),
        ],
    );
    let (_, one) = app.api_get("/sessions/ui").await;
    shaped(
        "/sessions/{id}",
        &one,
        &[
            ("status", T::Str),
            ("session_id", T::Str),
            ("session_info", T::Obj),
            ("messages", T::Arr),
            ("conversation_rounds", T::Int),
        ],
    );
    assert_eq!(one["messages"][1]["content"], "今天是晴天。");
    assert_eq!(one["conversation_rounds"], 1);
    shaped(
        "/sessions/{id} session_info",
        &one["session_info"],
        &[
            ("max_history_rounds", T::Int),
            ("message_count", T::Int),
            ("agent_type", T::Str),
        ],
    );

    // Follow-ups reach the session's UI listeners.
    let (s, shown) = app
        .api_post(
            "/ui_notification",
            &json!({"session_id": "ui", "action": "show_tool_ai_response", "ai_response": "天气不错"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    shaped(
        "/ui_notification",
        &shown,
        &[("success", T::Bool), ("message", T::Str)],
    );
    assert_eq!(
        next_event(&mut events, "followup").await["ai_response"],
        "天气不错"
    );
    let (_, r) = app
        .api_post(
            "/tool_result",
            &json!({"session_id": "ui", "result": "晴", "type": "tool_completed_with_ai_response", "ai_response": "出门吧"}),
        )
        .await;
    shaped(
        "/tool_result",
        &r,
        &[
            ("success", T::Bool),
            ("message", T::Str),
            ("session_id", T::Str),
        ],
    );
    assert_eq!(r["result"], "晴");
    assert_eq!(
        next_event(&mut events, "followup").await["ai_response"],
        "出门吧"
    );

    let (_, root) = app.api_get("/").await;
    shaped(
        "API /",
        &root,
        &[("name", T::Str), ("version", T::Str), ("status", T::Str)],
    );
    let (_, health) = app.api_get("/health").await;
    shaped(
        "API /health",
        &health,
        &[
            ("status", T::Str),
            ("agent_ready", T::Bool),
            ("timestamp", T::Str),
        ],
    );
    let (_, info) = app.api_get("/system/info").await;
    shaped(
        "/system/info",
        &info,
        &[
            ("version", T::Str),
            ("status", T::Str),
            ("available_services", T::Arr),
            ("api_key_configured", T::Bool),
        ],
    );
    let (_, m) = app.api_get("/memory/stats").await;
    shaped(
        "/memory/stats",
        &m,
        &[("status", T::Str), ("memory_stats", T::Obj)],
    );
    let (_, st) = app.api_get("/logs/context/statistics?days=7").await;
    shaped(
        "/logs/context/statistics",
        &st["statistics"],
        &[
            ("total_files", T::Int),
            ("total_messages", T::Int),
            ("user_messages", T::Int),
            ("assistant_messages", T::Int),
            ("days_covered", T::Int),
        ],
    );
    assert_eq!(st["statistics"]["total_messages"], 2);
    let (_, load) = app
        .api_get("/logs/context/load?days=1&max_messages=1")
        .await;
    shaped(
        "/logs/context/load",
        &load,
        &[
            ("status", T::Str),
            ("messages", T::Arr),
            ("count", T::Int),
            ("days", T::Int),
        ],
    );
    assert_eq!(
        load["messages"][0]["content"], "今天是晴天。",
        "the last one"
    );

    let (s, d) = read(
        app.client
            .delete(format!("{}/sessions/ui", app.api))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    shaped(
        "DELETE /sessions/{id}",
        &d,
        &[("status", T::Str), ("message", T::Str)],
    );
    let (s, cleared) = read(
        app.client
            .delete(format!("{}/sessions", app.api))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    shaped(
        "DELETE /sessions",
        &cleared,
        &[("status", T::Str), ("message", T::Str)],
    );
    let (s, n) = app
        .api_post(
            "/tool_notification",
            &json!({"session_id": "ui", "message": "正在查询天气",
                    "tool_calls": [{"tool_name": "today", "service_name": "weather", "status": "starting"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{n}");
    shaped(
        "/tool_notification",
        &n,
        &[
            ("success", T::Bool),
            ("message", T::Str),
            ("tool_calls", T::Arr),
            ("display_message", T::Str),
        ],
    );
    assert_eq!(n["display_message"], "正在查询天气");
    let (s, cb) = app
        .api_post(
            "/tool_result_callback",
            &json!({"session_id": "ui", "task_id": "weather-1", "success": true,
                    "result": {"result": "晴"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{cb}");
    shaped(
        "/tool_result_callback",
        &cb,
        &[
            ("success", T::Bool),
            ("message", T::Str),
            ("response", T::Str),
            ("task_id", T::Str),
            ("session_id", T::Str),
        ],
    );
}
