//! Every service's operations endpoints: `/healthz` (alive), `/readyz` (its dependencies are
//! reachable and its consumers consuming) and Prometheus `/metrics`.

use actix_web::{App, HttpResponse, HttpServer, web};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use tokio_util::sync::CancellationToken;

/// Buckets of every `*_seconds` histogram.
const SECONDS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets of every `*_size` histogram (how many items a group or batch held).
const SIZES: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// Buckets of every `*_lag_seconds` histogram (how late something happened: up to an hour).
const LAG: [f64; 12] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// The process's metrics recorder, installed on first use, with the help text of every
/// metric and `beckon_build_info`.
pub fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let installed = PrometheusBuilder::new()
                .set_buckets(&SECONDS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_size".into()), &SIZES))
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_lag_seconds".into()), &LAG)
                })
                .ok()
                .and_then(|b| b.install_recorder().ok());
            match installed {
                Some(handle) => {
                    describe();
                    metrics::gauge!(
                        "beckon_build_info",
                        "service" => process_name(),
                        "version" => env!("CARGO_PKG_VERSION"),
                    )
                    .set(1.0);
                    handle
                }
                // A recorder already installed (tests): keep a handle that renders nothing.
                None => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

/// The name this process runs under (`matcher`, `ingest-api`, ...).
fn process_name() -> String {
    std::env::args()
        .next()
        .as_deref()
        .map(std::path::Path::new)
        .and_then(|p| p.file_name())
        .map_or_else(|| "beckon".to_owned(), |n| n.to_string_lossy().into_owned())
}

/// What each metric means, served as its `# HELP` line.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        "beckon_build_info",
        "Always 1; its labels name the service and its version."
    );
    describe_counter!(
        "beckon_messages_consumed_total",
        "Messages a consumer took from its queue."
    );
    describe_counter!(
        "beckon_messages_acked_total",
        "Messages handled and acknowledged."
    );
    describe_counter!(
        "beckon_messages_retried_total",
        "Messages given back to their queue to be tried again, using one of their deliveries."
    );
    describe_counter!(
        "beckon_messages_dead_lettered_total",
        "Messages moved to a dead-letter queue, by reason (delivery_limit when the broker did it)."
    );
    describe_counter!(
        "beckon_messages_held_total",
        "Deliveries held unacknowledged through a database outage instead of being retried."
    );
    describe_counter!(
        "beckon_messages_released_total",
        "Held deliveries given back uncounted because their consumer stopped."
    );
    describe_counter!(
        "beckon_handler_retries_total",
        "Tries in place of a message failing while the database answers (locks, deadlocks, timeouts)."
    );
    describe_histogram!(
        "beckon_handler_seconds",
        metrics::Unit::Seconds,
        "Time to handle a message, commit and publish included."
    );
    describe_histogram!(
        "beckon_batch_size",
        "Envelopes a consumer handled in one batch."
    );
    describe_gauge!(
        "beckon_queue_backlog",
        "Messages waiting in each consumer's work queue, read every 5 s."
    );
    describe_gauge!(
        "beckon_database_up",
        "The last probe of the database: 1 answers, 0 away."
    );
    describe_counter!(
        "beckon_db_statements_total",
        "Statements sent to PostgreSQL, BEGIN and COMMIT included."
    );
    describe_counter!(
        "beckon_outbox_parked_total",
        "Outbox messages the broker refused, set aside and retried later."
    );
    describe_gauge!(
        "beckon_outbox_oldest_seconds",
        metrics::Unit::Seconds,
        "How long the oldest message still in the outbox has waited (0 when it is empty)."
    );
    describe_histogram!(
        "beckon_scheduler_lag_seconds",
        metrics::Unit::Seconds,
        "How late each scheduled trigger fired: from when it was due to the scheduler pass that fired it."
    );
    describe_counter!(
        "beckon_task_restarts_total",
        "Supervised background tasks restarted after a panic or an early return."
    );
    describe_counter!("beckon_panics_total", "Panics anywhere in the process.");
    describe_counter!(
        "beckon_http_requests_total",
        "Gateway requests, by method, route pattern and status."
    );
    describe_histogram!(
        "beckon_http_request_seconds",
        metrics::Unit::Seconds,
        "Gateway request duration, by method and route pattern."
    );
    describe_histogram!(
        "beckon_intake_group_size",
        "Accepted events committed in one transaction."
    );
    describe_gauge!(
        "beckon_intake_backlog",
        "The matcher's backlog as the gateway last read it (with BECKON_SHED_BACKLOG)."
    );
    describe_counter!(
        "beckon_intake_shed_total",
        "Requests refused with 429 because the backlog was past BECKON_SHED_BACKLOG."
    );
    describe_counter!(
        "beckon_rate_limit_untracked_total",
        "Requests let through untracked because a rate limit's table was full."
    );
    describe_counter!(
        "beckon_webhook_attempts_total",
        "Webhook attempts, by outcome (2xx, 4xx, 5xx, timeout, error)."
    );
    describe_histogram!(
        "beckon_webhook_attempt_seconds",
        metrics::Unit::Seconds,
        "Webhook attempt duration."
    );
    describe_histogram!(
        "beckon_webhook_record_group_size",
        "Finished webhook attempts recorded in one transaction."
    );
    describe_gauge!(
        "beckon_webhook_oldest_pending_seconds",
        metrics::Unit::Seconds,
        "Age of the oldest webhook delivery still waiting."
    );
    describe_counter!(
        "beckon_webhook_notices_total",
        "webhook.failing and webhook.disabled notices sent, by type."
    );
    describe_counter!(
        "beckon_triggers_stalled_total",
        "Triggers the stalled-trigger sweep sent again (redriven) or failed."
    );
    describe_counter!(
        "beckon_retention_swept_total",
        "Rows the retention sweep deleted or webhook bodies it erased, by kind."
    );
}

/// The `/metrics` response.
pub fn metrics_response() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics().render())
}

/// Named checks; the service is ready when all pass.
pub type Checks =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Vec<(&'static str, bool)>> + Send>> + Send + Sync>;

async fn readyz(checks: web::Data<Checks>) -> HttpResponse {
    let results = (checks.get_ref())().await;
    let ready = results.iter().all(|(_, ok)| *ok);
    let mut body = serde_json::Map::new();
    body.insert(
        "status".into(),
        if ready { "ready" } else { "unavailable" }.into(),
    );
    for (name, ok) in results {
        body.insert(name.into(), ok.into());
    }
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Serves the operations endpoints on `addr` until `cancel` fires. Returns the bound port.
pub fn serve(addr: &str, checks: Checks, cancel: CancellationToken) -> std::io::Result<u16> {
    let checks = web::Data::new(checks);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(checks.clone())
            .route(
                "/healthz",
                web::get()
                    .to(|| async { HttpResponse::Ok().json(serde_json::json!({"status": "ok"})) }),
            )
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(|| async { metrics_response() }))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(addr)?;
    let port = server.addrs().first().map_or(0, |a| a.port());
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    tokio::spawn(async move {
        cancel.cancelled().await;
        handle.stop(true).await;
    });
    tracing::info!(port, "operations endpoints listening");
    Ok(port)
}
