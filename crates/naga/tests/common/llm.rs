//! A scripted OpenAI-compatible chat-completions server: it answers the
//! analyzer, follow-up and memory prompts of naga with scripted text, and
//! chat with an echo of the user's message; plain or streamed (SSE).

use axum::{extract::State, response::IntoResponse, routing::post, Json, Router};
use serde_json::{json, Value};
use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

#[derive(Clone, Default)]
pub struct Script {
    /// What the analyzer is told (default `｛｝`: nothing to do).
    pub analysis: Arc<Mutex<String>>,
    /// Statuses to answer the next chat requests with instead of a reply.
    pub fail_next: Arc<Mutex<VecDeque<u16>>>,
    /// Delay before answering an analysis request.
    pub analysis_delay_ms: Arc<Mutex<u64>>,
    /// Delay before answering a chat request.
    pub chat_delay_ms: Arc<Mutex<u64>>,
    /// What a vision request (one with an image) is answered, in turn.
    pub vision: Arc<Mutex<VecDeque<String>>>,
    /// Every request received.
    pub requests: Arc<Mutex<Vec<Value>>>,
}

pub struct ScriptedLlm {
    pub base_url: String,
    pub script: Script,
}

/// Which of naga's prompts a request carries.
pub fn purpose(req: &Value) -> &'static str {
    let text: String = req["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let has_image = req["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|m| m["content"].is_array());
    if has_image {
        "vision"
    } else if text.contains("你是意图分析器") {
        "analysis"
    } else if text.contains("后台任务已经完成") {
        "followup"
    } else if text.contains("压缩下面这个任务的执行记忆") {
        "compress"
    } else {
        "chat"
    }
}

impl ScriptedLlm {
    pub async fn start() -> Self {
        let script = Script::default();
        *script.analysis.lock().unwrap() = "｛｝".into();
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base_url: format!("http://{addr}/v1"),
            script,
        }
    }

    pub fn set_analysis(&self, text: &str) {
        *self.script.analysis.lock().unwrap() = text.to_owned();
    }

    pub fn requests(&self, of: &str) -> Vec<Value> {
        self.script
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| purpose(r) == of)
            .cloned()
            .collect()
    }
}

fn last_user(req: &Value) -> String {
    req["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_owned()
}

async fn complete(State(s): State<Script>, Json(req): Json<Value>) -> axum::response::Response {
    s.requests.lock().unwrap().push(req.clone());
    let kind = purpose(&req);
    let text = match kind {
        "analysis" => {
            let delay = *s.analysis_delay_ms.lock().unwrap();
            tokio::time::sleep(Duration::from_millis(delay)).await;
            s.analysis.lock().unwrap().clone()
        }
        "followup" => format!("跟进：{}", last_user(&req)),
        "vision" => s
            .vision
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| json!({"done": true}).to_string()),
        "compress" => json!({"key_findings": ["scripted finding"], "failed_attempts": [],
                             "current_status": "done", "next_steps": []})
        .to_string(),
        _ => {
            if let Some(status) = s.fail_next.lock().unwrap().pop_front() {
                let code = axum::http::StatusCode::from_u16(status).unwrap();
                return (
                    code,
                    Json(json!({"error": {"message": "scripted failure"}})),
                )
                    .into_response();
            }
            let delay = *s.chat_delay_ms.lock().unwrap();
            tokio::time::sleep(Duration::from_millis(delay)).await;
            format!("你好！我收到了：{}", last_user(&req))
        }
    };
    if req["stream"] == true {
        let mut body = String::new();
        let chars: Vec<char> = text.chars().collect();
        for piece in chars.chunks(3) {
            let piece: String = piece.iter().collect();
            body.push_str(&format!(
                "data: {}\n\n",
                json!({"choices": [{"delta": {"content": piece}}]})
            ));
        }
        body.push_str("data: [DONE]\n\n");
        return ([("content-type", "text/event-stream")], body).into_response();
    }
    Json(json!({"choices": [{"message": {"role": "assistant", "content": text}}]})).into_response()
}
