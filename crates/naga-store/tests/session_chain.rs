//! A session's tasks are found along its chain (migration 0004), not an
//! index: listings, counts and session memory must see exactly the
//! session's tasks, newest first, page by page; a store written before the
//! chain existed is linked up by the migration.

use naga_core::{config::StoreConfig, TaskStatus};
use naga_store::*;

mod common;
use common::backends;

fn url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("t.db").display())
}

fn task(id: &str, session: &str, at: i64) -> NewTask {
    NewTask {
        id: id.into(),
        kind: if at % 5 == 0 {
            naga_core::wire::TaskKind::Mcp
        } else {
            naga_core::wire::TaskKind::Agent
        },
        session_id: session.into(),
        analysis_session_id: None,
        query: None,
        callback_url: None,
        // (Parallel: each is held by A at once, whatever else its session runs.)
        policy: naga_core::config::SessionPolicy::Parallel,
        fingerprint: None,
        calls: "[{\"tool_name\":\"echo\"}]".into(),
        calls_count: 1,
        response: "{}".into(),
        accepted_at: at,
        lease: Lease {
            owner: "A".into(),
            until: i64::MAX,
        },
        started: true,
        clock: None,
    }
}

async fn finish(s: &Store, id: &str, seq: i64, status: TaskStatus) {
    let finished = s
        .finish_task(TaskFinish {
            task_id: id.into(),
            task_seq: seq,
            owner: "A".into(),
            last_call: Some(CallFinish {
                task_seq: seq,
                owner: "A".into(),
                idx: 0,
                result: "{\"success\":true}".into(),
                started_at: 0,
                step: NewStep {
                    task_id: id.into(),
                    purpose: Some(format!("echo: {id}")),
                    success: true,
                    output: Some(id.into()),
                    ..Default::default()
                },
            }),
            status,
            error: None,
            finished_at: seq,
            callback: None,
            callback_id: String::new(),
            summary: Some(format!("{{\"task\":\"{id}\"}}")),
            lease_until: 1_000_000,
            take_next: false,
        })
        .await
        .unwrap();
    assert!(matches!(finished, Finished::Ended { .. }));
}

fn ids(rows: &[TaskRow]) -> Vec<String> {
    rows.iter().map(|r| r.id.clone()).collect()
}

