//! Exchange and queue names, and their idempotent declaration.
//!
//! ```text
//! publishers ──> {prefix}.events (topic) ──[routing key: type.vN]──> {prefix}.{queue}
//!                                                                         │ rejected, poison,
//!                                                                         │ or past the delivery limit
//!                {prefix}.dlx (direct) <──[routing key: {prefix}.{queue}]─┘
//!                      ├──> {prefix}.{queue}.dlq       (kept for the operator: peek, replay)
//!                      └──> {prefix}.dead-letters      (a copy of every one, watched)
//! ```
//!
//! Every dead letter, whoever made it — a consumer that found it poison, or the broker when
//! it ran out of deliveries — is also copied to `{prefix}.dead-letters`, which the consumer
//! services watch: its trigger is marked failed and it is counted, so none goes unseen.

use crate::{BusConfig, BusError, headers};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, ExchangeKind};

/// A queue a service consumes, and the routing keys that feed it.
#[derive(Debug, Clone)]
pub struct WorkQueue {
    /// The name without the deployment prefix, e.g. `matcher`.
    pub name: &'static str,
    /// Routing keys (`event.received.v1`) bound from the events exchange.
    pub bindings: Vec<String>,
}

/// The names and shape of one deployment's broker objects.
#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
    delivery_limit: u32,
    queue_expires_ms: Option<u32>,
}

impl Topology {
    pub fn new(config: &BusConfig) -> Self {
        Self {
            prefix: config.prefix.clone(),
            delivery_limit: config.delivery_limit,
            queue_expires_ms: config.queue_expires_ms,
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The topic exchange every envelope is published to.
    pub fn events_exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }

    /// The direct exchange dead letters go through, routed by their work queue's name.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.prefix)
    }

