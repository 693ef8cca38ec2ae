//! `Idempotency-Key` on the POST endpoints that create work (dispatch, events/send and batch,
//! users/upsert), per organization, kept 24 hours:
//! - the same key and body replays the first answer, with `Idempotency-Replay: true`;
//! - the same key with another request is 422;
//! - a key whose first request still runs is 409 with `Retry-After`;
//! - a 5xx (or a 409/429) is never stored as the answer: the key is released and a retry runs
//!   afresh — except a dispatch past its deadline (504), whose key stays in flight until the
//!   dispatch completes and its real answer is stored, so a retry gets 409 and then that 200.
//!
//! A running request holds its key on a lease (`BECKON_IDEMPOTENCY_LEASE_MS`, 30 s by
//! default) that a [`Held`] heartbeat renews; a request that dies with its process stops
//! renewing, and once the lease lapses a retry takes the key over and runs again, instead of
//! getting 409 for a day. Running again is safe: what a request creates is guarded by derived
//! ids and cooldowns, and a graceful shutdown releases the keys it still holds.

use crate::AppState;
use crate::error::ApiError;
use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use beckon_store::Store;
use beckon_store::idempotency::{self, Claim};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::time::Duration;
use uuid::Uuid;

/// The default of `BECKON_IDEMPOTENCY_LEASE_MS`.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// The key a request owns while it runs, under the lease `owner`.
#[derive(Debug, Clone)]
pub struct Slot {
    pub org_id: Uuid,
    pub key: String,
    pub owner: Uuid,
    /// The request the key stands for, kept across takeovers: what the request creates is
    /// derived from it.
    pub request_id: Uuid,
    /// How far ahead each renewal pushes the lease.
    pub lease: Duration,
}

/// Renews a [`Slot`]'s lease in the background until dropped.
#[must_use = "the lease is renewed only while this is held"]
pub struct Held(tokio::task::JoinHandle<()>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Slot {
    /// Keeps the lease alive, renewing it every third of its length, until the returned guard
    /// is dropped. Stops early (with a warning) once the key is no longer this request's.
    pub fn hold(&self, store: &Store) -> Held {
        let (store, slot) = (store.clone(), self.clone());
        let every = (slot.lease / 3).max(Duration::from_millis(100));
        Held(tokio::spawn(async move {
            let mut wait = every;
            loop {
                tokio::time::sleep(wait).await;
                wait = every;
                let renewed = async {
                    let mut conn = store.conn().await?;
                    idempotency::renew(&mut conn, slot.org_id, &slot.key, slot.owner, slot.lease)
                        .await
                }
                .await;
                match renewed {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!("an Idempotency-Key lease lapsed and was taken over");
                        return;
                    }
                    // The database is away (or a pooled connection broke with it): try again
                    // soon, not a whole tick later, so the lease is renewed as soon as it can be.
                    Err(err) => {
                        tracing::warn!(error = %err, "could not renew an Idempotency-Key lease");
                        wait = (every / 10).max(Duration::from_millis(100));
                    }
                }
            }
        }))
    }

    /// Stores the answer for replays, sealed: a dispatch's answer holds magic links.
    pub async fn complete(&self, state: &AppState, status: StatusCode, body: &[u8]) {
        let body = &state.sealing_key.seal(body);
        let result = async {
            let mut conn = state.store.conn().await?;
            idempotency::complete(
                &mut conn,
                self.org_id,
                &self.key,
                self.owner,
                i32::from(status.as_u16()),
                body,
            )
            .await
        }
        .await;
        match result {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                "an idempotent answer was not stored: its key was taken over after its lease lapsed"
            ),
            Err(err) => tracing::warn!(error = %err, "could not store an idempotent answer"),
        }
    }

    /// Gives the key up, so a retry runs afresh at once.
    pub async fn release(&self, state: &AppState) {
        let result = async {
            let mut conn = state.store.conn().await?;
            idempotency::release(&mut conn, self.org_id, &self.key, self.owner).await
        }
        .await;
        if let Err(err) = result {
            tracing::warn!(error = %err, "could not release an idempotency key");
        }
    }
}

