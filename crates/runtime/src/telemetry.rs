//! Logs and traces.
//!
//! Logs are JSON lines on stdout. Traces are off unless an OTLP endpoint is configured with
//! the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); the exporter then also honours
//! `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`, the default, or `http/json`),
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG` and
//! `OTEL_BSP_*`. Spans are batched and exported from a thread of their own, so a slow
//! collector never slows the work.
//!
//! Across the broker the W3C trace context travels as a `traceparent` message header:
//! [`traceparent`] reads it off the current span when publishing, [`follow`] makes a
//! consumer's span its child. With tracing off, both do nothing.

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::collections::HashMap;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The header (AMQP and HTTP) that carries the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// Flushes the spans still buffered when dropped; keep it alive for the life of `main`.
#[must_use = "dropping the guard at once stops the trace export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            tracing::warn!(error = %err, "could not flush the last spans");
        }
    }
}

/// Whether the environment names an OTLP endpoint for traces.
fn otlp_configured() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// JSON logs on stdout, filtered by `RUST_LOG` (default `info`), each line naming `service`;
/// and, when configured, spans exported over OTLP under `service.name = service`.
pub fn init(service: &'static str) -> Telemetry {
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(false)
        .with_filter(filter());
    let (provider, error) = if otlp_configured() {
        crate::install_crypto_provider();
        match tracer_provider(service) {
            Ok(provider) => (Some(provider), None),
            Err(err) => (None, Some(err)),
        }
    } else {
        (None, None)
    };
    let spans = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("beckon"))
            .with_filter(filter())
    });
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init();
    count_panics();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    tracing::info!(
        service,
        version = env!("CARGO_PKG_VERSION"),
        tracing = provider.is_some(),
        "starting"
    );
    if let Some(err) = error {
        tracing::error!(error = %err, "could not set up the OTLP trace exporter; traces are off");
    }
    Telemetry { provider }
}

/// Every panic — in a request handler (answered 500, the server goes on serving), in a
/// background task (supervised and restarted), anywhere — is logged as a JSON line with
/// where it happened and counted in `beckon_panics_total`, then reported as before (to
/// stderr, with a backtrace if `RUST_BACKTRACE` asks for one). So a panic shows in the
/// metrics and the logs even where nothing else notices it.
pub fn count_panics() {
    let before = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        metrics::counter!("beckon_panics_total").increment(1);
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(panic = %message, %location, "a panic was caught");
        before(info);
    }));
}

fn tracer_provider(
    service: &'static str,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .with_attribute(opentelemetry::KeyValue::new("service.namespace", "beckon"))
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The W3C `traceparent` of the current span, when it is being traced.
pub fn traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes `span` a child of the remote span `traceparent` names. A missing or malformed value
/// leaves `span` the root of a new trace.
pub fn follow(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(value) = traceparent else { return };
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), value.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_counted() {
        count_panics();
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let metrics = recorder.handle();
        let _local = metrics::set_default_local_recorder(&recorder);
        assert!(std::panic::catch_unwind(|| panic!("on purpose")).is_err());
        let rendered = metrics.render();
        assert!(rendered.contains("beckon_panics_total 1"), "{rendered}");
    }

    #[test]
    fn untraced_spans_have_no_traceparent() {
        // No OpenTelemetry layer is installed in unit tests: nothing to propagate.
        let span = tracing::info_span!("work");
        let _entered = span.enter();
        assert_eq!(traceparent(), None);
        follow(&span, Some("not a traceparent"));
        follow(&span, None);
    }

    #[test]
    fn a_remote_parent_becomes_the_spans_parent() {
        use opentelemetry::trace::TracerProvider as _;
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            let span = tracing::info_span!("consume");
            follow(&span, Some(parent));
            let own = span.in_scope(|| traceparent().expect("a traced span has a traceparent"));
            assert!(
                own.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
                "{own}"
            );
            assert!(
                !own.contains("00f067aa0ba902b7"),
                "a child has its own span id: {own}"
            );

            let fresh = tracing::info_span!("fresh");
            follow(&fresh, Some("00-zz-yy-01"));
            let root = fresh.in_scope(|| traceparent().expect("a new trace"));
            assert!(!root.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{root}");
        });
    }
}
