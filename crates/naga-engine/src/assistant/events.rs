//! Server-sent events to the UI, per session.

use serde_json::Value;
use std::{collections::HashMap, sync::Mutex};
use tokio::sync::broadcast;

/// Fan-out of events to the subscribers of each session. A session's
/// channel exists while someone listens.
#[derive(Default)]
pub struct EventHub {
    channels: Mutex<HashMap<String, broadcast::Sender<Value>>>,
}

impl EventHub {
    pub fn subscribe(&self, session_id: &str) -> broadcast::Receiver<Value> {
        let mut channels = self.channels.lock().unwrap();
        channels
            .entry(session_id.to_owned())
            .or_insert_with(|| broadcast::channel(256).0)
            .subscribe()
    }

    /// Sends to the session's subscribers; returns how many got it.
    pub fn publish(&self, session_id: &str, event: Value) -> usize {
        let mut channels = self.channels.lock().unwrap();
        let Some(tx) = channels.get(session_id) else {
            return 0;
        };
        match tx.send(event) {
            Ok(n) => n,
            Err(_) => {
                channels.remove(session_id);
                0
            }
        }
    }
}
