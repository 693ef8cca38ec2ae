//! The gateway: authenticates organization tokens, validates input, serves the admin API
//! (projects, surveys) and the dispatch endpoint, and publishes envelopes to the pipeline.
//!
//! # Layout
//! - [`error`]: the one error shape of every endpoint.
//! - [`auth`]: organization access tokens.
//! - [`body`]: JSON bodies parsed with precise error codes.
//! - [`idempotency`]: `Idempotency-Key` on the POST endpoints.
//! - [`ratelimit`]: rate limits per organization, and per client, link and key on the public
//!   routes.
//! - [`client`]: who a request comes from, for those limits.
//! - [`routes`]: one module per resource.
//! - [`pagination`]: the one way every list pages: `limit`, an opaque `cursor`.
//! - [`page`]: the hosted respond page.
//! - [`openapi`]: the spec served at `/openapi.json`, generated from the handlers.

pub mod auth;
pub mod backlog;
pub mod body;
pub mod client;
pub mod dry_run;
pub mod error;
pub mod idempotency;
pub mod intake;
pub mod lookups;
pub mod openapi;
pub mod page;
pub mod pagination;
pub mod panics;
pub mod ratelimit;
pub mod request_id;
pub mod routes;

use actix_web::dev::Server;
use actix_web::middleware::{ErrorHandlers, Logger};
use actix_web::{App, HttpServer, web};
use anyhow::Context as _;
use beckon_bus::reply::ReplyListener;
use beckon_bus::topology::queues;
use beckon_bus::{Publisher, Topology};
use beckon_runtime::{InfraConfig, env_or, env_parse};
use beckon_store::Store;
use std::net::TcpListener;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The gateway's configuration, from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub infra: InfraConfig,
    /// `BECKON_HTTP_ADDR`: where to listen (default `127.0.0.1:8080`; port 0 picks one).
    pub http_addr: String,
    /// `BECKON_HEALTH_ADDR`: where `/healthz`, `/readyz` and `/metrics` are served (default
    /// `127.0.0.1:9100`). Never the public port: metrics and readiness details are for the
    /// cluster, not for the internet.
    pub ops_addr: String,
    /// `BECKON_DISPATCH_TIMEOUT_MS`: how long a synchronous dispatch waits for its outcome
    /// before answering 504 with the trigger id (default 10000).
    pub dispatch_timeout: Duration,
    /// `BECKON_HTTP_WORKERS`: HTTP worker threads (default: one per core).
    pub http_workers: usize,
    /// `BECKON_DISPATCH_LATE_REPLY_MS`: how long a dispatch that answered 504 keeps waiting for
    /// its outcome, to store it as the answer of its `Idempotency-Key` (default 300000).
    pub late_reply_window: Duration,
    /// `BECKON_IDEMPOTENCY_LEASE_MS`: how long an `Idempotency-Key` stays claimed by a request
    /// that stopped renewing it (its process died) before a retry may take it over and run
    /// again (default 30000, at least 1000). A running request renews it every third of that.
    pub idempotency_lease: Duration,
    /// `BECKON_RATE_LIMIT_PER_SECOND`: requests per second per organization, per gateway
    /// replica; 0 turns the limit off (default 5000).
    pub rate_limit_per_second: f64,
    /// `BECKON_RATE_LIMIT_BURST`: requests an organization may send at once (default 10000).
    pub rate_limit_burst: u32,
    /// `BECKON_PUBLIC_RATE_LIMIT_PER_SECOND` and `_BURST`: requests per client address to the
    /// respond page and the widget (default 10 per second, bursts of 100; 0 turns it off).
    pub public_rate: ratelimit::Rate,
    /// `BECKON_LINK_RATE_LIMIT_PER_SECOND` and `_BURST`: requests per magic link (default 2
    /// per second, bursts of 30: a person answering a survey needs far less).
    pub link_rate: ratelimit::Rate,
    /// `BECKON_WIDGET_RATE_LIMIT_PER_SECOND` and `_BURST`: widget requests per publishable
    /// key, shared by every user of the customer's app (default 100 per second, bursts of 1000).
    pub widget_rate: ratelimit::Rate,
    /// `BECKON_REFUSED_CREDENTIALS_PER_SECOND` and `_BURST`: refused credentials (unknown
    /// tokens, publishable keys, magic links) per client address before it is answered 429
    /// everywhere (default 0.1 per second — 6 a minute — bursts of 20).
    pub refused_rate: ratelimit::Rate,
    /// `BECKON_RATE_LIMIT_MAX_KEYS`: most buckets each limit keeps (default 100000, a few MiB);
    /// past it new clients pass untracked.
    pub rate_limit_max_keys: usize,
    /// `BECKON_TRUSTED_PROXIES`: the proxies whose `X-Forwarded-For` names the client (default
    /// none: the TCP peer is the client).
    pub trusted_proxies: client::TrustedProxies,
    /// `BECKON_SECRET_KEYS` (newest first) or `BECKON_SECRET_KEY` (required): seal webhook
    /// signing secrets and message bodies, and open magic-link tokens.
    pub sealing_key: beckon_webhooks::sealed::SealingKeys,
    /// `BECKON_WEBHOOK_ALLOWED_CIDRS`: private ranges webhook URLs may point at.
    pub webhook_allow: beckon_webhooks::guard::AllowList,
    /// `BECKON_WEBHOOK_MAX_SUBSCRIPTIONS`: most webhook subscriptions a project may have, in
    /// any status (default 20). Every event is delivered to each of them, so this bounds the
    /// fan-out one project can cause.
    pub webhook_subscription_limit: u32,
    /// `BECKON_PUBLIC_URL`: the base of magic links (default `http://127.0.0.1:8080`).
    pub public_url: String,
    /// `BECKON_HTTP_BODY_TIMEOUT_MS`: how long a client may take to send a request body before
    /// it is answered 408 (default 10000).
    pub body_timeout: Duration,
    /// `BECKON_HTTP_MAX_CONNECTIONS`: open connections per HTTP worker before it stops
    /// accepting more for a while (default 256).
    pub max_connections: usize,
    /// `BECKON_AUTH_CACHE_MS`: how long a valid organization token is trusted without asking
    /// the database (default 1000; 0: every request asks). A revoked token stops working
    /// within that long.
    pub auth_cache: Duration,
    /// `BECKON_SHED_BACKLOG`: past this many events waiting in the matcher's queue,
    /// `events/send`, `events/batch` and `dispatch` answer 429 `overloaded` (default 0: never).
    pub shed_backlog: u32,
}

