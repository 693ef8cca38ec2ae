//! Operating the broker side: queue depths, and peeking at, replaying and purging
//! dead-lettered messages.
//!
//! Replayed messages keep their bytes, so their envelope id: the idempotent consumers skip
//! what they already handled and do only what is new.

use anyhow::{Context as _, bail};
use beckon_bus::topology::{WorkQueue, queues};
use beckon_bus::{BusConfig, Topology, headers};
use indicatif::{ProgressBar, ProgressStyle};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, PublisherConfirm};

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

    /// Shows up to `count` dead-lettered messages of `queue`, from its head, without removing
    /// them and without using up any of their delivery attempts.
    ///
    /// A message returned to a quorum queue with `basic.nack`/`basic.reject` (requeue) counts
    /// as a failed delivery, and RabbitMQ 4 drops a message past 20 of them even from a queue
    /// that sets no limit. So each message is taken, an identical copy (same body, properties
    /// and headers) is put at the tail of the queue with a publisher confirm, and only then is
    /// the original acknowledged. The pass goes once round the whole queue as it was when the
    /// peek began, so afterwards it holds the same messages in the same order, provided nothing
    /// else takes from it meanwhile; a dead letter arriving during the peek is kept too, ahead
    /// of the messages passed after it arrived. See [`Pass`] for what an interrupted peek
    /// leaves.
    pub async fn peek(&self, queue: &str, count: u32, reveal: Reveal) -> anyhow::Result<()> {
        let q = work_queue(queue)?;
        let dlq = self.topology.dead_letter_queue(q.name);
        let (depth, _) = self.depth(&dlq).await?;
        let mut pass = Pass::new(&self.channel, &dlq);
        for shown in 0..depth {
            let Some(delivery) = pass.take().await? else {
                break;
            };
            if shown < count {
                show(shown + 1, &delivery, reveal);
            }
            pass.keep(delivery).await?;
        }
        pass.finish().await?;
        Ok(())
    }

    /// Moves dead-lettered messages of `queue` back to it: all, at most `count`, or those of
    /// envelope type `kind`, from the head of the dead-letter queue. Returns how many were
    /// replayed.
    ///
    /// The ones not replayed stay without using up a delivery attempt, and in their order:
    /// each is put back at the tail as an identical copy (see [`Broker::peek`]), and once one
    /// has been, the pass goes on round the whole queue so that the order is restored.
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
        let (mut sent, mut kept) = (0u32, 0u32);
        let mut pass = Pass::new(&self.channel, &dlq);
        // Each dead letter is looked at once.
        for _ in 0..depth {
            let want_more = sent < total && pass.replays_refused() == 0;
            if !want_more && kept == 0 && pass.replays_refused() == 0 {
                // Nothing was moved to the tail: the rest is in order where it is.
                break;
            }
            let Some(delivery) = pass.take().await? else {
                break;
            };
            let wanted = kind.is_none_or(|k| envelope_type(&delivery.data).as_deref() == Some(k));
            if want_more && wanted {
                pass.replay(delivery, &work).await?;
                sent += 1;
                bar.inc(1);
            } else {
                pass.keep(delivery).await?;
                kept += 1;
            }
        }
        pass.finish().await?;
        let refused = pass.replays_refused();
        bar.finish_with_message(format!("into {work}"));
        if refused > 0 {
            bail!(
                "The broker refused {refused} replayed message(s); they stay in {dlq} (at its tail); {} replayed",
                sent - refused
            );
        }
        Ok(sent)
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

/// Whether `dlq peek` prints secrets in a body as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reveal {
    /// Magic links (sealed or not) and tokens are printed as `<redacted>`.
    Redacted,
    /// As the message holds them (`--reveal`).
    AsIs,
}

/// Prints one peeked dead letter: its reason, detail, headers and body.
fn show(n: u32, delivery: &Delivery, reveal: Reveal) {
    let table = delivery.properties.headers().as_ref();
    let reason = headers::dead_letter_reason(table).unwrap_or_else(|| "unknown".into());
    let detail = headers::get_str(table, headers::DETAIL).unwrap_or_default();
    println!("--- message {n} ---");
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
    println!("{}", pretty(&delivery.data, reveal));
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
/// queue (which would count a failed delivery against it): every message taken is sent on —
/// back to the tail of the queue as an identical copy, or to its work queue — and the original
/// is acknowledged only once the broker confirmed where it went. Nothing is lost at any point.
///
/// If the command dies half-way, a message whose copy was confirmed but whose original was not
/// yet acknowledged is in the queue twice (harmless: the consumers skip an envelope id they
/// handled), and the originals held unacknowledged go back to the head of the queue, each with
/// one delivery counted.
struct Pass<'a> {
    channel: &'a Channel,
    dlq: &'a str,
    window: Vec<Pending>,
    replays_refused: u32,
}

