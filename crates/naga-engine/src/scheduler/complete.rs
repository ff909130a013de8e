//! Ending a task: terminal state, summary and callback in one commit.

use super::{Inner, TaskSpec};
use crate::{agents::CallOutcome, callbacks::a2a, memory};
use naga_core::{
    time::iso,
    wire::{raw_json, CallPayload, CallbackEnvelope, RawJson},
    TaskStatus,
};
use naga_store::{
    CallFinish, CallbackRow, EnvelopeHead, Finished, HandedTask, StoreError, TaskFinish,
};
use std::sync::Arc;

/// How a task ends: its status and error, and whether its worker goes on
/// to the session's next batch (see [`TaskFinish::take_next`]).
pub(super) struct Ending {
    pub status: TaskStatus,
    pub error: Option<String>,
    pub take_next: bool,
}

impl Ending {
    /// An end on no worker of its own (a batch cancelled before it ran,
    /// one quarantined): the session's next batch is claimed as usual.
    pub fn without_next(status: TaskStatus, error: Option<String>) -> Self {
        Self {
            status,
            error,
            take_next: false,
        }
    }
}

impl Inner {
    /// Ends the task: terminal state, summary and callback in one commit,
    /// then hands the callback to the delivery worker. A session's next
    /// batch claimed by the end waits in `handed` for this task's worker.
    pub(super) async fn complete(
        &self,
        spec: &TaskSpec,
        calls: &[CallPayload],
        commands: &[String],
        ending: Ending,
        outcomes: &[Option<CallOutcome>],
        last_call: Option<CallFinish>,
    ) -> Option<TaskStatus> {
        let Ending {
            status,
            error,
            take_next,
        } = ending;
        let now = self.clock.now_ms();
        let summaries: Vec<_> = commands
            .iter()
            .enumerate()
            .map(|(i, command)| memory::CallSummary {
                command,
                outcome: outcomes.get(i).and_then(Option::as_ref),
            })
            .collect();
        let summary = memory::summarize(status, error.as_deref(), &summaries);
        let end = End {
            status,
            error: error.as_deref(),
            now,
        };
        let callback = self.callback_of(spec, calls, outcomes, &end);
        let finish = TaskFinish {
            task_id: spec.id.clone(),
            task_seq: spec.seq,
            owner: self.node_id.clone(),
            last_call,
            status,
            error: error.clone(),
            finished_at: now,
            // The webhook id, for a callback only.
            callback_id: match &callback {
                Some(_) => format!("msg_{}", uuid::Uuid::now_v7().simple()),
                None => String::new(),
            },
            callback,
            summary: Some(summary.to_json()),
            lease_until: now + self.config.lease_ms as i64,
            take_next: take_next && !self.draining.is_cancelled(),
        };
        let finish = Arc::new(finish);
        let finished = self
            .persist("finish", spec, || self.store.finish_task(finish.clone()))
            .await;
        match finished {
            Ok(Finished::Ended {
                callback,
                woke,
                next,
            }) => {
                self.ended(spec, &end, callback, woke, next.map(|n| *n));
                self.compress_later(spec, commands, outcomes, summary);
                Some(status)
            }
            Ok(Finished::AlreadyEnded) => {
                let t = self.store.task(&spec.id).await.ok()??;
                Some(t.status)
            }
            Err(StoreError::LeaseLost(_)) => {
                tracing::warn!(task_id = %spec.id, session_id = %spec.session_id,
                    "lease lost: another node continues this task");
                None
            }
            Err(e) => {
                tracing::error!(task_id = %spec.id, session_id = %spec.session_id, error = %e, "cannot record the end of the task; it resumes after restart");
                None
            }
        }
    }

