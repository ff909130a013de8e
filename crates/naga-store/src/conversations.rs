//! The API server's data: conversation messages, the analyzer's
//! dispatches, and the inbox of callbacks received.

use crate::sqlite::stmts::Db;
use crate::{read, sqlite_or, writes::touch_session, CallbackRow, Outbox, Store, StoreError};
use naga_core::time::Millis;
use rusqlite::params;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MessageRow {
    pub id: i64,
    pub session_id: String,
    pub role: String,
    pub content: String,
    pub kind: String,
    pub task_id: Option<String>,
    pub created_at: Millis,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConversationRow {
    pub session_id: String,
    pub messages: i64,
    pub created_at: Millis,
    pub last_activity_at: Millis,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DispatchRow {
    pub request_id: String,
    pub session_id: String,
    pub analysis_session_id: String,
    pub kind: String,
    pub user_message: String,
    pub created_at: Millis,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InboxRow {
    pub key: String,
    pub task_id: String,
    pub session_id: String,
    pub body: String,
    pub status: String,
    pub reply_message_id: Option<i64>,
    pub received_at: Millis,
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    pub session_id: String,
    pub role: String,
    pub content: String,
    pub kind: &'static str,
    pub task_id: Option<String>,
    pub created_at: Millis,
}

/// Where a follow-up is also announced, and the webhook id of that delivery.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub id: String,
    pub url: String,
    /// The node that delivers it, and until when (see `TaskFinish::lease_until`).
    pub lease: crate::Lease,
}

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
        status: "pending".into(),
        attempts: 0,
        next_attempt_at: now,
        last_error: None,
        created_at: now,
        delivered_at: None,
    })
}

/// The JSON body of follow-up `message_id`'s UI notification.
pub(crate) fn notification_body(reply: &NewMessage, message_id: i64) -> String {
    serde_json::json!({
        "session_id": reply.session_id, "action": "show_tool_ai_response",
        "ai_response": reply.content, "task_id": reply.task_id, "message_id": message_id,
    })
    .to_string()
}

fn insert_message(c: &Db, m: &NewMessage) -> Result<i64, StoreError> {
    touch_session(c, &m.session_id, m.created_at)?;
    let id = c
        .cached(
            "INSERT INTO messages (session_id, role, content, kind, task_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
        )?
        .query_row(
            params![
                m.session_id,
                m.role,
                m.content,
                m.kind,
                m.task_id,
                m.created_at
            ],
            |r| r.get(0),
        )?;
    Ok(id)
}

impl Store {
    /// Appends a message to its conversation; returns its id.
    pub async fn add_message(&self, m: NewMessage) -> Result<i64, StoreError> {
        let (writer, _) = sqlite_or!(self, |pg| crate::postgres::add_message(pg, &m));
        writer.write(move |c| insert_message(c, &m)).await
    }

    /// The last `limit` messages of a conversation, oldest first.
    pub async fn messages(
        &self,
        session_id: &str,
        limit: i64,
    ) -> Result<Vec<MessageRow>, StoreError> {
        read!(self, |pool| {
            let mut rows: Vec<MessageRow> = sqlx::query_as(
                "SELECT * FROM messages WHERE session_id = $1 ORDER BY id DESC LIMIT $2",
            )
            .bind(session_id)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.reverse();
            Ok(rows)
        })
    }

