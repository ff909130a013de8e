//! Leases, take-over and fencing (and the callback row a task end stores),
//! on every backend (a real SQLite file, a real PostgreSQL database), with
//! explicit times instead of waiting.

mod common;
use common::{backends, call_finish};

use naga_core::TaskStatus;
use naga_store::*;

fn task(id: &str, owner: &str, until: i64) -> NewTask {
    NewTask {
        id: id.into(),
        kind: naga_core::wire::TaskKind::Agent,
        session_id: "s".into(),
        analysis_session_id: Some("analysis_s_1".into()),
        query: None,
        // Its end may owe a callback (as a batch sent with one).
        callback_url: Some("http://127.0.0.1:9/cb".into()),
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
        started: true,
        clock: None,
    }
}

/// A task of its own session (ready at once), stored unheld.
fn waiting(id: &str) -> NewTask {
    NewTask {
        session_id: format!("s-{id}"),
        analysis_session_id: None,
        started: false,
        ..task(id, "A", 1_000_000)
    }
}

/// A claim by `owner` at `now`, nodes silent since before `dead_before` dead.
fn claim(owner: &str, now: i64, dead_before: i64) -> Claim {
    Claim {
        lease: Lease {
            owner: owner.into(),
            until: now + 1_000_000,
        },
        now,
        lapsed_before: now,
        dead_before,
        clock: None,
    }
}

