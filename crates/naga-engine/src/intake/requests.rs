//! The two servers' `/schedule` requests turned into a batch: the agent
//! server's calls and the MCP server's, each checked, a repeated request id
//! answered as the first time, a full node refused.

use super::{answers::first_answer, Batch, Outcome, Scheduled};
use crate::{Engine, EngineError};
use naga_core::wire::{AgentScheduleRequest, CallPayload, McpScheduleRequest, RawCall, TaskKind};
use serde_json::Value;
use tracing::Instrument;

impl Engine {
    /// `POST /schedule` of the agent server.
    pub async fn schedule_agent(
        &self,
        req: AgentScheduleRequest,
    ) -> Result<Scheduled, EngineError> {
        self.schedule_agent_traced(req, false).await
    }

    /// An A2A message as an agent batch whose `callback_url` is its push
    /// config, marked by [`crate::callbacks::a2a::push_url`] (the A2A face).
    pub async fn schedule_agent_push(
        &self,
        req: AgentScheduleRequest,
    ) -> Result<Scheduled, EngineError> {
        self.schedule_agent_traced(req, true).await
    }

    /// An agent batch, in a span with its ids, counted by outcome.
    async fn schedule_agent_traced(
        &self,
        req: AgentScheduleRequest,
        push: bool,
    ) -> Result<Scheduled, EngineError> {
        let span = request_span(
            "agent",
            &req.session_id,
            &req.analysis_session_id,
            &req.request_id,
        );
        let scheduled = self.schedule_agent_batch(req, push).instrument(span).await;
        crate::metrics::schedule_request(TaskKind::Agent, outcome_label(&scheduled));
        scheduled
    }

    async fn schedule_agent_batch(
        &self,
        req: AgentScheduleRequest,
        push: bool,
    ) -> Result<Scheduled, EngineError> {
        if req.agent_calls.as_ref().is_some_and(|c| !c.is_empty()) {
            let max = self.config().scheduler.max_queued;
            if let Some(repeat) = self
                .refuse_when_full(TaskKind::Agent, max, &req.session_id, &req.request_id)
                .await?
            {
                return Ok(repeat);
            }
        }
        self.accept(Batch {
            kind: TaskKind::Agent,
            query: req.query,
            calls: req.agent_calls.unwrap_or_default(),
            session_id: req.session_id,
            analysis_session_id: req.analysis_session_id,
            request_id: req.request_id,
            callback_url: req.callback_url,
            policy: req.multitask_strategy,
            fingerprint: None,
            push,
        })
        .await
    }

    /// Overload protection, when set (`max` > 0): with `max` batches of
    /// `kind` unfinished in the store, a new one is refused with 429 and
    /// `Retry-After`; a repeat of a known request id still gets its first
    /// answer. (Off by default: the backlog waits in the store, not in
    /// memory.)
    pub(super) async fn refuse_when_full(
        &self,
        kind: TaskKind,
        max: usize,
        session_id: &Option<String>,
        request_id: &Option<String>,
    ) -> Result<Option<Scheduled>, EngineError> {
        if max == 0 || !self.store().unfinished_at_least(kind, max as i64).await? {
            return Ok(None);
        }
        if let Some(id) = request_id {
            if let Some(repeat) = self.repeated(id).await? {
                return Ok(Some(repeat));
            }
        }
        tracing::warn!(
            session_id = session_id.as_deref().unwrap_or(""),
            request_id = request_id.as_deref().unwrap_or(""),
            max_queued = max,
            kind = kind.as_str(),
            "queue full: batch refused"
        );
        let setting = match kind {
            TaskKind::Agent => "[scheduler] max_queued",
            TaskKind::Mcp => "[mcp] max_queued",
        };
        Err(EngineError::Busy {
            detail: format!(
                "{max} {} batches are already queued or running ({setting}); retry later",
                kind.as_str()
            ),
            retry_after_secs: 1,
        })
    }

    /// `POST /schedule` of the MCP server. Upstream behaviours kept: `query`
    /// and `tool_calls` both empty is refused; an identical batch still
    /// active answers its task; too much queued is 429.
    pub async fn schedule_mcp(&self, req: McpScheduleRequest) -> Result<Scheduled, EngineError> {
        let span = request_span(
            "mcp",
            &req.session_id,
            &req.analysis_session_id,
            &req.request_id,
        );
        let scheduled = self.schedule_mcp_batch(req).instrument(span).await;
        crate::metrics::schedule_request(TaskKind::Mcp, outcome_label(&scheduled));
        scheduled
    }

