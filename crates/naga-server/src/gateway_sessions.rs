//! The sessions of naga's MCP face, bounded: rmcp's in-memory session
//! manager keeps every session until its client says DELETE or it idles
//! out, and each costs ~100 KB, so a client that only initializes could
//! fill the memory. Here at most `[mcp] max_sessions` live at once: past
//! it the least recently used one is closed (its client's next request
//! gets 404, and a client initializes again, as the transport says), and
//! a session idle for `[mcp] session_idle_ms` is closed by rmcp itself.

use futures::Stream;
use rmcp::{
    model::{ClientJsonRpcMessage, ServerJsonRpcMessage},
    transport::streamable_http_server::{
        session::{
            local::{LocalSessionManager, LocalSessionManagerError},
            ServerSseMessage,
        },
        RestoreOutcome, SessionId, SessionManager,
    },
};
use std::{collections::HashMap, sync::Mutex, time::Duration};
use tokio::time::Instant;

/// rmcp's in-memory sessions, at most `max` of them.
pub struct BoundedSessions {
    inner: LocalSessionManager,
    max: usize,
    /// When each live session was last used.
    used: Mutex<HashMap<SessionId, Instant>>,
}

impl BoundedSessions {
    pub fn new(max: usize, idle: Duration) -> Self {
        let mut inner = LocalSessionManager::default();
        inner.session_config.keep_alive = Some(idle);
        Self {
            inner,
            max: max.max(1),
            used: Mutex::default(),
        }
    }

    fn touch(&self, id: &SessionId) {
        if let Some(at) = self.used.lock().unwrap().get_mut(id) {
            *at = Instant::now();
        }
    }

    /// The least recently used session, taken out, once the bound is reached.
    fn over_bound(&self) -> Option<SessionId> {
        let mut used = self.used.lock().unwrap();
        if used.len() < self.max {
            return None;
        }
        let oldest = used.iter().min_by_key(|(_, at)| **at)?.0.clone();
        used.remove(&oldest);
        Some(oldest)
    }
}

impl SessionManager for BoundedSessions {
    type Error = LocalSessionManagerError;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        while let Some(oldest) = self.over_bound() {
            tracing::warn!(mcp_session_id = %oldest, max_sessions = self.max,
                "MCP session closed: the least recently used, to make room for a new one");
            self.inner.close_session(&oldest).await?;
        }
        let (id, transport) = self.inner.create_session().await?;
        self.used.lock().unwrap().insert(id.clone(), Instant::now());
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.inner.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.inner.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        self.used.lock().unwrap().remove(id);
        self.inner.close_session(id).await
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.touch(id);
        self.inner.create_stream(id, message).await
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.touch(id);
        self.inner.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.touch(id);
        self.inner.create_standalone_stream(id).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.touch(id);
        self.inner.resume(id, last_event_id).await
    }

    async fn restore_session(
        &self,
        id: SessionId,
    ) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        self.inner.restore_session(id).await
    }
}
