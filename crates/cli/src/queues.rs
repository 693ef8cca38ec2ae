//! Operating the broker side: queue depths, and peeking at, replaying and purging
//! dead-lettered messages.
//!
//! Replayed messages keep their bytes, so their envelope id: the idempotent consumers skip
//! what they already handled and do only what is new.

use anyhow::{Context as _, bail};
use beckon_bus::topology::{WorkQueue, queues};
use beckon_bus::{BusConfig, Topology, headers};
use indicatif::{ProgressBar, ProgressStyle};
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation};

pub struct Broker {
    _conn: lapin::Connection,
    channel: Channel,
    topology: Topology,
}

fn work_queue(name: &str) -> anyhow::Result<WorkQueue> {
    queues::all()
        .into_iter()
        .find(|q| q.name == name)
        .with_context(|| {
            let names: Vec<&str> = queues::all().iter().map(|q| q.name).collect();
            format!(
                "No work queue {name}; the work queues are {}",
                names.join(", ")
            )
        })
}

impl Broker {
    pub async fn connect(uri: &str, prefix: &str) -> anyhow::Result<Self> {
        let conn = beckon_bus::connect::connect(uri, "beckon-cli")
            .await
            .context("Failed to connect to the broker")?;
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            _conn: conn,
            channel,
            topology: Topology::new(&BusConfig::new(uri, prefix)),
        })
    }

    async fn depth(&self, queue: &str) -> anyhow::Result<(u32, u32)> {
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
            .with_context(|| {
                format!("Queue {queue} does not exist (has any service started with this prefix?)")
            })?;
        Ok((q.message_count(), q.consumer_count()))
    }

    /// Prints each work queue and dead-letter queue with its depth and consumers.
    pub async fn list(&self) -> anyhow::Result<()> {
        println!("{:<48} {:>10} {:>10}", "queue", "messages", "consumers");
        for q in queues::all() {
            for name in [
                self.topology.queue(q.name),
                self.topology.dead_letter_queue(q.name),
            ] {
                let (messages, consumers) = self.depth(&name).await?;
                println!("{name:<48} {messages:>10} {consumers:>10}");
            }
        }
        Ok(())
    }

    /// Shows up to `count` dead-lettered messages of `queue` without removing them.
    pub async fn peek(&self, queue: &str, count: u32) -> anyhow::Result<()> {
        let q = work_queue(queue)?;
        let dlq = self.topology.dead_letter_queue(q.name);
        let mut held = Vec::new();
        while held.len() < count as usize {
            let Some(message) = self
                .channel
                .basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: false })
                .await?
            else {
                break;
            };
            let table = message.delivery.properties.headers().as_ref();
            let reason = headers::dead_letter_reason(table).unwrap_or_else(|| "unknown".into());
            let detail = headers::get_str(table, headers::DETAIL).unwrap_or_default();
            println!("--- message {} ---", held.len() + 1);
            println!("reason: {reason}");
            if !detail.is_empty() {
                println!("detail: {detail}");
            }
            if let Some(t) = table {
                for (k, v) in t.inner() {
                    if !k.as_str().starts_with("x-beckon") {
                        println!("header {}: {}", k.as_str(), describe(v));
                    }
                }
            }
            println!("{}", pretty(&message.delivery.data));
            held.push(message);
        }
        // Put them back, in order.
        for message in held.into_iter().rev() {
            message
                .delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await?;
        }
        Ok(())
    }

    /// Moves dead-lettered messages of `queue` back to it: all, at most `count`, or those of
    /// envelope type `kind`. Returns how many were replayed.
    pub async fn replay(
        &self,
        queue: &str,
        count: Option<u32>,
        kind: Option<&str>,
    ) -> anyhow::Result<u32> {
        let q = work_queue(queue)?;
        let work = self.topology.queue(q.name);
        let dlq = self.topology.dead_letter_queue(q.name);
        let (depth, _) = self.depth(&dlq).await?;
        let total = count.map_or(depth, |c| c.min(depth));
        let bar = ProgressBar::new(u64::from(total)).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} replayed {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let (mut replayed, mut skipped) = (0u32, Vec::new());
        // Each dead letter is looked at once: those not replayed are put back at the end.
        for _ in 0..depth {
            if replayed >= total {
                break;
            }
            let Some(message) = self
                .channel
                .basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: false })
                .await?
            else {
                break;
            };
            let data = &message.delivery.data;
            if let Some(kind) = kind
                && envelope_type(data).as_deref() != Some(kind)
            {
                skipped.push(message);
                continue;
            }
            let mut props = BasicProperties::default()
                .with_content_type("application/json".into())
                .with_delivery_mode(2)
                .with_headers(replay_headers(
                    message.delivery.properties.headers().as_ref(),
                ));
            if let Some(id) = message.delivery.properties.message_id() {
                props = props.with_message_id(id.clone());
            }
            let confirm = self
                .channel
                .basic_publish(
                    "".into(),
                    work.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    data,
                    props,
                )
                .await?
                .await?;
            if !matches!(confirm, Confirmation::Ack(None)) {
                message
                    .delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await?;
                bail!("The broker refused a replayed message; it stays in {dlq}");
            }
            message.delivery.ack(BasicAckOptions::default()).await?;
            replayed += 1;
            bar.inc(1);
        }
        for message in skipped {
            message
                .delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await?;
        }
        bar.finish_with_message(format!("into {work}"));
        Ok(replayed)
    }

    /// Deletes every message of `queue`'s dead-letter queue; returns how many.
    pub async fn purge(&self, queue: &str) -> anyhow::Result<u32> {
        let q = work_queue(queue)?;
        let dlq = self.topology.dead_letter_queue(q.name);
        Ok(self
            .channel
            .queue_purge(dlq.as_str().into(), QueuePurgeOptions::default())
            .await?)
    }

    /// How many messages `queue`'s dead-letter queue holds.
    pub async fn dead_letters(&self, queue: &str) -> anyhow::Result<u32> {
        let q = work_queue(queue)?;
        Ok(self
            .depth(&self.topology.dead_letter_queue(q.name))
            .await?
            .0)
    }
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

fn envelope_type(data: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(data).ok()?;
    value["type"].as_str().map(str::to_owned)
}

fn pretty(data: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(data).into_owned())
}

fn describe(value: &AMQPValue) -> String {
    match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        other => format!("{other:?}"),
    }
}
