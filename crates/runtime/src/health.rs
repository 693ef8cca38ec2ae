//! Every service's operations endpoints: `/healthz` (alive), `/readyz` (its dependencies are
//! reachable and its consumers consuming) and Prometheus `/metrics`.

use actix_web::{App, HttpResponse, HttpServer, web};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use tokio_util::sync::CancellationToken;

/// The process's metrics recorder, installed on first use.
pub fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
                .ok()
                .and_then(|b| b.install_recorder().ok())
                // A recorder already installed (tests): keep a handle that renders nothing.
                .unwrap_or_else(|| PrometheusBuilder::new().build_recorder().handle())
        })
        .clone()
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
