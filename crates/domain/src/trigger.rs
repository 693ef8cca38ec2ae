//! Where a trigger — one fired event — is in its life.

use serde::{Deserialize, Serialize};

/// A trigger's status, as stored and as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TriggerStatus {
    /// Accepted; its envelope is on its way to the matcher.
    Queued,
    /// Waits in the database for its time.
    Scheduled,
    /// Being matched and its invitations made.
    Processing,
    Completed,
    /// Every matched survey errored, or its envelope was dead-lettered, or it stalled.
    Failed,
    /// Cancelled while it was scheduled.
    Cancelled,
}

impl TriggerStatus {
    pub const ALL: [Self; 6] = [
        Self::Queued,
        Self::Scheduled,
        Self::Processing,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Scheduled => "scheduled",
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The inverse of [`TriggerStatus::as_str`].
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_status_is_spelled_the_same_stored_and_on_the_wire() {
        for status in TriggerStatus::ALL {
            assert_eq!(TriggerStatus::parse(status.as_str()), Some(status));
            assert_eq!(
                serde_json::to_value(status).ok(),
                Some(serde_json::Value::from(status.as_str()))
            );
        }
    }
}