/// Longest `BECKON_AUTH_CACHE_MS`: a revoked token must stop working within a minute on
/// every replica.
pub const MAX_AUTH_CACHE_MS: u64 = 60_000;

fn auth_cache(ms: u64) -> Result<Duration, beckon_runtime::ConfigError> {
    if ms > MAX_AUTH_CACHE_MS {
        return Err(beckon_runtime::ConfigError {
            name: "BECKON_AUTH_CACHE_MS",
            value: ms.to_string(),
            reason: format!(
                "at most {MAX_AUTH_CACHE_MS}: a revoked token must stop working within a minute"
            ),
        });
    }
    Ok(Duration::from_millis(ms))
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let (sealing_key, webhook_allow) = beckon_webhooks::settings_from_env()?;
        let infra = InfraConfig::from_env()?;
        Ok(Self {
            sealing_key,
            webhook_allow,
            public_url: env_or("BECKON_PUBLIC_URL", "http://127.0.0.1:8080")
                .trim_end_matches('/')
                .to_owned(),
            http_addr: env_or("BECKON_HTTP_ADDR", "127.0.0.1:8080"),
            ops_addr: infra
                .health_addr
                .clone()
                .unwrap_or_else(|| "127.0.0.1:9100".to_owned()),
            dispatch_timeout: Duration::from_millis(env_parse(
                "BECKON_DISPATCH_TIMEOUT_MS",
                10_000,
            )?),
            http_workers: env_parse(
                "BECKON_HTTP_WORKERS",
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )?,
            late_reply_window: Duration::from_millis(env_parse(
                "BECKON_DISPATCH_LATE_REPLY_MS",
                300_000,
            )?),
            idempotency_lease: Duration::from_millis(
                env_parse(
                    "BECKON_IDEMPOTENCY_LEASE_MS",
                    idempotency::DEFAULT_LEASE.as_millis() as u64,
                )?
                .max(1000),
            ),
            rate_limit_per_second: env_parse("BECKON_RATE_LIMIT_PER_SECOND", 5000.0)?,
            rate_limit_burst: env_parse("BECKON_RATE_LIMIT_BURST", 10_000)?,
            webhook_subscription_limit: env_parse("BECKON_WEBHOOK_MAX_SUBSCRIPTIONS", 20)?,
            public_rate: ratelimit::Rate {
                per_second: env_parse("BECKON_PUBLIC_RATE_LIMIT_PER_SECOND", 10.0)?,
                burst: env_parse("BECKON_PUBLIC_RATE_LIMIT_BURST", 100)?,
            },
            link_rate: ratelimit::Rate {
                per_second: env_parse("BECKON_LINK_RATE_LIMIT_PER_SECOND", 2.0)?,
                burst: env_parse("BECKON_LINK_RATE_LIMIT_BURST", 30)?,
            },
            widget_rate: ratelimit::Rate {
                per_second: env_parse("BECKON_WIDGET_RATE_LIMIT_PER_SECOND", 100.0)?,
                burst: env_parse("BECKON_WIDGET_RATE_LIMIT_BURST", 1000)?,
            },
            refused_rate: ratelimit::Rate {
                per_second: env_parse("BECKON_REFUSED_CREDENTIALS_PER_SECOND", 0.1)?,
                burst: env_parse("BECKON_REFUSED_CREDENTIALS_BURST", 20)?,
            },
            rate_limit_max_keys: env_parse("BECKON_RATE_LIMIT_MAX_KEYS", 100_000)?,
            trusted_proxies: env_parse(
                "BECKON_TRUSTED_PROXIES",
                client::TrustedProxies::default(),
            )?,
            body_timeout: Duration::from_millis(env_parse(
                "BECKON_HTTP_BODY_TIMEOUT_MS",
                body::DEFAULT_BODY_TIMEOUT.as_millis() as u64,
            )?),
            auth_cache: auth_cache(env_parse("BECKON_AUTH_CACHE_MS", 1000)?)?,
            max_connections: env_parse("BECKON_HTTP_MAX_CONNECTIONS", 256)?,
            shed_backlog: env_parse("BECKON_SHED_BACKLOG", 0)?,
            infra,
        })
    }
}

