//! Tests that disturb shared infrastructure (they restart the broker), so they run on their
//! own after the rest: `make test` runs them in a second, serial phase
//! (`cargo nextest run --run-ignored only`).

use beckon_e2e::TestApp;
use beckon_e2e::infra::{postgres, rabbitmqctl, restart_rabbitmq};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "disruptive: restarts RabbitMQ; run alone by `make test`"]
async fn every_consumer_comes_back_after_the_broker_restarts() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let (status, _) = app
        .dispatch(json!({"project_id": project, "user_ref": "before", "event": "trial_expired"}))
        .await;
    assert_eq!(status, 200);

    restart_rabbitmq();

    // Readiness comes back by itself, before any request has made a publisher reconnect: a
    // gateway kept out of rotation gets no requests, so it must not wait for one.
    for service in ["ingest-api", "matcher", "invitation", "webhook-delivery"] {
        let url = if service == "ingest-api" {
            app.ops_url("/readyz")
        } else {
            format!("http://127.0.0.1:{}/readyz", app.ops_port(service).await)
        };
        let http = app.http.clone();
        app.eventually(
            Duration::from_secs(60),
            &format!("{service} to be ready again"),
            || {
                let (http, url) = (http.clone(), url.clone());
                async move {
                    let r = http.get(&url).send().await.ok()?;
                    (r.status() == 200).then_some(())
                }
            },
        )
        .await;
    }

    // No service is restarted: each must reconnect by itself. Generous deadline, no timing claim.
    let body = app
        .eventually(Duration::from_secs(90), "a dispatch to succeed after the restart", || async {
            let (status, body) = app
                .dispatch(json!({"project_id": project, "user_ref": "after", "event": "trial_expired"}))
                .await;
            (status == 200).then_some(body)
        })
        .await;
    assert_eq!(body["matched_surveys"], 1);
    app.wait_ready(Duration::from_secs(30)).await.unwrap();
    // Dispatches that timed out while the consumers reconnected still complete; none twice.
    let late = app
        .execute("SELECT 1 FROM invitations WHERE user_ref = 'after'")
        .await;
    assert!(late >= 1);
    let per_trigger = app
        .execute("SELECT trigger_id FROM invitations GROUP BY trigger_id HAVING count(*) > 1")
        .await;
    assert_eq!(per_trigger, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "disruptive: stops RabbitMQ; run alone by `make test`"]
async fn an_event_accepted_while_the_broker_is_down_is_delivered_when_it_is_back() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    rabbitmqctl(&["stop_app"]);
    let sent = app
        .send_event(
            Some(project),
            json!({"event_name": "trial_expired", "user_info": {"contact_external_id": "during-outage"}}),
        )
        .await;
    rabbitmqctl(&["start_app"]);
    rabbitmqctl(&["await_startup"]);
    let (status, body) = sent;
    assert_eq!(status, 201, "a 201 means the event is durable: {body}");
    let id = body["trigger_id"].as_str().unwrap().to_owned();
    let done = app
        .wait_trigger(&id, "completed", Duration::from_secs(90))
        .await;
    assert_eq!(done["summary"]["sent"], 1);
    assert_eq!(
        app.execute("SELECT 1 FROM invitations WHERE user_ref = 'during-outage'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "disruptive: stops PostgreSQL; run alone by `make test`"]
async fn with_the_database_down_requests_get_503_and_everything_recovers() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    postgres("stop");
    let (status, body) = app
        .dispatch(json!({"project_id": project, "user_ref": "down", "event": "trial_expired"}))
        .await;
    let ready = app
        .http
        .get(app.ops_url("/readyz"))
        .send()
        .await
        .map(|r| r.status().as_u16());
    postgres("start");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "database_unavailable");
    assert_eq!(ready.ok(), Some(503), "not ready without its database");
    // Back without restarting anything.
    let body = app
        .eventually(Duration::from_secs(60), "a dispatch to succeed again", || async {
            let (status, body) = app
                .dispatch(json!({"project_id": project, "user_ref": "back", "event": "trial_expired"}))
                .await;
            (status == 200).then_some(body)
        })
        .await;
    assert_eq!(body["created_count"], 1);
}
