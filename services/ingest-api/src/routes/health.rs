//! Liveness, readiness and metrics for orchestrators, on the operations port
//! (`BECKON_HEALTH_ADDR`), never on the public one.

use crate::AppState;
use actix_web::{HttpResponse, web};
use serde_json::json;
use std::time::Duration;

/// The operations endpoints: `/healthz`, `/readyz`, `/metrics`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route(
            "/metrics",
            web::get().to(|| async { beckon_runtime::health::metrics_response() }),
        );
}

/// Alive: the process serves HTTP.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The longest readiness waits to learn whether the broker is reachable. The broker's state
/// is information, not a condition, so a probe never waits out a hung connection attempt.
const BROKER_CHECK: Duration = Duration::from_millis(500);

/// Ready: the gateway can serve — the database answers and its background workers (the intake
/// that commits accepted events, the outbox relay) run.
///
/// The broker is not a condition: while it is away `events/send` still commits to the outbox
/// (the relay publishes once it is back) and dispatch answers 503 `broker_unavailable`, so
/// taking every gateway out of rotation would turn a broker outage into a full outage. Its
/// state (`broker`, `reply_queue`) is reported for information.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let broker = async {
        tokio::time::timeout(BROKER_CHECK, state.publisher.ensure_connected())
            .await
            .unwrap_or(false)
    };
    let (database, broker) = tokio::join!(state.store.ping(), broker);
    let (workers, tasks) = beckon_runtime::supervise::all_running(&state.tasks);
    let ready = database && workers;
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "database": database,
        "workers": tasks
            .into_iter()
            .map(|(name, up)| (name.to_owned(), up.into()))
            .collect::<serde_json::Map<_, _>>(),
        "broker": broker,
        "reply_queue": state.replies.is_ready(),
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
