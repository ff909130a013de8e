//! The API server's logic: conversations with the LLM, the background
//! analyzer that turns a turn into batches for the agent and MCP servers,
//! and the follow-up reply when their callbacks come back.

mod analyzer;
mod events;
mod prompts;

pub use events::EventHub;
pub use prompts::Prompts;

use crate::{
    callbacks,
    llm::{ChatMessage, LlmClient, LlmError},
    Engine, EngineError,
};
use naga_core::{ids::new_request_id, time::iso, InboxStatus, MessageKind, MessageRole, SessionId};
use naga_store::{InboxRow, MessageRow, NewMessage, NewNotification};
use serde_json::{json, Value};
use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};
use tokio::sync::mpsc;

/// Messages of history sent with each turn.
const HISTORY: i64 = 20;
/// The same, in rounds (a user message and its answer), as upstream says it.
pub const MAX_HISTORY_ROUNDS: i64 = HISTORY / 2;

/// Where the three services are, for the analyzer's requests and the
/// callback URLs it hands out.
#[derive(Debug, Clone)]
pub struct Links {
    pub api: String,
    pub agent: String,
    pub mcp: String,
}

#[derive(Clone)]
pub struct Assistant {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    llm: Option<LlmClient>,
    prompts: Prompts,
    events: EventHub,
    links: Links,
    http: reqwest::Client,
    /// Sessions with an analysis in flight (at most one each).
    analysing: Mutex<HashSet<String>>,
    /// `[callbacks] secret` and the keys being rotated out: a callback
    /// received must be signed with one of them (when any is set).
    signing_keys: Vec<Vec<u8>>,
    /// Session events for the other nodes of a shared database, in order.
    broadcast: mpsc::UnboundedSender<String>,
    /// The other nodes' session events are heard (set once listening).
    hearing_others: std::sync::atomic::AtomicBool,
}

/// A chat turn's answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub session_id: String,
    pub response: String,
}

/// The headers of a received callback.
#[derive(Debug, Clone, Default)]
pub struct WebhookHeaders {
    pub id: Option<String>,
    pub timestamp: Option<String>,
    pub signature: Option<String>,
}

/// Oldest accepted `webhook-timestamp`, in seconds from now.
const SIGNATURE_TOLERANCE_SECS: i64 = 300;

impl Assistant {
    /// Where naga's services are.
    pub fn links(&self) -> &Links {
        &self.inner.links
    }

    pub fn new(engine: Engine, links: Links) -> Self {
        let config = engine.config();
        let llm = LlmClient::from_config(&config.llm);
        let prompts = Prompts::load(&config.data_dir.join("prompts"));
        let signing_keys = config
            .callbacks
            .secret
            .iter()
            .chain(&config.callbacks.previous_secrets)
            .filter_map(|s| callbacks::parse_secret(s).ok())
            .collect();
        let http = crate::own_services_client(config);
        tracing::info!(llm = llm.is_some(), "assistant ready");
        let (broadcast, outgoing) = mpsc::unbounded_channel();
        let assistant = Self {
            inner: Arc::new(Inner {
                engine,
                llm,
                prompts,
                events: EventHub::default(),
                links,
                http,
                analysing: Mutex::default(),
                signing_keys,
                broadcast,
                hearing_others: Default::default(),
            }),
        };
        let resume = assistant.clone();
        assistant.spawn(async move { resume.answer_pending().await });
        assistant.share_events(outgoing);
        assistant
    }

