//! What Beckon's dead-lettering relies on from RabbitMQ, held on every version it supports
//! (3.10, and 4.0 through `make test-rabbitmq4`): a consumer's retry (`basic.nack` with
//! requeue, see `beckon_bus::consumer`) counts as a failed delivery, and so do a reject and a
//! consumer that went away, and past the work queue's `x-delivery-limit` the broker
//! dead-letters the message with `x-first-death-reason: delivery_limit` into both the queue's
//! DLQ and the watch queue. RabbitMQ 4 changed how quorum queues count redeliveries; these
//! checks say it still works as Beckon expects.

use beckon_bus::topology::{Topology, WorkQueue};
use beckon_bus::{BusConfig, headers};
use lapin::options::{
    BasicGetOptions, BasicNackOptions, BasicPublishOptions, BasicRejectOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use std::time::{Duration, Instant};

/// How a taken message goes back to its queue.
#[derive(Debug, Clone, Copy)]
enum Return {
    Nack,
    Reject,
    /// The consumer's channel closes with the message unacknowledged (a crash).
    ChannelClosed,
}

const LIMIT: u32 = 2;

async fn depth(channel: &Channel, queue: &str) -> u32 {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the queue exists")
        .message_count()
}

/// Publishes one message to a fresh work queue with a delivery limit of [`LIMIT`], returns it
/// with `how` until the broker takes it away, and gives the `x-delivery-count` each delivery
/// carried (`None` where the header was missing) and the dead letter's headers.
async fn exhaust(conn: &Connection, how: Return) -> (Vec<Option<i64>>, Option<FieldTable>) {
    let mut config = BusConfig::new(
        beckon_e2e::amqp_url(),
        format!("t{}", uuid::Uuid::now_v7().simple()),
    );
    config.delivery_limit = LIMIT;
    config.queue_expires_ms = Some(600_000);
    let topology = Topology::new(&config);
    let queue = WorkQueue {
        name: "work",
        bindings: Vec::new(),
    };
    let control = conn.create_channel().await.expect("a channel");
    control
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    topology
        .declare_exchanges(&control)
        .await
        .expect("exchanges");
    topology
        .declare_work_queue(&control, &queue)
        .await
        .expect("queues");
    let work = topology.queue(queue.name);
    control
        .basic_publish(
            "".into(),
            work.as_str().into(),
            BasicPublishOptions::default(),
            b"{}",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirmed");

    let dlq = topology.dead_letter_queue(queue.name);
    let mut counts = Vec::new();
    let mut consumer = conn.create_channel().await.expect("a channel");
    let deadline = Instant::now() + Duration::from_secs(20);
    while depth(&control, &dlq).await == 0 {
        assert!(Instant::now() < deadline, "never dead-lettered: {counts:?}");
        let Some(m) = consumer
            .basic_get(work.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .expect("get")
        else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        counts.push(headers::get_int(
            m.delivery.properties.headers().as_ref(),
            headers::DELIVERY_COUNT,
        ));
        match how {
            Return::Nack => {
                m.delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await
                    .expect("nack");
            }
            Return::Reject => {
                m.delivery
                    .reject(BasicRejectOptions { requeue: true })
                    .await
                    .expect("reject");
            }
            Return::ChannelClosed => {
                consumer.close(200, "gone".into()).await.expect("close");
                consumer = conn.create_channel().await.expect("a channel");
            }
        }
    }
    let dead = control
        .basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("the dead letter");
    let table = dead.delivery.properties.headers().clone();
    assert_eq!(
        headers::get_str(table.as_ref(), headers::FIRST_DEATH_QUEUE).as_deref(),
        Some(work.as_str()),
        "{how:?}"
    );
    assert_eq!(
        depth(&control, &topology.dead_letter_watch_queue()).await,
        1,
        "{how:?}: the watch queue has its copy"
    );
    topology.delete(&control, &[queue]).await.expect("clean up");
    (counts, table)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_queue_dead_letters_a_message_once_its_returns_pass_the_delivery_limit() {
    let conn = Connection::connect(&beckon_e2e::amqp_url(), Default::default())
        .await
        .expect("the broker is reachable");
    for how in [Return::Nack, Return::Reject, Return::ChannelClosed] {
        let (counts, table) = exhaust(&conn, how).await;
        // The first delivery and LIMIT more; RabbitMQ 3.10 says 0 on the first, 4.0 nothing.
        let counts: Vec<i64> = counts.into_iter().map(|c| c.unwrap_or(0)).collect();
        assert_eq!(counts, [0, 1, 2], "{how:?}");
        assert_eq!(
            headers::dead_letter_reason(table.as_ref()).as_deref(),
            Some("delivery_limit"),
            "{how:?}"
        );
    }
}
