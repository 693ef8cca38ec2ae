//! `Idempotency-Key` records: the first request with a key runs, later ones replay its answer.

use crate::StoreError;
use crate::schema::idempotency_keys;
use diesel::prelude::*;
use diesel::sql_types::{Bytea, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// How long a key is remembered.
pub const RETENTION_HOURS: i32 = 24;

/// What the store knows of a key when a request presents it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// New (or expired): this request owns the key and runs.
    Owned,
    /// The key was used with a different request.
    Mismatch,
    /// The first request with this key is still running.
    InFlight,
    /// The first request's answer, to replay.
    Done { status: i32, body: Vec<u8> },
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Bytea)]
    request_hash: Vec<u8>,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Int4>)]
    response_status: Option<i32>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Bytea>)]
    response_body: Option<Vec<u8>>,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    owned: bool,
}

/// Claims `key` for a request hashing to `request_hash`, atomically: an insert, or a takeover
/// of an expired record, makes this request the owner; otherwise the existing record says
/// what to answer.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    key: &str,
    request_hash: &[u8],
) -> Result<Claim, StoreError> {
    let owned: Option<Row> = diesel::sql_query(format!(
        "INSERT INTO idempotency_keys (org_id, key, request_hash, state, expires_at) \
         VALUES ($1, $2, $3, 'in_flight', now() + interval '{RETENTION_HOURS} hours') \
         ON CONFLICT (org_id, key) DO UPDATE SET request_hash = EXCLUDED.request_hash, \
           state = 'in_flight', response_status = NULL, response_body = NULL, \
           created_at = now(), expires_at = EXCLUDED.expires_at \
         WHERE idempotency_keys.expires_at < now() \
         RETURNING request_hash, state, response_status, response_body, true AS owned"
    ))
    .bind::<SqlUuid, _>(org_id)
    .bind::<Text, _>(key)
    .bind::<Bytea, _>(request_hash)
    .get_result(conn)
    .await
    .optional()?;
    if owned.is_some() {
        return Ok(Claim::Owned);
    }
    let existing: Option<Row> = diesel::sql_query(
        "SELECT request_hash, state, response_status, response_body, false AS owned \
         FROM idempotency_keys WHERE org_id = $1 AND key = $2",
    )
    .bind::<SqlUuid, _>(org_id)
    .bind::<Text, _>(key)
    .get_result(conn)
    .await
    .optional()?;
    let Some(row) = existing else {
        // Deleted between the two statements (released by a failed first request): retry.
        return Box::pin(claim(conn, org_id, key, request_hash)).await;
    };
    debug_assert!(!row.owned);
    Ok(if row.request_hash != request_hash {
        Claim::Mismatch
    } else if row.state == "done" {
        Claim::Done {
            status: row.response_status.unwrap_or(200),
            body: row.response_body.unwrap_or_default(),
        }
    } else {
        Claim::InFlight
    })
}

/// Stores the answer of the request that owns `key`.
pub async fn complete(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    key: &str,
    status: i32,
    body: &[u8],
) -> Result<(), StoreError> {
    diesel::update(
        idempotency_keys::table
            .filter(idempotency_keys::org_id.eq(org_id))
            .filter(idempotency_keys::key.eq(key)),
    )
    .set((
        idempotency_keys::state.eq("done"),
        idempotency_keys::response_status.eq(status),
        idempotency_keys::response_body.eq(body),
    ))
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets `key`, so a retry runs afresh (the first request failed on our side).
pub async fn release(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    key: &str,
) -> Result<(), StoreError> {
    diesel::delete(
        idempotency_keys::table
            .filter(idempotency_keys::org_id.eq(org_id))
            .filter(idempotency_keys::key.eq(key)),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes up to `batch` expired records; returns how many.
pub async fn sweep(conn: &mut AsyncPgConnection, batch: i64) -> Result<usize, StoreError> {
    Ok(diesel::sql_query(
        "DELETE FROM idempotency_keys WHERE ctid IN \
         (SELECT ctid FROM idempotency_keys WHERE expires_at < now() LIMIT $1)",
    )
    .bind::<diesel::sql_types::BigInt, _>(batch)
    .execute(conn)
    .await?)
}
