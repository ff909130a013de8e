//! A task's kind, policy and status and an outbox row's status hold only
//! the values naga writes: both schemas refuse any other (CHECK, migrations
//! sqlite/0008 and postgres/0003), and a value that got in anyway is an
//! error when read, never a default.

use naga_core::{config::StoreConfig, TaskStatus};
use naga_store::*;

mod common;
use common::backends;

fn task(id: &str) -> NewTask {
    NewTask {
        id: id.into(),
        kind: naga_core::wire::TaskKind::Agent,
        session_id: "s".into(),
        analysis_session_id: None,
        query: None,
        callback_url: None,
        policy: naga_core::config::SessionPolicy::Enqueue,
        fingerprint: None,
        calls: "[{\"tool_name\":\"echo\"}]".into(),
        calls_count: 1,
        response: "{}".into(),
        accepted_at: 1,
        lease: Lease {
            owner: "A".into(),
            until: i64::MAX,
        },
        started: false,
        clock: None,
    }
}

/// Runs `sql` on the backend's database beside the store, as an operator's
/// hand (or another program) would.
async fn execute(url: &str, sql: &str) -> Result<u64, sqlx::Error> {
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await?;
        let done = sqlx::query(sql)
            .execute(&pool)
            .await
            .map(|r| r.rows_affected());
        pool.close().await;
        done
    } else {
        let pool = sqlx::PgPool::connect(url).await?;
        let done = sqlx::query(sql)
            .execute(&pool)
            .await
            .map(|r| r.rows_affected());
        pool.close().await;
        done
    }
}

#[tokio::test]
async fn a_status_kind_or_policy_outside_its_set_is_refused_by_the_schema() {
    for b in backends().await {
        let Inserted::New { .. } = b.store.insert_task(task("t1")).await.unwrap() else {
            panic!("{}: new task", b.name)
        };
        for (column, value) in [("status", "done"), ("kind", "tool"), ("policy", "fifo")] {
            let e = execute(
                &b.url,
                &format!("UPDATE tasks SET {column} = '{value}' WHERE id = 't1'"),
            )
            .await
            .expect_err(&format!("{}: tasks.{column} = {value} accepted", b.name));
            assert!(
                e.to_string().to_lowercase().contains("check"),
                "{}: tasks.{column}: {e}",
                b.name
            );
        }
        for table in ["callbacks", "notifications"] {
            let e = execute(&b.url, &format!("UPDATE {table} SET status = 'sent'"))
                .await
                .map(|n| n > 0);
            // No rows to update is no proof: insert one.
            assert!(!matches!(e, Ok(true)), "{}: {table}", b.name);
        }
        let e = execute(
            &b.url,
            "INSERT INTO notifications (seq, id, task_id, url, body, status, next_attempt_at, created_at)
             VALUES (1, 'n1', 't1', 'http://127.0.0.1:9/', '{}', 'sent', 0, 0)",
        )
        .await
        .expect_err(&format!("{}: notification with status `sent` accepted", b.name));
        assert!(
            e.to_string().to_lowercase().contains("check"),
            "{}: {e}",
            b.name
        );
        // The task is as it was, and reads back typed.
        let t = b.store.task("t1").await.unwrap().unwrap();
        assert_eq!(t.status, TaskStatus::Queued, "{}", b.name);
        assert_eq!(t.kind, naga_core::wire::TaskKind::Agent, "{}", b.name);
    }
}

/// SQLite can be told to skip CHECK constraints: a value stored that way
/// is an error when the store reads it, not a default status.
#[tokio::test]
async fn an_unknown_stored_status_is_an_error_when_read_not_a_default() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open(&url, &StoreConfig::default()).await.unwrap();
    store.insert_task(task("t1")).await.unwrap();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let mut c = pool.acquire().await.unwrap();
    sqlx::query("PRAGMA ignore_check_constraints = ON")
        .execute(&mut *c)
        .await
        .unwrap();
    sqlx::query("UPDATE tasks SET status = 'done' WHERE id = 't1'")
        .execute(&mut *c)
        .await
        .unwrap();
    drop(c);
    pool.close().await;
    let e = store
        .task("t1")
        .await
        .expect_err("a task with status `done` was read");
    assert!(
        e.to_string().contains("unknown task status `done`"),
        "the error names the value: {e}"
    );
}

