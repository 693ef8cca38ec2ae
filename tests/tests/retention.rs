//! Tables that only grow are swept by age: attempt logs, processed envelope ids, finished
//! triggers; what is young, or still to do, stays.

use beckon_e2e::receiver::Receiver;
use beckon_e2e::{Options, TestApp};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_past_their_retention_are_swept_and_young_ones_kept() {
    let hour = "3600".to_owned();
    let app = TestApp::spawn_with(Options::with_env(vec![
        ("BECKON_RETENTION_ATTEMPTS_SECS", hour.clone()),
        ("BECKON_RETENTION_PROCESSED_SECS", hour.clone()),
        ("BECKON_RETENTION_TRIGGERS_SECS", hour),
        ("BECKON_RETENTION_INTERVAL_SECS", "1".into()),
    ]))
    .await;
    let receiver = Receiver::start().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    app.create_webhook(project, json!({"url": receiver.url("/ok/old")}))
        .await;
    let (status, old) = app
        .dispatch(json!({"project_id": project, "user_ref": "old", "event": "trial_expired"}))
        .await;
    assert_eq!(status, 200);
    receiver
        .wait_for("/ok/old", 1, Duration::from_secs(30))
        .await;
    let attempt = "SELECT 1 FROM webhook_attempts";
    app.eventually(
        Duration::from_secs(30),
        "the attempt to be logged",
        || async { (app.execute(attempt).await == 1).then_some(()) },
    )
    .await;
    // A scheduled trigger, however old, is work still to do.
    let (status, _) = app
        .send_event(Some(project), json!({"event_name": "trial_expired", "user_info": {"contact_external_id": "later"}, "trigger_at": (time::OffsetDateTime::now_utc() + time::Duration::days(1)).format(&time::format_description::well_known::Rfc3339).unwrap()}))
        .await;
    assert_eq!(status, 201);

    // Everything so far becomes two hours old.
    app.execute("UPDATE webhook_attempts SET attempted_at = now() - interval '2 hours'")
        .await;
    app.execute("UPDATE processed_envelopes SET processed_at = now() - interval '2 hours'")
        .await;
    app.execute("UPDATE triggers SET created_at = now() - interval '2 hours', completed_at = now() - interval '2 hours'").await;
    let (status, young) = app
        .dispatch(json!({"project_id": project, "user_ref": "young", "event": "trial_expired"}))
        .await;
    assert_eq!(status, 200);

    let old_trigger = old["trigger_id"].as_str().unwrap();
    let gone = format!("SELECT 1 FROM triggers WHERE id = '{old_trigger}'");
    app.eventually(Duration::from_secs(30), "the old records to be swept", || async {
        let left = (
            app.execute(&gone).await,
            app.execute("SELECT 1 FROM webhook_attempts WHERE attempted_at < now() - interval '1 hour'").await,
            app.execute("SELECT 1 FROM processed_envelopes WHERE processed_at < now() - interval '1 hour'").await,
        );
        (left == (0, 0, 0)).then_some(())
    })
    .await;
    // The young event's envelopes are recorded as it is handled, which may be after the
    // sweep above: wait for its webhook, then give the sweeper two more passes.
    receiver
        .wait_for("/ok/old", 2, Duration::from_secs(30))
        .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let young_trigger = young["trigger_id"].as_str().unwrap();
    assert_eq!(
        app.execute(&format!(
            "SELECT 1 FROM triggers WHERE id = '{young_trigger}'"
        ))
        .await,
        1
    );
    assert!(
        app.execute("SELECT 1 FROM processed_envelopes").await >= 2,
        "the young ids stay"
    );
    assert_eq!(
        app.execute("SELECT 1 FROM triggers WHERE status = 'scheduled'")
            .await,
        1
    );
    // Invitations are the customer's data, not a log: they stay.
    assert_eq!(
        app.execute("SELECT 1 FROM invitations WHERE user_ref = 'old'")
            .await,
        1
    );
}

