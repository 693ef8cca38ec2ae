//! The operator CLI against a running deployment: queue depths, and peeking at, replaying and
//! purging dead letters. A replayed envelope keeps its id, so one already handled creates
//! nothing new.

use beckon_e2e::TestApp;
use beckon_e2e::broker::Broker;
use serde_json::{Value, json};
use std::time::Duration;

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "the CLI failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_dead_letters_does_the_new_work_once_and_skips_what_was_done() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let broker = Broker::connect(&app.prefix).await;
    let mut tap = broker.tap().await;

    // One envelope already handled (a dispatch that went through)...
    let (status, _) = app
        .dispatch(json!({"project_id": project, "user_ref": "handled", "event": "trial_expired"}))
        .await;
    assert_eq!(status, 200);
    let handled = loop {
        let bytes = tap
            .next(Duration::from_secs(5))
            .await
            .expect("the dispatch's envelope");
        let env: Value = serde_json::from_slice(&bytes).unwrap();
        if env["type"] == "event.received" {
            break bytes;
        }
    };
    // ...and one never handled: its trigger is queued, its envelope was dead-lettered.
    let trigger = uuid::Uuid::now_v7();
    app.execute(&format!(
        "INSERT INTO triggers (id, org_id, project_id, trigger_type, status, user_ref, event) \
         VALUES ('{trigger}', '{}', '{project}', 'event', 'queued', 'new-work', '\"trial_expired\"')",
        app.org_id
    ))
    .await;
    let fresh = json!({
        "id": uuid::Uuid::now_v7(), "type": "event.received", "version": 1,
        "occurred_at": "2026-11-23T10:00:00Z", "org_id": app.org_id, "project_id": project,
        "correlation_id": trigger,
        "data": {"trigger_type": "event", "user_ref": "new-work", "event": "trial_expired", "reply_to": null}
    });
    broker
        .dead_letter("matcher", &handled, "handler_failed")
        .await;
    broker
        .dead_letter(
            "matcher",
            &serde_json::to_vec(&fresh).unwrap(),
            "handler_failed",
        )
        .await;
    broker
        .dead_letter("matcher", b"{\"type\": \"something.else\"}", "unknown_type")
        .await;

    let listing = ok(&app.cli(&["queues"], ""));
    let dlq_line = listing
        .lines()
        .find(|l| l.contains(".matcher.dlq"))
        .expect("the matcher DLQ is listed");
    assert!(dlq_line.split_whitespace().nth(1) == Some("3"), "{listing}");

    let peeked = ok(&app.cli(&["dlq", "peek", "matcher", "--count", "5"], ""));
    assert!(peeked.contains("reason: handler_failed"), "{peeked}");
    assert!(peeked.contains("\"new-work\""));
    assert!(
        ok(&app.cli(&["queues"], "")).contains("3"),
        "peeking removes nothing"
    );

    let replayed = ok(&app.cli(
        &["dlq", "replay", "matcher", "--type", "event.received"],
        "",
    ));
    assert!(replayed.contains("replayed 2 message(s)"), "{replayed}");

    let done = format!(
        "SELECT 1 FROM triggers WHERE id = '{trigger}' AND status = 'completed' AND created_count = 1"
    );
    app.eventually(
        Duration::from_secs(30),
        "the replayed new work to complete",
        || async { (app.execute(&done).await == 1).then_some(()) },
    )
    .await;
    // The already-handled one was skipped as a duplicate: still one invitation. (An absence
    // cannot be polled for; the short pause lets a wrongly repeated handling show.)
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.execute("SELECT 1 FROM invitations WHERE user_ref = 'handled'")
            .await,
        1
    );
    assert_eq!(
        app.execute("SELECT 1 FROM processed_envelopes WHERE consumer = 'matcher'")
            .await,
        2
    );

    // The message of another type is still there; purging asks first.
    let kept = ok(&app.cli(&["dlq", "purge", "matcher"], "n\n"));
    assert!(kept.contains("nothing deleted"), "{kept}");
    let purged = ok(&app.cli(&["dlq", "purge", "matcher", "--yes"], ""));
    assert!(purged.contains("deleted 1 message(s)"), "{purged}");
    let unknown = app.cli(&["dlq", "peek", "nope"], "");
    assert!(!unknown.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_list_and_cancel_scheduled_triggers_and_recover_failed_webhooks() {
    let app = TestApp::spawn().await;
    let receiver = beckon_e2e::receiver::Receiver::start().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let later = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (status, sent) = app
        .send_event(Some(project), json!({"event_name": "trial_expired", "user_info": {"contact_external_id": "u1"}, "trigger_at": later}))
        .await;
    assert_eq!(status, 201);
    let id = sent["trigger_id"].as_str().unwrap();
    let listed = ok(&app.cli(&["triggers", "scheduled"], ""));
    assert!(listed.contains(id), "{listed}");
    ok(&app.cli(&["triggers", "cancel", id], ""));
    let (_, trigger) = app.trigger(id).await;
    assert_eq!(trigger["status"], "cancelled");
    assert!(
        !app.cli(&["triggers", "cancel", id], "").status.success(),
        "cancelling twice is refused"
    );

    // A webhook that failed for good is sent again by `webhooks recover`.
    let since = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let sub = app
        .create_webhook(project, json!({"url": receiver.url("/fail-first/2/rec"), "retry_policy": {"kind": "custom", "delays_seconds": [1]}}))
        .await;
    let (status, _) = app
        .dispatch(json!({"project_id": project, "user_ref": "u2", "event": "trial_expired"}))
        .await;
    assert_eq!(status, 200);
    let failed = "SELECT 1 FROM webhook_deliveries WHERE status = 'failed'";
    app.eventually(
        Duration::from_secs(30),
        "the delivery to fail for good",
        || async { (app.execute(failed).await == 1).then_some(()) },
    )
    .await;
    let recovered = ok(&app.cli(
        &[
            "webhooks",
            "recover",
            "--subscription",
            sub["id"].as_str().unwrap(),
            "--since",
            &since,
        ],
        "",
    ));
    assert!(
        recovered.contains("1 failed deliveries queued again"),
        "{recovered}"
    );
    let got = receiver
        .wait_for("/fail-first/2/rec", 3, Duration::from_secs(30))
        .await;
    assert_eq!(got[2].header("webhook-id"), got[0].header("webhook-id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_stops_working_within_the_auth_cache_time() {
    let app = TestApp::spawn().await;
    let org = app.org_id.to_string();
    let out = app.cli(&["token", "create", "--org", &org, "--name", "short"], "");
    ok(&out);
    let created: Value = serde_json::from_slice(&out.stdout).expect("the token as JSON");
    let token = created["token"].as_str().unwrap().to_owned();
    let id = created["token_id"].as_str().unwrap().to_owned();
    let projects = |token: String| {
        let http = app.http.clone();
        let url = app.url("/api/v1/projects");
        async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Found valid, and so remembered by the gateway.
    assert_eq!(projects(token.clone()).await, 200);
    assert_eq!(projects(token.clone()).await, 200);

    ok(&app.cli(&["token", "revoke", "--org", &org, "--id", &id], ""));
    let revoked_at = std::time::Instant::now();
    app.eventually(
        Duration::from_secs(5),
        "the revoked token to be refused",
        || {
            let status = projects(token.clone());
            async move { (status.await == 401).then_some(()) }
        },
    )
    .await;
    // The default BECKON_AUTH_CACHE_MS is one second; the CLI run and polling add a little.
    assert!(
        revoked_at.elapsed() < Duration::from_millis(2500),
        "refused only after {:?}",
        revoked_at.elapsed()
    );
    // The organization's own token is untouched.
    assert_eq!(projects(app.token.clone()).await, 200);
}
