//! Envelope ids a consumer has handled: the idempotency record, written in the same
//! transaction as the work.

use crate::StoreError;
use crate::cached::Cached;
use crate::schema::processed_envelopes;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// Records that `consumer` handled `envelope_id`; `false` when it already had (a duplicate).
pub async fn mark(
    conn: &mut AsyncPgConnection,
    consumer: &str,
    envelope_id: Uuid,
) -> Result<bool, StoreError> {
    let inserted = diesel::insert_into(processed_envelopes::table)
        .values((
            processed_envelopes::consumer.eq(consumer),
            processed_envelopes::envelope_id.eq(envelope_id),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

/// Records that `consumer` handled each of `envelope_ids`, in one statement; returns the ids
/// that were new (the rest were handled before). Ids are inserted in sorted order, so two
/// batches sharing ids wait on each other instead of deadlocking.
pub async fn mark_many(
    conn: &mut AsyncPgConnection,
    consumer: &str,
    envelope_ids: &[Uuid],
) -> Result<Vec<Uuid>, StoreError> {
    let mut ids = envelope_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let rows: Vec<_> = ids
        .iter()
        .map(|id| {
            (
                processed_envelopes::consumer.eq(consumer),
                processed_envelopes::envelope_id.eq(*id),
            )
        })
        .collect();
    Ok(Cached(
        diesel::insert_into(processed_envelopes::table)
            .values(&rows)
            .on_conflict_do_nothing()
            .returning(processed_envelopes::envelope_id),
    )
    .get_results(conn)
    .await?)
}
