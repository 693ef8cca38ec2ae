//! The consumer runtime against the real broker and database: the outbox relay and the batch
//! workers.

use beckon_bus::topology::queues;
use beckon_bus::{BusConfig, Disposition, Publisher, Topology};
use beckon_domain::envelope::EventReceived;
use beckon_store::testing::TestDatabase;
use beckon_store::{Store, outbox};
use diesel_async::RunQueryDsl;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn amqp_uri() -> String {
    std::env::var("BECKON_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_broker_refuses_is_parked_and_the_ones_behind_it_go() {
    let db = TestDatabase::new().await.expect("a test database");
    let store = Store::new(db.url(), 2).expect("a pool");
    let mut config = BusConfig::new(amqp_uri(), format!("t{}", uuid::Uuid::now_v7().simple()));
    config.queue_expires_ms = Some(120_000);
    let topology = Topology::new(&config);
    let publisher = Publisher::connect(&config.uri, "relay-test", topology.clone(), queues::all())
        .await
        .expect("the broker");

    let mut conn = store.conn().await.expect("a connection");
    // First in line: a routing key no queue is bound to, which a mandatory publish gets back.
    let refused = outbox::enqueue(
        &mut conn,
        uuid::Uuid::now_v7(),
        &topology.events_exchange(),
        "nothing.listens.v1",
        b"{}".to_vec(),
        None,
    )
    .await
    .expect("enqueued");
    for _ in 0..3 {
        outbox::enqueue(
            &mut conn,
            uuid::Uuid::now_v7(),
            &topology.events_exchange(),
            "event.received.v1",
            b"{}".to_vec(),
            None,
        )
        .await
        .expect("enqueued");
    }
    drop(conn);

    let published = beckon_outbox::relay_once(&store, &publisher, Duration::ZERO)
        .await
        .expect("a relay pass");
    assert_eq!(
        published, 3,
        "the rows behind the refused one are published"
    );
    assert_eq!(
        publisher
            .ready_messages(queues::matcher().name)
            .await
            .expect("the matcher queue"),
        3
    );
    // The refused row stays, set aside: the next pass does not try it again at once.
    let again = beckon_outbox::relay_once(&store, &publisher, Duration::ZERO)
        .await
        .expect("a relay pass");
    assert_eq!(again, 0);
    let mut conn = store.conn().await.expect("a connection");
    let parked = diesel::sql_query(format!(
        "SELECT 1 FROM outbox WHERE id = {} AND attempts = 1 AND not_before > now()",
        refused.id
    ))
    .execute(&mut conn)
    .await
    .expect("queried");
    assert_eq!(parked, 1);
    assert_eq!(
        diesel::sql_query("SELECT 1 FROM outbox")
            .execute(&mut conn)
            .await
            .expect("queried"),
        1,
        "only the refused row is left"
    );
    // What stays shows in the outbox's age, read from the oldest row left.
    diesel::sql_query(format!(
        "UPDATE outbox SET created_at = now() - interval '1 hour' WHERE id = {}",
        refused.id
    ))
    .execute(&mut conn)
    .await
    .expect("aged");
    let age = outbox::oldest_age(&mut conn).await.expect("the age");
    assert!((3590.0..3700.0).contains(&age), "{age}");
    outbox::delete(&mut conn, &[refused.id])
        .await
        .expect("deleted");
    assert_eq!(outbox::oldest_age(&mut conn).await.expect("the age"), 0.0);
}

/// Panics on the user `boom`, as a handler with a bug would; handles everything else.
struct Fragile;

impl beckon_worker::Handler<EventReceived> for Fragile {
    type Then = ();

    async fn handle(
        &self,
        items: &[beckon_worker::Item<'_, EventReceived>],
        _conn: &mut diesel_async::AsyncPgConnection,
    ) -> Result<beckon_worker::Handled, beckon_worker::HandleError> {
        for item in items {
            assert_ne!(
                item.env.data.user_ref.as_str(),
                "boom",
                "a bug in the handler"
            );
        }
        Ok(beckon_worker::Handled::emits(vec![Vec::new(); items.len()]))
    }
}

/// A worker's dependencies on `store` and `publisher`, impatient: a failure is retried at once.
fn deps(store: &Store, publisher: &Publisher) -> beckon_worker::Deps {
    beckon_worker::Deps {
        cleaner: beckon_outbox::OutboxCleaner::start(store.clone()),
        database: beckon_worker::Database::new(store.clone()),
        patience: Duration::ZERO,
        store: store.clone(),
        publisher: publisher.clone(),
    }
}

fn envelope(user_ref: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": uuid::Uuid::now_v7(),
        "type": "event.received",
        "version": 1,
        "occurred_at": "2026-11-23T10:00:00Z",
        "org_id": uuid::Uuid::now_v7(),
        "project_id": uuid::Uuid::now_v7(),
        "correlation_id": uuid::Uuid::now_v7(),
        "data": {"trigger_type": "dispatch", "user_ref": user_ref, "event": "trial_expired", "reply_to": null}
    }))
    .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_panics_takes_its_batch_down_but_never_the_consumer() {
    let db = TestDatabase::new().await.expect("a test database");
    let store = Store::new(db.url(), 4).expect("a pool");
    let config = BusConfig::new(amqp_uri(), format!("t{}", uuid::Uuid::now_v7().simple()));
    let topology = Topology::new(&config);
    let publisher = Publisher::connect(&config.uri, "runtime-test", topology, Vec::new())
        .await
        .expect("the broker");
    let deps = deps(&store, &publisher);
    let cancel = CancellationToken::new();
    let batcher = beckon_worker::Batcher::start("fragile", deps, Fragile, 1, cancel.clone());
    // More panics than there are batch workers: unsupervised, none would be left.
    for _ in 0..6 {
        let disposition = batcher.process(&envelope("boom"), &cancel).await;
        assert!(
            matches!(disposition, Disposition::Retry { .. }),
            "a batch whose handler panicked is retried: {disposition:?}"
        );
    }
    for i in 0..4 {
        let disposition = batcher
            .process(&envelope(&format!("fine-{i}")), &cancel)
            .await;
        assert_eq!(disposition, Disposition::Ack);
    }
    assert!(batcher.workers().iter().any(|w| w.is_running()));
    cancel.cancel();
}

