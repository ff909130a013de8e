//! Leases, take-over and fencing (and the callback row a task end stores),
//! on every backend (a real SQLite file, a real PostgreSQL database), with
//! explicit times instead of waiting.

mod common;
use common::backends;

use naga_core::TaskStatus;
use naga_store::*;

fn task(id: &str, owner: &str, until: i64) -> NewTask {
    NewTask {
        id: id.into(),
        kind: naga_core::wire::TaskKind::Agent,
        session_id: "s".into(),
        analysis_session_id: Some("analysis_s_1".into()),
        query: None,
        callback_url: None,
        policy: naga_core::config::SessionPolicy::Enqueue,
        fingerprint: None,
        calls: "[{\"tool_name\":\"echo\"}]".into(),
        calls_count: 1,
        response: "{}".into(),
        accepted_at: 0,
        lease: Lease {
            owner: owner.into(),
            until,
        },
        started: false,
        clock: None,
    }
}

fn call_finish(owner: &str, task_id: &str, task_seq: i64) -> CallFinish {
    CallFinish {
        task_seq,
        owner: owner.into(),
        idx: 0,
        result: "{\"success\":true}".into(),
        started_at: 0,
        step: NewStep {
            task_id: task_id.into(),
            success: true,
            output: Some("ok".into()),
            ..Default::default()
        },
    }
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_the_old_holder_is_fenced_off() {
    for backend in backends().await {
        let s = backend.store.clone();
        eprintln!("on {}", backend.name);
        assert!(matches!(
            s.insert_task(task("t1", "A", 1_000)).await.unwrap(),
            Inserted::New { seq: 1, .. }
        ));
        assert!(s.start_task("t1", "A", 10).await.unwrap());

        // Not expired yet: nobody else may take it.
        assert!(s
            .claim_expired(
                Lease {
                    owner: "B".into(),
                    until: 9_000
                },
                999,
                None,
                1000,
            )
            .await
            .unwrap()
            .is_empty());
        // A's heartbeat extends it.
        assert_eq!(s.renew_leases("A", 2_000).await.unwrap(), 1);
        assert!(s
            .claim_expired(
                Lease {
                    owner: "B".into(),
                    until: 9_000
                },
                1_500,
                None,
                1000,
            )
            .await
            .unwrap()
            .is_empty());

        // A stops renewing; after expiry B takes it over.
        let claimed = s
            .claim_expired(
                Lease {
                    owner: "B".into(),
                    until: 9_000,
                },
                2_001,
                None,
                1000,
            )
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].id, "t1");

        // A can no longer record calls, start or end the task.
        assert!(matches!(
            s.finish_call(call_finish("A", "t1", 1)).await,
            Err(StoreError::LeaseLost(_))
        ));
        assert!(!s.start_task("t1", "A", 2_002).await.unwrap());
        let end = |owner: &str| TaskFinish {
            task_id: "t1".into(),
            task_seq: 1,
            owner: owner.into(),
            last_call: None,
            status: TaskStatus::Succeeded,
            error: None,
            finished_at: 3_000,
            callback: None,
            callback_id: "msg_1".into(),
            summary: None,
            lease_until: 1_000_000,
        };
        assert!(matches!(
            s.finish_task(end("A")).await.unwrap(),
            Finished::AlreadyEnded
        ));
        // B can, for this task only: a seq with another task's id is refused.
        assert!(matches!(
            s.finish_call(call_finish("B", "t2", 1)).await,
            Err(StoreError::LeaseLost(_))
        ));
        s.finish_call(call_finish("B", "t1", 1)).await.unwrap();
        assert!(matches!(
            s.finish_task(end("B")).await.unwrap(),
            Finished::Ended { callback: None }
        ));
        assert!(
            matches!(
                s.finish_task(end("B")).await.unwrap(),
                Finished::AlreadyEnded
            ),
            "a task ends once"
        );
        let t = s.task("t1").await.unwrap().unwrap();
        assert_eq!((t.status.as_str(), t.steps_count), ("succeeded", 1));
    }
}

#[tokio::test]
async fn a_restarted_node_takes_its_own_unexpired_leases_back_others_stay() {
    for backend in backends().await {
        let s = backend.store.clone();
        eprintln!("on {}", backend.name);
        s.insert_task(task("mine", "A", 1_000_000)).await.unwrap();
        s.insert_task(task("theirs", "B", 1_000_000)).await.unwrap();
        let lease = || Lease {
            owner: "A".into(),
            until: 2_000_000,
        };
        assert!(s
            .claim_expired(lease(), 5, None, 1000)
            .await
            .unwrap()
            .is_empty());
        let claimed = s.claim_expired(lease(), 5, Some("A"), 1000).await.unwrap();
        let ids: Vec<&str> = claimed.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["mine"], "B's lease runs: B's task stays B's");
    }
}

