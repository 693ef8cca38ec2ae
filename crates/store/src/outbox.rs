//! The outbox: envelopes committed in the same transaction as the work that emits them.
//!
//! After commit the consumer publishes them at once and deletes the rows; a crash in between
//! leaves the rows, and the relay publishes whatever is older than a grace period. Consumers
//! are idempotent on the envelope id, so a row published twice does no harm.

use crate::StoreError;
use crate::cached::Cached;
use crate::schema::outbox;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use uuid::Uuid;

/// A message to publish.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = outbox)]
pub struct OutboxMessage {
    pub id: i64,
    pub envelope_id: Uuid,
    pub exchange: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    /// The W3C trace context of the work that emitted it, published as a header.
    pub traceparent: Option<String>,
}

/// Adds a message; returns it with its row id.
pub async fn enqueue(
    conn: &mut AsyncPgConnection,
    envelope_id: Uuid,
    exchange: &str,
    routing_key: &str,
    body: Vec<u8>,
    traceparent: Option<&str>,
) -> Result<OutboxMessage, StoreError> {
    Ok(diesel::insert_into(outbox::table)
        .values((
            outbox::envelope_id.eq(envelope_id),
            outbox::exchange.eq(exchange),
            outbox::routing_key.eq(routing_key),
            outbox::body.eq(body),
            outbox::traceparent.eq(traceparent),
        ))
        .returning(OutboxMessage::as_returning())
        .get_result(conn)
        .await?)
}

/// A message to add to the outbox.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = outbox)]
pub struct NewOutboxMessage<'a> {
    pub envelope_id: Uuid,
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub body: &'a [u8],
    pub traceparent: Option<&'a str>,
}

/// Adds several messages in one statement; returns them with their row ids. The future
/// borrows the connection shared, so it can be awaited together with other statements, which
/// the connection pipelines.
pub fn enqueue_many<'c>(
    conn: &'c AsyncPgConnection,
    messages: &[NewOutboxMessage<'_>],
) -> impl Future<Output = Result<Vec<OutboxMessage>, StoreError>> + Send + use<'c> {
    let sent = (!messages.is_empty()).then(|| {
        Cached(
            diesel::insert_into(outbox::table)
                .values(messages)
                .returning(OutboxMessage::as_returning()),
        )
        .get_results(&mut { conn })
    });
    crate::pipelined::rows(sent)
}

/// Deletes published messages.
pub async fn delete(conn: &mut AsyncPgConnection, ids: &[i64]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    diesel::delete(outbox::table.filter(outbox::id.eq_any(ids)))
        .execute(conn)
        .await?;
    Ok(())
}

/// Locks up to `limit` messages older than `older_than`, not parked, that no one else holds.
/// Call inside a transaction; publish, delete (or park), commit.
pub async fn claim_stale(
    conn: &mut AsyncPgConnection,
    older_than: OffsetDateTime,
    limit: i64,
) -> Result<Vec<OutboxMessage>, StoreError> {
    Ok(outbox::table
        .filter(outbox::created_at.lt(older_than))
        .filter(
            outbox::not_before
                .is_null()
                .or(outbox::not_before.le(diesel::dsl::now)),
        )
        .order(outbox::id.asc())
        .limit(limit)
        .for_update()
        .skip_locked()
        .select(OutboxMessage::as_select())
        .load(conn)
        .await?)
}

/// How long the oldest message still in the outbox has waited, in seconds (zero when it is
/// empty). Rows are published and cleared within a second or so; one that stays (the broker
/// refuses it, or publishing has stalled) shows here. Reads one row through the primary key.
pub async fn oldest_age(conn: &mut AsyncPgConnection) -> Result<f64, StoreError> {
    let oldest: Option<OffsetDateTime> = outbox::table
        .order(outbox::id.asc())
        .select(outbox::created_at)
        .first(conn)
        .await
        .optional()?;
    Ok(oldest.map_or(0.0, |at| {
        (OffsetDateTime::now_utc() - at).as_seconds_f64().max(0.0)
    }))
}

/// Sets a message the broker refused aside: it is tried again after a pause that doubles with
/// each refusal, from 10 s to an hour, so it never holds up the messages behind it.
pub async fn park(conn: &mut AsyncPgConnection, id: i64) -> Result<(), StoreError> {
    diesel::sql_query(
        "UPDATE outbox SET attempts = attempts + 1, \
           not_before = now() + least(interval '10 seconds' * power(2, least(attempts, 10)), \
                                      interval '1 hour') \
         WHERE id = $1",
    )
    .bind::<diesel::sql_types::BigInt, _>(id)
    .execute(conn)
    .await?;
    Ok(())
}
