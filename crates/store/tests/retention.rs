//! The retention sweep of webhook history against a real, freshly migrated database: bodies
//! are erased at the payload period unless a delivery still needs them, messages go with their
//! deliveries and attempts at the history period, and recover and resend know what was erased.

use beckon_store::retention::{self, Retention, RetentionError};
use beckon_store::testing::WithProject;
use beckon_store::webhooks::{self, AttemptRecord, MessageBody, NextStep, Resent};
use diesel::sql_types::{BigInt, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn retention() -> Retention {
    Retention {
        attempts: 30 * DAY,
        processed: 14 * DAY,
        triggers: 90 * DAY,
        webhook_payloads: 30 * DAY,
        webhook_history: 90 * DAY,
    }
}

/// A message `days_old` days old, delivered to `sub` (skipped when `active` is false); returns
/// its id.
async fn message(
    seeded: &WithProject,
    conn: &mut AsyncPgConnection,
    sub: Uuid,
    active: bool,
    days_old: i64,
) -> Uuid {
    let id = seeded
        .message(sub, false, active, OffsetDateTime::now_utc())
        .await;
    age(conn, id, days_old).await;
    id
}

async fn age(conn: &mut AsyncPgConnection, message: Uuid, days: i64) {
    for table in ["webhook_messages", "webhook_deliveries"] {
        let column = if table == "webhook_messages" {
            "id"
        } else {
            "message_id"
        };
        diesel::sql_query(format!(
            "UPDATE {table} SET created_at = now() - make_interval(days => $2) WHERE {column} = $1"
        ))
        .bind::<SqlUuid, _>(message)
        .bind::<diesel::sql_types::Integer, _>(days as i32)
        .execute(conn)
        .await
        .unwrap();
    }
}

/// Attempts the message's delivery to `sub` once, with `next` as its fate.
async fn attempted(conn: &mut AsyncPgConnection, message: Uuid, sub: Uuid, next: NextStep) {
    let id = webhooks::delivery_id(message, sub);
    let (delivery, _, _) = webhooks::attempt_contexts(conn, &[id])
        .await
        .unwrap()
        .remove(0);
    let record = AttemptRecord {
        status_code: Some(500),
        duration_ms: 3,
        response_body: None,
        error: None,
        next,
    };
    webhooks::record_attempt(conn, &delivery, &record)
        .await
        .unwrap();
}

async fn count(conn: &mut AsyncPgConnection, sql: &str, message: Uuid) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let row: Count = diesel::sql_query(sql)
        .bind::<SqlUuid, _>(message)
        .get_result(conn)
        .await
        .unwrap();
    row.n
}

async fn body_of(conn: &mut AsyncPgConnection, message: Uuid, sub: Uuid) -> Option<Vec<u8>> {
    let id = webhooks::delivery_id(message, sub);
    let (_, message, _) = webhooks::attempt_contexts(conn, &[id])
        .await
        .unwrap()
        .remove(0);
    match message.body() {
        MessageBody::Sealed(sealed) => Some(sealed.to_vec()),
        MessageBody::Erased(_) => None,
    }
}