#[tokio::test]
async fn released_leases_are_claimed_at_once_and_finished_tasks_never() {
    for backend in backends().await {
        let s = backend.store.clone();
        eprintln!("on {}", backend.name);
        s.insert_task(task("t1", "A", 1_000_000)).await.unwrap();
        s.insert_task(task("t2", "A", 1_000_000)).await.unwrap();
        assert_eq!(s.release_leases("A").await.unwrap(), 2);
        let claimed = s
            .claim_expired(
                Lease {
                    owner: "B".into(),
                    until: 10,
                },
                5,
                None,
                1000,
            )
            .await
            .unwrap();
        let ids: Vec<_> = claimed.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["t1", "t2"], "in acceptance order");
        assert_eq!(
            s.renew_leases("A", 2_000_000).await.unwrap(),
            0,
            "A holds nothing now"
        );
    }
}

#[tokio::test]
async fn group_commit_fails_one_job_alone() {
    for backend in backends().await {
        let s = backend.store.clone();
        eprintln!("on {}", backend.name);
        s.insert_task(task("ok-1", "A", 10)).await.unwrap();
        // Many writers at once: one of them conflicts (analysis session of
        // another session); the others in the same group still commit.
        let mut handles = Vec::new();
        for i in 0..50 {
            let s = s.clone();
            let mut t = task(&format!("g{i}"), "A", 10);
            if i == 25 {
                t.session_id = "other".into();
            }
            handles.push(tokio::spawn(async move { s.insert_task(t).await }));
        }
        let mut failed = 0;
        for h in handles {
            if let Err(StoreError::Conflict(_)) = h.await.unwrap() {
                failed += 1;
            }
        }
        assert_eq!(failed, 1);
        assert!(s.task("g25").await.unwrap().is_none());
        assert!(s.task("g24").await.unwrap().is_some() && s.task("g26").await.unwrap().is_some());
        assert!(
            s.session("other").await.unwrap().is_none(),
            "the failed job left nothing behind"
        );
    }
}

#[tokio::test]
async fn a_callback_is_stored_as_handed_over_with_the_next_sequence() {
    for backend in backends().await {
        let s = backend.store.clone();
        eprintln!("on {}", backend.name);
        let mut rows = Vec::new();
        for (seq, id) in [(1, "c1"), (2, "c2")] {
            s.insert_task(task(id, "A", 10)).await.unwrap();
            let head = format!(r#"{{"task_id":"{id}","results":[{{"x":"}}"}}],"sequence":"#);
            let ended = s
                .finish_task(TaskFinish {
                    task_id: id.into(),
                    task_seq: seq,
                    owner: "A".into(),
                    last_call: Some(call_finish("A", id, seq)),
                    status: TaskStatus::Succeeded,
                    error: None,
                    finished_at: 5,
                    callback: Some(("http://127.0.0.1:9/cb".into(), head)),
                    callback_id: format!("msg_{id}"),
                    summary: None,
                    lease_until: 1_000_000,
                })
                .await
                .unwrap();
            let Finished::Ended {
                callback: Some(row),
            } = ended
            else {
                panic!("{id} did not end with a callback");
            };
            rows.push(row);
        }
        let stored = s.pending_callbacks().await.unwrap();
        assert_eq!(stored.len(), 2);
        for (handed, kept) in rows.iter().zip(&stored) {
            assert_eq!((handed.seq, &handed.body), (kept.seq, &kept.body));
            let body: serde_json::Value = serde_json::from_str(&kept.body).unwrap();
            assert_eq!(body["sequence"], kept.seq);
            assert_eq!(body["results"][0]["x"], "}");
        }
        assert_eq!((stored[0].seq, stored[1].seq), (1, 2));
    }
}

#[tokio::test]
async fn a_claim_takes_at_most_its_limit_oldest_first_and_a_restart_lets_go_of_the_rest() {
    for backend in backends().await {
        let s = backend.store.clone();
        eprintln!("on {}", backend.name);
        for i in 0..5 {
            s.insert_task(task(&format!("t{i}"), "A", 1_000_000))
                .await
                .unwrap();
        }
        let lease = |owner: &str| Lease {
            owner: owner.into(),
            until: 2_000_000,
        };
        // A restarts with room for two: it takes its two oldest back…
        let claimed = s.claim_expired(lease("A"), 5, Some("A"), 2).await.unwrap();
        let ids: Vec<&str> = claimed.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["t0", "t1"]);
        // …and lets go of the rest, which B can take at once.
        assert_eq!(
            s.release_unheld_leases("A", claimed[1].seq).await.unwrap(),
            3
        );
        let claimed = s.claim_expired(lease("B"), 5, None, 10).await.unwrap();
        let ids: Vec<&str> = claimed.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["t2", "t3", "t4"]);
    }
}
