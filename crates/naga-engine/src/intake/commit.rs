//! Committing a batch: the task, its calls, session and analysis session
//! in one write, stamped as it is written.

use super::{
    answers::{first_answer, scheduled_answer},
    requests::session_busy,
    Outcome, Scheduled,
};
use crate::{
    scheduler::{TaskSpec, Worker},
    Engine, EngineError,
};
use naga_core::config::SessionPolicy;
use naga_store::{Inserted, NewTask};

impl Engine {
    /// Commits a validated batch and hands it to the scheduler.
    pub(super) async fn commit(
        &self,
        mut task: NewTask,
        mut spec: TaskSpec,
        worker: Option<Worker>,
    ) -> Result<Scheduled, EngineError> {
        let scheduler = self.scheduler();
        let ids = (
            spec.session_id.as_str(),
            spec.analysis_session_id.as_deref().unwrap_or(""),
            spec.id.as_str(),
        );
        let calls = task.calls_count;
        // A batch that holds a worker is committed as running if its
        // session is idle; the worker goes back by itself otherwise.
        task.started = worker.is_some();
        let inserted = self.store().insert_task(task).await?;
        let (response, start) = match inserted {
            Inserted::New {
                seq,
                started,
                ready,
                accepted_at,
            } => {
                spec.seq = seq;
                // The answer says what the row says (a repeat is answered
                // from the row).
                let response = scheduled_answer(
                    spec.kind,
                    &spec.id,
                    spec.calls.len(),
                    accepted_at,
                    &spec.session_id,
                    spec.analysis_session_id.as_deref(),
                );
                (response, worker.filter(|_| started).ok_or(ready))
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
                    first.id, first.kind.as_str(), first.session_id, first.calls_count
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
            let cancelled = scheduler.interrupt_session(ids.0, spec.seq).await;
            tracing::info!(
                session_id = ids.0,
                request_id = ids.2,
                waiting_cancelled = cancelled,
                "interrupt policy: earlier batches of the session cancelled"
            );
        }
        let task_id = Some(spec.id.clone());
        match start {
            Ok(worker) => scheduler.start(spec, worker),
            Err(ready) => scheduler.parked(&spec, ready),
        }
        Ok(Scheduled {
            response,
            outcome: Outcome::Created,
            task_id,
        })
    }
}
