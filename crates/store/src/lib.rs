#![doc = include_str!("../README.md")]
//!
//! # Layout
//! - [`schema`]: the tables, as diesel sees them.
//! - [`connect`]: opening connections, over TLS as the URL's `sslmode` asks.
//! - [`tenancy`]: organizations, access tokens, projects.
//! - [`surveys`]: surveys, their versions, and matching Live surveys to an event.
//! - [`triggers`]: one row per fired event and the outcome per matched survey.
//! - [`idempotency`]: `Idempotency-Key` records.
//! - [`invitations`]: invitations, magic-link lookup, the atomic cooldown claim.
//! - [`migrations`]: applying the schema migrations under a lock, and their status.
//! - [`retention`]: age-based sweeps of the tables that only grow.
//! - [`stalled`]: triggers that stopped moving: sent again once, or failed with a reason.
//! - [`responses`]: responses to invitations and their answers.
//! - [`outbox`]: envelopes committed with the work that emits them.
//! - [`users`]: the users a project tells Beckon about.
//! - [`webhooks`]: webhook subscriptions, messages, deliveries, attempts.
//! - [`processed`]: envelope ids a consumer has handled.
//! - [`sealed`]: the columns of sealed values, and resealing them under a new key.
//! - [`pipelined`]: results of statements that share a round trip.
//! - [`paging`]: keyset pages, the one way every list is read.
//! - [`testing`]: a fresh database per test, cloned from a migrated template.

pub mod cached;
pub mod connect;
pub mod idempotency;
pub mod invitations;
pub mod migrations;
pub mod outbox;
pub mod paging;
pub mod pipelined;
pub mod processed;
pub mod reminders;
pub mod responses;
pub mod retention;
pub mod schema;
pub mod sealed;
pub mod segments;
pub mod stalled;
pub mod surveys;
pub mod tenancy;
pub mod testing;
pub mod triggers;
pub mod users;
pub mod webhooks;

use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::deadpool::{Object, Pool, PoolError};
use diesel_async::{AsyncConnection, AsyncPgConnection};

pub use diesel_async::AsyncPgConnection as Conn;
pub use migrations::{MIGRATIONS, migrate, migrate_reporting};

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection could be had from the pool (the database is down or saturated).
    #[error("could not get a database connection")]
    Pool(#[from] PoolError),
    /// A connection could not be opened (the TLS handshake failed, or the server is away).
    #[error(transparent)]
    Open(#[from] connect::ConnectError),
    /// A statement failed.
    #[error("a database statement failed")]
    Query(#[from] diesel::result::Error),
    /// Applying the migrations failed.
    #[error("could not apply the migrations: {0}")]
    Migrate(String),
    /// The pool could not be built from the configuration.
    #[error("invalid database pool configuration: {0}")]
    Config(String),
    /// A stored JSON document does not fit its type (a bug or a manual edit).
    #[error("stored data does not match its type: {0}")]
    Corrupt(#[from] serde_json::Error),
    /// A stored value is outside its domain (a bug or a manual edit).
    #[error("stored row is invalid: {0}")]
    InvalidRow(String),
    /// A user's attributes, merged with what was kept, would exceed
    /// [`users::MAX_ATTRIBUTES_BYTES`]; nothing was changed.
    #[error(
        "the user's attributes, merged with those kept, would exceed {} bytes",
        users::MAX_ATTRIBUTES_BYTES
    )]
    AttributesTooLarge,
    /// A survey's conditions refer to a segment its project does not have (or no longer
    /// has); nothing was changed.
    #[error("no segment {0} in this project")]
    SegmentNotFound(uuid::Uuid),
}

impl StoreError {
    /// Whether retrying later may succeed: everything but a violated constraint or corrupt
    /// data, which would fail the same way again.
    pub fn is_transient(&self) -> bool {
        use diesel::result::{DatabaseErrorKind as K, Error as E};
        !matches!(
            self,
            Self::Query(
                E::DatabaseError(
                    K::UniqueViolation
                        | K::ForeignKeyViolation
                        | K::CheckViolation
                        | K::NotNullViolation,
                    _,
                ) | E::NotFound
                    | E::DeserializationError(_)
                    | E::SerializationError(_)
            ) | Self::Corrupt(_)
                | Self::InvalidRow(_)
                | Self::AttributesTooLarge
                | Self::SegmentNotFound(_)
                | Self::Config(_)
                | Self::Migrate(_)
                | Self::Open(connect::ConnectError::Tls(_))
        )
    }

    /// Whether this is a unique-constraint violation.
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            Self::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _
            ))
        )
    }
}

/// A pooled connection.
pub type PooledConn = Object<AsyncPgConnection>;

