//! Payload formats per subscription, against real receivers on 127.0.0.1: what each format's
//! receiver gets, decoded with a strict model written from that product's document (an unknown
//! or a missing field fails) and checked field by field against Beckon's own body for the same
//! event; the signatures, verified by the `standardwebhooks` PyPI library in every format; each
//! format's retry and timeout defaults as the delivery service schedules them; and a format
//! change that takes effect for new messages only.

use beckon_e2e::TestApp;
use beckon_e2e::hooks::{
    WAIT, assert_valid_webhook, assert_wait, delivery_after, fire, get_json, magic_link, make_due,
    post, project_with_survey, put_answer, webhook_path,
};
use beckon_e2e::receiver::{Received, Receiver, verify_with_standardwebhooks};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// Seismic's event super-structure, as its document describes it: every field required, no
/// other allowed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SeismicEvent {
    /// "Unique id of the event (GUID)".
    id: Uuid,
    /// "Version of the event".
    version: u32,
    /// "Timestamp of the event".
    occurred_at: String,
    /// "Tenant unique id (GUID)".
    tenant_id: Uuid,
    tenant_name: String,
    /// "Webhook name".
    #[serde(rename = "type")]
    kind: String,
    /// "The container of the event details".
    data: Map<String, Value>,
}

/// A Seismic body, decoded with the document's model, after it validated against the
/// committed schema of its type.
fn seismic(received: &Received) -> SeismicEvent {
    let raw = received.json();
    assert_valid_webhook(
        "seismic",
        raw["type"].as_str().unwrap_or_default(),
        raw["version"].as_u64().unwrap_or_default(),
        &raw,
    );
    serde_json::from_slice(&received.body).unwrap_or_else(|e| {
        panic!(
            "not Seismic's super-structure: {e}\n{}",
            String::from_utf8_lossy(&received.body)
        )
    })
}

fn timestamp(raw: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{raw} is not RFC 3339: {e}"))
}

