//! Committing a batch: the task, its calls, session and analysis session
//! in one write, stamped as it is written.

use super::*;

impl Engine {
    /// Commits a validated batch and hands it to the scheduler.
    pub(super) async fn commit(
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
            let cancelled = scheduler.interrupt_session(&spec.session_id, spec.seq);
            tracing::info!(
                session_id = ids.0,
                request_id = ids.2,
                queued_cancelled = cancelled.len(),
                "interrupt policy: earlier batches of the session cancelled"
            );
        }
        let task_id = Some(spec.id.clone());
        // (One that starts at once is told `running` as it starts.)
        if !reservation.as_ref().is_some_and(|r| r.has_worker()) {
            scheduler.tell(&spec, naga_core::TaskStatus::Queued, None);
        }
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
}
