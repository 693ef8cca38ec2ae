//! Retention: tables that only grow are swept by age, in small batches so no statement holds
//! many locks or runs long.

use crate::StoreError;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Double, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::time::Duration;
use time::OffsetDateTime;

/// How long each kind of record is kept.
#[derive(Debug, Clone)]
pub struct Retention {
    /// Webhook attempt logs. At most `webhook_history`: attempts go with their message.
    pub attempts: Duration,
    /// Webhook message bodies (sealed; they carry magic links and personal data). Past it a
    /// message's body is erased, unless a delivery of it is still pending; the message, its
    /// deliveries and attempts stay. At most `webhook_history`.
    pub webhook_payloads: Duration,
    /// Webhook messages, with their deliveries and attempts.
    pub webhook_history: Duration,
    /// Processed envelope ids. Keep them longer than any message may be redelivered or
    /// replayed, or a late replay would be handled again.
    pub processed: Duration,
    /// Finished triggers (completed, failed, cancelled) with their per-survey outcomes.
    pub triggers: Duration,
}

/// Two periods that cannot hold together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RetentionError {
    /// A body cannot be kept longer than the message that holds it.
    #[error(
        "webhook payloads would be kept {} s, longer than webhook history ({} s): a body cannot outlive its message",
        .payloads.as_secs(),
        .history.as_secs()
    )]
    PayloadsOutliveHistory {
        payloads: Duration,
        history: Duration,
    },
    /// Attempts are deleted with their message, so a longer period would never be honoured.
    #[error(
        "webhook attempts would be kept {} s, longer than webhook history ({} s): attempts are deleted with their message",
        .attempts.as_secs(),
        .history.as_secs()
    )]
    AttemptsOutliveHistory {
        attempts: Duration,
        history: Duration,
    },
}

impl Retention {
    /// Refuses periods that contradict each other.
    pub fn validate(&self) -> Result<(), RetentionError> {
        let history = self.webhook_history;
        if self.webhook_payloads > history {
            return Err(RetentionError::PayloadsOutliveHistory {
                payloads: self.webhook_payloads,
                history,
            });
        }
        if self.attempts > history {
            return Err(RetentionError::AttemptsOutliveHistory {
                attempts: self.attempts,
                history,
            });
        }
        Ok(())
    }
}

/// What one sweep erased and deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub attempts: usize,
    pub processed: usize,
    pub triggers: usize,
    pub idempotency_keys: usize,
    /// Webhook message bodies erased (the messages stay).
    pub webhook_payloads: usize,
    /// Webhook messages deleted, with their deliveries and attempts.
    pub webhook_messages: usize,
}

impl Swept {
    pub fn total(&self) -> usize {
        self.attempts
            + self.processed
            + self.triggers
            + self.idempotency_keys
            + self.webhook_payloads
            + self.webhook_messages
    }
}

/// Runs `statement`, a delete or an erasure of at most `$2` rows older than `$1` seconds.
async fn by_age(
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

/// Where a run of sweeps has got to in the walk over webhook bodies. Bodies a pending delivery
/// still needs are passed over, not erased; starting each batch where the last one ended means
/// a run walks past them once, not once per batch. Start every run with a new one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Walked {
    payloads_from: Option<OffsetDateTime>,
}

#[derive(QueryableByName)]
struct ErasedAt {
    #[diesel(sql_type = Timestamptz)]
    created_at: OffsetDateTime,
}

/// Deletes up to `batch` rows of each kind that are older than their retention, and erases up
/// to `batch` webhook bodies past theirs, from where `walked` says the run has got to.
pub async fn sweep(
    conn: &mut AsyncPgConnection,
    retention: &Retention,
    batch: i64,
    walked: &mut Walked,
) -> Result<Swept, StoreError> {
    let attempts = by_age(
        conn,
        "DELETE FROM webhook_attempts WHERE id IN (SELECT id FROM webhook_attempts \
         WHERE attempted_at < now() - make_interval(secs => $1) ORDER BY id LIMIT $2)",
        retention.attempts,
        batch,
    )
    .await?;
    let processed = by_age(
        conn,
        "DELETE FROM processed_envelopes WHERE ctid IN (SELECT ctid FROM processed_envelopes \
         WHERE processed_at < now() - make_interval(secs => $1) LIMIT $2)",
        retention.processed,
        batch,
    )
    .await?;
    let triggers = by_age(
        conn,
        "DELETE FROM triggers WHERE id IN (SELECT id FROM triggers \
         WHERE status IN ('completed', 'failed', 'cancelled') \
         AND coalesce(completed_at, created_at) < now() - make_interval(secs => $1) LIMIT $2)",
        retention.triggers,
        batch,
    )
    .await?;
    let idempotency_keys = crate::idempotency::sweep(conn, batch).await?;
    // The webhook statements pick their batch as an array, so the rows are then found by
    // primary key: `id IN (subquery)` may be planned as a hash join over the whole table.
    //
    // Oldest first, through `webhook_messages_unerased` (only bodies still held are in it). A
    // message with a pending delivery (in flight, or waiting for a retry, or for its disabled
    // subscription to come back) keeps its body: that delivery still has to send it. One
    // whose deliveries all ended (succeeded, failed, skipped) loses it; a skipped delivery can
    // then no longer be recovered.
    let erased: Vec<ErasedAt> = diesel::sql_query(
        "UPDATE webhook_messages SET body_encrypted = NULL, payload_erased_at = now() \
         WHERE id = ANY(ARRAY(SELECT m.id FROM webhook_messages m \
           WHERE m.body_encrypted IS NOT NULL \
             AND m.created_at < now() - make_interval(secs => $1) \
             AND m.created_at >= $3 \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
                             WHERE d.message_id = m.id AND d.status = 'pending') \
           ORDER BY m.created_at LIMIT $2)) \
         AND body_encrypted IS NOT NULL \
         RETURNING created_at",
    )
    .bind::<Double, _>(retention.webhook_payloads.as_secs_f64())
    .bind::<BigInt, _>(batch)
    .bind::<Timestamptz, _>(walked.payloads_from.unwrap_or(OffsetDateTime::UNIX_EPOCH))
    .load(conn)
    .await?;
    if let Some(last) = erased.iter().map(|e| e.created_at).max() {
        walked.payloads_from = Some(last);
    }
    let webhook_payloads = erased.len();
    // Oldest first, through `webhook_messages_age`; deliveries and attempts go with them
    // (ON DELETE CASCADE, by `webhook_deliveries`' unique (message_id, …) index and
    // `webhook_attempts_delivery`). Whatever their state: the history period is the bound on
    // how long anything about an event is kept.
    let webhook_messages = by_age(
        conn,
        "DELETE FROM webhook_messages WHERE id = ANY(ARRAY(SELECT id FROM webhook_messages \
         WHERE created_at < now() - make_interval(secs => $1) ORDER BY created_at LIMIT $2))",
        retention.webhook_history,
        batch,
    )
    .await?;
    Ok(Swept {
        attempts,
        processed,
        triggers,
        idempotency_keys,
        webhook_payloads,
        webhook_messages,
    })
}
