//! The outbox relay: publishes what a crash left committed but unpublished.

use crate::publish_row;
use beckon_bus::{BusError, Publisher};
use beckon_runtime::error_chain;
use beckon_store::{Store, StoreError, outbox};
use diesel_async::AsyncConnection;
use std::time::Duration;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// Every `interval`, publishes outbox rows older than `grace` (rows younger than that are
/// still being published by the consumer that wrote them), in batches, until `cancel` fires.
pub async fn run_relay(
    store: Store,
    publisher: Publisher,
    grace: Duration,
    interval: Duration,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        match relay_once(&store, &publisher, grace).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(published = n, "relayed outbox messages"),
            Err(err) => tracing::warn!(error = %error_chain(&err), "outbox relay pass failed"),
        }
        report_oldest(&store).await;
    }
}

/// Sets `beckon_outbox_oldest_seconds`: how long the oldest unpublished message has waited.
async fn report_oldest(store: &Store) {
    let age = async {
        let mut conn = store.conn().await?;
        outbox::oldest_age(&mut conn).await
    };
    match age.await {
        Ok(seconds) => metrics::gauge!("beckon_outbox_oldest_seconds").set(seconds),
        // The relay pass has just said so, if the database is away.
        Err(err) => tracing::debug!(error = %error_chain(&err), "could not read the outbox's age"),
    }
}

/// One pass; returns how many messages were published.
pub async fn relay_once(
    store: &Store,
    publisher: &Publisher,
    grace: Duration,
) -> Result<usize, StoreError> {
    let mut conn = store.conn().await?;
    let cutoff = OffsetDateTime::now_utc() - grace;
    conn.transaction::<_, StoreError, _>(async |conn| {
        // Rows stay locked while they are published, so two relays never send the same batch.
        let rows = outbox::claim_stale(conn, cutoff, 100).await?;
        let mut done = Vec::with_capacity(rows.len());
        for row in &rows {
            match publish_row(publisher, row).await {
                Ok(()) => done.push(row.id),
                // The broker refused this message (no queue takes it, or it nacked): set it
                // aside for a while and go on with the others.
                Err(err @ BusError::Nacked { .. }) => {
                    tracing::error!(envelope_id = %row.envelope_id, routing_key = %row.routing_key, error = %error_chain(&err), "the broker refused an outbox message; parked");
                    metrics::counter!("beckon_outbox_parked_total").increment(1);
                    outbox::park(conn, row.id).await?;
                }
                // The broker is unreachable: every other row would fail the same way.
                Err(err) => {
                    tracing::warn!(error = %error_chain(&err), "relay could not publish");
                    break;
                }
            }
        }
        outbox::delete(conn, &done).await?;
        Ok(done.len())
    })
    .await
}
