//! The broker side: a connection, queue depths, and [`Pass`], the one way the CLI takes
//! messages off a dead-letter queue.

use crate::output::{ErrorCode, Failure, unavailable};
use anyhow::Context as _;
use beckon_bus::topology::{WorkQueue, queues};
use beckon_bus::{BusConfig, Topology, headers};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, PublisherConfirm};

/// A connection to the deployment's broker, with a channel in confirm mode.
pub struct Broker {
    conn: lapin::Connection,
    channel: Channel,
    topology: Topology,
    /// Whether a [`Pass`] acknowledged any message on the channel.
    acknowledged: std::sync::atomic::AtomicBool,
}

/// How long [`Broker::close`] waits, after acknowledgements, before closing the channel. A
/// quorum queue applies a settlement after the broker received it, and may still return a
/// message it was about to settle when the channel closes first (rabbitmq-server#10327, seen
/// here in a pass that ended while dead letters kept arriving). AMQP 0-9-1 has no reply to an
/// acknowledgement to wait for instead.
const SETTLE_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// A work queue by its short name, or `not_found` listing the names there are.
pub fn work_queue(name: &str) -> anyhow::Result<WorkQueue> {
    queues::all()
        .into_iter()
        .find(|q| q.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = queues::all().iter().map(|q| q.name).collect();
            Failure::not_found(format!(
                "No work queue {name}; the work queues are {}",
                names.join(", ")
            ))
        })
}

/// How many messages a queue holds, and how many consumers take from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Depth {
    pub messages: u32,
    pub consumers: u32,
}

impl Broker {
    pub async fn connect(uri: &str, prefix: &str) -> anyhow::Result<Self> {
        let conn = match beckon_bus::connect::connect(uri, "beckon-cli").await {
            Ok(conn) => conn,
            // Its settings are wrong: the cause says which, and its code is the caller's.
            Err(err @ beckon_bus::BusError::Tls(_)) => {
                return Err(anyhow::Error::new(err).context("Failed to connect to the broker"));
            }
            Err(err) => return Err(unavailable(err, "Failed to connect to the broker")),
        };
        let channel = conn
            .create_channel()
            .await
            .map_err(|e| unavailable(e, "Failed to open a channel"))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("Failed to turn on publisher confirms")?;
        Ok(Self {
            conn,
            channel,
            topology: Topology::new(&BusConfig::new(uri, prefix)),
            acknowledged: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Closes the channel and the connection in order, so every acknowledgement sent is
    /// processed by the broker before the command ends (one left in a socket when the process
    /// exits would return its message to the queue beside the copy already made of it). After
    /// acknowledgements it first waits [`SETTLE_GRACE`].
    pub async fn close(self) -> anyhow::Result<()> {
        if self.acknowledged.load(std::sync::atomic::Ordering::Relaxed) {
            tokio::time::sleep(SETTLE_GRACE).await;
        }
        self.channel
            .close(200, "done".into())
            .await
            .context("Failed to close the channel")?;
        self.conn
            .close(200, "done".into())
            .await
            .context("Failed to close the broker connection")
    }

    /// The depth of `queue`, which must exist.
    pub async fn depth(&self, queue: &str) -> anyhow::Result<Depth> {
        let q = self
            .channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| {
                // The broker answers a passive declare of a missing queue with a channel
                // error (404); anything else is the broker being away.
                if e.is_amqp_soft_error() {
                    anyhow::Error::new(e).context(Failure::new(
                        ErrorCode::NotFound,
                        format!(
                            "Queue {queue} does not exist (has any service started with this \
                             prefix?)"
                        ),
                    ))
                } else {
                    unavailable(e, &format!("Failed to read the depth of {queue}"))
                }
            })?;
        Ok(Depth {
            messages: q.message_count(),
            consumers: q.consumer_count(),
        })
    }

    /// Deletes every message of `dlq`; returns how many.
    pub async fn purge(&self, dlq: &str) -> anyhow::Result<u32> {
        self.channel
            .queue_purge(dlq.into(), QueuePurgeOptions::default())
            .await
            .with_context(|| format!("Failed to purge {dlq}"))
    }
}

/// What becomes of a dead letter a [`Pass`] took off its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// An identical copy goes to the tail of the dead-letter queue.
    Keep,
    /// It goes to its work queue, to be handled again.
    Replay,
}

/// A message taken off a dead-letter queue, held unacknowledged until where it was sent
/// confirms it.
struct Pending {
    delivery: Delivery,
    fate: Fate,
    confirm: PublisherConfirm,
}

/// How many messages a pass holds unacknowledged at once, their confirms in flight.
const PASS_WINDOW: usize = 128;

/// One walk through a dead-letter queue from its head that never returns a message to the
/// queue (a `basic.nack`/`basic.reject` with requeue counts a failed delivery against it, and
/// RabbitMQ 4 drops a quorum-queue message past 20 of them even from a queue that sets no
/// limit): every message taken is sent on — back to the tail of the queue as an identical
/// copy (same body, properties and headers), or to its work queue — and the original is
/// acknowledged only once the broker confirmed where it went. Nothing is lost at any point,
/// and at most [`PASS_WINDOW`] messages are held at once, whatever the queue's depth.
///
/// Stopped in an orderly way (the caller stops taking and calls [`Pass::settle`]), every
/// message is in exactly one place. If the process dies instead, a message whose copy the
/// broker took but whose original was not yet acknowledged is there twice — harmless, as the
/// consumers skip an envelope id they handled — and the originals held go back to the head of
/// the queue. So at most the window is doubled, and nothing is lost.
pub struct Pass<'a> {
    broker: &'a Broker,
    channel: &'a Channel,
    dlq: &'a str,
    window: Vec<Pending>,
    replays_refused: u32,
}

