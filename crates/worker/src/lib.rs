#![doc = include_str!("../README.md")]

mod batch;
mod dead_letters;
mod outage;

pub use batch::Batcher;
pub use outage::Database;

use beckon_bus::consumer::{self, ConsumerConfig};
use beckon_bus::{Disposition, Message, Publisher, Topology};
use beckon_domain::envelope::{Envelope, Kind, Payload};
use beckon_outbox::OutboxCleaner;
use beckon_runtime::error_chain;
use beckon_runtime::supervise::{TaskStatus, supervise};
use beckon_store::{Store, StoreError};
use diesel_async::AsyncPgConnection;
use std::future::Future;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// An envelope a handler emits, committed to the outbox with its work.
#[derive(Debug, Clone)]
pub struct Emit {
    pub envelope_id: Uuid,
    pub exchange: String,
    pub routing_key: String,
    pub body: Vec<u8>,
}

impl Emit {
    /// To the events exchange, under the envelope's routing key.
    pub fn event<T: Kind + serde::Serialize>(topology: &Topology, env: &Envelope<T>) -> Self {
        Self {
            envelope_id: env.id,
            exchange: topology.events_exchange(),
            routing_key: env.routing_key(),
            body: env.to_json(),
        }
    }

    /// Straight to a reply queue, through the default exchange.
    pub fn reply<T: Payload>(queue: &str, env: &Envelope<T>) -> Self {
        Self {
            envelope_id: env.id,
            exchange: String::new(),
            routing_key: queue.to_owned(),
            body: env.to_json(),
        }
    }
}

/// Why a handler failed.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// May pass on a later try (the database is unreachable): the message is redelivered.
    #[error("transient failure")]
    Retryable(#[source] StoreError),
    /// Will fail the same way every time: the message is dead-lettered.
    #[error("{reason}: {detail}")]
    Permanent {
        reason: &'static str,
        detail: String,
    },
}

impl From<StoreError> for HandleError {
    fn from(err: StoreError) -> Self {
        if err.is_transient() {
            Self::Retryable(err)
        } else {
            Self::Permanent {
                reason: "handler_failed",
                detail: error_chain(&err),
            }
        }
    }
}

impl From<diesel::result::Error> for HandleError {
    fn from(err: diesel::result::Error) -> Self {
        StoreError::from(err).into()
    }
}

