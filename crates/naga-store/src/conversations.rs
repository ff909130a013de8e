//! The API server's data: conversation messages, the analyzer's
//! dispatches, and the inbox of callbacks received.

use crate::{
    backend::{on_backend, Commands},
    commands::{NewMessage, NewNotification},
    read,
    rows::{CallbackRow, ConversationRow, DispatchRow, InboxRow, MessageRow},
    Outbox, Store, StoreError,
};
use naga_core::time::Millis;

impl Store {
    /// Appends a message to its conversation; returns its id.
    pub async fn add_message(&self, m: NewMessage) -> Result<i64, StoreError> {
        on_backend!(self, |b| b.add_message(m).await)
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
        on_backend!(self, |b| b.delete_conversation(Some(session_id)).await)
    }

    /// Forgets every conversation (as [`Store::delete_conversation`]);
    /// returns how many there were.
    pub async fn delete_all_conversations(&self) -> Result<u64, StoreError> {
        on_backend!(self, |b| b.delete_conversation(None).await)
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
        on_backend!(self, |b| b.add_dispatch(d).await)
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
        on_backend!(self, |b| b.receive_callback(row).await)
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
        on_backend!(self, |b| b.answer_callback(key, reply, notify).await)
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
