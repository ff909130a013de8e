//! The API server and the background analyzer: from a conversation to
//! tasks and back, against a scripted OpenAI-compatible server.

mod common;
use common::{llm::ScriptedLlm, *};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::{sync::Arc, time::Duration};

async fn app(
    llm: Option<&ScriptedLlm>,
    change: impl FnOnce(&mut naga_core::config::Config),
) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.api_addr = "127.0.0.1:0".into();
    config.mcp_addr = "127.0.0.1:0".into();
    config.only = vec![];
    let servers =
        json!({"mcpServers": {"everything": {"command": "node", "args": [everything(), "stdio"]}}});
    let file = dir.path().join("mcp_servers.json");
    std::fs::write(&file, servers.to_string()).unwrap();
    config.mcp.config = Some(file);
    if let Some(llm) = llm {
        config.llm.base_url = Some(llm.base_url.clone());
        config.llm.model = Some("scripted".into());
        config.llm.api_key = Some("sk-test".into());
    }
    change(&mut config);
    TestApp::spawn_with(dir, config).await
}

async fn subscribe(
    app: &TestApp,
    session: &str,
) -> tokio::sync::mpsc::UnboundedReceiver<(String, String)> {
    let resp = app
        .client
        .get(format!("{}/sessions/{session}/events", app.api))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    sse(resp)
}

async fn wait_for_messages(app: &TestApp, session: &str, n: usize) -> Vec<Value> {
    for _ in 0..1000 {
        let (s, v) = app.api_get(&format!("/sessions/{session}")).await;
        if s == StatusCode::OK && v["messages"].as_array().unwrap().len() >= n {
            return v["messages"].as_array().unwrap().clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("session {session} never had {n} messages");
}

/// The contents of a conversation's messages, in order.
async fn contents(app: &TestApp, session: &str) -> Vec<Value> {
    let (_, h) = app.api_get(&format!("/sessions/{session}")).await;
    h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].clone())
        .collect()
}

#[tokio::test]
async fn without_an_llm_chat_answers_503_and_the_scheduler_keeps_working() {
    let app = app(None, |_| {}).await;
    let (s, b) = app
        .api_post("/chat", &json!({"message": "hi", "session_id": "no-llm"}))
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert_eq!(b["code"], "llm_not_configured");
    assert!(b["detail"].as_str().unwrap().contains("NAGA_LLM_BASE_URL"));
    let (s, _) = app
        .api_post("/chat/stream", &json!({"message": "hi"}))
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let (_, sessions) = app.api_get("/sessions").await;
    assert_eq!(sessions["count"], 0, "nothing stored");
    let (s, _) = app
        .post_schedule(&echo_batch("no-llm", "no-llm-1", &["x"], 0, None))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        app.wait_for_task_end("no-llm-1").await["status"],
        "succeeded"
    );
    let (_, h) = app.api_get("/health").await;
    assert_eq!(h["llm_configured"], false);
}