    /// On a database shared by several nodes (PostgreSQL), a session's
    /// events reach its SSE listeners on every node: what this node
    /// publishes is broadcast (one sender, so in order), and what the
    /// others broadcast is published here.
    fn share_events(&self, mut outgoing: mpsc::UnboundedReceiver<String>) {
        let store = self.store().clone();
        let engine = self.inner.engine.clone();
        let node = engine.scheduler().node_id().to_owned();
        let this = Arc::downgrade(&self.inner);
        let stop = engine.stopping().clone();
        engine.clone().spawn_background(async move {
            let mut incoming = match store.listen(naga_store::Channel::Events).await {
                Ok(Some(rx)) => rx,
                Ok(None) => return, // SQLite: one node
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen to other nodes' session events");
                    return;
                }
            };
            if let Some(inner) = this.upgrade() {
                inner
                    .hearing_others
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            let (sender, sender_stop) = (store.clone(), stop.clone());
            engine.spawn_background(async move {
                loop {
                    let payload = tokio::select! {
                        p = outgoing.recv() => p,
                        _ = sender_stop.cancelled() => None,
                    };
                    let Some(payload) = payload else { return };
                    if let Err(e) = sender
                        .broadcast(naga_store::Channel::Events, &payload)
                        .await
                    {
                        tracing::warn!(error = %e, "a session event did not reach the other nodes");
                    }
                }
            });
            loop {
                let payload = tokio::select! {
                    p = incoming.recv() => p,
                    _ = stop.cancelled() => None,
                };
                let Some(payload) = payload else { return };
                let Some(inner) = this.upgrade() else { return };
                let Ok(shared) = serde_json::from_str::<Value>(&payload) else {
                    continue;
                };
                if shared["node"] == node.as_str() {
                    continue;
                }
                if let (Some(session), Some(event)) =
                    (shared["session_id"].as_str(), shared.get("event"))
                {
                    inner.events.publish(session, event.clone());
                }
            }
        });
    }

