//! Webhooks to real HTTP receivers on 127.0.0.1: signing checked by the `standardwebhooks`
//! PyPI library, URL verification, retries, Retry-After, 410, timeouts, auto-disable, resend,
//! recover, rotation, isolation from a hanging endpoint, and a crash while retries wait.

use beckon_e2e::hooks::{
    WAIT, assert_valid_beckon_webhook, assert_wait, at, delivery_after, fire, get_json, make_due,
    project_with_survey, webhook_path,
};
use beckon_e2e::receiver::{Receiver, verify_with_standardwebhooks};
use beckon_e2e::{Options, TestApp};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_created_webhook_is_signed_versioned_and_carries_the_event() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    let sub = app
        .create_webhook(
            project,
            json!({"url": receiver.url("/ok/a"), "description": "CRM"}),
        )
        .await;
    assert_eq!(sub["status"], "active");
    assert_eq!(sub["verification"]["verified"], true);
    let secret = sub["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    // The secret is shown once: never again, and not stored in the clear.
    let read = get_json(&app, &webhook_path(&app, project, &sub, "")).await;
    assert!(read.get("secret").is_none());
    assert_eq!(app.execute(&format!("SELECT 1 FROM webhook_subscriptions WHERE position(convert_to('{secret}', 'UTF8') in secret_encrypted) > 0")).await, 0);

    let (status, sent) = app
        .send_event(Some(project), json!({"event_name": "payment_failed", "user_info": {"contact_external_id": "u1", "email": "ada@example.com"}, "event_data": {"amount": 49}}))
        .await;
    assert_eq!(status, 201);
    let got = receiver.wait_for("/ok/a", 1, WAIT).await;
    let hook = &got[0];
    verify_with_standardwebhooks(&secret, hook)
        .expect("the standardwebhooks library verifies the signature");
    assert!(
        verify_with_standardwebhooks("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", hook).is_err(),
        "a wrong secret does not verify"
    );
    let body = hook.json();
    assert_valid_beckon_webhook(&body);
    assert_eq!(hook.header("webhook-id"), body["id"].as_str().unwrap());
    assert_eq!(hook.header("content-type"), "application/json");
    assert_eq!(
        (body["type"].clone(), body["version"].clone()),
        (json!("invitation.created"), json!(1))
    );
    assert_eq!(body["project_id"], json!(project));
    assert_eq!(body["data"]["user"]["email"], "ada@example.com");
    assert_eq!(body["data"]["trigger"]["id"], sent["trigger_id"]);
    assert_eq!(
        body["data"]["trigger"]["event"],
        json!({"custom": "payment_failed"})
    );
    assert_eq!(body["data"]["trigger"]["parameters"], json!({"amount": 49}));
    assert!(
        body["data"]["invitation"]["magic_link_url"]
            .as_str()
            .unwrap()
            .starts_with(&app.base_url)
    );

    // A dispatch's webhook carries the same magic link the dispatch answered with.
    let dispatched = fire(&app, project, "u2").await;
    let got = receiver.wait_for("/ok/a", 2, WAIT).await;
    assert_eq!(
        got[1].json()["data"]["invitation"]["magic_link_url"],
        dispatched["created_invitations"][0]["magic_link_url"]
    );
    // Message bodies are stored sealed: no magic link in the clear.
    let link = dispatched["created_invitations"][0]["magic_link_url"]
        .as_str()
        .unwrap();
    let token = link.rsplit('/').next().unwrap();
    assert_eq!(app.execute(&format!("SELECT 1 FROM webhook_messages WHERE position(convert_to('{token}', 'UTF8') in body_encrypted) > 0")).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_that_fails_verification_gets_nothing_until_it_passes() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    let sub = app
        .create_webhook(project, json!({"url": receiver.url("/noverify/x")}))
        .await;
    assert_eq!(sub["status"], "pending_verification");
    assert_eq!(sub["verification"]["verified"], false);
    assert!(
        sub["verification"]["error"]
            .as_str()
            .unwrap()
            .contains("challenge")
    );
    fire(&app, project, "u1").await;
    let verify = app
        .authed(Method::POST, &webhook_path(&app, project, &sub, "/verify"))
        .send()
        .await
        .unwrap();
    let verify: Value = verify.json().await.unwrap();
    assert_eq!(
        (
            verify["status"].clone(),
            verify["verification"]["verified"].clone()
        ),
        (json!("pending_verification"), json!(false))
    );
    // Nothing was kept for it: no message, no delivery.
    assert_eq!(app.execute("SELECT 1 FROM webhook_messages").await, 0);

    let moved = app
        .authed(Method::PATCH, &webhook_path(&app, project, &sub, ""))
        .json(&json!({"url": receiver.url("/ok/x")}))
        .send()
        .await
        .unwrap();
    let moved: Value = moved.json().await.unwrap();
    assert_eq!(moved["status"], "active", "{moved}");
    fire(&app, project, "u2").await;
    let got = receiver.wait_for("/ok/x", 1, WAIT).await;
    assert_eq!(got.len(), 1, "only the event after verification");
    assert!(receiver.received("/noverify").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_is_retried_with_the_same_webhook_id_and_every_attempt_is_logged() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    let sub = app
        .create_webhook(project, json!({"url": receiver.url("/fail-first/2/r"), "retry_policy": {"kind": "custom", "delays_seconds": [1, 1, 1]}}))
        .await;
    fire(&app, project, "u1").await;
    let got = receiver.wait_for("/fail-first/2/r", 3, WAIT).await;
    let ids: HashSet<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), 1, "the same webhook-id on every retry");
    assert!(got[1].at.duration_since(got[0].at) >= Duration::from_millis(900));

    let attempts = app
        .eventually(WAIT, "three logged attempts", || async {
            let list = get_json(&app, &webhook_path(&app, project, &sub, "/attempts")).await;
            (list["data"].as_array().map_or(0, Vec::len) == 3).then_some(list)
        })
        .await;
    let statuses: Vec<i64> = attempts["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 500, 500], "newest first");
    assert_eq!(attempts["data"][1]["response_body"], "not yet");
    let message = attempts["data"][0]["message_id"].as_str().unwrap();
    let per_message = get_json(
        &app,
        &webhook_path(
            &app,
            project,
            &sub,
            &format!("/messages/{message}/attempts"),
        ),
    )
    .await;
    assert_eq!(per_message["data"].as_array().unwrap().len(), 3);
    let read = get_json(&app, &webhook_path(&app, project, &sub, "")).await;
    assert!(read["last_success_at"].is_string());
    let deliveries = get_json(
        &app,
        &webhook_path(&app, project, &sub, "/deliveries?status=succeeded"),
    )
    .await;
    assert_eq!(deliveries["data"][0]["attempts"], 3);
    assert_eq!(deliveries["data"][0]["event_type"], "invitation.created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_and_410_disables_the_subscription() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    app.create_webhook(project, json!({"url": receiver.url("/retry-after/2/w"), "retry_policy": {"kind": "custom", "delays_seconds": [1]}}))
        .await;
    let gone = app
        .create_webhook(project, json!({"url": receiver.url("/gone/w")}))
        .await;
    fire(&app, project, "u1").await;
    let got = receiver.wait_for("/retry-after/2/w", 2, WAIT).await;
    let waited = got[1].at.duration_since(got[0].at);
    assert!(
        waited >= Duration::from_millis(1900),
        "Retry-After: 2 honoured, waited {waited:?}"
    );

    let disabled = app
        .eventually(WAIT, "the 410 subscription to be disabled", || async {
            let s = get_json(&app, &webhook_path(&app, project, &gone, "")).await;
            (s["status"] == "disabled").then_some(s)
        })
        .await;
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("410")
    );
    fire(&app, project, "u2").await;
    receiver.wait_for("/retry-after/2/w", 3, WAIT).await;
    assert_eq!(
        receiver.received("/gone").len(),
        1,
        "nothing more goes to a disabled subscription"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_is_a_failure_and_a_subscription_failing_too_long_is_disabled() {
    let app = TestApp::spawn_with(Options::with_env(vec![
        ("BECKON_WEBHOOK_DISABLE_AFTER_SECS", "2".into()),
        ("BECKON_WEBHOOK_DISABLE_MIN_FAILURES", "3".into()),
    ]))
    .await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    let slow = app
        .create_webhook(project, json!({"url": receiver.url("/hang/5/t"), "timeout_ms": 1000, "retry_policy": {"kind": "custom", "delays_seconds": [1, 1, 1, 1]}}))
        .await;
    fire(&app, project, "u1").await;
    let attempts = app
        .eventually(WAIT, "a timed-out attempt", || async {
            let list = get_json(&app, &webhook_path(&app, project, &slow, "/attempts")).await;
            list["data"]
                .as_array()
                .filter(|a| !a.is_empty())
                .map(|a| a[a.len() - 1].clone())
        })
        .await;
    assert!(attempts["status_code"].is_null());
    assert!(
        attempts["error"].as_str().unwrap().contains("timed out"),
        "{attempts}"
    );
    assert!(attempts["duration_ms"].as_i64().unwrap() < 2500);

    let disabled = app
        .eventually(WAIT, "the failing subscription to be disabled", || async {
            let s = get_json(&app, &webhook_path(&app, project, &slow, "")).await;
            (s["status"] == "disabled").then_some(s)
        })
        .await;
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("failing continuously"),
        "{disabled}"
    );
    assert!(disabled["disabled_at"].is_string(), "{disabled}");
    assert!(disabled["failing_since"].is_string(), "{disabled}");
    assert!(
        disabled["failures_in_streak"].as_i64().unwrap() >= 2,
        "{disabled}"
    );
}

/// The normal life of a survey webhook: quiet for weeks, then one failure. Its last success
/// is long past, but it has not been failing for long: it stays active, and its next success
/// ends the streak the failure began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_subscription_survives_a_failure_and_a_success_ends_its_streak() {
    let app = TestApp::spawn_with(Options::with_env(vec![(
        "BECKON_WEBHOOK_DISABLE_AFTER_SECS",
        "2".into(),
    )]))
    .await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    // Fails its first attempt, then succeeds.
    let sub = app
        .create_webhook(project, json!({"url": receiver.url("/fail-first/1/q"), "retry_policy": {"kind": "custom", "delays_seconds": [1, 1]}}))
        .await;
    // Quiet for far longer than the window: its last success a month ago.
    let id = sub["id"].as_str().unwrap();
    app.execute(&format!(
        "UPDATE webhook_subscriptions SET last_success_at = now() - interval '30 days', \
         created_at = now() - interval '60 days' WHERE id = '{id}'"
    ))
    .await;
    fire(&app, project, "u1").await;
    let path = webhook_path(&app, project, &sub, "");
    let failing = app
        .eventually(WAIT, "the first failure to open a streak", || async {
            let s = get_json(&app, &path).await;
            s["failing_since"].is_string().then_some(s)
        })
        .await;
    assert_eq!(failing["status"], "active", "{failing}");
    assert_eq!(failing["failures_in_streak"], 1, "{failing}");
    receiver.wait_for("/fail-first/1/q", 2, WAIT).await;
    let healthy = app
        .eventually(WAIT, "the success to end the streak", || async {
            let s = get_json(&app, &path).await;
            s["failing_since"].is_null().then_some(s)
        })
        .await;
    assert_eq!(healthy["status"], "active", "{healthy}");
    assert_eq!(healthy["failures_in_streak"], 0, "{healthy}");
}

/// Svix's operational webhooks: a subscription that begins to fail is announced once
/// (`webhook.failing`), again a day later if it is still failing, and its disabling too
/// (`webhook.disabled`) — to the organization's other subscriptions that name those types, in
/// any of its projects, and to no one else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_subscription_and_its_disabling_are_announced_to_the_subscriptions_that_ask() {
    let app = TestApp::spawn_with(Options::with_env(vec![
        ("BECKON_WEBHOOK_DISABLE_AFTER_SECS", "4".into()),
        ("BECKON_WEBHOOK_DISABLE_MIN_FAILURES", "3".into()),
    ]))
    .await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    let failing = app
        .create_webhook(project, json!({"url": receiver.url("/always-500/f"), "description": "CRM sync", "retry_policy": {"kind": "custom", "delays_seconds": [1, 1, 1, 1, 1, 1, 1, 1]}}))
        .await;
    let failing_id = failing["id"].as_str().unwrap().to_owned();
    // The operations team listens in another project of the organization.
    let ops_project = app.create_project().await;
    let ops = app
        .create_webhook(
            ops_project,
            json!({"url": receiver.url("/ok/ops"), "event_types": ["webhook.failing", "webhook.disabled"]}),
        )
        .await;
    // "All events" means every survey event, not the operational ones.
    app.create_webhook(project, json!({"url": receiver.url("/ok/all")}))
        .await;
    // Another organization asking for the same types hears nothing of this one.
    let (_, other_token) = app.other_org().await;
    let client = reqwest::Client::new();
    let other_project: Value = client
        .post(app.url("/api/v1/projects"))
        .bearer_auth(&other_token)
        .json(&json!({"name": "Other"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = client
        .post(app.url(&format!(
            "/api/v1/projects/{}/webhooks",
            other_project["id"].as_str().unwrap()
        )))
        .bearer_auth(&other_token)
        .json(&json!({"url": receiver.url("/ok/stranger"), "event_types": ["webhook.failing", "webhook.disabled"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    fire(&app, project, "u1").await;
    let first = receiver.wait_for("/ok/ops", 1, WAIT).await;
    let notice = first[0].json();
    assert_eq!(notice["type"], "webhook.failing", "{notice}");
    assert_eq!(notice["project_id"], project.to_string(), "{notice}");
    assert_eq!(notice["data"]["subscription_id"], failing_id, "{notice}");
    assert_eq!(notice["data"]["description"], "CRM sync", "{notice}");
    assert_eq!(notice["data"]["failed_attempts"], 1, "{notice}");
    assert_eq!(
        notice["data"]["last_attempt"]["status_code"], 500,
        "{notice}"
    );
    assert_valid_beckon_webhook(&notice);
    verify_with_standardwebhooks(ops["secret"].as_str().unwrap(), &first[0]).unwrap();

    // A day on, the streak still going: the next failure announces it again (and, the
    // streak being past its window, disables the subscription).
    app.execute(&format!(
        "UPDATE webhook_subscriptions SET failing_since = failing_since - interval '25 hours', \
         failing_notified_at = failing_since - interval '25 hours' WHERE id = '{failing_id}'"
    ))
    .await;
    let disabled = app
        .eventually(WAIT, "the failing subscription to be disabled", || async {
            let s = get_json(&app, &webhook_path(&app, project, &failing, "")).await;
            (s["status"] == "disabled").then_some(s)
        })
        .await;
    let got = receiver.wait_for("/ok/ops", 3, WAIT).await;
    let mut kinds: Vec<String> = got
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_owned())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["webhook.disabled", "webhook.failing", "webhook.failing"],
        "one notice when the streak began, one a day later, one when it was disabled"
    );
    let notice = got
        .iter()
        .map(|r| r.json())
        .find(|n| n["type"] == "webhook.disabled")
        .unwrap();
    assert_valid_beckon_webhook(&notice);
    assert_eq!(notice["data"]["subscription_id"], failing_id, "{notice}");
    assert_eq!(
        notice["data"]["reason"], disabled["disabled_reason"],
        "{notice}"
    );
    assert_eq!(
        notice["data"]["disabled_at"], disabled["disabled_at"],
        "{notice}"
    );
    assert_eq!(
        notice["data"]["failing_since"], disabled["failing_since"],
        "{notice}"
    );
    assert!(
        notice["data"]["failed_attempts"].as_u64().unwrap() >= 3,
        "{notice}"
    );

    // Nothing more arrives, and nothing went where it was not asked for.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.received("/ok/ops").len(), 3);
    assert_eq!(
        receiver
            .received("/ok/all")
            .iter()
            .filter(|r| r.json()["type"].as_str().unwrap().starts_with("webhook."))
            .count(),
        0,
        "an empty list of event types does not take operational notices"
    );
    assert!(receiver.received("/ok/stranger").is_empty());
    let metrics = format!(
        "http://127.0.0.1:{}/metrics",
        app.ops_port("webhook-delivery").await
    );
    assert_eq!(
        app.metric(
            &metrics,
            "beckon_webhook_notices_total{type=\"webhook.disabled\"}"
        )
        .await,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_messages_can_be_resent_one_by_one_or_recovered_since_a_time() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    let sub = app
        .create_webhook(project, json!({"url": receiver.url("/always-500/m"), "retry_policy": {"kind": "custom", "delays_seconds": [1]}}))
        .await;
    let since = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    for user in ["u1", "u2", "u3"] {
        fire(&app, project, user).await;
    }
    let failed_sql = "SELECT 1 FROM webhook_deliveries WHERE status = 'failed'";
    app.eventually(WAIT, "three deliveries to fail for good", || async {
        (app.execute(failed_sql).await == 3).then_some(())
    })
    .await;
    // The endpoint is fixed.
    let r = app
        .authed(Method::PATCH, &webhook_path(&app, project, &sub, ""))
        .json(&json!({"url": receiver.url("/ok/m")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let failed_ids: Vec<String> = receiver
        .received("/always-500/m")
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(failed_ids.len(), 3);
    let r = app
        .authed(
            Method::POST,
            &webhook_path(
                &app,
                project,
                &sub,
                &format!("/messages/{}/resend", failed_ids[0]),
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let got = receiver.wait_for("/ok/m", 1, WAIT).await;
    assert_eq!(got[0].header("webhook-id"), failed_ids[0]);

    let r = app
        .authed(Method::POST, &webhook_path(&app, project, &sub, "/recover"))
        .json(&json!({"since": since}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let queued: Value = r.json().await.unwrap();
    assert_eq!(queued["queued"], 2);
    let got = receiver.wait_for("/ok/m", 3, WAIT).await;
    let delivered: HashSet<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(delivered, failed_ids.iter().map(String::as_str).collect());
    let r = app
        .authed(
            Method::POST,
            &webhook_path(
                &app,
                project,
                &sub,
                &format!("/messages/{}/resend", Uuid::now_v7()),
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_rotation_both_secrets_sign_for_a_day() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    let sub = app
        .create_webhook(project, json!({"url": receiver.url("/ok/rot")}))
        .await;
    let old = sub["secret"].as_str().unwrap().to_owned();
    let r = app
        .authed(
            Method::POST,
            &webhook_path(&app, project, &sub, "/rotate-secret"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rotated: Value = r.json().await.unwrap();
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(old, new);
    let until = time::OffsetDateTime::parse(
        rotated["previous_secret_expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!((until - time::OffsetDateTime::now_utc()).whole_hours() >= 23);

    fire(&app, project, "u1").await;
    let got = receiver.wait_for("/ok/rot", 1, WAIT).await;
    assert_eq!(got[0].header("webhook-signature").split(' ').count(), 2);
    verify_with_standardwebhooks(&new, &got[0]).expect("the new secret verifies");
    verify_with_standardwebhooks(&old, &got[0]).expect("the old secret still verifies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_goes_out_and_urls_to_private_addresses_are_refused() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.create_project().await;
    let sub = app
        .create_webhook(
            project,
            json!({"url": receiver.url("/ok/ping"), "event_types": ["invitation.created"]}),
        )
        .await;
    let r = app
        .authed(Method::POST, &webhook_path(&app, project, &sub, "/ping"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let got = receiver.wait_for("/ok/ping", 1, WAIT).await;
    assert_eq!(got[0].json()["type"], "webhook.ping");
    verify_with_standardwebhooks(sub["secret"].as_str().unwrap(), &got[0]).unwrap();

    for url in [
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest",
        "http://[::1]:8080/x",
        "ftp://example.com/",
        "not a url",
    ] {
        let r = app
            .authed(
                Method::POST,
                &format!("/api/v1/projects/{project}/webhooks"),
            )
            .json(&json!({"url": url}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{url}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["code"], "invalid_url");
    }
    let r = app
        .authed(
            Method::POST,
            &format!("/api/v1/projects/{project}/webhooks"),
        )
        .json(&json!({"url": receiver.url("/ok/x"), "event_types": ["nope"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let catalogue: Value = app
        .http
        .get(app.url("/api/v1/webhook-event-types"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let types: Vec<&str> = catalogue["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"invitation.created"));
    assert!(catalogue["data"][0]["schema"]["properties"]["data"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_never_delays_a_healthy_one() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    app.create_webhook(project, json!({"url": receiver.url("/hang/30/slow")}))
        .await;
    app.create_webhook(project, json!({"url": receiver.url("/ok/fast")}))
        .await;
    let sends = (0..100).map(|i| {
        app.send_event(Some(project), json!({"event_name": "trial_expired", "user_info": {"contact_external_id": format!("u{i}")}}))
    });
    for (status, body) in futures_util::future::join_all(sends).await {
        assert_eq!(status, 201, "{body}");
    }
    let fast = receiver.wait_for("/ok/fast", 100, WAIT).await;
    let first_hang = receiver
        .received("/hang")
        .first()
        .map(|r| r.at)
        .expect("the hanging endpoint was tried");
    let last_fast = fast.iter().map(|r| r.at).max().unwrap();
    assert!(
        last_fast < first_hang + Duration::from_secs(10),
        "all 100 healthy webhooks arrived {:?} after the hanging endpoint's first attempt began, within its 10 s timeout",
        last_fast.saturating_duration_since(first_hang)
    );
    let ids: HashSet<&str> = fast.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), 100);
    // Before the first hanging attempts time out (10 s), the hanging endpoint holds at most
    // its share of requests in flight (16 by default); the rest of its deliveries wait.
    let early_hangs = receiver
        .received("/hang")
        .iter()
        .filter(|r| r.at < first_hang + Duration::from_secs(9))
        .count();
    assert!(
        (1..=16).contains(&early_hangs),
        "{early_hangs} requests in flight to one endpoint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_pending_retry_survive_a_sigkill_of_the_delivery_service() {
    let mut app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    app.create_webhook(project, json!({"url": receiver.url("/fail-first/5/k"), "retry_policy": {"kind": "custom", "delays_seconds": [3, 1, 1]}}))
        .await;
    for i in 0..5 {
        fire(&app, project, &format!("u{i}")).await;
    }
    // All five first attempts failed and are recorded; their retries wait in PostgreSQL.
    receiver.wait_for("/fail-first/5/k", 5, WAIT).await;
    let waiting = "SELECT 1 FROM webhook_deliveries WHERE status = 'pending' AND attempts = 1";
    app.eventually(WAIT, "five retries to wait", || async {
        (app.execute(waiting).await == 5).then_some(())
    })
    .await;
    // The retries waiting in the database are listed with when each is due.
    let subs = get_json(&app, &format!("/api/v1/projects/{project}/webhooks")).await;
    let sub_id = subs["data"][0]["id"].as_str().unwrap();
    let pending = get_json(
        &app,
        &format!("/api/v1/projects/{project}/webhooks/{sub_id}/deliveries?status=pending"),
    )
    .await;
    assert_eq!(pending["data"].as_array().unwrap().len(), 5);
    assert!(
        pending["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["next_attempt_at"].is_string() && d["attempts"] == 1)
    );
    app.kill("webhook-delivery");
    app.start("webhook-delivery");
    let got = receiver.wait_for("/fail-first/5/k", 10, WAIT).await;
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    for r in &got {
        *by_id.entry(r.header("webhook-id")).or_default() += 1;
    }
    assert_eq!(by_id.len(), 5, "five distinct webhooks");
    assert!(
        by_id.values().all(|n| *n >= 2),
        "each failed once and was delivered after the crash: {by_id:?}"
    );
    let delivered = "SELECT 1 FROM webhook_deliveries WHERE status = 'succeeded'";
    app.eventually(WAIT, "all five recorded as delivered", || async {
        (app.execute(delivered).await == 5).then_some(())
    })
    .await;
}

/// The `invitation.created` envelope the invitation stage publishes for `user`'s event.
async fn invitation_created(
    app: &TestApp,
    project: Uuid,
    user: &str,
) -> (beckon_e2e::broker::Broker, Vec<u8>) {
    let broker = beckon_e2e::broker::Broker::connect(&app.prefix).await;
    let mut tap = broker.tap().await;
    fire(app, project, user).await;
    loop {
        let body = tap
            .next(WAIT)
            .await
            .expect("the invitation stage published");
        let env: Value = serde_json::from_slice(&body).unwrap();
        if env["type"] == "invitation.created" {
            return (broker, body);
        }
    }
}

/// Whom the webhooks received at `path` were about, once a fresh event fired for `last`
/// behind whatever was published before it has arrived there: the copies ahead of it in
/// the queue were handled by then.
async fn users_after(
    app: &TestApp,
    receiver: &Receiver,
    project: Uuid,
    path: &str,
    last: &str,
) -> Vec<Value> {
    let users = || -> Vec<Value> {
        receiver
            .received(path)
            .iter()
            .map(|hook| hook.json()["data"]["user"]["user_ref"].clone())
            .collect()
    };
    fire(app, project, last).await;
    let deadline = std::time::Instant::now() + WAIT;
    while !users().contains(&json!(last)) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Anything sent again would have gone out with it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    users()
}

/// An `invitation.created` that comes again (a redelivery, a copy the relay published twice,
/// an operator's replay) creates no delivery and sends nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_created_that_comes_again_is_sent_once() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    app.create_webhook(project, json!({"url": receiver.url("/ok/once")}))
        .await;
    let (broker, created) = invitation_created(&app, project, "u1").await;
    receiver.wait_for("/ok/once", 1, WAIT).await;
    broker.publish_raw("invitation.created.v1", &created).await;
    broker.publish_raw("invitation.created.v1", &created).await;
    let users = users_after(&app, &receiver, project, "/ok/once", "u2").await;
    assert_eq!(users, vec![json!("u1"), json!("u2")]);
    assert_eq!(app.execute("SELECT 1 FROM webhook_deliveries").await, 2);
}

/// Erasing a user deletes the webhook messages about them; a copy of their
/// `invitation.created` that comes afterwards is still known as handled: it is neither sent
/// again nor stored again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_coming_after_the_user_was_erased_is_neither_sent_nor_stored() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    app.create_webhook(project, json!({"url": receiver.url("/ok/erase")}))
        .await;
    let (broker, created) = invitation_created(&app, project, "gone").await;
    receiver.wait_for("/ok/erase", 1, WAIT).await;
    let r = app
        .authed(
            Method::DELETE,
            &format!("/api/v1/projects/{project}/users/gone"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.execute("SELECT 1 FROM webhook_messages WHERE user_ref = 'gone'")
            .await,
        0
    );

    broker.publish_raw("invitation.created.v1", &created).await;
    let users = users_after(&app, &receiver, project, "/ok/erase", "u2").await;
    assert_eq!(users, vec![json!("gone"), json!("u2")]);
    assert_eq!(
        app.execute("SELECT 1 FROM webhook_messages WHERE user_ref = 'gone'")
            .await,
        0
    );
}

/// An event that no subscription wanted leaves no message; a copy of it coming after a
/// subscription was created is not sent to that subscription, which did not exist when the
/// event happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_an_old_event_is_not_sent_to_a_subscription_created_since() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    let (broker, created) = invitation_created(&app, project, "early").await;
    // The webhook stage handles it while nobody subscribes.
    app.eventually(WAIT, "the webhook stage to handle the event", || async {
        let handled = app
            .execute("SELECT 1 FROM processed_envelopes WHERE consumer = 'webhooks'")
            .await;
        (handled == 1).then_some(())
    })
    .await;
    app.create_webhook(project, json!({"url": receiver.url("/ok/late")}))
        .await;
    broker.publish_raw("invitation.created.v1", &created).await;
    let users = users_after(&app, &receiver, project, "/ok/late", "later").await;
    assert_eq!(users, vec![json!("later")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_finishing_together_are_recorded_in_groups_each_exactly_once() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    for k in 0..10 {
        app.create_webhook(project, json!({"url": receiver.url(&format!("/ok/g{k}/"))}))
            .await;
    }
    const EVENTS: usize = 20;
    for i in 0..EVENTS {
        fire(&app, project, &format!("group-{i}")).await;
    }
    receiver.wait_for("/ok/g", EVENTS * 10, WAIT).await;
    let done = "SELECT 1 FROM webhook_deliveries WHERE status = 'succeeded' AND attempts = 1 \
                AND first_attempt_at IS NOT NULL AND last_attempt_at IS NOT NULL";
    app.eventually(WAIT, "every delivery to be recorded once", || async {
        (app.execute(done).await == EVENTS * 10).then_some(())
    })
    .await;
    assert_eq!(
        app.execute("SELECT 1 FROM webhook_attempts WHERE status_code = 200")
            .await,
        EVENTS * 10
    );
    assert_eq!(
        app.execute("SELECT 1 FROM webhook_subscriptions WHERE last_success_at IS NOT NULL")
            .await,
        10
    );
    let metrics = format!(
        "http://127.0.0.1:{}/metrics",
        app.ops_port("webhook-delivery").await
    );
    app.assert_grouped(&metrics, "beckon_webhook_record_group_size", "", "attempts")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_with_nul_bytes_and_invalid_utf8_is_recorded_and_the_policy_still_applies() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    let sub = app
        .create_webhook(project, json!({"url": receiver.url("/garbage/g"), "retry_policy": {"kind": "custom", "delays_seconds": [1]}}))
        .await;
    fire(&app, project, "u1").await;
    let attempts = app
        .eventually(WAIT, "both attempts logged", || async {
            let list = get_json(&app, &webhook_path(&app, project, &sub, "/attempts")).await;
            (list["data"].as_array().map_or(0, Vec::len) == 2).then_some(list)
        })
        .await;
    let body = attempts["data"][0]["response_body"]
        .as_str()
        .unwrap_or_default();
    assert!(body.starts_with("bad") && !body.contains('\0'), "{body:?}");
    let failed = get_json(
        &app,
        &webhook_path(&app, project, &sub, "/deliveries?status=failed"),
    )
    .await;
    assert_eq!(failed["data"][0]["attempts"], 2, "{failed}");
    assert_eq!(
        receiver.received("/garbage/g").len(),
        2,
        "sent once and retried once, as the policy says"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_at_its_subscription_limit_cannot_create_another_until_one_is_deleted() {
    let app = TestApp::spawn_with(Options::with_env(vec![(
        "BECKON_WEBHOOK_MAX_SUBSCRIPTIONS",
        "2".into(),
    )]))
    .await;
    let receiver = Receiver::start().await;
    let project = app.create_project().await;
    let path = format!("/api/v1/projects/{project}/webhooks");
    let first = app
        .create_webhook(project, json!({"url": receiver.url("/ok/1")}))
        .await;
    app.create_webhook(project, json!({"url": receiver.url("/ok/2")}))
        .await;

    let over = app
        .authed(Method::POST, &path)
        .json(&json!({"url": receiver.url("/ok/3")}))
        .send()
        .await
        .unwrap();
    assert_eq!(over.status(), 409);
    let body: Value = over.json().await.unwrap();
    assert_eq!(body["code"], "webhook_limit_reached", "{body}");
    // Refused before its URL was called.
    assert!(receiver.received("/ok/3").is_empty());
    assert_eq!(
        get_json(&app, &path).await["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Another project has places of its own.
    let other = app.create_project().await;
    app.create_webhook(other, json!({"url": receiver.url("/ok/other")}))
        .await;

    // Deleting one frees its place.
    let id = first["id"].as_str().unwrap();
    let deleted = app
        .authed(Method::DELETE, &format!("{path}/{id}"))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());
    app.create_webhook(project, json!({"url": receiver.url("/ok/3")}))
        .await;
}

/// The age of the oldest pending delivery is what the "webhooks stalled" alert watches: a
/// disabled subscription's deliveries wait on purpose and must not hold it up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_pending_gauge_leaves_out_disabled_subscriptions() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    let sub = app
        .create_webhook(project, json!({"url": receiver.url("/always-500/g"), "retry_policy": {"kind": "custom", "delays_seconds": [3600]}}))
        .await;
    fire(&app, project, "u1").await;
    receiver.wait_for("/always-500/g", 1, WAIT).await;
    // Pending for an hour; made to look older than any alert's threshold.
    app.execute(
        "UPDATE webhook_deliveries SET created_at = now() - interval '2 hours' WHERE status = 'pending'",
    )
    .await;
    let metrics = format!(
        "http://127.0.0.1:{}/metrics",
        app.ops_port("webhook-delivery").await
    );
    let gauge = "beckon_webhook_oldest_pending_seconds";
    app.eventually(WAIT, "the gauge to see the old delivery", || async {
        app.metric(&metrics, gauge)
            .await
            .filter(|age| *age > 3600.0)
    })
    .await;
    let r = app
        .authed(Method::PATCH, &webhook_path(&app, project, &sub, ""))
        .json(&json!({"status": "disabled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.eventually(
        WAIT,
        "the gauge to leave the disabled subscription out",
        || async { app.metric(&metrics, gauge).await.filter(|age| *age < 60.0) },
    )
    .await;
}

/// While a subscription is disabled its events are kept (as skipped deliveries), and after it
/// is re-enabled a recover sends each one, under its own webhook-id, oldest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_emitted_while_disabled_are_delivered_after_re_enabling_and_recovering() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    let sub = app
        .create_webhook(project, json!({"url": receiver.url("/ok/missed")}))
        .await;
    let path = webhook_path(&app, project, &sub, "");
    let patch = |status: &'static str| {
        app.authed(Method::PATCH, &path)
            .json(&json!({"status": status}))
            .send()
    };
    assert_eq!(patch("disabled").await.unwrap().status(), 200);
    let since = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    for user in ["u1", "u2", "u3"] {
        fire(&app, project, user).await;
    }
    let skipped = webhook_path(&app, project, &sub, "/deliveries?status=skipped");
    let missed = app
        .eventually(WAIT, "three skipped deliveries", || async {
            let list = get_json(&app, &skipped).await;
            list["data"].as_array().filter(|d| d.len() == 3).cloned()
        })
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        receiver.received("/ok/missed").is_empty(),
        "nothing is sent while disabled"
    );
    let missed_ids: HashSet<String> = missed
        .iter()
        .map(|d| d["message_id"].as_str().unwrap().to_owned())
        .collect();

    assert_eq!(patch("active").await.unwrap().status(), 200);
    // Re-enabling alone sends nothing: the customer chooses what to recover.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(receiver.received("/ok/missed").is_empty());
    let r = app
        .authed(Method::POST, &webhook_path(&app, project, &sub, "/recover"))
        .json(&json!({"since": since}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let queued: Value = r.json().await.unwrap();
    assert_eq!(queued["queued"], 3, "{queued}");
    let got = receiver.wait_for("/ok/missed", 3, WAIT).await;
    let delivered: HashSet<String> = got
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    assert_eq!(
        delivered, missed_ids,
        "each missed event, under its own webhook-id"
    );
}

/// The `hourly` preset (1Flow's rule) as the service schedules it: an hour after each failed
/// attempt, 72 retries, then the delivery fails for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hourly_preset_retries_every_hour_for_three_days() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    let sub = app
        .create_webhook(
            project,
            json!({"url": receiver.url("/always-500/h"), "retry_policy": {"kind": "hourly"}}),
        )
        .await;
    fire(&app, project, "u1").await;
    assert_wait(&delivery_after(&app, project, &sub, 1).await, 3600.0);
    make_due(&app, &sub).await;
    assert_wait(&delivery_after(&app, project, &sub, 2).await, 3600.0);
    // Three days on: 72 retries have failed; the next failure is the last.
    app.execute(&format!(
        "UPDATE webhook_deliveries SET attempts = 72 WHERE subscription_id = '{}'",
        sub["id"].as_str().unwrap()
    ))
    .await;
    make_due(&app, &sub).await;
    let last = delivery_after(&app, project, &sub, 73).await;
    assert_eq!(last["status"], "failed", "{last}");
    assert!(last["next_attempt_at"].is_null(), "{last}");
}

/// The `backoff24h` preset (Seismic's rule): 5 s, 25 s, 150 s, …, and nothing later than a day
/// after the first attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backoff24h_preset_backs_off_and_stops_a_day_after_the_first_attempt() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    let sub = app
        .create_webhook(
            project,
            json!({"url": receiver.url("/always-500/b"), "retry_policy": {"kind": "backoff24h"}}),
        )
        .await;
    fire(&app, project, "u1").await;
    assert_wait(&delivery_after(&app, project, &sub, 1).await, 5.0);
    // Not hurried: the service sends the second attempt when its 5 s are over.
    assert_wait(&delivery_after(&app, project, &sub, 2).await, 25.0);
    make_due(&app, &sub).await;
    assert_wait(&delivery_after(&app, project, &sub, 3).await, 150.0);
    // Nearly a day after the first attempt: the next wait (15 min) would end past the day.
    app.execute(&format!(
        "UPDATE webhook_deliveries SET first_attempt_at = now() - interval '23 hours 50 minutes' \
         WHERE subscription_id = '{}'",
        sub["id"].as_str().unwrap()
    ))
    .await;
    make_due(&app, &sub).await;
    let last = delivery_after(&app, project, &sub, 4).await;
    assert_eq!(last["status"], "failed", "{last}");
    assert_eq!(receiver.received("/always-500/b").len(), 4);
}

/// The `once_after_60s` preset (Screeb's rule): a failure is retried once, 60 s later; a 429,
/// even without `Retry-After`, waits longer each time and uses up none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_once_after_60s_preset_retries_a_failure_once_and_every_429_without_using_it() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    let sub = app
        .create_webhook(
            project,
            json!({"url": receiver.url("/too-many/3/s"), "retry_policy": {"kind": "once_after_60s"}}),
        )
        .await;
    fire(&app, project, "u1").await;
    // Three 429s without Retry-After: throttled, 60 s, then twice as long each time.
    for (n, wait) in [(1, 60.0), (2, 120.0), (3, 240.0)] {
        let delivery = delivery_after(&app, project, &sub, n).await;
        assert_eq!(delivery["status"], "pending", "{delivery}");
        assert_eq!(delivery["throttled"], n, "{delivery}");
        assert_wait(&delivery, wait);
        make_due(&app, &sub).await;
    }
    // Then a 500: the one retry, 60 s later, is still there.
    let failed_once = delivery_after(&app, project, &sub, 4).await;
    assert_eq!(failed_once["status"], "pending", "{failed_once}");
    assert_wait(&failed_once, 60.0);
    make_due(&app, &sub).await;
    let last = delivery_after(&app, project, &sub, 5).await;
    assert_eq!(last["status"], "failed", "the one retry is used up: {last}");
    assert_eq!(receiver.received("/too-many/3/s").len(), 5);
}

/// A 503 with `Retry-After` waits as asked when that is longer than the policy's wait, and
/// counts as a failed attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_with_retry_after_waits_as_asked_and_uses_an_attempt() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    let sub = app
        .create_webhook(project, json!({"url": receiver.url("/unavailable/30/u"), "retry_policy": {"kind": "custom", "delays_seconds": [1]}}))
        .await;
    fire(&app, project, "u1").await;
    assert_wait(&delivery_after(&app, project, &sub, 1).await, 30.0);
    make_due(&app, &sub).await;
    let last = delivery_after(&app, project, &sub, 2).await;
    assert_eq!(
        last["status"], "failed",
        "the policy's one retry is used up: {last}"
    );
}

/// A 429 with `Retry-After` is the endpoint asking for patience, not failing: the delivery
/// waits as asked, and the retry policy's attempts are all still there afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_waits_without_using_up_the_policys_attempts() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    // Three 429s (Retry-After: 2), then 500s; the policy allows one retry.
    let sub = app
        .create_webhook(project, json!({"url": receiver.url("/throttle-first/3/2/t"), "retry_policy": {"kind": "custom", "delays_seconds": [1]}}))
        .await;
    fire(&app, project, "u1").await;
    let throttled = delivery_after(&app, project, &sub, 1).await;
    assert_eq!(throttled["status"], "pending", "{throttled}");
    assert_wait(&throttled, 2.0);
    // Two more 429s, then the first failure and the policy's one retry.
    let last = delivery_after(&app, project, &sub, 5).await;
    assert_eq!(last["status"], "failed", "{last}");
    let got = receiver.received("/throttle-first/3/2/t");
    assert_eq!(got.len(), 5);
    for pair in got.windows(2).take(3) {
        assert!(
            pair[1].at - pair[0].at >= Duration::from_millis(1900),
            "a throttled delivery waits its Retry-After"
        );
    }
    assert_eq!(last["throttled"], 3, "{last}");
}

/// Svix's per-endpoint rate limit: a burst of events to an endpoint limited to 4 requests a
/// second arrives whole, never more than 4 in any second, the excess waiting its turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_endpoint_never_sees_more_than_its_limit_a_second() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    for bad in [json!(0), json!(1001), json!("5")] {
        let r = app
            .authed(
                Method::POST,
                &format!("/api/v1/projects/{project}/webhooks"),
            )
            .json(&json!({"url": receiver.url("/ok/bad"), "rate_limit": bad}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
    let sub = app
        .create_webhook(
            project,
            json!({"url": receiver.url("/ok/limited"), "rate_limit": 4}),
        )
        .await;
    assert_eq!(sub["rate_limit"], 4);
    let events = 24;
    for n in 0..events {
        fire(&app, project, &format!("u{n}")).await;
    }
    let got = receiver
        .wait_for("/ok/limited", events, Duration::from_secs(60))
        .await;
    assert_eq!(got.len(), events);
    for (i, first) in got.iter().enumerate() {
        let within = got[i..]
            .iter()
            .take_while(|r| r.at - first.at < Duration::from_secs(1))
            .count();
        assert!(
            within <= 4,
            "{within} requests within a second of request {i}"
        );
    }
    let span = got[events - 1].at - got[0].at;
    assert!(span >= Duration::from_secs(4), "{span:?}");
    // The excess waited; none failed.
    let succeeded = format!(
        "SELECT 1 FROM webhook_deliveries WHERE subscription_id = '{}' \
         AND status = 'succeeded' AND attempts = 1",
        sub["id"].as_str().unwrap()
    );
    app.eventually(
        WAIT,
        "every delivery to succeed at its first attempt",
        || async { (app.execute(&succeeded).await == events).then_some(()) },
    )
    .await;
    // Null lifts the limit.
    let r = app
        .authed(Method::PATCH, &webhook_path(&app, project, &sub, ""))
        .json(&json!({"rate_limit": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.json::<Value>().await.unwrap()["rate_limit"].is_null());
}

/// An ordered subscription gets the events about one user one at a time, in the order they
/// occurred, even when the first one's first attempt fails: the second waits for its retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_subscription_gets_a_users_events_in_order_even_when_one_fails_first() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.create_project().await;
    // Three surveys on one event: one dispatch makes three invitations for the user.
    for _ in 0..3 {
        app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
            .await;
    }
    let ordered = app
        .create_webhook(project, json!({"url": receiver.url("/fail-first/1/ordered"), "ordered": true, "retry_policy": {"kind": "custom", "delays_seconds": [1]}}))
        .await;
    assert_eq!(ordered["ordered"], true);
    // The same endpoint behaviour without the option, for contrast.
    app.create_webhook(project, json!({"url": receiver.url("/fail-first/1/unordered"), "retry_policy": {"kind": "custom", "delays_seconds": [1]}}))
        .await;
    fire(&app, project, "u1").await;

    let got = receiver.wait_for("/fail-first/1/ordered", 4, WAIT).await;
    let ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(
        ids[0], ids[1],
        "the first event is retried before the next goes out: {ids:?}"
    );
    let distinct: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), 3, "{ids:?}");
    let occurred: Vec<time::OffsetDateTime> = got[1..]
        .iter()
        .map(|r| at(&r.json()["occurred_at"]))
        .collect();
    let mut sorted = occurred.clone();
    sorted.sort();
    assert_eq!(occurred, sorted, "in the order the events occurred");

    let unordered = receiver.wait_for("/fail-first/1/unordered", 4, WAIT).await;
    let ids: Vec<&str> = unordered.iter().map(|r| r.header("webhook-id")).collect();
    assert_ne!(
        ids[0], ids[1],
        "without the option the others do not wait: {ids:?}"
    );
}

/// A user's groups, set through users/upsert, trimmed and without repeats, reach the webhooks
/// about the user; an upsert that names none keeps them, `[]` empties them, and malformed
/// ones are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_groups_set_through_upsert_reach_the_webhooks_about_them() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    app.create_webhook(
        project,
        json!({"url": receiver.url("/ok/groups"), "event_types": ["invitation.created"]}),
    )
    .await;
    let (status, body) = app
        .upsert_user(json!({"project_id": project, "user_ref": "u1",
                            "groups": [" plan-enterprise ", "10-100-companies", "plan-enterprise"]}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["user"]["groups"],
        json!(["plan-enterprise", "10-100-companies"])
    );
    let (status, body) = app
        .upsert_user(json!({"project_id": project, "user_ref": "u1", "name": "Ada"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["user"]["groups"].as_array().unwrap().len(), 2, "kept");
    fire(&app, project, "u1").await;
    let got = receiver.wait_for("/ok/groups", 1, WAIT).await;
    assert_eq!(
        got[0].json()["data"]["user"]["groups"],
        json!(["plan-enterprise", "10-100-companies"])
    );

    let (_, body) = app
        .upsert_user(json!({"project_id": project, "user_ref": "u1", "groups": []}))
        .await;
    assert_eq!(body["user"]["groups"], json!([]));
    let many: Vec<String> = (0..51).map(|i| format!("g{i}")).collect();
    for bad in [
        json!("plan-enterprise"),
        json!([""]),
        json!(["   "]),
        json!([7]),
        json!(["a".repeat(101)]),
        json!(["line\nbreak"]),
        json!(many),
    ] {
        let (status, body) = app
            .upsert_user(json!({"project_id": project, "user_ref": "u1", "groups": bad}))
            .await;
        assert_eq!(
            (status, &body["code"]),
            (400, &json!("invalid_groups")),
            "{body}"
        );
    }
}