    /// The task's callback, when it has a URL: the URL and the envelope's
    /// JSON up to its sequence (which the store writes).
    fn callback_of(
        &self,
        spec: &TaskSpec,
        calls: &[CallPayload],
        outcomes: &[Option<CallOutcome>],
        end: &End<'_>,
    ) -> Option<(String, EnvelopeHead)> {
        let url = spec.callback_url.clone()?;
        let executor = self.executor(spec.kind);
        let outcome = |i: usize| outcomes.get(i).and_then(Option::as_ref);
        let success = end.status == TaskStatus::Succeeded;
        let mut count = itoa::Buffer::new();
        let message = match end.error {
            Some(e) => naga_core::ids::concat(&[end.status.as_str(), ": ", e]),
            None => naga_core::ids::concat(&[
                end.status.as_str(),
                ": ",
                count.format(calls.len()),
                " calls",
            ]),
        };
        let results: Vec<RawJson> = match &executor {
            Some(e) => calls
                .iter()
                .enumerate()
                .filter_map(|(i, call)| Some(e.result_entry(i, call, outcome(i)?)))
                .collect(),
            None => Vec::new(),
        };
        let result = executor
            .as_ref()
            .and_then(|e| e.envelope_result(success, &results, &message));
        // A callback to an A2A push config also carries the A2A task.
        let task = a2a::push_of(&url).map(|_| {
            let outcomes: Vec<_> = outcomes.iter().flatten().collect();
            let task = a2a::task_json(
                &spec.id,
                &spec.session_id,
                end.status,
                end.now,
                end.error,
                &outcomes,
            );
            raw_json(&task)
        });
        let envelope = CallbackEnvelope {
            task_id: spec.id.clone(),
            request_id: spec.id.clone(),
            kind: spec.kind,
            session_id: spec.session_id.clone(),
            analysis_session_id: spec.analysis_session_id.clone(),
            status: end.status.as_str().to_owned(),
            success,
            error: end.error.map(str::to_owned),
            results,
            completed_at: iso(end.now),
            result,
            task,
            sequence: 0,
        };
        Some((url, EnvelopeHead::of(&envelope)))
    }

    /// After the end's commit: the session's next batch kept for this
    /// worker (or the claimer woken for it), watchers told, the callback
    /// handed to delivery.
    fn ended(
        &self,
        spec: &TaskSpec,
        end: &End<'_>,
        callback: Option<CallbackRow>,
        woke: bool,
        next: Option<HandedTask>,
    ) {
        if woke {
            // The session's next batch waits in the store, ready.
            self.wake();
        }
        if let Some(next) = next {
            tracing::info!(task_id = %next.task.id, session_id = %next.task.session_id,
                after = %spec.id, "the session's next batch, claimed by this end: starts on its worker");
            self.state
                .lock()
                .unwrap()
                .handed
                .insert(spec.id.clone(), next);
        }
        crate::metrics::task_completed(spec.kind, end.status);
        self.tell(spec, end.status, end.error);
        tracing::info!(task_id = %spec.id, session_id = %spec.session_id,
            analysis_session_id = spec.analysis_session_id.as_deref().unwrap_or(""),
            status = end.status.as_str(), error = end.error.unwrap_or(""),
            callback = callback.is_some(), "task finished");
        if let Some(row) = callback {
            self.callbacks.enqueue(row);
        }
    }

    /// With an LLM configured: the task's memory compressed by it, in the
    /// background (the task's own summary is stored already).
    fn compress_later(
        &self,
        spec: &TaskSpec,
        commands: &[String],
        outcomes: &[Option<CallOutcome>],
        summary: memory::Summary,
    ) {
        let Some(llm) = self.summarizer.clone() else {
            return;
        };
        let (store, clock, id) = (self.store.clone(), self.clock.clone(), spec.id.clone());
        let steps: Vec<String> = commands
            .iter()
            .zip(outcomes)
            .map(|(c, o)| match o {
                Some(o) => format!("{c} → {}", o.text().or(o.error.clone()).unwrap_or_default()),
                None => format!("{c} → not run"),
            })
            .collect();
        let draining = self.draining.clone();
        self.tracker.spawn(async move {
            let compressed = tokio::select! {
                v = memory::compress_with_llm(&llm, &summary, &steps) => v,
                // Not worth a wait at shutdown.
                _ = draining.cancelled() => None,
            };
            if let Some(v) = compressed {
                let _ = store
                    .add_compressed_memory(&id, memory::LLM, v.to_string(), clock.now_ms())
                    .await;
            }
        });
    }
}

/// A task's end, as its callback and log lines tell it.
struct End<'a> {
    status: TaskStatus,
    error: Option<&'a str>,
    now: i64,
}
