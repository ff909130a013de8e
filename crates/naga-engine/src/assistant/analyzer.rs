//! The background analyzer: after a saved turn, asks the LLM which tasks
//! the conversation implies and sends them, as the seed's batches, to the
//! MCP server and the agent server, each with its own request id and the
//! turn's `analysis_session_id`.

use super::{Assistant, HISTORY};
use crate::llm::ChatMessage;
use naga_core::{
    analysis::parse_tool_calls,
    ids::analysis_session_id,
    wire::{CallPayload, TaskKind},
    SessionId,
};
use naga_store::DispatchRow;
use serde_json::{json, Value};
use std::time::Duration;

/// The analysis LLM call's limit.
const ANALYSIS_TIMEOUT: Duration = Duration::from_secs(60);

/// Removes the session from the in-flight set however the analysis ends.
struct InFlight<'a>(&'a Assistant, String);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.inner.analysing.lock().unwrap().remove(&self.1);
    }
}

impl Assistant {
    /// Starts the analysis of a turn unless one of this session is in flight.
    pub fn spawn_analysis(&self, session_id: &str, user_message: &str) {
        if self.inner.llm.is_none() {
            return;
        }
        if !self
            .inner
            .analysing
            .lock()
            .unwrap()
            .insert(session_id.to_owned())
        {
            tracing::info!(
                session_id,
                "an analysis of this session is in flight: this turn is not analysed"
            );
            return;
        }
        let (this, session, message) =
            (self.clone(), session_id.to_owned(), user_message.to_owned());
        self.spawn(async move {
            let _in_flight = InFlight(&this, session.clone());
            if let Err(e) = this.analyse(&session, &message).await {
                tracing::warn!(session_id = %session, error = %e, "analysis failed");
            }
        });
    }

    async fn analyse(&self, session_id: &str, user_message: &str) -> Result<(), String> {
        let llm = self
            .inner
            .llm
            .clone()
            .ok_or("no LLM")?
            .with_timeout(ANALYSIS_TIMEOUT);
        let session = SessionId::parse(session_id).map_err(|e| e.to_string())?;
        let analysis_id =
            analysis_session_id(&session, self.inner.engine.clock().now().timestamp());
        let history = self
            .store()
            .messages(session_id, HISTORY)
            .await
            .map_err(|e| e.to_string())?;
        let history: Vec<String> = history
            .iter()
            .map(|m| format!("{}: {}", m.role.as_str(), m.content))
            .collect();
        let (mcp_tools, agents) = tokio::join!(self.mcp_tools(), self.agents());
        let prompt = self
            .inner
            .prompts
            .analyzer
            .replace("{mcp_tools}", &mcp_tools)
            .replace("{agents}", &agents)
            .replace("{history}", &history.join("\n"));
        tracing::info!(session_id, analysis_session_id = %analysis_id, "analysing the turn");
        let answer = llm
            .chat(&[ChatMessage::new("user", prompt)])
            .await
            .map_err(|e| e.to_string())?;
        let parsed = parse_tool_calls(&answer);
        for why in &parsed.skipped {
            tracing::warn!(session_id, analysis_session_id = %analysis_id, "analysis: {why}");
        }
        if parsed.is_empty() {
            tracing::info!(session_id, analysis_session_id = %analysis_id, "analysis found nothing to do");
            return Ok(());
        }
        self.notify(
            session_id,
            json!({"type": "tool_notification", "session_id": session_id,
                   "analysis_session_id": analysis_id,
                   "tool_calls": parsed.mcp, "agent_calls": parsed.agent,
                   "message": format!("正在执行 {} 个任务", parsed.mcp.len() + parsed.agent.len())}),
        );
        let links = &self.inner.links;
        let batches = [
            (
                TaskKind::Mcp,
                parsed.mcp,
                &links.mcp,
                "tool_calls",
                "批量MCP工具调用",
                "tool_result_callback",
            ),
            (
                TaskKind::Agent,
                parsed.agent,
                &links.agent,
                "agent_calls",
                "批量Agent任务执行",
                "agent_result_callback",
            ),
        ];
        for (kind, calls, server, list, query, callback) in batches {
            if !calls.is_empty() {
                self.dispatch(
                    session_id,
                    &analysis_id,
                    user_message,
                    kind,
                    calls,
                    server,
                    list,
                    query,
                    callback,
                )
                .await;
            }
        }
        Ok(())
    }

