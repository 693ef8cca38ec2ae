#![doc = include_str!("../README.md")]

pub mod backoff;
pub mod group;
pub mod health;
pub mod supervise;
pub mod telemetry;

pub use supervise::{TaskStatus, supervise};

/// An error with its causes, `: `-separated.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

use std::str::FromStr;
use tokio_util::sync::CancellationToken;

/// A configuration variable is present but unusable.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}={value:?} is invalid: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub value: String,
    pub reason: String,
}

/// The variable `name`, or `default` when unset or empty.
pub fn env_or(name: &'static str, default: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => default.to_owned(),
    }
}

/// The variable `name` parsed as `T`, or `default` when unset or empty.
pub fn env_parse<T>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v.parse().map_err(|e: T::Err| ConfigError {
            name,
            value: v,
            reason: e.to_string(),
        }),
        _ => Ok(default),
    }
}

/// Logs and, when configured, traces for `service`; see [`telemetry`]. Keep the guard for
/// the life of `main`: dropping it flushes the last spans.
pub fn init_telemetry(service: &'static str) -> telemetry::Telemetry {
    telemetry::init(service)
}

/// Installs the process's one TLS provider (ring) for every rustls client (webhooks, the OTLP
/// exporter); a provider installed before is kept. Idempotent.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A token cancelled on SIGTERM (Kubernetes' stop signal) or Ctrl-C.
pub fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let fire = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(err) => {
                        tracing::error!(error = %err, "cannot listen for SIGTERM");
                        let _ = ctrl_c.await;
                        fire.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown requested");
        fire.cancel();
    });
    token
}

/// How the services' connections reach PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbPooling {
    /// A connection is one server session for its whole life.
    Session,
    /// Each transaction may run on another server session (a pooler in transaction mode).
    Transaction,
}

impl FromStr for DbPooling {
    type Err = &'static str;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw {
            "session" => Ok(Self::Session),
            "transaction" => Ok(Self::Transaction),
            _ => Err("expected session or transaction"),
        }
    }
}

/// Where the database and the broker are, shared by every service.
#[derive(Debug, Clone)]
pub struct InfraConfig {
    /// `BECKON_DATABASE_URL`: PostgreSQL URL.
    pub database_url: String,
    /// `BECKON_DB_POOL_SIZE`: most database connections this process opens (default 8).
    pub db_pool_size: usize,
    /// `BECKON_DB_STATEMENT_TIMEOUT_MS`: a statement running longer is cancelled and fails as
    /// a retryable error (default 30000; 0 turns it off).
    pub db_statement_timeout: std::time::Duration,
    /// `BECKON_DB_LOCK_TIMEOUT_MS`: a statement waiting longer for a row or table lock fails
    /// instead of queueing behind a stuck transaction (default 10000; 0 turns it off).
    pub db_lock_timeout: std::time::Duration,
    /// `BECKON_DB_POOLING`: `session` (the default: straight to PostgreSQL, or through a pooler
    /// in session mode) or `transaction` (through PgBouncer 1.21+ in transaction mode: nothing
    /// is set on a connection's session, so the statement and lock timeouts are the role's).
    pub db_pooling: DbPooling,
    /// `BECKON_AMQP_URL`: RabbitMQ URL, or several separated by commas (a cluster's nodes, each
    /// tried in turn when connecting).
    pub amqp_url: String,
    /// `BECKON_QUEUE_PREFIX`: prefix of every exchange and queue (default `beckon`).
    pub queue_prefix: String,
    /// `BECKON_PREFETCH`: unacknowledged deliveries a consumer holds at once (default 64).
    pub prefetch: u16,
    /// `BECKON_BATCH_SIZE`: most envelopes a consumer handles in one transaction (default 32;
    /// 1 handles each on its own).
    pub batch_size: usize,
    /// `BECKON_DELIVERY_LIMIT`: deliveries before a failing message is dead-lettered (default 5).
    pub delivery_limit: u32,
    /// `BECKON_RETRY_PATIENCE_MS`: how long a message that fails while the database answers (a
    /// lock held by a migration, a deadlock, a statement timeout) is tried again in place
    /// before it goes back to the broker as one counted delivery (default 60000). Longer than
    /// the locks your migrations hold, so contention never dead-letters anything.
    pub retry_patience: std::time::Duration,
    /// `BECKON_QUEUE_EXPIRES_MS`: delete queues unused this long; for tests only (default unset).
    pub queue_expires_ms: Option<u32>,
    /// `BECKON_HEALTH_ADDR`: where a service serves `/healthz`, `/readyz` and `/metrics`, on a
    /// port apart from any public one. Default per service.
    pub health_addr: Option<String>,
}

impl InfraConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let expires: u32 = env_parse("BECKON_QUEUE_EXPIRES_MS", 0)?;
        Ok(Self {
            database_url: env_or(
                "BECKON_DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/beckon",
            ),
            db_pool_size: env_parse("BECKON_DB_POOL_SIZE", 8)?,
            db_statement_timeout: std::time::Duration::from_millis(env_parse(
                "BECKON_DB_STATEMENT_TIMEOUT_MS",
                30_000,
            )?),
            db_lock_timeout: std::time::Duration::from_millis(env_parse(
                "BECKON_DB_LOCK_TIMEOUT_MS",
                10_000,
            )?),
            db_pooling: env_parse("BECKON_DB_POOLING", DbPooling::Session)?,
            amqp_url: env_or("BECKON_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            queue_prefix: env_or("BECKON_QUEUE_PREFIX", "beckon"),
            prefetch: env_parse("BECKON_PREFETCH", 64)?,
            batch_size: env_parse("BECKON_BATCH_SIZE", 32)?,
            delivery_limit: env_parse("BECKON_DELIVERY_LIMIT", 5)?,
            retry_patience: std::time::Duration::from_millis(env_parse(
                "BECKON_RETRY_PATIENCE_MS",
                60_000,
            )?),
            queue_expires_ms: (expires > 0).then_some(expires),
            health_addr: std::env::var("BECKON_HEALTH_ADDR")
                .ok()
                .filter(|a| !a.is_empty()),
        })
    }
}
