//! Helpers of the webhook tests: a project whose survey fires, the deliveries of a
//! subscription as the API shows them, and the waits the delivery service scheduled.

use crate::TestApp;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

/// How long a webhook test waits for what the services do in the background.
pub const WAIT: Duration = Duration::from_secs(30);

/// Answers `question` through the magic link `link`: the status and the JSON answer.
pub async fn put_answer(app: &TestApp, link: &str, question: &str, value: Value) -> (u16, Value) {
    let r = app
        .http
        .put(format!("{link}/answers/{question}"))
        .json(&json!({"value": value}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The magic link an `invitation.created` webhook in Beckon's format carries.
pub fn magic_link(received: &crate::receiver::Received) -> String {
    received.json()["data"]["invitation"]["magic_link_url"]
        .as_str()
        .unwrap_or_else(|| panic!("no magic link in {}", received.json()))
        .to_owned()
}

/// POSTs to `url` with no body (`…/complete`, `…/close`): the status and the JSON answer.
pub async fn post(app: &TestApp, url: String) -> (u16, Value) {
    let r = app.http.post(url).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// A project with a Live survey fired by `trial_expired` and the custom `payment_failed`.
pub async fn project_with_survey(app: &TestApp) -> Uuid {
    let project = app.create_project().await;
    app.create_survey(
        project,
        json!({"trigger": {"events": ["trial_expired", {"custom": "payment_failed"}]}}),
    )
    .await;
    project
}

/// Dispatches `trial_expired` for `user`.
pub async fn fire(app: &TestApp, project: Uuid, user: &str) -> Value {
    let (status, body) = app
        .dispatch(json!({"project_id": project, "user_ref": user, "event": "trial_expired"}))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The path of subscription `sub` of `project`, followed by `rest`.
pub fn webhook_path(app: &TestApp, project: Uuid, sub: &Value, rest: &str) -> String {
    let _ = app;
    format!(
        "/api/v1/projects/{project}/webhooks/{}{rest}",
        sub["id"].as_str().unwrap()
    )
}

/// A GET as the test organization, its answer as JSON.
pub async fn get_json(app: &TestApp, path: &str) -> Value {
    app.authed(Method::GET, path)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The only delivery of a subscription, once it has had `attempts` attempts.
pub async fn delivery_after(app: &TestApp, project: Uuid, sub: &Value, attempts: i64) -> Value {
    app.eventually(
        WAIT,
        &format!("attempt {attempts} to be recorded"),
        || async {
            let list = get_json(app, &webhook_path(app, project, sub, "/deliveries")).await;
            let delivery = list["data"].as_array()?.first()?.clone();
            (delivery["attempts"] == attempts).then_some(delivery)
        },
    )
    .await
}

/// A timestamp the API shows.
pub fn at(field: &Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(
        field.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

/// How long after its last attempt a pending delivery is due again, in seconds.
pub fn scheduled_wait(delivery: &Value) -> f64 {
    (at(&delivery["next_attempt_at"]) - at(&delivery["last_attempt_at"])).as_seconds_f64()
}

/// The delivery is due again `expected` seconds (±2) after its last attempt.
pub fn assert_wait(delivery: &Value, expected: f64) {
    let wait = scheduled_wait(delivery);
    assert!(
        (wait - expected).abs() < 2.0,
        "expected the next attempt {expected} s after the last, got {wait} s: {delivery}"
    );
}

/// Makes a subscription's pending deliveries due now, as if their wait were over.
pub async fn make_due(app: &TestApp, sub: &Value) {
    app.execute(&format!(
        "UPDATE webhook_deliveries SET next_attempt_at = now() \
         WHERE subscription_id = '{}' AND status = 'pending'",
        sub["id"].as_str().unwrap()
    ))
    .await;
}

/// `body` validates against the committed JSON Schema of `format` for event type `kind` at
/// `version` (`proto-schemas/webhooks/<format>/<kind>.v<version>.json`).
pub fn assert_valid_webhook(format: &str, kind: &str, version: u64, body: &Value) {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(
        "../proto-schemas/webhooks/{format}/{kind}.v{version}.json"
    ));
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(body).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}\n{body}");
}

/// A body in Beckon's format validates against the schema of its own `type` and `version`.
pub fn assert_valid_beckon_webhook(body: &Value) {
    assert_valid_webhook(
        "beckon",
        body["type"].as_str().unwrap(),
        body["version"].as_u64().unwrap(),
        body,
    );
}
