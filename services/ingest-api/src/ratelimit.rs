//! Rate limits: token buckets in this gateway replica's memory. With N gateway replicas behind
//! a load balancer a client gets up to N times the configured rate; the limits protect each
//! replica, they are not a global quota.
//!
//! - per organization, on the API (checked once the token is known, in [`crate::auth`]);
//! - per client address and per magic-link token, on the respond page's routes;
//! - per client address and per publishable key, on the widget's route;
//! - per client address, for refused credentials: an address whose unknown tokens, publishable
//!   keys or magic links keep being refused is answered 429 on every route until its bucket
//!   refills, so guessing costs the guesser time, not us database lookups.
//!
//! Memory is bounded: a bucket that has refilled is the same as no bucket, so idle ones are
//! dropped by a sweep, and a limiter holds at most `BECKON_RATE_LIMIT_MAX_KEYS` of them. Past
//! that (more clients active at once than that, i.e. a distributed flood) a new client is let
//! through untracked and counted in `beckon_rate_limit_untracked_total`: the clients already
//! tracked stay limited, and the gateway's memory does not grow.

use crate::AppState;
use crate::client::{ClientAddr, TrustedProxies};
use crate::error::{ApiError, CredentialRefused};
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web;
use serde::Deserialize;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasher, Hash, RandomState};
use std::marker::PhantomData;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the limiter decided for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    Allow,
    /// Refused; a token is back after this many seconds (rounded up).
    Deny {
        retry_after_secs: u64,
    },
}

/// A rate and a burst, as configured.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    /// Requests per second refilled; 0 turns the limit off.
    pub per_second: f64,
    /// How many requests may arrive at once.
    pub burst: u32,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Buckets {
    /// By the key's hash under this limiter's own random seed: fixed-size entries whatever the
    /// key, and collisions no client can aim for.
    map: HashMap<u64, Bucket>,
    swept: Instant,
}

/// Token buckets keyed by `K`.
pub struct RateLimiter<K: ?Sized> {
    /// Names the limiter in metrics.
    name: &'static str,
    rate: f64,
    burst: f64,
    max_keys: usize,
    seed: RandomState,
    buckets: Mutex<Buckets>,
    _key: PhantomData<fn(&K)>,
}

impl<K: Hash + ?Sized> RateLimiter<K> {
    /// `None` when `rate` turns the limit off.
    pub fn new(name: &'static str, rate: Rate, max_keys: usize) -> Option<Self> {
        (rate.per_second > 0.0).then(|| Self {
            name,
            rate: rate.per_second,
            burst: f64::from(rate.burst.max(1)),
            max_keys: max_keys.max(1),
            seed: RandomState::new(),
            buckets: Mutex::new(Buckets {
                map: HashMap::new(),
                swept: Instant::now(),
            }),
            _key: PhantomData,
        })
    }

    pub fn limit(&self) -> u32 {
        self.burst as u32
    }

    /// Takes a token for `key`.
    pub fn check(&self, key: &K) -> Decision {
        self.decide(key, 1.0, true)
    }

    /// Whether `key` has a token, without taking it.
    pub fn peek(&self, key: &K) -> Decision {
        self.decide(key, 1.0, false)
    }

    /// Takes `extra` more tokens for `key`, all or none, for a request that weighs more than
    /// the one token [`check`](Self::check) took for it (a batch of events). At most what a
    /// full bucket holds besides that token is asked (`burst - 1`): a request heavier than the
    /// burst passes when the bucket is full, rather than never.
    pub fn check_more(&self, key: &K, extra: u32) -> Decision {
        let extra = f64::from(extra).min(self.burst - 1.0);
        if extra <= 0.0 {
            return Decision::Allow;
        }
        self.decide(key, extra, true)
    }

    /// How long an untouched bucket takes to fill up again: after that it is idle.
    fn refill_time(&self) -> Duration {
        Duration::from_secs_f64(self.burst / self.rate)
    }

