//! `beckon queues` and `beckon dlq peek | replay | purge` against the real broker
//! (`BECKON_TEST_AMQP_URL`, else the machine's), each test under a queue prefix of its own:
//! the dead letters they do not remove stay, in their order, with their headers and without a
//! delivery counted against them, however often they run (RabbitMQ 4 drops a quorum-queue
//! message returned to its queue 20 times, even from a queue that sets no delivery limit, as
//! the dead-letter queues do); replay filters take exactly what they select in one pass that
//! ends; dry runs change nothing; and no message is lost or doubled when a replay is stopped.

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
use std::collections::BTreeSet;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

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
        let out: Output = self.command(args).output().expect("the CLI runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    /// The `beckon` command, set up for this deployment.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_beckon"));
        command
            .args(args)
            .env("BECKON_AMQP_URL", &self.config.uri)
            .env("BECKON_QUEUE_PREFIX", &self.config.prefix)
            .env_remove("BECKON_OUTPUT")
            .stdin(Stdio::null());
        command
    }

    /// Runs `beckon --output json` against this deployment, expects it to succeed, and gives
    /// the one JSON document it printed on stdout.
    fn json(&self, args: &[&str]) -> Value {
        let out = self
            .command(&[&["--output", "json"], args].concat())
            .output()
            .expect("the CLI runs");
        assert!(
            out.status.success(),
            "beckon {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Dead-letters `body` as a consumer that gave up on it does: through the dead-letter
    /// exchange, with Beckon's reason headers and a trace header of the publisher's.
    async fn dead_letter(&self, body: &Value, reason: &str) -> anyhow::Result<()> {
        self.dead_letter_at(body, reason, None).await
    }

    /// [`Deployment::dead_letter`], stamped as dead-lettered at `at` when given (as consumers
    /// do now; older ones left the time out).
    async fn dead_letter_at(
        &self,
        body: &Value,
        reason: &str,
        at: Option<OffsetDateTime>,
    ) -> anyhow::Result<()> {
        let mut table = FieldTable::default();
        if let Some(at) = at {
            let at = std::time::UNIX_EPOCH + Duration::from_secs(at.unix_timestamp() as u64);
            headers::set_timestamp(&mut table, headers::DEAD_LETTERED_AT, at);
        }
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

    /// Has the broker dead-letter `body` itself for `rejected`: delivered and rejected
    /// without a requeue.
    async fn reject(&self, body: &Value) -> anyhow::Result<()> {
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
        loop {
            if let Some(m) = self
                .channel
                .basic_get(
                    self.work().as_str().into(),
                    BasicGetOptions { no_ack: false },
                )
                .await?
            {
                m.delivery
                    .reject(lapin::options::BasicRejectOptions { requeue: false })
                    .await?;
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "the message never arrived");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        while self.depth(&self.dlq()).await? == before {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the broker never dead-lettered it"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
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

    /// Declares the other work queues too, as a whole deployment has them.
    async fn declare_all(&self) -> anyhow::Result<()> {
        for queue in queues::all() {
            self.topology
                .declare_work_queue(&self.channel, &queue)
                .await?;
        }
        Ok(())
    }

    async fn delete(&self) -> anyhow::Result<()> {
        self.topology.delete(&self.channel, &queues::all()).await?;
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

fn at(raw: &str) -> OffsetDateTime {
    OffsetDateTime::parse(raw, &Rfc3339).unwrap()
}

/// The user refs the envelopes of `deliveries` carry, in order: the tests' names for them.
fn names(deliveries: &[Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| body_of(d)["data"]["user_ref"].as_str().unwrap().to_owned())
        .collect()
}

/// The user refs of the messages a replay report lists, by their message ids.
fn selected(report: &Value, sent: &[&Value]) -> Vec<String> {
    report["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let body = sent
                .iter()
                .find(|b| b["id"] == m["message_id"])
                .unwrap_or_else(|| panic!("{m} was not sent"));
            body["data"]["user_ref"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_and_peek_print_json_a_script_can_read() -> anyhow::Result<()> {
    let d = Deployment::new().await?;
    d.declare_all().await?;
    let first = envelope("event.received", "first");
    let when = at("2026-11-23T10:00:05Z");
    d.dead_letter_at(&first, "handler_failed", Some(when))
        .await?;
    d.dead_letter(&envelope("something.else", "second"), "unknown_type")
        .await?;
    let exhausted = envelope("event.received", "exhausted");
    let before = OffsetDateTime::now_utc().replace_nanosecond(0)?;
    d.exhaust(&exhausted).await?;

    let listed = d.json(&["queues"]);
    let dlq = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == d.dlq().as_str())
        .expect("the matcher's dead-letter queue is listed");
    assert_eq!(
        dlq,
        &json!({"name": d.dlq(), "kind": "dead_letter", "work_queue": "matcher", "messages": 3, "consumers": 0})
    );
    let work = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == d.work().as_str())
        .unwrap();
    assert_eq!(
        (&work["kind"], &work["messages"]),
        (&json!("work"), &json!(0))
    );

    let peeked = d.json(&["dlq", "peek", "matcher", "--count", "10"]);
    assert_eq!(peeked["depth"], 3);
    assert_eq!(peeked["dead_letter_queue"], d.dlq().as_str());
    let messages = peeked["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    let head = &messages[0];
    assert_eq!(head["position"], 1);
    assert_eq!(head["message_id"], first["id"]);
    assert_eq!(head["type"], "event.received");
    assert_eq!(head["reason"], "handler_failed");
    assert_eq!(head["detail"], "the database said no");
    assert_eq!(head["dead_lettered_at"], "2026-11-23T10:00:05Z");
    assert_eq!(head["source_queue"], d.work().as_str());
    assert_eq!(head["headers"]["traceparent"], traceparent(&first).as_str());
    assert_eq!(head["body"], first);
    assert_eq!(head["deaths"], json!([]));
    assert_eq!(messages[1]["dead_lettered_at"], Value::Null, "not recorded");
    let made = &messages[2];
    assert_eq!(made["reason"], "delivery_limit");
    assert_eq!(made["deaths"][0]["reason"], "delivery_limit");
    assert_eq!(made["deaths"][0]["queue"], d.work().as_str());
    let died = at(made["dead_lettered_at"].as_str().unwrap());
    assert!(
        died >= before && died <= OffsetDateTime::now_utc(),
        "{made}"
    );
    assert_eq!(made["deaths"][0]["time"], made["dead_lettered_at"]);

    // --count shows the head only; nothing was removed.
    let peeked = d.json(&["dlq", "peek", "matcher", "--count", "1"]);
    assert_eq!(peeked["messages"].as_array().unwrap().len(), 1);
    assert_eq!(
        names(&d.drain(&d.dlq()).await?),
        ["first", "second", "exhausted"]
    );
    d.delete().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_of_replay_and_purge_move_and_delete_nothing() -> anyhow::Result<()> {
    let d = Deployment::new().await?;
    let sent = [
        envelope("event.received", "first"),
        envelope("something.else", "second"),
        envelope("event.received", "third"),
    ];
    for body in &sent {
        d.dead_letter_at(body, "handler_failed", Some(at("2026-11-23T10:00:00Z")))
            .await?;
    }
    let exhausted = envelope("event.received", "exhausted");
    d.exhaust(&exhausted).await?;
    let all: Vec<&Value> = sent.iter().chain([&exhausted]).collect();

    let report = d.json(&["dlq", "replay", "matcher", "--dry-run"]);
    assert_eq!(report["dry_run"], true);
    assert_eq!(
        (&report["depth"], &report["examined"], &report["selected"]),
        (&json!(4), &json!(4), &json!(4))
    );
    assert_eq!(report["replayed"], 0);
    assert_eq!(
        selected(&report, &all),
        ["first", "second", "third", "exhausted"]
    );
    for (args, expected) in [
        (&["--type", "something.else"][..], &["second"][..]),
        (&["--count", "2"], &["first", "second"]),
        (&["--reason", "delivery_limit"], &["exhausted"]),
        (
            &["--until", "2026-11-23T10:00:01Z", "--count", "5"],
            &["first", "second", "third"],
        ),
        (
            &[
                "--type",
                "event.received",
                "--reason",
                "handler_failed",
                "--rate",
                "1",
            ],
            &["first", "third"],
        ),
    ] {
        let report = d.json(&[&["dlq", "replay", "matcher", "--dry-run"], args].concat());
        assert_eq!(selected(&report, &all), expected, "{args:?}");
        assert_eq!(report["replayed"], 0);
    }
    let report = d.json(&["dlq", "purge", "matcher", "--dry-run"]);
    assert_eq!(
        report,
        json!({"queue": "matcher", "dead_letter_queue": d.dlq(), "status": "dry_run", "messages": 4, "deleted": 0})
    );
    let table = d.cli(&[
        "dlq",
        "replay",
        "matcher",
        "--dry-run",
        "--type",
        "something.else",
    ]);
    assert!(
        table.contains("dry run: would replay 1 message(s) of 4"),
        "{table}"
    );

    // Every message is where it was: same depth, order, bodies and headers, none spent.
    assert_eq!(d.depth(&d.work()).await?, 0);
    let left = d.drain(&d.dlq()).await?;
    assert_eq!(left.len(), 4);
    for (delivery, body) in left.iter().zip(&sent) {
        assert_kept(delivery, body, "handler_failed");
    }
    assert_broker_made(&left[3], &exhausted, &d.work());
    assert_unspent(&left[3]);
    d.delete().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_filters_move_exactly_what_they_select_and_keep_the_rest_in_order()
-> anyhow::Result<()> {
    let d = Deployment::new().await?;
    let start = OffsetDateTime::now_utc().replace_nanosecond(0)?;
    let a = envelope("event.received", "a");
    let b = envelope("something.else", "b");
    let c = envelope("event.received", "c");
    let unstamped = envelope("event.received", "unstamped");
    let rejected = envelope("event.received", "rejected");
    let exhausted = envelope("event.received", "exhausted");
    d.dead_letter_at(&a, "handler_failed", Some(at("2026-01-01T00:00:00Z")))
        .await?;
    d.dead_letter_at(&b, "unknown_type", Some(at("2026-01-02T00:00:00Z")))
        .await?;
    d.dead_letter_at(&c, "schema_violation", Some(at("2026-01-03T00:00:00Z")))
        .await?;
    d.dead_letter(&unstamped, "handler_failed").await?;
    d.reject(&rejected).await?;
    d.exhaust(&exhausted).await?;
    let all = [&a, &b, &c, &unstamped, &rejected, &exhausted];

    let since = (start - time::Duration::minutes(1)).format(&Rfc3339)?;
    for (args, moved) in [
        // A window: since is inclusive, until exclusive; a dead letter of unknown time is in none.
        (
            vec![
                "--since",
                "2026-01-02T00:00:00Z",
                "--until",
                "2026-01-03T00:00:00Z",
            ],
            "b",
        ),
        (
            vec!["--type", "event.received", "--reason", "schema_violation"],
            "c",
        ),
        (vec!["--reason", "rejected"], "rejected"),
        (vec!["--since", since.as_str()], "exhausted"),
    ] {
        let depth = d.depth(&d.dlq()).await?;
        let report = d.json(&[&["dlq", "replay", "matcher"][..], &args].concat());
        assert_eq!(selected(&report, &all), [moved], "{args:?}: {report}");
        assert_eq!(report["replayed"], 1);
        assert_eq!(report["depth"], depth);
        assert_eq!(report["examined"], depth, "one pass over the whole queue");
        assert_eq!(names(&d.drain(&d.work()).await?), [moved], "{args:?}");
        assert_eq!(d.depth(&d.dlq()).await?, depth - 1);
    }
    let left = d.drain(&d.dlq()).await?;
    assert_eq!(names(&left), ["a", "unstamped"]);
    assert_kept(&left[0], &a, "handler_failed");
    assert_kept(&left[1], &unstamped, "handler_failed");
    d.delete().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_replay_of_a_deep_queue_ends_after_one_pass_while_dead_letters_keep_coming()
-> anyhow::Result<()> {
    let d = std::sync::Arc::new(Deployment::new().await?);
    // Deeper than the pass's window, so it settles many times on the way.
    let mut sent = Vec::new();
    for n in 0..300 {
        let kind = if [10, 150, 290].contains(&n) {
            "rare.kind"
        } else {
            "event.received"
        };
        let body = envelope(kind, &format!("m{n}"));
        d.dead_letter(&body, "handler_failed").await?;
        sent.push(body);
    }
    // A consumer keeps dead-lettering while the replay runs.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let late = tokio::spawn({
        let (d, stop) = (d.clone(), stop.clone());
        async move {
            let mut late = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                d.dead_letter(
                    &envelope("event.received", &format!("late{late}")),
                    "handler_failed",
                )
                .await?;
                late += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            anyhow::Ok(late)
        }
    });

    let report = tokio::task::spawn_blocking({
        let d = d.clone();
        move || d.json(&["dlq", "replay", "matcher", "--type", "rare.kind"])
    })
    .await?;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let late = late.await??;
    assert_eq!(report["replayed"], 3, "{report}");
    assert_eq!(report["examined"], report["depth"], "{report}");
    assert_eq!(names(&d.drain(&d.work()).await?), ["m10", "m150", "m290"]);

    // The rest is there once each, the first 300 in their order, and every late one.
    let left = names(&d.drain(&d.dlq()).await?);
    let mut seen = BTreeSet::new();
    let twice: Vec<&String> = left.iter().filter(|n| !seen.insert(*n)).collect();
    assert!(twice.is_empty(), "in the queue twice: {twice:?}");
    assert_eq!(left.len(), 297 + late, "{late} late");
    let early: Vec<&String> = left.iter().filter(|n| n.starts_with('m')).collect();
    let expected: Vec<String> = (0..300)
        .filter(|n| ![10, 150, 290].contains(n))
        .map(|n| format!("m{n}"))
        .collect();
    assert_eq!(early, expected.iter().collect::<Vec<_>>());
    d.delete().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_at_a_rate_moves_no_faster_than_it() -> anyhow::Result<()> {
    let d = Deployment::new().await?;
    for n in 0..6 {
        d.dead_letter(
            &envelope("event.received", &format!("m{n}")),
            "handler_failed",
        )
        .await?;
    }
    let started = Instant::now();
    let report = d.json(&["dlq", "replay", "matcher", "--rate", "4"]);
    let took = started.elapsed();
    assert_eq!(report["replayed"], 6);
    // Six moves at four a second are five intervals of 250 ms apart: 1.25 s at the least
    // (the slack covers clocks, not a faster rate).
    assert!(took >= Duration::from_millis(1200), "took {took:?}");
    assert_eq!(
        names(&d.drain(&d.work()).await?),
        ["m0", "m1", "m2", "m3", "m4", "m5"]
    );
    d.delete().await
}

/// Starts a slow replay of `n` dead letters, waits until it moved one, and sends it `signal`.
async fn replay_and_signal(
    d: &Deployment,
    n: usize,
    signal: &str,
) -> anyhow::Result<(Vec<Value>, Output)> {
    let mut sent = Vec::new();
    for i in 0..n {
        let body = envelope("event.received", &format!("m{i}"));
        d.dead_letter(&body, "handler_failed").await?;
        sent.push(body);
    }
    let child = d
        .command(&[
            "--output", "json", "dlq", "replay", "matcher", "--rate", "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.depth(&d.work()).await? == 0 {
        anyhow::ensure!(Instant::now() < deadline, "the replay never moved one");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()?;
    anyhow::ensure!(killed.success(), "kill {signal} failed");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await??;
    Ok((sent, out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_stopped_by_a_signal_leaves_every_message_in_exactly_one_place()
-> anyhow::Result<()> {
    for signal in ["-INT", "-TERM"] {
        let d = Deployment::new().await?;
        let (sent, out) = replay_and_signal(&d, 8, signal).await?;
        assert_eq!(out.status.code(), Some(130), "{signal}: {out:?}");
        let report: Value = serde_json::from_slice(&out.stdout)?;
        assert_eq!(report["interrupted"], true, "{report}");
        let err: Value = serde_json::from_slice(
            &out.stderr[out.stderr.iter().position(|b| *b == b'{').unwrap()..],
        )?;
        assert_eq!(err["error"]["code"], "interrupted", "{err}");

        let moved = names(&d.drain(&d.work()).await?);
        let stayed = names(&d.drain(&d.dlq()).await?);
        assert_eq!(report["replayed"], moved.len(), "{report}");
        assert!(!moved.is_empty() && moved.len() < sent.len(), "{moved:?}");
        let mut every: Vec<String> = moved.into_iter().chain(stayed).collect();
        every.sort();
        let mut expected: Vec<String> = (0..sent.len()).map(|i| format!("m{i}")).collect();
        expected.sort();
        assert_eq!(every, expected, "{signal}: each message once, none lost");
        d.delete().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_killed_outright_loses_no_message() -> anyhow::Result<()> {
    let d = Deployment::new().await?;
    let (sent, out) = replay_and_signal(&d, 8, "-KILL").await?;
    assert!(!out.status.success());
    let mut every = names(&d.drain(&d.work()).await?);
    every.extend(names(&d.drain(&d.dlq()).await?));
    for body in &sent {
        let name = body["data"]["user_ref"].as_str().unwrap();
        assert!(
            every.iter().any(|n| n == name),
            "{name} was lost: {every:?}"
        );
    }
    d.delete().await
}
