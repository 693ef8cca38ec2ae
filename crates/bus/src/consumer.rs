//! The consume loop: bounded prefetch, manual acks, retries and dead letters.
//!
//! Each delivery is handed to the handler in its own task (at most `prefetch` at once, since
//! the broker sends no more unacknowledged messages than that). The handler answers:
//! - `Ack`: the work is committed; the message is acknowledged, with those that finish about
//!   the same time in one frame ([`crate::acks`]).
//! - `Retry`: a transient failure; after a pause that grows with the delivery count the message
//!   is returned to the queue. Past the queue's delivery limit the broker dead-letters it.
//! - `Release`: not handled through no fault of its own (the consumer stops mid-outage): a
//!   copy goes back to the end of the queue and the original is acknowledged, so the message
//!   keeps all its deliveries.
//! - `DeadLetter`: the message can never succeed (bad JSON, an unknown version, a schema
//!   violation). It is republished to the dead-letter queue with the reason in its headers,
//!   confirmed, and only then acknowledged — never lost, never spinning.
//!
//! A lost connection ends the session; the loop reconnects with backoff and declares the
//! topology again, so a broker restart leaves no consumer stuck.

use crate::acks::Acks;
use crate::publisher::{Outgoing, publish_on};
use crate::topology::{Topology, WorkQueue};
use crate::{BusError, connect, headers};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// A delivery as a handler sees it.
#[derive(Debug, Clone)]
pub struct Message {
    pub body: Vec<u8>,
    pub headers: Option<FieldTable>,
    pub routing_key: String,
    /// Deliveries of this message before this one (0 on the first).
    pub delivery_count: i64,
}

/// What to do with a message once the handler is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Handled (or a duplicate of something handled): acknowledge.
    Ack,
    /// Failed for a reason that may pass (the database is down): requeue after a pause.
    Retry { reason: String },
    /// Can never be handled: move to the dead-letter queue with this reason.
    DeadLetter { reason: String, detail: String },
    /// Not handled, through no fault of its own (the consumer stops while the message waits
    /// out an outage): give it back without using one of its deliveries. A quorum queue counts
    /// every return, so a copy is published to the end of the work queue, confirmed, and the
    /// original acknowledged.
    Release,
}

/// What a consumer needs to know besides its handler.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub uri: String,
    pub topology: Topology,
    /// The queue consumed.
    pub queue: WorkQueue,
    /// Every queue this service publishes to, declared on each (re)connect.
    pub declare: Vec<WorkQueue>,
    pub prefetch: u16,
    /// Connection name shown in the broker's management UI.
    pub name: String,
}