    /// Whether `key` has `need` tokens; takes them when `take` and it has.
    fn decide(&self, key: &K, need: f64, take: bool) -> Decision {
        let now = Instant::now();
        let hash = self.seed.hash_one(key);
        let Ok(mut buckets) = self.buckets.lock() else {
            return Decision::Allow;
        };
        // Sweep at most once per refill time (at least a second), or when full.
        let due =
            now.duration_since(buckets.swept) >= self.refill_time().max(Duration::from_secs(1));
        if due || (buckets.map.len() >= self.max_keys && !buckets.map.contains_key(&hash)) {
            self.sweep(&mut buckets, now);
        }
        let full = buckets.map.len() >= self.max_keys;
        let bucket = match buckets.map.entry(hash) {
            Entry::Occupied(bucket) => bucket.into_mut(),
            Entry::Vacant(_) if full => {
                metrics::counter!("beckon_rate_limit_untracked_total", "limit" => self.name)
                    .increment(1);
                return Decision::Allow;
            }
            Entry::Vacant(slot) => slot.insert(Bucket {
                tokens: self.burst,
                at: now,
            }),
        };
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * self.rate)
            .min(self.burst);
        bucket.at = now;
        if bucket.tokens >= need {
            if take {
                bucket.tokens -= need;
            }
            Decision::Allow
        } else {
            let wait = (need - bucket.tokens) / self.rate;
            Decision::Deny {
                retry_after_secs: wait.ceil().max(1.0) as u64,
            }
        }
    }

    /// Drops the buckets that have refilled: they hold nothing a new bucket would not.
    fn sweep(&self, buckets: &mut Buckets, now: Instant) {
        let full = self.refill_time();
        buckets
            .map
            .retain(|_, b| now.duration_since(b.at) < full.mul_f64(1.0 - b.tokens / self.burst));
        buckets
            .map
            .shrink_to(self.max_keys.min(buckets.map.len() * 2));
        buckets.swept = now;
    }
}

/// The limits of the routes anyone may call, and the setting that says who the client is.
pub struct PublicLimits {
    pub proxies: TrustedProxies,
    /// Per client address, across the respond page and the widget.
    pub per_address: Option<RateLimiter<ClientAddr>>,
    /// Per magic-link token.
    pub per_link: Option<RateLimiter<str>>,
    /// Per publishable key.
    pub per_widget_key: Option<RateLimiter<str>>,
    /// Refused credentials per client address.
    pub refused: Option<RateLimiter<ClientAddr>>,
}

/// The 429 every limit answers, with the headers of the IETF RateLimit fields draft.
pub fn refusal(limit: u32, retry_after_secs: u64, message: &'static str) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
        .with_header("Retry-After", retry_after_secs.to_string())
        .with_header("RateLimit-Limit", limit.to_string())
        .with_header("RateLimit-Remaining", "0")
        .with_header("RateLimit-Reset", retry_after_secs.to_string())
}

fn limits(req: &ServiceRequest) -> Option<web::Data<AppState>> {
    req.app_data::<web::Data<AppState>>().cloned()
}

fn refuse<B>(req: ServiceRequest, err: ApiError) -> ServiceResponse<EitherBody<B>> {
    req.error_response(err).map_into_right_body()
}

/// Around every route: an address whose credentials keep being refused is answered 429 before
/// its next one is looked at; each refusal takes a token from its bucket.
pub async fn refused_credentials(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(state) = limits(&req) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let limits = &state.public_limits;
    let (Some(limiter), Some(addr)) = (
        &limits.refused,
        ClientAddr::of(req.request(), &limits.proxies),
    ) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    // A token this replica knows to be live is no guess: a tenant sharing an address (a NAT,
    // a proxy) with someone guessing is not turned away.
    if let Decision::Deny { retry_after_secs } = limiter.peek(&addr)
        && !crate::auth::presents_live_token(req.request(), &state)
    {
        let err = refusal(
            limiter.limit(),
            retry_after_secs,
            "Too many refused credentials from this address; retry after the delay given.",
        );
        return Ok(refuse(req, err));
    }
    let response = next.call(req).await?;
    if response
        .response()
        .extensions()
        .contains::<CredentialRefused>()
    {
        limiter.check(&addr);
    }
    Ok(response.map_into_left_body())
}

/// Around the respond page's routes: per client address and per magic-link token.
pub async fn respond_page(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let token = req.match_info().get("token").map(str::to_owned);
    public(req, next, |l| l.per_link.as_ref(), token, Charge::Always).await
}

#[derive(Deserialize)]
struct KeyQuery {
    key: Option<String>,
}

/// Around the widget's route: per client address, and per publishable key (sent as
/// `X-Publishable-Key` or `?key=`, as the widget route reads it). The key is public, so only
/// answered requests (the user verified) spend its budget: a stranger's unverified requests
/// count against the stranger's address alone, and cannot starve the customer's users.
pub async fn widget(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let key = req
        .headers()
        .get("x-publishable-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            web::Query::<KeyQuery>::from_query(req.query_string())
                .ok()
                .and_then(|q| q.into_inner().key)
        });
    public(
        req,
        next,
        |l| l.per_widget_key.as_ref(),
        key,
        Charge::WhenAnswered,
    )
    .await
}

/// When a per-key bucket is charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Charge {
    /// Before the route runs: the key is the credential (a magic link).
    Always,
    /// After the route answered 2xx: the key is public (a publishable key).
    WhenAnswered,
}

