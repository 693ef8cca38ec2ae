//! The statuses the API shows besides a trigger's, each spelled the same stored and on the
//! wire.

use serde::{Deserialize, Serialize};

macro_rules! status_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            pub const ALL: &[Self] = &[$(Self::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $wire),+
                }
            }

            /// The inverse of `as_str`.
            pub fn parse(raw: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|s| s.as_str() == raw)
            }
        }
    };
}

status_enum! {
    /// A webhook subscription's status.
    SubscriptionStatus {
        /// Created; waits for its URL to echo the verification challenge.
        PendingVerification => "pending_verification",
        Active => "active",
        /// Gets nothing; `disabled_reason` says why.
        Disabled => "disabled",
    }
}

status_enum! {
    /// A delivery's status: one message to one subscription.
    DeliveryStatus {
        /// Waiting for its next attempt.
        Pending => "pending",
        Succeeded => "succeeded",
        /// The retry policy gave up, or the subscription was disabled.
        Failed => "failed",
        /// Emitted while its subscription was disabled: kept, never attempted, until a
        /// recover sends it.
        Skipped => "skipped",
    }
}

status_enum! {
    /// A response's status.
    ResponseStatus {
        InProgress => "in_progress",
        /// Submitted with every required question answered.
        Completed => "completed",
        /// Closed by the respondent before it was submitted: what was answered stays.
        Closed => "closed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T: Serialize + Copy + PartialEq + std::fmt::Debug>(
        all: &[T],
        as_str: fn(T) -> &'static str,
        parse: fn(&str) -> Option<T>,
    ) {
        for &status in all {
            assert_eq!(parse(as_str(status)), Some(status));
            assert_eq!(
                serde_json::to_value(status).ok(),
                Some(serde_json::Value::from(as_str(status)))
            );
        }
    }

    #[test]
    fn each_status_is_spelled_the_same_stored_and_on_the_wire() {
        check(
            SubscriptionStatus::ALL,
            SubscriptionStatus::as_str,
            SubscriptionStatus::parse,
        );
        check(
            DeliveryStatus::ALL,
            DeliveryStatus::as_str,
            DeliveryStatus::parse,
        );
        check(
            ResponseStatus::ALL,
            ResponseStatus::as_str,
            ResponseStatus::parse,
        );
    }
}
