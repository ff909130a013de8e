//! Admitting a batch: its session's policy applied, then committed and
//! handed to the scheduler, or answered as a batch already known.

use super::{
    answers::{noun, with_kind_fields},
    requests::check_timeouts,
    Batch, Outcome, Scheduled, MAX_CALLS,
};
use crate::{
    scheduler::{Calls, TaskSpec},
    Engine, EngineError,
};
use naga_core::{
    ids::{new_request_id, validate_id},
    time::iso,
    wire::{RawCall, ScheduleResponse, TaskKind},
    SessionId,
};
use naga_store::NewTask;
use tracing::Instrument;

impl Engine {
    /// Validates, commits and schedules a batch; answers before any call runs.
    pub async fn accept(&self, mut batch: Batch) -> Result<Scheduled, EngineError> {
        let (request_id, session) = self.check(&mut batch)?;
        let now = self.clock().now_ms();
        if batch.calls.is_empty() {
            return Ok(no_tasks(batch, request_id, session, now));
        }
        // A free worker is taken now: a batch whose session is idle in the
        // store is then committed as running and starts at once.
        let worker = self.scheduler().reserve();
        let (task, spec) = self.stored(batch, request_id, session, now);
        // Commit and hand over in a task of its own: a client that hangs up
        // mid-request must not leave a committed batch that nobody runs.
        // (Boxed: the task then holds a pointer, not a 2 KB future that tokio
        // copies into its cell and again when the task's stage changes.)
        // (In the request's span: its lines carry the request's ids.)
        let engine = self.clone();
        tokio::spawn(Box::pin(
            async move { engine.commit(task, spec, worker).await }
                .instrument(tracing::Span::current()),
        ))
        .await
        .map_err(|e| EngineError::Unavailable(format!("the batch could not be committed: {e}")))?
    }

    /// A batch's ids, callback URL, size and timeouts checked: its request
    /// id (made when it has none) and its session, taken out of it.
    fn check(&self, batch: &mut Batch) -> Result<(String, SessionId), EngineError> {
        let invalid = |e: naga_core::IdError| EngineError::Invalid(e.to_string());
        let request_id = match batch.request_id.take() {
            Some(r) => {
                validate_id("request_id", &r).map_err(invalid)?;
                r
            }
            None => new_request_id(),
        };
        // Upstream takes a batch without a session: it runs in a session of
        // its own, named after its request id (so a repeat finds it).
        let session = batch
            .session_id
            .take()
            .unwrap_or_else(|| request_id.clone());
        let session = SessionId::parse(session).map_err(invalid)?;
        if let Some(a) = &batch.analysis_session_id {
            validate_id("analysis_session_id", a).map_err(invalid)?;
        }
        if let Some(url) = &batch.callback_url {
            if !batch.push && crate::callbacks::a2a::push_of(url).is_some() {
                return Err(EngineError::Invalid(
                    "callback_url: the fragment `#a2a-push` is naga's own (A2A push \
                     notifications): leave it out"
                        .into(),
                ));
            }
            self.callbacks().admit(url).map_err(EngineError::Invalid)?;
        }
        if batch.calls.len() > MAX_CALLS {
            return Err(EngineError::Invalid(format!(
                "a batch holds at most {MAX_CALLS} calls; this one has {}: split it",
                batch.calls.len()
            )));
        }
        check_timeouts(list_name(batch.kind), &batch.calls)?;
        Ok((request_id, session))
    }

    /// The row a batch is stored as, and what the scheduler runs it from.
    fn stored(
        &self,
        batch: Batch,
        request_id: String,
        session: SessionId,
        now: i64,
    ) -> (NewTask, TaskSpec) {
        let policy = batch
            .policy
            .unwrap_or(self.config().scheduler.session_policy);
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
        (task, spec)
    }
}

/// The name of a kind's list of calls in its request.
fn list_name(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::Agent => "agent_calls",
        TaskKind::Mcp => "tool_calls",
    }
}

/// The answer to a batch without calls: nothing is stored.
fn no_tasks(batch: Batch, request_id: String, session: SessionId, now: i64) -> Scheduled {
    let list = list_name(batch.kind);
    tracing::info!(
        session_id = session.as_str(),
        analysis_session_id = batch.analysis_session_id.as_deref().unwrap_or(""),
        request_id = request_id.as_str(),
        "empty {list}: nothing scheduled"
    );
    // Upstream names the (empty) batch by its request id all the same.
    let response = ScheduleResponse {
        success: true,
        status: "no_tasks".into(),
        task_id: Some(request_id.clone()),
        message: format!("没有需要执行的{} (empty {list})", noun(batch.kind)),
        accepted_at: iso(now),
        session_id: session.into_string(),
        analysis_session_id: batch.analysis_session_id,
    };
    Scheduled {
        response: with_kind_fields(batch.kind, &request_id, &response),
        outcome: Outcome::NoTasks,
        task_id: Some(request_id),
    }
}
