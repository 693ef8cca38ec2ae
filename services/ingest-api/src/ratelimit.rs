//! Per-organization rate limits: a token bucket per organization, in this gateway replica's
//! memory. With N gateway replicas behind a load balancer an organization gets up to N times
//! the configured rate; the limit protects each replica, it is not a global quota.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;
use uuid::Uuid;

/// What the limiter decided for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    Allow,
    /// Refused; a token is back after this many seconds (rounded up).
    Deny {
        retry_after_secs: u64,
    },
}

pub struct RateLimiter {
    /// Requests per second refilled.
    rate: f64,
    /// Bucket size: how many requests may arrive at once.
    burst: f64,
    buckets: Mutex<HashMap<Uuid, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: u32) -> Self {
        Self {
            rate,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn limit(&self) -> u32 {
        self.burst as u32
    }

    pub fn check(&self, org: Uuid) -> Decision {
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            return Decision::Allow;
        };
        let (tokens, last) = buckets.entry(org).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Decision::Allow
        } else {
            let wait = (1.0 - *tokens) / self.rate;
            Decision::Deny {
                retry_after_secs: wait.ceil().max(1.0) as u64,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_requests_are_refused_until_tokens_refill() {
        let limiter = RateLimiter::new(1.0, 3);
        let org = Uuid::now_v7();
        for _ in 0..3 {
            assert_eq!(limiter.check(org), Decision::Allow);
        }
        assert_eq!(
            limiter.check(org),
            Decision::Deny {
                retry_after_secs: 1
            }
        );
        // Organizations have buckets of their own.
        assert_eq!(limiter.check(Uuid::now_v7()), Decision::Allow);
    }
}