/// A node renews the leases of what it works on, named by seq: a task or a
/// callback stored in its name that it does not name (an accept, a claim
/// or an end whose answer it lost) lapses, and any node takes it then, the
/// node itself too.
#[tokio::test]
async fn a_node_renews_only_the_leases_of_what_it_works_on() {
    for backend in backends().await {
        let s = backend.store.clone();
        let name = backend.name;
        let mut seqs = Vec::new();
        for id in ["worked", "lost"] {
            let new = NewTask {
                session_id: format!("s-{id}"),
                analysis_session_id: None,
                callback_url: Some("http://127.0.0.1:9/cb".into()),
                ..task(id, "A", 1_000)
            };
            match s.insert_task(new).await.unwrap() {
                Inserted::New {
                    seq, started: true, ..
                } => seqs.push(seq),
                other => panic!("{name}: {other:?}"),
            }
        }
        let worked = Holding {
            tasks: vec![seqs[0]],
            ..Holding::default()
        };
        assert_eq!(
            s.renew_leases("A", 2_000, worked).await.unwrap(),
            1,
            "{name}: only the task A names"
        );
        let taken = s.claim_runnable(claim("B", 1_500, 0), 10).await.unwrap();
        assert_eq!(
            taken.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
            ["lost"],
            "{name}: the task A does not name lapsed, B takes it; A keeps the other"
        );

        // A's end stores the callback it owes in A's name, until 3_000.
        let ended = s
            .finish_task(TaskFinish {
                task_id: "worked".into(),
                task_seq: seqs[0],
                owner: "A".into(),
                last_call: None,
                status: TaskStatus::Succeeded,
                error: None,
                finished_at: 1_600,
                callback: Some((
                    "http://127.0.0.1:9/cb".into(),
                    EnvelopeHead::parse(r#"{"task_id":"worked","sequence":"#).unwrap(),
                )),
                callback_id: "msg_worked".into(),
                summary: None,
                lease_until: 3_000,
                take_next: false,
            })
            .await
            .unwrap();
        let Finished::Ended {
            callback: Some(callback),
            ..
        } = ended
        else {
            panic!("{name}: {ended:?}")
        };
        let delivering = Holding {
            callbacks: vec![callback.seq],
            ..Holding::default()
        };
        s.renew_leases("A", 4_000, delivering).await.unwrap();
        assert!(
            s.claim_deliveries(&claim("B", 3_500, 0), 10)
                .await
                .unwrap()
                .is_empty(),
            "{name}: renewed while A names it"
        );
        s.renew_leases("A", 9_000, Holding::default())
            .await
            .unwrap();
        let back = s.claim_deliveries(&claim("A", 4_001, 0), 10).await.unwrap();
        assert_eq!(
            back.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            ["msg_worked"],
            "{name}: not named, it lapsed: even A's own claimer takes it again"
        );
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
        let t1 = s.task("t1").await.unwrap().unwrap();
        assert_eq!(
            (t1.status, t1.started_at),
            (TaskStatus::Running, Some(0)),
            "stored running (held by A)"
        );

        // Not expired yet: nobody else may take it.
        assert!(s
            .claim_runnable(claim("B", 999, 0), 1000)
            .await
            .unwrap()
            .is_empty());
        // A's renewal extends it.
        let t1_held = Holding {
            tasks: vec![1],
            ..Holding::default()
        };
        assert_eq!(s.renew_leases("A", 2_000, t1_held).await.unwrap(), 1);
        assert!(s
            .claim_runnable(claim("B", 1_500, 0), 1000)
            .await
            .unwrap()
            .is_empty());

        // A stops renewing; after expiry B takes it over.
        let claimed = s.claim_runnable(claim("B", 2_001, 0), 1000).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].id, "t1");

        // A can no longer record calls or end the task.
        assert!(matches!(
            s.finish_call(call_finish("A", "t1", 1)).await,
            Err(StoreError::LeaseLost(_))
        ));
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
            take_next: false,
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
            Finished::Ended { callback: None, .. }
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
async fn a_dead_node_s_tasks_are_taken_over_by_its_heartbeat_a_live_node_s_stay() {
    for backend in backends().await {
        let s = backend.store.clone();
        eprintln!("on {}", backend.name);
        let mut mine = task("dead-one", "A", 1_000_000);
        mine.session_id = "sa".into();
        mine.analysis_session_id = None;
        let mut theirs = task("live-one", "B", 1_000_000);
        theirs.session_id = "sb".into();
        theirs.analysis_session_id = None;
        s.insert_task(mine).await.unwrap();
        s.insert_task(theirs).await.unwrap();
        // A last beat at 100, B at 5,000; both leases run until 1,000,000.
        s.node_heartbeat("A", 100, true).await.unwrap();
        s.node_heartbeat("B", 5_000, true).await.unwrap();
        assert!(
            s.claim_runnable(claim("C", 5_000, 50), 10)
                .await
                .unwrap()
                .is_empty(),
            "both beat recently enough: nothing to take"
        );
        let claimed = s
            .claim_runnable(claim("C", 6_000, 1_000), 10)
            .await
            .unwrap();
        let ids: Vec<&str> = claimed.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(
            ids,
            ["dead-one"],
            "A is silent: its task is C's; B's stays B's"
        );
        assert!(matches!(
            s.finish_call(call_finish("A", "dead-one", claimed[0].seq))
                .await,
            Err(StoreError::LeaseLost(_))
        ));
        // A node does not count itself dead.
        assert!(s
            .claim_runnable(claim("B", 6_000, 1_000_000), 10)
            .await
            .unwrap()
            .is_empty());
    }
}

#[tokio::test]
async fn a_session_s_batches_are_claimed_one_at_a_time_in_order_parallel_ones_at_once() {
    for backend in backends().await {
        let s = backend.store.clone();
        eprintln!("on {}", backend.name);
        // t1 held by A (running); t2, t3 wait in the store behind it; p4,
        // parallel, does not wait.
        let inserted = s.insert_task(task("t1", "A", 1_000_000)).await.unwrap();
        assert!(matches!(
            inserted,
            Inserted::New {
                started: true,
                ready: true,
                ..
            }
        ));
        for id in ["t2", "t3"] {
            let inserted = s.insert_task(task(id, "B", 1_000_000)).await.unwrap();
            assert!(
                matches!(
                    inserted,
                    Inserted::New {
                        started: false,
                        ready: false,
                        ..
                    }
                ),
                "{id}: {inserted:?}"
            );
        }
        let mut p4 = task("p4", "A", 1_000_000);
        p4.policy = naga_core::config::SessionPolicy::Parallel;
        p4.started = false;
        let inserted = s.insert_task(p4).await.unwrap();
        assert!(matches!(
            inserted,
            Inserted::New {
                started: false,
                ready: true,
                ..
            }
        ));
        let mut rejected = task("r5", "A", 1_000_000);
        rejected.policy = naga_core::config::SessionPolicy::Reject;
        assert_eq!(s.insert_task(rejected).await.unwrap(), Inserted::Busy);

        let ids = |rows: Vec<TaskRow>| rows.into_iter().map(|t| t.id).collect::<Vec<_>>();
        let claimed = ids(s.claim_runnable(claim("B", 5, 0), 10).await.unwrap());
        assert_eq!(claimed, ["p4"], "only the parallel one may run beside t1");
        assert_eq!(
            s.task("p4").await.unwrap().unwrap().status,
            TaskStatus::Running
        );
        // t1 ends: t2 is next (and says so), t3 still waits.
        let end = |id: &str, seq: i64, owner: &str| TaskFinish {
            task_id: id.into(),
            task_seq: seq,
            owner: owner.into(),
            last_call: None,
            status: TaskStatus::Succeeded,
            error: None,
            finished_at: 6,
            callback: None,
            callback_id: String::new(),
            summary: None,
            lease_until: 1_000_000,
            take_next: false,
        };
        let ended = s.finish_task(end("t1", 1, "A")).await.unwrap();
        assert!(
            matches!(ended, Finished::Ended { woke: true, .. }),
            "{ended:?}"
        );
        let claimed = ids(s.claim_runnable(claim("B", 7, 0), 10).await.unwrap());
        assert_eq!(claimed, ["t2"]);
        // t2 ends: t3 is next (p4 was accepted after it: t3 does not wait
        // for it).
        let ended = s.finish_task(end("t2", 2, "B")).await.unwrap();
        assert!(
            matches!(ended, Finished::Ended { woke: true, .. }),
            "{ended:?}"
        );
        let claimed = ids(s.claim_runnable(claim("B", 8, 0), 10).await.unwrap());
        assert_eq!(claimed, ["t3"]);
        let ended = s.finish_task(end("p4", 4, "B")).await.unwrap();
        assert!(
            matches!(ended, Finished::Ended { woke: false, .. }),
            "{ended:?}"
        );
        assert!(s
            .claim_runnable(claim("B", 9, 0), 10)
            .await
            .unwrap()
            .is_empty());
        let all = Holding {
            tasks: vec![1, 2, 3, 4],
            ..Holding::default()
        };
        assert_eq!(
            s.renew_leases("A", 2_000_000, all).await.unwrap(),
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
                    callback: Some((
                        "http://127.0.0.1:9/cb".into(),
                        EnvelopeHead::parse(head).unwrap(),
                    )),
                    callback_id: format!("msg_{id}"),
                    summary: None,
                    lease_until: 1_000_000,
                    take_next: false,
                })
                .await
                .unwrap();
            let Finished::Ended {
                callback: Some(row),
                ..
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
            let mut t = waiting(&format!("t{i}"));
            t.started = true;
            s.insert_task(t).await.unwrap();
        }
        assert!(s
            .claim_runnable(claim("B", 5, 0), 10)
            .await
            .unwrap()
            .is_empty());
        // A restarts: it lets go of what it held…
        assert_eq!(s.release_leases("A").await.unwrap(), 5);
        // …and a claim takes the oldest first, no more than asked.
        let ids = |rows: Vec<TaskRow>| rows.into_iter().map(|t| t.id).collect::<Vec<_>>();
        assert_eq!(
            ids(s.claim_runnable(claim("A", 5, 0), 2).await.unwrap()),
            ["t0", "t1"]
        );
        assert_eq!(
            ids(s.claim_runnable(claim("B", 5, 0), 10).await.unwrap()),
            ["t2", "t3", "t4"]
        );
    }
}

