//! Two nodes on one database, each running the same commands at the same
//! moment: every guarantee the store gives one node holds across nodes
//! (on PostgreSQL the scale-out case, on SQLite two processes on one file).

mod common;
use common::{backends, call_finish};
use naga_core::{DeliveryStatus, TaskStatus};
use naga_store::*;
use std::collections::HashSet;

fn task(id: &str, session: &str, owner: &str, until: i64) -> NewTask {
    common::echo_task(id, session, owner, until)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_sent_to_two_nodes_at_once_makes_one_task() {
    for backend in backends().await {
        let (a, b) = (backend.store.clone(), backend.another_node().await);
        let mut handles = Vec::new();
        for i in 0..40 {
            for (node, store) in [("A", &a), ("B", &b)] {
                let store = store.clone();
                // Ten sessions: the two nodes also grow the same chains.
                let t = task(&format!("req-{i}"), &format!("s{}", i % 10), node, 100);
                handles.push(tokio::spawn(async move { store.insert_task(t).await }));
            }
        }
        let mut new = 0;
        for h in handles {
            match h.await.unwrap().unwrap() {
                Inserted::New { .. } => new += 1,
                Inserted::Existing(first) => assert!(first.id.starts_with("req-")),
                other => panic!("{}: {other:?}", backend.name),
            }
        }
        assert_eq!(new, 40, "{}: one task per request id", backend.name);
        let all = a
            .tasks(&TaskFilter {
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(all.len(), 40, "{}", backend.name);
        for s in 0..10 {
            let session = format!("s{s}");
            let listed = a
                .tasks(&TaskFilter {
                    session_id: Some(session.clone()),
                    limit: 1000,
                    ..Default::default()
                })
                .await
                .unwrap();
            assert_eq!(listed.len(), 4, "{}: the chain of {session}", backend.name);
            let row = b.session(&session).await.unwrap().unwrap();
            assert_eq!(row.task_count, 4, "{}: {session} counted", backend.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tasks_claimed_by_two_nodes_at_once_go_to_one_each() {
    for backend in backends().await {
        let (a, b) = (backend.store.clone(), backend.another_node().await);
        for i in 0..60 {
            let mut t = task(&format!("t{i}"), &format!("s{i}"), "dead", 10);
            t.started = true;
            a.insert_task(t).await.unwrap();
        }
        let claim = |owner: &str| Claim {
            lease: Lease {
                owner: owner.into(),
                until: 10_000,
            },
            now: 100,
            lapsed_before: 100,
            dead_before: 0,
            clock: None,
        };
        let (got_a, got_b) = tokio::join!(
            a.claim_runnable(claim("A"), 1000),
            b.claim_runnable(claim("B"), 1000)
        );
        let ids = |rows: Vec<TaskRow>| rows.into_iter().map(|t| t.id).collect::<HashSet<_>>();
        let (got_a, got_b) = (ids(got_a.unwrap()), ids(got_b.unwrap()));
        assert!(
            got_a.is_disjoint(&got_b),
            "{}: a task claimed by both nodes: {:?}",
            backend.name,
            got_a.intersection(&got_b).collect::<Vec<_>>()
        );
        assert_eq!(got_a.len() + got_b.len(), 60, "{}", backend.name);
        // Each node holds what it claimed: the other is fenced off.
        for (id, holder) in got_a
            .iter()
            .map(|id| (id, "A"))
            .chain(got_b.iter().map(|id| (id, "B")))
        {
            let row = a.task(id).await.unwrap().unwrap();
            let other = if holder == "A" { "B" } else { "A" };
            let mut end = call_finish(other, id, row.seq);
            assert!(
                matches!(
                    a.finish_call(end.clone()).await,
                    Err(StoreError::LeaseLost(_))
                ),
                "{}: {other} wrote to {id}, held by {holder}",
                backend.name
            );
            end.owner = holder.into();
            a.finish_call(end).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_and_callbacks_from_two_nodes_get_numbers_of_their_own() {
    for backend in backends().await {
        let (a, b) = (backend.store.clone(), backend.another_node().await);
        let Inserted::New { seq, .. } = a
            .insert_task(task("busy", "s", "A", i64::MAX))
            .await
            .unwrap()
        else {
            panic!("new task")
        };
        // Steps reported through both nodes at once.
        let mut handles = Vec::new();
        for i in 0..30 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            handles.push(tokio::spawn(async move {
                store
                    .add_step(NewStep {
                        task_id: "busy".into(),
                        purpose: Some(format!("step {i}")),
                        success: true,
                        created_at: i,
                        ..Default::default()
                    })
                    .await
            }));
        }
        for h in handles {
            h.await.unwrap().unwrap();
        }
        let numbers: Vec<i64> = b
            .steps("busy")
            .await
            .unwrap()
            .iter()
            .map(|s| s.step_no)
            .collect();
        assert_eq!(numbers, (1..=30).collect::<Vec<_>>(), "{}", backend.name);

        // Tasks ended on both nodes at once: one callback sequence each.
        let mut ends = Vec::new();
        for i in 0..20 {
            let (node, store) = if i % 2 == 0 { ("A", &a) } else { ("B", &b) };
            let id = format!("end-{i}");
            let Inserted::New { seq, .. } = store
                .insert_task(task(&id, &format!("e{i}"), node, i64::MAX))
                .await
                .unwrap()
            else {
                panic!("new task")
            };
            let store = store.clone();
            let finish = TaskFinish {
                task_id: id.clone(),
                task_seq: seq,
                owner: node.into(),
                last_call: None,
                status: TaskStatus::Succeeded,
                error: None,
                finished_at: 5,
                callback: Some((
                    "http://127.0.0.1:9/cb".into(),
                    EnvelopeHead::parse(format!(r#"{{"task_id":"{id}","sequence":"#)).unwrap(),
                )),
                callback_id: format!("msg_{id}"),
                summary: None,
                lease_until: 1_000_000,
                take_next: false,
            };
            ends.push(tokio::spawn(async move { store.finish_task(finish).await }));
        }
        for e in ends {
            assert!(matches!(
                e.await.unwrap().unwrap(),
                Finished::Ended {
                    callback: Some(_),
                    ..
                }
            ));
        }
        let stored = a.pending_callbacks().await.unwrap();
        let sequences: HashSet<i64> = stored.iter().map(|c| c.seq).collect();
        assert_eq!(sequences.len(), 20, "{}: distinct sequences", backend.name);
        for c in &stored {
            let body: serde_json::Value = serde_json::from_str(&c.body).unwrap();
            assert_eq!(body["sequence"], c.seq, "{}", backend.name);
        }
        // The busy task is A's: B cannot end it, A can, once.
        let end = |owner: &str| TaskFinish {
            task_id: "busy".into(),
            task_seq: seq,
            owner: owner.into(),
            last_call: None,
            status: TaskStatus::Succeeded,
            error: None,
            finished_at: 9,
            callback: None,
            callback_id: "msg_busy".into(),
            summary: None,
            lease_until: 1_000_000,
            take_next: false,
        };
        let (by_b, by_a) = tokio::join!(b.finish_task(end("B")), a.finish_task(end("A")));
        assert!(matches!(by_b.unwrap(), Finished::AlreadyEnded));
        assert!(matches!(by_a.unwrap(), Finished::Ended { .. }));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_pending_callbacks_are_taken_over_after_its_lease() {
    for backend in backends().await {
        let (a, b) = (backend.store.clone(), backend.another_node().await);
        let name = backend.name;
        for i in 0..3 {
            let id = format!("cb-{i}");
            let Inserted::New { seq, .. } =
                a.insert_task(task(&id, "s", "A", i64::MAX)).await.unwrap()
            else {
                panic!("new task")
            };
            a.finish_task(TaskFinish {
                task_id: id.clone(),
                task_seq: seq,
                owner: "A".into(),
                last_call: None,
                status: TaskStatus::Succeeded,
                error: None,
                finished_at: 5,
                callback: Some((
                    "http://127.0.0.1:9/cb".into(),
                    EnvelopeHead::parse(format!(r#"{{"task_id":"{id}","sequence":"#)).unwrap(),
                )),
                callback_id: format!("msg_{id}"),
                summary: None,
                lease_until: 100,
                take_next: false,
            })
            .await
            .unwrap();
        }
        let claim = |owner: &str, now: i64, dead_before: i64| Claim {
            lease: Lease {
                owner: owner.into(),
                until: now + 1_000,
            },
            now,
            lapsed_before: now,
            dead_before,
            clock: None,
        };
        let claimed = |rows: Vec<CallbackRow>| -> Vec<String> {
            let mut ids: Vec<String> = rows.into_iter().map(|c| c.id).collect();
            ids.sort();
            ids
        };
        // A is alive (its lease runs): nobody takes its callbacks.
        assert!(
            b.claim_deliveries(&claim("B", 50, i64::MIN), 10)
                .await
                .unwrap()
                .is_empty(),
            "{name}"
        );
        // A renews them with its tasks while it delivers them.
        let mut delivering = Holding::default();
        for i in 0..3 {
            let row = a.callback(&format!("msg_cb-{i}")).await.unwrap().unwrap();
            delivering.callbacks.push(row.seq);
        }
        a.renew_leases("A", 300, delivering).await.unwrap();
        assert!(
            b.claim_deliveries(&claim("B", 200, i64::MIN), 10)
                .await
                .unwrap()
                .is_empty(),
            "{name}"
        );
        // A died: after its lease, B and C (at the same moment) take all
        // three, each once; B has room for two only.
        let c = backend.another_node().await;
        let (by_b, by_c) = (claim("B", 400, i64::MIN), claim("C", 400, i64::MIN));
        let (got_b, got_c) =
            tokio::join!(b.claim_deliveries(&by_b, 2), c.claim_deliveries(&by_c, 10));
        let (got_b, got_c) = (got_b.unwrap(), got_c.unwrap());
        assert!(got_b.len() <= 2, "{name}: B's room");
        let mut ids: Vec<String> = got_b.iter().chain(&got_c).map(|c| c.id.clone()).collect();
        ids.sort();
        assert_eq!(
            ids,
            ["msg_cb-0", "msg_cb-1", "msg_cb-2"],
            "{name}: each once"
        );
        // Graceful stops let go of them at once; a restarted A takes them.
        b.release_leases("B").await.unwrap();
        c.release_leases("C").await.unwrap();
        let back = a
            .claim_deliveries(&claim("A", 500, i64::MIN), 10)
            .await
            .unwrap();
        assert_eq!(back.len(), 3, "{name}");
        let (first, second) = (&back[0], &back[1]);
        // A failed attempt writes the row's next due time and lets go of it:
        // it waits in the store, and whoever has room when it is due takes it.
        let retry = |at: i64| DeliveryOutcome::Retry {
            error: "receiver answered 503".into(),
            next_attempt_at: at,
        };
        a.record_deliveries_in(
            Outbox::Callbacks,
            "A",
            vec![
                (first.seq, retry(2_000), 600),
                (second.seq, retry(3_000), 600),
            ],
        )
        .await
        .unwrap();
        let third = Holding {
            callbacks: vec![back[2].seq],
            ..Holding::default()
        };
        a.renew_leases("A", 5_000, third).await.unwrap();
        assert!(
            c.claim_deliveries(&claim("C", 1_999, i64::MIN), 10)
                .await
                .unwrap()
                .is_empty(),
            "{name}: not due yet (and A still holds the third)"
        );
        let due = c
            .claim_deliveries(&claim("C", 2_000, i64::MIN), 10)
            .await
            .unwrap();
        assert_eq!(
            claimed(due),
            [first.id.as_str()],
            "{name}: due, held by nobody"
        );
        let row = c.callback(&first.id).await.unwrap().unwrap();
        assert_eq!((row.attempts, row.next_attempt_at), (1, 2_000), "{name}");
        // Fenced: A, which let go of it, records nothing on it any more.
        a.record_delivery("A", first.seq, DeliveryOutcome::Delivered, 2_001)
            .await
            .unwrap();
        let row = c.callback(&first.id).await.unwrap().unwrap();
        assert_eq!(
            row.status,
            DeliveryStatus::Pending,
            "{name}: A is fenced out"
        );
        c.record_delivery("C", first.seq, DeliveryOutcome::Delivered, 2_002)
            .await
            .unwrap();
        let row = c.callback(&first.id).await.unwrap().unwrap();
        assert_eq!(
            (row.status, row.attempts, row.delivered_at),
            (DeliveryStatus::Delivered, 2, Some(2_002)),
            "{name}"
        );
        // A node whose heartbeat stopped loses its deliveries within beats,
        // before their lease (A holds the third until 5_000).
        a.node_heartbeat("A", 600, false).await.unwrap();
        assert!(
            b.claim_deliveries(&claim("B", 700, 600), 10)
                .await
                .unwrap()
                .is_empty(),
            "{name}: A's heartbeat is recent"
        );
        let taken = b.claim_deliveries(&claim("B", 700, 601), 10).await.unwrap();
        assert_eq!(
            claimed(taken),
            [back[2].id.as_str()],
            "{name}: a dead node's"
        );
    }
}

/// A PostgreSQL server elsewhere is reached over TLS (`sslmode=require`
/// in the URL; the CI server has a self-signed certificate).
#[tokio::test]
async fn postgres_is_reached_over_tls_when_the_url_asks() {
    let Some(backend) = backends().await.into_iter().find(|b| b.name == "postgres") else {
        return; // no PostgreSQL here (CI always has one: see `backends`)
    };
    let url = format!("{}?sslmode=require", backend.url);
    let store = Store::open(&url, &naga_core::config::StoreConfig::default())
        .await
        .expect("opens over TLS");
    assert!(store.session("none").await.unwrap().is_none());
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let tls: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(tls, "the connection is encrypted");
}

/// A batch stored behind a session's running batch while that batch ends
/// on another node, or two of its batches ending at once on two nodes:
/// whichever commits last sees the other, so the session's next batch is
/// always readied, never left waiting for nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_stored_as_its_session_s_batch_ends_elsewhere_is_never_left_waiting() {
    for backend in backends().await {
        let (a, b) = (backend.store.clone(), backend.another_node().await);
        let claim = |owner: &str| Claim {
            lease: Lease {
                owner: owner.into(),
                until: i64::MAX,
            },
            now: 100,
            lapsed_before: 100,
            dead_before: 0,
            clock: None,
        };
        let end = |id: &str, seq: i64, owner: &str| TaskFinish {
            task_id: id.into(),
            task_seq: seq,
            owner: owner.into(),
            last_call: None,
            status: TaskStatus::Succeeded,
            error: None,
            finished_at: 5,
            callback: None,
            callback_id: String::new(),
            summary: None,
            lease_until: i64::MAX,
            take_next: false,
        };
        for round in 0..40 {
            let session = format!("race-{round}");
            let first = format!("{session}-1");
            let Inserted::New { seq, .. } = a
                .insert_task(task(&first, &session, "A", i64::MAX))
                .await
                .unwrap()
            else {
                panic!("new task")
            };
            let mut next = task(&format!("{session}-2"), &session, "B", i64::MAX);
            next.started = false;
            let (ended, inserted) =
                tokio::join!(a.finish_task(end(&first, seq, "A")), b.insert_task(next));
            assert!(matches!(ended.unwrap(), Finished::Ended { .. }));
            assert!(matches!(inserted.unwrap(), Inserted::New { .. }));
            let claimed = b.claim_runnable(claim("B"), 10).await.unwrap();
            let ids: Vec<&str> = claimed.iter().map(|t| t.id.as_str()).collect();
            assert_eq!(
                ids,
                [format!("{session}-2")],
                "{}: round {round}: the next batch was left waiting",
                backend.name
            );
        }
    }
}

/// Many ends at once from one node (on PostgreSQL written in groups, one
/// statement for many): each gets its own answer, a task another node
/// holds is refused, step numbers and callback sequences stay whole, and
/// failed attempts of one session and command are all counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_ends_at_once_each_get_their_own_answer() {
    for backend in backends().await {
        let (a, name) = (backend.store.clone(), backend.name);
        let mut seqs = Vec::new();
        for i in 0..60 {
            let mut t = task(&format!("g{i}"), &format!("g-s{}", i % 3), "A", i64::MAX);
            t.policy = naga_core::config::SessionPolicy::Parallel;
            let Inserted::New { seq, started, .. } = a.insert_task(t).await.unwrap() else {
                panic!("new task")
            };
            assert!(started, "{name}: parallel batches start at once");
            seqs.push(seq);
        }
        let Inserted::New { seq: theirs, .. } = a
            .insert_task(task("g-b", "g-other", "B", i64::MAX))
            .await
            .unwrap()
        else {
            panic!("new task")
        };
        let call = |i: usize, seq: i64, owner: &str, idx: i64| CallFinish {
            task_seq: seq,
            owner: owner.into(),
            idx,
            result: format!(r#"{{"index":{idx},"success":false}}"#),
            started_at: 10,
            step: NewStep {
                task_id: if seq == theirs {
                    "g-b".into()
                } else {
                    format!("g{i}")
                },
                call_idx: Some(idx),
                purpose: Some("command flaky".into()),
                content: None,
                output: None,
                analysis: None,
                success: false,
                error: Some(format!("failed {i}.{idx}")),
                created_at: 20 + idx,
            },
        };
        // Every first call ends at once, failing; one of them is B's.
        let mut ends: Vec<_> = seqs
            .iter()
            .enumerate()
            .map(|(i, &seq)| a.finish_call(call(i, seq, "A", 0)))
            .collect();
        ends.push(a.finish_call(call(99, theirs, "A", 0)));
        let answers = futures::future::join_all(ends).await;
        let (mine, b_s) = answers.split_at(60);
        assert!(mine.iter().all(|r| r.is_ok()), "{name}: {mine:?}");
        assert!(
            matches!(b_s[0], Err(StoreError::LeaseLost(_))),
            "{name}: B's task is fenced: {:?}",
            b_s[0]
        );
        // Then every task ends at once with its last call and callback.
        let finish = |i: usize, seq: i64| TaskFinish {
            task_id: format!("g{i}"),
            task_seq: seq,
            owner: "A".into(),
            last_call: Some(call(i, seq, "A", 1)),
            status: TaskStatus::Failed,
            error: Some("flaky".into()),
            finished_at: 30,
            callback: Some((
                "http://127.0.0.1:9/cb".into(),
                EnvelopeHead::parse(format!(r#"{{"task_id":"g{i}","sequence":"#)).unwrap(),
            )),
            callback_id: format!("msg_g{i}"),
            summary: None,
            lease_until: 1_000,
            take_next: false,
        };
        let mut ends: Vec<_> = seqs
            .iter()
            .enumerate()
            .map(|(i, &seq)| a.finish_task(finish(i, seq)))
            .collect();
        ends.push(a.finish_task(finish(0, seqs[0]))); // the same end twice
        let answers = futures::future::join_all(ends).await;
        let mut sequences = HashSet::new();
        let mut already = 0;
        for (i, answer) in answers.into_iter().enumerate() {
            // The second end of g0 has a last call it cannot record: a
            // lost lease, as alone.
            let answer = match answer {
                Err(StoreError::LeaseLost(id)) if id == "g0" => Finished::AlreadyEnded,
                other => other.unwrap(),
            };
            match answer {
                Finished::Ended {
                    callback: Some(cb), ..
                } => {
                    let body: serde_json::Value = serde_json::from_str(&cb.body).unwrap();
                    assert_eq!(body["sequence"], cb.seq, "{name}");
                    assert_eq!(body["task_id"], cb.task_id.as_str(), "{name}");
                    assert!(
                        sequences.insert(cb.seq),
                        "{name}: sequence {} twice",
                        cb.seq
                    );
                }
                Finished::Ended { callback: None, .. } => panic!("{name}: {i} without callback"),
                _ => already += 1,
            }
        }
        // (Either of the two ends of g0 may be the one that ended it.)
        assert_eq!((sequences.len(), already), (60, 1), "{name}");
        for i in [0, 17, 59] {
            let t = a.task(&format!("g{i}")).await.unwrap().unwrap();
            assert_eq!(t.status, TaskStatus::Failed, "{name}");
            let steps = a.steps(&format!("g{i}")).await.unwrap();
            let numbers: Vec<i64> = steps.iter().map(|s| s.step_no).collect();
            assert_eq!(numbers, [1, 2], "{name}: g{i}'s steps");
        }
        for s in 0..3 {
            let scope = MemoryScope::Session(format!("g-s{s}"));
            let failed = a.failed_attempts(&scope, 10).await.unwrap();
            assert_eq!(failed.len(), 1, "{name}: {failed:?}");
            assert_eq!(failed[0].count, 40, "{name}: 20 tasks, two calls each");
        }
    }
}

/// An end the database refuses (PostgreSQL takes no NUL in text) fails
/// alone: the others written with it in a group are written all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_the_database_refuses_does_not_take_its_group_down() {
    for backend in backends().await {
        let (a, name) = (backend.store.clone(), backend.name);
        let mut seqs = Vec::new();
        for i in 0..30 {
            let t = task(&format!("r{i}"), &format!("r-s{i}"), "A", i64::MAX);
            let Inserted::New { seq, .. } = a.insert_task(t).await.unwrap() else {
                panic!("new task")
            };
            seqs.push(seq);
        }
        let ends = seqs.iter().enumerate().map(|(i, &seq)| {
            a.finish_call(CallFinish {
                task_seq: seq,
                owner: "A".into(),
                idx: 0,
                result: r#"{"index":0,"success":true}"#.into(),
                started_at: 10,
                step: NewStep {
                    task_id: format!("r{i}"),
                    call_idx: Some(0),
                    purpose: None,
                    content: Some(if i == 7 { "a\0b".into() } else { "ok".into() }),
                    output: None,
                    analysis: None,
                    success: true,
                    error: None,
                    created_at: 20,
                },
            })
        });
        let answers = futures::future::join_all(ends).await;
        for (i, answer) in answers.iter().enumerate() {
            if i == 7 {
                if name == "postgres" {
                    assert!(answer.is_err(), "{name}: NUL refused");
                }
                continue;
            }
            assert!(answer.is_ok(), "{name}: r{i}: {answer:?}");
            let steps = a.steps(&format!("r{i}")).await.unwrap();
            assert_eq!(steps.len(), 1, "{name}: r{i}'s step written once");
        }
    }
}

/// Many batches accepted at once by each of two nodes (on PostgreSQL
/// stored in groups, one statement for many): each gets its own answer,
/// and a batch refused in a group (a `reject` while its session is busy,
/// an identical active batch, a known request id, another session's
/// analysis session; on PostgreSQL a batch it cannot store, which fails its
/// group) leaves nothing and does not undo the others. Each
/// session's batches keep their chain and their order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_batches_accepted_at_once_each_get_their_own_answer() {
    use naga_core::config::SessionPolicy;
    for backend in backends().await {
        let (a, b, name) = (
            backend.store.clone(),
            backend.another_node().await,
            backend.name,
        );
        // The analysis session `taken` belongs to session `owner`.
        a.insert_task(task("first", "owner", "A", i64::MAX))
            .await
            .unwrap();
        let mut owner_task = task("owner-1", "owner", "A", i64::MAX);
        owner_task.analysis_session_id = Some("taken".into());
        owner_task.policy = SessionPolicy::Parallel;
        a.insert_task(owner_task).await.unwrap();

        // What each batch is, and the answer it must get.
        #[derive(Debug, Clone, Copy, PartialEq)]
        enum Want {
            New,
            Busy,
            Duplicate,
            Known,
            Conflict,
            /// A NUL, which PostgreSQL refuses in text (its group is then
            /// stored one by one) and SQLite stores.
            Nul,
        }
        let mut batches = Vec::new();
        for i in 0..40 {
            // Four sessions, ten batches each, queued in order.
            let mut t = task(&format!("m{i}"), &format!("m-s{}", i % 4), "A", i64::MAX);
            t.analysis_session_id = Some(format!("m-an{}", i % 4));
            batches.push((t, Want::New));
        }
        for i in 0..5 {
            let mut t = task(&format!("r{i}"), "owner", "A", i64::MAX);
            t.policy = SessionPolicy::Reject;
            batches.push((t, Want::Busy));
            let mut t = task(&format!("c{i}"), &format!("c-s{i}"), "A", i64::MAX);
            t.analysis_session_id = Some("taken".into());
            batches.push((t, Want::Conflict));
            batches.push((task("first", "owner", "A", i64::MAX), Want::Known));
        }
        let mut nul = task("nul", "nul", "A", i64::MAX);
        nul.query = Some("a\0b".into());
        batches.push((nul, Want::Nul));
        let mut same = task("dup-1", "dup", "A", i64::MAX);
        same.fingerprint = Some("fp".into());
        a.insert_task(same.clone()).await.unwrap();
        for i in 0..5 {
            let mut t = same.clone();
            t.id = format!("dup-{}", i + 2);
            batches.push((t, Want::Duplicate));
        }
        // Half through each node, all at once.
        let answers = futures::future::join_all(batches.iter().enumerate().map(|(i, (t, _))| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let t = t.clone();
            async move { store.insert_task(t).await }
        }))
        .await;
        for ((t, want), answer) in batches.iter().zip(answers) {
            let got = match &answer {
                Ok(Inserted::New { .. }) if t.id == "nul" && name == "sqlite" => Want::Nul,
                Err(StoreError::Db(_)) if t.id == "nul" && name == "postgres" => Want::Nul,
                Ok(Inserted::New { .. }) => Want::New,
                Ok(Inserted::Busy) => Want::Busy,
                Ok(Inserted::Duplicate(f)) if f.id == "dup-1" => Want::Duplicate,
                Ok(Inserted::Existing(f)) if f.id == "first" => Want::Known,
                Err(StoreError::Conflict(m)) if m.contains("belongs to session `owner`") => {
                    Want::Conflict
                }
                other => panic!("{name}: {}: {other:?}", t.id),
            };
            assert_eq!(got, *want, "{name}: {}: {answer:?}", t.id);
        }
        for i in 0..5 {
            for id in [format!("r{i}"), format!("c{i}"), format!("dup-{}", i + 2)] {
                assert!(a.task(&id).await.unwrap().is_none(), "{name}: {id} stored");
            }
            assert!(
                a.session(&format!("c-s{i}")).await.unwrap().is_none(),
                "{name}: the session of a refused batch was made"
            );
        }
        if name == "postgres" {
            assert!(a.task("nul").await.unwrap().is_none(), "{name}: nul stored");
        }
        // Each session: ten batches, in a chain, the first ready.
        for s in 0..4 {
            let session = a.session(&format!("m-s{s}")).await.unwrap().unwrap();
            assert_eq!(session.task_count, 10, "{name}: m-s{s}");
            assert_eq!(session.active_tasks, 10, "{name}: m-s{s}");
            assert_eq!(session.analysis_sessions, 1, "{name}: m-s{s}");
        }
        let listed = a
            .tasks(&TaskFilter {
                session_id: Some("m-s0".into()),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(listed.len(), 10, "{name}: m-s0 along its chain");
        let running: Vec<_> = listed
            .iter()
            .filter(|t| t.status == TaskStatus::Running)
            .collect();
        assert_eq!(running.len(), 1, "{name}: one of m-s0 runs: {listed:?}");
        assert!(
            listed.iter().all(|t| t.seq >= running[0].seq),
            "{name}: the one running is m-s0's first"
        );
    }
}