/// The payload period erases what a webhook said (its sealed body: magic links, personal
/// data) and keeps that it was sent; the history period deletes the rest. A body a pending
/// delivery still needs stays; what was erased cannot be recovered or resent, and a delivery
/// that finds its body erased fails at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_bodies_are_erased_at_the_payload_period_and_messages_deleted_at_the_history_period()
 {
    let app = TestApp::spawn_with(Options::with_env(vec![
        ("BECKON_RETENTION_WEBHOOK_PAYLOAD_SECS", "3600".into()),
        ("BECKON_RETENTION_WEBHOOK_HISTORY_SECS", "7200".into()),
        ("BECKON_RETENTION_ATTEMPTS_SECS", "3600".into()),
        ("BECKON_RETENTION_INTERVAL_SECS", "1".into()),
    ]))
    .await;
    let wait = Duration::from_secs(30);
    let receiver = Receiver::start().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let ok = app
        .create_webhook(project, json!({"url": receiver.url("/ok/kept")}))
        .await;
    let ok_path = format!(
        "/api/v1/projects/{project}/webhooks/{}",
        ok["id"].as_str().unwrap()
    );
    let patch = |status: &'static str| {
        app.authed(Method::PATCH, &ok_path)
            .json(&json!({"status": status}))
            .send()
    };
    let fire = |user: &'static str| {
        app.dispatch(json!({"project_id": project, "user_ref": user, "event": "trial_expired"}))
    };
    let message_of = |user: &'static str| {
        let app = &app;
        async move {
            let sql = format!(
                "SELECT id FROM webhook_messages WHERE user_ref = '{user}' AND event_type = 'invitation.created'"
            );
            app.eventually(Duration::from_secs(30), "the message", || async {
                let mut conn = app.store.conn().await.ok()?;
                diesel_async::RunQueryDsl::get_result::<Id>(diesel::sql_query(&sql), &mut conn)
                    .await
                    .ok()
                    .map(|row| row.id)
            })
            .await
        }
    };

    // Delivered.
    assert_eq!(fire("delivered").await.0, 200);
    receiver.wait_for("/ok/kept", 1, wait).await;
    let delivered = message_of("delivered").await;
    // Missed while the subscription was disabled: kept as a skipped delivery.
    assert_eq!(patch("disabled").await.unwrap().status(), 200);
    assert_eq!(fire("missed").await.0, 200);
    let missed = message_of("missed").await;
    assert_eq!(patch("active").await.unwrap().status(), 200);
    // Still being retried by a second subscription (next try in an hour).
    app.create_webhook(project, json!({"url": receiver.url("/always-500/retrying"), "retry_policy": {"kind": "custom", "delays_seconds": [3600]}}))
        .await;
    assert_eq!(fire("retrying").await.0, 200);
    receiver.wait_for("/always-500/retrying", 1, wait).await;
    receiver.wait_for("/ok/kept", 2, wait).await;
    let retrying = message_of("retrying").await;
    let attempts = "SELECT 1 FROM webhook_attempts";
    app.eventually(wait, "three attempts logged", || async {
        (app.execute(attempts).await == 3).then_some(())
    })
    .await;

    // All of it is now past the payload period, within the history period.
    app.execute("UPDATE webhook_messages SET created_at = now() - interval '90 minutes'")
        .await;
    app.execute("UPDATE webhook_deliveries SET created_at = now() - interval '90 minutes'")
        .await;
    assert_eq!(fire("young").await.0, 200);
    let young = message_of("young").await;

    let erased = "SELECT 1 FROM webhook_messages WHERE body_encrypted IS NULL AND payload_erased_at IS NOT NULL";
    app.eventually(wait, "two bodies to be erased", || async {
        (app.execute(erased).await == 2).then_some(())
    })
    .await;
    let with_body = |id: Uuid| {
        format!("SELECT 1 FROM webhook_messages WHERE id = '{id}' AND body_encrypted IS NOT NULL")
    };
    for gone in [delivered, missed] {
        assert_eq!(
            app.execute(&with_body(gone)).await,
            0,
            "no sealed body left"
        );
    }
    assert_eq!(
        app.execute(&with_body(retrying)).await,
        1,
        "a pending delivery keeps its body"
    );
    assert_eq!(app.execute(&with_body(young)).await, 1);
    assert_eq!(
        app.execute("SELECT 1 FROM webhook_messages WHERE created_at < now() - interval '1 hour' AND body_encrypted IS NOT NULL").await,
        1,
        "past the payload period, only the pending delivery's message holds a body"
    );
    // What was sent, and when, and how it went, stays.
    assert_eq!(
        app.execute(&format!("SELECT 1 FROM webhook_deliveries WHERE message_id = '{delivered}' AND status = 'succeeded' AND attempts = 1")).await,
        1
    );
    assert_eq!(
        app.execute(&format!(
            "SELECT 1 FROM webhook_deliveries WHERE message_id = '{missed}' AND status = 'skipped'"
        ))
        .await,
        1
    );
    assert_eq!(
        app.execute(&format!(
            "SELECT 1 FROM webhook_attempts WHERE message_id = '{delivered}' AND status_code = 200"
        ))
        .await,
        1
    );
    let listed: Value = app
        .authed(Method::GET, &format!("{ok_path}/deliveries"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed: Vec<&Value> = listed["data"].as_array().unwrap().iter().collect();
    for id in [delivered, missed] {
        let row = listed
            .iter()
            .find(|d| d["message_id"] == id.to_string())
            .unwrap_or_else(|| panic!("{id} is listed: {listed:?}"));
        assert!(row["payload_erased_at"].is_string(), "{row}");
    }

    // Recover sends nothing it no longer has, and says so.
    let since = (time::OffsetDateTime::now_utc() - time::Duration::hours(2))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let r = app
        .authed(Method::POST, &format!("{ok_path}/recover"))
        .json(&json!({"since": since}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let recovered: Value = r.json().await.unwrap();
    assert_eq!(recovered["queued"], 0, "{recovered}");
    assert_eq!(recovered["skipped_payload_erased"], 1, "{recovered}");
    // Nor does resend.
    let r = app
        .authed(
            Method::POST,
            &format!("{ok_path}/messages/{delivered}/resend"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
    let refused: Value = r.json().await.unwrap();
    assert_eq!(refused["code"], "payload_erased", "{refused}");

    // A delivery that finds its body erased (a recover racing the sweep) fails at once,
    // with the reason in its attempt log, and nothing is sent.
    let sent = receiver.received("/ok/kept").len();
    app.execute(&format!(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now() WHERE message_id = '{delivered}'"
    ))
    .await;
    let gave_up = format!(
        "SELECT 1 FROM webhook_deliveries d JOIN webhook_attempts a ON a.delivery_id = d.id \
         WHERE d.message_id = '{delivered}' AND d.status = 'failed' AND d.attempts = 2 \
           AND a.status_code IS NULL AND a.error LIKE '%erased%'"
    );
    app.eventually(wait, "the delivery to be given up", || async {
        (app.execute(&gave_up).await == 1).then_some(())
    })
    .await;
    assert_eq!(receiver.received("/ok/kept").len(), sent);
    assert_eq!(
        app.execute("SELECT 1 FROM webhook_subscriptions WHERE failures_in_streak > 0 AND url LIKE '%/ok/kept'").await,
        0,
        "the endpoint did nothing wrong"
    );

    // Past the history period, the message goes with its deliveries and attempts.
    app.execute(&format!(
        "UPDATE webhook_messages SET created_at = now() - interval '3 hours' WHERE id = '{delivered}'"
    ))
    .await;
    let any_of = format!(
        "SELECT 1 FROM webhook_messages WHERE id = '{delivered}' \
         UNION ALL SELECT 1 FROM webhook_deliveries WHERE message_id = '{delivered}' \
         UNION ALL SELECT 1 FROM webhook_attempts WHERE message_id = '{delivered}'"
    );
    app.eventually(wait, "the old message to be deleted", || async {
        (app.execute(&any_of).await == 0).then_some(())
    })
    .await;
    assert_eq!(
        app.execute(&format!(
            "SELECT 1 FROM webhook_messages WHERE id IN ('{missed}', '{retrying}', '{young}')"
        ))
        .await,
        3
    );

    let matcher = format!("http://127.0.0.1:{}/metrics", app.ops_port("matcher").await);
    for kind in ["webhook_payloads_erased", "webhook_messages"] {
        let counted = app
            .metric(
                &matcher,
                &format!("beckon_retention_swept_total{{kind=\"{kind}\"}}"),
            )
            .await;
        assert!(counted.is_some_and(|n| n >= 1.0), "{kind}: {counted:?}");
    }
}

#[derive(diesel::QueryableByName)]
struct Id {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
}

/// A webhook body kept longer than its message is a contradiction the matcher refuses at
/// start, naming the settings.
#[test]
fn the_matcher_refuses_a_payload_period_longer_than_the_history_period() {
    let output = std::process::Command::new(beckon_e2e::binary("matcher"))
        .env("BECKON_RETENTION_WEBHOOK_PAYLOAD_SECS", "7200")
        .env("BECKON_RETENTION_WEBHOOK_HISTORY_SECS", "3600")
        .output()
        .expect("the matcher runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("BECKON_RETENTION_WEBHOOK_PAYLOAD_SECS=\"7200\" is invalid")
            && stderr.contains("a body cannot outlive its message"),
        "{stderr}"
    );
}
