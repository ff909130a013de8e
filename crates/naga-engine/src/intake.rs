//! Accepting a batch: validation, idempotency, the session policy, the
//! durable commit, and only then the answer (the seed's `create_task`).

use crate::{
    scheduler::{Calls, Reservation, SessionBusy, TaskSpec},
    Engine, EngineError,
};
use naga_core::{
    config::SessionPolicy,
    ids::{new_request_id, validate_id},
    time::{iso, Millis},
    wire::{
        AgentScheduleRequest, CallPayload, McpScheduleRequest, RawCall, ScheduleResponse, TaskKind,
    },
    SessionId,
};
use naga_store::{FirstAnswer, Inserted, NewTask};
use serde_json::{json, Value};

/// Most calls in one batch.
pub const MAX_CALLS: usize = 1000;

/// A batch as both servers accept it.
pub struct Batch {
    pub kind: TaskKind,
    pub query: Option<String>,
    pub calls: Vec<RawCall>,
    pub session_id: Option<String>,
    pub analysis_session_id: Option<String>,
    pub request_id: Option<String>,
    pub callback_url: Option<String>,
    pub policy: Option<SessionPolicy>,
    /// What makes an identical batch still active answer instead (MCP).
    pub fingerprint: Option<String>,
}

/// The answer to `/schedule`: the JSON to send, and what this request did.
#[derive(Debug)]
pub struct Scheduled {
    pub response: String,
    pub outcome: Outcome,
    pub task_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Committed and scheduled.
    Created,
    /// The request id was known: the first answer, nothing ran again.
    Repeated,
    /// An identical batch of the session is still active: its answer.
    Duplicate,
    /// No calls: nothing stored.
    NoTasks,
}

