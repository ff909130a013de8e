//! Server-sent events to the UI, per session.

use serde_json::Value;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};
use tokio::sync::broadcast;

type Channels = Arc<Mutex<HashMap<String, broadcast::Sender<Value>>>>;

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
    rx: Option<broadcast::Receiver<Value>>,
    session_id: String,
    channels: Channels,
}

impl Subscription {
    pub async fn recv(&mut self) -> Result<Value, broadcast::error::RecvError> {
        match &mut self.rx {
            Some(rx) => rx.recv().await,
            None => Err(broadcast::error::RecvError::Closed),
        }
    }
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
            .or_insert_with(|| broadcast::channel(256).0)
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
            Some(tx) => tx.send(event).unwrap_or(0),
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
}
