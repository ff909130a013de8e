//! A2A push configs created after a task was sent, on every backend: kept
//! only for a known task, due once (and only once) the task ended, written
//! to the outbox once however many nodes try; a dropped callback is not
//! written by the task's end.

mod common;
use common::{backends, echo_task};

use naga_store::*;

fn config(task_id: &str, id: &str) -> PushConfigRow {
    PushConfigRow {
        task_id: task_id.into(),
        id: id.into(),
        url: format!("http://127.0.0.1:9/{id}#a2a-push=tok-{id}"),
        created_at: 10,
    }
}

fn end(task_id: &str, seq: i64, callback: bool) -> TaskFinish {
    TaskFinish {
        callback: callback.then(|| {
            let head = format!(r#"{{"task_id":"{task_id}","sequence":"#);
            (
                "http://127.0.0.1:9/sent".to_owned(),
                EnvelopeHead::parse(head).unwrap(),
            )
        }),
        ..common::task_end(task_id, seq)
    }
}

fn push(task_id: &str, config_id: &str) -> NewPush {
    NewPush {
        task_id: task_id.into(),
        config_id: config_id.into(),
        callback_id: format!("msg_{task_id}_{config_id}"),
        head: EnvelopeHead::parse(format!(r#"{{"task_id":"{task_id}","sequence":"#)).unwrap(),
        now: 3_000,
    }
}

async fn seq_of(s: &Store, task: NewTask) -> i64 {
    match s.insert_task(task).await.unwrap() {
        Inserted::New { seq, .. } => seq,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_config_is_pushed_once_after_its_task_ended() {
    for backend in backends().await {
        let (s, name) = (backend.store.clone(), backend.name);
        let seq = seq_of(&s, echo_task("t", "s", "A", 1_000_000)).await;
        assert!(
            s.add_push_config(config("t", "later")).await.unwrap(),
            "{name}"
        );
        assert!(
            s.add_push_config(config("t", "gone")).await.unwrap(),
            "{name}"
        );
        assert!(
            !s.add_push_config(config("nope", "x")).await.unwrap(),
            "{name}: no such task"
        );
        assert!(s.delete_push_config("t", "gone").await.unwrap(), "{name}");
        assert!(
            !s.delete_push_config("t", "gone").await.unwrap(),
            "{name}: gone already"
        );
        assert!(
            s.due_pushes(10).await.unwrap().is_empty(),
            "{name}: the task runs"
        );

        s.finish_task(end("t", seq, false)).await.unwrap();
        let due = s.due_pushes(10).await.unwrap();
        let ids: Vec<_> = due.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["later"], "{name}: due once the task ended");

        // Two nodes write it at once: one push.
        let other = backend.another_node().await;
        let (a, b) = tokio::join!(
            s.enqueue_push(push("t", "later")),
            other.enqueue_push(push("t", "later"))
        );
        assert!(
            a.unwrap() ^ b.unwrap(),
            "{name}: exactly one node writes it"
        );
        let written = s.callbacks_of_task("t").await.unwrap();
        assert_eq!(written.len(), 1, "{name}: {written:?}");
        assert_eq!(written[0].url, config("t", "later").url, "{name}");
        assert!(s.due_pushes(10).await.unwrap().is_empty(), "{name}: pushed");

        // Created after the end: kept, and nothing left to push.
        assert!(
            s.add_push_config(config("t", "too-late")).await.unwrap(),
            "{name}"
        );
        assert!(
            s.due_pushes(10).await.unwrap().is_empty(),
            "{name}: nothing to push"
        );
        let kept: Vec<_> = s
            .push_configs("t")
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(kept, ["later", "too-late"], "{name}");
    }
}

#[tokio::test]
async fn a_dropped_callback_is_not_written_by_the_end() {
    for backend in backends().await {
        let (s, name) = (backend.store.clone(), backend.name);
        let sent = |id: &str| NewTask {
            callback_url: Some("http://127.0.0.1:9/sent".into()),
            ..echo_task(id, &format!("s-{id}"), "A", 1_000_000)
        };
        let dropped = seq_of(&s, sent("dropped")).await;
        let kept = seq_of(&s, sent("kept")).await;
        assert!(s.drop_callback("dropped").await.unwrap(), "{name}");
        assert!(
            !s.drop_callback("dropped").await.unwrap(),
            "{name}: none left"
        );
        let ended = s.finish_task(end("dropped", dropped, true)).await.unwrap();
        assert!(
            matches!(ended, Finished::Ended { callback: None, .. }),
            "{name}: {ended:?}"
        );
        assert!(
            s.callbacks_of_task("dropped").await.unwrap().is_empty(),
            "{name}"
        );
        // (The kept one's end writes its callback, in the same way.)
        let ended = s.finish_task(end("kept", kept, true)).await.unwrap();
        assert!(
            matches!(
                ended,
                Finished::Ended {
                    callback: Some(_),
                    ..
                }
            ),
            "{name}: {ended:?}"
        );
        assert_eq!(
            s.callbacks_of_task("kept").await.unwrap().len(),
            1,
            "{name}"
        );
    }
}