impl<'a> Pass<'a> {
    fn new(channel: &'a Channel, dlq: &'a str) -> Self {
        Self {
            channel,
            dlq,
            window: Vec::with_capacity(PASS_WINDOW),
            replays_refused: 0,
        }
    }

    /// The message at the head of the queue, if there is one.
    async fn take(&mut self) -> anyhow::Result<Option<Delivery>> {
        let message = self
            .channel
            .basic_get(self.dlq.into(), BasicGetOptions { no_ack: false })
            .await
            .with_context(|| format!("Failed to take a message from {}", self.dlq))?;
        Ok(message.map(|m| m.delivery))
    }

    /// Puts an identical copy of `delivery` at the tail of the queue.
    async fn keep(&mut self, delivery: Delivery) -> anyhow::Result<()> {
        let confirm = self.copy_back(&delivery).await?;
        self.hold(Pending {
            delivery,
            fate: Fate::Keep,
            confirm,
        })
        .await
    }

    /// Sends `delivery` to the work queue `work`, without the dead-letter bookkeeping.
    async fn replay(&mut self, delivery: Delivery, work: &str) -> anyhow::Result<()> {
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
    fn replays_refused(&self) -> u32 {
        self.replays_refused
    }

    /// Settles every message still held.
    async fn finish(&mut self) -> anyhow::Result<()> {
        self.settle().await
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

    /// Waits for each held message's confirm, in order, and acknowledges the original once
    /// it is confirmed. A refused replay is kept instead; a refused copy leaves its original
    /// unacknowledged (the broker takes it back when the command ends) and stops the pass.
    async fn settle(&mut self) -> anyhow::Result<()> {
        for pending in std::mem::take(&mut self.window) {
            let mut confirmation = pending.confirm.await?;
            if pending.fate == Fate::Replay && !confirmed(&confirmation) {
                self.replays_refused += 1;
                confirmation = self.copy_back(&pending.delivery).await?.await?;
            }
            if !confirmed(&confirmation) {
                bail!(
                    "The broker refused to put a dead letter back into {}; it stays there",
                    self.dlq
                );
            }
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

fn envelope_type(data: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(data).ok()?;
    value["type"].as_str().map(str::to_owned)
}

fn pretty(data: &[u8], reveal: Reveal) -> String {
    match serde_json::from_slice::<serde_json::Value>(data) {
        Ok(mut body) => {
            if reveal == Reveal::Redacted {
                redact(&mut body);
            }
            serde_json::to_string_pretty(&body).unwrap_or_default()
        }
        // Not JSON: no field tells a secret apart, so only what is asked for is shown.
        Err(_) if reveal == Reveal::Redacted => {
            format!("<{} bytes, not JSON; --reveal shows them>", data.len())
        }
        Err(_) => String::from_utf8_lossy(data).into_owned(),
    }
}

/// Fields whose value is a bearer secret, sealed or not.
const SECRET_FIELDS: [&str; 4] = ["magic_link_url", "magic_link_sealed", "token", "secret"];
/// Prefixes of Beckon's tokens and secrets, wherever they turn up.
const SECRET_PREFIXES: [&str; 3] = ["oat_", "whsec_", "wsk_"];

/// Replaces every secret in a dead letter's body (any envelope type, any version, or none)
/// with `<redacted>`.
fn redact(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(fields) => {
            for (name, field) in fields.iter_mut() {
                if SECRET_FIELDS.contains(&name.as_str()) && field.is_string() {
                    *field = Value::from("<redacted>");
                } else {
                    redact(field);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::String(text)
            if SECRET_PREFIXES.iter().any(|p| text.contains(p)) || text.contains("/surveys/") =>
        {
            *text = "<redacted>".into();
        }
        _ => {}
    }
}

fn describe(value: &AMQPValue) -> String {
    match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peeked_bodies_hide_links_and_tokens_unless_revealed() {
        let body = serde_json::json!({
            "type": "invitation.created",
            "data": {
                "invitation": {"id": "i", "magic_link_url": "https://b.example/surveys/AAAA"},
                "links": [{"magic_link_sealed": "c2VhbGVk"}],
                "note": "see https://b.example/surveys/BBBB",
                "user": {"email": "ada@example.com"},
                "header": "Bearer oat_CCCC",
            }
        });
        let raw = serde_json::to_vec(&body).unwrap();
        let shown = pretty(&raw, Reveal::Redacted);
        for secret in ["AAAA", "BBBB", "CCCC", "c2VhbGVk"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("ada@example.com") && shown.contains("invitation.created"));
        assert!(pretty(&raw, Reveal::AsIs).contains("AAAA"));
        assert!(!pretty(b"oat_DDDD not json", Reveal::Redacted).contains("DDDD"));
    }
}
