//! An ordered subscription's claim against a real database: a user's delivery that already
//! went out finishes (its retries) before any other of theirs starts, even one whose event
//! sorts before it — events of one dispatch share their time, and arrive in any order.

use beckon_store::testing::WithProject;
use beckon_store::webhooks::{self, NewMessage, Subscriber};
use diesel_async::RunQueryDsl;
use time::OffsetDateTime;
use uuid::Uuid;

#[tokio::test]
async fn a_delivery_that_went_out_is_retried_before_an_earlier_event_starts() {
    let seeded = WithProject::new(2).await;
    let mut conn = seeded.store.conn().await.unwrap();
    let sub = seeded.subscription(true).await;
    let now = OffsetDateTime::now_utc();
    // The first to arrive goes out alone.
    let first = message(&seeded, &mut conn, sub.id, now).await;
    let claimed = webhooks::claim_due(&mut conn, 10, 100, 30.0, 60.0)
        .await
        .unwrap();
    assert_eq!(claimed, [webhooks::delivery_id(first, sub.id)]);
    // Its attempt failed and its retry is due; meanwhile an event that sorts before it
    // (the same time, or earlier) arrived.
    let earlier = message(
        &seeded,
        &mut conn,
        sub.id,
        now - time::Duration::milliseconds(1),
    )
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

/// A message about "user" that occurred at `occurred_at`, with its delivery to `sub`.
async fn message(
    seeded: &WithProject,
    conn: &mut diesel_async::AsyncPgConnection,
    sub: Uuid,
    occurred_at: OffsetDateTime,
) -> Uuid {
    let id = Uuid::now_v7();
    webhooks::insert_message(
        conn,
        &NewMessage {
            id,
            org_id: seeded.org_id,
            project_id: seeded.project_id,
            event_type: "invitation.created".into(),
            version: 1,
            body_encrypted: b"sealed".to_vec(),
            occurred_at,
            user_ref: Some("user".into()),
        },
    )
    .await
    .unwrap();
    let subscriber = [Subscriber {
        id: sub,
        active: true,
        ordered: true,
    }];
    webhooks::insert_deliveries_of(conn, &[(id, &subscriber)], OffsetDateTime::now_utc())
        .await
        .unwrap();
    id
}
