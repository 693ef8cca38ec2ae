//! Retention: tables that only grow are swept by age, in small batches so no statement holds
//! many locks or runs long.

use crate::StoreError;
use diesel::sql_types::{BigInt, Double};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::time::Duration;

/// How long each kind of record is kept.
#[derive(Debug, Clone)]
pub struct Retention {
    /// Webhook attempt logs.
    pub attempts: Duration,
    /// Processed envelope ids. Keep them longer than any message may be redelivered or
    /// replayed, or a late replay would be handled again.
    pub processed: Duration,
    /// Finished triggers (completed, failed, cancelled) with their per-survey outcomes.
    pub triggers: Duration,
}

/// What one sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub attempts: usize,
    pub processed: usize,
    pub triggers: usize,
    pub idempotency_keys: usize,
}

impl Swept {
    pub fn total(&self) -> usize {
        self.attempts + self.processed + self.triggers + self.idempotency_keys
    }
}

async fn delete_batch(
    conn: &mut AsyncPgConnection,
    statement: &str,
    age: Duration,
    batch: i64,
) -> Result<usize, StoreError> {
    Ok(diesel::sql_query(statement)
        .bind::<Double, _>(age.as_secs_f64())
        .bind::<BigInt, _>(batch)
        .execute(conn)
        .await?)
}

/// Deletes up to `batch` rows of each kind that are older than their retention.
pub async fn sweep(
    conn: &mut AsyncPgConnection,
    retention: &Retention,
    batch: i64,
) -> Result<Swept, StoreError> {
    let attempts = delete_batch(
        conn,
        "DELETE FROM webhook_attempts WHERE id IN (SELECT id FROM webhook_attempts \
         WHERE attempted_at < now() - make_interval(secs => $1) ORDER BY id LIMIT $2)",
        retention.attempts,
        batch,
    )
    .await?;
    let processed = delete_batch(
        conn,
        "DELETE FROM processed_envelopes WHERE ctid IN (SELECT ctid FROM processed_envelopes \
         WHERE processed_at < now() - make_interval(secs => $1) LIMIT $2)",
        retention.processed,
        batch,
    )
    .await?;
    let triggers = delete_batch(
        conn,
        "DELETE FROM triggers WHERE id IN (SELECT id FROM triggers \
         WHERE status IN ('completed', 'failed', 'cancelled') \
         AND coalesce(completed_at, created_at) < now() - make_interval(secs => $1) LIMIT $2)",
        retention.triggers,
        batch,
    )
    .await?;
    let idempotency_keys = crate::idempotency::sweep(conn, batch).await?;
    Ok(Swept {
        attempts,
        processed,
        triggers,
        idempotency_keys,
    })
}