/// Consumes until `cancel` fires, then stops taking deliveries, lets in-flight handlers
/// finish and acknowledge, and returns. `ready(true)` is called each time consuming
/// (re)starts, `ready(false)` each time it stops.
pub async fn run<H, F>(
    config: ConsumerConfig,
    handler: H,
    cancel: CancellationToken,
    ready: impl Fn(bool) + Send + Sync,
) where
    H: Fn(Message) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Disposition> + Send + 'static,
{
    let mut pauses = crate::backoff::pauses(Duration::from_millis(100), Duration::from_secs(5));
    while !cancel.is_cancelled() {
        let Some(conn) = connect::connect_with_retry(&config.uri, &config.name, &cancel).await
        else {
            break;
        };
        let started = tokio::time::Instant::now();
        let outcome = session(&config, &conn, handler.clone(), &cancel, &ready).await;
        if started.elapsed() > Duration::from_secs(30) {
            // A session that lasted was a recovery: the next failure starts from short pauses.
            pauses = crate::backoff::pauses(Duration::from_millis(100), Duration::from_secs(5));
        }
        ready(false);
        match outcome {
            Ok(()) => {
                let _ = conn.close(200, "shutting down".into()).await;
                break;
            }
            Err(err) => {
                tracing::warn!(queue = config.queue.name, error = %err, "consumer session ended; reconnecting");
                let _ = conn.close(200, "reconnecting".into()).await;
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(pauses.next().unwrap_or(Duration::from_secs(5))) => {}
        }
    }
    tracing::info!(queue = config.queue.name, "consumer stopped");
}

async fn session<H, F>(
    config: &ConsumerConfig,
    conn: &Connection,
    handler: H,
    cancel: &CancellationToken,
    ready: &(impl Fn(bool) + Send + Sync),
) -> Result<(), BusError>
where
    H: Fn(Message) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Disposition> + Send + 'static,
{
    let topology = &config.topology;
    let queue_name = topology.queue(config.queue.name);
    // A broker that takes the connection but never answers must not hold the session for ever:
    // setting up is bounded, and the loop reconnects.
    let (channel, dead_letters, tag, mut deliveries) = tokio::time::timeout(SETUP_TIMEOUT, async {
        let channel = conn
            .create_channel()
            .await
            .map_err(BusError::amqp("open a consuming channel"))?;
        topology.declare_exchanges(&channel).await?;
        topology.declare_work_queue(&channel, &config.queue).await?;
        for queue in &config.declare {
            topology.declare_work_queue(&channel, queue).await?;
        }
        channel
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await
            .map_err(BusError::amqp("set the prefetch"))?;
        let dead_letters = conn
            .create_channel()
            .await
            .map_err(BusError::amqp("open a dead-letter channel"))?;
        dead_letters
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(BusError::amqp("enable confirms for dead letters"))?;

        let tag = format!("{}-{}", config.name, uuid::Uuid::now_v7());
        let deliveries = channel
            .basic_consume(
                queue_name.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(BusError::amqp("start consuming"))?;
        Ok::<_, BusError>((channel, dead_letters, tag, deliveries))
    })
    .await
    .map_err(|_| BusError::Timeout(SETUP_TIMEOUT, "set up consuming"))??;
    tracing::info!(queue = %queue_name, "consuming");
    ready(true);

    let acks = Acks::start(channel.clone());
    let dlx = Arc::new((
        dead_letters,
        topology.dead_letter_exchange(),
        queue_name.clone(),
    ));
    let mut in_flight = JoinSet::new();
    let result = loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                let _ = channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()).await;
                break Ok(());
            }
            next = deliveries.next() => match next {
                Some(Ok(delivery)) => {
                    let handler = handler.clone();
                    let (dlx, acks) = (dlx.clone(), acks.clone());
                    let queue = config.queue.name;
                    acks.delivered(delivery.delivery_tag);
                    in_flight.spawn(async move { process(queue, delivery, handler, &dlx, &acks).await });
                }
                Some(Err(source)) => break Err(BusError::Amqp { context: "receive a delivery", source }),
                None => break Err(BusError::Closed("consumer stream")),
            },
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
        }
    };
    // Finish what was taken: handlers commit and ack before the connection closes. Bounded: on
    // a broken connection nothing can be acknowledged anyway, and the broker redelivers what
    // was not, so a handler that cannot finish must not keep the consumer from reconnecting.
    let limit = if result.is_ok() {
        SHUTDOWN_SETTLE
    } else {
        BROKEN_SETTLE
    };
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, in_flight.join_next()).await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                tracing::warn!(queue = %queue_name, left = in_flight.len(), "in-flight deliveries did not settle in time; the broker redelivers them");
                in_flight.abort_all();
                break;
            }
        }
    }
    acks.close().await;
    result
}

/// The longest setting up a consuming session (channels, declarations, prefetch) may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping consumer waits for its in-flight deliveries to settle.
const SHUTDOWN_SETTLE: Duration = Duration::from_secs(30);
/// How long a consumer whose connection broke waits for them before reconnecting.
const BROKEN_SETTLE: Duration = Duration::from_secs(10);
/// Longest wait for an acknowledgement to be written (a dead connection may never take it).
pub(crate) const SETTLE_WRITE: Duration = Duration::from_secs(30);

/// Handles one delivery inside a `consume` span that continues the publisher's trace.
async fn process<H, F>(
    queue_label: &'static str,
    delivery: Delivery,
    handler: H,
    dlx: &(Channel, String, String),
    acks: &Acks,
) where
    H: Fn(Message) -> F,
    F: Future<Output = Disposition>,
{
    let span = tracing::info_span!(
        "consume",
        otel.name = %format_args!("{queue_label} process"),
        otel.kind = "consumer",
        messaging.system = "rabbitmq",
        messaging.operation = "process",
        messaging.destination.name = queue_label,
        messaging.message.id = delivery.properties.message_id().as_ref().map(|m| m.as_str()),
    );
    let traceparent = headers::get_str(
        delivery.properties.headers().as_ref(),
        beckon_runtime::telemetry::TRACEPARENT,
    );
    beckon_runtime::telemetry::follow(&span, traceparent.as_deref());
    settle(queue_label, delivery, handler, dlx, acks)
        .instrument(span)
        .await
}