/// A stored answer in plaintext again. Answers stored before they were sealed are JSON and
/// are replayed as they are; one sealed under a key no longer configured cannot be.
fn stored_answer(state: &AppState, body: Vec<u8>) -> Result<Vec<u8>, ApiError> {
    if let Ok(opened) = state.sealing_key.open(&body) {
        return Ok(opened);
    }
    if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok() {
        return Ok(body);
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "idempotency_answer_unreadable",
        "The answer stored for this Idempotency-Key was sealed under a key this deployment no \
         longer has; send the request with a new key.",
    ))
}

fn valid_key(raw: &str) -> bool {
    !raw.is_empty() && raw.len() <= 255 && raw.bytes().all(|b| b.is_ascii_graphic())
}

/// Runs `inner` under the request's `Idempotency-Key`, if it has one. A replayed answer is the
/// first one's status and body; `location` gives back the `Location` a 201 had, from its body.
pub async fn run<F, Fut>(
    state: &AppState,
    org_id: Uuid,
    req: &HttpRequest,
    body: &[u8],
    location: fn(&[u8]) -> Option<String>,
    inner: F,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce(Option<Slot>) -> Fut,
    Fut: Future<Output = Result<HttpResponse, ApiError>>,
{
    let Some(raw) = req.headers().get("idempotency-key") else {
        return inner(None).await;
    };
    let key = raw
        .to_str()
        .ok()
        .filter(|k| valid_key(k))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters.",
            )
        })?
        .to_owned();
    let mut hash = Sha256::new()
        .chain_update(req.method().as_str())
        .chain_update(b" ")
        .chain_update(req.path())
        .chain_update(b"\n")
        .chain_update(body);
    // The project a header names is part of the request: the same body for another project
    // is another request, not a replay. (Without the header the hash is as it always was.)
    if let Some(team) = req.headers().get("x-team-id") {
        hash = hash
            .chain_update(b"\nx-team-id: ")
            .chain_update(team.as_bytes());
    }
    let hash = hash.finalize().to_vec();
    let claim = {
        let mut conn = state.store.conn().await?;
        idempotency::claim(&mut conn, org_id, &key, &hash, state.idempotency_lease).await?
    };
    match claim {
        Claim::Mismatch => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "This Idempotency-Key was already used with a different request.",
        )),
        Claim::InFlight => Err(ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_in_flight",
            "A request with this Idempotency-Key is still being processed; retry shortly.",
        )
        .with_header("Retry-After", "1")),
        Claim::Done { status, body } => {
            let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
            let body = stored_answer(state, body)?;
            let mut answer = HttpResponse::build(status);
            answer
                .insert_header((CONTENT_TYPE, "application/json"))
                .insert_header(("Idempotency-Replay", "true"));
            if status == StatusCode::CREATED
                && let Some(path) = location(&body)
            {
                answer.insert_header((actix_web::http::header::LOCATION, path));
            }
            Ok(answer.body(body))
        }
        Claim::Owned { owner, request_id } => {
            let slot = Slot {
                org_id,
                key,
                owner,
                request_id,
                lease: state.idempotency_lease,
            };
            let response = {
                let _held = slot.hold(&state.store);
                match inner(Some(slot.clone())).await {
                    Ok(response) => response,
                    Err(err) => err.error_response(),
                }
            };
            let status = response.status();
            if status == StatusCode::GATEWAY_TIMEOUT {
                // The dispatch still completes; its late answer is stored under this key, and
                // the dispatch holds the lease while it waits.
                return Ok(response);
            }
            if status.is_server_error()
                || status == StatusCode::CONFLICT
                || status == StatusCode::TOO_MANY_REQUESTS
            {
                slot.release(state).await;
                return Ok(response);
            }
            let headers = response.headers().clone();
            let bytes = actix_web::body::to_bytes(response.into_body())
                .await
                .unwrap_or_default();
            slot.complete(state, status, &bytes).await;
            let mut rebuilt = HttpResponse::build(status);
            for (name, value) in headers.iter() {
                rebuilt.insert_header((name.clone(), value.clone()));
            }
            Ok(rebuilt.body(bytes))
        }
    }
}