#[tokio::test]
async fn chat_saves_the_turn_and_bad_input_is_refused() {
    let llm = ScriptedLlm::start().await;
    let app = app(Some(&llm), |_| {}).await;
    let (s, b) = app.api_post("/chat", &json!({"message": "  "})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, _) = app.api_post("/chat", &json!({"session_id": "x"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    let (s, r) = app
        .api_post(
            "/chat",
            &json!({"message": "你好", "session_id": "c1", "skip_intent_analysis": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "success");
    assert_eq!(r["session_id"], "c1");
    assert_eq!(r["response"], "你好！我收到了：你好");
    let (_, r2) = app
        .api_post(
            "/chat",
            &json!({"message": "再见", "session_id": "c1", "skip_intent_analysis": true}),
        )
        .await;
    assert_eq!(r2["response"], "你好！我收到了：再见");
    // The second turn carried the first as history, after the system prompt.
    let chats = llm.requests("chat");
    let roles: Vec<_> = chats[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_eq!(chats[1]["model"], "scripted");
    let contents = contents(&app, "c1").await;
    assert_eq!(
        contents,
        [
            json!("你好"),
            json!("你好！我收到了：你好"),
            json!("再见"),
            json!("你好！我收到了：再见")
        ]
    );
    assert!(
        llm.requests("analysis").is_empty(),
        "skip_intent_analysis skips the analysis"
    );

    // A chat without a session id gets one.
    let (_, r) = app
        .api_post(
            "/chat",
            &json!({"message": "new", "skip_intent_analysis": true}),
        )
        .await;
    assert!(!r["session_id"].as_str().unwrap().is_empty());
    let (_, list) = app.api_get("/sessions").await;
    assert_eq!(list["count"], 2);
    let (s, _) = app
        .client
        .delete(format!("{}/sessions/c1", app.api))
        .send()
        .await
        .map(|r| (r.status(), ()))
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app.api_get("/sessions/c1").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn llm_errors_are_502_and_504_and_lose_nothing() {
    let llm = ScriptedLlm::start().await;
    let app = app(Some(&llm), |c| c.llm.timeout_ms = 300).await;
    llm.script.fail_next.lock().unwrap().push_back(500);
    let (s, b) = app
        .api_post(
            "/chat",
            &json!({"message": "one", "session_id": "e1", "skip_intent_analysis": true}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{b}");
    assert_eq!(b["code"], "llm_error");
    *llm.script.chat_delay_ms.lock().unwrap() = 1000;
    let (s, b) = app
        .api_post(
            "/chat",
            &json!({"message": "two", "session_id": "e1", "skip_intent_analysis": true}),
        )
        .await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{b}");
    assert_eq!(b["code"], "llm_timeout");
    let contents = contents(&app, "e1").await;
    assert_eq!(
        contents,
        [json!("one"), json!("two")],
        "the user's messages are kept"
    );
}

/// The data lines of a `/chat/stream` answer.
async fn stream_lines(app: &TestApp, query: &str, message: &str, session: &str) -> Vec<String> {
    let resp = app
        .client
        .post(format!("{}/chat/stream{query}", app.api))
        .json(&json!({"message": message, "session_id": session, "skip_intent_analysis": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut rx = sse(resp);
    let mut data = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
            Ok(Some((_, d))) => data.push(d),
            Ok(None) => return data,
            Err(_) => panic!("the stream did not end within 30 s; so far: {data:?}"),
        }
    }
}

#[tokio::test]
async fn chat_stream_sends_the_session_id_first_then_the_text_as_nagaagent_s_ui_decodes_it() {
    use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
    let llm = ScriptedLlm::start().await;
    let app = app(Some(&llm), |_| {}).await;
    // Punctuation, spaces (at the ends of pieces and of lines too),
    // newlines and Chinese. (The message itself is saved trimmed.)
    let message = "Sure, I also saved the file.\n  Done: a/b?c=d&e!  \n流式 回答。";
    let want = format!("你好！我收到了：{message}");
    let data = stream_lines(&app, "", message, "st").await;
    assert_eq!(data.first().unwrap(), "session_id: st");
    assert_eq!(data.last().unwrap(), "[DONE]");
    assert!(data.len() > 4, "the text came in pieces: {data:?}");
    // As ui/utils/simple_http_client.py does: each data line is base64 of UTF-8.
    let text: String = data[1..data.len() - 1]
        .iter()
        .map(|d| String::from_utf8(B64.decode(d).expect("base64")).unwrap())
        .collect();
    assert_eq!(text, want);
    let messages = wait_for_messages(&app, "st", 2).await;
    assert_eq!(messages[1]["content"], want.as_str(), "saved as the reply");

    // For other clients, the text as it is.
    let data = stream_lines(&app, "?encoding=text", "流式回答", "st-text").await;
    assert_eq!(data[1..data.len() - 1].concat(), "你好！我收到了：流式回答");
    let resp = app
        .client
        .post(format!("{}/chat/stream?encoding=hex", app.api))
        .json(&json!({"message": "x", "session_id": "st-bad"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn a_turn_becomes_an_agent_task_whose_callback_becomes_a_follow_up() {
    let llm = ScriptedLlm::start().await;
    llm.set_analysis(
        "好的，需要执行以下任务：\n｛\n\"agentType\": \"agent\",\n\"task_type\": \"echo\",\n\"instruction\": \"打开记事本，然后输入：你好\"\n｝",
    );
    let app = app(Some(&llm), |_| {}).await;
    let mut events = subscribe(&app, "loop").await;
    let (s, r) = app
        .api_post(
            "/chat",
            &json!({"message": "请帮我打开记事本", "session_id": "loop"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");

    let note = next_event(&mut events, "tool_notification").await;
    assert_eq!(
        note["agent_calls"][0]["instruction"],
        "打开记事本，然后输入：你好"
    );
    let analysis_id = note["analysis_session_id"].as_str().unwrap().to_owned();
    assert!(
        naga_core::ids::analysis_session_matches(&analysis_id, "loop"),
        "{analysis_id}"
    );

    let followup = next_event(&mut events, "followup").await;
    assert_eq!(followup["session_id"], "loop");
    assert_eq!(followup["status"], "succeeded");
    let content = followup["content"].as_str().unwrap();
    assert_eq!(
        (&followup["action"], &followup["ai_response"]),
        (&json!("show_tool_ai_response"), &json!(content)),
        "upstream's UI notification beside"
    );
    assert!(
        content.starts_with("跟进：用户的原始消息：请帮我打开记事本"),
        "{content}"
    );
    assert!(
        content.contains("打开记事本，然后输入：你好"),
        "the results reached the LLM: {content}"
    );

    // The task on the agent server carries the analysis session.
    let (_, tasks) = app.get("/tasks?session_id=loop").await;
    let task = &tasks["tasks"][0];
    assert_eq!(task["analysis_session_id"], analysis_id);
    assert_eq!(task["kind"], "agent");
    assert_eq!(
        task["callback_url"],
        format!("{}/agent_result_callback", app.api)
    );
    assert_eq!(followup["task_id"], task["task_id"]);

    let messages = wait_for_messages(&app, "loop", 3).await;
    assert_eq!(messages[2]["role"], "assistant");
    assert_eq!(messages[2]["kind"], "followup");
    assert_eq!(messages[2]["content"], content);

    // With an LLM, the task's memory also gets an LLM summary.
    let task_id = task["task_id"].as_str().unwrap();
    for _ in 0..500 {
        let (_, m) = app.get(&format!("/tasks/{task_id}/memory")).await;
        let methods: Vec<_> = m["compressed_memories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["method"].clone())
            .collect();
        if methods.contains(&json!("llm")) {
            assert!(methods.contains(&json!("deterministic")));
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no LLM memory summary");
}

#[tokio::test]
async fn an_mcp_call_takes_the_same_road() {
    let llm = ScriptedLlm::start().await;
    llm.set_analysis("```\n{\"agentType\": \"mcp\", \"service_name\": \"everything\", \"tool_name\": \"echo\", \"message\": \"来自分析器\"}\n```");
    let app = app(Some(&llm), |_| {}).await;
    let mut events = subscribe(&app, "mcp-loop").await;
    app.api_post(
        "/chat",
        &json!({"message": "回声一下", "session_id": "mcp-loop"}),
    )
    .await;
    let followup = next_event(&mut events, "followup").await;
    assert!(
        followup["content"]
            .as_str()
            .unwrap()
            .contains("Echo: 来自分析器"),
        "{followup}"
    );
    let (_, tasks) = app.mcp_get("/tasks?session_id=mcp-loop").await;
    let task = &tasks["tasks"][0];
    assert!(naga_core::ids::analysis_session_matches(
        task["analysis_session_id"].as_str().unwrap(),
        "mcp-loop"
    ));
    assert_eq!(
        task["callback_url"],
        format!("{}/tool_result_callback", app.api)
    );
    // The analyzer's prompt listed the MCP server's tools.
    let prompt = llm.requests("analysis")[0]["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(prompt.contains("everything / echo"), "{prompt}");
    assert!(prompt.contains("computer_control"), "{prompt}");
}

#[tokio::test]
async fn one_analysis_per_session_at_a_time() {
    let llm = ScriptedLlm::start().await;
    *llm.script.analysis_delay_ms.lock().unwrap() = 600;
    let app = app(Some(&llm), |_| {}).await;
    app.api_post("/chat", &json!({"message": "one", "session_id": "busy"}))
        .await;
    app.api_post("/chat", &json!({"message": "two", "session_id": "busy"}))
        .await;
    app.api_post("/chat", &json!({"message": "three", "session_id": "other"}))
        .await;
    // Each chat decided on its analysis before it answered; wait for the
    // analyses that were started to reach the LLM, then count them.
    for _ in 0..1000 {
        if llm.requests("analysis").len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sessions: Vec<String> = llm
        .requests("analysis")
        .iter()
        .map(|r| r["messages"][0]["content"].as_str().unwrap().to_owned())
        .map(|p| {
            if p.contains("user: three") {
                "other".into()
            } else {
                "busy".into()
            }
        })
        .collect();
    assert_eq!(
        sessions.iter().filter(|s| *s == "busy").count(),
        1,
        "{sessions:?}"
    );
    assert_eq!(sessions.iter().filter(|s| *s == "other").count(), 1);
}

#[tokio::test]
async fn redelivered_callbacks_add_no_second_reply() {
    let llm = ScriptedLlm::start().await;
    let app = app(Some(&llm), |_| {}).await;
    let body = json!({"task_id": "t-redeliver", "request_id": "t-redeliver", "kind": "agent", "session_id": "redo",
                      "analysis_session_id": "analysis_redo_1", "status": "succeeded", "success": true, "error": null,
                      "results": [], "completed_at": "2026-01-01T00:00:00+00:00", "sequence": 1});
    let send = |id: Option<&'static str>| {
        let mut req = app
            .client
            .post(format!("{}/agent_result_callback", app.api))
            .json(&body);
        if let Some(id) = id {
            req = req.header("webhook-id", id);
        }
        req.send()
    };
    let first: Value = send(Some("msg_1")).await.unwrap().json().await.unwrap();
    assert_eq!(first["duplicate"], false);
    let again: Value = send(Some("msg_1")).await.unwrap().json().await.unwrap();
    assert_eq!(again["duplicate"], true);
    wait_for_messages(&app, "redo", 1).await;
    // Without a webhook-id, the task id is the key.
    let a: Value = send(None).await.unwrap().json().await.unwrap();
    let b: Value = send(None).await.unwrap().json().await.unwrap();
    assert_eq!(
        (a["duplicate"].clone(), b["duplicate"].clone()),
        (json!(false), json!(true))
    );
    wait_for_messages(&app, "redo", 2).await;
    // A later callback's reply: the repeats, taken before it, added none.
    let mut later = body.clone();
    later["task_id"] = json!("redo-later");
    later["request_id"] = json!("redo-later");
    let (s, _) = app.api_post("/agent_result_callback", &later).await;
    assert_eq!(s, StatusCode::OK);
    let messages = wait_for_messages(&app, "redo", 3).await;
    assert_eq!(messages.len(), 3, "{messages:?}");
    let (s, _) = app
        .api_post("/agent_result_callback", &json!({"status": "succeeded"}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn callbacks_of_upstream_s_own_servers_are_taken_once_each() {
    let llm = ScriptedLlm::start().await;
    let app = app(Some(&llm), |_| {}).await;
    // What upstream's agent server sends: `request_id`, no `task_id`.
    let agent = json!({"request_id": "up-agent-1", "session_id": "up", "analysis_session_id": "analysis_up_1",
        "success": true, "error": null, "completed_at": "2026-01-01T00:00:00",
        "results": [{"agent_call": {"tool_name": "computer_control", "instruction": "打开记事本"},
                     "result": {"success": true, "result": "opened", "task_type": "computer_control",
                                "instruction": "打开记事本"}, "step_index": 0}]});
    // What upstream's MCP scheduler sends: `task_id`, no `request_id`.
    let mcp = json!({"task_id": "up-mcp-1", "session_id": "up", "success": true,
        "result": {"success": true, "result": "晴"}, "error": null, "completed_at": "2026-01-01T00:00:00"});
    for (route, body) in [
        ("/agent_result_callback", &agent),
        ("/tool_result_callback", &mcp),
    ] {
        let (s, first) = app.api_post(route, body).await;
        assert_eq!(s, StatusCode::OK, "{first}");
        assert_eq!(first["duplicate"], false);
        let (_, again) = app.api_post(route, body).await;
        assert_eq!(again["duplicate"], true, "once per batch: {again}");
    }
    wait_for_messages(&app, "up", 2).await;
    // A later callback's reply: the repeats, taken before it, added none.
    let mut later = mcp.clone();
    later["task_id"] = json!("up-mcp-later");
    let (s, _) = app.api_post("/tool_result_callback", &later).await;
    assert_eq!(s, StatusCode::OK);
    let messages = wait_for_messages(&app, "up", 3).await;
    assert_eq!(messages.len(), 3, "{messages:?}");
}

#[tokio::test]
async fn signed_callbacks_are_verified() {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let llm = ScriptedLlm::start().await;
    llm.set_analysis(
        "｛\"agentType\": \"agent\", \"tool_name\": \"echo\", \"instruction\": \"signed\"｝",
    );
    let app = app(Some(&llm), |c| c.callbacks.secret = Some(SECRET.into())).await;
    // Unsigned or forged: refused.
    let body =
        json!({"task_id": "forged", "session_id": "sig", "status": "succeeded", "results": []})
            .to_string();
    let resp = app
        .client
        .post(format!("{}/tool_result_callback", app.api))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let now = chrono::Utc::now().timestamp().to_string();
    let resp = app
        .client
        .post(format!("{}/tool_result_callback", app.api))
        .header("webhook-id", "msg_x")
        .header("webhook-timestamp", &now)
        .header("webhook-signature", "v1,AAAA")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // naga's own signed callback goes through the whole loop.
    let mut events = subscribe(&app, "sig").await;
    app.api_post("/chat", &json!({"message": "sign it", "session_id": "sig"}))
        .await;
    let followup = next_event(&mut events, "followup").await;
    assert!(followup["content"].as_str().unwrap().contains("signed"));
}

#[tokio::test]
async fn every_follow_up_reaches_the_ui_notify_url_through_the_outbox() {
    // The UI's endpoint fails once, then takes it: the outbox retries.
    let ui = Receiver::start_on(0, &[(503, None)]).await;
    let url = format!("http://127.0.0.1:{}/ui_notification", ui.addr.port());
    let app = app(None, |c| c.callbacks.ui_notify_url = Some(url.clone())).await;
    let body = json!({"task_id": "t-ui", "request_id": "t-ui", "kind": "agent", "session_id": "ui-n",
                      "status": "succeeded", "success": true, "error": null, "results": [],
                      "completed_at": "2026-01-01T00:00:00+00:00", "sequence": 1});
    let (s, _) = app.api_post("/agent_result_callback", &body).await;
    assert_eq!(s, StatusCode::OK);
    let got = ui.wait_for_body(|b| b["session_id"] == "ui-n").await;
    assert_eq!(got.body["action"], "show_tool_ai_response");
    let messages = wait_for_messages(&app, "ui-n", 1).await;
    assert_eq!(
        got.body["ai_response"], messages[0]["content"],
        "the follow-up itself"
    );
    assert_eq!(ui.all().len(), 2, "retried after the 503");
    let ids: Vec<_> = ui
        .all()
        .iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    assert_eq!(ids[0], ids[1], "one webhook-id across retries");

    // A notify URL outside the allowlist stops naga from starting.
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.callbacks.ui_notify_url = Some("http://example.com/ui_notification".into());
    let started = naga_server::start(config, std::sync::Arc::new(naga_server::SystemClock)).await;
    let err = format!("{:#}", started.err().expect("refused"));
    assert!(
        err.contains("ui_notify_url") && err.contains("not allowed"),
        "{err}"
    );
}

#[tokio::test]
async fn with_a_token_naga_s_own_services_still_talk_to_each_other() {
    with_a_token_the_loop_closes(Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).await;
}

/// A token and no callback secret: naga's callback routes still take only
/// signed callbacks, and its own are signed (a key derived from the token).
#[tokio::test]
async fn with_a_token_and_no_callback_secret_the_follow_up_still_arrives() {
    with_a_token_the_loop_closes(None).await;
}

async fn with_a_token_the_loop_closes(secret: Option<&str>) {
    let llm = ScriptedLlm::start().await;
    llm.set_analysis(
        "｛\"agentType\": \"agent\", \"tool_name\": \"echo\", \"instruction\": \"with token\"｝",
    );
    let app = app(Some(&llm), |c| {
        c.auth.token = Some("t0ken-of-this-test".into());
        c.callbacks.secret = secret.map(str::to_owned);
    })
    .await;
    let (status, refused) = app.api_get("/sessions").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");
    assert_eq!(refused["code"], "unauthorized");
    let authed = |req: reqwest::RequestBuilder| req.bearer_auth("t0ken-of-this-test");
    let events = authed(app.client.get(format!("{}/sessions/tok/events", app.api)))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let mut events = sse(events);
    // The chat's tool call goes from the API server to the agent server
    // (with the token) and comes back as a signed callback (without it).
    let chat = authed(app.client.post(format!("{}/chat", app.api)))
        .json(&json!({"message": "use the token", "session_id": "tok"}))
        .send()
        .await
        .unwrap();
    assert_eq!(chat.status(), 200);
    let followup = next_event(&mut events, "followup").await;
    assert!(
        followup["content"].as_str().unwrap().contains("with token"),
        "{followup}"
    );
}