impl Engine {
    /// `POST /schedule` of the agent server.
    pub async fn schedule_agent(
        &self,
        req: AgentScheduleRequest,
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
        })
        .await
    }

    /// When this node already holds `max` batches of `kind` (queued or
    /// running: each is in memory), a new one is refused with 429 and
    /// `Retry-After` (memory stays bounded whatever the backlog); a repeat
    /// of a known request id still gets its first answer.
    async fn refuse_when_full(
        &self,
        kind: TaskKind,
        max: usize,
        session_id: &Option<String>,
        request_id: &Option<String>,
    ) -> Result<Option<Scheduled>, EngineError> {
        if self.scheduler().held(kind) < max {
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
        })
        .await
    }

    /// The first answer to a known request id, if it is one. (The usual
    /// path needs no such read: the insert itself recognises a repeat.)
    async fn repeated(&self, request_id: &str) -> Result<Option<Scheduled>, EngineError> {
        Ok(self.store().task(request_id).await?.map(|t| {
            tracing::info!(request_id, session_id = %t.session_id, "request_id already known: first answer repeated");
            let task_id = Some(t.id.clone());
            Scheduled { response: first_answer(t.into()), outcome: Outcome::Repeated, task_id }
        }))
    }

    /// Validates, commits and schedules a batch; answers before any call runs.
    pub async fn accept(&self, batch: Batch) -> Result<Scheduled, EngineError> {
        let invalid = |e: naga_core::IdError| EngineError::Invalid(e.to_string());
        let request_id = match batch.request_id {
            Some(r) => {
                validate_id("request_id", &r).map_err(invalid)?;
                r
            }
            None => new_request_id(),
        };
        // Upstream takes a batch without a session: it runs in a session of
        // its own, named after its request id (so a repeat finds it).
        let session = SessionId::parse(batch.session_id.unwrap_or_else(|| request_id.clone()))
            .map_err(invalid)?;
        if let Some(a) = &batch.analysis_session_id {
            validate_id("analysis_session_id", a).map_err(invalid)?;
        }
        if let Some(url) = &batch.callback_url {
            self.callbacks().admit(url).map_err(EngineError::Invalid)?;
        }
        if batch.calls.len() > MAX_CALLS {
            return Err(EngineError::Invalid(format!(
                "a batch holds at most {MAX_CALLS} calls; this one has {}: split it",
                batch.calls.len()
            )));
        }
        let noun = noun(batch.kind);
        let list = match batch.kind {
            TaskKind::Agent => "agent_calls",
            TaskKind::Mcp => "tool_calls",
        };
        check_timeouts(list, &batch.calls)?;
        let now = self.clock().now_ms();
        let ids = (
            session.as_str(),
            batch.analysis_session_id.as_deref().unwrap_or(""),
            request_id.as_str(),
        );
        if batch.calls.is_empty() {
            tracing::info!(
                session_id = ids.0,
                analysis_session_id = ids.1,
                request_id = ids.2,
                "empty {list}: nothing scheduled"
            );
            // Upstream names the (empty) batch by its request id all the same.
            let response = ScheduleResponse {
                success: true,
                status: "no_tasks".into(),
                task_id: Some(request_id.clone()),
                message: format!("没有需要执行的{noun} (empty {list})"),
                accepted_at: iso(now),
                session_id: session.into_string(),
                analysis_session_id: batch.analysis_session_id,
            };
            return Ok(Scheduled {
                response: with_kind_fields(batch.kind, &request_id, &response),
                outcome: Outcome::NoTasks,
                task_id: Some(request_id),
            });
        }
        let policy = batch
            .policy
            .unwrap_or(self.config().scheduler.session_policy);
        // An idle session's batch takes its slot (and a worker) now; under
        // `reject`, a busy session's batch is refused here.
        let reservation = match self.scheduler().reserve(session.as_str(), policy) {
            Ok(r) => r,
            Err(SessionBusy) => {
                // A repeat of a known request gets its first answer, not a refusal.
                if let Some(repeat) = self.repeated(&request_id).await? {
                    return Ok(repeat);
                }
                tracing::info!(
                    session_id = ids.0,
                    analysis_session_id = ids.1,
                    request_id = ids.2,
                    "session busy and policy is reject: batch refused"
                );
                return Err(session_busy(session.as_str()));
            }
        };
        // Each call's JSON as sent: the scheduler keeps them while the batch
        // waits, the store keeps them as one array.
        let calls: Vec<Box<str>> = batch.calls.into_iter().map(RawCall::into_text).collect();
        let clock = self.clock().clone();
        let task = NewTask {
            id: request_id.clone(),
            kind: batch.kind,
            session_id: session.as_str().to_owned(),
            analysis_session_id: batch.analysis_session_id.clone(),
            query: batch.query,
            callback_url: batch.callback_url.clone(),
            policy,
            fingerprint: batch.fingerprint,
            calls: format!("[{}]", calls.join(",")),
            calls_count: calls.len(),
            // Rebuilt from the row on a repeat (`first_answer`).
            response: String::new(),
            accepted_at: now,
            lease: self.scheduler().lease(now),
            started: false,
            // Stored with the time of its commit (see `NewTask::clock`).
            clock: Some(naga_store::StampClock(std::sync::Arc::new(move || {
                clock.now_ms()
            }))),
        };
        let spec = TaskSpec {
            id: request_id,
            seq: 0,
            kind: batch.kind,
            session_id: session.into_string(),
            analysis_session_id: batch.analysis_session_id,
            callback_url: batch.callback_url,
            policy,
            done: vec![None; calls.len()],
            calls: Calls::new(calls),
        };
        // Commit and hand over in a task of its own: a client that hangs up
        // mid-request must not leave a committed batch that nobody runs.
        // (Boxed: the task then holds a pointer, not a 2 KB future that tokio
        // copies into its cell and again when the task's stage changes.)
        let engine = self.clone();
        tokio::spawn(Box::pin(async move {
            engine.commit(task, spec, reservation).await
        }))
        .await
        .map_err(|e| EngineError::Unavailable(format!("the batch could not be committed: {e}")))?
    }

    /// Commits a validated batch and hands it to the scheduler.
    async fn commit(
        &self,
        mut task: NewTask,
        mut spec: TaskSpec,
        mut reservation: Option<Reservation>,
    ) -> Result<Scheduled, EngineError> {
        let scheduler = self.scheduler();
        let ids = (
            spec.session_id.as_str(),
            spec.analysis_session_id.as_deref().unwrap_or(""),
            spec.id.as_str(),
        );
        let calls = task.calls_count;
        // A batch that holds a worker is committed as running; the
        // reservation goes back by itself if nothing new is stored.
        task.started = reservation.as_ref().is_some_and(Reservation::has_worker);
        let inserted = self.store().insert_task(task).await?;
        let response = match inserted {
            Inserted::New {
                seq,
                started,
                accepted_at,
            } => {
                spec.seq = seq;
                if !started {
                    // Stored as queued: the worker goes back (the session was
                    // busy on another node, or none was free); a session slot
                    // held here stays held until the batch is handed over, so
                    // that no batch of its session gets in between.
                    reservation = reservation.and_then(Reservation::without_worker);
                }
                // The answer says what the row says (a repeat is answered
                // from the row).
                scheduled_answer(
                    spec.kind,
                    &spec.id,
                    spec.calls.len(),
                    accepted_at,
                    &spec.session_id,
                    spec.analysis_session_id.as_deref(),
                )
            }
            Inserted::Existing(first) => {
                tracing::info!(
                    session_id = ids.0,
                    analysis_session_id = ids.1,
                    request_id = ids.2,
                    "request_id already known: first answer repeated, nothing runs again"
                );
                return Ok(Scheduled {
                    response: first_answer(first),
                    outcome: Outcome::Repeated,
                    task_id: Some(spec.id),
                });
            }
            Inserted::Reused(first) => {
                tracing::info!(session_id = ids.0, request_id = ids.2, first_session_id = %first.session_id,
                    "request_id already used for another batch: refused, nothing stored");
                return Err(EngineError::Reused(format!(
                    "request_id `{}` was already used for another batch ({} task of session `{}` \
                     with {} calls): a retry must send the same body; a new batch needs a new request_id",
                    first.id, first.kind, first.session_id, first.calls_count
                )));
            }
            Inserted::Busy => {
                tracing::info!(
                    session_id = ids.0,
                    analysis_session_id = ids.1,
                    request_id = ids.2,
                    "session busy (on some node) and policy is reject: batch refused"
                );
                return Err(session_busy(ids.0));
            }
            Inserted::Duplicate(first) => {
                tracing::info!(session_id = ids.0, analysis_session_id = ids.1, request_id = ids.2,
                    duplicate_of = %first.id, "identical batch still active: its task answers, nothing stored");
                let task_id = first.id.clone();
                return Ok(Scheduled {
                    response: first_answer(first),
                    outcome: Outcome::Duplicate,
                    task_id: Some(task_id),
                });
            }
        };
        tracing::info!(
            session_id = ids.0,
            analysis_session_id = ids.1,
            request_id = ids.2,
            calls,
            policy = spec.policy.as_str(),
            "batch committed"
        );
        if spec.policy == SessionPolicy::Interrupt {
            let cancelled = scheduler.interrupt_session(&spec.session_id, spec.seq);
            tracing::info!(
                session_id = ids.0,
                request_id = ids.2,
                queued_cancelled = cancelled.len(),
                "interrupt policy: earlier batches of the session cancelled"
            );
        }
        let task_id = Some(spec.id.clone());
        match reservation {
            Some(reservation) => scheduler.submit_reserved(spec, reservation),
            None => scheduler.submit(spec),
        }
        Ok(Scheduled {
            response,
            outcome: Outcome::Created,
            task_id,
        })
    }

    /// The legacy synchronous `POST /analyze_and_execute`: user messages that
    /// contain `执行Agent任务:` carry an instruction after it; they run as one
    /// batch on `[agents] legacy_agent` and the answer waits for them.
    pub async fn analyze_and_execute(
        &self,
        messages: &[Value],
        session_id: Option<String>,
    ) -> Result<Value, EngineError> {
        let instructions: Vec<String> = messages
            .iter()
            .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .filter_map(|m| m.get("content").and_then(Value::as_str))
            .filter_map(legacy_instruction)
            .collect();
        let session_id = match session_id {
            Some(s) => SessionId::parse(s)
                .map_err(|e| EngineError::Invalid(e.to_string()))?
                .into_string(),
            None => format!("legacy_{}", uuid::Uuid::new_v4().simple()),
        };
        let accepted_at = iso(self.clock().now_ms());
        if instructions.is_empty() {
            return Ok(
                json!({"success": true, "status": "no_tasks", "message": "未发现可执行的电脑控制任务",
                "tasks_processed": 0, "results": [], "accepted_at": accepted_at, "session_id": session_id}),
            );
        }
        let agent = self.config().agents.legacy_agent.clone();
        let calls: Vec<RawCall> = instructions
            .iter()
            .map(|i| {
                let call = json!({"tool_name": agent, "service_name": "agent_server",
                                  "instruction": i, "agentType": "agent"});
                RawCall::from_payload(call.as_object().unwrap_or(&CallPayload::new()))
            })
            .collect();
        let scheduled = self
            .accept(Batch {
                kind: TaskKind::Agent,
                query: Some(format!("执行Agent任务 ({} 个)", calls.len())),
                calls,
                session_id: Some(session_id.clone()),
                analysis_session_id: None,
                request_id: None,
                callback_url: None,
                policy: None,
                fingerprint: None,
            })
            .await?;
        let task_id = scheduled.task_id.unwrap_or_default();
        if let Some(rx) = self.scheduler().wait(&task_id) {
            let _ = rx.await;
        }
        let calls = self.store().calls(&task_id).await?;
        let mut all_ok = true;
        let entries: Vec<Value> = calls
            .iter()
            .filter_map(|c| {
                let outcome: crate::agents::CallOutcome =
                    serde_json::from_str(c.result.as_deref()?).ok()?;
                all_ok &= outcome.success;
                let payload: CallPayload = serde_json::from_str(&c.payload).ok()?;
                let entry = self
                    .agent_executor()
                    .result_entry(c.idx as usize, &payload, &outcome);
                serde_json::from_str(entry.get()).ok()
            })
            .collect();
        // Upstream's `results` are each call's result ({success, result,
        // error, task_type, instruction}: `result` null when it failed, the
        // instruction as the object its analyzer made, `{"instruction"}`);
        // naga's whole entries are `calls`.
        let results: Vec<Value> = entries
            .iter()
            .map(|e| {
                let mut r = e["result"].clone();
                if let Some(r) = r.as_object_mut() {
                    r.entry("result").or_insert(Value::Null);
                    let text = r.get("instruction").cloned().unwrap_or(Value::Null);
                    r.insert("instruction".into(), json!({ "instruction": text }));
                }
                r
            })
            .collect();
        Ok(
            json!({"success": true, "status": "completed", "tasks_processed": results.len(),
            "results": results, "calls": entries,
            "all_succeeded": all_ok && entries.len() == instructions.len(),
            "accepted_at": accepted_at, "session_id": session_id, "task_id": task_id}),
        )
    }
}

