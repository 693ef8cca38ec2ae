//! A project's cap on invitations per user across all its surveys.

use serde::{Deserialize, Serialize};

/// Most invitations a cap may allow per period.
pub const MAX_CAP: i32 = 100;
/// Shortest and longest period: a minute, a year.
pub const MIN_PERIOD_SECONDS: i64 = 60;
pub const MAX_PERIOD_SECONDS: i64 = 366 * 24 * 3600;

/// At most `max` invitations per user every `period_seconds`, whichever surveys they are for
/// (`{"max": 1, "period_seconds": 1209600}`: one survey every 14 days).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"max": 1, "period_seconds": 1209600})))]
#[serde(deny_unknown_fields)]
pub struct InvitationCap {
    /// 1 to 100.
    pub max: i32,
    /// 60 to 31622400 (a year).
    pub period_seconds: i64,
}

/// Why a cap is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invitation_cap needs max from 1 to {MAX_CAP} and period_seconds from {MIN_PERIOD_SECONDS} to {MAX_PERIOD_SECONDS}"
)]
pub struct InvalidCap;

impl InvitationCap {
    pub fn validate(&self) -> Result<(), InvalidCap> {
        if (1..=MAX_CAP).contains(&self.max)
            && (MIN_PERIOD_SECONDS..=MAX_PERIOD_SECONDS).contains(&self.period_seconds)
        {
            Ok(())
        } else {
            Err(InvalidCap)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_are_bounded() {
        let cap = |max, period_seconds| InvitationCap {
            max,
            period_seconds,
        };
        assert!(cap(1, 14 * 86_400).validate().is_ok());
        assert!(cap(0, 86_400).validate().is_err());
        assert!(cap(101, 86_400).validate().is_err());
        assert!(cap(1, 59).validate().is_err());
        assert!(cap(1, MAX_PERIOD_SECONDS + 1).validate().is_err());
    }
}
