//! Server-sent events to the UI, per session.
//!
//! An event is rendered once, as the SSE frame every subscriber sends
//! (`Bytes`: shared, not copied, however many listen). A session's
//! channel keeps at most [`BACKLOG`] events for subscribers that have not
//! read them; one that falls further behind is told what it missed.

use bytes::Bytes;
use serde_json::Value;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};
use tokio::sync::broadcast;

type Channels = Arc<Mutex<HashMap<String, broadcast::Sender<Bytes>>>>;

/// Events kept per session for subscribers that have not read them yet.
pub const BACKLOG: usize = 64;

/// Fan-out of events to the subscribers of each session. A session's
/// channel exists while someone listens: the last [`Subscription`] of a
/// session to close removes it.
#[derive(Default)]
pub struct EventHub {
    channels: Channels,
}

/// One listener's events. Dropping it (the client went away) frees its
/// session's channel when it was the last listener.
pub struct Subscription {
    rx: Option<broadcast::Receiver<Bytes>>,
    session_id: String,
    channels: Channels,
}

impl Subscription {
    /// The next event's SSE frame (`event: <type>`, `data: <json>`); after
    /// falling behind, a `lagged` event saying how many were missed.
    /// `None` once the hub is gone.
    pub async fn next_frame(&mut self) -> Option<Bytes> {
        let rx = self.rx.as_mut()?;
        match rx.recv().await {
            Ok(frame) => Some(frame),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(session_id = %self.session_id, missed,
                    "a slow event listener missed events");
                Some(frame(
                    "lagged",
                    &serde_json::json!({"type": "lagged", "missed": missed}),
                ))
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// The SSE frame of an event (its JSON is one line).
fn frame(kind: &str, event: &Value) -> Bytes {
    Bytes::from(format!("event: {kind}\ndata: {event}\n\n"))
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.rx.take());
        let mut channels = self.channels.lock().unwrap();
        if channels
            .get(&self.session_id)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            channels.remove(&self.session_id);
        }
    }
}

impl EventHub {
    pub fn subscribe(&self, session_id: &str) -> Subscription {
        let mut channels = self.channels.lock().unwrap();
        let rx = channels
            .entry(session_id.to_owned())
            .or_insert_with(|| broadcast::channel(BACKLOG).0)
            .subscribe();
        Subscription {
            rx: Some(rx),
            session_id: session_id.to_owned(),
            channels: self.channels.clone(),
        }
    }

    /// Sends to the session's subscribers; returns how many got it.
    pub fn publish(&self, session_id: &str, event: Value) -> usize {
        let channels = self.channels.lock().unwrap();
        match channels.get(session_id) {
            Some(tx) => {
                let kind = event["type"].as_str().unwrap_or("message");
                tx.send(frame(kind, &event)).unwrap_or(0)
            }
            None => 0,
        }
    }

    /// Sessions with at least one listener.
    pub fn sessions_listened(&self) -> usize {
        self.channels.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_s_channel_goes_with_its_last_listener() {
        let hub = EventHub::default();
        let a = hub.subscribe("s");
        let b = hub.subscribe("s");
        let other = hub.subscribe("t");
        assert_eq!(hub.sessions_listened(), 2);
        drop(a);
        assert_eq!(hub.publish("s", Value::Null), 1, "b still listens");
        drop(b);
        assert_eq!(hub.sessions_listened(), 1);
        assert_eq!(hub.publish("s", Value::Null), 0);
        drop(other);
        assert_eq!(hub.sessions_listened(), 0);
    }

    #[tokio::test]
    async fn a_listener_that_falls_behind_is_told_what_it_missed() {
        let hub = EventHub::default();
        let mut slow = hub.subscribe("s");
        for i in 0..BACKLOG + 5 {
            hub.publish("s", serde_json::json!({"type": "followup", "n": i}));
        }
        let first = slow.next_frame().await.unwrap();
        let text = String::from_utf8_lossy(&first);
        assert!(text.starts_with("event: lagged\n"), "{text}");
        assert!(text.contains("\"missed\":5"), "{text}");
        let next = slow.next_frame().await.unwrap();
        assert!(
            String::from_utf8_lossy(&next).contains("\"n\":5"),
            "the oldest kept"
        );
    }
}