    pub fn queue(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    pub fn dead_letter_queue(&self, name: &str) -> String {
        format!("{}.{name}.dlq", self.prefix)
    }

    /// The queue that gets a copy of every dead letter of every work queue.
    pub fn dead_letter_watch_queue(&self) -> String {
        self.queue(queues::DEAD_LETTERS)
    }

    /// The work queue's short name from a full one (`{prefix}.matcher` → `matcher`).
    pub fn short_name<'a>(&self, full: &'a str) -> &'a str {
        full.strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
            .unwrap_or(full)
    }

    /// Declares the dead-letter watch queue: a plain quorum queue with no dead letters of its
    /// own (its messages are copies; the dead-letter queues keep the originals).
    async fn declare_dead_letter_watch(&self, channel: &Channel) -> Result<(), BusError> {
        channel
            .queue_declare(
                self.dead_letter_watch_queue().as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                self.quorum_arguments(),
            )
            .await
            .map_err(BusError::amqp("declare the dead-letter watch queue"))?;
        Ok(())
    }

    /// Declares both exchanges. Declaring what exists with the same arguments is a no-op.
    pub async fn declare_exchanges(&self, channel: &Channel) -> Result<(), BusError> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .exchange_declare(
                self.events_exchange().into(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(BusError::amqp("declare the events exchange"))?;
        channel
            .exchange_declare(
                self.dead_letter_exchange().into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(BusError::amqp("declare the dead-letter exchange"))
    }

    fn quorum_arguments(&self) -> FieldTable {
        let mut args = FieldTable::default();
        // Quorum queues replicate through Raft, survive a node loss and count deliveries, which
        // is what lets the broker dead-letter a message that keeps failing.
        headers::set_str(&mut args, "x-queue-type", "quorum");
        if let Some(ms) = self.queue_expires_ms {
            args.insert(
                ShortString::from("x-expires"),
                AMQPValue::LongInt(ms as i32),
            );
        }
        args
    }

    /// Declares the work queue, its dead-letter queue and their bindings.
    pub async fn declare_work_queue(
        &self,
        channel: &Channel,
        queue: &WorkQueue,
    ) -> Result<(), BusError> {
        if queue.name == queues::DEAD_LETTERS {
            return self.declare_dead_letter_watch(channel).await;
        }
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let work = self.queue(queue.name);
        let dlq = self.dead_letter_queue(queue.name);

        channel
            .queue_declare(dlq.as_str().into(), durable, self.quorum_arguments())
            .await
            .map_err(BusError::amqp("declare a dead-letter queue"))?;
        channel
            .queue_bind(
                dlq.as_str().into(),
                self.dead_letter_exchange().into(),
                work.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(BusError::amqp("bind a dead-letter queue"))?;
        self.declare_dead_letter_watch(channel).await?;
        channel
            .queue_bind(
                self.dead_letter_watch_queue().as_str().into(),
                self.dead_letter_exchange().into(),
                work.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(BusError::amqp("bind the dead-letter watch queue"))?;

        let mut args = self.quorum_arguments();
        headers::set_str(
            &mut args,
            "x-dead-letter-exchange",
            &self.dead_letter_exchange(),
        );
        headers::set_str(&mut args, "x-dead-letter-routing-key", &work);
        // A message delivered this often without an ack is poison: dead-letter it rather than
        // let it spin.
        headers::set_int(
            &mut args,
            "x-delivery-limit",
            i64::from(self.delivery_limit),
        );
        // The broker moves dead letters with its own publisher confirms, so none is lost on
        // the way to the dead-letter queue; that strategy requires reject-publish overflow.
        headers::set_str(&mut args, "x-dead-letter-strategy", "at-least-once");
        headers::set_str(&mut args, "x-overflow", "reject-publish");
        channel
            .queue_declare(work.as_str().into(), durable, args)
            .await
            .map_err(BusError::amqp("declare a work queue"))?;
        for key in &queue.bindings {
            channel
                .queue_bind(
                    work.as_str().into(),
                    self.events_exchange().into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(BusError::amqp("bind a work queue"))?;
        }
        Ok(())
    }
}

/// The work queues of the dispatch pipeline, by the service that consumes each.
pub mod queues {
    use super::WorkQueue;
    use beckon_domain::envelope::{
        EventMatched, EventReceived, InvitationCreated, Kind, ResponseProgressed,
    };

    /// The matcher takes accepted events.
    pub fn matcher() -> WorkQueue {
        WorkQueue {
            name: "matcher",
            bindings: vec![EventReceived::routing_key()],
        }
    }

    /// The invitation service takes matched events.
    pub fn invitation() -> WorkQueue {
        WorkQueue {
            name: "invitation",
            bindings: vec![<EventMatched>::routing_key()],
        }
    }

    /// The webhook service takes the events customers subscribe to.
    pub fn webhooks() -> WorkQueue {
        WorkQueue {
            name: "webhooks",
            bindings: vec![InvitationCreated::routing_key()],
        }
    }

    /// The webhook service takes response progress too, on a queue of its own.
    pub fn webhook_responses() -> WorkQueue {
        WorkQueue {
            name: "webhook-responses",
            bindings: vec![ResponseProgressed::routing_key()],
        }
    }

    /// The short name of the queue that gets a copy of every dead letter.
    pub const DEAD_LETTERS: &str = "dead-letters";

    /// The consumer services watch every dead letter.
    pub fn dead_letters() -> WorkQueue {
        WorkQueue {
            name: DEAD_LETTERS,
            bindings: Vec::new(),
        }
    }

    /// Every work queue, in pipeline order.
    pub fn all() -> Vec<WorkQueue> {
        vec![matcher(), invitation(), webhooks(), webhook_responses()]
    }
}

impl Topology {
    /// Deletes the queues and both exchanges. For tests and for tearing a deployment down.
    pub async fn delete(&self, channel: &Channel, queues: &[WorkQueue]) -> Result<(), BusError> {
        use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
        for queue in queues {
            for name in [self.queue(queue.name), self.dead_letter_queue(queue.name)] {
                channel
                    .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                    .await
                    .map_err(BusError::amqp("delete a queue"))?;
            }
        }
        channel
            .queue_delete(
                self.dead_letter_watch_queue().as_str().into(),
                QueueDeleteOptions::default(),
            )
            .await
            .map_err(BusError::amqp("delete a queue"))?;
        for exchange in [self.events_exchange(), self.dead_letter_exchange()] {
            channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await
                .map_err(BusError::amqp("delete an exchange"))?;
        }
        Ok(())
    }
}
