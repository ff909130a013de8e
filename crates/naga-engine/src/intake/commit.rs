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
        let Inserted::New {
            seq,
            started,
            ready,
            accepted_at,
        } = inserted
        else {
            return not_created(inserted, &spec);
        };
        spec.seq = seq;
        // The answer says what the row says (a repeat is answered from the
        // row).
        let response = scheduled_answer(
            spec.kind,
            &spec.id,
            spec.calls.len(),
            accepted_at,
            &spec.session_id,
            spec.analysis_session_id.as_deref(),
        );
        let next = match worker.filter(|_| started) {
            Some(worker) => Next::Start(worker),
            None => Next::Wait { ready },
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
        match next {
            Next::Start(worker) => scheduler.start(spec, worker),
            Next::Wait { ready } => scheduler.parked(&spec, ready),
        }
        Ok(Scheduled {
            response,
            outcome: Outcome::Created,
            task_id,
        })
    }
}

/// What a committed batch does next.
enum Next {
    /// It runs now, on the worker it holds.
    Start(Worker),
    /// It waits in the store; `ready`: claimable at once.
    Wait { ready: bool },
}

/// The answer to a batch the store did not create: a repeat or a duplicate
/// answered with the first answer, a reused id or a busy session refused.
fn not_created(inserted: Inserted, spec: &TaskSpec) -> Result<Scheduled, EngineError> {
    let (session_id, request_id) = (spec.session_id.as_str(), spec.id.as_str());
    let analysis_session_id = spec.analysis_session_id.as_deref().unwrap_or("");
    match inserted {
        Inserted::New { .. } => unreachable!("a created batch is answered by commit"),
        Inserted::Existing(first) => {
            tracing::info!(
                session_id,
                analysis_session_id,
                request_id,
                "request_id already known: first answer repeated, nothing runs again"
            );
            Ok(Scheduled {
                response: first_answer(first),
                outcome: Outcome::Repeated,
                task_id: Some(spec.id.clone()),
            })
        }
        Inserted::Reused(first) => {
            tracing::info!(session_id, request_id, first_session_id = %first.session_id,
                "request_id already used for another batch: refused, nothing stored");
            Err(EngineError::Reused(format!(
                "request_id `{}` was already used for another batch ({} task of session `{}` \
                 with {} calls): a retry must send the same body; a new batch needs a new request_id",
                first.id, first.kind.as_str(), first.session_id, first.calls_count
            )))
        }
        Inserted::Pruned(gone) => {
            tracing::info!(
                session_id,
                request_id,
                status = gone.status.as_str(),
                pruned_at = gone.pruned_at,
                "request_id of a pruned task: refused, nothing runs again"
            );
            Err(EngineError::Expired(format!(
                "request_id `{}` was used by a batch of session `{}` that ended ({}) and whose \
                 record has been pruned (retention): it is not run again; a new batch needs a \
                 new request_id",
                gone.id,
                gone.session_id,
                gone.status.as_str()
            )))
        }
        Inserted::Busy => {
            tracing::info!(
                session_id,
                analysis_session_id,
                request_id,
                "session busy (on some node) and policy is reject: batch refused"
            );
            Err(session_busy(session_id))
        }
        Inserted::Duplicate(first) => {
            tracing::info!(session_id, analysis_session_id, request_id, duplicate_of = %first.id,
                "identical batch still active: its task answers, nothing stored");
            let task_id = first.id.clone();
            Ok(Scheduled {
                response: first_answer(first),
                outcome: Outcome::Duplicate,
                task_id: Some(task_id),
            })
        }
    }
}
