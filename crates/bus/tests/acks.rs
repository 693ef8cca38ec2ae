//! Against the real broker: acknowledgements sent many to a frame cover exactly the deliveries
//! whose work is done. One still being retried is never swept up with its neighbours, nothing
//! is acknowledged twice (the broker would close the channel), and what is done when the
//! consumer stops is acknowledged before it goes.

use beckon_bus::consumer::{self, ConsumerConfig};
use beckon_bus::publisher::Outgoing;
use beckon_bus::topology::WorkQueue;
use beckon_bus::{BusConfig, Disposition, Message, Publisher, Topology};
use lapin::types::FieldTable;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn amqp_uri() -> String {
    std::env::var("BECKON_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

const MESSAGES: usize = 200;

/// Every tenth message fails its first delivery, slowly, while those around it finish; the
/// rest finish after a pause that varies, so they settle out of order.
async fn handle(message: Message, seen: Arc<Mutex<HashMap<usize, usize>>>) -> Disposition {
    let n: usize = std::str::from_utf8(&message.body)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(usize::MAX);
    let deliveries = {
        let mut seen = seen.lock().unwrap();
        let count = seen.entry(n).or_default();
        *count += 1;
        *count
    };
    if n % 10 == 3 && deliveries == 1 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        return Disposition::Retry {
            reason: "fails once".into(),
        };
    }
    tokio::time::sleep(Duration::from_millis((n % 7) as u64)).await;
    Disposition::Ack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_acknowledgements_cover_only_finished_deliveries() -> anyhow::Result<()> {
    let mut config = BusConfig::new(amqp_uri(), format!("t{}", uuid::Uuid::now_v7().simple()));
    config.queue_expires_ms = Some(600_000);
    let topology = Topology::new(&config);
    let queue = WorkQueue {
        name: "work",
        bindings: vec!["acks.test.v1".into()],
    };
    let publisher =
        Publisher::connect(&config.uri, "test", topology.clone(), vec![queue.clone()]).await?;
    let exchange = topology.events_exchange();
    for n in 0..MESSAGES {
        publisher
            .publish(&Outgoing {
                exchange: &exchange,
                routing_key: "acks.test.v1",
                body: n.to_string().as_bytes(),
                message_id: None,
                headers: FieldTable::default(),
                mandatory: true,
            })
            .await?;
    }

    let seen = Arc::new(Mutex::new(HashMap::new()));
    let cancel = CancellationToken::new();
    let consumer = tokio::spawn({
        let seen = seen.clone();
        let cfg = ConsumerConfig {
            uri: config.uri.clone(),
            topology: topology.clone(),
            queue: queue.clone(),
            declare: vec![],
            prefetch: 32,
            name: "acks-test".into(),
        };
        consumer::run(
            cfg,
            move |m| handle(m, seen.clone()),
            cancel.clone(),
            |_| {},
        )
    });

    let deadline = Instant::now() + Duration::from_secs(30);
    let expected = MESSAGES + MESSAGES / 10;
    while seen.lock().unwrap().values().sum::<usize>() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Long enough for a wrongly covered or doubly acknowledged delivery to come back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    cancel.cancel();
    consumer.await?;

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), MESSAGES, "every message was delivered");
    for (n, deliveries) in &seen {
        let want = if n % 10 == 3 { 2 } else { 1 };
        assert_eq!(
            *deliveries, want,
            "message {n}: delivered {deliveries} times, expected {want}"
        );
    }
    assert_eq!(
        publisher.ready_messages(queue.name).await?,
        0,
        "everything finished was acknowledged before the consumer stopped"
    );
    Ok(())
}
