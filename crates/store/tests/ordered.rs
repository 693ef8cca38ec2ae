//! An ordered subscription's claim against a real database: a user's delivery that already
//! went out finishes (its retries) before any other of theirs starts, even one whose event
//! sorts before it — events of one dispatch share their time, and arrive in any order.

use beckon_store::testing::WithProject;
use beckon_store::webhooks;
use diesel_async::RunQueryDsl;
use time::OffsetDateTime;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_went_out_is_retried_before_an_earlier_event_starts() {
    let seeded = WithProject::new(2).await;
    let mut conn = seeded.store.conn().await.unwrap();
    let sub = seeded.subscription(true).await;
    let now = OffsetDateTime::now_utc();
    // The first to arrive goes out alone.
    let first = seeded.message(sub.id, true, true, now).await;
    let claimed = webhooks::claim_due(&mut conn, 10, 100, 30.0, 60.0)
        .await
        .unwrap();
    assert_eq!(claimed, [webhooks::delivery_id(first, sub.id)]);
    // Its attempt failed and its retry is due; meanwhile an event that sorts before it
    // (the same time, or earlier) arrived.
    let earlier = seeded
        .message(sub.id, true, true, now - time::Duration::milliseconds(1))
        .await;
    diesel::sql_query(
        "UPDATE webhook_deliveries SET attempts = 1, last_attempt_at = now(), next_attempt_at = now() \
         WHERE message_id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(first)
    .execute(&mut conn)
    .await
    .unwrap();
    let claimed = webhooks::claim_due(&mut conn, 10, 100, 30.0, 60.0)
        .await
        .unwrap();
    assert_eq!(
        claimed,
        [webhooks::delivery_id(first, sub.id)],
        "the retry goes before the event that had not started"
    );
    // Once it is done, the other goes.
    diesel::sql_query("UPDATE webhook_deliveries SET status = 'succeeded' WHERE message_id = $1")
        .bind::<diesel::sql_types::Uuid, _>(first)
        .execute(&mut conn)
        .await
        .unwrap();
    let claimed = webhooks::claim_due(&mut conn, 10, 100, 30.0, 60.0)
        .await
        .unwrap();
    assert_eq!(claimed, [webhooks::delivery_id(earlier, sub.id)]);
}
