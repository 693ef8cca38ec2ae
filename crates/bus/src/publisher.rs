//! Confirmed publishing that survives a broker restart.
//!
//! Every publish waits for the broker's confirm, so a caller that gets `Ok` knows the message
//! is stored. Many callers publish at once on one channel, each awaiting only its own confirm.
//! Envelopes are published `mandatory`: a message no queue would take comes back as an error
//! instead of vanishing. A publish that fails on a broken channel reconnects once and tries
//! again, so consumers must be (and are) idempotent.

use crate::topology::{Topology, WorkQueue};
use crate::{BusError, connect};
use beckon_domain::envelope::{Envelope, Payload};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use std::sync::Arc;
use tokio::sync::Mutex;

/// The longest a publish (with its reconnect and retry) may take.
pub const PUBLISH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A cloneable handle that publishes with confirms.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

struct Inner {
    uri: String,
    name: String,
    topology: Topology,
    /// Queues declared on every (re)connect, so nothing published is unroutable because a
    /// consumer has not started yet or the broker lost its definitions.
    queues: Vec<WorkQueue>,
    link: Mutex<Option<Link>>,
}

#[derive(Clone)]
struct Link {
    generation: u64,
    channel: Channel,
    // Kept so the connection lives as long as its channel; other channels open on it too.
    connection: Arc<Connection>,
}

/// Where and how to publish one message.
pub struct Outgoing<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub body: &'a [u8],
    pub message_id: Option<String>,
    pub headers: FieldTable,
    /// Fail rather than drop a message no queue is bound to take.
    pub mandatory: bool,
}

impl Publisher {
    /// Connects, declares the exchanges and `queues`, and enables confirms.
    pub async fn connect(
        uri: &str,
        name: &str,
        topology: Topology,
        queues: Vec<WorkQueue>,
    ) -> Result<Self, BusError> {
        let publisher = Self {
            inner: Arc::new(Inner {
                uri: uri.to_owned(),
                name: name.to_owned(),
                topology,
                queues,
                link: Mutex::new(None),
            }),
        };
        publisher.link(0).await?;
        Ok(publisher)
    }

    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// The current link, or a new one when there is none or the one that failed
    /// (`failed_generation`) is still current.
    async fn link(&self, failed_generation: u64) -> Result<Link, BusError> {
        let mut guard = self.inner.link.lock().await;
        if let Some(link) = guard.as_ref()
            && link.generation != failed_generation
        {
            return Ok(link.clone());
        }
        let generation = guard.as_ref().map_or(1, |l| l.generation + 1);
        *guard = None;
        let connection = connect::connect(&self.inner.uri, &self.inner.name).await?;
        let channel = connection
            .create_channel()
            .await
            .map_err(BusError::amqp("open a publishing channel"))?;
        self.inner.topology.declare_exchanges(&channel).await?;
        for queue in &self.inner.queues {
            self.inner
                .topology
                .declare_work_queue(&channel, queue)
                .await?;
        }
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(BusError::amqp("enable publisher confirms"))?;
        let link = Link {
            generation,
            channel,
            connection: Arc::new(connection),
        };
        *guard = Some(link.clone());
        Ok(link)
    }

    /// Whether the publisher holds a connection that is up, re-establishing a link that broke
    /// (the broker restarted) within two seconds rather than waiting for the next publish: a
    /// readiness probe that only looked would keep a gateway out of rotation, and so without
    /// the publishes that would reconnect it, for ever.
    pub async fn ensure_connected(&self) -> bool {
        let broken = {
            let guard = self.inner.link.lock().await;
            match guard.as_ref() {
                Some(link) if link.channel.status().connected() => return true,
                Some(link) => link.generation,
                None => 0,
            }
        };
        let relink = tokio::time::timeout(std::time::Duration::from_secs(2), self.link(broken));
        matches!(relink.await, Ok(Ok(link)) if link.channel.status().connected())
    }