/// The connection pool every service shares among its handlers.
#[derive(Clone)]
pub struct Store {
    pool: Pool<AsyncPgConnection>,
    connector: std::sync::Arc<connect::Connector>,
}

/// Bounds on every statement of a pooled connection, set when the connection opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `statement_timeout`: a statement running longer is cancelled (an error the caller
    /// retries or reports), so a runaway query or a stuck server never holds a handler for ever.
    pub statement_timeout: std::time::Duration,
    /// `lock_timeout`: a statement waiting longer than this for a lock fails instead of
    /// queueing behind a stuck transaction.
    pub lock_timeout: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            statement_timeout: std::time::Duration::from_secs(30),
            lock_timeout: std::time::Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// The `SET` statements that apply these limits to a session (0 turns a limit off).
    fn session_settings(&self) -> String {
        format!(
            "SET statement_timeout = {}; SET lock_timeout = {}",
            self.statement_timeout.as_millis(),
            self.lock_timeout.as_millis()
        )
    }
}

impl Store {
    /// Builds a pool of at most `max_size` connections to `url` with the default [`Limits`];
    /// connections open lazily.
    pub fn new(url: &str, max_size: usize) -> Result<Self, StoreError> {
        Self::with_limits(url, max_size, Some(Limits::default()))
    }

    /// Builds a pool of at most `max_size` connections to `url`, each opened with `limits` set
    /// on its session. `None` sets nothing: behind a pooler in transaction mode, consecutive
    /// transactions run on whichever server session is free, and a `SET` would stay on that
    /// session for other clients; the role's settings are the limits then.
    pub fn with_limits(
        url: &str,
        max_size: usize,
        limits: Option<Limits>,
    ) -> Result<Self, StoreError> {
        let connector = connect::Connector::from_url(url).map_err(StoreError::Config)?;
        Self::with_connector(connector, max_size, limits)
    }

    /// Builds a pool of at most `max_size` connections opened by `connector`, with `limits` as
    /// [`Store::with_limits`] takes them.
    pub fn with_connector(
        connector: connect::Connector,
        max_size: usize,
        limits: Option<Limits>,
    ) -> Result<Self, StoreError> {
        use diesel_async::SimpleAsyncConnection;
        use futures_util::FutureExt;
        // No test query on every checkout (the default sends `SELECT 1` each time, a round trip
        // and a transaction per use): a connection that broke is found on its first use, which
        // fails as a transient error, and the pool drops it.
        let mut config = diesel_async::pooled_connection::ManagerConfig::default();
        config.recycling_method = diesel_async::pooled_connection::RecyclingMethod::Fast;
        let settings = limits.map(|l| l.session_settings());
        let connector = std::sync::Arc::new(connector);
        let opener = connector.clone();
        config.custom_setup = Box::new(move |_url| {
            let (connector, settings) = (opener.clone(), settings.clone());
            async move {
                let mut conn = connector.connect().await?;
                conn.set_instrumentation(CountStatements(metrics::counter!(
                    "beckon_db_statements_total"
                )));
                if let Some(settings) = &settings {
                    conn.batch_execute(settings)
                        .await
                        .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                }
                Ok(conn)
            }
            .boxed()
        });
        // The URL is the connector's; the manager's copy is never used.
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
            String::new(),
            config,
        );
        let pool = Pool::builder(manager)
            .max_size(max_size)
            .wait_timeout(Some(std::time::Duration::from_secs(5)))
            .create_timeout(Some(std::time::Duration::from_secs(5)))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        Ok(Self { pool, connector })
    }

    /// Opens one connection outside the pool, so that a process can refuse to start on a TLS
    /// setting that can never work (a certificate the CA does not sign) instead of waiting as
    /// for a database that is only away.
    pub async fn check_connect(&self) -> Result<(), connect::ConnectError> {
        self.connector.connect().await.map(drop)
    }

    pub async fn conn(&self) -> Result<PooledConn, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        use diesel_async::RunQueryDsl;
        match self.conn().await {
            Ok(mut conn) => diesel::sql_query("SELECT 1")
                .execute(&mut conn)
                .await
                .is_ok(),
            Err(_) => false,
        }
    }
}

/// Counts what a pooled connection sends in `beckon_db_statements_total`, each statement of a
/// pipeline and each `BEGIN` and `COMMIT` included: `make bench` divides it by the events of a
/// scenario, so a change to the statements an event costs shows whatever the machine's speed.
/// Holds the counter, so a statement costs an increment, not a look-up of the metric.
struct CountStatements(metrics::Counter);

impl diesel::connection::Instrumentation for CountStatements {
    fn on_connection_event(&mut self, event: diesel::connection::InstrumentationEvent<'_>) {
        if let diesel::connection::InstrumentationEvent::FinishQuery { .. } = event {
            self.0.increment(1);
        }
    }
}
