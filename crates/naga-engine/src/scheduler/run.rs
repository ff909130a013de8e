//! Running a task held here: its calls in order, every call's end
//! committed as it happens, then its release.

use super::complete::Ending;
use super::{kind_index, Held, Inner, Interrupted, Scheduler, TaskSpec, Worker};
use crate::{
    agents::{CallContext, CallOutcome},
    executor::Executor,
    feed::Event,
    retry::retry_store,
};
use naga_core::{
    wire::{CallPayload, TaskKind},
    TaskStatus,
};
use naga_store::{CallFinish, NewStep, StoreError};
use serde_json::Value;
use std::{sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

impl Inner {
    pub(super) fn executor(&self, kind: TaskKind) -> Option<Arc<dyn Executor>> {
        match kind {
            TaskKind::Agent => Some(self.agent.clone()),
            TaskKind::Mcp => self.mcp.lock().unwrap().clone(),
        }
    }

    /// Holds a task started here on its worker: registers its cancel
    /// handle and spawns its run.
    pub(super) fn hold(self: Arc<Self>, spec: TaskSpec, worker: Worker) {
        let token = CancellationToken::new();
        {
            let mut state = self.state.lock().unwrap();
            state.held[kind_index(spec.kind)] += 1;
            state.running.insert(
                spec.id.clone(),
                Held {
                    session: spec.session_id.clone(),
                    seq: spec.seq,
                    token: token.clone(),
                },
            );
        }
        let tracker = self.tracker.clone();
        // Every line the task's run logs carries its ids.
        let span = tracing::info_span!("task", task_id = %spec.id, request_id = %spec.id,
            session_id = %spec.session_id,
            analysis_session_id = spec.analysis_session_id.as_deref().unwrap_or(""));
        // Boxed for the reason given where a batch is committed (intake/commit.rs).
        tracker.spawn(Box::pin(
            async move {
                let (status, worker) = self.run(&spec, &token, worker).await;
                let next = self.state.lock().unwrap().handed.remove(&spec.id);
                self.release(&spec, status);
                match next {
                    // The session's next batch, claimed by this end: it
                    // starts on this worker, with no claim of its own.
                    Some(next) => Scheduler { inner: self }.take_handed(next, worker).await,
                    None => drop(worker),
                }
            }
            .instrument(span),
        ));
    }

    /// Forgets a task that ran here, answers whoever waits for its end,
    /// and lets the claimer use the worker it gave back.
    fn release(&self, spec: &TaskSpec, status: Option<TaskStatus>) {
        let waiters = {
            let mut state = self.state.lock().unwrap();
            state.running.remove(&spec.id);
            state.held[kind_index(spec.kind)] -= 1;
            state.waiters.remove(&spec.id)
        };
        if let Some(status) = status {
            for w in waiters.into_iter().flatten() {
                let _ = w.send(status);
            }
        }
        self.worker_free();
    }

    /// Runs a task to its end on its worker, and gives the worker back.
    /// `None`: it did not end here (the server is stopping, or the store
    /// failed); the store still has it as running and a restart or another
    /// node resumes it.
    pub(super) async fn run(
        &self,
        spec: &TaskSpec,
        token: &CancellationToken,
        worker: Worker,
    ) -> (Option<TaskStatus>, Worker) {
        self.tell(spec, TaskStatus::Running, None);
        let began = std::time::Instant::now();
        let status = self.run_calls(spec, token).await;
        if status.is_some() {
            crate::metrics::task_duration(spec.kind, began.elapsed());
        }
        (status, worker)
    }

    /// Runs a write of `spec`'s through storage faults (a full disk, an I/O
    /// error; see [`retry_store`]). While it waits the task keeps its
    /// worker and its lease, so it neither stays `running` with no way to
    /// finish nor lets its session's next batch overtake it. A task given
    /// up on is let go of in the store, so that a later claim resumes it.
    pub(super) async fn persist<T, F, Fut>(
        &self,
        what: &str,
        spec: &TaskSpec,
        write: F,
    ) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let described = || format!("{what} task `{}` of session `{}`", spec.id, spec.session_id);
        let result = retry_store(&*self.clock, &self.stop, 3, described, write).await;
        if let Err(e) = &result {
            if !matches!(e, StoreError::LeaseLost(_) | StoreError::NotCommitted) {
                let _ = self.store.release_lease(&spec.id, &self.node_id).await;
            }
        }
        result
    }

    /// Runs the calls of a started task in order, then ends it.
    pub(super) async fn run_calls(
        &self,
        spec: &TaskSpec,
        token: &CancellationToken,
    ) -> Option<TaskStatus> {
        let calls = spec.calls.parse();
        let Some(executor) = self.executor(spec.kind) else {
            return self.fail_without_executor(spec, &calls).await;
        };
        let commands: Vec<String> = calls.iter().map(|c| executor.command(c)).collect();
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(self.config.task_timeout_ms);
        let mut outcomes = spec.done.clone();
        outcomes.resize(calls.len(), None);
        let mut end: Option<(TaskStatus, String)> = None;
        let mut final_call = None;
        for (index, call) in calls.iter().enumerate() {
            if outcomes[index].is_some() {
                continue;
            }
            if token.is_cancelled() {
                end = Some((TaskStatus::Cancelled, "cancelled".into()));
                break;
            }
            if self.draining.is_cancelled() {
                tracing::info!(task_id = %spec.id, session_id = %spec.session_id, index,
                    "server stopping: the rest of the batch resumes after restart");
                return None;
            }
            let started_at = self.clock.now_ms();
            let run = CallRun {
                spec,
                executor: &*executor,
                call,
                index,
                token,
                deadline,
            };
            let (outcome, ends) = self.run_call(run).await?;
            end = ends;
            let finish = self.call_finish(spec, &commands[index], index, &outcome, started_at);
            outcomes[index] = Some(outcome);
            if end.is_some() || index + 1 == calls.len() {
                // The task ends with this call: one commit records both.
                final_call = Some(finish);
                break;
            }
            if !self.record_call(spec, index, finish).await {
                return None;
            }
        }
        let (status, error) = match end {
            Some((s, e)) => (s, Some(e)),
            None => status_of(&outcomes),
        };
        let ending = Ending {
            status,
            error,
            take_next: true,
        };
        self.complete(spec, &calls, &commands, ending, &outcomes, final_call)
            .await
    }

    /// Ends a task whose kind has no executor here: every call failed.
    async fn fail_without_executor(
        &self,
        spec: &TaskSpec,
        calls: &[CallPayload],
    ) -> Option<TaskStatus> {
        let outcomes: Vec<_> = calls
            .iter()
            .map(|_| {
                Some(CallOutcome::failed(
                    "this server has no MCP executor configured",
                ))
            })
            .collect();
        let ending = Ending {
            status: TaskStatus::Failed,
            error: Some("no MCP executor".into()),
            take_next: true,
        };
        let commands = self.commands(spec.kind, calls);
        self.complete(spec, calls, &commands, ending, &outcomes, None)
            .await
    }

    /// Runs one call within its own and its task's deadline. `None`: the
    /// server is stopping (the call resumes after restart); otherwise the
    /// outcome, and how the task ends with it when it does (cancelled,
    /// timed out).
    async fn run_call(
        &self,
        run: CallRun<'_>,
    ) -> Option<(CallOutcome, Option<(TaskStatus, String)>)> {
        let CallRun {
            spec,
            executor,
            call,
            index,
            token,
            deadline,
        } = run;
        let ctx = CallContext {
            task_id: spec.id.clone(),
            session_id: spec.session_id.clone(),
            index,
            steps: Some(crate::agents::StepLog {
                store: self.store.clone(),
                clock: self.clock.clone(),
            }),
        };
        let call_ms = call
            .get("timeout_ms")
            .and_then(Value::as_u64)
            .unwrap_or(self.config.call_timeout_ms);
        let call_deadline = tokio::time::Instant::now() + Duration::from_millis(call_ms);
        let began = std::time::Instant::now();
        tracing::debug!(task_id = %spec.id, session_id = %spec.session_id, index, "call starts");
        // The call is polled first: one that ends at its first poll (an
        // in-process agent, mostly) then sets no timer and registers no
        // cancel waiter. (Nothing starts once draining: checked before.)
        let result = tokio::select! {
            biased;
            o = executor.run(call, &ctx) => Ok(o),
            _ = self.stop.cancelled() => Err(Interrupted::Stopping),
            _ = token.cancelled() => Err(Interrupted::Cancelled),
            _ = tokio::time::sleep_until(deadline.min(call_deadline)) => Err(Interrupted::TimedOut(
                if deadline <= call_deadline {
                    format!("task timed out after {} ms", self.config.task_timeout_ms)
                } else {
                    format!("call {index} timed out after {call_ms} ms")
                })),
        };
        crate::metrics::call_duration(executor.agent(call), began.elapsed());
        let (outcome, end) = match result {
            Ok(o) => (o, None),
            Err(Interrupted::Stopping) => {
                tracing::info!(task_id = %spec.id, session_id = %spec.session_id, index,
                    "server stopping: call abandoned, resumes after restart");
                return None;
            }
            Err(Interrupted::Cancelled) => (
                CallOutcome::failed("cancelled while running"),
                Some((
                    TaskStatus::Cancelled,
                    format!("cancelled while call {index} was running"),
                )),
            ),
            Err(Interrupted::TimedOut(why)) => (
                CallOutcome::failed(why.clone()),
                Some((TaskStatus::TimedOut, why)),
            ),
        };
        if self.feed.watched() {
            let event = Event::Call {
                task_id: &spec.id,
                session_id: &spec.session_id,
                index,
                success: outcome.success,
            };
            self.feed.send(Some(&spec.session_id), &event);
        }
        Some((outcome, end))
    }

    /// Commits a call's end that does not end its task. `false`: the task
    /// stops here (its lease was lost, or the store cannot take it: it
    /// resumes after restart).
    async fn record_call(&self, spec: &TaskSpec, index: usize, finish: CallFinish) -> bool {
        let finish = Arc::new(finish);
        let recorded = self
            .persist("record call", spec, || {
                self.store.finish_call(finish.clone())
            })
            .await;
        match recorded {
            Ok(_) => true,
            Err(StoreError::LeaseLost(_)) => {
                tracing::warn!(task_id = %spec.id, session_id = %spec.session_id, index,
                    "lease lost: another node continues this task");
                false
            }
            Err(e) => {
                tracing::error!(task_id = %spec.id, session_id = %spec.session_id, index, error = %e,
                    "cannot record call; task resumes after restart");
                false
            }
        }
    }

    /// The record of a call's end.
    pub(super) fn call_finish(
        &self,
        spec: &TaskSpec,
        command: &str,
        index: usize,
        outcome: &CallOutcome,
        started_at: i64,
    ) -> CallFinish {
        tracing::debug!(task_id = %spec.id, session_id = %spec.session_id, index,
            success = outcome.success, "call finished");
        CallFinish {
            task_seq: spec.seq,
            owner: self.node_id.clone(),
            idx: index as i64,
            result: serde_json::to_string(outcome).unwrap_or_default(),
            started_at,
            step: NewStep {
                task_id: spec.id.clone(),
                call_idx: Some(index as i64),
                // The instruction itself is the step's content.
                purpose: Some(crate::memory::clip(command).into_owned()),
                content: spec.calls.text(index).map(str::to_owned),
                output: outcome.text(),
                analysis: None,
                success: outcome.success,
                error: outcome.error.clone(),
                created_at: self.clock.now_ms(),
            },
        }
    }

    /// The `command …` text of each call (empty without an executor).
    pub(super) fn commands(&self, kind: TaskKind, calls: &[CallPayload]) -> Vec<String> {
        let executor = self.executor(kind);
        calls
            .iter()
            .map(|c| executor.as_ref().map(|e| e.command(c)).unwrap_or_default())
            .collect()
    }

    /// Ends a task that holds no running call as cancelled, and answers
    /// whoever waits for its end (a queued batch never reaches `release`,
    /// which answers them for the batches that ran).
    pub(super) async fn cancel_unstarted(
        &self,
        spec: &TaskSpec,
        reason: &str,
    ) -> Option<TaskStatus> {
        let calls = spec.calls.parse();
        let status = self
            .complete(
                spec,
                &calls,
                &self.commands(spec.kind, &calls),
                Ending::without_next(TaskStatus::Cancelled, Some(reason.to_owned())),
                &spec.done,
                None,
            )
            .await;
        let waiters = self.state.lock().unwrap().waiters.remove(&spec.id);
        for w in waiters.into_iter().flatten() {
            // (Not ended here: dropped, the waiter learns that much.)
            if let Some(status) = status {
                let _ = w.send(status);
            }
        }
        status
    }
}

/// One call to run, with what it runs within.
struct CallRun<'a> {
    spec: &'a TaskSpec,
    executor: &'a dyn Executor,
    call: &'a CallPayload,
    index: usize,
    token: &'a CancellationToken,
    deadline: tokio::time::Instant,
}

/// How a task whose calls all ran ends: succeeded, or failed naming how
/// many of its calls failed.
fn status_of(outcomes: &[Option<CallOutcome>]) -> (TaskStatus, Option<String>) {
    let failed = outcomes.iter().flatten().filter(|o| !o.success).count();
    if failed == 0 {
        (TaskStatus::Succeeded, None)
    } else {
        let why = format!("{failed} of {} calls failed", outcomes.len());
        (TaskStatus::Failed, Some(why))
    }
}
