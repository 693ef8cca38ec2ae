//! When a failed delivery is tried again.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Most delays a custom policy may list.
pub const MAX_CUSTOM_DELAYS: usize = 100;
/// Longest single custom delay: 7 days.
pub const MAX_CUSTOM_DELAY_SECONDS: u32 = 7 * 24 * 3600;

/// A subscription's retry policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RetryPolicy {
    /// The default: retries after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h (±10 % jitter),
    /// the schedule Svix uses and the Standard Webhooks spec suggests.
    #[default]
    Exponential,
    /// Every 60 minutes for 3 days (1Flow's policy).
    Hourly,
    /// 5 s, 25 s, 150 s, 15 min, 1.5 h, 6 h, 12 h, stopping 24 hours after the first attempt
    /// (Seismic's policy).
    Backoff24h,
    /// One retry, 60 s after a failure (Screeb's policy). A 429 is not a failure under it, with
    /// `Retry-After` or without: it is retried 60 s later, then 2, 4, 8 … minutes later (at
    /// most an hour apart), without using up that one retry.
    #[serde(rename = "once_after_60s")]
    OnceAfter60s,
    /// These delays in seconds, in order.
    Custom { delays_seconds: Vec<u32> },
}

const EXPONENTIAL: [u64; 7] = [5, 300, 1800, 7200, 18000, 36000, 36000];
const BACKOFF_24H: [u64; 7] = [5, 25, 150, 900, 5400, 21600, 43200];
const DAY: u64 = 24 * 3600;
/// Longest wait between two throttled attempts under `once_after_60s`.
const THROTTLE_WAIT_AT_MOST: u64 = 3600;

/// Why a policy is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a custom retry policy needs 1 to {MAX_CUSTOM_DELAYS} delays of 1 to {MAX_CUSTOM_DELAY_SECONDS} seconds"
)]
pub struct InvalidPolicy;

impl RetryPolicy {
    pub fn validate(&self) -> Result<(), InvalidPolicy> {
        match self {
            Self::Custom { delays_seconds }
                if delays_seconds.is_empty()
                    || delays_seconds.len() > MAX_CUSTOM_DELAYS
                    || delays_seconds
                        .iter()
                        .any(|d| *d == 0 || *d > MAX_CUSTOM_DELAY_SECONDS) =>
            {
                Err(InvalidPolicy)
            }
            _ => Ok(()),
        }
    }

    /// The wait before the next attempt after `failed` attempts (≥ 1) have failed, the first
    /// of them `since_first` ago; `None` when the policy gives up. `jitter` in `[0, 1)` spreads
    /// the default schedule's retries so a recovering endpoint is not hit all at once.
    pub fn next_delay(&self, failed: u32, since_first: Duration, jitter: f64) -> Option<Duration> {
        let index = failed.checked_sub(1)? as usize;
        match self {
            Self::Exponential => {
                let base = *EXPONENTIAL.get(index)? as f64;
                Some(Duration::from_secs_f64(base * (0.9 + 0.2 * jitter)))
            }
            Self::Hourly => (index < 72).then_some(Duration::from_secs(3600)),
            Self::OnceAfter60s => (index == 0).then_some(Duration::from_secs(60)),
            Self::Backoff24h => {
                let delay = Duration::from_secs(*BACKOFF_24H.get(index)?);
                (since_first + delay <= Duration::from_secs(DAY)).then_some(delay)
            }
            Self::Custom { delays_seconds } => delays_seconds
                .get(index)
                .map(|d| Duration::from_secs(u64::from(*d))),
        }
    }
}

impl RetryPolicy {
    /// Whether every 429 asks for patience, `Retry-After` or not; under the other policies a
    /// 429 without `Retry-After` is a failure like any other.
    pub fn throttles_every_429(&self) -> bool {
        matches!(self, Self::OnceAfter60s)
    }

