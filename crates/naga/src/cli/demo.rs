//! `naga demo`: the seed's example batch against a running naga, with a
//! callback receiver of its own.

use super::Common;
use clap::Args;
use serde_json::{json, Value};

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
    eprintln!("POST {}/schedule", a.common.agent_url);
    let answer = a.common.post("/schedule", &body).await?;
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
