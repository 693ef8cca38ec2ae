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

/// Why a trigger ended as it did, when the counts alone do not say: stable and
/// machine-readable, stored and shown as its snake-case name, with a sentence for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TriggerReason {
    /// The event named no contact (`user_info.contact_external_id`): there was no one to
    /// invite, so it completed without being matched.
    NoContact,
}

impl TriggerReason {
    pub const ALL: [Self; 1] = [Self::NoContact];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NoContact => "no_contact",
        }
    }

    /// The inverse of [`TriggerReason::as_str`].
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == raw)
    }

    /// The reason, said to a person.
    pub const fn message(self) -> &'static str {
        match self {
            Self::NoContact => {
                "The event named no contact (user_info.contact_external_id), so there was no one to invite: it completed without being matched to any survey."
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_is_spelled_the_same_stored_and_on_the_wire() {
        for reason in TriggerReason::ALL {
            assert_eq!(TriggerReason::parse(reason.as_str()), Some(reason));
            assert_eq!(
                serde_json::to_value(reason).ok(),
                Some(serde_json::Value::from(reason.as_str()))
            );
        }
        assert_eq!(TriggerReason::parse("nope"), None);
    }

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
