//! Tables that only grow are swept by age: attempt logs, processed envelope ids, finished
//! triggers; what is young, or still to do, stays.

use beckon_e2e::receiver::Receiver;
use beckon_e2e::{Options, TestApp};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_past_their_retention_are_swept_and_young_ones_kept() {
    let hour = "3600".to_owned();
    let app = TestApp::spawn_with(Options {
        env: vec![
            ("BECKON_RETENTION_ATTEMPTS_SECS", hour.clone()),
            ("BECKON_RETENTION_PROCESSED_SECS", hour.clone()),
            ("BECKON_RETENTION_TRIGGERS_SECS", hour),
            ("BECKON_RETENTION_INTERVAL_SECS", "1".into()),
        ],
        ..Options::default()
    })
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