impl<'a> Pass<'a> {
    pub fn new(broker: &'a Broker, dlq: &'a str) -> Self {
        Self {
            broker,
            channel: &broker.channel,
            dlq,
            window: Vec::with_capacity(PASS_WINDOW),
            replays_refused: 0,
        }
    }

    /// The message at the head of the queue, if there is one.
    pub async fn take(&mut self) -> anyhow::Result<Option<Delivery>> {
        let message = self
            .channel
            .basic_get(self.dlq.into(), BasicGetOptions { no_ack: false })
            .await
            .with_context(|| format!("Failed to take a message from {}", self.dlq))?;
        Ok(message.map(|m| m.delivery))
    }

    /// Puts an identical copy of `delivery` at the tail of the queue.
    pub async fn keep(&mut self, delivery: Delivery) -> anyhow::Result<()> {
        let confirm = self.copy_back(&delivery).await?;
        self.hold(Pending {
            delivery,
            fate: Fate::Keep,
            confirm,
        })
        .await
    }

    /// Sends `delivery` to the work queue `work`, without the dead-letter bookkeeping.
    pub async fn replay(&mut self, delivery: Delivery, work: &str) -> anyhow::Result<()> {
        let mut props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_headers(replay_headers(delivery.properties.headers().as_ref()));
        if let Some(id) = delivery.properties.message_id() {
            props = props.with_message_id(id.clone());
        }
        let confirm = self
            .channel
            .basic_publish(
                "".into(),
                work.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &delivery.data,
                props,
            )
            .await
            .with_context(|| format!("Failed to replay a message into {work}"))?;
        self.hold(Pending {
            delivery,
            fate: Fate::Replay,
            confirm,
        })
        .await
    }

    /// How many replays the broker refused so far (those messages were kept instead).
    pub fn replays_refused(&self) -> u32 {
        self.replays_refused
    }

    async fn copy_back(&self, delivery: &Delivery) -> anyhow::Result<PublisherConfirm> {
        self.channel
            .basic_publish(
                "".into(),
                self.dlq.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &delivery.data,
                delivery.properties.clone(),
            )
            .await
            .with_context(|| format!("Failed to put a message back into {}", self.dlq))
    }

    async fn hold(&mut self, pending: Pending) -> anyhow::Result<()> {
        self.window.push(pending);
        if self.window.len() >= PASS_WINDOW {
            self.settle().await?;
        }
        Ok(())
    }

    /// Settles every message held: waits for each one's confirm, in order, and acknowledges
    /// the original once it is confirmed; after it, none is held. A refused replay is kept
    /// instead; a refused copy leaves its original unacknowledged (the broker takes it back
    /// when the command ends) and stops the pass.
    pub async fn settle(&mut self) -> anyhow::Result<()> {
        for pending in std::mem::take(&mut self.window) {
            let mut confirmation = pending
                .confirm
                .await
                .context("Failed to learn whether the broker took a message")?;
            if pending.fate == Fate::Replay && !confirmed(&confirmation) {
                self.replays_refused += 1;
                confirmation = self
                    .copy_back(&pending.delivery)
                    .await?
                    .await
                    .context("Failed to learn whether the broker took a message")?;
            }
            if !confirmed(&confirmation) {
                anyhow::bail!(
                    "The broker refused to put a dead letter back into {}; it stays there",
                    self.dlq
                );
            }
            self.broker
                .acknowledged
                .store(true, std::sync::atomic::Ordering::Relaxed);
            pending
                .delivery
                .ack(BasicAckOptions::default())
                .await
                .context("Failed to acknowledge a dead letter that was sent on")?;
        }
        Ok(())
    }
}

/// Whether the broker took a message: confirmed, and routed (it is published mandatory).
fn confirmed(confirmation: &Confirmation) -> bool {
    matches!(confirmation, Confirmation::Ack(None))
}

/// The original headers, without the dead-letter bookkeeping.
fn replay_headers(table: Option<&FieldTable>) -> FieldTable {
    let mut out = FieldTable::default();
    if let Some(t) = table {
        for (k, v) in t.inner() {
            let name = k.as_str();
            if !(name.starts_with("x-death")
                || name.starts_with("x-first-death")
                || name.starts_with("x-last-death")
                || name.starts_with("x-beckon")
                || name == headers::DELIVERY_COUNT)
            {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}
