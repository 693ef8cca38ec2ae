//! Webhooks under faults, hostile input, another tenant and load: throttling endpoints,
//! flapping endpoints and their notices, rate limits across replicas, ordered subscriptions
//! brought back, and cursors in the wrong hands. Each test states what the README promises
//! and checks that it holds.

use beckon_e2e::receiver::Receiver;
use beckon_e2e::{Options, TestApp};
use beckon_store::testing::WithProject;
use beckon_store::webhooks::{self, NewMessage, Subscriber};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

async fn project_with_survey(app: &TestApp) -> Uuid {
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    project
}

async fn fire(app: &TestApp, project: Uuid, user: &str) {
    let (status, body) = app
        .dispatch(json!({"project_id": project, "user_ref": user, "event": "trial_expired"}))
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn get(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    let r = app
        .http
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn id(v: &Value) -> &str {
    v["id"].as_str().unwrap()
}

/// A 429 whose `Retry-After` is 0 (or an HTTP date already past, which parses to 0) is still
/// an endpoint asking for patience: the delivery waits at least as long as a failure would
/// (5 s first, by default), not one poll, so it is no tight loop against an endpoint that
/// asked Beckon to slow down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_zero_is_not_retried_in_a_tight_loop() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    // 429 with `Retry-After: 0` to every request; the default policy waits 5 s first.
    app.create_webhook(
        project,
        json!({"url": receiver.url("/throttle-first/1000000/0/z")}),
    )
    .await;
    fire(&app, project, "u1").await;
    receiver
        .wait_for("/throttle-first/1000000/0/z", 1, WAIT)
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let got = receiver.received("/throttle-first/1000000/0/z").len();
    assert!(
        got <= 2,
        "{got} requests in about 4 s to an endpoint answering 429 for one event"
    );
}

/// `webhook.failing` goes to the organization's subscriptions in every project, while the
/// message is stored under the failing subscription's project. The subscription that received
/// it, in another project, can resend it like any message listed in its deliveries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_received_in_another_project_can_be_resent_by_its_recipient() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    app.create_webhook(
        project,
        json!({"url": receiver.url("/always-500/f"), "retry_policy": {"kind": "custom", "delays_seconds": [3600]}}),
    )
    .await;
    let ops_project = app.create_project().await;
    let ops = app
        .create_webhook(
            ops_project,
            json!({"url": receiver.url("/ok/ops"), "event_types": ["webhook.failing"]}),
        )
        .await;
    fire(&app, project, "u1").await;
    let got = receiver.wait_for("/ok/ops", 1, WAIT).await;
    let message = got[0].header("webhook-id").to_owned();
    assert_eq!(got[0].json()["type"], "webhook.failing");

    // The notice is the ops subscription's delivery…
    let (status, listed) = get(
        &app,
        &app.token,
        &format!(
            "/api/v1/projects/{ops_project}/webhooks/{}/deliveries",
            id(&ops)
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        listed["data"][0]["message_id"],
        message.as_str(),
        "{listed}"
    );
    // …yet it cannot be sent to it again.
    let r = app
        .authed(
            Method::POST,
            &format!(
                "/api/v1/projects/{ops_project}/webhooks/{}/messages/{message}/resend",
                id(&ops)
            ),
        )
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(
        status, 202,
        "resending a notice its subscription received: {body}"
    );
}