    /// Sends one batch with the seed's payload.
    #[allow(clippy::too_many_arguments)]
    async fn dispatch(
        &self,
        session_id: &str,
        analysis_id: &str,
        user_message: &str,
        kind: TaskKind,
        calls: Vec<CallPayload>,
        server: &str,
        list: &str,
        query: &str,
        callback: &str,
    ) {
        let request_id = uuid::Uuid::new_v4().to_string();
        let record = DispatchRow {
            request_id: request_id.clone(),
            session_id: session_id.to_owned(),
            analysis_session_id: analysis_id.to_owned(),
            kind,
            user_message: user_message.to_owned(),
            created_at: self.now(),
        };
        if let Err(e) = self.store().add_dispatch(record).await {
            tracing::error!(session_id, analysis_session_id = analysis_id, error = %e, "cannot record the dispatch");
            return;
        }
        let payload = json!({
            "query": format!("{query} ({} 个)", calls.len()),
            list: calls,
            "session_id": session_id,
            "analysis_session_id": analysis_id,
            "request_id": request_id,
            "callback_url": format!("{}/{callback}", self.inner.links.api),
        });
        let sent = self
            .inner
            .http
            .post(format!("{server}/schedule"))
            .json(&payload)
            .send()
            .await;
        let kind = kind.as_str();
        match sent {
            Ok(r) if r.status().is_success() => {
                tracing::info!(session_id, analysis_session_id = analysis_id, request_id = %request_id, kind, "batch dispatched")
            }
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                tracing::warn!(session_id, analysis_session_id = analysis_id, request_id = %request_id, kind, %status, %body, "batch refused")
            }
            Err(e) => {
                tracing::warn!(session_id, analysis_session_id = analysis_id, request_id = %request_id, kind, error = %e, "cannot reach the {kind} server")
            }
        }
    }

    /// The MCP server's tools for the prompt, one per line.
    async fn mcp_tools(&self) -> String {
        let tools = self
            .get_json(&format!("{}/tools", self.inner.links.mcp))
            .await;
        let lines: Vec<String> = tools["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                format!(
                    "- {} / {}：{}；参数 {}",
                    t["service"].as_str().unwrap_or(""),
                    t["name"].as_str().unwrap_or(""),
                    t["description"].as_str().unwrap_or(""),
                    t["input_schema"]["properties"]
                )
            })
            .collect();
        if lines.is_empty() {
            "（无）".into()
        } else {
            lines.join("\n")
        }
    }

    /// The agent server's agents for the prompt, one per line.
    async fn agents(&self) -> String {
        let tools = self
            .get_json(&format!("{}/tools", self.inner.links.agent))
            .await;
        let lines: Vec<String> = tools["agents"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                format!(
                    "- {}：{}",
                    a["name"].as_str().unwrap_or(""),
                    a["description"].as_str().unwrap_or("")
                )
            })
            .collect();
        if lines.is_empty() {
            "（无）".into()
        } else {
            lines.join("\n")
        }
    }

    async fn get_json(&self, url: &str) -> Value {
        let fetch = async {
            self.inner
                .http
                .get(url)
                .send()
                .await
                .ok()?
                .json::<Value>()
                .await
                .ok()
        };
        match tokio::time::timeout(Duration::from_secs(5), fetch).await {
            Ok(Some(v)) => v,
            _ => {
                tracing::warn!(url, "cannot list tools for the analysis prompt");
                Value::Null
            }
        }
    }
}
