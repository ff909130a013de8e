//! A client for any OpenAI-compatible chat-completions endpoint, plain and
//! streaming (SSE).

use futures::{Stream, StreamExt};
use naga_core::config::LlmConfig;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::{pin::Pin, time::Duration};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("no LLM is configured: set [llm] base_url and model (or NAGA_LLM_BASE_URL, NAGA_LLM_MODEL, and NAGA_LLM_API_KEY if it needs one)")]
    NotConfigured,
    #[error("the LLM did not answer within {0} ms")]
    Timeout(u64),
    #[error("the LLM answered {status}: {body}")]
    Upstream { status: u16, body: String },
    #[error("cannot reach the LLM: {0}")]
    Transport(String),
    #[error("the LLM's answer is not a chat completion: {0}")]
    Malformed(String),
}

#[derive(Clone)]
pub struct LlmClient {
    http: reqwest::Client,
    url: String,
    api_key: Option<String>,
    model: String,
    temperature: f32,
    timeout: Duration,
}

pub type TextStream = Pin<Box<dyn Stream<Item = Result<String, LlmError>> + Send>>;

impl LlmClient {
    /// `None` when no LLM is configured.
    pub fn from_config(c: &LlmConfig) -> Option<Self> {
        let (base, model) = (c.base_url.as_deref()?, c.model.as_deref()?);
        let base = base.trim_end_matches('/');
        Some(Self {
            http: reqwest::Client::builder().build().ok()?,
            url: if base.ends_with("/chat/completions") {
                base.to_owned()
            } else {
                format!("{base}/chat/completions")
            },
            api_key: c.api_key.clone().filter(|k| !k.is_empty()),
            model: model.to_owned(),
            temperature: c.temperature,
            timeout: Duration::from_millis(c.timeout_ms),
        })
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same endpoint with another model (e.g. a vision model).
    pub fn with_model(mut self, model: &str) -> Self {
        self.model = model.to_owned();
        self
    }

    fn request<M: Serialize>(&self, messages: &[M], stream: bool) -> reqwest::RequestBuilder {
        let body = json!({"model": self.model, "messages": messages,
                          "temperature": self.temperature, "stream": stream});
        let mut req = self.http.post(&self.url).json(&body);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        req
    }

    async fn send<M: Serialize>(
        &self,
        messages: &[M],
        stream: bool,
    ) -> Result<reqwest::Response, LlmError> {
        let ms = self.timeout.as_millis() as u64;
        let resp = tokio::time::timeout(self.timeout, self.request(messages, stream).send())
            .await
            .map_err(|_| LlmError::Timeout(ms))?
            .map_err(|e| {
                if e.is_timeout() {
                    LlmError::Timeout(ms)
                } else {
                    LlmError::Transport(e.to_string())
                }
            })?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            return Err(LlmError::Upstream {
                status,
                body: naga_core::ids::clip(&body, 300),
            });
        }
        Ok(resp)
    }

    /// One completion, whole.
    pub async fn chat(&self, messages: &[ChatMessage]) -> Result<String, LlmError> {
        self.chat_messages(messages).await
    }

    /// One completion from messages of any shape (e.g. with images).
    pub async fn chat_messages<M: Serialize>(&self, messages: &[M]) -> Result<String, LlmError> {
        let ms = self.timeout.as_millis() as u64;
        let work = async {
            let resp = self.send(messages, false).await?;
            let v: Value = resp
                .json()
                .await
                .map_err(|e| LlmError::Malformed(e.to_string()))?;
            v["choices"][0]["message"]["content"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| LlmError::Malformed(naga_core::ids::clip(&v.to_string(), 300)))
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| LlmError::Timeout(ms))?
    }

    /// A completion as it is written: the pieces of text in order.
    pub async fn chat_stream(&self, messages: &[ChatMessage]) -> Result<TextStream, LlmError> {
        let resp = self.send(messages, true).await?;
        let bytes = resp.bytes_stream();
        let stream = futures::stream::unfold(
            // Bytes, not text: a chunk may end inside a multi-byte character.
            (bytes, Vec::<u8>::new(), false),
            |(mut bytes, mut buf, done)| async move {
                if done {
                    return None;
                }
                loop {
                    if let Some(end) = buf.iter().position(|&b| b == b'\n') {
                        let raw: Vec<u8> = buf.drain(..=end).collect();
                        let line = String::from_utf8_lossy(&raw);
                        let line = line.trim();
                        let Some(data) = line.strip_prefix("data:").map(str::trim) else {
                            continue;
                        };
                        if data == "[DONE]" {
                            return None;
                        }
                        match serde_json::from_str::<Value>(data) {
                            Ok(v) => match v["choices"][0]["delta"]["content"].as_str() {
                                Some(t) if !t.is_empty() => {
                                    return Some((Ok(t.to_owned()), (bytes, buf, false)))
                                }
                                _ => continue,
                            },
                            Err(e) => {
                                return Some((
                                    Err(LlmError::Malformed(e.to_string())),
                                    (bytes, buf, true),
                                ))
                            }
                        }
                    }
                    match bytes.next().await {
                        Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                        Some(Err(e)) => {
                            return Some((
                                Err(LlmError::Transport(e.to_string())),
                                (bytes, buf, true),
                            ))
                        }
                        None => return None,
                    }
                }
            },
        );
        Ok(Box::pin(stream))
    }
}
