//! For retrying clients: Idempotency-Key replays, conflicts and in-flight keys; rate limits.

use beckon_e2e::{Options, TestApp};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

async fn post(
    app: &TestApp,
    path: &str,
    key: &str,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = app
        .authed(Method::POST, path)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_and_body_replays_the_first_answer_without_doing_the_work_again() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let dispatch = json!({"project_id": project, "user_ref": "u1", "event": "trial_expired"});

    let (status, headers, first) =
        post(&app, "/api/v1/lifecycle/dispatch", "key-1", &dispatch).await;
    assert_eq!(status, 200, "{first}");
    assert!(headers.get("idempotency-replay").is_none());
    let (status, headers, replay) =
        post(&app, "/api/v1/lifecycle/dispatch", "key-1", &dispatch).await;
    assert_eq!(status, 200);
    assert_eq!(headers.get("idempotency-replay").unwrap(), "true");
    assert_eq!(
        replay, first,
        "the replay is the first answer, magic links included"
    );
    assert_eq!(app.execute("SELECT 1 FROM triggers").await, 1);
    assert_eq!(app.execute("SELECT 1 FROM invitations").await, 1);

    // events/send and users/upsert too; keys are per endpoint request, so a new key runs anew.
    let event = json!({"project_id": project, "event_name": "trial_expired", "user_info": {"contact_external_id": "u2"}});
    let (s1, _, a) = post(&app, "/api/v1/events/send", "key-2", &event).await;
    let (s2, h2, b) = post(&app, "/api/v1/events/send", "key-2", &event).await;
    assert_eq!((s1, s2), (201, 201));
    assert_eq!(a["trigger_id"], b["trigger_id"]);
    assert_eq!(h2.get("idempotency-replay").unwrap(), "true");
    // A replayed 201 still says where its trigger is.
    assert_eq!(
        h2.get("location").map(|l| l.to_str().unwrap().to_owned()),
        Some(format!(
            "/api/v1/triggers/{}",
            a["trigger_id"].as_str().unwrap()
        ))
    );
    let (s3, _, c) = post(&app, "/api/v1/events/send", "key-3", &event).await;
    assert_eq!(s3, 201);
    assert_ne!(a["trigger_id"], c["trigger_id"]);

    let user = json!({"project_id": project, "user_ref": "u9", "email": "a@example.com"});
    let (s1, _, _) = post(&app, "/api/v1/users/upsert", "key-4", &user).await;
    let (s2, h2, _) = post(&app, "/api/v1/users/upsert", "key-4", &user).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(h2.get("idempotency-replay").unwrap(), "true");

    // Another organization's identical key is its own.
    let (_, other_token) = app.other_org().await;
    let r = app
        .http
        .post(app.url("/api/v1/lifecycle/dispatch"))
        .bearer_auth(&other_token)
        .header("idempotency-key", "key-1")
        .json(&dispatch)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        403,
        "not a replay of the first organization's answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_with_another_body_is_422_and_a_4xx_answer_is_replayed() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    let (status, _, first) = post(
        &app,
        "/api/v1/lifecycle/dispatch",
        "k",
        &json!({"project_id": project, "user_ref": "", "event": "trial_expired"}),
    )
    .await;
    assert_eq!(
        (status, first["code"].as_str().unwrap()),
        (400, "user_ref_empty")
    );
    let (status, headers, again) = post(
        &app,
        "/api/v1/lifecycle/dispatch",
        "k",
        &json!({"project_id": project, "user_ref": "", "event": "trial_expired"}),
    )
    .await;
    assert_eq!(
        (
            status,
            headers.get("idempotency-replay").unwrap().to_str().unwrap()
        ),
        (400, "true")
    );
    assert_eq!(again, first);
    let (status, _, e) = post(
        &app,
        "/api/v1/lifecycle/dispatch",
        "k",
        &json!({"project_id": project, "user_ref": "u1", "event": "trial_expired"}),
    )
    .await;
    assert_eq!(
        (status, e["code"].as_str().unwrap()),
        (422, "idempotency_key_reused")
    );
    let (status, _, e) = post(
        &app,
        "/api/v1/lifecycle/dispatch",
        &"x".repeat(300),
        &json!({}),
    )
    .await;
    assert_eq!(
        (status, e["code"].as_str().unwrap()),
        (400, "invalid_idempotency_key")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_dispatch_that_timed_out_gets_409_while_it_runs_and_its_200_after() {
    let mut app = TestApp::spawn_with(Options {
        dispatch_timeout_ms: 800,
        ..Options::default()
    })
    .await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    app.stop("invitation");
    let body = json!({"project_id": project, "user_ref": "slow", "event": "trial_expired"});

    let (status, _, timed_out) = post(&app, "/api/v1/lifecycle/dispatch", "retry-me", &body).await;
    assert_eq!(status, 504, "{timed_out}");
    let (status, headers, busy) = post(&app, "/api/v1/lifecycle/dispatch", "retry-me", &body).await;
    assert_eq!(
        (status, busy["code"].as_str().unwrap()),
        (409, "idempotency_key_in_flight")
    );
    assert!(headers.get("retry-after").is_some());

    app.start("invitation");
    let done = app
        .eventually(
            Duration::from_secs(30),
            "the retried dispatch to answer 200",
            || async {
                let (status, headers, body) =
                    post(&app, "/api/v1/lifecycle/dispatch", "retry-me", &body).await;
                (status == 200).then_some((headers, body))
            },
        )
        .await;
    assert_eq!(done.0.get("idempotency-replay").unwrap(), "true");
    assert_eq!(done.1["trigger_id"], timed_out["trigger_id"]);
    assert_eq!(done.1["created_count"], 1);
    assert!(done.1["created_invitations"][0]["magic_link_url"].is_string());
    assert_eq!(
        app.execute("SELECT 1 FROM invitations WHERE user_ref = 'slow'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_over_its_rate_limit_gets_429_with_retry_after() {
    let app = TestApp::spawn_with(Options {
        env: vec![
            ("BECKON_RATE_LIMIT_PER_SECOND", "0.5".into()),
            ("BECKON_RATE_LIMIT_BURST", "3".into()),
        ],
        ..Options::default()
    })
    .await;
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..5 {
        let r = app
            .authed(Method::GET, "/api/v1/projects")
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            limited = Some((r.headers().clone(), r.json::<Value>().await.unwrap()));
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let (headers, body) = limited.unwrap();
    assert_eq!(body["code"], "rate_limited");
    assert_eq!(body["statusCode"], 429);
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(headers["ratelimit-limit"], "3");
    assert_eq!(headers["ratelimit-remaining"], "0");
    assert!(headers.contains_key("ratelimit-reset"));
    // Another organization is not limited by this one's traffic.
    let (_, other_token) = app.other_org().await;
    let r = app
        .http
        .get(app.url("/api/v1/projects"))
        .bearer_auth(&other_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A batch weighs on the organization's rate limit as its events sent one by one would: one
/// request per event, taken all together or not at all. A batch past what is left is 429 with
/// `Retry-After`, records nothing, and leaves the rest for lighter requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_costs_the_organizations_rate_limit_one_request_per_event() {
    let app = TestApp::spawn_with(Options {
        env: vec![
            ("BECKON_RATE_LIMIT_PER_SECOND", "0.01".into()),
            ("BECKON_RATE_LIMIT_BURST", "20".into()),
        ],
        ..Options::default()
    })
    .await;
    // One request of the 20.
    let project = app.create_project().await;
    let batch = |n: usize| {
        json!({"events": (0..n).map(|i| json!({
            "event_name": "trial_expired", "user_info": {"contact_external_id": format!("u{i}")}
        })).collect::<Vec<_>>()})
    };
    // Five more: 14 left.
    let (status, answer) = app.send_batch(Some(project), batch(5)).await;
    assert_eq!(status, 200, "{answer}");
    // Fifteen do not fit; its first request is spent: 13 left.
    let r = app
        .authed(Method::POST, "/api/v1/events/batch")
        .header("x-team-id", project.to_string())
        .json(&batch(15))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.headers()["ratelimit-limit"], "20");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited", "{body}");
    assert_eq!(app.execute("SELECT 1 FROM triggers").await, 5);
    // Thirteen do.
    let (status, answer) = app.send_batch(Some(project), batch(13)).await;
    assert_eq!(status, 200, "{answer}");
    let r = app
        .authed(Method::GET, "/api/v1/projects")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "nothing left");
}