    /// Runs `task` as one of the engine's background tasks: it is dropped
    /// when the engine stops (what it had not stored yet is taken up again
    /// at the next start: the inbox keeps unanswered callbacks).
    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let stop = self.inner.engine.stopping().clone();
        self.inner.engine.spawn_background(async move {
            tokio::select! {
                _ = task => {}
                _ = stop.cancelled() => {}
            }
        });
    }

    /// Publishes a session event to its listeners here and on the other
    /// nodes; returns how many listen here.
    fn publish(&self, session_id: &str, event: Value) -> usize {
        if self.store().is_shared() {
            let node = self.inner.engine.scheduler().node_id();
            let _ = self
                .inner
                .broadcast
                .send(shared_event(node, session_id, &event));
        }
        self.inner.events.publish(session_id, event)
    }

    pub fn events(&self) -> &EventHub {
        &self.inner.events
    }

    /// Whether this node hears the session events of the other nodes of a
    /// shared database (always false on SQLite: there are none).
    pub fn hears_other_nodes(&self) -> bool {
        self.inner
            .hearing_others
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn llm_configured(&self) -> bool {
        self.inner.llm.is_some()
    }

    fn llm(&self) -> Result<&LlmClient, EngineError> {
        self.inner
            .llm
            .as_ref()
            .ok_or(EngineError::Llm(LlmError::NotConfigured))
    }

    fn store(&self) -> &naga_store::Store {
        self.inner.engine.store()
    }

    fn now(&self) -> i64 {
        self.inner.engine.clock().now_ms()
    }

    /// Checks the message and session of a turn; makes a session id when
    /// there is none.
    fn turn(message: &str, session_id: Option<String>) -> Result<(String, SessionId), EngineError> {
        let message = message.trim();
        if message.is_empty() {
            return Err(EngineError::Invalid(
                "`message` is empty: say something".into(),
            ));
        }
        let session = SessionId::parse(session_id.unwrap_or_else(new_request_id))
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        Ok((message.to_owned(), session))
    }

    async fn save(
        &self,
        session: &str,
        role: MessageRole,
        content: &str,
    ) -> Result<i64, EngineError> {
        Ok(self
            .store()
            .add_message(NewMessage {
                session_id: session.to_owned(),
                role,
                content: content.to_owned(),
                kind: MessageKind::Chat,
                task_id: None,
                created_at: self.now(),
            })
            .await?)
    }

    /// The prompt of a turn: system prompt, recent history, the new message.
    async fn prompt(&self, session: &str, message: &str) -> Result<Vec<ChatMessage>, EngineError> {
        let history = self.store().messages(session, HISTORY).await?;
        let mut prompt = vec![ChatMessage::new("system", &self.inner.prompts.system)];
        prompt.extend(
            history
                .iter()
                .map(|m| ChatMessage::new(m.role.as_str(), &m.content)),
        );
        prompt.push(ChatMessage::new("user", message));
        Ok(prompt)
    }

    /// `POST /chat`: the user's message is saved first, so an LLM failure
    /// loses nothing; the reply is saved; then the turn is analysed.
    pub async fn chat(
        &self,
        message: &str,
        session_id: Option<String>,
        skip_analysis: bool,
    ) -> Result<Reply, EngineError> {
        let llm = self.llm()?.clone();
        let (message, session) = Self::turn(message, session_id)?;
        let prompt = self.prompt(session.as_str(), &message).await?;
        self.save(session.as_str(), MessageRole::User, &message)
            .await?;
        let response = llm.chat(&prompt).await.map_err(EngineError::Llm)?;
        self.save(session.as_str(), MessageRole::Assistant, &response)
            .await?;
        if !skip_analysis {
            self.spawn_analysis(session.as_str(), &message);
        }
        Ok(Reply {
            session_id: session.into_string(),
            response,
        })
    }

    /// `POST /chat/stream`: the text as the LLM writes it. The reply is
    /// saved when it is complete, whether or not the client still listens.
    pub async fn chat_stream(
        &self,
        message: &str,
        session_id: Option<String>,
        skip_analysis: bool,
    ) -> Result<(String, mpsc::Receiver<Result<String, LlmError>>), EngineError> {
        use futures::StreamExt;
        let llm = self.llm()?.clone();
        let (message, session) = Self::turn(message, session_id)?;
        let prompt = self.prompt(session.as_str(), &message).await?;
        self.save(session.as_str(), MessageRole::User, &message)
            .await?;
        let mut stream = llm.chat_stream(&prompt).await.map_err(EngineError::Llm)?;
        let (tx, rx) = mpsc::channel(64);
        let this = self.clone();
        let session = session.into_string();
        let id = session.clone();
        self.spawn(async move {
            let mut text = String::new();
            while let Some(piece) = stream.next().await {
                match piece {
                    Ok(t) => {
                        text.push_str(&t);
                        let _ = tx.send(Ok(t)).await;
                    }
                    Err(e) => {
                        tracing::warn!(session_id = %session, error = %e, "LLM stream broke off");
                        let _ = tx.send(Err(e)).await;
                        break;
                    }
                }
            }
            if text.is_empty() {
                return;
            }
            if let Err(e) = this.save(&session, MessageRole::Assistant, &text).await {
                tracing::error!(session_id = %session, error = %e, "cannot save the streamed reply");
                return;
            }
            if !skip_analysis {
                this.spawn_analysis(&session, &message);
            }
        });
        Ok((id, rx))
    }

    pub async fn history(&self, session_id: &str) -> Result<Vec<MessageRow>, EngineError> {
        Ok(self.store().messages(session_id, i64::MAX).await?)
    }

    /// `POST /tool_notification`: passes a notification to the session's UI.
    pub fn notify(&self, session_id: &str, mut event: Value) -> usize {
        if event.get("type").is_none() {
            event["type"] = json!("tool_notification");
        }
        self.publish(session_id, event)
    }

    /// A callback from the agent or MCP server: verified (when a secret is
    /// configured), recorded once per webhook-id (else per task), answered
    /// in the background. Returns false for a redelivery.
    pub async fn receive_callback(
        &self,
        headers: &WebhookHeaders,
        raw: &str,
    ) -> Result<bool, EngineError> {
        if !self.inner.signing_keys.is_empty() {
            self.verify(headers, raw)?;
        }
        let body: Value = serde_json::from_str(raw)
            .map_err(|e| EngineError::Invalid(format!("the callback body is not JSON: {e}")))?;
        let field = |k: &str| {
            body.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| EngineError::Invalid(format!("the callback has no `{k}`")))
        };
        // Upstream's agent server names the batch `request_id` only, its
        // MCP server `task_id` only; naga sends both (equal).
        let task_id = field("task_id")
            .or_else(|_| field("request_id"))
            .map_err(|_| {
                EngineError::Invalid("the callback has no `task_id` (or `request_id`)".into())
            })?;
        let session_id = field("session_id")?;
        let invalid = |e: naga_core::IdError| EngineError::Invalid(e.to_string());
        SessionId::parse(session_id.as_str()).map_err(invalid)?;
        naga_core::ids::validate_id("task_id", &task_id).map_err(invalid)?;
        if let Some(id) = &headers.id {
            naga_core::ids::validate_id("webhook-id", id).map_err(invalid)?;
        }
        let key = headers
            .id
            .clone()
            .unwrap_or_else(|| format!("task:{task_id}"));
        let row = InboxRow {
            key: key.clone(),
            task_id: task_id.clone(),
            session_id: session_id.clone(),
            body: raw.to_owned(),
            status: InboxStatus::Pending,
            reply_message_id: None,
            received_at: self.now(),
        };
        let new = self.store().receive_callback(row.clone()).await?;
        tracing::info!(session_id = %session_id, task_id = %task_id, webhook_id = %key, new,
            analysis_session_id = body["analysis_session_id"].as_str().unwrap_or(""),
            "callback received");
        if new {
            let this = self.clone();
            self.spawn(async move { this.answer(row).await });
        }
        Ok(new)
    }

    fn verify(&self, h: &WebhookHeaders, raw: &str) -> Result<(), EngineError> {
        let unauthorized =
            |why: &str| EngineError::Unauthorized(format!("callback refused: {why}"));
        let (Some(id), Some(ts), Some(sig)) = (&h.id, &h.timestamp, &h.signature) else {
            return Err(unauthorized(
                "webhook-id, webhook-timestamp and webhook-signature are required",
            ));
        };
        let ts_secs: i64 = ts
            .parse()
            .map_err(|_| unauthorized("webhook-timestamp is not a number"))?;
        if (self.inner.engine.clock().now().timestamp() - ts_secs).abs() > SIGNATURE_TOLERANCE_SECS
        {
            return Err(unauthorized(
                "webhook-timestamp is too old or in the future",
            ));
        }
        let signed = self.inner.signing_keys.iter().any(|key| {
            let expected = callbacks::sign(key, id, ts_secs, raw);
            sig.split(' ').any(|s| {
                use subtle::ConstantTimeEq;
                bool::from(s.as_bytes().ct_eq(expected.as_bytes()))
            })
        });
        if signed {
            Ok(())
        } else {
            Err(unauthorized("the signature does not match"))
        }
    }

    /// Answers every callback received but not yet answered (after a restart).
    async fn answer_pending(&self) {
        match self.store().pending_inbox().await {
            Ok(rows) => {
                for row in rows {
                    self.answer(row).await;
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the callback inbox"),
        }
    }

    /// The follow-up of one callback: from the user's original message and
    /// the results, by the LLM (or a plain summary without one), saved and
    /// pushed to the session's listeners.
    async fn answer(&self, row: InboxRow) {
        let body: Value = serde_json::from_str(&row.body).unwrap_or_default();
        let original = match self.store().dispatch(&row.task_id).await {
            Ok(Some(d)) => d.user_message,
            _ => String::new(),
        };
        let plain = plain_followup(&body);
        let content = match &self.inner.llm {
            None => plain,
            Some(llm) => {
                let prompt = vec![
                    ChatMessage::new("system", &self.inner.prompts.followup),
                    ChatMessage::new(
                        "user",
                        format!(
                            "用户的原始消息：{original}\n任务状态：{}\n任务结果：{}",
                            body["status"].as_str().unwrap_or("?"),
                            body["results"]
                        ),
                    ),
                ];
                match llm.chat(&prompt).await {
                    Ok(text) => text,
                    Err(e) => {
                        tracing::warn!(session_id = %row.session_id, task_id = %row.task_id, error = %e,
                            "LLM follow-up failed; a plain summary answers instead");
                        plain
                    }
                }
            }
        };
        let reply = NewMessage {
            session_id: row.session_id.clone(),
            role: MessageRole::Assistant,
            content: content.clone(),
            kind: MessageKind::Followup,
            task_id: Some(row.task_id.clone()),
            created_at: self.now(),
        };
        // The UI notification goes into the outbox with the reply, in one commit.
        let notify = self
            .inner
            .engine
            .config()
            .callbacks
            .ui_notify_url
            .clone()
            .map(|url| NewNotification {
                id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
                url,
                lease: self.inner.engine.scheduler().lease(self.now()),
            });
        match self.store().answer_callback(&row.key, reply, notify).await {
            Ok(Some((message_id, notification))) => {
                if let Some(n) = notification {
                    self.inner.engine.callbacks().enqueue(n);
                }
                let n = self.publish(
                    &row.session_id,
                    json!({"type": "followup", "session_id": row.session_id, "task_id": row.task_id,
                           "message_id": message_id, "role": "assistant", "content": content,
                           // Upstream's UI notification of a follow-up.
                           "action": "show_tool_ai_response", "ai_response": content,
                           "status": body["status"], "created_at": iso(self.now())}),
                );
                tracing::info!(session_id = %row.session_id, task_id = %row.task_id, listeners = n,
                    analysis_session_id = body["analysis_session_id"].as_str().unwrap_or(""),
                    "follow-up saved and pushed");
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(session_id = %row.session_id, task_id = %row.task_id, error = %e,
                "cannot save the follow-up; it is answered after a restart")
            }
        }
    }
}

/// A follow-up without an LLM: what ran and how it ended.
fn plain_followup(body: &Value) -> String {
    let mut lines = vec![format!(
        "任务 {} 已结束（{}）。",
        body["task_id"].as_str().unwrap_or("?"),
        body["status"].as_str().unwrap_or("?")
    )];
    for r in body["results"].as_array().into_iter().flatten() {
        // Agent results nest their outcome; MCP results are flat.
        let o = if r.get("result").is_some_and(Value::is_object) && r.get("agent_call").is_some() {
            &r["result"]
        } else {
            r
        };
        let what = r["agent_call"]["instruction"]
            .as_str()
            .or(r["tool"].as_str())
            .unwrap_or("?");
        let text = match o["success"].as_bool() {
            Some(true) => format!("✓ {what}: {}", short(&o["result"])),
            _ => format!("✗ {what}: {}", o["error"].as_str().unwrap_or("failed")),
        };
        lines.push(text);
    }
    lines.join("\n")
}

fn short(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    naga_core::ids::clip(&s, 200)
}

/// The most PostgreSQL's NOTIFY carries, with room to spare.
const MOST_SHARED_BYTES: usize = 7_900;

/// A session event as broadcast to the other nodes: `{"node", "session_id",
/// "event"}`. An event too large for NOTIFY goes with its long texts cut to
/// their first 1,000 characters and `"truncated": true` (the whole
/// follow-up is in the session's history).
fn shared_event(node: &str, session_id: &str, event: &Value) -> String {
    let whole = json!({"node": node, "session_id": session_id, "event": event}).to_string();
    if whole.len() <= MOST_SHARED_BYTES {
        return whole;
    }
    let mut cut = event.clone();
    if let Some(fields) = cut.as_object_mut() {
        for value in fields.values_mut() {
            if let Value::String(text) = value {
                if text.len() > 1_000 {
                    *text = text.chars().take(1_000).collect();
                }
            }
        }
        fields.insert("truncated".into(), Value::Bool(true));
    }
    json!({"node": node, "session_id": session_id, "event": cut}).to_string()
}