/// A call's own `timeout_ms`, when it has one, must be a positive whole
/// number of milliseconds (a string or a negative number would otherwise
/// be ignored without a word). Only calls whose text names it are parsed.
fn check_timeouts(list: &str, calls: &[RawCall]) -> Result<(), EngineError> {
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

/// The instruction after `执行Agent任务:` (or its full-width colon).
/// The refusal of a `reject` batch whose session is busy.
fn session_busy(session: &str) -> EngineError {
    EngineError::Conflict(format!(
        "session `{session}` already has a batch in progress and the policy is `reject`: wait \
         for it, cancel it, or send `multitask_strategy` enqueue, parallel or interrupt"
    ))
}

fn legacy_instruction(content: &str) -> Option<String> {
    let marker = "执行Agent任务";
    let at = content.find(marker)? + marker.len();
    let rest = content[at..].trim_start();
    let rest = rest.strip_prefix(':').or_else(|| rest.strip_prefix('：'))?;
    let instruction = rest.trim();
    (!instruction.is_empty()).then(|| instruction.to_owned())
}

/// The answer to an accepted batch: a function of what its task's row
/// keeps, so that a repeat is answered byte for byte from the row and the
/// row keeps no copy (a quarter of a task row, written to the WAL with
/// the task and again at its end).
fn scheduled_answer(
    kind: TaskKind,
    task_id: &str,
    calls: usize,
    accepted_at: Millis,
    session_id: &str,
    analysis_session_id: Option<&str>,
) -> String {
    let response = ScheduleResponse {
        success: true,
        status: "scheduled".into(),
        task_id: Some(task_id.to_owned()),
        message: naga_core::ids::concat(&[
            "已调度 ",
            itoa::Buffer::new().format(calls),
            " 个",
            noun(kind),
        ]),
        accepted_at: iso(accepted_at),
        session_id: session_id.to_owned(),
        analysis_session_id: analysis_session_id.map(str::to_owned),
    };
    with_kind_fields(kind, task_id, &response)
}

/// The answer's JSON, with what upstream's MCP server adds to it.
fn with_kind_fields(kind: TaskKind, request_id: &str, response: &ScheduleResponse) -> String {
    match kind {
        TaskKind::Agent => to_json(response),
        TaskKind::Mcp => {
            let mut v = serde_json::to_value(response).unwrap_or_default();
            v["request_id"] = json!(request_id);
            // Upstream's answer has a `result` (null: the batch runs later).
            v["result"] = Value::Null;
            v.to_string()
        }
    }
}

/// A known task's first answer: as stored (tasks accepted before answers
/// were rebuilt), else rebuilt from its row.
fn first_answer(first: FirstAnswer) -> String {
    if !first.response.is_empty() {
        return first.response;
    }
    scheduled_answer(
        TaskKind::parse(&first.kind).unwrap_or(TaskKind::Agent),
        &first.id,
        usize::try_from(first.calls_count).unwrap_or_default(),
        first.accepted_at,
        &first.session_id,
        first.analysis_session_id.as_deref(),
    )
}

/// What a batch's calls are called in its answers.
fn noun(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::Agent => "Agent任务",
        TaskKind::Mcp => "MCP工具调用",
    }
}

/// An answer's JSON (a `/schedule` answer is ~250 bytes).
fn to_json<T: serde::Serialize>(v: &T) -> String {
    naga_core::wire::json_text(v, 320)
}

#[cfg(test)]
mod tests {
    use super::legacy_instruction;

    #[test]
    fn legacy_marker() {
        assert_eq!(
            legacy_instruction("请 执行Agent任务: 打开记事本").as_deref(),
            Some("打开记事本")
        );
        assert_eq!(
            legacy_instruction("执行Agent任务：输入文本 ").as_deref(),
            Some("输入文本")
        );
        assert_eq!(legacy_instruction("执行Agent任务:   "), None);
        assert_eq!(legacy_instruction("hello"), None);
    }
}
