//! NagaAgent's own shapes: the agent server's routes answer with the keys,
//! nesting and JSON types of upstream's `agentserver/agent_server.py`
//! (xwdqy/NagaAgent b2cd671), with naga's fields beside them. (The MCP
//! server's, the toolkit's and the API server's: `compat_servers.rs`.)

mod common;
use common::shapes::*;
use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn the_agent_server_answers_in_upstream_s_shapes() {
    let app = TestApp::spawn().await;
    let mut batch = echo_batch("compat", "compat-1", &["one", "two"], 0, None);
    batch["agent_calls"][1]["parameters"]["fail"] = json!(true);
    assert_eq!(app.post_schedule(&batch).await.0, StatusCode::OK);
    app.wait_for_task_end("compat-1").await;

    let (_, h) = app.get("/health").await;
    shaped(
        "/health",
        &h,
        &[
            ("status", T::Str),
            ("timestamp", T::Str),
            ("modules", T::Obj),
        ],
    );
    shaped(
        "/health modules",
        &h["modules"],
        &[("analyzer", T::Bool), ("computer_control", T::Bool)],
    );

    let (_, l) = app.get("/tasks?session_id=compat").await;
    shaped(
        "/tasks",
        &l,
        &[
            ("success", T::Bool),
            ("running_tasks", T::Arr),
            ("session_id", T::Str),
        ],
    );

    let (_, t) = app.get("/tasks/compat-1").await;
    shaped("/tasks/{id}", &t, &[("success", T::Bool), ("task", T::Obj)]);
    shaped("/tasks/{id} task", &t["task"], UPSTREAM_TASK);
    assert_eq!(t["task"]["id"], "compat-1");
    assert_eq!(t["task"]["status"], "failed", "upstream's words");

    let (s, step) = app
        .post(
            "/tasks/compat-1/steps",
            &json!({"purpose": "看一看", "content": "look", "output": "ok"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    shaped(
        "POST /tasks/{id}/steps",
        &step,
        &[
            ("success", T::Bool),
            ("message", T::Str),
            ("step_id", T::Str),
        ],
    );

    let (_, m) = app.get("/tasks/compat-1/memory").await;
    shaped(
        "/tasks/{id}/memory",
        &m,
        &[
            ("success", T::Bool),
            ("task_id", T::Str),
            ("memory_summary", T::Str),
        ],
    );
    let text = m["memory_summary"].as_str().unwrap();
    assert!(
        text.contains("关键事实") && text.contains("步骤 3"),
        "{text}"
    );

    let (_, g) = app.get("/memory/global").await;
    shaped(
        "/memory/global",
        &g,
        &[
            ("success", T::Bool),
            ("global_summary", T::Str),
            ("failed_attempts", T::Obj),
        ],
    );
    assert!(
        g["failed_attempts"]
            .as_object()
            .unwrap()
            .values()
            .all(Value::is_i64),
        "{g}"
    );

    let (_, ss) = app.get("/sessions").await;
    shaped(
        "/sessions",
        &ss,
        &[
            ("success", T::Bool),
            ("sessions", T::Arr),
            ("total_sessions", T::Int),
        ],
    );
    shaped(
        "/sessions entry",
        &ss["sessions"][0],
        &[
            ("session_id", T::Str),
            ("created_at", T::Num),
            ("last_activity", T::Num),
            ("tasks_count", T::Int),
            ("compressed_memories_count", T::Int),
            ("key_facts_count", T::Int),
            ("failed_attempts_count", T::Int),
        ],
    );

    let (_, sm) = app.get("/sessions/compat/memory").await;
    shaped(
        "/sessions/{id}/memory",
        &sm,
        &[
            ("success", T::Bool),
            ("session_id", T::Str),
            ("memory_summary", T::Obj),
        ],
    );
    shaped(
        "/sessions/{id}/memory summary",
        &sm["memory_summary"],
        &[
            ("session_id", T::Str),
            ("created_at", T::Num),
            ("last_activity", T::Num),
            ("tasks_count", T::Int),
            ("tasks", T::Arr),
            ("recent_key_facts", T::Arr),
            ("recent_compressed_memories", T::Arr),
            ("failed_attempts", T::Obj),
        ],
    );
    assert_eq!(sm["memory_summary"]["tasks"], json!(["compat-1"]));
    assert_eq!(
        app.get("/sessions/nobody/memory").await.0,
        StatusCode::NOT_FOUND
    );

    let (_, kf) = app.get("/sessions/compat/key_facts").await;
    shaped(
        "/sessions/{id}/key_facts",
        &kf,
        &[
            ("success", T::Bool),
            ("key_facts", T::Obj),
            ("count", T::Int),
        ],
    );
    assert!(kf["key_facts"]
        .as_object()
        .unwrap()
        .values()
        .all(Value::is_string));
    let (_, fa) = app.get("/sessions/compat/failed_attempts").await;
    shaped(
        "/sessions/{id}/failed_attempts",
        &fa,
        &[("failed_attempts", T::Obj), ("count", T::Int)],
    );
    assert_eq!(fa["count"], 1);
    let (_, cm) = app.get("/sessions/compat/compressed_memories").await;
    shaped(
        "/sessions/{id}/compressed_memories",
        &cm,
        &[("compressed_memories", T::Arr), ("count", T::Int)],
    );
    shaped(
        "compressed memory",
        &cm["compressed_memories"][0],
        &[
            ("memory_id", T::Str),
            ("key_findings", T::Arr),
            ("failed_attempts", T::Arr),
            ("current_status", T::Str),
            ("next_steps", T::Arr),
            ("source_steps", T::Int),
        ],
    );
    let (_, st) = app.get("/sessions/compat/tasks").await;
    shaped(
        "/sessions/{id}/tasks",
        &st,
        &[("success", T::Bool), ("tasks", T::Arr), ("count", T::Int)],
    );
    shaped("/sessions/{id}/tasks entry", &st["tasks"][0], UPSTREAM_TASK);
    assert_eq!(st["tasks"][0]["id"], "compat-1");

    // No calls: upstream still names the batch (its request id).
    let (s, none) = app
        .post_schedule(
            &json!({"agent_calls": [], "session_id": "compat", "request_id": "compat-0"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{none}");
    assert_eq!(
        (none["status"].clone(), none["task_id"].clone()),
        (json!("no_tasks"), json!("compat-0"))
    );
    let (s, none) = app.post_schedule(&json!({"agent_calls": []})).await;
    assert_eq!(s, StatusCode::OK, "{none}");
    shaped("/schedule without calls", &none, &[("task_id", T::Str)]);
    // No session: upstream schedules it all the same.
    let (s, lone) = app
        .post_schedule(&json!({"agent_calls": [{"tool_name": "echo", "instruction": "x"}], "request_id": "lone-1"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{lone}");
    shaped(
        "/schedule without session_id",
        &lone,
        &[
            ("success", T::Bool),
            ("status", T::Str),
            ("task_id", T::Str),
            ("message", T::Str),
            ("accepted_at", T::Str),
        ],
    );
    assert_eq!(app.wait_for_task_end("lone-1").await["status"], "succeeded");

    // The legacy route's results are upstream's: `result` always a string
    // (what the agent returned; a failure as upstream's agent's JSON text),
    // the instruction as an object.
    let (s, legacy) = app
        .post(
            "/analyze_and_execute",
            &json!({"messages": [{"role": "user", "content": "执行Agent任务: 打开记事本"}], "session_id": "compat-legacy"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{legacy}");
    shaped(
        "/analyze_and_execute results[0]",
        &legacy["results"][0],
        &[
            ("success", T::Bool),
            ("result", T::Str),
            ("instruction", T::Obj),
            ("task_type", T::Str),
        ],
    );
    assert_eq!(
        legacy["results"][0]["instruction"]["instruction"],
        "打开记事本"
    );

    // Without a display: 200, not done, with upstream's keys.
    let (s, ex) = app
        .post(
            "/computer_control/execute",
            &json!({"instruction": "打开记事本"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{ex}");
    shaped(
        "/computer_control/execute",
        &ex,
        &[
            ("success", T::Bool),
            ("result", T::Str),
            ("error", T::Str),
            ("instruction", T::Str),
        ],
    );

    let (_, a) = app.get("/computer_control/availability").await;
    shaped(
        "/computer_control/availability",
        &a,
        &[
            ("ready", T::Bool),
            ("capabilities", T::Obj),
            ("timestamp", T::Str),
        ],
    );
    shaped(
        "/computer_control/availability capabilities",
        &a["capabilities"],
        &[
            ("enabled", T::Bool),
            ("adapter", T::Bool),
            ("analyzer", T::Bool),
            ("planner", T::Bool),
            ("executor", T::Bool),
            ("capabilities", T::Arr),
        ],
    );

    for path in [
        "/tasks/compat-1/memory",
        "/sessions/compat/memory",
        "/memory/global",
    ] {
        let (s, d) = app.delete(path).await;
        assert_eq!(s, StatusCode::OK, "{path}");
        shaped(path, &d, &[("success", T::Bool), ("message", T::Str)]);
    }
}
