//! The API server's conversations on PostgreSQL: messages, dispatches and
//! the callbacks it received.

use super::{touch_session, Tx};
use crate::sql::{ANSWER_CALLBACK, INSERT_DISPATCH, INSERT_MESSAGE, RECEIVE_CALLBACK};
use crate::{
    commands::{NewMessage, NewNotification},
    rows::{CallbackRow, DispatchRow, InboxRow, Outbox},
    StoreError,
};
use sqlx::{FromRow, PgPool};

async fn insert_message(tx: &mut Tx, m: &NewMessage) -> Result<i64, StoreError> {
    touch_session(tx, &m.session_id, m.created_at).await?;
    Ok(sqlx::query_scalar(INSERT_MESSAGE)
        .bind(&m.session_id)
        .bind(m.role.as_str())
        .bind(&m.content)
        .bind(m.kind.as_str())
        .bind(&m.task_id)
        .bind(m.created_at)
        .fetch_one(&mut **tx)
        .await?)
}

pub(crate) async fn add_message(pool: &PgPool, m: &NewMessage) -> Result<i64, StoreError> {
    let mut tx = pool.begin().await?;
    let id = insert_message(&mut tx, m).await?;
    tx.commit().await?;
    Ok(id)
}

const CONVERSATION_TABLES: [&str; 3] = ["messages", "dispatches", "callback_inbox"];

pub(crate) async fn delete_conversation(
    pool: &PgPool,
    session_id: Option<&str>,
) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await?;
    let mut n = 0;
    let conversations: i64 = sqlx::query_scalar(
        "SELECT COUNT(DISTINCT session_id) FROM messages WHERE $1::text IS NULL",
    )
    .bind(session_id)
    .fetch_one(&mut *tx)
    .await?;
    for table in CONVERSATION_TABLES {
        n += sqlx::query(&format!(
            "DELETE FROM {table} WHERE $1::text IS NULL OR session_id = $1"
        ))
        .bind(session_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    tx.commit().await?;
    Ok(match session_id {
        Some(_) => n,
        None => conversations.max(0) as u64,
    })
}

pub(crate) async fn add_dispatch(pool: &PgPool, d: &DispatchRow) -> Result<(), StoreError> {
    sqlx::query(INSERT_DISPATCH)
        .bind(&d.request_id)
        .bind(&d.session_id)
        .bind(&d.analysis_session_id)
        .bind(d.kind.as_str())
        .bind(&d.user_message)
        .bind(d.created_at)
        .execute(pool)
        .await?;
    Ok(())
}

pub(crate) async fn receive_callback(pool: &PgPool, row: &InboxRow) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    touch_session(&mut tx, &row.session_id, row.received_at).await?;
    let n = sqlx::query(RECEIVE_CALLBACK)
        .bind(&row.key)
        .bind(&row.task_id)
        .bind(&row.session_id)
        .bind(&row.body)
        .bind(row.received_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(n == 1)
}

pub(crate) async fn answer_callback(
    pool: &PgPool,
    key: &str,
    reply: &NewMessage,
    notify: Option<&NewNotification>,
) -> Result<Option<(i64, Option<CallbackRow>)>, StoreError> {
    let mut tx = pool.begin().await?;
    // Locked: two nodes answering the same callback write one follow-up.
    let pending: Option<String> = sqlx::query_scalar(
        "SELECT status FROM callback_inbox WHERE key = $1 AND status = 'pending' FOR UPDATE",
    )
    .bind(key)
    .fetch_optional(&mut *tx)
    .await?;
    if pending.is_none() {
        return Ok(None);
    }
    let id = insert_message(&mut tx, reply).await?;
    sqlx::query(ANSWER_CALLBACK)
        .bind(id)
        .bind(key)
        .execute(&mut *tx)
        .await?;
    let notification = match notify {
        None => None,
        Some(n) => {
            let body = crate::commands::notification_body(reply, id);
            let task_id = reply.task_id.clone().unwrap_or_default();
            let mut row = CallbackRow::from_row(
                &sqlx::query(
                    "INSERT INTO notifications (id, task_id, url, body, status, attempts,
                                                next_attempt_at, created_at, lease_owner,
                                                lease_expires_at)
                     VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $6, $7) RETURNING *",
                )
                .bind(&n.id)
                .bind(&task_id)
                .bind(&n.url)
                .bind(&body)
                .bind(reply.created_at)
                .bind(&n.lease.owner)
                .bind(n.lease.until)
                .fetch_one(&mut *tx)
                .await?,
            )?;
            row.outbox = Outbox::Notifications;
            Some(row)
        }
    };
    tx.commit().await?;
    Ok(Some((id, notification)))
}
