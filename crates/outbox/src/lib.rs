#![doc = include_str!("../README.md")]

mod cleaner;
mod relay;

pub use cleaner::OutboxCleaner;
pub use relay::{relay_once, run_relay};

use beckon_bus::Publisher;
use beckon_bus::publisher::Outgoing;
use beckon_runtime::error_chain;
use beckon_store::outbox;
use uuid::Uuid;

/// Publishes committed outbox rows, all at once on the one channel, and waits for their
/// confirms together; hands those the broker confirmed to the cleaner. What fails stays in
/// the outbox for the relay, so a caller never needs to handle the error.
pub async fn flush(publisher: &Publisher, cleaner: &OutboxCleaner, rows: &[outbox::OutboxMessage]) {
    let results =
        futures_util::future::join_all(rows.iter().map(|row| publish_row(publisher, row))).await;
    let mut published = Vec::with_capacity(rows.len());
    for (row, result) in rows.iter().zip(results) {
        match result {
            Ok(()) => published.push(row.id),
            // Committed in the outbox: the relay publishes it once the broker is back.
            Err(err) => {
                tracing::warn!(error = %error_chain(&err), "publish after commit failed; left to the relay");
            }
        }
    }
    cleaner.published(published);
}

/// Publishes one committed outbox row, confirmed.
pub async fn publish_row(
    publisher: &Publisher,
    row: &outbox::OutboxMessage,
) -> Result<(), beckon_bus::BusError> {
    publish(
        publisher,
        row.envelope_id,
        &row.exchange,
        &row.routing_key,
        &row.body,
        row.traceparent.as_deref(),
    )
    .await
}

/// Publishes one envelope, confirmed, under its id and with its trace context.
pub async fn publish(
    publisher: &Publisher,
    envelope_id: Uuid,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    traceparent: Option<&str>,
) -> Result<(), beckon_bus::BusError> {
    publisher
        .publish(&Outgoing {
            exchange,
            routing_key,
            body,
            message_id: Some(envelope_id.to_string()),
            headers: beckon_bus::headers::traced(traceparent),
            // Replies go to a gateway's private queue that may be gone: dropping them then is
            // right, the outcome is recorded. Pipeline envelopes must reach a queue.
            mandatory: !exchange.is_empty(),
        })
        .await
}