/// A's end of a session's batch, asking (or not) to take the next one.
fn end_of(id: &str, seq: i64, take_next: bool) -> TaskFinish {
    TaskFinish {
        lease_until: 50_000,
        take_next,
        ..common::task_end(id, seq)
    }
}

#[tokio::test]
async fn an_end_hands_its_session_s_next_batch_to_its_node_when_asked() {
    for backend in backends().await {
        let (s, name) = (backend.store.clone(), backend.name);
        let mut seqs = Vec::new();
        // One session: the first held by A (running), three waiting unheld.
        for (i, id) in ["h1", "h2", "h3", "h4"].into_iter().enumerate() {
            let new = NewTask {
                started: i == 0,
                ..task(id, "A", 1_000_000)
            };
            match s.insert_task(new).await.unwrap() {
                Inserted::New { seq, .. } => seqs.push(seq),
                other => panic!("{name}: {other:?}"),
            }
        }
        // Asked: the next one is A's at once, running, and nobody is told.
        let Finished::Ended { woke, next, .. } =
            s.finish_task(end_of("h1", seqs[0], true)).await.unwrap()
        else {
            panic!("{name}: h1 did not end")
        };
        let next = next.unwrap_or_else(|| panic!("{name}: h2 was not handed over"));
        assert_eq!((next.task.id.as_str(), woke), ("h2", false), "{name}");
        assert_eq!(
            next.calls, "[{\"tool_name\":\"echo\"}]",
            "{name}: its calls as stored"
        );
        assert_eq!(next.task.steps_count, 0, "{name}");
        let row = s.task("h2").await.unwrap().unwrap();
        assert_eq!(row.status, TaskStatus::Running, "{name}");
        assert!(
            s.claim_runnable(claim("B", 3_000, 0), 10)
                .await
                .unwrap()
                .is_empty(),
            "{name}: B finds nothing to claim, h2 is A's and h3 not ready"
        );
        // Not asked: readied and told, left to any node's claim.
        let Finished::Ended { woke, next, .. } =
            s.finish_task(end_of("h2", seqs[1], false)).await.unwrap()
        else {
            panic!("{name}: h2 did not end")
        };
        assert!(woke && next.is_none(), "{name}: h3 readied, not taken");
        let taken = s.claim_runnable(claim("B", 3_000, 0), 10).await.unwrap();
        assert_eq!(
            taken.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
            ["h3"],
            "{name}"
        );
        // A next batch held by another node (here h4, claimed to be
        // cancelled by B) is never taken by an end.
        s.claim_unheld(claim("B", 3_000, 0), Unheld::Task("h4".into()))
            .await
            .unwrap();
        let b_end = TaskFinish {
            owner: "B".into(),
            ..end_of("h3", seqs[2], true)
        };
        let Finished::Ended { next, .. } = s.finish_task(b_end).await.unwrap() else {
            panic!("{name}: h3 did not end")
        };
        assert!(
            next.is_none(),
            "{name}: h4 is B's already, claimed not to run"
        );
    }
}
