//! The bare baselines: an axum server that parses `/schedule` and answers
//! the seed's response (and, for the ceiling, POSTs a callback per request),
//! and the callback receiver.

use axum::{extract::State, routing::post, Json, Router};
use serde_json::{json, Value};

/// What the baseline parses: the same request naga gets.
#[derive(serde::Deserialize)]
#[allow(dead_code)]
pub(crate) struct ScheduleRequest {
    pub(crate) query: Option<String>,
    pub(crate) agent_calls: Vec<serde_json::Map<String, Value>>,
    pub(crate) session_id: String,
    pub(crate) analysis_session_id: Option<String>,
    pub(crate) request_id: String,
    pub(crate) callback_url: Option<String>,
}

pub(crate) async fn baseline_server(callback: bool) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let app = Router::new()
        .route(
            "/schedule",
            post(move |State(client): State<reqwest::Client>, Json(req): Json<ScheduleRequest>| async move {
                let answer = json!({"success": true, "status": "scheduled", "task_id": req.request_id,
                    "message": format!("已调度 {} 个Agent任务", req.agent_calls.len()),
                    "accepted_at": "2024-01-01T12:00:00", "session_id": req.session_id,
                    "analysis_session_id": req.analysis_session_id});
                if callback {
                    if let Some(url) = req.callback_url.clone() {
                        let body = json!({"task_id": req.request_id, "status": "succeeded",
                                          "results": req.agent_calls});
                        tokio::spawn(async move {
                            let _ = client.post(url).json(&body).send().await;
                        });
                    }
                }
                Json(answer)
            }),
        )
        .with_state(client);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

pub(crate) async fn receiver_server() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?);
    let app = Router::new().fallback(|| async { "ok" });
    axum::serve(listener, app).await?;
    Ok(())
}
