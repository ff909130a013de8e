//! The client subcommands: talk to a running agent server over HTTP.

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};

#[derive(Args)]
pub struct Common {
    /// Agent server base URL.
    #[arg(long, env = "NAGA_AGENT_URL", default_value = "http://127.0.0.1:8001")]
    server: String,
    /// Print the raw JSON answer.
    #[arg(long)]
    json: bool,
    /// The server's `[auth] token`, when it has one.
    #[arg(long, env = "NAGA_AUTH_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl Common {
    /// A client that sends the token (if any).
    fn client(&self) -> reqwest::Client {
        let mut config = naga_core::config::Config::default();
        config.auth.token = self.token.clone().filter(|t| !t.is_empty());
        naga_engine::own_services_client(&config)
    }
}

#[derive(Args)]
pub struct ScheduleArgs {
    #[command(flatten)]
    common: Common,
    /// Conversation session id.
    #[arg(long)]
    session: String,
    /// Agent to run (echo, file_edit, computer_control).
    #[arg(long, default_value = "echo")]
    agent: String,
    /// Instructions, one call each, run in order.
    #[arg(required = true)]
    instructions: Vec<String>,
    /// Where the result is POSTed when the batch ends.
    #[arg(long)]
    callback_url: Option<String>,
    /// Idempotency key [default: a new UUID].
    #[arg(long)]
    request_id: Option<String>,
}

#[derive(Args)]
pub struct TasksArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long)]
    session: Option<String>,
    #[arg(long)]
    status: Option<String>,
}

#[derive(Args)]
pub struct SessionsArgs {
    #[command(flatten)]
    common: Common,
}

async fn send(req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let resp = req
        .send()
        .await
        .context("cannot reach the agent server (is `naga serve` running?)")?;
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .context("the server did not answer JSON")?;
    if !status.is_success() {
        bail!("{status}: {}", body["detail"].as_str().unwrap_or("error"));
    }
    Ok(body)
}

pub async fn schedule(a: ScheduleArgs) -> anyhow::Result<()> {
    let calls: Vec<Value> = a
        .instructions
        .iter()
        .map(|i| json!({"tool_name": a.agent, "service_name": "agent_server", "instruction": i, "agentType": "agent"}))
        .collect();
    let body = json!({
        "query": format!("批量Agent任务执行 ({} 个)", calls.len()),
        "agent_calls": calls,
        "session_id": a.session,
        "request_id": a.request_id,
        "callback_url": a.callback_url,
    });
    let url = format!("{}/schedule", a.common.server);
    let answer = send(a.common.client().post(url).json(&body)).await?;
    if a.common.json {
        println!("{answer}");
    } else {
        println!(
            "{}\t{}",
            answer["task_id"].as_str().unwrap_or("-"),
            answer["status"].as_str().unwrap_or("-")
        );
    }
    Ok(())
}

pub async fn tasks(a: TasksArgs) -> anyhow::Result<()> {
    let mut query = Vec::new();
    if let Some(s) = &a.session {
        query.push(("session_id", s.as_str()));
    }
    if let Some(s) = &a.status {
        query.push(("status", s.as_str()));
    }
    let url = format!("{}/tasks", a.common.server);
    let answer = send(a.common.client().get(url).query(&query)).await?;
    if a.common.json {
        println!("{answer}");
        return Ok(());
    }
    for t in answer["tasks"].as_array().into_iter().flatten() {
        println!(
            "{}\t{}\t{}\t{} steps\t{}",
            t["task_id"].as_str().unwrap_or(""),
            t["status"].as_str().unwrap_or(""),
            t["session_id"].as_str().unwrap_or(""),
            t["steps_count"],
            t["accepted_at"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

pub async fn sessions(a: SessionsArgs) -> anyhow::Result<()> {
    let url = format!("{}/sessions", a.common.server);
    let answer = send(a.common.client().get(url)).await?;
    if a.common.json {
        println!("{answer}");
        return Ok(());
    }
    for s in answer["sessions"].as_array().into_iter().flatten() {
        println!(
            "{}\t{} tasks\t{} active\t{}",
            s["session_id"].as_str().unwrap_or(""),
            s["task_count"],
            s["active_tasks"],
            s["last_activity_at"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct DemoArgs {
    #[command(flatten)]
    common: Common,
}

/// Schedules the seed's example batch (its first call on the `echo` agent,
/// so that it succeeds anywhere) with a callback to a receiver of its own,
/// and prints the answer and the callback.
pub async fn demo(a: DemoArgs) -> anyhow::Result<()> {
    use axum::{routing::post, Router};
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Value>(1);
    let app = Router::new().route(
        "/agent_result_callback",
        post(move |axum::Json(v): axum::Json<Value>| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(v).await;
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let callback = format!("http://{}/agent_result_callback", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let session = format!("demo_{}", std::process::id());
    let body = json!({
        "query": "批量Agent任务执行 (2 个)",
        "agent_calls": [
            {"tool_name": "echo", "service_name": "agent_server", "instruction": "打开记事本", "agentType": "agent"},
            {"tool_name": "computer_control", "service_name": "agent_server", "instruction": "输入文本", "agentType": "agent",
             "parameters": {"action": "type", "text": "你好"}}
        ],
        "session_id": session,
        "analysis_session_id": format!("analysis_{session}_{}", std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)),
        "request_id": uuid_like(),
        "callback_url": callback,
    });
    eprintln!("POST {}/schedule", a.common.server);
    let answer = send(
        a.common
            .client()
            .post(format!("{}/schedule", a.common.server))
            .json(&body),
    )
    .await?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    eprintln!("waiting for the callback…");
    let cb = tokio::time::timeout(std::time::Duration::from_secs(60), rx.recv())
        .await
        .map_err(|_| anyhow::anyhow!("no callback within 60 s"))?
        .ok_or_else(|| anyhow::anyhow!("the receiver stopped"))?;
    println!("{}", serde_json::to_string_pretty(&cb)?);
    Ok(())
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("demo-{nanos:x}")
}