/// A store from before the constraints (migrations up to 0007) keeps every
/// row, and its tasks' numbers are not handed out again, even those of
/// tasks deleted since; a store holding a value outside the sets is left
/// as it was.
#[tokio::test]
async fn the_migration_keeps_a_stores_rows_and_refuses_values_outside_the_sets() {
    for (bad, name) in [(false, "clean"), (true, "with an unknown status")] {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let old = dir.path().join("old_migrations");
        std::fs::create_dir(&old).unwrap();
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
        for f in std::fs::read_dir(&src).unwrap() {
            let f = f.unwrap();
            let file = f.file_name().into_string().unwrap();
            if file.as_str() < "0008" {
                std::fs::copy(f.path(), old.join(&file)).unwrap();
            }
        }
        let options = url.parse::<sqlx::sqlite::SqliteConnectOptions>().unwrap();
        let pool = sqlx::SqlitePool::connect_with(options.create_if_missing(true))
            .await
            .unwrap();
        let migrator = sqlx::migrate::Migrator::new(old.as_path()).await.unwrap();
        migrator.run(&pool).await.unwrap();
        let third = if bad { "done" } else { "succeeded" };
        for sql in [
            "INSERT INTO sessions (id, created_at, last_activity_at) VALUES ('s', 0, 0)".to_owned(),
            format!(
                "INSERT INTO tasks (id, kind, session_id, policy, status, calls_count, response, accepted_at)
                 VALUES ('a', 'agent', 's', 'enqueue', 'succeeded', 0, '{{}}', 1),
                        ('b', 'mcp', 's', 'parallel', 'running', 0, '{{}}', 2),
                        ('c', 'agent', 's', 'enqueue', '{third}', 0, '{{}}', 3)"
            ),
            "INSERT INTO callbacks (seq, id, task_id, url, body, status, next_attempt_at, created_at)
             VALUES (1, 'cb1', 'a', 'http://127.0.0.1:9/', '{}', 'dead', 0, 0)"
                .to_owned(),
        ] {
            sqlx::query(&sql).execute(&pool).await.unwrap();
        }
        if !bad {
            // The newest task goes: its number stays used.
            sqlx::query("DELETE FROM tasks WHERE id = 'c'")
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;

        let opened = Store::open(&url, &StoreConfig::default()).await;
        if bad {
            let e = opened
                .err()
                .expect("a store holding status `done` was migrated");
            assert!(e.to_string().contains("CHECK"), "{name}: {e}");
            // Nothing changed: the old schema and its rows are all there.
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            let (tasks,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM tasks")
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(tasks, 3, "{name}");
            let (applied,): (i64,) =
                sqlx::query_as("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            assert_eq!(applied, 7, "{name}: the migration was not recorded");
            continue;
        }
        let s = opened.unwrap();
        let a = s.task("a").await.unwrap().unwrap();
        assert_eq!((a.seq, a.status), (1, TaskStatus::Succeeded), "{name}");
        let b = s.task("b").await.unwrap().unwrap();
        assert_eq!(
            b.policy,
            naga_core::config::SessionPolicy::Parallel,
            "{name}"
        );
        let dead = s
            .callbacks(Some(naga_core::DeliveryStatus::Dead), 10)
            .await
            .unwrap();
        assert_eq!(dead.len(), 1, "{name}: the dead callback was kept");
        let Inserted::New { seq, .. } = s.insert_task(task("d")).await.unwrap() else {
            panic!("{name}: new task")
        };
        assert_eq!(seq, 4, "{name}: task numbers are not reused");
    }
}
