//! The API server's data: conversation messages, the analyzer's
//! dispatches, and the inbox of callbacks received.

use crate::{writes::touch_session, Store, StoreError};
use naga_core::time::Millis;

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

async fn insert_message(c: &mut sqlx::SqliteConnection, m: &NewMessage) -> Result<i64, StoreError> {
    touch_session(c, &m.session_id, m.created_at).await?;
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO messages (session_id, role, content, kind, task_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
    )
    .bind(&m.session_id)
    .bind(&m.role)
    .bind(&m.content)
    .bind(m.kind)
    .bind(&m.task_id)
    .bind(m.created_at)
    .fetch_one(&mut *c)
    .await?;
    Ok(id)
}

impl Store {
    /// Appends a message to its conversation; returns its id.
    pub async fn add_message(&self, m: NewMessage) -> Result<i64, StoreError> {
        self.writer
            .write(move |c| Box::pin(async move { insert_message(c, &m).await }))
            .await
    }

    /// The last `limit` messages of a conversation, oldest first.
    pub async fn messages(
        &self,
        session_id: &str,
        limit: i64,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let mut rows: Vec<MessageRow> = sqlx::query_as(
            "SELECT * FROM messages WHERE session_id = ?1 ORDER BY id DESC LIMIT ?2",
        )
        .bind(session_id)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.reverse();
        Ok(rows)
    }

    /// Conversations (sessions with messages), most recently active first.
    pub async fn conversations(
        &self,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<ConversationRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT s.id AS session_id, COUNT(m.id) AS messages, s.created_at, s.last_activity_at
             FROM sessions s JOIN messages m ON m.session_id = s.id
             GROUP BY s.id ORDER BY s.last_activity_at DESC LIMIT ?1 OFFSET ?2",
        )
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.read)
        .await?)
    }

    /// Forgets a conversation's messages and what was received for it.
    /// Its tasks stay (they are the agent server's history).
    pub async fn delete_conversation(&self, session_id: &str) -> Result<u64, StoreError> {
        let session_id = session_id.to_owned();
        self.writer
            .write(move |c| {
                Box::pin(async move {
                    let mut n = 0;
                    for table in ["messages", "dispatches", "callback_inbox"] {
                        n += sqlx::query(&format!("DELETE FROM {table} WHERE session_id = ?1"))
                            .bind(&session_id)
                            .execute(&mut *c)
                            .await?
                            .rows_affected();
                    }
                    Ok(n)
                })
            })
            .await
    }

    pub async fn add_dispatch(&self, d: DispatchRow) -> Result<(), StoreError> {
        self.writer
            .write(move |c| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO dispatches (request_id, session_id, analysis_session_id, kind,
                             user_message, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                         ON CONFLICT (request_id) DO NOTHING",
                    )
                    .bind(&d.request_id)
                    .bind(&d.session_id)
                    .bind(&d.analysis_session_id)
                    .bind(&d.kind)
                    .bind(&d.user_message)
                    .bind(d.created_at)
                    .execute(&mut *c)
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    pub async fn dispatch(&self, request_id: &str) -> Result<Option<DispatchRow>, StoreError> {
        Ok(
            sqlx::query_as("SELECT * FROM dispatches WHERE request_id = ?1")
                .bind(request_id)
                .fetch_optional(&self.read)
                .await?,
        )
    }

    /// Records a received callback. False when its key was seen before
    /// (a redelivery): nothing changes then.
    pub async fn receive_callback(&self, row: InboxRow) -> Result<bool, StoreError> {
        self.writer
            .write(move |c| {
                Box::pin(async move {
                    touch_session(c, &row.session_id, row.received_at).await?;
                    let done = sqlx::query(
                        "INSERT INTO callback_inbox (key, task_id, session_id, body, status, received_at)
                         VALUES (?1, ?2, ?3, ?4, 'pending', ?5) ON CONFLICT (key) DO NOTHING",
                    )
                    .bind(&row.key)
                    .bind(&row.task_id)
                    .bind(&row.session_id)
                    .bind(&row.body)
                    .bind(row.received_at)
                    .execute(&mut *c)
                    .await?;
                    Ok(done.rows_affected() == 1)
                })
            })
            .await
    }

    /// Received callbacks still waiting for their follow-up, oldest first.
    pub async fn pending_inbox(&self) -> Result<Vec<InboxRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM callback_inbox WHERE status = 'pending' ORDER BY received_at, key",
        )
        .fetch_all(&self.read)
        .await?)
    }

    /// Saves the follow-up of a received callback and marks it answered, in
    /// one transaction. `None` when it was answered already.
    pub async fn answer_callback(
        &self,
        key: &str,
        reply: NewMessage,
    ) -> Result<Option<i64>, StoreError> {
        let key = key.to_owned();
        self.writer
            .write(move |c| {
                Box::pin(async move {
                    let pending: Option<(String,)> =
                        sqlx::query_as("SELECT key FROM callback_inbox WHERE key = ?1 AND status = 'pending'")
                            .bind(&key)
                            .fetch_optional(&mut *c)
                            .await?;
                    if pending.is_none() {
                        return Ok(None);
                    }
                    let id = insert_message(c, &reply).await?;
                    sqlx::query("UPDATE callback_inbox SET status = 'done', reply_message_id = ?2 WHERE key = ?1")
                        .bind(&key)
                        .bind(id)
                        .execute(&mut *c)
                        .await?;
                    Ok(Some(id))
                })
            })
            .await
    }
}