/// The heart of a consumer: given a batch of new envelopes (one already handled is never
/// passed) and a connection inside the transaction that records them as processed and adds
/// what they emit to the outbox, do their work and say what each emits, in order.
///
/// The batch is the only unit of work: a lone delivery is a batch of one. Should a batch
/// fail, the runtime hands each of its envelopes to `handle` again as a batch of one, so one
/// bad envelope (or a deadlock between batches) settles only itself, and a handler needs no
/// per-envelope error isolation of its own.
pub trait Handler<T: Payload>: Send + Sync + 'static {
    /// How an envelope handled before is told apart when it comes again.
    const REPEATS: Repeats = Repeats::Recorded;

    /// What `handle` hands on to `after_commit` (`()` when nothing).
    type Then: Send;

    fn handle(
        &self,
        items: &[Item<'_, T>],
        conn: &mut AsyncPgConnection,
    ) -> impl Future<Output = Result<Handled<Self::Then>, HandleError>> + Send;

    /// Runs after the work of a batch is committed, before the acks, with what `handle`
    /// handed on: the place to start what must not hold the transaction, such as outbound HTTP
    /// calls. It must not block for long; spawn what may.
    fn after_commit(
        &self,
        _items: &[Item<'_, T>],
        _then: Self::Then,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// What a handler made of a batch: what each envelope emits, in order, and what it hands on
/// to `after_commit`.
#[derive(Debug)]
pub struct Handled<A = ()> {
    pub emits: Vec<Vec<Emit>>,
    pub then: A,
}

impl Handled {
    /// Emits only, nothing handed on.
    pub fn emits(emits: Vec<Vec<Emit>>) -> Self {
        Self { emits, then: () }
    }
}

/// How a consumer tells an envelope it handled before (a redelivery, a copy the outbox relay
/// published again) from a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeats {
    /// Each envelope handled is recorded in `processed_envelopes`, in the transaction of its
    /// work, and a repeat is dropped: for work that must not be done twice.
    Recorded,
    /// No record, no transaction and no outbox: handling an envelope again changes nothing
    /// that matters and emits the same envelopes under the same ids, which the next stage
    /// drops as repeats. The handler's statements commit on their own, and what it emits is
    /// published, confirmed, before the deliveries are acknowledged (into the outbox only if
    /// the broker does not take it). Saves a record, a transaction and an outbox row per
    /// envelope where the handler's own writes are idempotent.
    Harmless,
}

/// One envelope of a batch, with the span of the delivery that brought it: what a handler
/// logs about this envelope belongs in that span (`item.span.in_scope(..)`).
#[derive(Debug, Clone, Copy)]
pub struct Item<'a, T: Payload> {
    pub env: &'a Envelope<T>,
    pub span: &'a tracing::Span,
}

/// Everything a worker needs besides its handler.
#[derive(Clone)]
pub struct Deps {
    pub store: Store,
    pub publisher: Publisher,
    /// Deletes published outbox rows in batches.
    pub cleaner: OutboxCleaner,
    /// Whether the database answers: tells an outage from a failed message.
    pub database: Database,
    /// How long a message that fails while the database answers is tried again in place
    /// before it goes back to the broker as a counted retry.
    pub patience: std::time::Duration,
}

/// What a failure to handle an envelope means for its delivery.
pub(crate) fn disposition_of(err: HandleError) -> Disposition {
    match err {
        HandleError::Retryable(err) => Disposition::Retry {
            reason: error_chain(&err),
        },
        HandleError::Permanent { reason, detail } => Disposition::DeadLetter {
            reason: reason.to_owned(),
            detail,
        },
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum TxError {
    #[error(transparent)]
    Handle(#[from] HandleError),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

impl TxError {
    /// Whether trying again may succeed: anything but a handler's permanent verdict.
    pub(crate) fn may_pass(&self) -> bool {
        !matches!(self, Self::Handle(HandleError::Permanent { .. }))
    }
}

impl From<TxError> for HandleError {
    fn from(err: TxError) -> Self {
        match err {
            TxError::Handle(err) => err,
            TxError::Query(err) => err.into(),
        }
    }
}

impl From<StoreError> for TxError {
    fn from(err: StoreError) -> Self {
        Self::Handle(err.into())
    }
}

/// Consumes `config.queue`, handing each delivery to `batcher`, until `cancel` fires.
async fn consume<T: Payload>(
    consumer_name: &'static str,
    config: ConsumerConfig,
    batcher: Batcher<T>,
    cancel: CancellationToken,
    ready: impl Fn(bool) + Send + Sync,
) {
    let handler_cancel = cancel.clone();
    consumer::run(
        config,
        move |message: Message| {
            let batcher = batcher.clone();
            let cancel = handler_cancel.clone();
            async move {
                let started = std::time::Instant::now();
                let disposition = batcher.process(&message.body, &cancel).await;
                metrics::histogram!("beckon_handler_seconds", "consumer" => consumer_name, "type" => T::TYPE)
                    .record(started.elapsed().as_secs_f64());
                disposition
            }
        },
        cancel,
        ready,
    )
    .await;
}

/// The bus settings of a service, from the shared infrastructure configuration.
pub fn bus_config(infra: &beckon_runtime::InfraConfig) -> beckon_bus::BusConfig {
    let mut bus = beckon_bus::BusConfig::new(&infra.amqp_url, &infra.queue_prefix);
    bus.prefetch = infra.prefetch;
    bus.delivery_limit = infra.delivery_limit;
    bus.queue_expires_ms = infra.queue_expires_ms;
    bus
}

/// The database pool of a service, with the configured bounds on every connection, which name
/// themselves `name`. Refuses a TLS setting the database's certificate fails (it would never
/// work); a database that is only away is waited for, connection by connection, as the service
/// runs. One per process: `BECKON_DB_POOL_SIZE` is what a process may hold.
pub async fn store(infra: &beckon_runtime::InfraConfig, name: &str) -> Result<Store, StoreError> {
    let limits = beckon_store::Limits {
        statement_timeout: infra.db_statement_timeout,
        lock_timeout: infra.db_lock_timeout,
    };
    let connector = beckon_store::connect::Connector::from_url(&infra.database_url)
        .map_err(StoreError::Config)?
        .application_name(name);
    let store = Store::with_connector(
        connector,
        infra.db_pool_size,
        (infra.db_pooling == beckon_runtime::DbPooling::Session).then_some(limits),
    )?;
    match store.check_connect().await {
        Err(err @ beckon_store::connect::ConnectError::Tls(_)) => Err(err.into()),
        Err(err) => {
            tracing::warn!(error = %err, "the database is not reachable yet; starting anyway");
            Ok(store)
        }
        Ok(()) => Ok(store),
    }
}

/// A consumer service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("could not set up the database pool")]
    Store(#[from] StoreError),
    #[error("could not connect to the broker")]
    Bus(#[from] beckon_bus::BusError),
    #[error("could not serve the operations endpoints")]
    Health(#[source] std::io::Error),
}

/// A connected consumer service: its store, publisher and topology.
pub struct Service {
    pub deps: Deps,
    pub topology: Topology,
    bus: beckon_bus::BusConfig,
    name: &'static str,
    batch_size: usize,
    health_addr: String,
    /// One flag per consumer: consuming right now.
    consuming: Vec<Arc<std::sync::atomic::AtomicBool>>,
    /// The work queues consumed, whose backlogs are reported.
    queues: Vec<&'static str>,
    /// The supervised background tasks the service needs: its batch workers, the relay, the
    /// dead-letter watch and its own sidecar.
    tasks: Vec<TaskStatus>,
}

impl Service {
    /// Builds the pool and connects the publisher (declaring the whole topology).
    /// `default_health_addr` is where `/healthz`, `/readyz` and `/metrics` are served unless
    /// `BECKON_HEALTH_ADDR` says otherwise.
    pub async fn connect(
        name: &'static str,
        infra: &beckon_runtime::InfraConfig,
        default_health_addr: &str,
    ) -> Result<Self, ServeError> {
        use beckon_bus::topology::queues;
        // Before any connection is made: each takes its statement counter from the recorder.
        beckon_runtime::health::metrics();
        let bus = bus_config(infra);
        let topology = Topology::new(&bus);
        let store = store(infra, name).await?;
        let publisher = Publisher::connect(&bus.uri, name, topology.clone(), queues::all()).await?;
        Ok(Self {
            deps: Deps {
                cleaner: OutboxCleaner::start(store.clone()),
                database: Database::new(store.clone()),
                patience: infra.retry_patience,
                store,
                publisher,
            },
            topology,
            bus,
            name,
            batch_size: infra.batch_size,
            health_addr: infra
                .health_addr
                .clone()
                .unwrap_or_else(|| default_health_addr.to_owned()),
            consuming: Vec::new(),
            queues: Vec::new(),
            tasks: Vec::new(),
        })
    }

    /// A consumer of `queue` with `handler`, to pass to [`Service::run`].
    pub fn consumer<T: Payload, H: Handler<T>>(
        &mut self,
        queue: beckon_bus::WorkQueue,
        handler: H,
        cancel: CancellationToken,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        self.consuming.push(flag.clone());
        self.queues.push(queue.name);
        let config = ConsumerConfig {
            uri: self.bus.uri.clone(),
            topology: self.topology.clone(),
            queue,
            declare: beckon_bus::topology::queues::all(),
            prefetch: self.bus.prefetch,
            name: self.name.into(),
        };
        let batcher = Batcher::start(
            self.name,
            self.deps.clone(),
            handler,
            self.batch_size,
            cancel.clone(),
        );
        self.tasks.extend(batcher.workers());
        Box::pin(consume(self.name, config, batcher, cancel, move |on| {
            flag.store(on, std::sync::atomic::Ordering::SeqCst)
        }))
    }

    /// Runs the outbox relay, the dead-letter watch, `sidecar` (a background loop of the
    /// service's own, made anew if it ever panics or returns early) and the consumers until
    /// `cancel` fires and every consumer has finished its in-flight work. Every background
    /// task is supervised: restarted when it dies, counted in `beckon_task_restarts_total`,
    /// and reported by readiness while it is down.
    pub async fn run<S, F>(
        mut self,
        consumers: Vec<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>,
        sidecar: S,
        cancel: CancellationToken,
    ) -> Result<(), ServeError>
    where
        S: FnMut() -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let watching = Arc::new(std::sync::atomic::AtomicBool::new(false));
        self.consuming.push(watching.clone());
        let watch = ConsumerConfig {
            uri: self.bus.uri.clone(),
            topology: self.topology.clone(),
            queue: beckon_bus::topology::queues::dead_letters(),
            declare: beckon_bus::topology::queues::all(),
            prefetch: self.bus.prefetch,
            name: format!("{}-dead-letters", self.name),
        };
        let (deps, stop) = (self.deps.clone(), cancel.clone());
        self.tasks
            .push(supervise("dead-letter-watch", cancel.clone(), move || {
                let watching = watching.clone();
                dead_letters::watch(watch.clone(), deps.clone(), stop.clone(), move |on| {
                    watching.store(on, std::sync::atomic::Ordering::SeqCst)
                })
            }));
        let (store, publisher, stop) = (
            self.deps.store.clone(),
            self.deps.publisher.clone(),
            cancel.clone(),
        );
        self.tasks
            .push(supervise("outbox-relay", cancel.clone(), move || {
                beckon_outbox::run_relay(
                    store.clone(),
                    publisher.clone(),
                    std::time::Duration::from_secs(5),
                    std::time::Duration::from_secs(1),
                    stop.clone(),
                )
            }));
        self.tasks
            .push(supervise(self.name, cancel.clone(), sidecar));
        let (publisher, queues, stop) = (
            self.deps.publisher.clone(),
            self.queues.clone(),
            cancel.clone(),
        );
        self.tasks
            .push(supervise("backlog", cancel.clone(), move || {
                report_backlogs(publisher.clone(), queues.clone(), stop.clone())
            }));

        let checks: beckon_runtime::health::Checks = {
            let (store, publisher, consuming, tasks) = (
                self.deps.store.clone(),
                self.deps.publisher.clone(),
                self.consuming.clone(),
                self.tasks.clone(),
            );
            Arc::new(move || {
                let (store, publisher, consuming, tasks) = (
                    store.clone(),
                    publisher.clone(),
                    consuming.clone(),
                    tasks.clone(),
                );
                Box::pin(async move {
                    vec![
                        ("database", store.ping().await),
                        ("broker", publisher.ensure_connected().await),
                        (
                            "consuming",
                            consuming
                                .iter()
                                .all(|f| f.load(std::sync::atomic::Ordering::SeqCst)),
                        ),
                        ("workers", beckon_runtime::supervise::all_running(&tasks).0),
                    ]
                })
            })
        };
        beckon_runtime::health::serve(&self.health_addr, checks, cancel.clone())
            .map_err(ServeError::Health)?;
        futures_util::future::join_all(consumers).await;
        Ok(())
    }
}

/// Reports how many messages wait in each of `queues`, every few seconds, as
/// `beckon_queue_backlog{queue}`: a stage falling behind shows before its latency does.
async fn report_backlogs(
    publisher: Publisher,
    queues: Vec<&'static str>,
    cancel: CancellationToken,
) {
    loop {
        for queue in &queues {
            if let Ok(n) = publisher.ready_messages(queue).await {
                metrics::gauge!("beckon_queue_backlog", "queue" => *queue).set(n as f64);
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
        }
    }
}

/// The whole life of a single-queue consumer service: connect, run the outbox relay and
/// `sidecar` (a background loop of the service's own, such as the scheduler; made again from
/// its arguments should it die) beside the consumer of `queue`, and on `cancel` finish
/// in-flight work and return.
pub async fn serve<T, H, S, F>(
    consumer_name: &'static str,
    infra: &beckon_runtime::InfraConfig,
    default_health_addr: &str,
    queue: beckon_bus::WorkQueue,
    make_handler: impl FnOnce(&Topology) -> H,
    sidecar: S,
    cancel: CancellationToken,
) -> Result<(), ServeError>
where
    T: Payload,
    H: Handler<T>,
    S: Fn(Deps, Topology, CancellationToken) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let mut service = Service::connect(consumer_name, infra, default_health_addr).await?;
    let handler = make_handler(&service.topology);
    let consumer = service.consumer(queue, handler, cancel.clone());
    let (deps, topology, stop) = (
        service.deps.clone(),
        service.topology.clone(),
        cancel.clone(),
    );
    let sidecar = move || sidecar(deps.clone(), topology.clone(), stop.clone());
    service.run(vec![consumer], sidecar, cancel).await
}