/// A Seismic body says what Beckon's own body for the same event says, in its own names.
fn assert_same_event(app: &TestApp, event: &SeismicEvent, beckon: &Value) {
    assert_eq!(event.id.to_string(), beckon["id"], "{beckon}");
    assert_eq!(event.kind, beckon["type"]);
    assert_eq!(event.version, beckon["version"]);
    assert_eq!(
        timestamp(&event.occurred_at),
        timestamp(beckon["occurred_at"].as_str().unwrap())
    );
    assert_eq!(event.tenant_id, app.org_id);
    assert_eq!(event.tenant_name, "Test org");
    assert_eq!(Value::Object(event.data.clone()), beckon["data"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seismic_subscription_gets_every_event_type_in_seismics_super_structure() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    let beckon = app
        .create_webhook(
            project,
            json!({"url": receiver.url("/ok/beckon"), "event_types": ["invitation.created"]}),
        )
        .await;
    let sub = app
        .create_webhook(
            project,
            json!({"url": receiver.url("/ok/seismic"), "format": "seismic",
                   "event_types": ["invitation.created", "webhook.failing"]}),
        )
        .await;
    assert_eq!(sub["format"], "seismic");
    assert_eq!(sub["payload_version"], 1);
    let secret = sub["secret"].as_str().unwrap();

    fire(&app, project, "u1").await;
    let ours = receiver.wait_for("/ok/beckon", 1, WAIT).await;
    let theirs = receiver.wait_for("/ok/seismic", 1, WAIT).await;
    let event = seismic(&theirs[0]);
    assert_same_event(&app, &event, &ours[0].json());
    assert_eq!(event.kind, "invitation.created");
    assert_eq!(event.data["project"]["id"], project.to_string());
    assert_eq!(event.data["organization"]["name"], "Test org");
    // The format's own id is the `webhook-id`, and the signature covers the body sent.
    assert_eq!(theirs[0].header("webhook-id"), event.id.to_string());
    verify_with_standardwebhooks(secret, &theirs[0]).unwrap();
    verify_with_standardwebhooks(beckon["secret"].as_str().unwrap(), &ours[0]).unwrap();

    // A ping, whatever the subscription chose.
    let r = app
        .authed(Method::POST, &webhook_path(&app, project, &sub, "/ping"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let ping = receiver.wait_for("/ok/seismic", 2, WAIT).await;
    let ping = seismic(&ping[1]);
    assert_eq!(ping.kind, "webhook.ping");
    assert_eq!(ping.tenant_id, app.org_id);
    assert_eq!(ping.data["subscription_id"], sub["id"]);

    // An operational notice about another subscription that fails.
    app.create_webhook(
        project,
        json!({"url": receiver.url("/always-500/other"), "description": "broken CRM"}),
    )
    .await;
    fire(&app, project, "u2").await;
    let notices = app
        .eventually(WAIT, "a webhook.failing notice", || async {
            let all = receiver.received("/ok/seismic");
            let found: Vec<SeismicEvent> = all
                .iter()
                .map(seismic)
                .filter(|e| e.kind == "webhook.failing")
                .collect();
            (!found.is_empty()).then_some(found)
        })
        .await;
    assert_eq!(notices[0].tenant_name, "Test org");
    assert_eq!(notices[0].data["description"], "broken CRM");
    for received in receiver.received("/ok/seismic") {
        verify_with_standardwebhooks(secret, &received).unwrap();
    }
}

/// Seismic's rules as the service applies them by default: an answer within 3 s, and retries
/// 5 s, 25 s, … after a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seismic_subscription_defaults_to_a_3_s_timeout_and_the_24_h_backoff() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    let sub = app
        .create_webhook(
            project,
            json!({"url": receiver.url("/hang/5/seismic"), "format": "seismic"}),
        )
        .await;
    assert_eq!(sub["timeout_ms"], 3000, "{sub}");
    assert_eq!(sub["retry_policy"], json!({"kind": "backoff24h"}), "{sub}");
    fire(&app, project, "u1").await;
    // The endpoint answers after 5 s: too late.
    let first = delivery_after(&app, project, &sub, 1).await;
    assert_wait(&first, 5.0);
    let attempts = get_json(
        &app,
        &webhook_path(&app, project, &sub, "/attempts?limit=10"),
    )
    .await;
    let attempt = &attempts["data"][0];
    assert!(attempt["status_code"].is_null(), "{attempt}");
    assert!(
        attempt["error"].as_str().unwrap().contains("timed out"),
        "{attempt}"
    );
    make_due(&app, &sub).await;
    assert_wait(&delivery_after(&app, project, &sub, 2).await, 25.0);
}

/// Changing the format is versioned per message: what was created before the change keeps its
/// shape on retry, what is created after takes the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_change_takes_effect_for_new_messages_only() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    let sub = app
        .create_webhook(
            project,
            json!({"url": receiver.url("/fail-first/1/switch")}),
        )
        .await;
    fire(&app, project, "before").await;
    // The first attempt fails; its retry waits.
    delivery_after(&app, project, &sub, 1).await;
    let r = app
        .authed(Method::PATCH, &webhook_path(&app, project, &sub, ""))
        .json(&json!({"format": "seismic"}))
        .send()
        .await
        .unwrap();
    let changed: Value = r.json().await.unwrap();
    assert_eq!(changed["format"], "seismic", "{changed}");
    assert_eq!(changed["payload_version"], 1, "{changed}");
    // Not taken over: the policy it had.
    assert_eq!(changed["retry_policy"], json!({"kind": "exponential"}));

    make_due(&app, &sub).await;
    let retried = receiver.wait_for("/fail-first/1/switch", 2, WAIT).await;
    assert_eq!(
        retried[0].body, retried[1].body,
        "a retry sends the same body"
    );
    assert_eq!(retried[1].json()["type"], "invitation.created");
    assert!(
        retried[1].json()["occurred_at"].is_string(),
        "still Beckon's shape"
    );

    fire(&app, project, "after").await;
    let all = receiver.wait_for("/fail-first/1/switch", 3, WAIT).await;
    let event = seismic(&all[2]);
    assert_eq!(event.kind, "invitation.created");
    assert_eq!(event.data["user"]["user_ref"], "after");
    for received in &all {
        verify_with_standardwebhooks(sub["secret"].as_str().unwrap(), received).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formats_and_their_versions_are_validated_and_listed() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.create_project().await;
    let create = |body: Value| {
        app.authed(
            Method::POST,
            &format!("/api/v1/projects/{project}/webhooks"),
        )
        .json(&body)
        .send()
    };
    let r = create(json!({"url": receiver.url("/ok/x"), "format": "svix"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r =
        create(json!({"url": receiver.url("/ok/x"), "format": "seismic", "payload_version": 2}))
            .await
            .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "invalid_payload_version", "{body}");

    let sub = app
        .create_webhook(project, json!({"url": receiver.url("/ok/x")}))
        .await;
    assert_eq!(sub["format"], "beckon");
    assert_eq!(sub["timeout_ms"], 10_000);
    let r = app
        .authed(Method::PATCH, &webhook_path(&app, project, &sub, ""))
        .json(&json!({"payload_version": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let listed = get_json(&app, "/api/v1/webhook-event-types?format=seismic").await;
    let types = listed["data"].as_array().unwrap();
    assert_eq!(types.len(), 7, "{listed}");
    for t in types {
        assert_eq!(t["schema"]["required"][2], "occurredAt", "{t}");
    }
    let r = app
        .authed(Method::GET, "/api/v1/webhook-event-types?format=nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

/// 1Flow's alert, as its document describes it: every field required, no other allowed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OneFlowAlert {
    alert_name: String,
    alert_id: String,
    project_name: String,
    survey_id: String,
    platform: String,
    survey_info: OneFlowSurvey,
    user: OneFlowUser,
    /// "ISO timestamp when user submitted the survey".
    timestamp: String,
    trigger_event: OneFlowTrigger,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OneFlowSurvey {
    name: String,
    screens: Vec<OneFlowScreen>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OneFlowScreen {
    title: String,
    /// "The answer provided by the user": a string, whatever the question.
    answer: String,
    #[serde(rename = "type")]
    kind: OneFlowScreenType,
}

/// "Supported screen types".
#[derive(Debug, Deserialize, PartialEq)]
enum OneFlowScreenType {
    #[serde(rename = "text")]
    Text,
    #[serde(rename = "nps")]
    Nps,
    #[serde(rename = "mcq")]
    Mcq,
    #[serde(rename = "checkbox")]
    Checkbox,
    #[serde(rename = "rating-numerical")]
    RatingNumerical,
    #[serde(rename = "rating-5-star")]
    Rating5Star,
    #[serde(rename = "rating-emojis")]
    RatingEmojis,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OneFlowUser {
    user_system_id: String,
    parameters: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OneFlowTrigger {
    event_name: String,
    parameters: Map<String, Value>,
}

/// A 1Flow alert, decoded with the document's model, after it validated against the committed
/// schema.
fn oneflow(received: &Received) -> OneFlowAlert {
    assert_valid_webhook("1flow", "response.ended", 1, &received.json());
    serde_json::from_slice(&received.body).unwrap_or_else(|e| {
        panic!(
            "not a 1Flow alert: {e}\n{}",
            String::from_utf8_lossy(&received.body)
        )
    })
}

/// Answers the survey behind `link` (its one required NPS question) and submits it.
async fn submit(app: &TestApp, link: &str, score: u8) {
    assert_eq!(put_answer(app, link, "nps", json!(score)).await.0, 200);
    assert_eq!(post(app, format!("{link}/complete")).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1flow_subscription_gets_a_submitted_survey_alert_for_each_submitted_response_only() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.create_project().await;
    app.create_survey(
        project,
        json!({"name": "Exit survey", "trigger": {"events": [{"custom": "plan_cancelled"}]},
               "questions": [
                   {"id": "nps", "type": "nps", "title": "How likely are you to recommend us?", "required": true},
                   {"id": "used", "type": "checkbox", "title": "What did you use?", "options": ["Reports", "API", "Widget"]},
                   {"id": "rate", "type": "rating", "title": "Rate the onboarding"},
                   {"id": "why", "type": "text", "title": "What's the reason for this score?"}]}),
    )
    .await;
    let ours = app
        .create_webhook(
            project,
            json!({"url": receiver.url("/ok/beckon"), "event_types": ["invitation.created", "response.ended"]}),
        )
        .await;
    let sub = app
        .create_webhook(
            project,
            json!({"url": receiver.url("/ok/1flow"), "format": "1flow"}),
        )
        .await;
    assert_eq!(sub["format"], "1flow");
    assert_eq!(sub["retry_policy"], json!({"kind": "hourly"}), "{sub}");
    assert_eq!(sub["timeout_ms"], 10_000);

    let (status, body) = app
        .send_event(
            None,
            json!({"event_name": "plan_cancelled", "project_id": project,
                   "user_info": {"contact_external_id": "sdk_system_id_1680151080658",
                                 "email": "john@example.com", "name": "John Wick",
                                 "custom_fields": {"firstName": "John", "lastName": "Wick"}},
                   "event_data": {"content_id": "1234abcdef56", "session_id": "4abcdef56"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let invited = receiver.wait_for("/ok/beckon", 1, WAIT).await;
    let link = magic_link(&invited[0]);
    let r = app
        .http
        .post(format!("{link}/display"))
        .json(&json!({"channel": "widget", "locale": "en-GB"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    for (question, value) in [
        ("used", json!(["API", "Reports"])),
        ("rate", json!(4)),
        ("why", json!("best user experience")),
    ] {
        assert_eq!(put_answer(&app, &link, question, value).await.0, 200);
    }
    submit(&app, &link, 10).await;

    let ended = receiver.wait_for("/ok/beckon", 2, WAIT).await[1].json();
    let got = receiver.wait_for("/ok/1flow", 1, WAIT).await;
    let alert = oneflow(&got[0]);
    assert_eq!(alert.alert_name, "submitted_survey");
    assert_eq!(alert.alert_id, ended["id"].as_str().unwrap());
    assert_eq!(got[0].header("webhook-id"), alert.alert_id);
    assert_eq!(alert.project_name, "Web app");
    assert_eq!(
        alert.survey_id,
        ended["data"]["survey"]["id"].as_str().unwrap()
    );
    assert_eq!(alert.platform, "widget");
    assert_eq!(alert.survey_info.name, "Exit survey");
    let screens: Vec<(&str, &str, &OneFlowScreenType)> = alert
        .survey_info
        .screens
        .iter()
        .map(|s| (s.title.as_str(), s.answer.as_str(), &s.kind))
        .collect();
    assert_eq!(
        screens,
        [
            (
                "What did you use?",
                "Reports, API",
                &OneFlowScreenType::Checkbox
            ),
            (
                "Rate the onboarding",
                "4",
                &OneFlowScreenType::RatingNumerical
            ),
            (
                "What's the reason for this score?",
                "best user experience",
                &OneFlowScreenType::Text
            ),
            (
                "How likely are you to recommend us?",
                "10",
                &OneFlowScreenType::Nps
            ),
        ]
    );
    assert_eq!(alert.user.user_system_id, "sdk_system_id_1680151080658");
    assert_eq!(alert.user.parameters["firstName"], "John");
    assert_eq!(alert.user.parameters["lastName"], "Wick");
    assert_eq!(alert.user.parameters["email"], "john@example.com");
    // When it was submitted, to the millisecond.
    let end = timestamp(ended["data"]["response"]["ended_at"].as_str().unwrap());
    let end = end
        .replace_nanosecond(u32::from(end.millisecond()) * 1_000_000)
        .unwrap();
    assert_eq!(timestamp(&alert.timestamp), end);
    assert!(
        alert.timestamp.ends_with('Z') && alert.timestamp.len() == 24,
        "{}",
        alert.timestamp
    );
    assert_eq!(alert.trigger_event.event_name, "plan_cancelled");
    assert_eq!(
        Value::Object(alert.trigger_event.parameters),
        json!({"content_id": "1234abcdef56", "session_id": "4abcdef56"})
    );
    verify_with_standardwebhooks(sub["secret"].as_str().unwrap(), &got[0]).unwrap();
    verify_with_standardwebhooks(ours["secret"].as_str().unwrap(), &ended_received(&receiver))
        .unwrap();

    // A response closed unsubmitted is no alert; the invitation was none either.
    let (status, _) = app
        .send_event(
            None,
            json!({"event_name": "plan_cancelled", "project_id": project,
                   "user_info": {"contact_external_id": "second"}}),
        )
        .await;
    assert_eq!(status, 201);
    let invited = receiver.wait_for("/ok/beckon", 3, WAIT).await;
    let link = magic_link(&invited[2]);
    let r = app.http.post(format!("{link}/close")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let closed = receiver.wait_for("/ok/beckon", 4, WAIT).await[3].json();
    assert_eq!(
        closed["data"]["response"]["completion"],
        "partially_completed"
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(receiver.received("/ok/1flow").len(), 1);
    let deliveries = get_json(&app, &webhook_path(&app, project, &sub, "/deliveries")).await;
    assert_eq!(
        deliveries["data"].as_array().unwrap().len(),
        1,
        "{deliveries}"
    );

    // 1Flow has no test event, and takes no other event type.
    let r = app
        .authed(Method::POST, &webhook_path(&app, project, &sub, "/ping"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = app
        .authed(Method::PATCH, &webhook_path(&app, project, &sub, ""))
        .json(&json!({"event_types": ["invitation.created"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "event_type_not_in_format", "{body}");
}

fn ended_received(receiver: &Receiver) -> Received {
    receiver
        .received("/ok/beckon")
        .into_iter()
        .find(|r| r.json()["type"] == "response.ended")
        .unwrap()
}

/// 1Flow's rules as the service applies them by default: only a 200 is success (a 201 is
/// not), retried every hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1flow_alert_succeeds_only_on_200_and_is_retried_hourly() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    let sub = app
        .create_webhook(
            project,
            json!({"url": receiver.url("/status/201/1flow"), "format": "1flow"}),
        )
        .await;
    let body = fire(&app, project, "u1").await;
    let link = body["created_invitations"][0]["magic_link_url"]
        .as_str()
        .unwrap()
        .to_owned();
    submit(&app, &link, 9).await;
    let delivery = delivery_after(&app, project, &sub, 1).await;
    assert_eq!(delivery["status"], "pending", "{delivery}");
    assert_wait(&delivery, 3600.0);
    let attempts = get_json(&app, &webhook_path(&app, project, &sub, "/attempts")).await;
    assert_eq!(attempts["data"][0]["status_code"], 201, "{attempts}");
    make_due(&app, &sub).await;
    assert_wait(&delivery_after(&app, project, &sub, 2).await, 3600.0);
}

/// A message a 1Flow subscription was never sent, resent to it, is no alert: its delivery fails
/// at once, saying why, and nothing reaches the endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_resent_to_a_1flow_subscription_that_is_no_alert_fails_saying_why() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    app.create_webhook(
        project,
        json!({"url": receiver.url("/ok/beckon"), "event_types": ["invitation.created"]}),
    )
    .await;
    let sub = app
        .create_webhook(
            project,
            json!({"url": receiver.url("/ok/1flow"), "format": "1flow"}),
        )
        .await;
    fire(&app, project, "u1").await;
    let invited = receiver.wait_for("/ok/beckon", 1, WAIT).await;
    let message = invited[0].header("webhook-id").to_owned();
    let r = app
        .authed(
            Method::POST,
            &webhook_path(&app, project, &sub, &format!("/messages/{message}/resend")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let delivery = delivery_after(&app, project, &sub, 1).await;
    assert_eq!(delivery["status"], "failed", "{delivery}");
    let attempts = get_json(&app, &webhook_path(&app, project, &sub, "/attempts")).await;
    let error = attempts["data"][0]["error"].as_str().unwrap();
    assert!(error.contains("1flow"), "{error}");
    assert!(receiver.received("/ok/1flow").is_empty());
}

/// Two changes at once — one of the format, one of the event types, each valid alone — never
/// leave a subscription whose event types its format does not deliver: the second is checked
/// against what the first made, under the row's lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_of_format_and_event_types_stay_consistent() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.create_project().await;
    let mut broken = None;
    for i in 0..15 {
        let sub = app
            .create_webhook(project, json!({"url": receiver.url(&format!("/ok/p{i}"))}))
            .await;
        let path = webhook_path(&app, project, &sub, "");
        let a = app
            .authed(Method::PATCH, &path)
            .json(&json!({"format": "1flow"}))
            .send();
        let b = app
            .authed(Method::PATCH, &path)
            .json(&json!({"event_types": ["invitation.created"]}))
            .send();
        let (a, b) = tokio::join!(a, b);
        let (a, b) = (a.unwrap().status().as_u16(), b.unwrap().status().as_u16());
        let now: Value = app
            .authed(Method::GET, &path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if now["format"] == "1flow" && now["event_types"] == json!(["invitation.created"]) {
            let r = app
                .authed(Method::PATCH, &path)
                .json(&json!({"description": "renamed"}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            broken = Some(format!(
                "round {i}: PATCHes answered {a} and {b}; now {now}; a later PATCH of its description answers {status} {body}"
            ));
            break;
        }
        // Leave room under the project's subscription limit.
        app.authed(Method::DELETE, &path).send().await.unwrap();
    }
    assert!(broken.is_none(), "{}", broken.unwrap_or_default());
}

/// A field the document shows with a value or `null`: it must be there, either way.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

/// Screeb's webhook v2.0.0, as its document describes it: every field it lists or shows
/// required (the ones it shows as `null` may be), no other allowed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScreebEvent {
    /// "Unique id for this event (same id in retry request)".
    event_id: Uuid,
    event_type: ScreebEventType,
    /// "Semver version of the webhook payload".
    version: String,
    time: String,
    /// "Timestamp of event in millisecond".
    time_ms: i64,
    payload: ScreebPayload,
}

/// "enum: response.displayed, response.answered or response.ended".
#[derive(Debug, Deserialize, PartialEq, Clone, Copy)]
enum ScreebEventType {
    #[serde(rename = "response.displayed")]
    Displayed,
    #[serde(rename = "response.answered")]
    Answered,
    #[serde(rename = "response.ended")]
    Ended,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScreebPayload {
    organization: ScreebOrganization,
    channel: ScreebChannel,
    survey: ScreebSurvey,
    user: ScreebUser,
    response: ScreebResponse,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScreebOrganization {
    id: Uuid,
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScreebChannel {
    id: Uuid,
    /// "Channel type (widget, android, ios, hosted-page...)".
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScreebSurvey {
    id: Uuid,
    name: String,
    scenario_id: String,
    scenario_version: i64,
    scenario_time: String,
    scenario_time_ms: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScreebUser {
    anonymous_id: Uuid,
    user_id: String,
    #[serde(deserialize_with = "present")]
    name: Option<String>,
    #[serde(deserialize_with = "present")]
    email: Option<String>,
    group_names: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScreebResponse {
    id: Uuid,
    #[serde(deserialize_with = "present")]
    locale: Option<String>,
    time: String,
    time_ms: i64,
    #[serde(deserialize_with = "present")]
    time_to_complete_second: Option<i64>,
    completion: String,
    hidden_fields: Map<String, Value>,
    #[serde(deserialize_with = "present")]
    question: Option<ScreebQuestion>,
    #[serde(deserialize_with = "present")]
    answer: Option<ScreebAnswer>,
    tags: Vec<String>,
    items: Vec<ScreebItem>,
}

#[derive(Debug, Deserialize, PartialEq, Clone)]
#[serde(deny_unknown_fields)]
struct ScreebQuestion {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    title: String,
}

#[derive(Debug, Deserialize, PartialEq, Clone)]
#[serde(deny_unknown_fields)]
struct ScreebAnswer {
    fields: Vec<ScreebField>,
    replied_at: String,
    replied_at_ms: i64,
    tags: Vec<String>,
}

/// One field: its value, and again in the one of `text`, `number`, `boolean`, `time` its
/// `type` names.
#[derive(Debug, Deserialize, PartialEq, Clone)]
#[serde(deny_unknown_fields)]
struct ScreebField {
    id: Uuid,
    #[serde(rename = "type")]
    kind: String,
    value: Value,
    #[serde(deserialize_with = "present")]
    text: Option<String>,
    #[serde(deserialize_with = "present")]
    number: Option<serde_json::Number>,
    #[serde(deserialize_with = "present")]
    boolean: Option<bool>,
    #[serde(deserialize_with = "present")]
    time: Option<String>,
}

#[derive(Debug, Deserialize, PartialEq, Clone)]
#[serde(deny_unknown_fields)]
struct ScreebItem {
    question: ScreebQuestion,
    answer: ScreebAnswer,
}

/// A Screeb body, decoded with the document's model, after it validated against the committed
/// schema of its type.
fn screeb(received: &Received) -> ScreebEvent {
    let raw = received.json();
    assert_valid_webhook(
        "screeb-v2",
        raw["event_type"].as_str().unwrap_or_default(),
        1,
        &raw,
    );
    serde_json::from_slice(&received.body).unwrap_or_else(|e| {
        panic!(
            "not a Screeb webhook: {e}\n{}",
            String::from_utf8_lossy(&received.body)
        )
    })
}

/// `raw` (RFC 3339) and `ms` are the same instant, to the millisecond; and `raw` is `expected`.
fn assert_twins(raw: &str, ms: i64, expected: &Value) {
    let at = timestamp(raw);
    assert_eq!(
        at,
        timestamp(expected.as_str().unwrap()),
        "{raw} vs {expected}"
    );
    assert_eq!(
        i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap(),
        ms,
        "{raw}"
    );
}

/// Checks a Screeb answer against Beckon's answer for the same question.
fn assert_same_answer(item: &ScreebItem, beckon: &Value) {
    assert_eq!(item.question.id, beckon["question_id"]);
    assert_eq!(item.question.title, beckon["title"]);
    assert_twins(
        &item.answer.replied_at,
        item.answer.replied_at_ms,
        &beckon["answered_at"],
    );
    assert_eq!(json!(item.answer.tags), beckon["tags"]);
    let values: Vec<Value> = match &beckon["answer"] {
        Value::Array(values) => values.clone(),
        one => vec![one.clone()],
    };
    assert_eq!(item.answer.fields.len(), values.len(), "{beckon}");
    for (field, value) in item.answer.fields.iter().zip(values) {
        assert_eq!(field.value, value, "{field:?}");
        match field.kind.as_str() {
            "number" => {
                assert_eq!(field.number.as_ref().map(|n| json!(n)), Some(value));
                assert_eq!(
                    (&field.text, field.boolean, &field.time),
                    (&None, None, &None)
                );
            }
            "string" => {
                assert_eq!(field.text.as_deref(), value.as_str());
                assert_eq!(
                    (&field.number, field.boolean, &field.time),
                    (&None, None, &None)
                );
            }
            other => panic!("a {other} field for {value}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screeb_subscription_gets_each_response_stage_in_screebs_v2_payload() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.create_project().await;
    app.create_survey(
        project,
        json!({"name": "Measure NPS", "trigger": {"events": [{"custom": "plan_cancelled"}]},
               "questions": [
                   {"id": "nps", "type": "nps", "title": "How likely are you to recommend us?", "required": true, "tags": ["nps"]},
                   {"id": "used", "type": "checkbox", "title": "What did you use?", "options": ["Reports", "API", "Widget"], "tags": ["product"]},
                   {"id": "why", "type": "text", "title": "How can we improve your experience?", "tags": ["feedback", "nps"]}]}),
    )
    .await;
    let ours = app
        .create_webhook(
            project,
            json!({"url": receiver.url("/ok/beckon"),
                   "event_types": ["invitation.created", "response.displayed", "response.answered", "response.ended"]}),
        )
        .await;
    let sub = app
        .create_webhook(
            project,
            json!({"url": receiver.url("/ok/screeb"), "format": "screeb-v2"}),
        )
        .await;
    assert_eq!(sub["format"], "screeb-v2", "{sub}");
    assert_eq!(sub["payload_version"], 1);
    assert_eq!(
        sub["event_types"],
        json!([]),
        "all that the format delivers: {sub}"
    );
    let (status, body) = app
        .upsert_user(json!({"project_id": project, "user_ref": "samuel",
                            "email": "samuel@example.com", "name": "Samuel Berthe",
                            "groups": ["Screeb", "plan-enterprise"],
                            "attributes": {"firstname": "Samuel", "locale": "de-DE"}}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .send_event(
            None,
            json!({"event_name": "plan_cancelled", "project_id": project,
                   "user_info": {"contact_external_id": "samuel"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let invited = receiver.wait_for("/ok/beckon", 1, WAIT).await;
    let link = magic_link(&invited[0]);
    let r = app
        .http
        .post(format!("{link}/display"))
        .header("user-agent", "Mozilla/5.0 (Macintosh) Safari/605.1.15")
        .json(&json!({"locale": "en-US"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    for (question, value) in [
        ("used", json!(["API", "Reports"])),
        ("why", json!("The new dashboard is buggy.")),
        ("nps", json!(9)),
    ] {
        assert_eq!(put_answer(&app, &link, question, value).await.0, 200);
    }
    assert_eq!(post(&app, format!("{link}/complete")).await.0, 200);

    // Displayed, three answers, ended: each beside Beckon's own body for the same event.
    let beckon = receiver.wait_for("/ok/beckon", 6, WAIT).await;
    let got = receiver.wait_for("/ok/screeb", 5, WAIT).await;
    let mut channels = Vec::new();
    let mut anonymous = Vec::new();
    let mut stages = Vec::new();
    for received in &got {
        verify_with_standardwebhooks(sub["secret"].as_str().unwrap(), received).unwrap();
        let event = screeb(received);
        assert_eq!(received.header("webhook-id"), event.event_id.to_string());
        let ours = beckon
            .iter()
            .map(Received::json)
            .find(|b| b["id"] == event.event_id.to_string())
            .unwrap_or_else(|| panic!("no Beckon body with id {}", event.event_id));
        let data = &ours["data"];
        let response = &data["response"];
        assert_eq!(received.json()["event_type"], ours["type"]);
        assert_eq!(event.version, "2.0.0");
        assert_twins(&event.time, event.time_ms, &ours["occurred_at"]);
        let p = &event.payload;
        assert_eq!(
            (p.organization.id, p.organization.name.as_str()),
            (app.org_id, "Test org")
        );
        assert_eq!(p.channel.kind, "widget");
        channels.push(p.channel.id);
        assert_eq!(
            p.survey.id.to_string(),
            data["survey"]["id"].as_str().unwrap()
        );
        assert_eq!(p.survey.name, "Measure NPS");
        assert_eq!(p.survey.scenario_version, data["survey"]["version"]);
        assert!(!p.survey.scenario_id.is_empty());
        assert_twins(
            &p.survey.scenario_time,
            p.survey.scenario_time_ms,
            &data["survey"]["version_created_at"],
        );
        anonymous.push(p.user.anonymous_id);
        assert_eq!(p.user.user_id, "samuel");
        assert_eq!(p.user.name.as_deref(), Some("Samuel Berthe"));
        assert_eq!(p.user.email.as_deref(), Some("samuel@example.com"));
        assert_eq!(p.user.group_names, ["Screeb", "plan-enterprise"]);
        let r = &p.response;
        assert_eq!(r.id.to_string(), response["id"].as_str().unwrap());
        assert_eq!(r.locale.as_deref(), Some("en-US"));
        assert_twins(&r.time, r.time_ms, &response["started_at"]);
        assert_eq!(
            json!(r.time_to_complete_second),
            response["time_to_complete_seconds"]
        );
        // The attributes, with the browser's locale over the attribute of that name.
        assert_eq!(
            Value::Object(r.hidden_fields.clone()),
            json!({"firstname": "Samuel", "locale": "en-US",
                   "user_agent": "Mozilla/5.0 (Macintosh) Safari/605.1.15"})
        );
        let answers = response["answers"].as_array().unwrap();
        assert_eq!(r.items.len(), answers.len());
        for (item, answer) in r.items.iter().zip(answers) {
            assert_same_answer(item, answer);
        }
        let mut tags: Vec<&str> = Vec::new();
        for tag in answers.iter().flat_map(|a| a["tags"].as_array().unwrap()) {
            if !tags.contains(&tag.as_str().unwrap()) {
                tags.push(tag.as_str().unwrap());
            }
        }
        assert_eq!(r.tags, tags);
        let current = r
            .question
            .clone()
            .zip(r.answer.clone())
            .map(|(question, answer)| ScreebItem { question, answer });
        match event.event_type {
            ScreebEventType::Displayed => {
                assert_eq!(r.completion, "not_started");
                assert!(r.items.is_empty() && current.is_none(), "{r:?}");
            }
            ScreebEventType::Answered => {
                assert_eq!(r.completion, "partially_completed");
                assert_same_answer(current.as_ref().unwrap(), &data["question"]);
            }
            ScreebEventType::Ended => {
                assert_eq!(r.completion, "fully_completed");
                assert_eq!(current.as_ref(), r.items.last());
                assert_eq!(r.items.len(), 3);
            }
        }
        stages.push(event.event_type);
    }
    stages.sort_by_key(|s| *s as u8);
    assert_eq!(
        stages,
        [
            ScreebEventType::Displayed,
            ScreebEventType::Answered,
            ScreebEventType::Answered,
            ScreebEventType::Answered,
            ScreebEventType::Ended
        ]
    );
    // Ids derived once: the same channel and the same user in every event.
    channels.dedup();
    anonymous.dedup();
    assert_eq!((channels.len(), anonymous.len()), (1, 1));
    // Types, as Screeb names them: text is `input`; each option chosen is a field.
    let ended = got
        .iter()
        .map(screeb)
        .find(|e| e.event_type == ScreebEventType::Ended)
        .unwrap();
    let kinds: Vec<(&str, &str)> = ended
        .payload
        .response
        .items
        .iter()
        .map(|i| (i.question.id.as_str(), i.question.kind.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("used", "multiple_choice"),
            ("why", "input"),
            ("nps", "nps")
        ]
    );
    assert_eq!(ended.payload.response.tags, ["product", "feedback", "nps"]);
    verify_with_standardwebhooks(ours["secret"].as_str().unwrap(), &beckon[0]).unwrap();

    // A survey the user closes ends too, partly completed, with a hosted-page channel.
    let (status, _) = app
        .send_event(
            None,
            json!({"event_name": "plan_cancelled", "project_id": project,
                   "user_info": {"contact_external_id": "second"}}),
        )
        .await;
    assert_eq!(status, 201);
    let invited = receiver.wait_for("/ok/beckon", 7, WAIT).await;
    let link = magic_link(&invited[6]);
    let r = app
        .http
        .post(format!("{link}/display"))
        .json(&json!({"channel": "hosted-page"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = app.http.post(format!("{link}/close")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let got = receiver.wait_for("/ok/screeb", 7, WAIT).await;
    let closed = got
        .iter()
        .map(screeb)
        .find(|e| e.event_type == ScreebEventType::Ended && e.payload.user.user_id == "second")
        .expect("the closed response ended");
    let r = &closed.payload.response;
    assert_eq!(r.completion, "partially_completed");
    assert!(r.time_to_complete_second.is_some());
    assert_eq!((r.question.as_ref(), r.items.len()), (None, 0));
    assert_eq!(r.locale, None);
    assert_eq!(
        (
            closed.payload.user.name.as_deref(),
            closed.payload.user.email.as_deref()
        ),
        (None, None)
    );
    assert!(closed.payload.user.group_names.is_empty());
    assert_eq!(closed.payload.channel.kind, "hosted-page");
    assert_ne!(closed.payload.channel.id, channels[0]);
    assert_ne!(closed.payload.user.anonymous_id, anonymous[0]);

    // Screeb has no test event, and takes no other event type.
    let r = app
        .authed(Method::POST, &webhook_path(&app, project, &sub, "/ping"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = app
        .authed(Method::PATCH, &webhook_path(&app, project, &sub, ""))
        .json(&json!({"event_types": ["response.ended", "invitation.created"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "event_type_not_in_format", "{body}");
}

/// Screeb's rules as the service applies them by default: a failure is retried once, 60 s
/// later; a 429 many times, each wait longer, without using that one retry up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screeb_subscription_defaults_to_one_retry_after_60_s_and_retries_429_apart() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = project_with_survey(&app).await;
    let sub = app
        .create_webhook(
            project,
            json!({"url": receiver.url("/too-many/3/screeb"), "format": "screeb-v2"}),
        )
        .await;
    assert_eq!(
        sub["retry_policy"],
        json!({"kind": "once_after_60s"}),
        "{sub}"
    );
    assert_eq!(sub["timeout_ms"], 10_000);
    let body = fire(&app, project, "u1").await;
    let link = body["created_invitations"][0]["magic_link_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .http
        .post(format!("{link}/display"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // Three 429s without Retry-After: throttled, 60 s, then twice as long each time.
    for (n, wait) in [(1, 60.0), (2, 120.0), (3, 240.0)] {
        let delivery = delivery_after(&app, project, &sub, n).await;
        assert_eq!(delivery["status"], "pending", "{delivery}");
        assert_eq!(delivery["throttled"], n, "{delivery}");
        assert_wait(&delivery, wait);
        make_due(&app, &sub).await;
    }
    // Then a 500: the one retry, 60 s later, is still there; after it, nothing.
    let failed_once = delivery_after(&app, project, &sub, 4).await;
    assert_eq!(failed_once["status"], "pending", "{failed_once}");
    assert_wait(&failed_once, 60.0);
    make_due(&app, &sub).await;
    let last = delivery_after(&app, project, &sub, 5).await;
    assert_eq!(last["status"], "failed", "{last}");
    let got = receiver.received("/too-many/3/screeb");
    assert_eq!(got.len(), 5);
    let first = screeb(&got[0]);
    assert_eq!(first.event_type, ScreebEventType::Displayed);
    for retry in &got[1..] {
        assert_eq!(retry.body, got[0].body, "a retry sends the same event");
    }
}

/// 1Flow's and Screeb's products have no verification handshake, so a receiver written for
/// them answers 200 to anything: their subscriptions are sent no challenge and are active at
/// once, while Beckon's and Seismic's still wait for the echo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1flow_or_screeb_subscription_is_active_at_once_without_a_challenge() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.create_project().await;
    for format in ["1flow", "screeb-v2", "seismic", "beckon"] {
        // `noverify`: answers 200 with something other than the challenge.
        let path = format!("/noverify/{format}");
        let sub = app
            .create_webhook(
                project,
                json!({"url": receiver.url(&path), "format": format}),
            )
            .await;
        let handshake = matches!(format, "seismic" | "beckon");
        let expected = if handshake {
            "pending_verification"
        } else {
            "active"
        };
        assert_eq!(sub["status"], expected, "{format}: {sub}");
        assert_eq!(
            sub["verification"]["verified"], !handshake,
            "{format}: {sub}"
        );
        assert_eq!(
            receiver.challenges(&path),
            usize::from(handshake),
            "{format}: a challenge only where the format has one"
        );
    }
}