    /// How many messages wait, ready, in the work queue `queue` (short name): a backlog there
    /// means work in flight. Asked on a channel of its own, closed again; a broker that does not
    /// answer within [`PUBLISH_TIMEOUT`] is an error.
    pub async fn ready_messages(&self, queue: &str) -> Result<u32, BusError> {
        tokio::time::timeout(PUBLISH_TIMEOUT, self.inspect(queue))
            .await
            .map_err(|_| BusError::Timeout(PUBLISH_TIMEOUT, "inspect a queue"))?
    }

    async fn inspect(&self, queue: &str) -> Result<u32, BusError> {
        let link = self.link(0).await?;
        let channel = link
            .connection
            .create_channel()
            .await
            .map_err(BusError::amqp("open a channel to inspect a queue"))?;
        let declared = channel
            .queue_declare(
                self.inner.topology.queue(queue).as_str().into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(BusError::amqp("inspect a queue"));
        let _ = channel.close(200, "inspected".into()).await;
        Ok(declared?.message_count())
    }

    /// Publishes and waits for the broker's confirm; reconnects and retries once on failure.
    /// Gives up after [`PUBLISH_TIMEOUT`], so a hung broker never hangs a caller.
    pub async fn publish(&self, msg: &Outgoing<'_>) -> Result<(), BusError> {
        tokio::time::timeout(PUBLISH_TIMEOUT, self.publish_with_retry(msg))
            .await
            .map_err(|_| BusError::Timeout(PUBLISH_TIMEOUT, "publish"))?
    }

    async fn publish_with_retry(&self, msg: &Outgoing<'_>) -> Result<(), BusError> {
        let link = match self.link(0).await {
            Ok(link) => link,
            Err(_) => self.link(u64::MAX).await?,
        };
        match publish_on(&link.channel, msg).await {
            Ok(()) => Ok(()),
            Err(err @ BusError::Nacked { .. }) => Err(err),
            Err(err) => {
                tracing::warn!(error = %err, "publish failed; reconnecting to retry once");
                let link = self.link(link.generation).await?;
                publish_on(&link.channel, msg).await
            }
        }
    }

    /// Publishes an envelope to the events exchange under its routing key, with the current
    /// span's trace context.
    pub async fn publish_envelope<T: Payload>(&self, env: &Envelope<T>) -> Result<(), BusError> {
        let body = env.to_json();
        self.publish(&Outgoing {
            exchange: &self.inner.topology.events_exchange(),
            routing_key: &env.routing_key(),
            body: &body,
            message_id: Some(env.id.to_string()),
            headers: crate::headers::traced(beckon_runtime::telemetry::traceparent().as_deref()),
            mandatory: true,
        })
        .await
    }
}

pub(crate) async fn publish_on(channel: &Channel, msg: &Outgoing<'_>) -> Result<(), BusError> {
    let mut props = BasicProperties::default()
        .with_content_type("application/json".into())
        // Persistent: a message in a quorum queue is on disk anyway; this keeps classic
        // queues (reply queues excepted) honest too.
        .with_delivery_mode(2)
        .with_headers(msg.headers.clone());
    if let Some(id) = &msg.message_id {
        props = props.with_message_id(id.as_str().into());
    }
    let confirm = channel
        .basic_publish(
            msg.exchange.into(),
            msg.routing_key.into(),
            BasicPublishOptions {
                mandatory: msg.mandatory,
                ..Default::default()
            },
            msg.body,
            props,
        )
        .await
        .map_err(BusError::amqp("publish"))?
        .await
        .map_err(BusError::amqp("await the publish confirm"))?;
    match confirm {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        Confirmation::Ack(Some(_)) | Confirmation::Nack(_) => Err(BusError::Nacked {
            exchange: msg.exchange.to_owned(),
            routing_key: msg.routing_key.to_owned(),
        }),
    }
}