async fn public(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
    per_key: fn(&PublicLimits) -> Option<&RateLimiter<str>>,
    key: Option<String>,
    charge: Charge,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(state) = limits(&req) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let limits = &state.public_limits;
    if let (Some(limiter), Some(addr)) = (
        &limits.per_address,
        ClientAddr::of(req.request(), &limits.proxies),
    ) && let Decision::Deny { retry_after_secs } = limiter.check(&addr)
    {
        let err = refusal(
            limiter.limit(),
            retry_after_secs,
            "Too many requests from this address; retry after the delay given.",
        );
        return Ok(refuse(req, err));
    }
    let keyed = per_key(limits).zip(key.as_deref());
    if let Some((limiter, key)) = keyed {
        let decision = match charge {
            Charge::Always => limiter.check(key),
            Charge::WhenAnswered => limiter.peek(key),
        };
        if let Decision::Deny { retry_after_secs } = decision {
            let err = refusal(
                limiter.limit(),
                retry_after_secs,
                "Too many requests for this link or key; retry after the delay given.",
            );
            return Ok(refuse(req, err));
        }
    }
    let response = next.call(req).await?;
    if charge == Charge::WhenAnswered
        && response.status().is_success()
        && let Some((limiter, key)) = keyed
    {
        limiter.check(key);
    }
    Ok(response.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn limiter<K: Hash + ?Sized>(per_second: f64, burst: u32, max_keys: usize) -> RateLimiter<K> {
        RateLimiter::new("test", Rate { per_second, burst }, max_keys).unwrap()
    }

    #[test]
    fn a_burst_is_allowed_then_requests_are_refused_until_tokens_refill() {
        let limiter = limiter::<Uuid>(1.0, 3, 100);
        let org = Uuid::now_v7();
        for _ in 0..3 {
            assert_eq!(limiter.check(&org), Decision::Allow);
        }
        assert_eq!(
            limiter.check(&org),
            Decision::Deny {
                retry_after_secs: 1
            }
        );
        // Keys have buckets of their own.
        assert_eq!(limiter.check(&Uuid::now_v7()), Decision::Allow);
    }

    #[test]
    fn peeking_takes_no_token() {
        let limiter = limiter::<str>(0.01, 2, 100);
        for _ in 0..10 {
            assert_eq!(limiter.peek("k"), Decision::Allow);
        }
        limiter.check("k");
        limiter.check("k");
        assert!(matches!(limiter.peek("k"), Decision::Deny { .. }));
    }

    #[test]
    fn a_heavy_request_takes_all_its_tokens_or_none() {
        let limiter = limiter::<Uuid>(1.0, 10, 100);
        let org = Uuid::now_v7();
        // A request of 4: the token its auth took, and 3 more.
        assert_eq!(limiter.check(&org), Decision::Allow);
        assert_eq!(limiter.check_more(&org, 3), Decision::Allow);
        // 6 left: a request of 8 is refused, and takes nothing but its first token; the 2
        // more it needs come back in 2 s.
        assert_eq!(limiter.check(&org), Decision::Allow);
        assert_eq!(
            limiter.check_more(&org, 7),
            Decision::Deny {
                retry_after_secs: 2
            }
        );
        for _ in 0..5 {
            assert_eq!(limiter.check(&org), Decision::Allow);
        }
        assert!(matches!(limiter.check(&org), Decision::Deny { .. }));
    }

    #[test]
    fn a_request_heavier_than_the_burst_passes_on_a_full_bucket() {
        let limiter = limiter::<Uuid>(0.001, 3, 100);
        let org = Uuid::now_v7();
        assert_eq!(limiter.check(&org), Decision::Allow);
        assert_eq!(limiter.check_more(&org, 99), Decision::Allow);
        assert!(matches!(limiter.check(&org), Decision::Deny { .. }));
        assert_eq!(limiter.check_more(&Uuid::now_v7(), 0), Decision::Allow);
    }

    #[test]
    fn a_rate_of_zero_turns_the_limit_off() {
        assert!(
            RateLimiter::<str>::new(
                "off",
                Rate {
                    per_second: 0.0,
                    burst: 1
                },
                1
            )
            .is_none()
        );
    }

    #[test]
    fn refilled_buckets_are_dropped_and_a_full_table_lets_new_keys_through_untracked() {
        // A bucket refills in 100 ms.
        let limiter = limiter::<u32>(10.0, 1, 3);
        for key in 0..3 {
            limiter.check(&key);
        }
        // The table is full of busy buckets: a new key passes, but gets no bucket.
        for _ in 0..5 {
            assert_eq!(limiter.check(&99), Decision::Allow);
        }
        assert_eq!(limiter.buckets.lock().unwrap().map.len(), 3);
        // Once they have refilled, they are swept to make room.
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(limiter.check(&99), Decision::Allow);
        assert!(matches!(limiter.check(&99), Decision::Deny { .. }));
        assert_eq!(limiter.buckets.lock().unwrap().map.len(), 1);
    }
}
