//! Against the real broker: every kind of unhandleable message lands in the work queue's
//! dead-letter queue with its reason, and the consumer keeps handling good messages.

use beckon_bus::consumer::{self, ConsumerConfig};
use beckon_bus::publisher::Outgoing;
use beckon_bus::topology::WorkQueue;
use beckon_bus::{BusConfig, Disposition, Message, Publisher, Topology, headers};
use beckon_domain::envelope::{self, EventReceived, Kind};
use lapin::options::BasicGetOptions;
use lapin::types::FieldTable;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn amqp_uri() -> String {
    std::env::var("BECKON_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

fn good_envelope() -> serde_json::Value {
    serde_json::json!({
        "id": uuid::Uuid::now_v7(),
        "type": "event.received",
        "version": 1,
        "occurred_at": "2026-11-23T10:00:00Z",
        "org_id": uuid::Uuid::now_v7(),
        "project_id": uuid::Uuid::now_v7(),
        "correlation_id": uuid::Uuid::now_v7(),
        "data": {"trigger_type": "dispatch", "user_ref": "u1", "event": "trial_expired", "reply_to": null}
    })
}

/// Decodes like a real consumer; a user_ref of `always-fails` stands for a message whose
/// handling keeps failing for a transient-looking reason.
async fn handle(message: Message, handled: Arc<AtomicUsize>) -> Disposition {
    match envelope::decode::<EventReceived>(&message.body) {
        Err(err) => Disposition::DeadLetter {
            reason: err.reason().to_owned(),
            detail: err.to_string(),
        },
        Ok(env) if env.data.user_ref.as_str() == "always-fails" => Disposition::Retry {
            reason: "simulated outage".into(),
        },
        Ok(_) => {
            handled.fetch_add(1, Ordering::SeqCst);
            Disposition::Ack
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhandleable_messages_are_dead_lettered_with_their_reason() -> anyhow::Result<()> {
    let mut config = BusConfig::new(amqp_uri(), format!("t{}", uuid::Uuid::now_v7().simple()));
    config.delivery_limit = 2;
    config.queue_expires_ms = Some(600_000);
    let topology = Topology::new(&config);
    let queue = WorkQueue {
        name: "work",
        bindings: vec![EventReceived::routing_key()],
    };
    let publisher =
        Publisher::connect(&config.uri, "test", topology.clone(), vec![queue.clone()]).await?;

    let handled = Arc::new(AtomicUsize::new(0));
    let cancel = CancellationToken::new();
    let consumer = tokio::spawn({
        let handled = handled.clone();
        let cfg = ConsumerConfig {
            uri: config.uri.clone(),
            topology: topology.clone(),
            queue: queue.clone(),
            declare: vec![],
            prefetch: 8,
            name: "test-consumer".into(),
        };
        consumer::run(
            cfg,
            move |m| handle(m, handled.clone()),
            cancel.clone(),
            |_| {},
        )
    });

    let exchange = topology.events_exchange();
    let key = EventReceived::routing_key();
    let mut unknown_version = good_envelope();
    unknown_version["version"] = 9.into();
    let mut schema_violation = good_envelope();
    schema_violation["data"]["event"] = "not_an_event".into();
    let mut poison = good_envelope();
    poison["data"]["user_ref"] = "always-fails".into();
    let bodies: Vec<Vec<u8>> = vec![
        b"{this is not json".to_vec(),
        serde_json::to_vec(&unknown_version)?,
        serde_json::to_vec(&schema_violation)?,
        serde_json::to_vec(&poison)?,
        serde_json::to_vec(&good_envelope())?,
    ];
    for body in &bodies {
        publisher
            .publish(&Outgoing {
                exchange: &exchange,
                routing_key: &key,
                body,
                message_id: None,
                headers: FieldTable::default(),
                mandatory: true,
            })
            .await?;
    }

    // Poll the dead-letter queue until all four arrived (the poison one after its retries).
    let conn = beckon_bus::connect::connect(&config.uri, "test-inspector").await?;
    let channel = conn.create_channel().await?;
    let dlq = topology.dead_letter_queue(queue.name);
    let mut reasons = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while reasons.len() < 4 && Instant::now() < deadline {
        match channel
            .basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: true })
            .await?
        {
            Some(msg) => {
                let table = msg.delivery.properties.headers().as_ref();
                let reason = headers::dead_letter_reason(table).unwrap_or_else(|| "none".into());
                // Beckon's dead letters say when they were made (the broker's, in `x-death`).
                let stamped =
                    table.is_some_and(|t| t.inner().contains_key(headers::DEAD_LETTERED_AT));
                assert_eq!(stamped, reason != "delivery_limit", "{reason}: {table:?}");
                reasons.insert(
                    reason,
                    String::from_utf8_lossy(&msg.delivery.data).into_owned(),
                );
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let found: Vec<&str> = reasons.keys().map(String::as_str).collect();
    assert_eq!(
        found,
        [
            "delivery_limit",
            "malformed_json",
            "schema_violation",
            "unknown_version"
        ],
        "dead letters: {reasons:?}"
    );
    assert!(reasons["malformed_json"].starts_with("{this is not json"));

    // The consumer is not stuck behind the poison: the good message was handled.
    let deadline = Instant::now() + Duration::from_secs(10);
    while handled.load(Ordering::SeqCst) < 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(handled.load(Ordering::SeqCst), 1);

    cancel.cancel();
    consumer.await?;
    topology.delete(&channel, &[queue]).await?;
    Ok(())
}