    /// Conversations (sessions with messages), most recently active first.
    pub async fn conversations(
        &self,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<ConversationRow>, StoreError> {
        read!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT s.id AS session_id, COUNT(m.id) AS messages, s.created_at, s.last_activity_at
                 FROM sessions s JOIN messages m ON m.session_id = s.id
                 GROUP BY s.id ORDER BY s.last_activity_at DESC LIMIT $1 OFFSET $2",
            )
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Forgets a conversation's messages and what was received for it.
    /// Its tasks stay (they are the agent server's history).
    pub async fn delete_conversation(&self, session_id: &str) -> Result<u64, StoreError> {
        let (writer, _) = sqlite_or!(self, |pg| crate::postgres::delete_conversation(
            pg,
            Some(session_id)
        ));
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

    /// Forgets every conversation (as [`Store::delete_conversation`]);
    /// returns how many there were.
    pub async fn delete_all_conversations(&self) -> Result<u64, StoreError> {
        let (writer, _) = sqlite_or!(self, |pg| crate::postgres::delete_conversation(pg, None));
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

    /// Messages of every conversation written at or after `since`: the
    /// last `limit`, oldest first.
    pub async fn recent_messages(
        &self,
        since: Millis,
        limit: i64,
    ) -> Result<Vec<MessageRow>, StoreError> {
        read!(self, |pool| {
            let mut rows: Vec<MessageRow> = sqlx::query_as(
                "SELECT * FROM messages WHERE created_at >= $1 ORDER BY id DESC LIMIT $2",
            )
            .bind(since)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.reverse();
            Ok(rows)
        })
    }

    /// Messages written at or after `since`: `[all, the user's, the
    /// days (UTC) that have any]`.
    pub async fn message_counts(&self, since: Millis) -> Result<[i64; 3], StoreError> {
        read!(self, |pool| {
            let (all, user, days): (i64, i64, i64) = sqlx::query_as(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE role = 'user'), COUNT(DISTINCT created_at / 86400000)
                 FROM messages WHERE created_at >= $1",
            )
            .bind(since)
            .fetch_one(pool)
            .await?;
            Ok([all, user, days])
        })
    }

    pub async fn add_dispatch(&self, d: DispatchRow) -> Result<(), StoreError> {
        let (writer, _) = sqlite_or!(self, |pg| crate::postgres::add_dispatch(pg, &d));
        writer
            .write(move |c| {
                c.cached(
                    "INSERT INTO dispatches (request_id, session_id, analysis_session_id, kind, user_message, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (request_id) DO NOTHING",
                )?
                .execute(params![d.request_id, d.session_id, d.analysis_session_id, d.kind, d.user_message, d.created_at])?;
                Ok(())
            })
            .await
    }

    pub async fn dispatch(&self, request_id: &str) -> Result<Option<DispatchRow>, StoreError> {
        read!(self, |pool| {
            Ok(
                sqlx::query_as("SELECT * FROM dispatches WHERE request_id = $1")
                    .bind(request_id)
                    .fetch_optional(pool)
                    .await?,
            )
        })
    }

    /// Records a received callback. False when its key was seen before
    /// (a redelivery): nothing changes then.
    pub async fn receive_callback(&self, row: InboxRow) -> Result<bool, StoreError> {
        let (writer, _) = sqlite_or!(self, |pg| crate::postgres::receive_callback(pg, &row));
        writer
            .write(move |c| {
                touch_session(c, &row.session_id, row.received_at)?;
                let n = c
                    .cached(
                        "INSERT INTO callback_inbox (key, task_id, session_id, body, status, received_at)
                         VALUES (?1, ?2, ?3, ?4, 'pending', ?5) ON CONFLICT (key) DO NOTHING",
                    )?
                    .execute(params![row.key, row.task_id, row.session_id, row.body, row.received_at])?;
                Ok(n == 1)
            })
            .await
    }

    /// Received callbacks still waiting for their follow-up, oldest first.
    pub async fn pending_inbox(&self) -> Result<Vec<InboxRow>, StoreError> {
        read!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT * FROM callback_inbox WHERE status = 'pending' ORDER BY received_at, key",
            )
            .fetch_all(pool)
            .await?)
        })
    }

    /// Saves the follow-up of a received callback and marks it answered, in
    /// one transaction. `None` when it was answered already.
    pub async fn answer_callback(
        &self,
        key: &str,
        reply: NewMessage,
        notify: Option<NewNotification>,
    ) -> Result<Option<(i64, Option<CallbackRow>)>, StoreError> {
        let (writer, _) = sqlite_or!(self, |pg| crate::postgres::answer_callback(
            pg,
            key,
            &reply,
            notify.as_ref()
        ));
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
                c.cached("UPDATE callback_inbox SET status = 'done', reply_message_id = ?2 WHERE key = ?1")?
                    .execute(params![key, id])?;
                let notification = match &notify {
                    Some(n) => Some(insert_notification(c, n, &reply, id)?),
                    None => None,
                };
                Ok(Some((id, notification)))
            })
            .await
    }

    /// UI notifications still to deliver, oldest first (after a restart).
    pub async fn pending_notifications(&self) -> Result<Vec<CallbackRow>, StoreError> {
        read!(self, |pool| {
            let mut rows: Vec<CallbackRow> =
                sqlx::query_as("SELECT * FROM notifications WHERE status = 'pending' ORDER BY seq")
                    .fetch_all(pool)
                    .await?;
            for r in &mut rows {
                r.outbox = Outbox::Notifications;
            }
            Ok(rows)
        })
    }
}
