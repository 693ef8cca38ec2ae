//! `beckon dlq peek` and `beckon dlq replay` against the real broker (`BECKON_TEST_AMQP_URL`,
//! else the machine's): the dead letters they do not remove stay, in their order, with their
//! headers and without a delivery counted against them, however often they run. RabbitMQ 4
//! drops a quorum-queue message returned to its queue 20 times, even from a queue that sets
//! no delivery limit, as the dead-letter queues do.

use beckon_bus::topology::{Topology, queues};
use beckon_bus::{BusConfig, headers};
use lapin::message::Delivery;
use lapin::options::{
    BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use serde_json::{Value, json};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn amqp_uri() -> String {
    std::env::var("BECKON_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// More than RabbitMQ 4's default delivery limit of quorum queues (20).
const RUNS: usize = 25;

/// A deployment's matcher queues under a prefix of their own, and a channel on them.
struct Deployment {
    config: BusConfig,
    topology: Topology,
    _conn: Connection,
    channel: Channel,
}

impl Deployment {
    async fn new() -> anyhow::Result<Self> {
        let mut config = BusConfig::new(amqp_uri(), format!("t{}", uuid::Uuid::now_v7().simple()));
        config.delivery_limit = 1;
        config.queue_expires_ms = Some(600_000);
        let topology = Topology::new(&config);
        let conn = beckon_bus::connect::connect(&config.uri, "cli-test").await?;
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        topology.declare_exchanges(&channel).await?;
        topology
            .declare_work_queue(&channel, &queues::matcher())
            .await?;
        Ok(Self {
            config,
            topology,
            _conn: conn,
            channel,
        })
    }

    fn dlq(&self) -> String {
        self.topology.dead_letter_queue("matcher")
    }

    fn work(&self) -> String {
        self.topology.queue("matcher")
    }

    /// Runs the `beckon` CLI against this deployment and expects it to succeed.
    fn cli(&self, args: &[&str]) -> String {
        let (ok, text) = self.try_cli(args);
        assert!(ok, "beckon {args:?} failed: {text}");
        text
    }

    /// Runs the `beckon` CLI against this deployment: whether it succeeded, and what it said.
    fn try_cli(&self, args: &[&str]) -> (bool, String) {
        let out: Output = Command::new(env!("CARGO_BIN_EXE_beckon"))
            .args(args)
            .env("BECKON_AMQP_URL", &self.config.uri)
            .env("BECKON_QUEUE_PREFIX", &self.config.prefix)
            .output()
            .expect("the CLI runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    /// Dead-letters `body` as a consumer that gave up on it does: through the dead-letter
    /// exchange, with Beckon's reason headers and a trace header of the publisher's.
    async fn dead_letter(&self, body: &Value, reason: &str) -> anyhow::Result<()> {
        let mut table = FieldTable::default();
        headers::set_str(&mut table, headers::REASON, reason);
        headers::set_str(&mut table, headers::DETAIL, "the database said no");
        headers::set_str(&mut table, headers::SOURCE_QUEUE, &self.work());
        headers::set_str(&mut table, "traceparent", &traceparent(body));
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_message_id(body["id"].as_str().unwrap_or_default().into())
            .with_headers(table);
        self.channel
            .basic_publish(
                self.topology.dead_letter_exchange().as_str().into(),
                self.work().as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &serde_json::to_vec(body)?,
                props,
            )
            .await?
            .await?;
        Ok(())
    }

    /// Has the broker dead-letter `body` itself: delivered and returned past the work queue's
    /// delivery limit.
    async fn exhaust(&self, body: &Value) -> anyhow::Result<()> {
        let before = self.depth(&self.dlq()).await?;
        self.channel
            .basic_publish(
                "".into(),
                self.work().as_str().into(),
                BasicPublishOptions::default(),
                &serde_json::to_vec(body)?,
                BasicProperties::default()
                    .with_message_id(body["id"].as_str().unwrap_or_default().into()),
            )
            .await?
            .await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.depth(&self.dlq()).await? == before {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the broker never dead-lettered it"
            );
            if let Some(m) = self
                .channel
                .basic_get(
                    self.work().as_str().into(),
                    BasicGetOptions { no_ack: false },
                )
                .await?
            {
                m.delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await?;
            } else {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    async fn depth(&self, queue: &str) -> anyhow::Result<u32> {
        Ok(self
            .channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?
            .message_count())
    }

    /// Takes every message off `queue`, in order.
    async fn drain(&self, queue: &str) -> anyhow::Result<Vec<Delivery>> {
        let mut out = Vec::new();
        while let Some(m) = self
            .channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await?
        {
            out.push(m.delivery);
        }
        Ok(out)
    }

    async fn delete(&self) -> anyhow::Result<()> {
        self.topology
            .delete(&self.channel, &[queues::matcher()])
            .await?;
        Ok(())
    }
}

fn envelope(kind: &str, user_ref: &str) -> Value {
    json!({
        "id": uuid::Uuid::now_v7(), "type": kind, "version": 1,
        "occurred_at": "2026-11-23T10:00:00Z", "org_id": uuid::Uuid::now_v7(),
        "project_id": uuid::Uuid::now_v7(), "correlation_id": uuid::Uuid::now_v7(),
        "data": {"trigger_type": "event", "user_ref": user_ref, "event": "trial_expired", "reply_to": null}
    })
}

fn traceparent(body: &Value) -> String {
    let id = body["id"].as_str().unwrap_or_default().replace('-', "");
    format!("00-{id}-00f067aa0ba902b7-01")
}

fn body_of(delivery: &Delivery) -> Value {
    serde_json::from_slice(&delivery.data).expect("a JSON body")
}

/// Checks a dead letter Beckon made came back whole: body, message id, content type, its
/// headers, and no delivery counted against it.
fn assert_kept(delivery: &Delivery, sent: &Value, reason: &str) {
    assert_eq!(&body_of(delivery), sent);
    let props = &delivery.properties;
    assert_eq!(
        props.message_id().as_ref().map(|m| m.as_str()),
        sent["id"].as_str()
    );
    assert_eq!(
        props.content_type().as_ref().map(|m| m.as_str()),
        Some("application/json")
    );
    let table = props.headers().as_ref();
    assert_eq!(
        headers::get_str(table, headers::REASON).as_deref(),
        Some(reason)
    );
    assert_eq!(
        headers::get_str(table, headers::DETAIL).as_deref(),
        Some("the database said no")
    );
    assert_eq!(
        headers::get_str(table, "traceparent"),
        Some(traceparent(sent))
    );
    assert_unspent(delivery);
}

/// No delivery of the message was counted: RabbitMQ 3.10 says 0, 4.0 leaves the header out.
fn assert_unspent(delivery: &Delivery) {
    let count = headers::get_int(
        delivery.properties.headers().as_ref(),
        headers::DELIVERY_COUNT,
    );
    assert!(
        count.unwrap_or(0) == 0,
        "a delivery was counted against a dead letter: {count:?}"
    );
}

/// A dead letter the broker made at the delivery limit came back with its death headers.
fn assert_broker_made(delivery: &Delivery, sent: &Value, work: &str) {
    assert_eq!(&body_of(delivery), sent);
    let table = delivery.properties.headers().as_ref();
    assert_eq!(
        headers::get_str(table, headers::FIRST_DEATH_REASON).as_deref(),
        Some("delivery_limit")
    );
    assert_eq!(
        headers::get_str(table, headers::FIRST_DEATH_QUEUE).as_deref(),
        Some(work)
    );
    assert!(
        table.is_some_and(|t| t.inner().contains_key("x-death")),
        "{table:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peeking_a_dead_letter_queue_often_keeps_every_message_in_order_with_its_headers()
-> anyhow::Result<()> {
    let d = Deployment::new().await?;
    let sent = [
        envelope("event.received", "first"),
        envelope("event.received", "second"),
        envelope("something.else", "third"),
    ];
    for body in &sent {
        d.dead_letter(body, "handler_failed").await?;
    }
    let exhausted = envelope("event.received", "exhausted");
    d.exhaust(&exhausted).await?;
    assert_eq!(d.depth(&d.dlq()).await?, 4);

    for run in 0..RUNS {
        // A peek at the head only, and one at the whole queue: each time the same head.
        let count = if run % 2 == 0 { "1" } else { "10" };
        let out = d.cli(&["dlq", "peek", "matcher", "--count", count]);
        assert!(out.contains("--- message 1 ---"), "{out}");
        assert!(out.contains("reason: handler_failed"), "{out}");
        assert!(out.contains("detail: the database said no"), "{out}");
        let head = out.find("\"first\"").expect("the head is shown");
        if count == "10" {
            assert!(out.contains("--- message 4 ---"), "{out}");
            assert!(out.contains("reason: delivery_limit"), "{out}");
            let order: Vec<usize> = ["\"second\"", "\"third\"", "\"exhausted\""]
                .iter()
                .map(|name| out.find(name).expect("every message is shown"))
                .collect();
            assert!(head < order[0] && order.is_sorted(), "{out}");
        } else {
            assert!(!out.contains("--- message 2 ---"), "{out}");
        }
    }

    let left = d.drain(&d.dlq()).await?;
    assert_eq!(left.len(), 4, "every dead letter is still there");
    for (delivery, body) in left.iter().zip(&sent) {
        assert_kept(delivery, body, "handler_failed");
    }
    assert_broker_made(&left[3], &exhausted, &d.work());
    assert_unspent(&left[3]);
    d.delete().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_some_dead_letters_keeps_the_others_in_order_with_their_headers()
-> anyhow::Result<()> {
    let d = Deployment::new().await?;
    let sent = [
        envelope("event.received", "first"),
        envelope("something.else", "second"),
        envelope("event.received", "third"),
    ];
    for body in &sent {
        d.dead_letter(body, "handler_failed").await?;
    }
    let exhausted = envelope("event.received", "exhausted");
    d.exhaust(&exhausted).await?;

    // Replays that take nothing look at every message, and put every one back.
    for _ in 0..RUNS {
        let out = d.cli(&["dlq", "replay", "matcher", "--type", "no.such.type"]);
        assert!(out.contains("replayed 0 message(s)"), "{out}");
    }
    assert_eq!(d.depth(&d.dlq()).await?, 4);
    assert_eq!(d.depth(&d.work()).await?, 0);

    // One from the middle by type, then the head by count.
    let out = d.cli(&["dlq", "replay", "matcher", "--type", "something.else"]);
    assert!(out.contains("replayed 1 message(s)"), "{out}");
    let out = d.cli(&["dlq", "replay", "matcher", "--count", "1"]);
    assert!(out.contains("replayed 1 message(s)"), "{out}");

    let left = d.drain(&d.dlq()).await?;
    assert_eq!(left.len(), 2);
    assert_kept(&left[0], &sent[2], "handler_failed");
    assert_broker_made(&left[1], &exhausted, &d.work());
    assert_unspent(&left[1]);

    // The replayed ones are in the work queue, in the order they were replayed, without the
    // dead-letter bookkeeping.
    let replayed = d.drain(&d.work()).await?;
    let bodies: Vec<Value> = replayed.iter().map(body_of).collect();
    assert_eq!(bodies, [sent[1].clone(), sent[0].clone()]);
    for delivery in &replayed {
        let table = delivery.properties.headers().as_ref();
        assert_eq!(headers::get_str(table, headers::REASON), None);
        assert!(headers::get_str(table, "traceparent").is_some());
    }
    d.delete().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_the_broker_refuses_leaves_the_dead_letters_where_they_were() -> anyhow::Result<()>
{
    let d = Deployment::new().await?;
    let sent = [
        envelope("event.received", "first"),
        envelope("event.received", "second"),
    ];
    for body in &sent {
        d.dead_letter(body, "handler_failed").await?;
    }
    // With its work queue gone, a replay has nowhere to go: the broker returns it.
    d.channel
        .queue_delete(d.work().as_str().into(), Default::default())
        .await?;

    let (ok, out) = d.try_cli(&["dlq", "replay", "matcher"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("refused 2 replayed message(s)") && out.contains("0 replayed"),
        "{out}"
    );
    let left = d.drain(&d.dlq()).await?;
    assert_eq!(left.len(), 2);
    for (delivery, body) in left.iter().zip(&sent) {
        assert_kept(delivery, body, "handler_failed");
    }
    d.delete().await
}
