//! Retention's rules on both backends (docs/configuration.md,
//! "Retention"): a record past its window goes with what hangs on it; an
//! unfinished one stays whatever its age, and so does what it holds back; a
//! dead callback outlives a delivered one; a pruned task's request id is
//! refused as pruned for its own window, then forgotten.

use naga_core::{config::SessionPolicy, MessageKind, MessageRole, TaskStatus};
use naga_store::*;
use std::collections::BTreeMap;

mod common;
use common::{backends, call_finish, echo_task, task_end};

/// Windows (ms): tasks and delivered callbacks 50 s, dead callbacks 99 s,
/// conversations 50 s, request ids 150 s.
fn cutoffs(now: i64) -> Cutoffs {
    Cutoffs {
        tasks: Some(now - 50_000),
        callbacks: Some(now - 50_000),
        dead_callbacks: Some(now - 99_000),
        conversations: Some(now - 50_000),
        requests: Some(now - 150_000),
    }
}

type Removed = BTreeMap<&'static str, u64>;

/// Runs `rules` until each has nothing left (a dry run counts each once).
async fn by_rules(s: &Store, rules: &[Rule], now: i64, dry_run: bool, removed: &mut Removed) {
    for &rule in rules {
        loop {
            let n = s.prune_rule(rule, cutoffs(now), 2, dry_run).await.unwrap();
            let n = n.expect("no other node prunes");
            *removed.entry(rule.label()).or_default() += n;
            if dry_run || n < 2 {
                break;
            }
        }
    }
}

/// One round as the engine runs it, in batches of two (so that batching
/// is exercised): what it removed (or would), by kind.
async fn prune(s: &Store, now: i64, dry_run: bool) -> Removed {
    let mut removed = Removed::new();
    by_rules(s, &Rule::OUTBOX, now, dry_run, &mut removed).await;
    let mut pass = TaskPass::default();
    while !pass.done {
        let batch = PruneTasks {
            cutoffs: cutoffs(now),
            now,
            limit: 2,
            dry_run,
            pass,
        };
        let pruned = s.prune_tasks(batch).await.unwrap().expect("no other node");
        for (kind, n) in [
            ("tasks", pruned.tasks),
            ("steps", pruned.steps),
            ("callbacks", pruned.callbacks),
        ] {
            *removed.entry(kind).or_default() += n;
        }
        pass = pruned.pass;
    }
    by_rules(s, &Rule::AFTER_TASKS, now, dry_run, &mut removed).await;
    removed.retain(|_, n| *n > 0);
    removed
}

/// Accepts `id` in `session` at `at`, running on A; `policy` parallel
/// starts it whatever its session runs.
async fn start(s: &Store, id: &str, session: &str, at: i64, parallel: bool) -> i64 {
    let mut t = echo_task(id, session, "A", i64::MAX);
    t.accepted_at = at;
    if parallel {
        t.policy = SessionPolicy::Parallel;
    }
    match s.insert_task(t).await.unwrap() {
        Inserted::New { seq, started, .. } => {
            assert!(started, "{id} runs");
            seq
        }
        other => panic!("{id}: {other:?}"),
    }
}