async fn settle<H, F>(
    queue_label: &'static str,
    delivery: Delivery,
    handler: H,
    dlx: &(Channel, String, String),
    acks: &Acks,
) where
    H: Fn(Message) -> F,
    F: Future<Output = Disposition>,
{
    let headers = delivery.properties.headers().clone();
    let delivery_count = headers::get_int(headers.as_ref(), headers::DELIVERY_COUNT).unwrap_or(0);
    let message = Message {
        body: delivery.data.clone(),
        headers: headers.clone(),
        routing_key: delivery.routing_key.as_str().to_owned(),
        delivery_count,
    };
    metrics::counter!("beckon_messages_consumed_total", "queue" => queue_label).increment(1);
    let disposition = handler(message).await;
    if let Disposition::Retry { reason } = &disposition {
        metrics::counter!("beckon_messages_retried_total", "queue" => queue_label).increment(1);
        let pause = crate::backoff::nth(
            Duration::from_millis(100),
            Duration::from_millis(6_400),
            delivery_count.clamp(0, 64) as u32,
        );
        tracing::warn!(%reason, delivery_count, pause_ms = pause.as_millis() as u64, "handler failed; will retry");
        tokio::time::sleep(pause).await;
    }
    let tag = delivery.delivery_tag;
    // `Some(sent)` for a delivery settled on its own here; `None` for one left to `acks`.
    let settled = async {
        match disposition {
            Disposition::Ack => {
                metrics::counter!("beckon_messages_acked_total", "queue" => queue_label)
                    .increment(1);
                // Sent with the others that finish about now.
                acks.ack(tag);
                Ok(None)
            }
            Disposition::Retry { .. } => delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
                .map(Some),
            Disposition::Release => {
                metrics::counter!("beckon_messages_released_total", "queue" => queue_label)
                    .increment(1);
                let (channel, _, queue) = dlx;
                // The broker's count of deliveries is the broker's to set afresh.
                let mut table = FieldTable::default();
                for (key, value) in headers
                    .as_ref()
                    .map(|h| h.inner().iter())
                    .into_iter()
                    .flatten()
                {
                    if key.as_str() != headers::DELIVERY_COUNT {
                        table.insert(key.clone(), value.clone());
                    }
                }
                move_then_ack(channel, &delivery, "", queue, table, "give back uncounted")
                    .await
                    .map(Some)
            }
            Disposition::DeadLetter { reason, detail } => {
                metrics::counter!("beckon_messages_dead_lettered_total", "queue" => queue_label, "reason" => reason.clone()).increment(1);
                let (channel, exchange, queue) = dlx;
                let mut table = headers.unwrap_or_default();
                headers::set_str(&mut table, headers::REASON, &reason);
                headers::set_str(&mut table, headers::DETAIL, &detail);
                headers::set_str(&mut table, headers::SOURCE_QUEUE, queue);
                headers::set_timestamp(
                    &mut table,
                    headers::DEAD_LETTERED_AT,
                    std::time::SystemTime::now(),
                );
                tracing::error!(%reason, %detail, %queue, "dead-lettering a message");
                move_then_ack(channel, &delivery, exchange, queue, table, "dead-letter")
                    .await
                    .map(Some)
            }
        }
    };
    let outcome = tokio::time::timeout(SETTLE_WRITE, settled).await;
    match outcome {
        // Written: an acknowledgement of many may now pass this tag. (Until then it may not: the
        // frame that settles it alone might still follow, and one settled twice closes the
        // channel.)
        Ok(Ok(Some(true))) => acks.settled(tag),
        // Left to `acks`; or not sent, as the channel is closed and the broker requeues it.
        Ok(Ok(None | Some(false))) => {}
        // The channel broke: the broker requeues the unacknowledged message by itself.
        Ok(Err(err)) => tracing::warn!(error = %err, "could not settle a delivery"),
        Err(_) => tracing::warn!("settling a delivery timed out; the broker requeues it"),
    }
}

/// Publishes a copy of `delivery` (its body and message id, with `headers`) to `exchange` under
/// `routing_key`, confirmed, and only then acknowledges the original; if the copy is refused,
/// the original is returned to its queue instead, so the message is never lost.
async fn move_then_ack(
    channel: &Channel,
    delivery: &Delivery,
    exchange: &str,
    routing_key: &str,
    headers: FieldTable,
    what: &'static str,
) -> Result<bool, lapin::Error> {
    let copied = publish_on(
        channel,
        &Outgoing {
            exchange,
            routing_key,
            body: &delivery.data,
            message_id: delivery
                .properties
                .message_id()
                .as_ref()
                .map(|m| m.to_string()),
            headers,
            mandatory: true,
        },
    )
    .await;
    match copied {
        Ok(()) => delivery.ack(BasicAckOptions::default()).await,
        Err(err) => {
            tracing::error!(error = %err, "could not {what}; requeueing");
            delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
        }
    }
}
