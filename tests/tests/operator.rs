//! The operator CLI against a running deployment: queue depths, and peeking at, replaying and
//! purging dead letters (a replayed envelope keeps its id, so one already handled creates
//! nothing new), and rotating the sealing key under traffic.

use beckon_e2e::broker::Broker;
use beckon_e2e::receiver::{Received, Receiver, verify_with_standardwebhooks};
use beckon_e2e::{TEST_SECRET_KEY, TestApp};
use beckon_store::sealed::SEALED_COLUMNS;
use beckon_webhooks::sealed::SealingKeys;
use beckon_webhooks::signing::SigningSecret;
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use uuid::Uuid;

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
    // The matcher keeps no record: it matched the handled one again into the same
    // `event.matched` id, which the invitation stage dropped beside the new work's.
    assert_eq!(
        app.execute("SELECT 1 FROM processed_envelopes WHERE consumer = 'invitation'")
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
    let out = app.cli(
        &[
            "--output", "json", "token", "create", "--org", &org, "--name", "short",
        ],
        "",
    );
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

/// A second deployment key (base64 of 32 bytes), for rotations.
const KEY_B: &str = "cm90YXRlZC1rZXktcm90YXRlZC1rZXktcm90YXRlZCE=";

/// Dispatches for ever new users, one after the other, until stopped; counts the answered.
struct Traffic {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<usize>,
}

impl Traffic {
    fn start(app: &TestApp, project: Uuid) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (http, url, token) = (
            app.http.clone(),
            app.url("/api/v1/lifecycle/dispatch"),
            app.token.clone(),
        );
        let stopping = stop.clone();
        let task = tokio::spawn(async move {
            let mut answered = 0;
            for i in 0.. {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                let body = json!({"project_id": project, "user_ref": format!("traffic-{i}"), "event": "trial_expired"});
                let sent = http.post(&url).bearer_auth(&token).json(&body).send().await;
                if sent.is_ok_and(|r| r.status() == 200) {
                    answered += 1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            answered
        });
        Self { stop, task }
    }

    async fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the traffic task")
    }
}

#[derive(diesel::QueryableByName)]
struct Sealed {
    #[diesel(sql_type = diesel::sql_types::Bytea)]
    value: Vec<u8>,
}

/// Every value of every sealed column.
async fn sealed_values(app: &TestApp) -> Vec<(String, Vec<u8>)> {
    use diesel_async::RunQueryDsl;
    let mut conn = app.store.conn().await.unwrap();
    let mut values = Vec::new();
    for column in SEALED_COLUMNS {
        let rows: Vec<Sealed> = diesel::sql_query(format!(
            "SELECT {c} AS value FROM {t} WHERE {c} IS NOT NULL",
            c = column.column,
            t = column.table
        ))
        .load(&mut conn)
        .await
        .unwrap();
        assert!(!rows.is_empty(), "no value in {column} to check");
        values.extend(rows.into_iter().map(|r| (column.to_string(), r.value)));
    }
    values
}

/// Whether `received` carries a valid signature by `secret` (checked here, for many).
fn signed_by(secret: &str, received: &Received) -> bool {
    let secret = SigningSecret::parse(secret).unwrap();
    let timestamp = received.header("webhook-timestamp").parse().unwrap();
    let expected = secret.sign(received.header("webhook-id"), timestamp, &received.body);
    received
        .header("webhook-signature")
        .split(' ')
        .any(|s| s == expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_sealing_key_under_traffic_keeps_every_secret_body_and_link() {
    const WAIT: Duration = Duration::from_secs(30);
    let mut app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let webhooks = format!("/api/v1/projects/{project}/webhooks");
    // The widget's secret issued twice, so both it and the one it replaced are sealed.
    app.widget_keys(project).await;
    let (publishable, widget) = app.widget_keys(project).await;

    // Under the first key: a subscription whose secret was rotated (both secrets sealed)...
    let main = app
        .create_webhook(project, json!({"url": receiver.url("/ok/main")}))
        .await;
    let first_secret = main["secret"].as_str().unwrap().to_owned();
    let rotated: Value = app
        .authed(
            Method::POST,
            &format!("{webhooks}/{}/rotate-secret", main["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let second_secret = rotated["secret"].as_str().unwrap().to_owned();
    // ...one whose delivery fails for good, its body kept to be sent again at the end...
    let late = app
        .create_webhook(project, json!({"url": receiver.url("/always-500/late"), "retry_policy": {"kind": "custom", "delays_seconds": [1]}}))
        .await;
    // ...and an invitation with its magic link.
    let (status, before) = app
        .dispatch(json!({"project_id": project, "user_ref": "before", "event": "trial_expired"}))
        .await;
    assert_eq!(status, 200, "{before}");
    let link = before["created_invitations"][0]["magic_link_url"]
        .as_str()
        .unwrap()
        .to_owned();
    receiver.wait_for("/ok/main", 1, WAIT).await;
    app.eventually(WAIT, "the late delivery to fail for good", || async {
        (app.execute("SELECT 1 FROM webhook_deliveries WHERE status = 'failed'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    let late_id = receiver.received("/always-500/late")[0]
        .header("webhook-id")
        .to_owned();

    // Every service learns the new key, which seals from then on; the old one still opens.
    // Traffic flows through the restarts and the reseal.
    let traffic = Traffic::start(&app, project);
    app.set_secret_keys(&[KEY_B, TEST_SECRET_KEY]);
    app.restart_all().await;
    let planned = ok(&app.cli(&["keys", "reseal", "--dry-run"], ""));
    let counts = |report: &str, column: &str| -> Vec<u64> {
        let line = report
            .lines()
            .find(|l| l.split_whitespace().next() == Some(column))
            .unwrap_or_else(|| panic!("no line for {column}: {report}"));
        line.split_whitespace()
            .skip(1)
            .map(|n| n.parse().unwrap())
            .collect()
    };
    for column in SEALED_COLUMNS {
        let [to_reseal, unreadable, _] = counts(&planned, &column.to_string())[..] else {
            panic!("{planned}");
        };
        assert!(to_reseal > 0 && unreadable == 0, "{planned}");
    }
    // A run that met rows the services held says so and fails; running it again finishes.
    let mut runs = 1;
    while !app
        .cli(&["keys", "reseal", "--batch-size", "2"], "")
        .status
        .success()
    {
        runs += 1;
        assert!(runs <= 5, "resealing did not finish in 5 runs");
    }
    let answered = traffic.stop().await;
    assert!(answered > 0, "no traffic went through the rotation");
    let report = ok(&app.cli(&["keys", "reseal", "--dry-run"], ""));
    for column in SEALED_COLUMNS {
        assert_eq!(counts(&report, &column.to_string()), [0, 0, 0], "{report}");
    }

    // The old key goes: every sealed value opens under the new one alone.
    app.set_secret_keys(&[KEY_B]);
    app.restart_all().await;
    let only_b = SealingKeys::from_base64_list(KEY_B).unwrap();
    for (column, value) in sealed_values(&app).await {
        assert!(
            only_b.open(&value).is_ok(),
            "a value of {column} does not open"
        );
    }

    // Webhooks are still signed with both secrets of the rotated subscription, the ones sent
    // during the rotation included.
    let (status, after) = app
        .dispatch(json!({"project_id": project, "user_ref": "after", "event": "trial_expired"}))
        .await;
    assert_eq!(status, 200, "{after}");
    let after_link = after["created_invitations"][0]["magic_link_url"].clone();
    let hook = app
        .eventually(
            WAIT,
            "the webhook of the dispatch after the rotation",
            || async {
                receiver
                    .received("/ok/main")
                    .into_iter()
                    .find(|r| r.json()["data"]["invitation"]["magic_link_url"] == after_link)
            },
        )
        .await;
    verify_with_standardwebhooks(&second_secret, &hook).expect("the current secret verifies");
    verify_with_standardwebhooks(&first_secret, &hook).expect("the previous secret verifies");
    let all = receiver.received("/ok/main");
    assert!(all.len() > 2, "only {} webhooks", all.len());
    for received in &all {
        assert!(
            signed_by(&second_secret, received) && signed_by(&first_secret, received),
            "webhook {} is not signed by both secrets",
            received.header("webhook-id")
        );
    }

    // A body sealed under the old key is sent again, and still signed.
    let r = app
        .authed(
            Method::PATCH,
            &format!("{webhooks}/{}", late["id"].as_str().unwrap()),
        )
        .json(&json!({"url": receiver.url("/ok/late")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .authed(
            Method::POST,
            &format!(
                "{webhooks}/{}/messages/{late_id}/resend",
                late["id"].as_str().unwrap()
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // (The dispatch made after the rotation may reach the new URL too, on its retry.)
    let resent = app
        .eventually(WAIT, "the resent message at the new URL", || async {
            receiver
                .received("/ok/late")
                .into_iter()
                .find(|r| r.header("webhook-id") == late_id)
        })
        .await;
    assert_eq!(
        resent.json()["data"]["invitation"]["magic_link_url"],
        link.as_str()
    );
    verify_with_standardwebhooks(late["secret"].as_str().unwrap(), &resent)
        .expect("the late subscription's secret verifies");

    // The magic link made under the old key still opens, and the widget still shows it.
    assert_eq!(app.http.get(&link).send().await.unwrap().status(), 200);
    let listed: Value = app
        .http
        .get(app.url(&format!(
            "/api/v1/widget/invitations?user_ref=before&user_hash={}",
            beckon_domain::secret::user_hash(&widget, "before")
        )))
        .header("x-publishable-key", &publishable)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["data"][0]["magic_link_url"],
        link.as_str(),
        "{listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_dropped_before_resealing_holds_webhooks_back_instead_of_sending_them_unsigned() {
    const WAIT: Duration = Duration::from_secs(30);
    let mut app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let sub = app
        .create_webhook(project, json!({"url": receiver.url("/ok/held"), "retry_policy": {"kind": "custom", "delays_seconds": [1, 1, 1, 1, 1, 1, 1, 1]}}))
        .await;
    let attempts = format!(
        "/api/v1/projects/{project}/webhooks/{}/attempts",
        sub["id"].as_str().unwrap()
    );

    // The services lose the key the signing secret is sealed under.
    app.set_secret_keys(&[KEY_B]);
    app.restart_all().await;
    let (status, body) = app
        .dispatch(json!({"project_id": project, "user_ref": "u1", "event": "trial_expired"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let failed: Value = app
        .eventually(WAIT, "an attempt that could not sign", || async {
            let list: Value = app
                .authed(Method::GET, &attempts)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            list["data"]
                .as_array()?
                .iter()
                .find(|a| {
                    a["error"]
                        .as_str()
                        .is_some_and(|e| e.contains("signing secret"))
                })
                .cloned()
        })
        .await;
    assert_eq!(failed["status_code"], Value::Null, "{failed}");
    assert!(
        receiver.received("/ok/held").is_empty(),
        "a webhook went out without its signature"
    );

    // With the key back, the retry goes out signed.
    app.set_secret_keys(&[KEY_B, TEST_SECRET_KEY]);
    app.stop("webhook-delivery");
    app.start("webhook-delivery");
    let got = receiver.wait_for("/ok/held", 1, WAIT).await;
    verify_with_standardwebhooks(sub["secret"].as_str().unwrap(), &got[0])
        .expect("the subscription's secret verifies");
}

/// Replaces the value of every `key` field in `value`.
fn replace_field(value: &mut Value, key: &str, with: &Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if k == key {
                    *v = with.clone();
                } else {
                    replace_field(v, key, with);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| replace_field(v, key, with)),
        _ => {}
    }
}

/// An announcement whose magic link was sealed under a key this deployment does not have can
/// never be sent as it is: it is dead-lettered as `unsealable` (not retried, not sent without
/// its link), and once the key is configured again a replay sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announcement_no_key_opens_is_dead_lettered_and_sent_once_the_key_is_back() {
    const WAIT: Duration = Duration::from_secs(30);
    let mut app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    app.create_webhook(project, json!({"url": receiver.url("/ok/late")}))
        .await;
    let broker = Broker::connect(&app.prefix).await;
    let mut tap = broker.tap().await;
    let (status, body) = app
        .dispatch(json!({"project_id": project, "user_ref": "u1", "event": "trial_expired"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let announced: Value = loop {
        let bytes = tap
            .next(WAIT)
            .await
            .expect("an invitation.created envelope");
        let envelope: Value = serde_json::from_slice(&bytes).unwrap();
        if envelope["type"] == "invitation.created" {
            break envelope;
        }
    };
    receiver.wait_for("/ok/late", 1, WAIT).await;

    // The same announcement, as a service holding only another key would have sealed it.
    let mut foreign = announced.clone();
    let id = Uuid::now_v7();
    foreign["id"] = json!(id);
    let link = "http://127.0.0.1:8080/surveys/sealed-elsewhere";
    let sealed = serde_json::to_value(
        SealingKeys::from_base64_list(KEY_B)
            .unwrap()
            .seal_link(link),
    )
    .unwrap();
    replace_field(
        &mut foreign,
        "magic_link_sealed",
        &sealed["magic_link_sealed"],
    );
    broker
        .publish_raw(
            "invitation.created.v1",
            &serde_json::to_vec(&foreign).unwrap(),
        )
        .await;
    let peeked = app
        .eventually(WAIT, "the announcement to be dead-lettered", || async {
            let out = app.cli(&["dlq", "peek", "webhooks"], "");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.contains("reason: unsealable").then_some(text)
        })
        .await;
    assert!(peeked.contains(&id.to_string()), "{peeked}");
    assert_eq!(
        receiver.received("/ok/late").len(),
        1,
        "nothing went out without its link"
    );

    // The key is configured again: the replay sends it, link and all.
    app.set_secret_keys(&[TEST_SECRET_KEY, KEY_B]);
    app.stop("webhook-delivery");
    app.start("webhook-delivery");
    let replayed = ok(&app.cli(&["dlq", "replay", "webhooks"], ""));
    assert!(replayed.contains("replayed 1 message(s)"), "{replayed}");
    let got = receiver.wait_for("/ok/late", 2, WAIT).await;
    assert_eq!(got[1].header("webhook-id"), id.to_string());
    assert_eq!(got[1].json()["data"]["invitation"]["magic_link_url"], link);
}