/// Ends `id` at `at` with one step; with a callback when `callback`.
async fn end(s: &Store, id: &str, seq: i64, at: i64, callback: bool) -> Option<CallbackRow> {
    let mut finish = task_end(id, seq);
    finish.last_call = Some(call_finish("A", id, seq));
    finish.finished_at = at;
    if callback {
        let head = format!(r#"{{"task_id":"{id}","sequence":"#);
        finish.callback = Some((
            "http://127.0.0.1:9/cb".into(),
            EnvelopeHead::parse(head).unwrap(),
        ));
    }
    match s.finish_task(finish).await.unwrap() {
        Finished::Ended { callback, .. } => callback,
        other => panic!("{id}: {other:?}"),
    }
}

fn message(session: &str, content: &str, at: i64) -> NewMessage {
    NewMessage {
        session_id: session.into(),
        role: MessageRole::User,
        content: content.into(),
        kind: MessageKind::Chat,
        task_id: None,
        created_at: at,
    }
}

/// The store of the scenario, at 100 s: what each rule is tested on.
async fn stage(s: &Store) {
    // Ended long ago, its callback delivered long ago: all of it goes.
    let seq = start(s, "old", "s", 1_000, false).await;
    let cb = end(s, "old", seq, 2_000, true).await.unwrap();
    s.record_delivery("A", cb.seq, DeliveryOutcome::Delivered, 2_100)
        .await
        .unwrap();
    // Its callback dead-lettered long ago, but within the dead window.
    let seq = start(s, "dead", "d", 1_000, false).await;
    let cb = end(s, "dead", seq, 2_000, true).await.unwrap();
    let error = "HTTP 500".to_owned();
    s.record_delivery("A", cb.seq, DeliveryOutcome::Dead { error }, 2_200)
        .await
        .unwrap();
    // Its callback still pending: unfinished work.
    let seq = start(s, "owing", "p", 1_000, false).await;
    end(s, "owing", seq, 2_000, true).await.unwrap();
    // Still running, however old; and a later batch of its session that
    // ended long ago stays behind it (the session only loses its oldest).
    start(s, "r1", "r", 1_000, false).await;
    let seq = start(s, "r2", "r", 1_001, true).await;
    end(s, "r2", seq, 2_000, false).await;
    // Within the window.
    let seq = start(s, "recent", "s", 89_000, false).await;
    end(s, "recent", seq, 90_000, false).await;
    s.add_message(message("m", "old words", 1_000))
        .await
        .unwrap();
    s.add_message(message("m", "new words", 95_000))
        .await
        .unwrap();
}

async fn exists(s: &Store, id: &str) -> bool {
    s.task(id).await.unwrap().is_some()
}

#[tokio::test]
async fn what_is_past_its_window_goes_with_what_hangs_on_it_and_nothing_unfinished_does() {
    for b in backends().await {
        let (s, name) = (&b.store, b.name);
        stage(s).await;
        let would = prune(s, 100_000, true).await;
        assert!(exists(s, "old").await, "{name}: a dry run removes nothing");
        let removed = prune(s, 100_000, false).await;
        assert_eq!(
            would, removed,
            "{name}: the dry run counts what the prune removes"
        );
        let want: Removed = [
            ("tasks", 1),
            ("steps", 1),
            ("callbacks", 1),
            ("messages", 1),
        ]
        .into_iter()
        .collect();
        assert_eq!(removed, want, "{name}");
        assert!(!exists(s, "old").await, "{name}: old task pruned");
        assert!(
            s.steps("old").await.unwrap().is_empty(),
            "{name}: its steps"
        );
        assert!(
            s.callbacks_of_task("old").await.unwrap().is_empty(),
            "{name}"
        );
        for kept in ["dead", "owing", "r1", "r2", "recent"] {
            assert!(exists(s, kept).await, "{name}: {kept} kept");
        }
        assert_eq!(s.steps("recent").await.unwrap().len(), 1, "{name}");
        assert_eq!(
            s.callbacks_of_task("dead").await.unwrap().len(),
            1,
            "{name}"
        );
        assert_eq!(
            s.callbacks_of_task("owing").await.unwrap().len(),
            1,
            "{name}"
        );
        // The session lists (and counts) what is left of it.
        let session = s.session("s").await.unwrap().unwrap();
        assert_eq!(session.task_count, 1, "{name}: session s counts its tasks");
        let filter = TaskFilter {
            session_id: Some("s".into()),
            limit: 10,
            ..Default::default()
        };
        let listed: Vec<String> = s
            .tasks(&filter)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(listed, ["recent"], "{name}");
        let words: Vec<String> = s
            .messages("m", 10)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.content)
            .collect();
        assert_eq!(words, ["new words"], "{name}");

        // 100 s later: the delivered window passed for `recent`, the dead
        // one for `dead` (its callback first, then its task).
        let removed = prune(s, 200_000, false).await;
        assert_eq!(removed.get("tasks"), Some(&2), "{name}: {removed:?}");
        assert_eq!(
            removed.get("dead_callbacks"),
            Some(&1),
            "{name}: {removed:?}"
        );
        assert!(
            !exists(s, "dead").await && !exists(s, "recent").await,
            "{name}"
        );
        for kept in ["owing", "r1", "r2"] {
            assert!(exists(s, kept).await, "{name}: {kept} kept");
        }
    }
}