/// The README: a cursor given out for another list is 400 `invalid_cursor` — another kind of
/// list, and also the same kind's of another owner: one organization's cursor in another
/// organization's list, one subscription's deliveries cursor on another subscription's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_is_refused_on_another_organizations_or_another_subscriptions_list() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    let x = app
        .create_webhook(project, json!({"url": receiver.url("/ok/x")}))
        .await;
    let y = app
        .create_webhook(project, json!({"url": receiver.url("/ok/y")}))
        .await;
    for n in 0..3 {
        fire(&app, project, &format!("u{n}")).await;
    }
    receiver.wait_for("/ok/x", 3, WAIT).await;
    receiver.wait_for("/ok/y", 3, WAIT).await;

    let deliveries = |sub: &Value| {
        format!(
            "/api/v1/projects/{project}/webhooks/{}/deliveries?limit=1",
            id(sub)
        )
    };
    let (_, page) = get(&app, &app.token, &deliveries(&x)).await;
    let x_cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (status, body) = get(
        &app,
        &app.token,
        &format!("{}&cursor={x_cursor}", deliveries(&y)),
    )
    .await;
    let mut wrong = Vec::new();
    if (status, body["code"].as_str()) != (400, Some("invalid_cursor")) {
        wrong.push(format!(
            "subscription x's cursor on subscription y's deliveries: {status} {body}"
        ));
    }

    // Organization A's project list cursor, in organization B's hands.
    app.create_project().await;
    let (_, page) = get(&app, &app.token, "/api/v1/projects?limit=1").await;
    let a_cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (_, other_token) = app.other_org().await;
    for name in ["B1", "B2"] {
        let r = app
            .http
            .post(app.url("/api/v1/projects"))
            .bearer_auth(&other_token)
            .json(&json!({"name": name}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let (status, body) = get(
        &app,
        &other_token,
        &format!("/api/v1/projects?limit=1&cursor={a_cursor}"),
    )
    .await;
    if (status, body["code"].as_str()) != (400, Some("invalid_cursor")) {
        wrong.push(format!(
            "organization A's cursor on organization B's projects: {status} {body}"
        ));
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// An ordered subscription that was disabled is brought back as the README says for one:
/// recover what it skipped first, then re-enable it. A user's event sent in between waits
/// behind the recovered older one, and both arrive in the order they occurred.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_subscription_recovered_then_re_enabled_keeps_a_users_order() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    let sub = app
        .create_webhook(
            project,
            json!({"url": receiver.url("/ok/ordered"), "ordered": true}),
        )
        .await;
    let path = format!("/api/v1/projects/{project}/webhooks/{}", id(&sub));
    let patch = |status: &'static str| {
        app.authed(Method::PATCH, &path)
            .json(&json!({"status": status}))
            .send()
    };
    assert_eq!(patch("disabled").await.unwrap().status(), 200);
    let before = time::OffsetDateTime::now_utc() - time::Duration::MINUTE;
    fire(&app, project, "u1").await; // skipped while disabled
    app.eventually(WAIT, "the skipped delivery", || async {
        (app.execute(&format!(
            "SELECT 1 FROM webhook_deliveries WHERE subscription_id = '{}' AND status = 'skipped'",
            id(&sub)
        ))
        .await
            == 1)
            .then_some(())
    })
    .await;
    // Recovered while still disabled: pending, waiting for the subscription.
    let r = app
        .authed(Method::POST, &format!("{path}/recover"))
        .json(&json!({"since": before.format(&time::format_description::well_known::Rfc3339).unwrap()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(patch("active").await.unwrap().status(), 200);
    fire(&app, project, "u1").await; // the user's next event
    let got = receiver.wait_for("/ok/ordered", 2, WAIT).await;
    let occurred: Vec<time::OffsetDateTime> = got
        .iter()
        .map(|r| {
            time::OffsetDateTime::parse(
                r.json()["occurred_at"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap()
        })
        .collect();
    let mut sorted = occurred.clone();
    sorted.sort();
    assert_eq!(occurred, sorted, "u1's events, in the order they arrived");
}

/// Rows of `table` updated so far in the test database (statistics are flushed about once a
/// second).
async fn updates(app: &TestApp, table: &str) -> i64 {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = app.store.conn().await.unwrap();
    diesel::sql_query(format!(
        "SELECT coalesce(n_tup_upd, 0)::bigint AS n FROM pg_stat_user_tables WHERE relname = '{table}'"
    ))
    .get_result::<N>(&mut conn)
    .await
    .unwrap()
    .n
}

/// Rate-limited subscriptions with a backlog: a claim takes no more of their deliveries than
/// they have send slots free, so the poller does not spin claiming deliveries only to give
/// them back. A few row writes per webhook sent, not dozens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_backlogs_do_not_spin_the_poller() {
    let app = TestApp::spawn_with(Options::with_env(vec![(
        "BECKON_WEBHOOK_MAX_SUBSCRIPTIONS",
        "20".into(),
    )]))
    .await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    let subs = 16;
    for i in 0..subs {
        app.create_webhook(
            project,
            json!({"url": receiver.url(&format!("/ok/rl{i}")), "rate_limit": 1}),
        )
        .await;
    }
    for n in 0..60 {
        fire(&app, project, &format!("u{n}")).await;
    }
    // Let the first attempts settle into the backlog.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (updated, sent) = (
        updates(&app, "webhook_deliveries").await,
        receiver.received("/ok/rl").len(),
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (updated, sent) = (
        updates(&app, "webhook_deliveries").await - updated,
        receiver.received("/ok/rl").len() - sent,
    );
    assert!(sent > 0);
    assert!(
        updated <= 10 * sent as i64,
        "{updated} delivery rows updated in 6 s to send {sent} webhooks at {subs} × 1 a second"
    );
}

/// A 429 with `Retry-After` "is the endpoint asking for patience", not failing: it is not
/// counted in the subscription's failure streak, sends no `webhook.failing`, and an endpoint
/// that throttles past `BECKON_WEBHOOK_DISABLE_AFTER_SECS` is not disabled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_endpoint_is_neither_announced_as_failing_nor_disabled() {
    let app = TestApp::spawn_with(Options::with_env(vec![
        ("BECKON_WEBHOOK_DISABLE_AFTER_SECS", "2".into()),
        ("BECKON_WEBHOOK_DISABLE_MIN_FAILURES", "2".into()),
    ]))
    .await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    let throttled = app
        .create_webhook(
            project,
            json!({"url": receiver.url("/throttle-first/1000/1/t")}),
        )
        .await;
    app.create_webhook(
        project,
        json!({"url": receiver.url("/ok/ops"), "event_types": ["webhook.failing", "webhook.disabled"]}),
    )
    .await;
    fire(&app, project, "u1").await;
    receiver.wait_for("/throttle-first/1000/1/t", 1, WAIT).await;
    // Throttled for a few seconds, past the (shortened) disabling window.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_, sub) = get(
        &app,
        &app.token,
        &format!("/api/v1/projects/{project}/webhooks/{}", id(&throttled)),
    )
    .await;
    let notices: Vec<String> = receiver
        .received("/ok/ops")
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        notices.is_empty() && sub["status"] == "active",
        "an endpoint answering 429 with Retry-After: notices {notices:?}, subscription {sub}"
    );
}

/// The rate limit holds "across every webhook process": with three replicas of the delivery
/// service, an endpoint limited to 4 requests a second never sees more than 4 in a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_across_replicas() {
    let mut app = TestApp::spawn().await;
    app.start("webhook-delivery");
    app.start("webhook-delivery");
    app.wait_ready(Duration::from_secs(30)).await.unwrap();
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    app.create_webhook(
        project,
        json!({"url": receiver.url("/ok/limited"), "rate_limit": 4}),
    )
    .await;
    let events = 40;
    for n in 0..events {
        fire(&app, project, &format!("u{n}")).await;
    }
    let got = receiver
        .wait_for("/ok/limited", events, Duration::from_secs(60))
        .await;
    let mut worst = 0;
    for (i, first) in got.iter().enumerate() {
        let within = got[i..]
            .iter()
            .take_while(|r| r.at - first.at < Duration::from_secs(1))
            .count();
        worst = worst.max(within);
    }
    assert!(worst <= 4, "{worst} requests within one second");
}

/// A flapping endpoint — one that fails now and then between successes, as a busy endpoint
/// with a small error rate does — starts a new failure streak at every failure that follows a
/// success. It is announced at most once a day all the same, not at every relapse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_endpoint_does_not_flood_the_operations_endpoint_with_notices() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    let flapping = app
        .create_webhook(
            project,
            json!({"url": receiver.url("/ok/flapping"), "retry_policy": {"kind": "custom", "delays_seconds": [1]}}),
        )
        .await;
    app.create_webhook(
        project,
        json!({"url": receiver.url("/ok/ops"), "event_types": ["webhook.failing"]}),
    )
    .await;
    for round in 0..4 {
        // The endpoint fails its next request and answers the retry.
        let path = format!("/fail-first/1/r{round}");
        app.execute(&format!(
            "UPDATE webhook_subscriptions SET url = '{}' WHERE id = '{}'",
            receiver.url(&path),
            id(&flapping)
        ))
        .await;
        fire(&app, project, &format!("u{round}")).await;
        receiver.wait_for(&path, 2, WAIT).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let notices = receiver.received("/ok/ops").len();
    assert!(
        notices <= 1,
        "{notices} webhook.failing notices in a few seconds about one endpoint that failed 4 times in 8 requests"
    );
}

/// A subscription of `seeded`'s project, active, ordered or not.
async fn active_subscription(seeded: &WithProject, ordered: bool) -> Uuid {
    seeded.subscription(ordered).await.id
}

/// A message about `user` of `seeded`'s project that occurred `ago` before now, with a
/// delivery to the ordered subscription `sub`; returns the delivery's id.
async fn ordered_event(seeded: &WithProject, sub: Uuid, user: &str, ago: time::Duration) -> Uuid {
    let conn = seeded.store.conn().await.unwrap();
    let message = NewMessage {
        id: Uuid::now_v7(),
        org_id: seeded.org_id,
        project_id: seeded.project_id,
        event_type: "response.displayed".into(),
        version: 1,
        body_encrypted: vec![1],
        occurred_at: time::OffsetDateTime::now_utc() - ago,
        user_ref: Some(user.into()),
    };
    webhooks::insert_messages(&conn, std::slice::from_ref(&message))
        .await
        .unwrap();
    let subscriber = [Subscriber {
        id: sub,
        active: true,
        ordered: true,
        format: beckon_domain::webhook_format::PayloadFormat::Beckon,
        payload_version: 1,
    }];
    let made = webhooks::insert_deliveries_of(
        &conn,
        &[(message.id, &subscriber[..])],
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    made[0]
}

/// "Each waits until the one before it has succeeded or failed for good": an ordered
/// subscription has one event of a user in flight at a time. An event that reaches the
/// delivery service late (its envelope waited in a queue or was redelivered, or a resend of an
/// older message) while a newer one is in flight waits for it, rather than going out beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_users_late_older_event_waits_for_the_one_in_flight() {
    let seeded = WithProject::new(2).await;
    let sub = active_subscription(&seeded, true).await;
    let newer = ordered_event(&seeded, sub, "u1", time::Duration::ZERO).await;
    let mut conn = seeded.store.conn().await.unwrap();
    let claimed = webhooks::claim_due(&mut conn, 16, 256, 60.0, 4.0)
        .await
        .unwrap();
    assert_eq!(claimed, [newer], "the user's only event goes out");
    // While it is in flight (leased), an event that occurred a second before it arrives.
    let older = ordered_event(&seeded, sub, "u1", time::Duration::SECOND).await;
    let claimed = webhooks::claim_due(&mut conn, 16, 256, 60.0, 4.0)
        .await
        .unwrap();
    assert!(
        claimed.is_empty(),
        "claimed {claimed:?} (the older event {older}) while {newer} of the same user is in flight"
    );
}

/// A burst beyond a subscription's share of attempts in flight waits in line for a free slot,
/// not for the next poll of the database: with one attempt at a time to an endpoint that
/// takes a second to answer, three events arrive one after another even though the poller
/// (once a minute here) never comes round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_the_share_in_flight_waits_for_a_slot_not_for_the_poller() {
    let app = TestApp::spawn_with(Options::with_env(vec![
        ("BECKON_WEBHOOK_CONCURRENCY_PER_SUBSCRIPTION", "1".into()),
        ("BECKON_WEBHOOK_POLL_INTERVAL_MS", "60000".into()),
    ]))
    .await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    app.create_webhook(project, json!({"url": receiver.url("/hang/1/burst")}))
        .await;
    // Give the poller its first round before the burst, so only a slot can send them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for user in ["u1", "u2", "u3"] {
        fire(&app, project, user).await;
    }
    receiver
        .wait_for("/hang/1/burst", 3, Duration::from_secs(15))
        .await;
}

