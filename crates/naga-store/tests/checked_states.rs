//! A task's kind, policy and status and an outbox row's status hold only
//! the values naga writes: they are written from enums, PostgreSQL's schema
//! refuses any other (CHECK, migration 0003), and on either backend a value
//! that got in anyway is an error when read, never a default. (SQLite's
//! schema has no CHECK: it cost its writer 17–35% per batch, BENCHMARKS.md.)

use naga_core::{config::StoreConfig, TaskStatus};
use naga_store::*;

mod common;
use common::backends;

fn task(id: &str) -> NewTask {
    NewTask {
        // Waiting in the store, as queued.
        started: false,
        ..common::echo_task(id, "s", "A", i64::MAX)
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
async fn a_status_kind_or_policy_outside_its_set_is_refused_by_postgresql() {
    for b in backends()
        .await
        .into_iter()
        .filter(|b| b.name == "postgres")
    {
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

/// A value written beside naga (SQLite's schema does not refuse it) is an
/// error when the store reads it, not a default status.
#[tokio::test]
async fn an_unknown_stored_status_is_an_error_when_read_not_a_default() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open(&url, &StoreConfig::default()).await.unwrap();
    store.insert_task(task("t1")).await.unwrap();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let mut c = pool.acquire().await.unwrap();
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
