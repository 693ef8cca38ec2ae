//! Liveness and readiness for orchestrators.

use crate::AppState;
use actix_web::{HttpResponse, web};
use serde_json::json;

/// Alive: the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready: the database answers, the broker connection is up and the reply queue is consumed.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Ready"),
    (status = 503, description = "A dependency is unavailable")
))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let database = state.store.ping().await;
    let broker = state.publisher.ensure_connected().await;
    let replies = state.replies.is_ready();
    let body = json!({
        "status": if database && broker && replies { "ready" } else { "unavailable" },
        "database": database,
        "broker": broker,
        "reply_queue": replies,
    });
    if database && broker && replies {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