async fn sweep_all(conn: &mut AsyncPgConnection) -> retention::Swept {
    let mut total = retention::Swept::default();
    let mut walked = retention::Walked::default();
    loop {
        let swept = retention::sweep(conn, &retention(), 2, &mut walked)
            .await
            .unwrap();
        if swept.total() == 0 {
            return total;
        }
        total.webhook_payloads += swept.webhook_payloads;
        total.webhook_messages += swept.webhook_messages;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_payload_period_are_erased_unless_a_delivery_still_needs_them() {
    let seeded = WithProject::new(2).await;
    let mut conn = seeded.store.conn().await.unwrap();
    let sub = seeded.subscription(false).await.id;
    let disabled = seeded.subscription(false).await.id;

    let delivered = message(&seeded, &mut conn, sub, true, 40).await;
    attempted(&mut conn, delivered, sub, NextStep::Succeeded).await;
    let gave_up = message(&seeded, &mut conn, sub, true, 40).await;
    attempted(&mut conn, gave_up, sub, NextStep::GiveUp).await;
    let retrying = message(&seeded, &mut conn, sub, true, 40).await;
    let later = OffsetDateTime::now_utc() + time::Duration::hours(1);
    attempted(&mut conn, retrying, sub, NextStep::RetryAt(later)).await;
    let missed = message(&seeded, &mut conn, disabled, false, 40).await;
    let young = message(&seeded, &mut conn, sub, true, 10).await;
    attempted(&mut conn, young, sub, NextStep::Succeeded).await;

    let swept = sweep_all(&mut conn).await;
    assert_eq!(swept.webhook_payloads, 3);
    assert_eq!(swept.webhook_messages, 0);

    for (erased, by) in [(delivered, sub), (gave_up, sub), (missed, disabled)] {
        assert_eq!(body_of(&mut conn, erased, by).await, None);
        // The row is kept, marked, with its deliveries and attempts.
        assert_eq!(
            count(
                &mut conn,
                "SELECT count(*) AS n FROM webhook_messages \
                 WHERE id = $1 AND body_encrypted IS NULL AND payload_erased_at IS NOT NULL",
                erased
            )
            .await,
            1
        );
        assert_eq!(
            count(
                &mut conn,
                "SELECT count(*) AS n FROM webhook_deliveries WHERE message_id = $1",
                erased
            )
            .await,
            1
        );
    }
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM webhook_attempts WHERE message_id = $1",
            gave_up
        )
        .await,
        1
    );
    assert_eq!(
        body_of(&mut conn, retrying, sub).await.as_deref(),
        Some(&b"sealed"[..]),
        "a pending retry keeps its body"
    );
    assert_eq!(
        body_of(&mut conn, young, sub).await.as_deref(),
        Some(&b"sealed"[..])
    );

    // The delivery of a skipped message cannot be recovered any more; the failed one's
    // neither; both are counted.
    let epoch = OffsetDateTime::UNIX_EPOCH;
    let recovered = webhooks::recover(&mut conn, disabled, epoch).await.unwrap();
    assert_eq!((recovered.queued, recovered.skipped_payload_erased), (0, 1));
    let fresh = message(&seeded, &mut conn, sub, true, 1).await;
    attempted(&mut conn, fresh, sub, NextStep::GiveUp).await;
    let recovered = webhooks::recover(&mut conn, sub, epoch).await.unwrap();
    assert_eq!((recovered.queued, recovered.skipped_payload_erased), (1, 1));

    let subscription = webhooks::get_subscription(&mut conn, seeded.project_id, sub)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        webhooks::resend(&mut conn, &subscription, delivered)
            .await
            .unwrap(),
        Resent::PayloadErased
    );
    assert_eq!(
        webhooks::resend(&mut conn, &subscription, young)
            .await
            .unwrap(),
        Resent::Queued
    );
    assert_eq!(
        webhooks::resend(&mut conn, &subscription, Uuid::now_v7())
            .await
            .unwrap(),
        Resent::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_past_the_history_period_go_with_their_deliveries_and_attempts() {
    let seeded = WithProject::new(2).await;
    let mut conn = seeded.store.conn().await.unwrap();
    let sub = seeded.subscription(false).await.id;
    let old = message(&seeded, &mut conn, sub, true, 100).await;
    attempted(&mut conn, old, sub, NextStep::GiveUp).await;
    // Still pending at the end of the history period (its subscription has been disabled
    // for months): the history period bounds everything.
    let stuck = message(&seeded, &mut conn, sub, true, 100).await;
    let kept = message(&seeded, &mut conn, sub, true, 80).await;
    attempted(&mut conn, kept, sub, NextStep::Succeeded).await;

    let swept = sweep_all(&mut conn).await;
    assert_eq!(swept.webhook_messages, 2);
    for gone in [old, stuck] {
        for table in [
            "SELECT count(*) AS n FROM webhook_messages WHERE id = $1",
            "SELECT count(*) AS n FROM webhook_deliveries WHERE message_id = $1",
            "SELECT count(*) AS n FROM webhook_attempts WHERE message_id = $1",
        ] {
            assert_eq!(count(&mut conn, table, gone).await, 0, "{table}");
        }
    }
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM webhook_deliveries WHERE message_id = $1",
            kept
        )
        .await,
        1
    );
}

#[test]
fn a_body_or_an_attempt_kept_longer_than_its_message_is_refused() {
    let payloads = Retention {
        webhook_payloads: 91 * DAY,
        ..retention()
    };
    assert!(matches!(
        payloads.validate(),
        Err(RetentionError::PayloadsOutliveHistory { .. })
    ));
    let attempts = Retention {
        attempts: 91 * DAY,
        ..retention()
    };
    assert!(matches!(
        attempts.validate(),
        Err(RetentionError::AttemptsOutliveHistory { .. })
    ));
    assert_eq!(retention().validate(), Ok(()));
    let equal = Retention {
        webhook_payloads: 90 * DAY,
        attempts: 90 * DAY,
        ..retention()
    };
    assert_eq!(equal.validate(), Ok(()));
}
