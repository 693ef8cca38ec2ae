//! Faults at default settings. Outages of a dependency are not failures of the messages in
//! flight (nothing accepted is dead-lettered because the database was away), a message that
//! does fail for good never leaves its trigger waiting, and the gateway keeps serving what it
//! can: a request that dies with its process, a broker that is away, a background task that
//! dies. The database and the broker are cut off through proxies, for one test's services
//! only, so these tests run beside the others.

use beckon_e2e::broker::Broker;
use beckon_e2e::proxy::Proxy;
use beckon_e2e::{Options, TestApp};
use beckon_store::idempotency::{self, Claim};
use beckon_store::testing::WithProject;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// A survey on `trial_expired` and, with the matcher stopped, `n` events accepted for it:
/// their envelopes wait in the matcher's queue, the outbox emptied. The survey's project.
async fn backlog(app: &mut TestApp, n: usize) -> uuid::Uuid {
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    app.stop("matcher");
    for i in 0..n {
        let (status, body) = app
            .send_event(
                Some(project),
                json!({"event_name": "trial_expired", "user_info": {"contact_external_id": format!("u{i}")}}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    app.eventually(
        Duration::from_secs(10),
        "the outbox to be empty",
        || async { (app.execute("SELECT 1 FROM outbox").await == 0).then_some(()) },
    )
    .await;
    project
}

/// Once every trigger has left `queued` and `processing` (or 30 s have passed): the matcher's
/// dead letters and the failed triggers.
async fn settled(app: &TestApp) -> (u32, usize) {
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        while app
            .execute("SELECT 1 FROM triggers WHERE status IN ('queued', 'processing')")
            .await
            > 0
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let broker = Broker::connect(&app.prefix).await;
    let dead = broker.depth(&format!("{}.matcher.dlq", app.prefix)).await;
    let failed = app
        .execute("SELECT 1 FROM triggers WHERE status = 'failed'")
        .await;
    (dead, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_holds_messages_instead_of_dead_lettering_them() {
    let mut app = TestApp::spawn_with(Options {
        database_proxy: true,
        ..Default::default()
    })
    .await;
    const EVENTS: usize = 30;
    backlog(&mut app, EVENTS).await;

    app.db_proxy.as_ref().expect("proxied").cut();
    app.start("matcher");
    let metrics = format!("http://127.0.0.1:{}/metrics", app.ops_port("matcher").await);
    app.eventually(
        Duration::from_secs(30),
        "the matcher to hold the events it cannot handle",
        || async {
            let held = app.metric(&metrics, "beckon_messages_held_total").await?;
            (held >= 1.0).then_some(())
        },
    )
    .await;
    // The outage lasts long enough for every waiting delivery to have run out of its three
    // deliveries many times over, were the failures counted against it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let broker = Broker::connect(&app.prefix).await;
    let dlq = format!("{}.matcher.dlq", app.prefix);
    assert_eq!(
        broker.depth(&dlq).await,
        0,
        "dead-lettered during the outage"
    );
    assert_eq!(
        app.metric(&metrics, "beckon_database_up").await,
        Some(0.0),
        "the matcher reports the database away"
    );

    app.db_proxy.as_ref().expect("proxied").restore();
    app.eventually(
        Duration::from_secs(60),
        "every event to complete once the database is back",
        || async {
            let done = app
                .execute("SELECT 1 FROM triggers WHERE status = 'completed'")
                .await;
            (done == EVENTS).then_some(())
        },
    )
    .await;
    assert_eq!(broker.depth(&dlq).await, 0);
    assert_eq!(app.execute("SELECT 1 FROM invitations").await, EVENTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_broker_dead_letters_fails_its_trigger_and_is_counted() {
    // Each delivery is tried in place for the retry patience before it counts; a short one
    // keeps the three deliveries quick. What is tested comes after the broker's dead letter.
    let app = TestApp::spawn_with(Options {
        env: vec![("BECKON_RETRY_PATIENCE_MS", "300".into())],
        ..Default::default()
    })
    .await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    // The invitation stage fails on every try while the database answers: the broker, not a
    // consumer, dead-letters the message once it has used its deliveries.
    app.execute("ALTER TABLE invitations RENAME TO invitations_gone")
        .await;
    let (status, body) = app
        .send_event(
            Some(project),
            json!({"event_name": "trial_expired", "user_info": {"contact_external_id": "unlucky"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let trigger_id = body["trigger_id"].as_str().expect("a trigger id");
    let trigger = app
        .wait_trigger(trigger_id, "failed", Duration::from_secs(60))
        .await;
    let error = trigger["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        error.contains("invitation") && error.contains("delivery_limit"),
        "{trigger}"
    );
    let broker = Broker::connect(&app.prefix).await;
    assert_eq!(
        broker
            .depth(&format!("{}.invitation.dlq", app.prefix))
            .await,
        1,
        "the dead letter is kept for the operator"
    );
    let mut counted = 0.0;
    for service in ["matcher", "invitation", "webhook-delivery"] {
        let url = format!("http://127.0.0.1:{}/metrics", app.ops_port(service).await);
        counted += app
            .metric(
                &url,
                "beckon_messages_dead_lettered_total{queue=\"invitation\",reason=\"delivery_limit\"}",
            )
            .await
            .unwrap_or(0.0);
    }
    assert_eq!(counted, 1.0, "counted once, by whichever service saw it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_whose_event_was_lost_is_sent_again_and_one_stuck_past_matching_fails() {
    let mut app = TestApp::spawn_with(Options {
        env: vec![("BECKON_STALLED_INTERVAL_MS", "200".into())],
        ..Default::default()
    })
    .await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    app.stop("matcher");
    let mut ids = Vec::new();
    for user in ["lost", "stuck"] {
        let (status, body) = app
            .send_event(
                Some(project),
                json!({"event_name": "trial_expired", "user_info": {"contact_external_id": user}}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["trigger_id"].as_str().expect("an id").to_owned());
    }
    app.eventually(
        Duration::from_secs(10),
        "the outbox to be empty",
        || async { (app.execute("SELECT 1 FROM outbox").await == 0).then_some(()) },
    )
    .await;
    // Both envelopes are lost, and both triggers have waited two hours: one still queued, the
    // other as if matched, its invitation stage never done.
    let broker = Broker::connect(&app.prefix).await;
    broker
        .channel
        .queue_purge(
            format!("{}.matcher", app.prefix).as_str().into(),
            Default::default(),
        )
        .await
        .expect("purge");
    app.execute(&format!(
        "UPDATE triggers SET created_at = now() - interval '2 hours' WHERE id = '{}'",
        ids[0]
    ))
    .await;
    app.execute(&format!(
        "UPDATE triggers SET status = 'processing', created_at = now() - interval '2 hours', \
         started_at = now() - interval '2 hours' WHERE id = '{}'",
        ids[1]
    ))
    .await;
    app.start("matcher");

    let lost = app
        .wait_trigger(&ids[0], "completed", Duration::from_secs(30))
        .await;
    assert_eq!(lost["summary"]["sent"], 1, "{lost}");
    let stuck = app
        .wait_trigger(&ids[1], "failed", Duration::from_secs(30))
        .await;
    assert!(
        stuck["error"]
            .as_str()
            .unwrap_or_default()
            .contains("stalled"),
        "{stuck}"
    );
    assert_eq!(
        app.execute("SELECT 1 FROM invitations WHERE user_ref = 'lost'")
            .await,
        1
    );
}

/// The broker behind a proxy the test can cut, as a network partition would, without touching
/// the broker that other tests share. Services given the URL reach the broker only through it.
async fn broker_link() -> (Proxy, String) {
    let mut url = reqwest::Url::parse(&beckon_e2e::amqp_url()).expect("an AMQP URL");
    let upstream = tokio::net::lookup_host((
        url.host_str().unwrap_or("127.0.0.1").to_owned(),
        url.port().unwrap_or(5672),
    ))
    .await
    .expect("the broker's host resolves")
    .next()
    .expect("an address");
    let proxy = Proxy::start(upstream).await.expect("a proxy");
    url.set_port(Some(proxy.port())).expect("a port can be set");
    (proxy, url.to_string())
}

async fn keyed_dispatch(app: &TestApp, key: &str, body: &Value) -> (u16, Value) {
    let r = app
        .authed(Method::POST, "/api/v1/lifecycle/dispatch")
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_left_in_flight_is_taken_over_once_its_lease_lapses_but_an_answer_is_kept() {
    use diesel_async::RunQueryDsl as _;
    let seeded = WithProject::new(2).await;
    let mut conn = seeded.store.conn().await.expect("a connection");
    let (org, lease) = (seeded.org_id, Duration::from_secs(30));

    let Claim::Owned { owner: first, .. } =
        idempotency::claim(&mut conn, org, "k", b"request", lease)
            .await
            .unwrap()
    else {
        panic!("a new key is owned by its first request");
    };
    assert_eq!(
        idempotency::claim(&mut conn, org, "k", b"request", lease)
            .await
            .unwrap(),
        Claim::InFlight,
        "a held lease keeps the key in flight"
    );
    assert!(
        idempotency::renew(&mut conn, org, "k", first, lease)
            .await
            .unwrap()
    );

    // The first request dies: nothing renews its lease, which lapses.
    let lapse = "UPDATE idempotency_keys SET lease_until = now() - interval '1 second'";
    diesel::sql_query(lapse).execute(&mut conn).await.unwrap();
    assert_eq!(
        idempotency::claim(&mut conn, org, "k", b"another request", lease)
            .await
            .unwrap(),
        Claim::Mismatch,
        "a lapsed lease is taken over only by the same request"
    );
    let Claim::Owned { owner: second, .. } =
        idempotency::claim(&mut conn, org, "k", b"request", lease)
            .await
            .unwrap()
    else {
        panic!("a retry takes over a key whose lease lapsed");
    };
    assert_ne!(first, second);
    assert!(
        !idempotency::renew(&mut conn, org, "k", first, lease)
            .await
            .unwrap(),
        "the first request lost the key"
    );
    assert!(
        !idempotency::complete(&mut conn, org, "k", first, 200, b"stale")
            .await
            .unwrap(),
        "the first request cannot store its answer any more"
    );
    idempotency::release(&mut conn, org, "k", first)
        .await
        .unwrap();
    assert!(
        idempotency::complete(&mut conn, org, "k", second, 201, b"fresh")
            .await
            .unwrap()
    );

    // A stored answer is kept for its 24 hours, whatever became of the lease.
    diesel::sql_query(lapse).execute(&mut conn).await.unwrap();
    assert_eq!(
        idempotency::claim(&mut conn, org, "k", b"request", lease)
            .await
            .unwrap(),
        Claim::Done {
            status: 201,
            body: b"fresh".to_vec()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// A key taken over after its request died runs the request again, and that is safe: the
/// dispatch's trigger derives from the request the key stands for, so the retry finds the
/// first run's trigger (committed with its envelope before the gateway died, and run by the
/// relay) and answers its outcome — one trigger, one invitation, its magic link in the answer.
async fn a_keyed_dispatch_whose_gateway_was_killed_is_answered_once_its_lease_lapses_with_the_first_runs_outcome()
 {
    let mut app = TestApp::spawn_with(Options {
        env: vec![("BECKON_IDEMPOTENCY_LEASE_MS", "2000".into())],
        ..Options::default()
    })
    .await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let body = json!({"project_id": project, "user_ref": "u1", "event": "trial_expired"});
    // No matcher: the dispatch waits for an outcome that cannot come yet.
    app.stop("matcher");
    let waiting = tokio::spawn(
        app.authed(Method::POST, "/api/v1/lifecycle/dispatch")
            .header("idempotency-key", "crash-key")
            .json(&body)
            .send(),
    );
    app.eventually(
        Duration::from_secs(10),
        "the dispatch to hold its key with its trigger recorded",
        || async {
            let held = app
                .execute("SELECT 1 FROM idempotency_keys WHERE key = 'crash-key' AND state = 'in_flight'")
                .await;
            let recorded = app.execute("SELECT 1 FROM triggers").await;
            (held == 1 && recorded == 1).then_some(())
        },
    )
    .await;

    // While the dispatch runs it renews its lease: past the lease's length a retry is still
    // told the key is in flight.
    app.eventually(
        Duration::from_secs(8),
        "the running dispatch to hold its key past one lease",
        || async {
            let renewed = app
                .execute(
                    "SELECT 1 FROM idempotency_keys WHERE key = 'crash-key' AND state = 'in_flight' \
                     AND created_at < now() - interval '2500 milliseconds' AND lease_until > now()",
                )
                .await;
            (renewed == 1).then_some(())
        },
    )
    .await;
    let (status, busy) = keyed_dispatch(&app, "crash-key", &body).await;
    assert_eq!(
        (status, &busy["code"]),
        (409, &json!("idempotency_key_in_flight"))
    );

    app.kill("ingest-api");
    assert!(
        waiting.await.expect("the request task").is_err(),
        "the killed gateway never answered"
    );
    app.start("matcher");
    app.start("ingest-api");
    app.wait_ready(Duration::from_secs(30))
        .await
        .expect("the gateway is back");

    let (status, answer) = app
        .eventually(
            Duration::from_secs(20),
            "a retry with the key to be served rather than told it is in flight",
            || async {
                let (status, answer) = keyed_dispatch(&app, "crash-key", &body).await;
                (status != 409).then_some((status, answer))
            },
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["created_count"], 1, "{answer}");
    let (status, replay) = keyed_dispatch(&app, "crash-key", &body).await;
    assert_eq!((status, &replay), (200, &answer), "the answer is now kept");
    app.eventually(
        Duration::from_secs(30),
        "every trigger to finish",
        || async {
            let open = app
                .execute("SELECT 1 FROM triggers WHERE status IN ('queued', 'processing')")
                .await;
            (open == 0).then_some(())
        },
    )
    .await;
    let triggers = app.execute("SELECT 1 FROM triggers").await;
    let invitations = app.execute("SELECT 1 FROM invitations").await;
    assert_eq!((triggers, invitations), (1, 1), "{answer}");
    // The magic link answered is the one invitation's.
    let link = answer["created_invitations"][0]["magic_link_url"]
        .as_str()
        .expect("a link");
    let page = app.http.get(link).send().await.expect("the page");
    assert_eq!(page.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_whose_publish_fails_after_its_commit_completes_through_the_relay() {
    let mut app = TestApp::spawn_with(Options {
        dispatch_timeout_ms: 30_000,
        ..Options::default()
    })
    .await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    // With the matcher stopped and its queue gone, no queue takes `event.received`: the
    // gateway's mandatory publish comes back refused (the broker itself stays up).
    app.stop("matcher");
    let broker = Broker::connect(&app.prefix).await;
    broker
        .channel
        .queue_delete(
            format!("{}.matcher", app.prefix).as_str().into(),
            lapin::options::QueueDeleteOptions::default(),
        )
        .await
        .expect("the matcher queue is deleted");

    let body = json!({"project_id": project, "user_ref": "u1", "event": "trial_expired"});
    let dispatch = tokio::spawn(
        app.authed(Method::POST, "/api/v1/lifecycle/dispatch")
            .json(&body)
            .send(),
    );
    // The trigger and its envelope were committed together; the publish failed, so the
    // envelope stays in the outbox, and the trigger is not failed.
    app.eventually(
        Duration::from_secs(10),
        "the trigger with its envelope left in the outbox",
        || async {
            let left = app
                .execute(
                    "SELECT 1 FROM triggers t JOIN outbox o ON o.envelope_id = t.job_id \
                     WHERE t.status = 'queued' AND o.created_at < now() - interval '1 second'",
                )
                .await;
            (left == 1).then_some(())
        },
    )
    .await;

    // The matcher declares its queue again; the relay publishes the envelope and the dispatch,
    // still waiting, gets its outcome.
    app.start("matcher");
    let answer = dispatch
        .await
        .expect("the request task")
        .expect("an answer");
    let status = answer.status().as_u16();
    let answer: Value = answer.json().await.expect("json");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["created_count"], 1, "{answer}");
    assert_eq!(app.execute("SELECT 1 FROM triggers").await, 1);
    app.eventually(
        Duration::from_secs(10),
        "the outbox to be cleared",
        || async { (app.execute("SELECT 1 FROM outbox").await == 0).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_while_the_broker_is_unreachable_is_503_and_records_nothing() {
    let (link, url) = broker_link().await;
    let app = TestApp::spawn_with(Options {
        env: vec![("BECKON_AMQP_URL", url)],
        ..Options::default()
    })
    .await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let body = json!({"project_id": project, "user_ref": "u1", "event": "trial_expired"});

    link.cut();
    // Once the gateway knows the broker is away (its readiness says so)...
    app.eventually(
        Duration::from_secs(10),
        "the gateway to see the broker away",
        || async {
            let r = app.http.get(app.ops_url("/readyz")).send().await.ok()?;
            let body: Value = r.json().await.ok()?;
            (body["broker"] == false).then_some(())
        },
    )
    .await;
    // ...a dispatch is refused before anything is recorded.
    let (status, answer) = app.dispatch(body.clone()).await;
    assert_eq!(
        (status, &answer["code"]),
        (503, &json!("broker_unavailable")),
        "{answer}"
    );
    assert_eq!(app.execute("SELECT 1 FROM triggers").await, 0);
    assert_eq!(app.execute("SELECT 1 FROM outbox").await, 0);

    link.restore();
    let answer = app
        .eventually(
            Duration::from_secs(30),
            "a dispatch to succeed once the broker is back",
            || async {
                let (status, answer) = app.dispatch(body.clone()).await;
                (status == 200).then_some(answer)
            },
        )
        .await;
    assert_eq!(answer["created_count"], 1, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_stays_ready_and_accepts_events_while_the_broker_is_unreachable() {
    let (link, url) = broker_link().await;
    let app = TestApp::spawn_with(Options {
        env: vec![("BECKON_AMQP_URL", url)],
        ..Options::default()
    })
    .await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;

    link.cut();
    let readiness = app
        .eventually(
            Duration::from_secs(10),
            "readiness to report the broker away",
            || async {
                let r = app.http.get(app.ops_url("/readyz")).send().await.ok()?;
                let status = r.status().as_u16();
                let body: Value = r.json().await.ok()?;
                (body["broker"] == false).then_some((status, body))
            },
        )
        .await;
    assert_eq!(readiness.0, 200, "{}", readiness.1);
    assert_eq!(readiness.1["database"], true);
    assert_eq!(readiness.1["workers"]["intake"], true);
    assert_eq!(readiness.1["workers"]["outbox-relay"], true);

    // The gateway still serves what it can: accepted events wait in the outbox.
    let (status, accepted) = app
        .send_event(
            Some(project),
            json!({"event_name": "trial_expired", "user_info": {"contact_external_id": "u1"}}),
        )
        .await;
    assert_eq!(status, 201, "{accepted}");

    link.restore();
    app.wait_trigger(
        accepted["trigger_id"].as_str().expect("a trigger id"),
        "completed",
        Duration::from_secs(30),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_given_several_broker_addresses_use_the_ones_that_answer() {
    // A node that refuses connections on either side of the one that works, as in a cluster
    // with nodes down.
    let dead = "amqp://guest:guest@127.0.0.1:1/%2f";
    let app = TestApp::spawn_with(Options {
        env: vec![(
            "BECKON_AMQP_URL",
            format!("{dead},{},{dead}", beckon_e2e::amqp_url()),
        )],
        ..Default::default()
    })
    .await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    for user in ["a", "b", "c"] {
        let (status, body) = app
            .dispatch(json!({"project_id": project, "user_ref": user, "event": "trial_expired"}))
            .await;
        assert_eq!((status, &body["created_count"]), (200, &json!(1)), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_due_during_a_database_outage_fires_once_it_is_back_and_the_outage_is_told_once()
{
    let app = TestApp::spawn_with(Options {
        database_proxy: true,
        ..Default::default()
    })
    .await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let (status, body) = app
        .send_event(
            Some(project),
            json!({"event_name": "trial_expired", "user_info": {"contact_external_id": "later"},
                   "trigger_at": at.format(&time::format_description::well_known::Rfc3339).unwrap()}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    app.db_proxy.as_ref().expect("proxied").cut();
    // Down past the trigger's time, with the scheduler polling every 100 ms.
    tokio::time::sleep(Duration::from_secs(5)).await;
    app.db_proxy.as_ref().expect("proxied").restore();
    app.wait_trigger(
        body["trigger_id"].as_str().expect("a trigger id"),
        "completed",
        Duration::from_secs(30),
    )
    .await;
    let matcher_log: String = std::fs::read_dir(app.log_dir())
        .expect("the logs")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("matcher"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    let failed_passes = matcher_log.matches("scheduler pass failed").count();
    assert!(
        failed_passes <= 1,
        "the scheduler reported {failed_passes} failed passes for one outage"
    );
}

/// A table lock held for a while — what a non-concurrent `CREATE INDEX`, an `ALTER TABLE` or a
/// `VACUUM FULL` an operator runs takes — is contention, not a message's failure: each try
/// ends in `lock_timeout` while the database answers, and is tried again in place, within the
/// retry patience, instead of being counted against the message's delivery limit. (The lock
/// timeout is shortened from its 10 s default so that 25 s hold many tries.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_lock_held_by_an_operator_does_not_dead_letter_the_messages_in_flight() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
    let mut app = TestApp::spawn_with(Options {
        env: vec![("BECKON_DB_LOCK_TIMEOUT_MS", "1000".into())],
        ..Default::default()
    })
    .await;
    const EVENTS: usize = 10;
    backlog(&mut app, EVENTS).await;

    // An operator builds an index on the table every consumer writes first (SHARE lock, as a
    // plain CREATE INDEX takes), for 25 s.
    let mut locker = AsyncPgConnection::establish(app.db.url())
        .await
        .expect("a connection");
    locker
        .batch_execute("BEGIN; LOCK TABLE processed_envelopes IN SHARE MODE")
        .await
        .expect("locked");
    app.start("matcher");
    tokio::time::sleep(Duration::from_secs(25)).await;
    locker.batch_execute("COMMIT").await.expect("unlocked");

    let (dead, failed) = settled(&app).await;
    let reasons: Vec<String> = {
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Reason {
            #[diesel(sql_type = diesel::sql_types::Text)]
            error: String,
        }
        let mut conn = app.store.conn().await.expect("a connection");
        diesel::sql_query("SELECT DISTINCT error FROM triggers WHERE status = 'failed'")
            .load::<Reason>(&mut conn)
            .await
            .expect("queried")
            .into_iter()
            .map(|r| r.error)
            .collect()
    };
    assert_eq!(
        (dead, failed),
        (0, 0),
        "a 25 s table lock dead-lettered {dead} of {EVENTS} events and failed {failed} \
         triggers ({reasons:?})"
    );
    assert_eq!(
        app.execute("SELECT 1 FROM triggers WHERE status = 'completed'")
            .await,
        EVENTS
    );
}
/// Holding deliveries through a database outage keeps them unacknowledged; a consumer that
/// stops meanwhile (a rolling deploy, an operator restarting pods at 3 a.m.) releases them: a
/// copy goes back to the queue uncounted, since a quorum queue counts every return as a
/// delivery. More restarts during one outage than the delivery limit dead-letter nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_a_consumer_during_a_database_outage_does_not_burn_held_deliveries() {
    let mut app = TestApp::spawn_with(Options {
        database_proxy: true,
        ..Default::default()
    })
    .await;
    const EVENTS: usize = 10;
    backlog(&mut app, EVENTS).await;

    app.db_proxy.as_ref().expect("proxied").cut();
    // Four restarts during one outage (the test's delivery limit is 3).
    for _ in 0..4 {
        app.start("matcher");
        let metrics = format!("http://127.0.0.1:{}/metrics", app.ops_port("matcher").await);
        app.eventually(
            Duration::from_secs(30),
            "the matcher to hold the events",
            || async {
                let held = app.metric(&metrics, "beckon_messages_held_total").await?;
                (held >= 1.0).then_some(())
            },
        )
        .await;
        app.stop("matcher");
    }
    app.db_proxy.as_ref().expect("proxied").restore();
    app.start("matcher");
    let (dead, failed) = settled(&app).await;
    assert_eq!(
        (dead, failed),
        (0, 0),
        "restarts during one database outage dead-lettered {dead} of {EVENTS} held events \
         and failed {failed} triggers; no handler ever failed"
    );
}

/// A dead letter is believed only about its own organization's trigger, and only while that
/// trigger's work is under way: an envelope naming another organization's trigger (hand-made,
/// or replayed into the wrong deployment) fails nothing, and a scheduled trigger, which has no
/// envelope yet, is never failed by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_fails_no_other_organizations_trigger_and_no_scheduled_one() {
    use time::format_description::well_known::Rfc3339;
    let mut app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let at = (time::OffsetDateTime::now_utc() + time::Duration::days(1))
        .format(&Rfc3339)
        .expect("a time");
    let (status, body) = app
        .send_event(
            Some(project),
            json!({"event_name": "trial_expired", "user_info": {"contact_external_id": "later"}, "trigger_at": at}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let scheduled = body["trigger_id"].as_str().expect("an id").to_owned();
    app.stop("matcher");
    let (status, body) = app
        .send_event(
            Some(project),
            json!({"event_name": "trial_expired", "user_info": {"contact_external_id": "now"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let queued = body["trigger_id"].as_str().expect("an id").to_owned();

    let (other_org, _) = app.other_org().await;
    let broker = Broker::connect(&app.prefix).await;
    let envelope = |org: uuid::Uuid, trigger: &str| {
        json!({
            "id": uuid::Uuid::now_v7(), "type": "event.received", "version": 1,
            "occurred_at": "2026-11-23T10:00:00Z", "org_id": org, "project_id": project,
            "correlation_id": trigger,
            "data": {"trigger_type": "event", "user_ref": "x", "event": "trial_expired", "reply_to": null}
        })
    };
    // As the broker dead-letters: its headers, no Beckon reason.
    for (org, trigger) in [(other_org, &queued), (app.org_id, &scheduled)] {
        let mut headers = lapin::types::FieldTable::default();
        beckon_bus::headers::set_str(&mut headers, "x-first-death-reason", "delivery_limit");
        broker
            .channel
            .basic_publish(
                format!("{}.dlx", app.prefix).as_str().into(),
                format!("{}.matcher", app.prefix).as_str().into(),
                Default::default(),
                &serde_json::to_vec(&envelope(org, trigger)).expect("json"),
                lapin::BasicProperties::default().with_headers(headers),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
    }
    // Both are seen (and counted, as the broker's) ...
    app.eventually(
        Duration::from_secs(30),
        "both dead letters to be seen",
        || async {
            let mut seen = 0.0;
            for service in ["invitation", "webhook-delivery"] {
                let url = format!("http://127.0.0.1:{}/metrics", app.ops_port(service).await);
                seen += app
                    .metric(
                        &url,
                        "beckon_messages_dead_lettered_total{queue=\"matcher\",reason=\"delivery_limit\"}",
                    )
                    .await
                    .unwrap_or(0.0);
            }
            (seen >= 2.0).then_some(())
        },
    )
    .await;
    // ... and fail nothing.
    assert_eq!(app.trigger(&queued).await.1["status"], "queued");
    assert_eq!(app.trigger(&scheduled).await.1["status"], "scheduled");
}

/// The same for events/send: a keyed event whose gateway died after the commit, before its
/// answer was stored, is accepted again with the same trigger on a retry, and runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_event_run_again_after_a_takeover_is_the_same_trigger() {
    let app = TestApp::spawn().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let send = || {
        app.authed(Method::POST, "/api/v1/events/send")
            .header("idempotency-key", "event-key")
            .header("x-team-id", project.to_string())
            .json(&json!({"event_name": "trial_expired", "user_info": {"contact_external_id": "once"}}))
            .send()
    };
    let first: Value = send().await.expect("sent").json().await.expect("json");
    // As if the gateway had died after the commit, before storing its answer: the key is in
    // flight under a lease that lapsed.
    app.execute(
        "UPDATE idempotency_keys SET state = 'in_flight', response_status = NULL, \
         response_body = NULL, lease_until = now() - interval '1 second'",
    )
    .await;
    let r = send().await.expect("sent");
    assert_eq!(r.status(), 201);
    let again: Value = r.json().await.expect("json");
    assert_eq!(again["trigger_id"], first["trigger_id"], "{again}");
    app.wait_trigger(
        first["trigger_id"].as_str().expect("an id"),
        "completed",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        app.execute("SELECT 1 FROM triggers WHERE user_ref = 'once'")
            .await,
        1
    );
    assert_eq!(
        app.execute("SELECT 1 FROM invitations WHERE user_ref = 'once'")
            .await,
        1
    );
}

/// A dispatch past its deadline holds its key's lease while its late wait runs. A database
/// outage longer than the lease lets it lapse, and the client's first retry may take the key
/// over while the first dispatch still runs — which then runs nothing twice: the retry finds
/// the trigger its request already committed. One trigger per Idempotency-Key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_taken_over_after_a_database_outage_longer_than_its_lease_runs_its_dispatch_once() {
    let mut app = TestApp::spawn_with(Options {
        database_proxy: true,
        dispatch_timeout_ms: 1_000,
        env: vec![("BECKON_IDEMPOTENCY_LEASE_MS", "6000".into())],
        ..Default::default()
    })
    .await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    // The dispatches cannot complete yet: each answers 504 and keeps waiting for its outcome,
    // holding its key. Several keys, so that their heartbeats tick at different moments.
    app.stop("matcher");
    const KEYS: usize = 4;
    let body = |i: usize| json!({"project_id": project, "user_ref": format!("twice{i}"), "event": "trial_expired"});
    for i in 0..KEYS {
        let (status, answer) = keyed_dispatch(&app, &format!("pay-{i}"), &body(i)).await;
        assert_eq!(status, 504, "{answer}");
        let (status, _) = keyed_dispatch(&app, &format!("pay-{i}"), &body(i)).await;
        assert_eq!(status, 409, "in flight while its late wait runs");
        tokio::time::sleep(Duration::from_millis(450)).await;
    }

    // The database is away for longer than the lease, then back.
    app.db_proxy.as_ref().expect("proxied").cut();
    tokio::time::sleep(Duration::from_secs(8)).await;
    app.db_proxy.as_ref().expect("proxied").restore();

    // Each client keeps retrying as told (Retry-After: 1; faster here), until it gets an
    // answer other than "in flight" (or a 503 while the gateway reconnects).
    let mut seen = Vec::new();
    let retries = (0..KEYS).map(|i| {
        let (app, body) = (&app, body(i));
        async move {
            let mut statuses = Vec::new();
            for _ in 0..15 {
                let (status, _) = keyed_dispatch(app, &format!("pay-{i}"), &body).await;
                statuses.push(status);
                if status != 409 && status != 503 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            statuses
        }
    });
    seen.extend(futures_util::future::join_all(retries).await);
    let triggers = app
        .execute("SELECT 1 FROM triggers WHERE user_ref LIKE 'twice%'")
        .await;
    assert_eq!(
        triggers, KEYS,
        "{KEYS} Idempotency-Keys ran {triggers} dispatches: keys were taken over while their \
         first dispatch still ran (retries answered {seen:?})"
    );
}

/// A broker address that takes the connection and then never says a word (a node hung, or a
/// load balancer with nothing behind it) costs each connection attempt a bounded wait, after
/// which the next address is tried: the services still come up and serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_address_that_never_answers_costs_a_bounded_attempt_and_the_next_is_tried() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let port = silent.local_addr().expect("bound").port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let app = TestApp::spawn_with(Options {
        env: vec![(
            "BECKON_AMQP_URL",
            format!(
                "amqp://guest:guest@127.0.0.1:{port}/%2f,{}",
                beckon_e2e::amqp_url()
            ),
        )],
        ..Default::default()
    })
    .await;
    // Every consumer comes up too (some of their connections tried the silent one first).
    for service in ["matcher", "invitation", "webhook-delivery"] {
        let url = format!("http://127.0.0.1:{}/readyz", app.ops_port(service).await);
        app.eventually(
            Duration::from_secs(60),
            &format!("{service} to be ready"),
            || async {
                let r = app.http.get(&url).send().await.ok()?;
                (r.status() == 200).then_some(())
            },
        )
        .await;
    }
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    let (status, body) = app
        .dispatch(json!({"project_id": project, "user_ref": "a", "event": "trial_expired"}))
        .await;
    assert_eq!((status, &body["created_count"]), (200, &json!(1)), "{body}");
    held.abort();
}
