//! The pipeline under concurrency, redelivery and failure: exactly-once effects, dead letters,
//! the dispatch deadline.

use beckon_bus::headers;
use beckon_e2e::broker::Broker;
use beckon_e2e::receiver::Receiver;
use beckon_e2e::{Options, TestApp};
use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_dispatches_across_two_invitation_replicas_create_exactly_one() {
    let app = TestApp::spawn_with(Options {
        invitation_replicas: 2,
        ..Options::default()
    })
    .await;
    let project = app.create_project().await;
    app.create_survey(
        project,
        json!({"trigger": {"events": ["trial_expired"]}, "cooldown_seconds": 3600}),
    )
    .await;
    let body = json!({"project_id": project, "user_ref": "racer", "event": "trial_expired"});
    let responses = join_all((0..20).map(|_| app.dispatch(body.clone()))).await;
    let (mut created, mut cooldown) = (0, 0);
    for (status, body) in &responses {
        assert_eq!(*status, 200, "{body}");
        created += body["created_count"].as_u64().unwrap();
        cooldown += body["suppressed_by_cooldown_count"].as_u64().unwrap();
    }
    assert_eq!((created, cooldown), (1, 19));
    assert_eq!(
        app.execute("SELECT 1 FROM invitations WHERE user_ref = 'racer'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sample_over_a_thousand_users_invites_between_400_and_600() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(
        project,
        json!({"trigger": {"events": ["trial_expired"]}, "sample_rate": 0.5}),
    )
    .await;
    let results: Vec<(u16, Value)> = stream::iter(0..1000)
        .map(|i| app.dispatch(json!({"project_id": project, "user_ref": format!("user-{i}"), "event": "trial_expired"})))
        .buffer_unordered(16)
        .collect()
        .await;
    let mut created = 0;
    let mut sampled_out = 0;
    for (status, body) in &results {
        assert_eq!(*status, 200, "{body}");
        created += body["created_count"].as_u64().unwrap();
        sampled_out += body["suppressed_by_sample_count"].as_u64().unwrap();
    }
    assert_eq!(created + sampled_out, 1000);
    assert!((400..=600).contains(&created), "{created} invitations");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_with_a_reason_and_the_pipeline_keeps_going() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let broker = Broker::connect(&app.prefix).await;

    let valid = json!({
        "id": uuid::Uuid::now_v7(), "type": "event.received", "version": 1,
        "occurred_at": "2026-11-23T10:00:00Z", "org_id": app.org_id, "project_id": project,
        "correlation_id": uuid::Uuid::now_v7(),
        "data": {"trigger_type": "event", "user_ref": "u1", "event": "trial_expired", "reply_to": null}
    });
    let mut unknown_version = valid.clone();
    unknown_version["version"] = json!(99);
    let mut schema_violation = valid.clone();
    schema_violation["data"]["user_ref"] = json!(42);
    broker
        .publish_raw("event.received.v1", b"{\"not\": json")
        .await;
    broker
        .publish_raw(
            "event.received.v1",
            &serde_json::to_vec(&unknown_version).unwrap(),
        )
        .await;
    broker
        .publish_raw(
            "event.received.v1",
            &serde_json::to_vec(&schema_violation).unwrap(),
        )
        .await;

    let dead = broker
        .drain(
            &format!("{}.matcher.dlq", app.prefix),
            3,
            Duration::from_secs(20),
        )
        .await;
    let mut reasons: Vec<String> = dead
        .iter()
        .map(|m| {
            headers::dead_letter_reason(m.delivery.properties.headers().as_ref())
                .unwrap_or_default()
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        ["malformed_json", "schema_violation", "unknown_version"]
    );
    for m in &dead {
        let table = m.delivery.properties.headers().as_ref();
        assert_eq!(
            headers::get_str(table, headers::SOURCE_QUEUE).as_deref(),
            Some(format!("{}.matcher", app.prefix).as_str())
        );
        assert!(headers::get_str(table, headers::DETAIL).is_some_and(|d| !d.is_empty()));
    }

    let (status, body) = app
        .dispatch(json!({"project_id": project, "user_ref": "u2", "event": "trial_expired"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["created_count"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_past_its_deadline_is_504_and_completes_exactly_once_later() {
    let mut app = TestApp::spawn_with(Options {
        dispatch_timeout_ms: 1000,
        ..Options::default()
    })
    .await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    app.stop("invitation");

    let (status, body) = app
        .dispatch(json!({"project_id": project, "user_ref": "late", "event": "trial_expired"}))
        .await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["code"], "dispatch_timeout");
    let trigger = body["trigger_id"]
        .as_str()
        .expect("a trigger id")
        .to_owned();

    app.start("invitation");
    let done_sql =
        format!("SELECT 1 FROM triggers WHERE id = '{trigger}' AND status = 'completed'");
    app.eventually(
        Duration::from_secs(30),
        "the trigger to complete",
        || async { (app.execute(&done_sql).await == 1).then_some(()) },
    )
    .await;
    assert_eq!(
        app.execute("SELECT 1 FROM invitations WHERE user_ref = 'late'")
            .await,
        1
    );
    assert_eq!(
        app.execute(&format!(
            "SELECT 1 FROM triggers WHERE id = '{trigger}' AND created_count = 1"
        ))
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_envelope_creates_nothing_new() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let broker = Broker::connect(&app.prefix).await;
    let mut tap = broker.tap().await;
    let (status, _) = app
        .dispatch(json!({"project_id": project, "user_ref": "u1", "event": "trial_expired"}))
        .await;
    assert_eq!(status, 200);
    // Publish both envelopes of that trigger again, as a redelivery or a replay would.
    let mut seen = Vec::new();
    while let Some(bytes) = tap.next(Duration::from_secs(2)).await {
        seen.push(bytes);
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen.len(), 2);
    for bytes in &seen {
        let env: Value = serde_json::from_slice(bytes).unwrap();
        let key = format!("{}.v{}", env["type"].as_str().unwrap(), env["version"]);
        broker.publish_raw(&key, bytes).await;
    }
    // Both duplicates are consumed (acked) without effect.
    for queue in ["matcher", "invitation"] {
        let name = format!("{}.{queue}", app.prefix);
        app.eventually(
            Duration::from_secs(10),
            "the duplicates to be consumed",
            || async {
                let q = broker
                    .channel
                    .queue_declare(
                        name.as_str().into(),
                        lapin::options::QueueDeclareOptions {
                            passive: true,
                            ..Default::default()
                        },
                        Default::default(),
                    )
                    .await
                    .ok()?;
                (q.message_count() == 0).then_some(())
            },
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.execute("SELECT 1 FROM invitations WHERE user_ref = 'u1'")
            .await,
        1
    );
    // The invitation stage records what it handled; the matcher needs no record, as matching
    // again emits the same `event.matched` id, which the invitation stage dropped.
    assert_eq!(
        app.execute("SELECT 1 FROM processed_envelopes WHERE consumer = 'invitation'")
            .await,
        1
    );
    assert_eq!(
        app.execute("SELECT 1 FROM processed_envelopes WHERE consumer = 'matcher'")
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_a_crash_left_in_the_outbox_is_published_by_the_relay() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    // As if a gateway committed an event and its outbox row, then died before publishing.
    let trigger = uuid::Uuid::now_v7();
    let envelope = json!({
        "id": uuid::Uuid::now_v7(), "type": "event.received", "version": 1,
        "occurred_at": "2026-11-23T10:00:00Z", "org_id": app.org_id, "project_id": project,
        "correlation_id": trigger,
        "data": {"trigger_type": "event", "user_ref": "orphan", "event": "trial_expired", "reply_to": null}
    });
    app.execute(&format!(
        "INSERT INTO triggers (id, org_id, project_id, trigger_type, status, user_ref, event) \
         VALUES ('{trigger}', '{}', '{project}', 'event', 'queued', 'orphan', '\"trial_expired\"')",
        app.org_id
    ))
    .await;
    app.execute(&format!(
        "INSERT INTO outbox (envelope_id, exchange, routing_key, body, created_at) \
         VALUES ('{}', '{}.events', 'event.received.v1', convert_to('{}', 'UTF8'), now() - interval '1 minute')",
        envelope["id"].as_str().unwrap(),
        app.prefix,
        envelope.to_string().replace('\'', "''")
    ))
    .await;
    let done = format!(
        "SELECT 1 FROM triggers WHERE id = '{trigger}' AND status = 'completed' AND created_count = 1"
    );
    app.eventually(
        Duration::from_secs(30),
        "the relayed trigger to complete",
        || async { (app.execute(&done).await == 1).then_some(()) },
    )
    .await;
    // The invitation service publishes what it emitted right after its commit.
    app.eventually(Duration::from_secs(30), "the outbox to empty", || async {
        (app.execute("SELECT 1 FROM outbox").await == 0).then_some(())
    })
    .await;
    assert_eq!(
        app.execute("SELECT 1 FROM invitations WHERE user_ref = 'orphan'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_handled_in_batches_and_a_bad_envelope_settles_only_itself() {
    let mut app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let broker = Broker::connect(&app.prefix).await;
    let mut tap = broker.tap().await;
    app.stop("invitation");

    // A backlog for the invitation service: 40 matched events...
    const EVENTS: usize = 40;
    for i in 0..EVENTS {
        let (status, body) = app
            .send_event(
                Some(project),
                json!({"event_name": "trial_expired", "user_info": {"contact_external_id": format!("b{i}")}}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let mut matched = Vec::new();
    while matched.len() < EVENTS {
        let bytes = tap
            .next(Duration::from_secs(20))
            .await
            .expect("the matcher to match every event");
        let env: Value = serde_json::from_slice(&bytes).unwrap();
        if env["type"] == "event.matched" {
            matched.push(env);
        }
    }
    // ...a repeat of one of them, and one that fails in the handler: it names a trigger that
    // does not exist, so recording the trigger's outcome breaks a foreign key.
    let repeat = serde_json::to_vec(&matched[EVENTS / 2]).unwrap();
    broker.publish_raw("event.matched.v1", &repeat).await;
    let mut bad = matched[EVENTS / 3].clone();
    bad["id"] = json!(uuid::Uuid::now_v7());
    bad["correlation_id"] = json!(uuid::Uuid::now_v7());
    bad["data"]["user_ref"] = json!("bad");
    broker
        .publish_raw("event.matched.v1", &serde_json::to_vec(&bad).unwrap())
        .await;

    app.start("invitation");
    let dead = broker
        .drain(
            &format!("{}.invitation.dlq", app.prefix),
            1,
            Duration::from_secs(30),
        )
        .await;
    let table = dead[0].delivery.properties.headers().as_ref();
    assert_eq!(
        headers::dead_letter_reason(table).as_deref(),
        Some("handler_failed")
    );
    let dead_body: Value = serde_json::from_slice(&dead[0].delivery.data).unwrap();
    assert_eq!(dead_body["id"], bad["id"]);

    let completed = format!(
        "SELECT 1 FROM triggers WHERE project_id = '{project}' AND status = 'completed' AND created_count = 1"
    );
    app.eventually(
        Duration::from_secs(30),
        "every trigger of the backlog to complete",
        || async { (app.execute(&completed).await == EVENTS).then_some(()) },
    )
    .await;
    assert_eq!(
        app.execute(&format!(
            "SELECT 1 FROM invitations WHERE project_id = '{project}'"
        ))
        .await,
        EVENTS
    );
    assert_eq!(
        app.execute("SELECT 1 FROM invitations WHERE user_ref = 'bad'")
            .await,
        0
    );

    // The backlog went through in batches: more envelopes than batches.
    let metrics = format!(
        "http://127.0.0.1:{}/metrics",
        app.ops_port("invitation").await
    );
    app.assert_grouped(
        &metrics,
        "beckon_batch_size",
        "{consumer=\"invitation\"}",
        "envelopes",
    )
    .await;
}

/// Each stage drains a backlog in batches — the matcher, the invitation service and webhook
/// delivery each started only once the stage before it is done — and still every event gets
/// what it would alone: its own user's details, cooldowns claimed once per user, one delivery
/// per subscription, each webhook once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_at_every_stage_is_batched_and_each_event_is_announced_once() {
    let mut app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    // One project invites on every event, to two subscriptions; the other has a day's
    // cooldown, so of a user's two events only one invites.
    let open = app.create_project().await;
    app.create_survey(
        open,
        json!({"trigger": {"events": ["trial_expired"]}, "cooldown_seconds": 0}),
    )
    .await;
    let cooled = app.create_project().await;
    app.create_survey(
        cooled,
        json!({"trigger": {"events": [{"custom": "payment_failed"}]}, "cooldown_seconds": 86400}),
    )
    .await;
    for (project, path) in [(open, "/open/a"), (open, "/open/b"), (cooled, "/cooled")] {
        app.create_webhook(project, json!({"url": receiver.url(path)}))
            .await;
    }
    for service in ["matcher", "invitation", "webhook-delivery"] {
        app.stop(service);
    }

    const OPEN: usize = 24;
    const COOLED: usize = 12;
    let mut sends = Vec::new();
    for i in 0..OPEN {
        let user =
            json!({"contact_external_id": format!("o{i}"), "email": format!("o{i}@example.com")});
        sends.push((
            open,
            json!({"event_name": "trial_expired", "user_info": user}),
        ));
    }
    for round in 0..2 {
        for i in 0..COOLED {
            let user =
                json!({"contact_external_id": format!("c{i}"), "name": format!("C{i}.{round}")});
            sends.push((
                cooled,
                json!({"event_name": "payment_failed", "user_info": user}),
            ));
        }
    }
    let total = sends.len();
    for (project, body) in sends {
        let (status, body) = app.send_event(Some(project), body).await;
        assert_eq!(status, 201, "{body}");
    }

    app.start("matcher");
    app.eventually(WAIT, "every trigger to be matched", || {
        all_in_status(&app, "processing", total)
    })
    .await;
    app.start("invitation");
    app.eventually(WAIT, "every trigger to complete", || {
        all_in_status(&app, "completed", total)
    })
    .await;
    app.start("webhook-delivery");
    let a = receiver.wait_for("/open/a", OPEN, WAIT).await;
    let b = receiver.wait_for("/open/b", OPEN, WAIT).await;
    let c = receiver.wait_for("/cooled", COOLED, WAIT).await;

    // Each webhook names its own user, and each subscription got each message once.
    for got in [&a, &b, &c] {
        let ids: HashSet<_> = got
            .iter()
            .map(|r| r.header("webhook-id").to_owned())
            .collect();
        assert_eq!(ids.len(), got.len(), "a webhook-id repeated");
        for hook in got.iter() {
            let user = &hook.json()["data"]["user"];
            let user_ref = user["user_ref"].as_str().unwrap();
            if user_ref.starts_with('o') {
                assert_eq!(user["email"], format!("{user_ref}@example.com"));
            } else {
                assert!(
                    user["name"]
                        .as_str()
                        .unwrap()
                        .starts_with(&format!("C{}.", &user_ref[1..]))
                );
            }
        }
    }
    let cooled_users: HashSet<_> = c
        .iter()
        .map(|r| r.json()["data"]["user"]["user_ref"].clone())
        .collect();
    assert_eq!(cooled_users.len(), COOLED, "one invitation per cooled user");
    assert_eq!(
        app.execute("SELECT 1 FROM triggers WHERE cooldown_count = 1")
            .await,
        COOLED
    );
    // Nothing more arrives later.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.received("/").len(), 2 * OPEN + COOLED);

    for service in ["matcher", "invitation", "webhook-delivery"] {
        let metrics = format!("http://127.0.0.1:{}/metrics", app.ops_port(service).await);
        let consumer = if service == "webhook-delivery" {
            "webhooks"
        } else {
            service
        };
        app.assert_grouped(
            &metrics,
            "beckon_batch_size",
            &format!("{{consumer=\"{consumer}\"}}"),
            "envelopes",
        )
        .await;
    }
}

async fn all_in_status(app: &TestApp, status: &str, total: usize) -> Option<()> {
    let sql = format!("SELECT 1 FROM triggers WHERE status = '{status}'");
    (app.execute(&sql).await == total).then_some(())
}
