use naga_store::StoreError;

/// What the engine refuses or fails at. The HTTP layer maps each variant to
/// a status in one place.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The request is wrong; the message says what to change.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// The request contradicts the current state.
    #[error("{0}")]
    Conflict(String),
    /// An idempotency key sent again with another request.
    #[error("{0}")]
    Reused(String),
    /// An idempotency key whose task ended and was pruned: refused, as
    /// its batch must not run again.
    #[error("{0}")]
    Expired(String),
    #[error("{detail}")]
    Busy {
        detail: String,
        retry_after_secs: u64,
    },
    #[error("{0}")]
    Unavailable(String),
    /// A request that failed authentication (a callback's signature).
    #[error("{0}")]
    Unauthorized(String),
    #[error(transparent)]
    Llm(crate::llm::LlmError),
    #[error(transparent)]
    Store(StoreError),
}

impl EngineError {
    /// The kind of refusal or failure, as a word (`/metrics` labels).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::Reused(_) => "reused",
            Self::Expired(_) => "expired",
            Self::Busy { .. } => "busy",
            Self::Unavailable(_) => "unavailable",
            Self::Unauthorized(_) => "unauthorized",
            Self::Llm(_) => "llm",
            Self::Store(_) => "store",
        }
    }
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(msg) => Self::Conflict(msg),
            other => Self::Store(other),
        }
    }
}
