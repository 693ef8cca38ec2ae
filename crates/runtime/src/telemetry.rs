//! Logs and traces.
//!
//! Logs are JSON lines on stdout; a line logged inside a traced span starts with its
//! `trace_id` and `span_id`, so a log search finds the trace and the trace its logs. Traces are off unless an OTLP endpoint is configured with
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
    let logs = log_layer(std::io::stdout).with_filter(filter());
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

/// The JSON log lines, written to `writer`.
fn log_layer<S, W>(writer: W) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let dispatch = Registered::default();
    let json = tracing_subscriber::fmt::format()
        .json()
        .with_current_span(false);
    tracing_subscriber::fmt::layer()
        .json()
        .event_format(WithTraceIds {
            json,
            dispatch: dispatch.clone(),
        })
        .with_writer(writer)
        .and_then(RegisterDispatch(dispatch))
}

/// The subscriber the log layer is part of, once it is one: the span layer's data is reached
/// through it. (Asking for the current dispatcher while an event is being logged would find
/// none: a subscriber's own callbacks do not see it as the current one.)
type Registered = std::sync::Arc<std::sync::OnceLock<tracing::dispatcher::WeakDispatch>>;

struct RegisterDispatch(Registered);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for RegisterDispatch {
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.0.set(subscriber.downgrade());
    }
}

/// A JSON line formatter that puts the current span's trace and span ids first, when the span
/// is traced.
struct WithTraceIds<F> {
    json: F,
    dispatch: Registered,
}

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for WithTraceIds<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        use tracing_subscriber::fmt::format::Writer;
        let context = ctx.lookup_current().and_then(|span| {
            let dispatch = self.dispatch.get()?.upgrade()?;
            tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)
        });
        let ids = context
            .as_ref()
            .map(|c| c.span().span_context().clone())
            .filter(|ids| ids.is_valid());
        let Some(ids) = ids else {
            return self.json.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.json.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(
                writer,
                "{{\"trace_id\":\"{}\",\"span_id\":\"{}\",{rest}",
                ids.trace_id(),
                ids.span_id()
            ),
            None => writer.write_str(&line),
        }
    }
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

    /// What a subscriber with the JSON log layer (and the span layer, when traced) writes.
    fn logged(traced: bool, log: impl FnOnce()) -> Vec<serde_json::Value> {
        use opentelemetry::trace::TracerProvider as _;
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = lines.clone();
        let writer = move || Sink(sink.clone());
        let provider = SdkTracerProvider::builder().build();
        let spans =
            traced.then(|| tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let subscriber = tracing_subscriber::registry()
            .with(log_layer(writer))
            .with(spans);
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_logged_in_a_traced_span_names_its_trace_and_span() {
        let mut own = String::new();
        let lines = logged(true, || {
            let span = tracing::info_span!("consume");
            follow(
                &span,
                Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            );
            span.in_scope(|| {
                own = traceparent().unwrap();
                tracing::info!(answer = 42, "inside");
            });
            tracing::info!("outside");
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        let (inside, outside) = (&lines[0], &lines[1]);
        assert_eq!(inside["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        let span_id = inside["span_id"].as_str().unwrap();
        assert_eq!(own.split('-').nth(2), Some(span_id), "the span's own id");
        assert_eq!(inside["fields"]["message"], "inside");
        assert_eq!(inside["fields"]["answer"], 42);
        assert!(outside.get("trace_id").is_none(), "{outside}");
    }

    #[test]
    fn lines_carry_no_trace_ids_when_tracing_is_off() {
        let lines = logged(false, || {
            tracing::info_span!("work").in_scope(|| tracing::info!("inside"));
        });
        assert!(lines[0].get("trace_id").is_none(), "{}", lines[0]);
        assert_eq!(lines[0]["fields"]["message"], "inside");
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
