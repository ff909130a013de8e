//! The API server's conversations on SQLite: messages, dispatches, the
//! callbacks it received and the follow-ups it answered them with.

use super::{stmts::Db, tasks::touch_session, writer::Writer};
use crate::sql::{ANSWER_CALLBACK, INSERT_DISPATCH, INSERT_MESSAGE, RECEIVE_CALLBACK};
use crate::{
    commands::{notification_body, NewMessage, NewNotification},
    rows::{CallbackRow, DispatchRow, InboxRow},
    Outbox, StoreError,
};
use naga_core::DeliveryStatus;
use rusqlite::params;

/// The UI notification of follow-up `message_id`: upstream's
/// `show_tool_ai_response` payload, with naga's ids beside.
fn insert_notification(
    c: &Db,
    n: &NewNotification,
    reply: &NewMessage,
    message_id: i64,
) -> Result<CallbackRow, StoreError> {
    let body = notification_body(reply, message_id);
    let task_id = reply.task_id.clone().unwrap_or_default();
    let now = reply.created_at;
    c.cached(
        "INSERT INTO notifications (id, task_id, url, body, status, attempts, next_attempt_at,
                                    created_at, lease_owner, lease_expires_at)
         VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5, ?6, ?7)",
    )?
    .execute(params![
        n.id,
        task_id,
        n.url,
        body,
        now,
        n.lease.owner,
        n.lease.until
    ])?;
    Ok(CallbackRow {
        outbox: Outbox::Notifications,
        seq: c.last_insert_rowid(),
        id: n.id.clone(),
        task_id,
        url: n.url.clone(),
        body,
        status: DeliveryStatus::Pending,
        attempts: 0,
        next_attempt_at: now,
        last_error: None,
        created_at: now,
        delivered_at: None,
        body_len: 0,
    })
}

fn insert_message(c: &Db, m: &NewMessage) -> Result<i64, StoreError> {
    touch_session(c, &m.session_id, m.created_at)?;
    let id = c.cached(INSERT_MESSAGE)?.query_row(
        params![
            m.session_id,
            m.role.as_str(),
            m.content,
            m.kind.as_str(),
            m.task_id,
            m.created_at
        ],
        |r| r.get(0),
    )?;
    Ok(id)
}

pub(crate) async fn add_message(writer: &Writer, m: NewMessage) -> Result<i64, StoreError> {
    writer.write(move |c| insert_message(c, &m)).await
}

pub(crate) async fn delete_conversation(
    writer: &Writer,
    session_id: &str,
) -> Result<u64, StoreError> {
    let session_id = session_id.to_owned();
    writer
        .write(move |c| {
            let mut n = 0;
            for table in ["messages", "dispatches", "callback_inbox"] {
                n += c.execute(
                    &format!("DELETE FROM {table} WHERE session_id = ?1"),
                    params![session_id],
                )? as u64;
            }
            Ok(n)
        })
        .await
}

pub(crate) async fn delete_all_conversations(writer: &Writer) -> Result<u64, StoreError> {
    writer
        .write(|c| {
            let n = c
                .cached("SELECT COUNT(DISTINCT session_id) FROM messages")?
                .query_row([], |r| r.get::<_, i64>(0))?;
            for table in ["messages", "dispatches", "callback_inbox"] {
                c.execute(&format!("DELETE FROM {table}"), [])?;
            }
            Ok(n.max(0) as u64)
        })
        .await
}

pub(crate) async fn add_dispatch(writer: &Writer, d: DispatchRow) -> Result<(), StoreError> {
    writer
        .write(move |c| {
            c.cached(INSERT_DISPATCH)?.execute(params![
                d.request_id,
                d.session_id,
                d.analysis_session_id,
                d.kind.as_str(),
                d.user_message,
                d.created_at
            ])?;
            Ok(())
        })
        .await
}

pub(crate) async fn receive_callback(writer: &Writer, row: InboxRow) -> Result<bool, StoreError> {
    writer
        .write(move |c| {
            touch_session(c, &row.session_id, row.received_at)?;
            let n = c.cached(RECEIVE_CALLBACK)?.execute(params![
                row.key,
                row.task_id,
                row.session_id,
                row.body,
                row.received_at
            ])?;
            Ok(n == 1)
        })
        .await
}

pub(crate) async fn answer_callback(
    writer: &Writer,
    key: &str,
    reply: NewMessage,
    notify: Option<NewNotification>,
) -> Result<Option<(i64, Option<CallbackRow>)>, StoreError> {
    let key = key.to_owned();
    writer
        .write(move |c| {
            let pending = c
                .cached("SELECT 1 FROM callback_inbox WHERE key = ?1 AND status = 'pending'")?
                .exists(params![key])?;
            if !pending {
                return Ok(None);
            }
            let id = insert_message(c, &reply)?;
            c.cached(ANSWER_CALLBACK)?.execute(params![id, key])?;
            let notification = match &notify {
                Some(n) => Some(insert_notification(c, n, &reply, id)?),
                None => None,
            };
            Ok(Some((id, notification)))
        })
        .await
}