/// A rate-limited delivery takes its send slot before its rate-limit slot: requests paced a
/// slot apart that had queued behind slow ones would otherwise all go the moment the slow
/// ones answer. With `rate_limit: 1`, two attempts in flight at once and an endpoint that
/// answers its first two requests together, every request still arrives a second apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_when_requests_wait_for_a_send_slot() {
    use actix_web::{App, HttpResponse, HttpServer, web};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;
    let app = TestApp::spawn_with(Options::with_env(vec![(
        "BECKON_WEBHOOK_CONCURRENCY_PER_SUBSCRIPTION",
        "2".into(),
    )]))
    .await;
    // The first two requests are answered together, 4.5 s after the first arrived; the rest at
    // once.
    type Seen = Arc<Mutex<(Option<Instant>, Vec<Instant>)>>;
    let seen: Seen = Arc::default();
    let data = web::Data::new(seen.clone());
    let server = HttpServer::new(move || {
        App::new().app_data(data.clone()).default_service(web::to(
            |body: web::Bytes, seen: web::Data<Seen>| async move {
                let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if json["type"] == "verification" {
                    return HttpResponse::Ok()
                        .content_type("text/plain")
                        .body(json["challenge"].as_str().unwrap_or("").to_owned());
                }
                let (first, n) = {
                    let mut s = seen.lock().unwrap();
                    let now = Instant::now();
                    let first = *s.0.get_or_insert(now);
                    s.1.push(now);
                    (first, s.1.len())
                };
                if n <= 2 {
                    tokio::time::sleep_until((first + Duration::from_millis(4500)).into()).await;
                }
                HttpResponse::Ok().body("ok")
            },
        ))
    })
    .workers(2)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());

    let project = project_with_survey(&app).await;
    app.create_webhook(
        project,
        json!({"url": format!("http://127.0.0.1:{port}/slow"), "rate_limit": 1}),
    )
    .await;
    for n in 0..4 {
        fire(&app, project, &format!("u{n}")).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().1.len() < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut at = seen.lock().unwrap().1.clone();
    assert!(at.len() >= 4, "{} requests", at.len());
    at.sort();
    let gaps: Vec<u128> = at.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
    assert!(
        gaps.iter().all(|g| *g >= 900),
        "requests to an endpoint limited to 1 a second arrived {gaps:?} ms apart"
    );
}

