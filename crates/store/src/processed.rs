//! Envelope ids a consumer has handled: the idempotency record, written in the same
//! transaction as the work.

use crate::StoreError;
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