    /// The policy's own shortest wait after a delivery's `throttled`-th throttled attempt
    /// (counted from 0): for `once_after_60s` 60 s, doubling each time up to an hour; for the
    /// others none beyond the wait a failure would get.
    pub fn throttle_wait(&self, throttled: i32) -> Duration {
        match self {
            Self::OnceAfter60s => Duration::from_secs(60 << throttled.clamp(0, 6))
                .min(Duration::from_secs(THROTTLE_WAIT_AT_MOST)),
            _ => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: Option<Duration>) -> Option<u64> {
        d.map(|d| d.as_secs())
    }

    #[test]
    fn the_default_retries_within_seconds_then_backs_off_and_gives_up() {
        let p = RetryPolicy::Exponential;
        let first = p.next_delay(1, Duration::ZERO, 0.5).unwrap();
        assert_eq!(first, Duration::from_secs(5));
        assert!(p.next_delay(1, Duration::ZERO, 0.0).unwrap() >= Duration::from_millis(4500));
        assert!(p.next_delay(1, Duration::ZERO, 0.999).unwrap() <= Duration::from_millis(5500));
        assert_eq!(secs(p.next_delay(2, Duration::ZERO, 0.5)), Some(300));
        assert!(p.next_delay(7, Duration::ZERO, 0.5).is_some());
        assert_eq!(p.next_delay(8, Duration::ZERO, 0.5), None);
    }

    #[test]
    fn hourly_retries_for_three_days() {
        let p = RetryPolicy::Hourly;
        assert_eq!(secs(p.next_delay(1, Duration::ZERO, 0.0)), Some(3600));
        assert_eq!(secs(p.next_delay(72, Duration::ZERO, 0.0)), Some(3600));
        assert_eq!(p.next_delay(73, Duration::ZERO, 0.0), None);
    }

    #[test]
    fn backoff_24h_follows_its_steps_and_stops_a_day_after_the_first_attempt() {
        let p = RetryPolicy::Backoff24h;
        let steps: Vec<u64> = (1..=3)
            .map(|n| secs(p.next_delay(n, Duration::ZERO, 0.0)).unwrap())
            .collect();
        assert_eq!(steps, [5, 25, 150]);
        assert_eq!(
            secs(p.next_delay(7, Duration::from_secs(3600), 0.0)),
            Some(43200)
        );
        assert_eq!(p.next_delay(7, Duration::from_secs(20 * 3600), 0.0), None);
    }

    #[test]
    fn once_after_60s_retries_once_and_throttles_every_429() {
        let p = RetryPolicy::OnceAfter60s;
        assert_eq!(secs(p.next_delay(1, Duration::ZERO, 0.5)), Some(60));
        assert_eq!(p.next_delay(2, Duration::from_secs(60), 0.5), None);
        assert!(p.throttles_every_429());
        assert!(!RetryPolicy::Exponential.throttles_every_429());
        let waits: Vec<u64> = (0..9).map(|n| p.throttle_wait(n).as_secs()).collect();
        assert_eq!(waits, [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(RetryPolicy::Exponential.throttle_wait(3), Duration::ZERO);
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"kind":"once_after_60s"}"#
        );
    }

    #[test]
    fn custom_policies_use_their_delays_and_are_validated() {
        let p = RetryPolicy::Custom {
            delays_seconds: vec![1, 2],
        };
        assert_eq!(secs(p.next_delay(2, Duration::ZERO, 0.0)), Some(2));
        assert_eq!(p.next_delay(3, Duration::ZERO, 0.0), None);
        assert!(p.validate().is_ok());
        assert!(
            RetryPolicy::Custom {
                delays_seconds: vec![]
            }
            .validate()
            .is_err()
        );
        assert!(
            RetryPolicy::Custom {
                delays_seconds: vec![0]
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn policies_travel_as_tagged_json() {
        let p: RetryPolicy =
            serde_json::from_str(r#"{"kind": "custom", "delays_seconds": [1, 3]}"#).unwrap();
        assert_eq!(
            p,
            RetryPolicy::Custom {
                delays_seconds: vec![1, 3]
            }
        );
        assert_eq!(
            serde_json::to_string(&RetryPolicy::Backoff24h).unwrap(),
            r#"{"kind":"backoff24h"}"#
        );
    }
}