    async fn schedule_mcp_batch(&self, req: McpScheduleRequest) -> Result<Scheduled, EngineError> {
        let calls = req.tool_calls.unwrap_or_default();
        if calls.is_empty() && req.query.as_deref().is_none_or(|q| q.trim().is_empty()) {
            return Err(EngineError::Invalid(
                "`query` and `tool_calls` are both empty: send tool_calls \
                 [{\"agentType\": \"mcp\", \"service_name\", \"tool_name\", <arguments>}]"
                    .into(),
            ));
        }
        let parsed: Vec<CallPayload> = calls.iter().map(RawCall::parse).collect();
        for (i, c) in parsed.iter().enumerate() {
            for key in ["service_name", "tool_name"] {
                if !c.get(key).is_some_and(Value::is_string) {
                    return Err(EngineError::Invalid(format!(
                        "tool_calls[{i}] needs a string `{key}` (the MCP server's key and the tool's name)"
                    )));
                }
            }
        }
        if !calls.is_empty() {
            let max = self.config().mcp.max_queued;
            if let Some(repeat) = self
                .refuse_when_full(TaskKind::Mcp, max, &req.session_id, &req.request_id)
                .await?
            {
                return Ok(repeat);
            }
        }
        let fingerprint = crate::mcp::fingerprint(&parsed);
        self.accept(Batch {
            kind: TaskKind::Mcp,
            query: req.query,
            calls,
            session_id: req.session_id,
            analysis_session_id: req.analysis_session_id,
            request_id: req.request_id,
            callback_url: req.callback_url,
            policy: req.multitask_strategy,
            fingerprint: Some(fingerprint),
            push: false,
        })
        .await
    }

    /// The first answer to a known request id, if it is one. (The usual
    /// path needs no such read: the insert itself recognises a repeat.)
    pub(super) async fn repeated(
        &self,
        request_id: &str,
    ) -> Result<Option<Scheduled>, EngineError> {
        Ok(self.store().task(request_id).await?.map(|t| {
            tracing::info!(request_id, session_id = %t.session_id, "request_id already known: first answer repeated");
            let task_id = Some(t.id.clone());
            Scheduled { response: first_answer(t.into()), outcome: Outcome::Repeated, task_id }
        }))
    }
}

/// The span of a schedule request: every line it logs carries its ids (as
/// the client sent them; a missing one is empty).
fn request_span(
    service: &'static str,
    session_id: &Option<String>,
    analysis_session_id: &Option<String>,
    request_id: &Option<String>,
) -> tracing::Span {
    tracing::info_span!(
        "schedule",
        service,
        session_id = session_id.as_deref().unwrap_or(""),
        analysis_session_id = analysis_session_id.as_deref().unwrap_or(""),
        request_id = request_id.as_deref().unwrap_or("")
    )
}

/// A schedule request's outcome as `/metrics` counts it.
fn outcome_label(scheduled: &Result<Scheduled, EngineError>) -> &'static str {
    match scheduled {
        Ok(s) => match s.outcome {
            Outcome::Created => "created",
            Outcome::Repeated => "repeated",
            Outcome::Duplicate => "duplicate",
            Outcome::NoTasks => "no_tasks",
        },
        Err(e) => e.label(),
    }
}

/// A call's own `timeout_ms`, when it has one, must be a positive whole
/// number of milliseconds (a string or a negative number would otherwise
/// be ignored without a word). Only calls whose text names it are parsed.
pub(super) fn check_timeouts(list: &str, calls: &[RawCall]) -> Result<(), EngineError> {
    for (i, call) in calls.iter().enumerate() {
        if !call.get().contains("\"timeout_ms\"") {
            continue;
        }
        match call.parse().get("timeout_ms") {
            None => {}
            Some(v) if v.as_u64().is_some_and(|ms| ms > 0) => {}
            Some(v) => {
                return Err(EngineError::Invalid(format!(
                "{list}[{i}].timeout_ms must be a positive whole number of milliseconds, not {v}"
            )))
            }
        }
    }
    Ok(())
}

/// The refusal of a `reject` batch whose session is busy.
pub(super) fn session_busy(session: &str) -> EngineError {
    EngineError::Conflict(format!(
        "session `{session}` already has a batch in progress and the policy is `reject`: wait \
         for it, cancel it, or send `multitask_strategy` enqueue, parallel or interrupt"
    ))
}
