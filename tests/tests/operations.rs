//! Every service's operations endpoints: alive, ready (database, broker, consuming), and
//! Prometheus metrics that move with the work.

use beckon_e2e::TestApp;
use beckon_e2e::receiver::Receiver;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_reports_health_readiness_and_metrics() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    app.create_webhook(project, json!({"url": receiver.url("/ok/ops")}))
        .await;

    for service in ["matcher", "invitation", "webhook-delivery"] {
        let base = format!("http://127.0.0.1:{}", app.ops_port(service).await);
        let alive = app
            .http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(alive.status(), 200, "{service}");
        let ready: Value = app
            .eventually(
                Duration::from_secs(30),
                "the service to be ready",
                || async {
                    let r = app.http.get(format!("{base}/readyz")).send().await.ok()?;
                    (r.status() == 200).then_some(())?;
                    r.json().await.ok()
                },
            )
            .await;
        assert_eq!(
            ready,
            json!({"status": "ready", "database": true, "broker": true, "consuming": true, "workers": true}),
            "{service}"
        );
    }

    let (status, _) = app
        .dispatch(json!({"project_id": project, "user_ref": "u1", "event": "trial_expired"}))
        .await;
    assert_eq!(status, 200);
    receiver
        .wait_for("/ok/ops", 1, Duration::from_secs(30))
        .await;

    let matcher = format!("http://127.0.0.1:{}/metrics", app.ops_port("matcher").await);
    let consumed = app
        .eventually(
            Duration::from_secs(10),
            "the matcher to count its message",
            || async {
                app.metric(
                    &matcher,
                    "beckon_messages_consumed_total{queue=\"matcher\"}",
                )
                .await
                .filter(|v| *v >= 1.0)
            },
        )
        .await;
    assert!(consumed >= 1.0);
    assert!(
        app.metric(&matcher, "beckon_handler_seconds_count")
            .await
            .unwrap_or(0.0)
            >= 1.0
    );
    // Each stage reports what waits in its queue: nothing, once the dispatch is done.
    let backlog = app
        .eventually(
            Duration::from_secs(10),
            "the matcher to report its backlog",
            || async {
                app.metric(&matcher, "beckon_queue_backlog{queue=\"matcher\"}")
                    .await
            },
        )
        .await;
    assert_eq!(backlog, 0.0);

    let webhooks = format!(
        "http://127.0.0.1:{}/metrics",
        app.ops_port("webhook-delivery").await
    );
    let delivered = app
        .eventually(
            Duration::from_secs(10),
            "a 2xx webhook attempt to be counted",
            || async {
                app.metric(&webhooks, "beckon_webhook_attempts_total{outcome=\"2xx\"}")
                    .await
            },
        )
        .await;
    assert!(delivered >= 1.0);

    let gateway = app.ops_url("/metrics");
    let dispatches = app.metric(&gateway, "beckon_http_requests_total{method=\"POST\",route=\"/api/v1/lifecycle/dispatch\",status=\"200\"}").await;
    assert_eq!(dispatches, Some(1.0));
    // Each service counts the statements it sent the database (what `make bench` divides by
    // the events): the gateway's commit of the trigger is at least a BEGIN, inserts and a COMMIT.
    for url in [&gateway, &matcher, &webhooks] {
        let statements = app.metric(url, "beckon_db_statements_total").await;
        assert!(
            statements.is_some_and(|n| n >= 1.0),
            "{url}: {statements:?}"
        );
    }
    assert!(
        app.metric(&gateway, "beckon_db_statements_total")
            .await
            .unwrap_or(0.0)
            >= 3.0
    );

    // Every metric says what it means; each process says what it is; sizes are counted in
    // buckets of sizes, not of seconds.
    let text = app.text(&matcher).await;
    for name in [
        "beckon_handler_seconds",
        "beckon_messages_consumed_total",
        "beckon_batch_size",
    ] {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no help for {name}:\n{text}"
        );
    }
    assert!(
        text.lines().any(|l| l.starts_with("beckon_build_info{")
            && l.contains("service=\"matcher\"")
            && l.ends_with(" 1")),
        "{text}"
    );
    assert!(
        text.contains("beckon_batch_size_bucket{consumer=\"matcher\",le=\"64\"}"),
        "{text}"
    );
    assert!(!text.contains("beckon_batch_size_bucket{consumer=\"matcher\",le=\"0.001\"}"));
    assert!(text.contains("beckon_handler_seconds_bucket{consumer=\"matcher\",type=\"event.received\",le=\"0.005\"}"), "{text}");
    // Every relay reads the outbox's age: nothing waits in it once the dispatch is done.
    let oldest = app
        .eventually(
            Duration::from_secs(10),
            "the gateway's relay to find the outbox empty",
            || async {
                app.metric(&gateway, "beckon_outbox_oldest_seconds")
                    .await
                    .filter(|age| *age == 0.0)
            },
        )
        .await;
    assert_eq!(oldest, 0.0);
    let gateway_text = app.text(&gateway).await;
    assert!(
        gateway_text.contains("service=\"ingest-api\"")
            && gateway_text.contains("# HELP beckon_http_requests_total "),
        "{gateway_text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_health_and_metrics_on_its_operations_port_only() {
    let app = TestApp::spawn().await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let ops = app.http.get(app.ops_url(path)).send().await.unwrap();
        assert_eq!(ops.status(), 200, "{path} on the operations port");
        let public = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(public.status(), 404, "{path} on the public port");
        let body: Value = public.json().await.unwrap();
        assert_eq!(body["code"], "not_found", "{path}");
    }
    // The public spec documents only what the public port serves.
    let spec: Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert!(spec["paths"].get(path).is_none(), "{path} in the spec");
    }
}

#[derive(diesel::QueryableByName, Debug)]
struct Held {
    #[diesel(sql_type = diesel::sql_types::Text)]
    application_name: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    connections: i64,
}

/// A DBA reading `pg_stat_activity` sees which service holds each connection, and no process
/// holds more than its `BECKON_DB_POOL_SIZE` (the connection budget is pods × pool size): the
/// webhook service's deliveries and consumers share one pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_names_its_connections_and_holds_at_most_its_pool() {
    use diesel_async::RunQueryDsl;
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    for i in 0..4 {
        app.create_webhook(project, json!({"url": receiver.url(&format!("/slow/{i}"))}))
            .await;
    }
    // Deliveries held open by a slow receiver while fan-outs keep arriving: the webhook
    // service wants many connections at once.
    let sends = (0..40).map(|i| {
        app.send_event(
            Some(project),
            json!({"event_name": "trial_expired", "user_info": {"contact_external_id": format!("u{i}")}}),
        )
    });
    for (status, body) in futures_util::future::join_all(sends).await {
        assert_eq!(status, 201, "{body}");
    }
    let mut most = std::collections::HashMap::<String, i64>::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while receiver.received("/slow/").len() < 160 && std::time::Instant::now() < deadline {
        let mut conn = app.store.conn().await.unwrap();
        let held: Vec<Held> = diesel::sql_query(
            "SELECT application_name, count(*) AS connections FROM pg_stat_activity \
             WHERE datname = current_database() GROUP BY application_name",
        )
        .load(&mut conn)
        .await
        .unwrap();
        for h in held {
            let seen = most.entry(h.application_name).or_default();
            *seen = (*seen).max(h.connections);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for service in ["ingest-api", "matcher", "invitation", "webhooks"] {
        let held = most.get(service).copied().unwrap_or_default();
        assert!(
            (1..=4).contains(&held),
            "{service} held {held} connections (pool size 4): {most:?}"
        );
    }
}