#[tokio::test]
async fn a_pruned_tasks_request_id_is_refused_for_its_window_then_forgotten() {
    for b in backends().await {
        let (s, name) = (&b.store, b.name);
        stage(s).await;
        prune(s, 100_000, false).await;
        // Sent again after the prune: refused as pruned, nothing stored.
        let mut again = echo_task("old", "s", "A", i64::MAX);
        again.accepted_at = 100_001;
        match s.insert_task(again.clone()).await.unwrap() {
            Inserted::Pruned(p) => {
                assert_eq!(
                    (p.id.as_str(), p.session_id.as_str()),
                    ("old", "s"),
                    "{name}"
                );
                assert_eq!(
                    (p.status, p.finished_at, p.pruned_at),
                    (TaskStatus::Succeeded, Some(2_000), 100_000)
                );
            }
            other => panic!("{name}: {other:?}"),
        }
        assert!(!exists(s, "old").await, "{name}: nothing stored");
        // Within its window (150 s after the prune) it stays refused...
        let removed = prune(s, 240_000, false).await;
        assert_eq!(removed.get("request_ids"), None, "{name}: {removed:?}");
        assert!(
            matches!(
                s.insert_task(again.clone()).await.unwrap(),
                Inserted::Pruned(_)
            ),
            "{name}"
        );
        // ...and past it the id is forgotten: a new batch under it runs.
        let removed = prune(s, 260_000, false).await;
        assert_eq!(removed.get("request_ids"), Some(&1), "{name}: {removed:?}");
        assert!(
            matches!(s.insert_task(again).await.unwrap(), Inserted::New { .. }),
            "{name}"
        );
    }
}

#[tokio::test]
async fn with_every_window_zero_nothing_goes() {
    for b in backends().await {
        let (s, name) = (&b.store, b.name);
        stage(s).await;
        for rule in Rule::OUTBOX.into_iter().chain(Rule::AFTER_TASKS) {
            let n = s
                .prune_rule(rule, Cutoffs::default(), 100, false)
                .await
                .unwrap();
            assert_eq!(n, Some(0), "{name}: {rule:?}");
        }
        let batch = PruneTasks {
            cutoffs: Cutoffs::default(),
            now: 1_000_000,
            limit: 100,
            dry_run: false,
            pass: TaskPass::default(),
        };
        let pruned = s.prune_tasks(batch).await.unwrap().unwrap();
        assert!(pruned.pass.done && pruned.tasks == 0, "{name}");
        assert!(exists(s, "old").await, "{name}");
    }
}

/// PostgreSQL: a resend that arrives while the prune of its task is being
/// committed waits for that commit (the id's row is being deleted), then
/// finds the request id left behind: refused, not run again.
#[tokio::test]
async fn a_resend_racing_the_prune_of_its_task_is_refused_on_postgresql() {
    for b in backends()
        .await
        .into_iter()
        .filter(|b| b.name == "postgres")
    {
        let s = &b.store;
        let seq = start(s, "raced", "s", 1_000, false).await;
        end(s, "raced", seq, 2_000, false).await;
        // A prune of it, not committed yet (as `remove_tasks` leaves it
        // before its last statements).
        let pool = sqlx::PgPool::connect(&b.url).await.unwrap();
        let mut prune = pool.begin().await.unwrap();
        for sql in [
            "DELETE FROM steps WHERE task_seq = (SELECT seq FROM tasks WHERE id = 'raced')",
            "DELETE FROM tasks WHERE id = 'raced'",
            "INSERT INTO pruned_tasks (id, session_id, status, finished_at, pruned_at)
             VALUES ('raced', 's', 'succeeded', 2000, 100000)",
        ] {
            sqlx::query(sql).execute(&mut *prune).await.unwrap();
        }
        let resend = {
            let (s, mut again) = (s.clone(), echo_task("raced", "s", "A", i64::MAX));
            again.accepted_at = 100_001;
            tokio::spawn(async move { s.insert_task(again).await })
        };
        // The resend waits for the prune's commit.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            if waiting > 0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the resend never waited for the prune"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        prune.commit().await.unwrap();
        let answer = resend.await.unwrap().unwrap();
        assert!(matches!(answer, Inserted::Pruned(_)), "{answer:?}");
        assert!(!exists(s, "raced").await, "nothing stored for the resend");
        pool.close().await;
    }
}
