//! Bearer secrets are never at rest in plaintext and never logged: after a whole flow —
//! dispatch, events/send and a dispatch with an `Idempotency-Key`, the widget, the respond
//! page, webhooks, a dead letter and the operator's peek at it — no issued magic-link token,
//! organization token, webhook signing secret or widget secret appears in any service's log, in
//! a `pg_dump` of the database, in any message published on the broker, or in `dlq peek`.
//!
//! Every published message is seen through RabbitMQ's firehose, switched on only in a virtual
//! host made for this test (and deleted after it).

use beckon_domain::secret::user_hash;
use beckon_e2e::broker::Broker;
use beckon_e2e::infra::rabbitmqctl;
use beckon_e2e::receiver::Receiver;
use beckon_e2e::{Options, TestApp};
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// A virtual host with the firehose on; deleted when dropped.
struct TracedVhost {
    name: String,
}

impl TracedVhost {
    fn create() -> Self {
        let name = format!("beckon-secrets-{}", uuid::Uuid::now_v7().simple());
        rabbitmqctl(&["add_vhost", &name]);
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        rabbitmqctl(&["trace_on", "-p", &name]);
        Self { name }
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.name)
    }
}

impl Drop for TracedVhost {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
    }
}

fn token_of(link: &str) -> String {
    link.rsplit('/').next().expect("a token").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_issued_secret_is_logged_stored_or_queued_in_plaintext() {
    let vhost = TracedVhost::create();
    let mut app = TestApp::spawn_with(Options {
        env: vec![("BECKON_AMQP_URL", vhost.url())],
        ..Options::default()
    })
    .await;
    let broker = Broker::connect_to(&vhost.url(), &app.prefix).await;
    // Every message published in the virtual host, from now on.
    let firehose = format!("{}.firehose", app.prefix);
    broker
        .channel
        .queue_declare(
            firehose.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    broker
        .channel
        .queue_bind(
            firehose.as_str().into(),
            "amq.rabbitmq.trace".into(),
            "publish.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    let receiver = Receiver::start().await;
    let project = app.create_project().await;
    app.create_survey(
        project,
        json!({"questions": [{"id": "q1", "type": "rating", "title": "How?", "required": true}],
               "trigger": {"events": ["trial_expired", {"custom": "payment_failed"}]}}),
    )
    .await;
    let sub = app
        .create_webhook(project, json!({"url": receiver.url("/hooks")}))
        .await;
    let mut secrets = vec![
        app.token.clone(),
        sub["secret"].as_str().unwrap().to_owned(),
    ];
    let mut links = Vec::new();

    // A dispatch, answered at once.
    let (status, dispatched) = app
        .dispatch(json!({"project_id": project, "user_ref": "u1", "event": "trial_expired"}))
        .await;
    assert_eq!(status, 200, "{dispatched}");
    links.push(
        dispatched["created_invitations"][0]["magic_link_url"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    // A dispatch with an Idempotency-Key: its answer is stored, and replayed.
    let keyed = || {
        app.authed(Method::POST, "/api/v1/lifecycle/dispatch")
            .header("Idempotency-Key", "secret-sweep-1")
            .json(&json!({"project_id": project, "user_ref": "u3", "event": "trial_expired"}))
    };
    let first: Value = keyed().send().await.unwrap().json().await.unwrap();
    let replay = keyed().send().await.unwrap();
    assert_eq!(replay.headers()["idempotency-replay"], "true");
    let replay: Value = replay.json().await.unwrap();
    let keyed_link = first["created_invitations"][0]["magic_link_url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        replay["created_invitations"][0]["magic_link_url"], keyed_link,
        "the replay gives the same link"
    );
    links.push(keyed_link);
    // An event, with an Idempotency-Key; its link reaches the webhook.
    let sent = app
        .authed(Method::POST, "/api/v1/events/send")
        .header("Idempotency-Key", "secret-sweep-2")
        .json(
            &json!({"event_name": "payment_failed", "project_id": project,
                      "user_info": {"contact_external_id": "u2"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 201);
    let hooks = receiver.wait_for("/hooks", 3, WAIT).await;
    for hook in &hooks {
        let body = hook.json();
        if body["type"] == "invitation.created" {
            let link = body["data"]["invitation"]["magic_link_url"]
                .as_str()
                .unwrap()
                .to_owned();
            if !links.contains(&link) {
                links.push(link);
            }
        }
    }
    assert_eq!(links.len(), 3, "three invitations, three links: {links:?}");

    // The widget, with its publishable key and a signed user.
    let (publishable, widget_secret) = app.widget_keys(project).await;
    let pending: Value = app
        .http
        .get(app.url(&format!(
            "/api/v1/widget/invitations?user_ref=u1&user_hash={}",
            user_hash(&widget_secret, "u1")
        )))
        .header("x-publishable-key", &publishable)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pending["data"][0]["magic_link_url"], links[0].as_str());
    secrets.push(widget_secret);

    // The respond page, to the end.
    let link = &links[0];
    assert_eq!(app.http.get(link).send().await.unwrap().status(), 200);
    let put = app
        .http
        .put(format!("{link}/answers/q1"))
        .json(&json!({"value": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let done = app
        .http
        .post(format!("{link}/complete"))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    receiver.wait_for("/hooks", 5, WAIT).await;

    // A dead letter, and the operator's look at it.
    broker
        .dead_letter("webhooks", br#"{"not": "an envelope"}"#, "poison")
        .await;
    let peek = app.cli(&["dlq", "peek", "webhooks"], "");
    assert!(peek.status.success(), "{peek:?}");

    secrets.extend(links.iter().map(|l| token_of(l)));

    // Every message published in the virtual host.
    let mut published = Vec::new();
    let mut consumer = broker
        .channel
        .basic_consume(
            firehose.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    while let Ok(Some(Ok(delivery))) =
        tokio::time::timeout(Duration::from_secs(2), consumer.next()).await
    {
        published.push(delivery.data);
    }
    let kinds: Vec<String> = published
        .iter()
        .filter_map(|b| serde_json::from_slice::<Value>(b).ok())
        .filter_map(|v| v["type"].as_str().map(str::to_owned))
        .collect();
    for kind in [
        "invitation.created",
        "dispatch.completed",
        "response.progressed",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "the firehose saw a {kind}: {kinds:?}"
        );
    }
    let published: Vec<String> = published
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();

    let dump = std::process::Command::new("pg_dump")
        .args(["--data-only", app.db.url()])
        .output()
        .expect("pg_dump runs");
    assert!(dump.status.success(), "{dump:?}");
    let dump = String::from_utf8_lossy(&dump.stdout).into_owned();
    assert!(dump.contains("COPY public.invitations"), "a real dump");
    app.stop("ingest-api");
    let logs: Vec<(String, String)> = std::fs::read_dir(app.log_dir())
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            (
                path.display().to_string(),
                std::fs::read_to_string(&path).unwrap_or_default(),
            )
        })
        .collect();

    for secret in &secrets {
        let shown = &secret[..12];
        for (i, message) in published.iter().enumerate() {
            assert!(
                !message.contains(secret.as_str()),
                "published message {i} holds {shown}…: {message}"
            );
        }
        // bytea columns are dumped in hex.
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(
            !dump.contains(secret.as_str()) && !dump.contains(&hex),
            "pg_dump holds {shown}…"
        );
        for (path, text) in &logs {
            assert!(!text.contains(secret.as_str()), "{path} holds {shown}…");
        }
        let peeked = String::from_utf8_lossy(&peek.stdout);
        assert!(!peeked.contains(secret.as_str()), "dlq peek shows {shown}…");
    }
}
