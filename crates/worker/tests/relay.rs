//! The outbox relay against the real broker and database.

use beckon_bus::topology::queues;
use beckon_bus::{BusConfig, Publisher, Topology};
use beckon_store::testing::TestDatabase;
use beckon_store::{Store, outbox};
use diesel_async::RunQueryDsl;
use std::time::Duration;

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

    let published = beckon_worker::relay_once(&store, &publisher, Duration::ZERO)
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
    let again = beckon_worker::relay_once(&store, &publisher, Duration::ZERO)
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
}
