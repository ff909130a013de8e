//! The task scheduler, memory, toolkit and legacy APIs with real data.

mod common;
use common::*;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn tasks_steps_and_memory_of_a_session() {
    let app = TestApp::spawn().await;
    let mut b = echo_batch("mem", "mem-1", &["open editor", "type text"], 0, None);
    b["agent_calls"][1]["parameters"]["fail"] = json!(true);
    app.post_schedule(&b).await;
    app.wait_for_task_end("mem-1").await;
    app.post_schedule(&echo_batch("mem", "mem-2", &["save"], 0, None))
        .await;
    app.wait_for_task_end("mem-2").await;
    app.post_schedule(&echo_batch("else", "else-1", &["x"], 0, None))
        .await;
    app.wait_for_task_end("else-1").await;

    // Task listing, filters, upstream status words.
    let (_, all) = app.get("/tasks").await;
    assert_eq!(all["count"], 3);
    assert_eq!(all["tasks"][0]["task_id"], "else-1", "newest first");
    let (_, mine) = app.get("/tasks?session_id=mem").await;
    assert_eq!(mine["count"], 2);
    let (_, done) = app.get("/tasks?status=completed").await;
    assert_eq!(done["count"], 2);
    let (_, failed) = app.get("/tasks?status=failed&session_id=mem").await;
    assert_eq!(failed["tasks"][0]["task_id"], "mem-1");
    assert_eq!(failed["tasks"][0]["error"], "1 of 2 calls failed");

    // Steps: recorded per call, and added by clients.
    let (_, t) = app.get("/tasks/mem-1").await;
    assert_eq!(t["steps_count"], 2);
    assert_eq!(t["steps"][0]["purpose"], "echo: open editor");
    assert_eq!(t["steps"][0]["output"], "open editor");
    assert_eq!(t["steps"][1]["success"], false);
    let (s, added) = app
        .post(
            "/tasks/mem-1/steps",
            &json!({"purpose": "check", "output": "looked fine", "analysis": "ok"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{added}");
    assert_eq!(added["step"]["step_id"], 3);
    let (_, steps) = app.get("/tasks/mem-1/steps").await;
    assert_eq!(steps["count"], 3);
    let (s, b) = app
        .post("/tasks/mem-1/steps", &json!({"success": true}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");

    // Task memory: key facts per step, failed attempts, summary.
    let (_, m) = app.get("/tasks/mem-1/memory").await;
    let facts = m["key_facts"].as_array().unwrap();
    assert_eq!(facts.len(), 3);
    let first = facts
        .iter()
        .find(|f| f["key"] == "task:mem-1:step:1")
        .unwrap();
    assert_eq!(
        first["value"],
        "command echo: open editor, result open editor"
    );
    assert_eq!(m["failed_attempts"][0]["command"], "echo: type text");
    assert_eq!(m["failed_attempts"][0]["count"], 1);
    let summary = &m["compressed_memories"][0];
    assert_eq!(summary["method"], "deterministic");
    assert_eq!(
        summary["summary"]["current_status"],
        "failed: 1 of 2 calls succeeded"
    );

    // Sessions.
    let (_, sessions) = app.get("/sessions").await;
    assert_eq!(sessions["count"], 2);
    let (_, s) = app.get("/sessions/mem").await;
    assert_eq!(s["task_count"], 2);
    assert_eq!(
        s["analysis_session_ids"][0]["analysis_session_id"],
        "analysis_mem_1703123456"
    );
    let (_, st) = app.get("/sessions/mem/tasks").await;
    assert_eq!(st["count"], 2);
    // Upstream's shapes: key facts and failed attempts as objects, counted.
    let (_, kf) = app.get("/sessions/mem/key_facts").await;
    assert_eq!(kf["key_facts"].as_object().unwrap().len(), 4);
    assert_eq!(
        (
            kf["count"].clone(),
            kf["key_facts_list"].as_array().unwrap().len()
        ),
        (json!(4), 4)
    );
    let (_, fa) = app.get("/sessions/mem/failed_attempts").await;
    let failed = fa["failed_attempts"].as_object().unwrap();
    assert_eq!((failed.len(), fa["count"].clone()), (1, json!(1)));
    assert!(failed.values().all(|n| n.as_i64() == Some(1)), "{fa}");
    let (_, cm) = app.get("/sessions/mem/compressed_memories").await;
    assert_eq!(cm["compressed_memories"].as_array().unwrap().len(), 2);
    let (_, sm) = app.get("/sessions/mem/memory").await;
    assert_eq!(sm["key_facts"].as_array().unwrap().len(), 4);

    // Global memory sees both sessions.
    let (_, g) = app.get("/memory/global").await;
    assert_eq!(g["key_facts"].as_array().unwrap().len(), 5);
    assert_eq!(g["stats"]["tasks"], 3);
    assert_eq!(g["stats"]["steps"], 5);

    // Clearing memory keeps the history.
    let (_, cleared) = app.delete("/tasks/mem-1/memory").await;
    assert!(cleared["removed"].as_u64().unwrap() >= 4, "{cleared}");
    let (_, m) = app.get("/tasks/mem-1/memory").await;
    assert_eq!(m["key_facts"].as_array().unwrap().len(), 0);
    assert_eq!(m["steps_count"], 3);
    app.delete("/sessions/mem/memory").await;
    let (_, sm) = app.get("/sessions/mem/memory").await;
    assert_eq!(sm["key_facts"].as_array().unwrap().len(), 0);
    let (_, g) = app.get("/memory/global").await;
    assert_eq!(
        g["key_facts"].as_array().unwrap().len(),
        1,
        "the other session keeps its memory"
    );
    app.delete("/memory/global").await;
    let (_, g) = app.get("/memory/global").await;
    assert_eq!(g["key_facts"].as_array().unwrap().len(), 0);
    let (_, t) = app.get("/tasks/mem-1").await;
    assert_eq!(
        t["steps"].as_array().unwrap().len(),
        3,
        "steps are history, not memory"
    );
}

#[tokio::test]
async fn toolkits_and_file_endpoints() {
    let app = TestApp::spawn().await;
    let (_, tools) = app.get("/tools").await;
    let names: Vec<_> = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "read_file",
            "write_file",
            "edit_file",
            "list_files",
            "create_directory",
            "delete_file"
        ]
    );
    assert_eq!(tools["tools"][0]["input_schema"]["required"][0], "path");
    let agents: Vec<_> = tools["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(agents, ["computer_control", "echo", "file_edit"]);
    let (_, kits) = app.get("/toolkits").await;
    assert_eq!(kits["toolkits"][0], "file_edit");
    assert_eq!(kits["toolkit_details"][0]["name"], "file_edit");
    let (_, kit) = app.get("/toolkits/file_edit").await;
    assert_eq!(kit["tools"].as_array().unwrap().len(), 6);

    let (s, w) = app
        .post(
            "/file/write",
            &json!({"path": "docs/plan.md", "content": "# Plan\nstep one\n"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{w}");
    let diff = "<<<<<<< SEARCH\nstep one\n=======\nstep one\nstep two\n>>>>>>> REPLACE\n";
    let (s, e) = app
        .post("/file/edit", &json!({"path": "docs/plan.md", "diff": diff}))
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let (_, r) = app.get("/file/read?path=docs/plan.md").await;
    assert_eq!(r["result"]["content"], "# Plan\nstep one\nstep two\n");
    let (_, l) = app.get("/file/list?path=docs").await;
    assert_eq!(l["result"]["entries"][0]["name"], "plan.md");
    let (_, l) = app.get("/file/list").await;
    assert_eq!(l["result"]["entries"][0]["name"], "docs");
    let (s, t) = app
        .post(
            "/tools/file_edit/read_file",
            &json!({"path": "docs/plan.md"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(t["result"]["size"], 25);
    let on_disk = std::fs::read_to_string(app.data_dir().join("workspace/docs/plan.md")).unwrap();
    assert_eq!(on_disk, "# Plan\nstep one\nstep two\n");
}

#[tokio::test]
async fn computer_control_reports_why_it_is_not_ready() {
    let app = TestApp::spawn().await;
    let (s, a) = app.get("/computer_control/availability").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(a["ready"], false);
    assert!(!a["reasons"].as_array().unwrap().is_empty());
    let (s, e) = app
        .post(
            "/computer_control/execute",
            &json!({"instruction": "打开记事本"}),
        )
        .await;
    // As upstream: 200, not done, with the reason and the instruction.
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(e["success"], false, "{e}");
    // `result` a string, as upstream's agent returns it when it fails.
    let result: serde_json::Value = serde_json::from_str(e["result"].as_str().unwrap()).unwrap();
    assert_eq!(result["success"], false, "{e}");
    assert!(
        e["error"].as_str().unwrap().contains("not available"),
        "{e}"
    );
    assert_eq!(e["instruction"], "打开记事本");
    // An empty instruction is refused before the desktop is looked at.
    let (s, e) = app
        .post("/computer_control/execute", &json!({"instruction": " "}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
}

#[tokio::test]
async fn legacy_analyze_and_execute_runs_marked_instructions() {
    let app = TestApp::spawn().await;
    let (s, r) = app
        .post(
            "/analyze_and_execute",
            &json!({"messages": [
                {"role": "system", "content": "执行Agent任务: not from a user"},
                {"role": "user", "content": "请帮我 执行Agent任务: 打开记事本"},
                {"role": "assistant", "content": "好的"},
                {"role": "user", "content": "执行Agent任务：输入文本"}
            ], "session_id": "legacy-s"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["success"], true);
    assert_eq!(r["status"], "completed");
    assert_eq!(r["tasks_processed"], 2);
    assert_eq!(r["session_id"], "legacy-s");
    // Upstream's results: each call's own result.
    for (i, text) in ["打开记事本", "输入文本"].iter().enumerate() {
        let result = &r["results"][i];
        assert_eq!(
            (
                &result["success"],
                &result["result"],
                &result["instruction"]
            ),
            (&json!(true), &json!(text), &json!({ "instruction": text })),
            "{r}"
        );
        assert_eq!(result["task_type"], "echo");
        assert_eq!(
            r["calls"][i]["result"]["result"], result["result"],
            "naga's whole entry beside"
        );
    }
    assert_eq!(r["all_succeeded"], true);
    let (_, tasks) = app.get("/tasks?session_id=legacy-s").await;
    assert_eq!(
        tasks["count"], 1,
        "the legacy run is recorded like any batch"
    );

    let (_, none) = app
        .post(
            "/analyze_and_execute",
            &json!({"messages": [{"role": "user", "content": "hi"}], "session_id": "legacy-s"}),
        )
        .await;
    assert_eq!(none["status"], "no_tasks");
    assert_eq!(none["tasks_processed"], 0);
    assert!(none["message"].is_string(), "{none}");
}

#[tokio::test]
async fn health() {
    let app = TestApp::spawn().await;
    let (s, h) = app.get("/health").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["status"], "healthy");
    assert_eq!(h["service"], "agent_server");
}