/// What every handler shares.
pub struct AppState {
    pub store: Store,
    pub publisher: Publisher,
    pub replies: ReplyListener,
    pub dispatch_timeout: Duration,
    pub late_reply_window: Duration,
    /// How long an `Idempotency-Key` claim lasts without renewal.
    pub idempotency_lease: Duration,
    /// Dispatches past their deadline still waiting for their outcome; shutdown lets them
    /// give their `Idempotency-Key` back.
    pub late_waits: tokio_util::task::TaskTracker,
    /// Fires when the gateway stops.
    pub shutdown: CancellationToken,
    /// Per organization; `None` when off.
    pub limiter: Option<ratelimit::RateLimiter<uuid::Uuid>>,
    /// The limits of the public routes and of refused credentials.
    pub public_limits: ratelimit::PublicLimits,
    pub sealing_key: beckon_webhooks::sealed::SealingKeys,
    /// The base of magic links.
    pub public_url: String,
    /// Verifies webhook URLs, through the same address guard deliveries use.
    pub sender: beckon_webhooks::sender::Sender,
    /// Most webhook subscriptions a project may have.
    pub webhook_subscription_limit: u32,
    /// How long a client may take to send a request body.
    pub body_timeout: Duration,
    /// Deletes published outbox rows in batches.
    pub cleaner: beckon_outbox::OutboxCleaner,
    /// Token and project owners, remembered briefly.
    pub lookups: lookups::Lookups,
    /// Commits accepted events in groups.
    pub intake: intake::Intake,
    /// The supervised background tasks the gateway needs to serve (the intake workers, the
    /// outbox relay); readiness fails while one of them is down.
    pub tasks: Vec<beckon_runtime::TaskStatus>,
    /// Publishes of accepted events still running after their answer. Bounded: past it an
    /// answer waits for its publish, so a slow broker slows `events/send` instead of piling up
    /// work in memory.
    pub publishing: std::sync::Arc<tokio::sync::Semaphore>,
    /// Refuses intake past a backlog (`BECKON_SHED_BACKLOG`); `None` when off.
    pub backlog: Option<std::sync::Arc<backlog::Backlog>>,
}

/// Most publishes of accepted events running after their answers.
const BACKGROUND_PUBLISHES: usize = 256;

/// A bound, not yet running gateway.
pub struct Application {
    port: u16,
    server: Server,
    /// The operations endpoints, on a port of their own.
    ops_server: Server,
    ops_port: u16,
    background: CancellationToken,
    late_waits: tokio_util::task::TaskTracker,
}