/// A stopping webhook service starts no new request: deliveries waiting in memory for a send
/// slot give up their place and go back to the database, so none starts late and is cut off
/// unrecorded by the end of the drain (and sent again once its lease runs out). One attempt at
/// a time, an endpoint that takes 5 s, three events: nothing starts while the service stops,
/// and after its restart each event arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_service_starts_no_new_sends_and_each_arrives_once() {
    let mut app = TestApp::spawn_with(Options::with_env(vec![(
        "BECKON_WEBHOOK_CONCURRENCY_PER_SUBSCRIPTION",
        "1".into(),
    )]))
    .await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    app.create_webhook(
        project,
        json!({"url": receiver.url("/hang/5/stop"), "timeout_ms": 30000}),
    )
    .await;
    for user in ["u1", "u2", "u3"] {
        fire(&app, project, user).await;
    }
    receiver.wait_for("/hang/5/stop", 1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopping = std::time::Instant::now();
    app.stop("webhook-delivery");
    let started_while_stopping = receiver
        .received("/hang/5/stop")
        .iter()
        .filter(|r| r.at > stopping)
        .count();
    assert_eq!(
        started_while_stopping, 0,
        "requests started while the service was stopping"
    );
    app.start("webhook-delivery");
    receiver.wait_for("/hang/5/stop", 3, WAIT).await;
    // Long enough for a second copy of one to arrive, were one sent.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut by_id = std::collections::HashMap::<String, usize>::new();
    for r in receiver.received("/hang/5/stop") {
        *by_id.entry(r.header("webhook-id").to_owned()).or_default() += 1;
    }
    assert_eq!(by_id.len(), 3, "{by_id:?}");
    assert!(
        by_id.values().all(|n| *n == 1),
        "sent more than once: {by_id:?}"
    );
}