/// The model: every task as (id, session, status, kind), in acceptance order.
type Model = Vec<(String, String, TaskStatus, &'static str)>;

fn expected(model: &Model, session: &str, status: Option<TaskStatus>) -> Vec<String> {
    model
        .iter()
        .rev()
        .filter(|(_, s, st, _)| s == session && status.is_none_or(|x| x == *st))
        .map(|(id, ..)| id.clone())
        .collect()
}

#[tokio::test]
async fn a_sessions_tasks_are_listed_newest_first_page_by_page_and_counted() {
    for backend in backends().await {
        let s = backend.store.clone();
        eprintln!("on {}", backend.name);
        let sessions = ["s1", "s2", "s3"];
        let mut model: Model = Vec::new();
        for i in 0..60i64 {
            // Uneven interleaving: s1 gets most, s3 few.
            let session = sessions[[0, 0, 1, 0, 2, 1][i as usize % 6]];
            let id = format!("t{i}");
            let mut t = task(&id, session, 1_000 + i);
            // (The ones that stay unfinished wait unheld, as queued.)
            t.started = i % 3 != 0;
            let kind = t.kind;
            let Inserted::New { seq, .. } = s.insert_task(t).await.unwrap() else {
                panic!("new task")
            };
            let status = match i % 3 {
                0 => TaskStatus::Queued,
                1 => {
                    finish(&s, &id, seq, TaskStatus::Succeeded).await;
                    TaskStatus::Succeeded
                }
                _ => {
                    finish(&s, &id, seq, TaskStatus::Failed).await;
                    TaskStatus::Failed
                }
            };
            model.push((id, session.into(), status, kind.as_str()));
        }
        // A repeat of a request id adds nothing to the chain or the count.
        assert!(matches!(
            s.insert_task(task("t7", "s1", 1_007)).await.unwrap(),
            Inserted::Existing { .. }
        ));

        for session in sessions {
            for status in [None, Some(TaskStatus::Queued), Some(TaskStatus::Failed)] {
                let want = expected(&model, session, status);
                // Pages of 4 put together give the whole list, in order.
                let mut got = Vec::new();
                for page in 0.. {
                    let rows = s
                        .tasks(&TaskFilter {
                            session_id: Some(session.into()),
                            status,
                            kind: None,
                            limit: 4,
                            offset: page * 4,
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                    assert!(rows.iter().all(|r| r.session_id == session));
                    if rows.is_empty() {
                        break;
                    }
                    got.extend(ids(&rows));
                }
                assert_eq!(got, want, "{session}, status {status:?}");
            }
            let mcp: Vec<String> = model
                .iter()
                .rev()
                .filter(|(_, s, _, k)| s == session && *k == "mcp")
                .map(|(id, ..)| id.clone())
                .collect();
            let rows = s
                .tasks(&TaskFilter {
                    session_id: Some(session.into()),
                    kind: Some(naga_core::wire::TaskKind::Mcp),
                    limit: 100,
                    ..Default::default()
                })
                .await
                .unwrap();
            assert_eq!(ids(&rows), mcp, "{session}: mcp tasks");

            let row = s.session(session).await.unwrap().unwrap();
            assert_eq!(
                row.task_count as usize,
                expected(&model, session, None).len()
            );
            assert_eq!(
                row.active_tasks as usize,
                expected(&model, session, Some(TaskStatus::Queued)).len()
            );
        }
        // Without a session: every task, newest first.
        let all = s
            .tasks(&TaskFilter {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        let want: Vec<String> = model.iter().rev().map(|(id, ..)| id.clone()).collect();
        assert_eq!(ids(&all), want);
    }
}

#[tokio::test]
async fn session_memory_reaches_the_sessions_tasks_only_and_clears_only_them() {
    for backend in backends().await {
        let s = backend.store.clone();
        eprintln!("on {}", backend.name);
        for i in 0..12i64 {
            let session = if i % 3 == 0 { "a" } else { "b" };
            let id = format!("m{i}");
            let Inserted::New { seq, .. } = s.insert_task(task(&id, session, i)).await.unwrap()
            else {
                panic!("new task")
            };
            finish(&s, &id, seq, TaskStatus::Succeeded).await;
        }
        let a = MemoryScope::Session("a".into());
        let facts = s.key_facts(&a, 100).await.unwrap();
        let fact_tasks: Vec<&str> = facts.iter().map(|f| f.task_id.as_str()).collect();
        assert_eq!(fact_tasks, ["m9", "m6", "m3", "m0"]);
        let summaries = s.compressed_memories(&a, 100).await.unwrap();
        let summary_tasks: Vec<Option<&str>> =
            summaries.iter().map(|m| m.task_id.as_deref()).collect();
        assert_eq!(
            summary_tasks,
            [Some("m9"), Some("m6"), Some("m3"), Some("m0")]
        );

        assert!(s.clear_memory(a.clone()).await.unwrap() >= 8);
        assert!(s.key_facts(&a, 100).await.unwrap().is_empty());
        assert!(s.compressed_memories(&a, 100).await.unwrap().is_empty());
        let b = MemoryScope::Session("b".into());
        assert_eq!(s.key_facts(&b, 100).await.unwrap().len(), 8);
        assert_eq!(s.compressed_memories(&b, 100).await.unwrap().len(), 8);
    }
}

/// A store written by the schema before the chain: the migration links
/// every session's tasks and counts them (0004), and its steps are carried
/// into the appended table (0005).
#[tokio::test]
async fn the_migration_links_the_tasks_a_store_already_had() {
    let dir = tempfile::tempdir().unwrap();
    // Migrations 0001–0003 only, from a copy of their files.
    let old = dir.path().join("old_migrations");
    std::fs::create_dir(&old).unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap();
        let name = f.file_name().into_string().unwrap();
        if name.as_str() < "0004" {
            std::fs::copy(f.path(), old.join(&name)).unwrap();
        }
    }
    let options = url(&dir)
        .parse::<sqlx::sqlite::SqliteConnectOptions>()
        .unwrap();
    let pool = sqlx::SqlitePool::connect_with(options.create_if_missing(true))
        .await
        .unwrap();
    sqlx::migrate::Migrator::new(old.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    let mut model: Model = Vec::new();
    for session in ["x", "y"] {
        sqlx::query("INSERT INTO sessions (id, created_at, last_activity_at) VALUES (?1, 0, 0)")
            .bind(session)
            .execute(&pool)
            .await
            .unwrap();
    }
    for i in 0..9 {
        let (session, status) = if i % 2 == 0 {
            ("x", "succeeded")
        } else {
            ("y", "running")
        };
        sqlx::query(
            "INSERT INTO tasks (id, kind, session_id, policy, status, calls_count, response, accepted_at)
             VALUES (?1, 'agent', ?2, 'enqueue', ?3, 0, '{}', ?4)",
        )
        .bind(format!("old{i}"))
        .bind(session)
        .bind(status)
        .bind(i)
        .execute(&pool)
        .await
        .unwrap();
        let st = if i % 2 == 0 {
            TaskStatus::Succeeded
        } else {
            TaskStatus::Running
        };
        model.push((format!("old{i}"), session.into(), st, "agent"));
    }
    // Two steps of old0, stored the 0003 way (clustered by task).
    for step_no in [1, 2] {
        sqlx::query(
            "INSERT INTO steps (task_seq, step_no, task_id, session_id, call_idx, purpose,
                                success, created_at, result)
             VALUES (1, ?1, 'old0', 'x', ?1 - 1, 'echo: ' || ?1, 1, ?1, '{\"success\":true}')",
        )
        .bind(step_no)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    let s = Store::open(&url(&dir), &StoreConfig::default())
        .await
        .unwrap();
    // New tasks continue the chains the migration made.
    let Inserted::New { .. } = s.insert_task(task("new1", "y", 100)).await.unwrap() else {
        panic!("new task")
    };
    model.push(("new1".into(), "y".into(), TaskStatus::Queued, "agent"));
    for session in ["x", "y"] {
        let rows = s
            .tasks(&TaskFilter {
                session_id: Some(session.into()),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(ids(&rows), expected(&model, session, None), "{session}");
        let row = s.session(session).await.unwrap().unwrap();
        assert_eq!(row.task_count as usize, rows.len());
    }
    let y = s.session("y").await.unwrap().unwrap();
    assert_eq!(y.active_tasks, 5, "four running from before, one queued");
    // The steps were carried into the appended table (0005), in order.
    let steps = s.steps("old0").await.unwrap();
    let purposes: Vec<Option<&str>> = steps.iter().map(|st| st.purpose.as_deref()).collect();
    assert_eq!(purposes, [Some("echo: 1"), Some("echo: 2")]);
    assert_eq!(s.task("old0").await.unwrap().unwrap().steps_count, 2);
}

/// An analysis session belongs to the session that first used it, whether
/// the store reads that from its table or already knows it from an
/// earlier commit (a second store on the same file knows nothing yet).
#[tokio::test]
async fn an_analysis_session_stays_with_the_session_that_made_it() {
    for backend in backends().await {
        let s = backend.store.clone();
        eprintln!("on {}", backend.name);
        let with = |id: &str, session: &str| NewTask {
            analysis_session_id: Some("analysis_1".into()),
            ..task(id, session, 1)
        };
        assert!(matches!(
            s.insert_task(with("a1", "s1")).await.unwrap(),
            Inserted::New { .. }
        ));
        // Known now: the same session goes on, another is refused, twice.
        assert!(matches!(
            s.insert_task(with("a2", "s1")).await.unwrap(),
            Inserted::New { .. }
        ));
        for id in ["a3", "a4"] {
            match s.insert_task(with(id, "s2")).await {
                Err(StoreError::Conflict(e)) => {
                    assert!(e.contains("belongs to session `s1`"), "{e}")
                }
                other => panic!("{other:?}"),
            }
        }
        let fresh = backend.another_node().await;
        match fresh.insert_task(with("a5", "s2")).await {
            Err(StoreError::Conflict(e)) => assert!(e.contains("belongs to session `s1`"), "{e}"),
            other => panic!("{other:?}"),
        }
        // Refused batches stored nothing.
        for id in ["a3", "a4", "a5"] {
            assert!(s.task(id).await.unwrap().is_none());
        }
        assert!(s.session("s2").await.unwrap().is_none());
        assert_eq!(s.session("s1").await.unwrap().unwrap().task_count, 2);
    }
}

/// A batch the store does not take (a `reject` batch while its session is
/// busy, an identical batch still active, a known request id, an analysis
/// session of another session) answers why and leaves the store as it was:
/// no session touched or made, no analysis session, no task.
#[tokio::test]
async fn a_batch_that_is_not_stored_changes_nothing() {
    for b in backends().await {
        let s = &b.store;
        let mut first = task("t1", "s", 100);
        first.policy = naga_core::config::SessionPolicy::Enqueue;
        first.fingerprint = Some("fp".into());
        first.analysis_session_id = Some("an".into());
        let Inserted::New { seq, .. } = s.insert_task(first.clone()).await.unwrap() else {
            panic!("{}: the first batch is stored", b.name)
        };
        let before = s.session("s").await.unwrap().expect("session s");
        let analysis = s.analysis_sessions("s").await.unwrap();

        let mut rejected = task("t2", "s", 200);
        rejected.policy = naga_core::config::SessionPolicy::Reject;
        let answer = s.insert_task(rejected).await.unwrap();
        assert_eq!(answer, Inserted::Busy, "{}: reject while t1 runs", b.name);

        let mut same = task("t3", "s", 300);
        same.policy = naga_core::config::SessionPolicy::Enqueue;
        same.fingerprint = Some("fp".into());
        match s.insert_task(same).await.unwrap() {
            Inserted::Duplicate(a) => assert_eq!(a.id, "t1", "{}: t1 answers", b.name),
            other => panic!("{}: an identical active batch: {other:?}", b.name),
        }

        let mut again = first.clone();
        again.accepted_at = 400;
        match s.insert_task(again).await.unwrap() {
            Inserted::Existing(a) => assert_eq!(a.id, "t1", "{}", b.name),
            other => panic!("{}: t1 sent again: {other:?}", b.name),
        }
        let mut reused = first.clone();
        reused.calls = "[{\"tool_name\":\"other\"}]".into();
        match s.insert_task(reused).await.unwrap() {
            Inserted::Reused(a) => assert_eq!(a.id, "t1", "{}", b.name),
            other => panic!("{}: t1's id for another batch: {other:?}", b.name),
        }

        let mut elsewhere = task("t4", "other", 500);
        elsewhere.analysis_session_id = Some("an".into());
        let refused = s.insert_task(elsewhere).await.unwrap_err();
        assert!(
            matches!(&refused, StoreError::Conflict(m) if m.contains("belongs to session `s`")),
            "{}: {refused:?}",
            b.name
        );

        assert_eq!(
            s.session("s")
                .await
                .unwrap()
                .map(|r| (r.last_activity_at, r.task_count)),
            Some((before.last_activity_at, before.task_count)),
            "{}: session s as it was",
            b.name
        );
        assert!(
            s.session("other").await.unwrap().is_none(),
            "{}: no session made for a refused batch",
            b.name
        );
        assert_eq!(
            s.analysis_sessions("s").await.unwrap(),
            analysis,
            "{}",
            b.name
        );
        for id in ["t2", "t3", "t4"] {
            assert!(
                s.task(id).await.unwrap().is_none(),
                "{}: {id} stored",
                b.name
            );
        }
        // The session takes its next batch after all that, behind t1.
        let mut next = task("t5", "s", 600);
        next.policy = naga_core::config::SessionPolicy::Enqueue;
        let Inserted::New { ready, .. } = s.insert_task(next).await.unwrap() else {
            panic!("{}: t5 is stored", b.name)
        };
        assert!(!ready, "{}: t5 waits for t1", b.name);
        assert_eq!(
            s.session("s").await.unwrap().unwrap().task_count,
            before.task_count + 1,
            "{}",
            b.name
        );
        let t1 = s.task("t1").await.unwrap().unwrap();
        assert_eq!(
            (t1.seq, t1.status),
            (seq, TaskStatus::Running),
            "{}",
            b.name
        );
    }
}
