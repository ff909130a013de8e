//! Task and call states (DESIGN.md, "Store and scheduler semantics").

use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

/// `queued → running → succeeded | failed | cancelled | timed_out`.
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

/// State of one call of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    Pending,
    Succeeded,
    Failed,
    Skipped,
}

impl CallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }
    pub fn parse(s: &str) -> Self {
        match s {
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "skipped" => Self::Skipped,
            _ => Self::Pending,
        }
    }
}

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
}