impl Application {
    /// Connects to the database and the broker, declares the topology, binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        beckon_runtime::health::metrics();
        let bus = beckon_worker::bus_config(&config.infra);
        let topology = Topology::new(&bus);
        let store = beckon_worker::store(&config.infra, "ingest-api")
            .await
            .context("Failed to configure the database pool")?;
        // Declares every work queue before accepting anything, so no accepted event is
        // published to an exchange with no queue bound.
        let publisher = Publisher::connect(&bus.uri, "ingest-api", topology.clone(), queues::all())
            .await
            .context("Failed to connect to the broker")?;
        let background = CancellationToken::new();
        let replies = ReplyListener::start(&bus.uri, &topology, background.clone());
        // events/send and dispatch commit envelopes to the outbox; what a crash or an outage
        // left there is published from here.
        let relay = {
            let (store, publisher, cancel) = (store.clone(), publisher.clone(), background.clone());
            beckon_runtime::supervise("outbox-relay", background.clone(), move || {
                beckon_outbox::run_relay(
                    store.clone(),
                    publisher.clone(),
                    Duration::from_secs(5),
                    Duration::from_secs(1),
                    cancel.clone(),
                )
            })
        };
        if !replies.wait_ready(Duration::from_secs(10)).await {
            tracing::warn!("the reply queue is not consumed yet; dispatches wait for it");
        }
        let late_waits = tokio_util::task::TaskTracker::new();
        let intake = intake::Intake::start(store.clone(), background.clone());
        let state = web::Data::new(AppState {
            tasks: [relay]
                .into_iter()
                .chain(intake.workers().iter().cloned())
                .collect(),
            intake,
            idempotency_lease: config.idempotency_lease,
            late_waits: late_waits.clone(),
            shutdown: background.clone(),
            cleaner: beckon_outbox::OutboxCleaner::start(store.clone()),
            publishing: std::sync::Arc::new(tokio::sync::Semaphore::new(BACKGROUND_PUBLISHES)),
            backlog: backlog::Backlog::start(
                publisher.clone(),
                config.shed_backlog,
                background.clone(),
            ),
            store,
            publisher,
            replies,
            dispatch_timeout: config.dispatch_timeout,
            late_reply_window: config.late_reply_window,
            sealing_key: config.sealing_key.clone(),
            public_url: config.public_url.clone(),
            body_timeout: config.body_timeout,
            lookups: lookups::Lookups::new(config.auth_cache),
            sender: beckon_webhooks::sender::Sender::new(config.webhook_allow.clone())?,
            webhook_subscription_limit: config.webhook_subscription_limit,
            limiter: ratelimit::RateLimiter::new(
                "organization",
                ratelimit::Rate {
                    per_second: config.rate_limit_per_second,
                    burst: config.rate_limit_burst,
                },
                config.rate_limit_max_keys,
            ),
            public_limits: ratelimit::PublicLimits {
                proxies: config.trusted_proxies.clone(),
                per_address: ratelimit::RateLimiter::new(
                    "address",
                    config.public_rate,
                    config.rate_limit_max_keys,
                ),
                per_link: ratelimit::RateLimiter::new(
                    "link",
                    config.link_rate,
                    config.rate_limit_max_keys,
                ),
                per_widget_key: ratelimit::RateLimiter::new(
                    "widget_key",
                    config.widget_rate,
                    config.rate_limit_max_keys,
                ),
                refused: ratelimit::RateLimiter::new(
                    "refused_credentials",
                    config.refused_rate,
                    config.rate_limit_max_keys,
                ),
            },
        });
        let listener = TcpListener::bind(&config.http_addr)
            .with_context(|| format!("Failed to bind {}", config.http_addr))?;
        let port = listener.local_addr()?.port();
        let ops_listener = TcpListener::bind(&config.ops_addr)
            .with_context(|| format!("Failed to bind {}", config.ops_addr))?;
        let ops_port = ops_listener.local_addr()?.port();
        let ops_server = {
            let state = state.clone();
            HttpServer::new(move || {
                App::new()
                    .app_data(state.clone())
                    .configure(routes::health::configure)
            })
            .workers(1)
            .disable_signals()
            .shutdown_timeout(5)
            .listen(ops_listener)?
            .run()
        };
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(body::MAX_BODY_BYTES))
                .app_data(web::QueryConfig::default().error_handler(|err, _| {
                    error::ApiError::bad_request(
                        "invalid_query",
                        format!("The query string is not valid: {err}"),
                    )
                    .into()
                }))
                // Innermost: a route that panics is answered 500, and that answer is logged
                // and counted like any other.
                .wrap(actix_web::middleware::from_fn(panics::contain))
                .wrap(actix_web::middleware::from_fn(body::bounded))
                .wrap(ErrorHandlers::new().default_handler(error::json_errors))
                // Around every route (inside the metrics and the log, which count its 429s):
                // counts what the routes refused, and turns away an address that keeps being
                // refused before any route looks at its next credential.
                .wrap(actix_web::middleware::from_fn(
                    ratelimit::refused_credentials,
                ))
                .wrap(actix_web::middleware::from_fn(http_metrics))
                // Every answer, and every error body, names its request; outside every layer
                // that can answer, inside the log that prints the id.
                .wrap(actix_web::middleware::from_fn(request_id::tag))
                .wrap(
                    // The route, never the path: a path may carry a magic-link token, a
                    // query string a key.
                    Logger::new("%{request}xi %s %Dms %{x-request-id}o")
                        .custom_request_replace("request", |req| {
                            format!(
                                "{} {}",
                                method_label(req.method()),
                                req.match_pattern().as_deref().unwrap_or("unmatched")
                            )
                        })
                        .log_target("http"),
                )
                .configure(routes::configure)
        })
        .workers(config.http_workers.max(1))
        // Past this many open connections a worker stops accepting; new ones wait in the
        // listen backlog, so overload slows clients down instead of growing memory.
        .max_connections(config.max_connections.max(1))
        .disable_signals()
        .shutdown_timeout(30)
        .listen(listener)?
        .run();
        tracing::info!(port, "listening");
        tracing::info!(port = ops_port, "operations endpoints listening");
        Ok(Self {
            port,
            server,
            ops_server,
            ops_port,
            background,
            late_waits,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of `/healthz`, `/readyz` and `/metrics`.
    pub fn ops_port(&self) -> u16 {
        self.ops_port
    }

    /// Serves until `cancel` fires, then stops accepting, lets in-flight requests finish and
    /// returns.
    pub async fn run_until_stopped(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let ops_handle = self.ops_server.handle();
        let server = tokio::spawn(self.server);
        let ops_server = tokio::spawn(self.ops_server);
        cancel.cancelled().await;
        handle.stop(true).await;
        // Probes and scrapes are answered until the public port has drained.
        ops_handle.stop(true).await;
        self.background.cancel();
        // Dispatches still waiting for a late outcome release their keys on cancel; give them
        // a moment to, so a retry need not wait for the lease to lapse.
        self.late_waits.close();
        if tokio::time::timeout(Duration::from_secs(5), self.late_waits.wait())
            .await
            .is_err()
        {
            tracing::warn!("some late dispatch waits did not release their keys in time");
        }
        server.await.context("The HTTP server panicked")??;
        ops_server
            .await
            .context("The operations server panicked")??;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Counts requests and their latency per route pattern (not per path, which would make every
/// id a new series) and status, and serves each request inside a server span that continues
/// the caller's trace when it sends a `traceparent` header.
/// A request's method as metrics and logs name it: from a fixed set, any other (a client may
/// send any token as a method) `other`, so no request adds a series, or a megabyte of label.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

async fn http_metrics(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use tracing::Instrument as _;
    let started = std::time::Instant::now();
    let method = method_label(req.method()).to_owned();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    let traceparent = req
        .headers()
        .get(beckon_runtime::telemetry::TRACEPARENT)
        .and_then(|v| v.to_str().ok());
    beckon_runtime::telemetry::follow(&span, traceparent);
    let answered = next.call(req).instrument(span.clone()).await;
    // An error (a panicking route's, say) is answered by the server from its status: count
    // it with that status too.
    let status = match &answered {
        Ok(response) => response.status(),
        Err(err) => err.as_response_error().status_code(),
    };
    span.record("http.response.status_code", status.as_u16());
    metrics::counter!("beckon_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status.as_u16().to_string())
        .increment(1);
    metrics::histogram!("beckon_http_request_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    answered
}

#[cfg(test)]
mod config_tests {
    use super::*;

    #[test]
    fn the_auth_cache_is_capped_at_a_minute() {
        assert_eq!(auth_cache(0).unwrap(), Duration::ZERO);
        assert_eq!(auth_cache(60_000).unwrap(), Duration::from_secs(60));
        let err = auth_cache(3_600_000).unwrap_err();
        assert_eq!(err.name, "BECKON_AUTH_CACHE_MS");
    }
}
