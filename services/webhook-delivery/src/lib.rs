//! The webhook service: turns the events customers subscribe to into signed HTTP POSTs to
//! their endpoints, and keeps at it through their outages.
//!
//! # Layout
//! - [`fanout`]: the consumer — one message per event, one delivery per subscription that
//!   wants it, committed, then the first attempts go out at once.
//! - [`engine`]: attempts — signing, sending, logging, the retry schedule, disabling — and the
//!   poller that claims deliveries whose retry is due.
//! - [`notices`]: the operational events about subscriptions themselves, `webhook.failing` and
//!   `webhook.disabled`, sent where the failure that causes them is recorded.
//!
//! No broker message is held across an HTTP call: the consumer commits and acknowledges, and
//! attempts run in their own tasks, at most a few at a time per subscription, so a slow
//! endpoint never delays a healthy one.

pub mod engine;
pub mod fanout;
pub mod notices;

use anyhow::Context as _;
use beckon_bus::topology::queues;
use beckon_domain::envelope::{InvitationCreated, ResponseProgressed};
use beckon_runtime::{InfraConfig, env_parse};
use beckon_webhooks::guard::AllowList;
use beckon_webhooks::sealed::SealingKeys;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The name this consumer records processed envelopes under.
pub const CONSUMER: &str = "webhooks";

#[derive(Debug, Clone)]
pub struct Config {
    pub infra: InfraConfig,
    /// `BECKON_SECRET_KEYS` (comma-separated, newest first) or `BECKON_SECRET_KEY` (required):
    /// base64 of 32 bytes each; seal signing secrets and bodies.
    pub sealing_keys: SealingKeys,
    /// `BECKON_WEBHOOK_ALLOWED_CIDRS`: comma-separated ranges webhooks may reach despite being
    /// private or loopback (default none).
    pub allow: AllowList,
    /// `BECKON_WEBHOOK_DISABLE_AFTER_SECS`: a subscription whose attempts have failed
    /// continuously (no success in between) for this long is disabled (default 7 days)...
    pub disable_after: Duration,
    /// `BECKON_WEBHOOK_DISABLE_MIN_FAILURES`: ...once the streak holds at least this many
    /// failed attempts (default 5), so a quiet endpoint's rare failures never add up to it.
    pub disable_min_failures: u32,
    /// `BECKON_WEBHOOK_POLL_INTERVAL_MS`: how often due retries are looked for (default 200).
    pub poll_interval: Duration,
    /// `BECKON_WEBHOOK_CONCURRENCY_PER_SUBSCRIPTION`: attempts in flight per subscription
    /// (default 16).
    pub per_subscription: usize,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let (sealing_keys, allow) = beckon_webhooks::settings_from_env()?;
        Ok(Self {
            infra: InfraConfig::from_env()?,
            sealing_keys,
            allow,
            disable_after: Duration::from_secs(env_parse(
                "BECKON_WEBHOOK_DISABLE_AFTER_SECS",
                7 * 24 * 3600,
            )?),
            disable_min_failures: env_parse("BECKON_WEBHOOK_DISABLE_MIN_FAILURES", 5)?,
            poll_interval: Duration::from_millis(env_parse(
                "BECKON_WEBHOOK_POLL_INTERVAL_MS",
                200,
            )?),
            per_subscription: env_parse("BECKON_WEBHOOK_CONCURRENCY_PER_SUBSCRIPTION", 16)?,
        })
    }
}

/// Runs until `cancel` fires; then finishes in-flight work and returns.
pub async fn run(config: Config, cancel: CancellationToken) -> anyhow::Result<()> {
    let sender = beckon_webhooks::sender::Sender::new(config.allow.clone())?;
    let mut service = beckon_worker::Service::connect(CONSUMER, &config.infra, "127.0.0.1:9103")
        .await
        .context("The webhook service failed to start")?;
    // The service's one pool: the deliveries and the consumers share it.
    let engine = Arc::new(engine::Engine::new(
        service.deps.store.clone(),
        sender,
        config.sealing_keys.clone(),
        engine::Settings {
            disable_after: config.disable_after,
            disable_min_failures: config.disable_min_failures,
            per_subscription: config.per_subscription,
        },
    ));
    let fanout = fanout::Fanout {
        engine: engine.clone(),
    };
    let consumers = vec![
        service.consumer::<InvitationCreated, _>(
            queues::webhooks(),
            fanout.clone(),
            cancel.clone(),
        ),
        service.consumer::<ResponseProgressed, _>(
            queues::webhook_responses(),
            fanout,
            cancel.clone(),
        ),
    ];
    let poller = {
        let (engine, cancel) = (engine.clone(), cancel.clone());
        move || {
            engine
                .clone()
                .run_poller(config.poll_interval, cancel.clone())
        }
    };
    service
        .run(consumers, poller, cancel)
        .await
        .context("The webhook service failed")?;
    engine.drain(Duration::from_secs(30)).await;
    Ok(())
}
