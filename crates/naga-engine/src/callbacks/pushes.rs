//! The pushes of A2A push configs created after their task was sent
//! (`CreateTaskPushNotificationConfig`): once the task ended, the claimer
//! writes each one's push to the outbox (see `naga_store::push_configs`),
//! where it is delivered, retried and replayed like any callback.

use super::a2a;
use naga_core::{time::iso, time::Millis, wire::CallbackEnvelope, TaskStatus};
use naga_store::{EnvelopeHead, NewPush, Store, StoreError};

/// Most pushes written by one pass.
const PUSH_GROUP: i64 = 64;

/// Writes the pushes of configs whose task has ended to the outbox (each
/// in its own transaction with its config marked pushed): how many.
pub(super) async fn write_due_pushes(store: &Store, now: Millis) -> Result<usize, StoreError> {
    let mut written = 0;
    for config in store.due_pushes(PUSH_GROUP).await? {
        let Some(head) = push_head(store, &config.task_id).await? else {
            continue;
        };
        let push = NewPush {
            task_id: config.task_id.clone(),
            config_id: config.id.clone(),
            callback_id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
            head,
            now,
        };
        if store.enqueue_push(push).await? {
            tracing::info!(task_id = %config.task_id, push_config_id = %config.id,
                "A2A push config: the task's end is in the outbox");
            written += 1;
        }
    }
    Ok(written)
}

/// The envelope of an ended task's push, up to its sequence: its A2A task
/// is what the delivery sends (`a2a::stream_response`).
async fn push_head(store: &Store, task_id: &str) -> Result<Option<EnvelopeHead>, StoreError> {
    let Some(task) = store.task(task_id).await? else {
        return Ok(None);
    };
    let calls = store.calls(task_id).await?;
    let a2a_task = a2a::stored_task_json(&task, &calls);
    let at = task.updated_at();
    let envelope = CallbackEnvelope {
        task_id: task.id.clone(),
        request_id: task.id.clone(),
        kind: task.kind,
        session_id: task.session_id.clone(),
        analysis_session_id: task.analysis_session_id.clone(),
        status: task.status.as_str().to_owned(),
        success: task.status == TaskStatus::Succeeded,
        error: task.error.clone(),
        results: Vec::new(),
        completed_at: iso(at),
        result: None,
        task: Some(naga_core::wire::raw_json(&a2a_task)),
        sequence: 0,
    };
    Ok(Some(EnvelopeHead::of(&envelope)))
}
