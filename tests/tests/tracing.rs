//! OpenTelemetry traces over OTLP: one event, sent with the caller's `traceparent`, yields
//! spans from all four services under the caller's trace id, exported to a real OTLP/HTTP
//! endpoint on 127.0.0.1.

use beckon_e2e::receiver::{Received, Receiver};
use beckon_e2e::{Options, TestApp};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// Every exported span as (service name, span name, trace id, parent span id).
fn spans(exports: &[Received]) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for export in exports {
        let body = export.json();
        for resource in body["resourceSpans"].as_array().into_iter().flatten() {
            let service = resource["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .and_then(|a| a["value"]["stringValue"].as_str())
                .unwrap_or("")
                .to_owned();
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    let text = |k: &str| span[k].as_str().unwrap_or("").to_owned();
                    out.push((
                        service.clone(),
                        text("name"),
                        text("traceId").to_lowercase(),
                        text("parentSpanId").to_lowercase(),
                    ));
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_gateway_matcher_invitation_and_delivery() {
    let collector = Receiver::start().await;
    let app = TestApp::spawn_with(Options {
        env: vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url("/otlp")),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ],
        ..Options::default()
    })
    .await;
    let project = app.create_project().await;
    app.create_survey(project, json!({"trigger": {"events": ["trial_expired"]}}))
        .await;
    app.create_webhook(project, json!({"url": collector.url("/ok/hooks")}))
        .await;

    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let caller_span = "00f067aa0ba902b7";
    let response = app
        .http
        .post(app.url("/api/v1/events/send"))
        .header("x-api-key", &app.token)
        .header("x-team-id", project.to_string())
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&json!({"event_name": "trial_expired", "user_info": {"contact_external_id": "u1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let hooks = collector.wait_for("/ok/hooks", 1, WAIT).await;
    assert_eq!(hooks[0].json()["type"], "invitation.created");

    let wanted: BTreeSet<&str> = ["ingest-api", "matcher", "invitation", "webhook-delivery"].into();
    let by_service = app
        .eventually(WAIT, "spans of the trace from every service", || {
            let mut by_service: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
            for (service, name, trace, parent) in spans(&collector.received("/otlp/v1/traces")) {
                if trace == trace_id {
                    by_service.entry(service).or_default().push((name, parent));
                }
            }
            let services: BTreeSet<&str> = by_service.keys().map(String::as_str).collect();
            let done = services == wanted;
            std::future::ready(done.then_some(by_service))
        })
        .await;

    let gateway = &by_service["ingest-api"];
    assert!(
        gateway
            .iter()
            .any(|(name, parent)| name == "POST /api/v1/events/send" && parent == caller_span),
        "the gateway's server span is the caller's child: {gateway:?}"
    );
    for (service, queue) in [
        ("matcher", "matcher process"),
        ("invitation", "invitation process"),
        ("webhook-delivery", "webhooks process"),
    ] {
        let names: Vec<&str> = by_service[service]
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert!(names.contains(&queue), "{service}: {names:?}");
    }
    let delivery: Vec<&str> = by_service["webhook-delivery"]
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert!(
        delivery.contains(&"attempt"),
        "the first attempt is in the trace: {delivery:?}"
    );

    // Every exported span was accepted by the collector as OTLP/JSON.
    let exports = collector.received("/otlp/v1/traces");
    assert!(
        exports
            .iter()
            .all(|e| e.header("content-type").starts_with("application/json")),
        "{:?}",
        exports
            .iter()
            .map(|e| e.header("content-type"))
            .collect::<Vec<_>>()
    );
}