/// Emits one envelope per envelope handled, under `routing_key`; safe to handle again.
struct Relaying {
    exchange: String,
    routing_key: &'static str,
}

impl beckon_worker::Handler<EventReceived> for Relaying {
    const REPEATS: beckon_worker::Repeats = beckon_worker::Repeats::Harmless;
    type Then = ();

    async fn handle(
        &self,
        items: &[beckon_worker::Item<'_, EventReceived>],
        _conn: &mut diesel_async::AsyncPgConnection,
    ) -> Result<beckon_worker::Handled, beckon_worker::HandleError> {
        Ok(beckon_worker::Handled::emits(
            items
                .iter()
                .map(|item| {
                    vec![beckon_worker::Emit {
                        envelope_id: beckon_domain::ids::child_envelope_id(item.env.id, "relayed"),
                        exchange: self.exchange.clone(),
                        routing_key: self.routing_key.to_owned(),
                        body: b"{}".to_vec(),
                    }]
                })
                .collect(),
        ))
    }
}

/// A handler whose repeats are harmless keeps no record and writes no outbox row when the
/// broker takes what it emits; what the broker refuses goes to the outbox for the relay, and
/// the delivery is acknowledged either way, so nothing emitted is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_harmless_handler_publishes_directly_and_falls_back_to_the_outbox() {
    let db = TestDatabase::new().await.expect("a test database");
    let store = Store::new(db.url(), 4).expect("a pool");
    let mut config = BusConfig::new(amqp_uri(), format!("t{}", uuid::Uuid::now_v7().simple()));
    config.queue_expires_ms = Some(120_000);
    let topology = Topology::new(&config);
    let publisher = Publisher::connect(
        &config.uri,
        "harmless-test",
        topology.clone(),
        queues::all(),
    )
    .await
    .expect("the broker");
    let deps = deps(&store, &publisher);
    let cancel = CancellationToken::new();
    let count = async |sql: &str| {
        let mut conn = store.conn().await.expect("a connection");
        diesel::sql_query(sql)
            .execute(&mut conn)
            .await
            .expect("queried")
    };

    // Routed to the matcher's queue: published at once, nothing written.
    let taken = beckon_worker::Batcher::start(
        "harmless",
        deps.clone(),
        Relaying {
            exchange: topology.events_exchange(),
            routing_key: "event.received.v1",
        },
        8,
        cancel.clone(),
    );
    assert_eq!(
        taken.process(&envelope("u1"), &cancel).await,
        Disposition::Ack
    );
    assert_eq!(
        publisher
            .ready_messages(queues::matcher().name)
            .await
            .expect("the matcher queue"),
        1
    );
    assert_eq!(count("SELECT 1 FROM outbox").await, 0);
    assert_eq!(count("SELECT 1 FROM processed_envelopes").await, 0);

    // A routing key no queue is bound to: the broker returns the mandatory publish, and the
    // envelope waits in the outbox instead.
    let refused = beckon_worker::Batcher::start(
        "harmless",
        deps,
        Relaying {
            exchange: topology.events_exchange(),
            routing_key: "nothing.listens.v1",
        },
        8,
        cancel.clone(),
    );
    assert_eq!(
        refused.process(&envelope("u2"), &cancel).await,
        Disposition::Ack
    );
    assert_eq!(
        count("SELECT 1 FROM outbox WHERE routing_key = 'nothing.listens.v1'").await,
        1
    );
    assert_eq!(count("SELECT 1 FROM processed_envelopes").await, 0);
    cancel.cancel();
}
