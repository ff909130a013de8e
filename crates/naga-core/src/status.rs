//! Task and call states (docs/design.md, "Store and scheduler semantics").

use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

/// `queued → running → succeeded | failed | cancelled | timed_out`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 6] = [
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
        Self::TimedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed_out",
        }
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown status `{0}`: expected one of queued, running, succeeded, failed, cancelled, timed_out (or upstream's created, completed)")]
pub struct UnknownStatus(pub String);

impl FromStr for TaskStatus {
    type Err = UnknownStatus;
    /// Accepts naga's names and upstream's `created` (= queued) and
    /// `completed` (= succeeded).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "queued" | "created" | "pending" => Self::Queued,
            "running" => Self::Running,
            "succeeded" | "completed" => Self::Succeeded,
            "failed" => Self::Failed,
            "cancelled" | "canceled" => Self::Cancelled,
            "timed_out" => Self::TimedOut,
            other => return Err(UnknownStatus(other.to_owned())),
        })
    }
}

/// A value read from the store outside its column's set. The store's edge
/// decodes each status, kind and policy once, and refuses such a value
/// (naga writes them from these enums; PostgreSQL's schema CHECKs them)
/// instead of defaulting.
#[derive(Debug, thiserror::Error)]
#[error("unknown {what} `{value}` in the store")]
pub struct UnknownStored {
    pub what: &'static str,
    pub value: String,
}

/// `TryFrom<String>` for an enum by its `ALL` and `as_str`, strict: only
/// the names naga stores (the store's edge decodes columns with it).
macro_rules! stored_enum {
    ($ty:ty, $what:literal) => {
        impl TryFrom<String> for $ty {
            type Error = $crate::status::UnknownStored;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                <$ty>::ALL
                    .into_iter()
                    .find(|v| v.as_str() == value)
                    .ok_or($crate::status::UnknownStored { what: $what, value })
            }
        }

        /// Stored as text: `as_str` written, decoded strictly.
        #[cfg(feature = "sqlx")]
        impl<DB: ::sqlx::Database> ::sqlx::Type<DB> for $ty
        where
            String: ::sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <String as ::sqlx::Type<DB>>::type_info()
            }
            fn compatible(ty: &DB::TypeInfo) -> bool {
                <String as ::sqlx::Type<DB>>::compatible(ty)
            }
        }

        #[cfg(feature = "sqlx")]
        impl<'r, DB: ::sqlx::Database> ::sqlx::Decode<'r, DB> for $ty
        where
            String: ::sqlx::Decode<'r, DB>,
        {
            fn decode(
                value: <DB as ::sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, ::sqlx::error::BoxDynError> {
                Ok(Self::try_from(<String as ::sqlx::Decode<'r, DB>>::decode(
                    value,
                )?)?)
            }
        }
    };
}
pub(crate) use stored_enum;

stored_enum!(TaskStatus, "task status");

/// State of one call of a batch.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    Pending,
    Succeeded,
    Failed,
    Skipped,
}

impl CallStatus {
    pub const ALL: [CallStatus; 4] = [Self::Pending, Self::Succeeded, Self::Failed, Self::Skipped];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }
}

stored_enum!(CallStatus, "call status");

/// State of an outbox row (a callback or a UI notification):
/// `pending → delivered | dead`; a dead one may be replayed (pending again).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Dead,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 3] = [Self::Pending, Self::Delivered, Self::Dead];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }
}

stored_enum!(DeliveryStatus, "delivery status");

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who wrote a conversation's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageRole {
    User,
    Assistant,
}

impl MessageRole {
    pub const ALL: [MessageRole; 2] = [Self::User, Self::Assistant];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

stored_enum!(MessageRole, "message role");

/// How a conversation's message came: a chat turn, a follow-up to a
/// callback, or saved by the UI from a tool conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Chat,
    Followup,
    Tool,
}

impl MessageKind {
    pub const ALL: [MessageKind; 3] = [Self::Chat, Self::Followup, Self::Tool];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Followup => "followup",
            Self::Tool => "tool",
        }
    }
}

stored_enum!(MessageKind, "message kind");

/// A received callback: waiting for its follow-up, or answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InboxStatus {
    Pending,
    Done,
}

impl InboxStatus {
    pub const ALL: [InboxStatus; 2] = [Self::Pending, Self::Done];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Done => "done",
        }
    }
}

stored_enum!(InboxStatus, "inbox status");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_accept_upstream_words() {
        for s in TaskStatus::ALL {
            assert_eq!(s.as_str().parse::<TaskStatus>().unwrap(), s);
        }
        assert_eq!("created".parse::<TaskStatus>().unwrap(), TaskStatus::Queued);
        assert_eq!(
            "completed".parse::<TaskStatus>().unwrap(),
            TaskStatus::Succeeded
        );
        assert!("done".parse::<TaskStatus>().is_err());
        assert!(TaskStatus::TimedOut.is_terminal());
        assert!(!TaskStatus::Running.is_terminal());
    }

    #[test]
    fn stored_values_decode_strictly() {
        for s in TaskStatus::ALL {
            assert_eq!(TaskStatus::try_from(s.as_str().to_owned()).unwrap(), s);
        }
        // Upstream's words are for requests; the store holds naga's only.
        let err = TaskStatus::try_from("completed".to_owned()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown task status `completed` in the store"
        );
        for s in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::try_from(s.as_str().to_owned()).unwrap(), s);
        }
        assert!(CallStatus::try_from("done".to_owned()).is_err());
        assert!(crate::wire::TaskKind::try_from("tool".to_owned()).is_err());
        assert!(crate::config::SessionPolicy::try_from("fifo".to_owned()).is_err());
    }
}
