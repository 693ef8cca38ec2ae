//! `Idempotency-Key` records: the first request with a key runs, later ones replay its answer.
//!
//! A request that claims a key holds it on a short lease, which it renews while it runs (and
//! while a dispatch past its deadline still waits for its outcome). When the request dies — a
//! crash, a shutdown — the lease lapses and the next request with the key takes it over and
//! runs afresh, instead of being told "in flight" until the key expires. A stored answer is
//! kept for [`RETENTION_HOURS`]. Each claim carries a random owner token, so a request whose
//! lease was taken over can neither renew it, nor store its answer, nor release the key.

use crate::StoreError;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bytea, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::time::Duration;
use uuid::Uuid;

/// How long a key is remembered.
pub const RETENTION_HOURS: i32 = 24;

/// What the store knows of a key when a request presents it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// New, expired, or in flight under a lapsed lease: this request owns the key and runs,
    /// holding it with the lease `owner`. `request_id` names the request the key stands for:
    /// new with a new request, kept when a retry takes over a lapsed lease, so what the request
    /// creates can be derived from it and found again rather than created twice.
    Owned { owner: Uuid, request_id: Uuid },
    /// The key was used with a different request.
    Mismatch,
    /// The first request with this key is still running (its lease is held).
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
}

#[derive(QueryableByName)]
struct Owned {
    #[diesel(sql_type = SqlUuid)]
    request_id: Uuid,
}

fn millis(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}

/// Claims `key` for a request hashing to `request_hash`, with a lease of `lease`, atomically:
/// an insert, a takeover of an expired record, or a takeover of the same request left in
/// flight under a lapsed lease makes this request the owner; otherwise the existing record
/// says what to answer.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    key: &str,
    request_hash: &[u8],
    lease: Duration,
) -> Result<Claim, StoreError> {
    let owner = Uuid::new_v4();
    let owned: Option<Owned> = diesel::sql_query(format!(
        "INSERT INTO idempotency_keys \
           (org_id, key, request_hash, state, expires_at, lease_until, owner, request_id) \
         VALUES ($1, $2, $3, 'in_flight', now() + interval '{RETENTION_HOURS} hours', \
           now() + $4 * interval '1 millisecond', $5, $6) \
         ON CONFLICT (org_id, key) DO UPDATE SET request_hash = EXCLUDED.request_hash, \
           state = 'in_flight', response_status = NULL, response_body = NULL, \
           created_at = now(), expires_at = EXCLUDED.expires_at, \
           lease_until = EXCLUDED.lease_until, owner = EXCLUDED.owner, \
           request_id = CASE WHEN idempotency_keys.expires_at < now() \
             OR idempotency_keys.request_id IS NULL THEN EXCLUDED.request_id \
             ELSE idempotency_keys.request_id END \
         WHERE idempotency_keys.expires_at < now() \
            OR (idempotency_keys.state = 'in_flight' \
                AND idempotency_keys.request_hash = EXCLUDED.request_hash \
                AND (idempotency_keys.lease_until IS NULL OR idempotency_keys.lease_until < now())) \
         RETURNING request_id"
    ))
    .bind::<SqlUuid, _>(org_id)
    .bind::<Text, _>(key)
    .bind::<Bytea, _>(request_hash)
    .bind::<BigInt, _>(millis(lease))
    .bind::<SqlUuid, _>(owner)
    .bind::<SqlUuid, _>(Uuid::now_v7())
    .get_result(conn)
    .await
    .optional()?;
    if let Some(Owned { request_id }) = owned {
        return Ok(Claim::Owned { owner, request_id });
    }
    let existing: Option<Row> = diesel::sql_query(
        "SELECT request_hash, state, response_status, response_body \
         FROM idempotency_keys WHERE org_id = $1 AND key = $2",
    )
    .bind::<SqlUuid, _>(org_id)
    .bind::<Text, _>(key)
    .get_result(conn)
    .await
    .optional()?;
    let Some(row) = existing else {
        // Deleted between the two statements (released by a failed first request): retry.
        return Box::pin(claim(conn, org_id, key, request_hash, lease)).await;
    };
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

/// Extends the lease `owner` holds on `key` to `lease` from now. `false` when the claim is no
/// longer this owner's (its lease lapsed and another request took the key over, or the answer
/// is stored): the caller has lost the key and must not store an answer for it.
pub async fn renew(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    key: &str,
    owner: Uuid,
    lease: Duration,
) -> Result<bool, StoreError> {
    let renewed = diesel::sql_query(
        "UPDATE idempotency_keys SET lease_until = now() + $4 * interval '1 millisecond' \
         WHERE org_id = $1 AND key = $2 AND owner = $3 AND state = 'in_flight'",
    )
    .bind::<SqlUuid, _>(org_id)
    .bind::<Text, _>(key)
    .bind::<SqlUuid, _>(owner)
    .bind::<BigInt, _>(millis(lease))
    .execute(conn)
    .await?;
    Ok(renewed > 0)
}

/// Stores the answer of the request that owns `key` under the lease `owner`; a request whose
/// key was taken over stores nothing. Returns whether it was stored.
pub async fn complete(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    key: &str,
    owner: Uuid,
    status: i32,
    body: &[u8],
) -> Result<bool, StoreError> {
    let stored = diesel::sql_query(
        "UPDATE idempotency_keys SET state = 'done', response_status = $4, \
           response_body = $5, lease_until = NULL, owner = NULL \
         WHERE org_id = $1 AND key = $2 AND owner = $3 AND state = 'in_flight'",
    )
    .bind::<SqlUuid, _>(org_id)
    .bind::<Text, _>(key)
    .bind::<SqlUuid, _>(owner)
    .bind::<diesel::sql_types::Int4, _>(status)
    .bind::<Bytea, _>(body)
    .execute(conn)
    .await?;
    Ok(stored > 0)
}

/// Forgets `key` if `owner` still holds it, so a retry runs afresh (the request failed on our
/// side, or stops with this process).
pub async fn release(
    conn: &mut AsyncPgConnection,
    org_id: Uuid,
    key: &str,
    owner: Uuid,
) -> Result<(), StoreError> {
    diesel::sql_query(
        "DELETE FROM idempotency_keys \
         WHERE org_id = $1 AND key = $2 AND owner = $3 AND state = 'in_flight'",
    )
    .bind::<SqlUuid, _>(org_id)
    .bind::<Text, _>(key)
    .bind::<SqlUuid, _>(owner)
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
    .bind::<BigInt, _>(batch)
    .execute(conn)
    .await?)
}
