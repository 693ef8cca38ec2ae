//! Faults at default settings: outages of a dependency are not failures of the messages in
//! flight (nothing accepted is dead-lettered because the database was away), and a message
//! that does fail for good never leaves its trigger waiting. The database is cut off through a
//! proxy, for these services only, so these tests run beside the others.

use beckon_e2e::broker::Broker;
use beckon_e2e::{Options, TestApp};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_holds_messages_instead_of_dead_lettering_them() {
    let mut app = TestApp::spawn_with(Options {
        database_proxy: true,
        ..Default::default()
    })
    .await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    app.stop("matcher");
    const EVENTS: usize = 30;
    for i in 0..EVENTS {
        let (status, body) = app
            .send_event(
                Some(project),
                json!({"event_name": "trial_expired", "user_info": {"contact_external_id": format!("u{i}")}}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    app.db_proxy.as_ref().expect("proxied").cut();
    app.start("matcher");
    let metrics = format!("http://127.0.0.1:{}/metrics", app.ops_port("matcher").await);
    app.eventually(
        Duration::from_secs(30),
        "the matcher to hold the events it cannot handle",
        || async {
            let held = app.metric(&metrics, "beckon_messages_held_total").await?;
            (held >= 1.0).then_some(())
        },
    )
    .await;
    // The outage lasts long enough for every waiting delivery to have run out of its three
    // deliveries many times over, were the failures counted against it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let broker = Broker::connect(&app.prefix).await;
    let dlq = format!("{}.matcher.dlq", app.prefix);
    assert_eq!(
        broker.depth(&dlq).await,
        0,
        "dead-lettered during the outage"
    );
    assert_eq!(
        app.metric(&metrics, "beckon_database_up").await,
        Some(0.0),
        "the matcher reports the database away"
    );

    app.db_proxy.as_ref().expect("proxied").restore();
    app.eventually(
        Duration::from_secs(60),
        "every event to complete once the database is back",
        || async {
            let done = app
                .execute("SELECT 1 FROM triggers WHERE status = 'completed'")
                .await;
            (done == EVENTS).then_some(())
        },
    )
    .await;
    assert_eq!(broker.depth(&dlq).await, 0);
    assert_eq!(app.execute("SELECT 1 FROM invitations").await, EVENTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_broker_dead_letters_fails_its_trigger_and_is_counted() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    // The invitation stage fails on every try while the database answers: the broker, not a
    // consumer, dead-letters the message once it has used its deliveries.
    app.execute("ALTER TABLE invitations RENAME TO invitations_gone")
        .await;
    let (status, body) = app
        .send_event(
            Some(project),
            json!({"event_name": "trial_expired", "user_info": {"contact_external_id": "unlucky"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let trigger_id = body["trigger_id"].as_str().expect("a trigger id");
    let trigger = app
        .wait_trigger(trigger_id, "failed", Duration::from_secs(60))
        .await;
    let error = trigger["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        error.contains("invitation") && error.contains("delivery_limit"),
        "{trigger}"
    );
    let broker = Broker::connect(&app.prefix).await;
    assert_eq!(
        broker
            .depth(&format!("{}.invitation.dlq", app.prefix))
            .await,
        1,
        "the dead letter is kept for the operator"
    );
    let mut counted = 0.0;
    for service in ["matcher", "invitation", "webhook-delivery"] {
        let url = format!("http://127.0.0.1:{}/metrics", app.ops_port(service).await);
        counted += app
            .metric(
                &url,
                "beckon_messages_dead_lettered_total{queue=\"invitation\",reason=\"delivery_limit\"}",
            )
            .await
            .unwrap_or(0.0);
    }
    assert_eq!(counted, 1.0, "counted once, by whichever service saw it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_whose_event_was_lost_is_sent_again_and_one_stuck_past_matching_fails() {
    let mut app = TestApp::spawn_with(Options {
        env: vec![("BECKON_STALLED_INTERVAL_MS", "200".into())],
        ..Default::default()
    })
    .await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    app.stop("matcher");
    let mut ids = Vec::new();
    for user in ["lost", "stuck"] {
        let (status, body) = app
            .send_event(
                Some(project),
                json!({"event_name": "trial_expired", "user_info": {"contact_external_id": user}}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["trigger_id"].as_str().expect("an id").to_owned());
    }
    app.eventually(
        Duration::from_secs(10),
        "the outbox to be empty",
        || async { (app.execute("SELECT 1 FROM outbox").await == 0).then_some(()) },
    )
    .await;
    // Both envelopes are lost, and both triggers have waited two hours: one still queued, the
    // other as if matched, its invitation stage never done.
    let broker = Broker::connect(&app.prefix).await;
    broker
        .channel
        .queue_purge(
            format!("{}.matcher", app.prefix).as_str().into(),
            Default::default(),
        )
        .await
        .expect("purge");
    app.execute(&format!(
        "UPDATE triggers SET created_at = now() - interval '2 hours' WHERE id = '{}'",
        ids[0]
    ))
    .await;
    app.execute(&format!(
        "UPDATE triggers SET status = 'processing', created_at = now() - interval '2 hours', \
         started_at = now() - interval '2 hours' WHERE id = '{}'",
        ids[1]
    ))
    .await;
    app.start("matcher");

    let lost = app
        .wait_trigger(&ids[0], "completed", Duration::from_secs(30))
        .await;
    assert_eq!(lost["summary"]["sent"], 1, "{lost}");
    let stuck = app
        .wait_trigger(&ids[1], "failed", Duration::from_secs(30))
        .await;
    assert!(
        stuck["error"]
            .as_str()
            .unwrap_or_default()
            .contains("stalled"),
        "{stuck}"
    );
    assert_eq!(
        app.execute("SELECT 1 FROM invitations WHERE user_ref = 'lost'")
            .await,
        1
    );
}
