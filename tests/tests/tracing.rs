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

    // Each service's spans of the caller's trace, as (span name, parent span id).
    let of_trace = || {
        let mut by_service: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
        for (service, name, trace, parent) in spans(&collector.received("/otlp/v1/traces")) {
            if trace == trace_id {
                by_service
                    .entry(service)
                    .or_default()
                    .insert((name, parent));
            }
        }
        by_service
    };
    // The spans that must be there: the gateway's server span as the caller's child, each
    // consumer's span, and the first webhook attempt.
    let wanted = [
        ("ingest-api", "POST /api/v1/events/send", Some(caller_span)),
        ("matcher", "matcher process", None),
        ("invitation", "invitation process", None),
        ("webhook-delivery", "webhooks process", None),
        ("webhook-delivery", "attempt", None),
    ];
    let missing = |by_service: &BTreeMap<String, BTreeSet<(String, String)>>| -> Vec<String> {
        wanted
            .iter()
            .filter(|(service, name, parent)| {
                !by_service.get(*service).is_some_and(|spans| {
                    spans
                        .iter()
                        .any(|(n, p)| n == name && parent.is_none_or(|want| p == want))
                })
            })
            .map(|(service, name, _)| format!("{service}: {name}"))
            .collect()
    };
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let by_service = of_trace();
        let missing = missing(&by_service);
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "spans missing from trace {trace_id}: {missing:?}; seen: {by_service:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The services' log lines logged inside the trace's spans carry its id, so a log search
    // finds them from the trace (and the trace from a line).
    let mut logged_by = BTreeSet::new();
    for entry in std::fs::read_dir(app.log_dir()).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let traced = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["trace_id"] == trace_id.as_str())
            .inspect(|l| assert_eq!(l["span_id"].as_str().map(str::len), Some(16), "{l}"))
            .count();
        if traced > 0 {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            logged_by.insert(name.rsplit_once('-').unwrap().0.to_owned());
        }
    }
    for service in ["matcher", "invitation", "webhook-delivery"] {
        assert!(
            logged_by.contains(service),
            "{service}'s lines: {logged_by:?}"
        );
    }

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
