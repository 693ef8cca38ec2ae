//! Triggers that stopped moving.
//!
//! Every path that loses a trigger's work is closed elsewhere (the outbox, holding deliveries
//! through outages, the dead-letter watch). This is the net under them: a trigger `queued` for
//! longer than a bound with nothing in the outbox to move it is put on the bus again once (its
//! envelope keeps its id, so if it was only slow the consumers drop the copy); one that a
//! re-drive did not move, or that is `processing` for longer than the bound, is failed with a
//! reason. Any replica may sweep: rows are claimed with `FOR UPDATE SKIP LOCKED`.

use crate::StoreError;
use crate::triggers::Trigger;
use diesel::sql_types::{BigInt, Double};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::time::Duration;

/// Claims up to `limit` triggers queued for longer than `after` (since they were created or
/// fell due), never re-driven, with no outbox row for their envelope, and marks them
/// re-driven. Call inside the transaction that puts their envelopes in the outbox.
pub async fn claim_queued(
    conn: &mut AsyncPgConnection,
    after: Duration,
    limit: i64,
) -> Result<Vec<Trigger>, StoreError> {
    Ok(diesel::sql_query(
        "UPDATE triggers SET redriven_at = now() WHERE id IN ( \
           SELECT t.id FROM triggers t \
           WHERE t.status = 'queued' AND t.redriven_at IS NULL \
             AND coalesce(t.scheduled_for, t.created_at) < now() - make_interval(secs => $1) \
             AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.envelope_id = t.job_id) \
           ORDER BY t.created_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
         RETURNING *",
    )
    .bind::<Double, _>(after.as_secs_f64())
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?)
}

/// Which stalled triggers to fail.
#[derive(Debug, Clone, Copy)]
pub struct FailStalled {
    /// Stalled for longer than this.
    pub after: Duration,
    /// Queued triggers a re-drive did not move (false while the matcher has a backlog).
    pub queued: bool,
    /// Triggers still processing (false while the invitation stage has a backlog).
    pub processing: bool,
}

/// Fails up to `limit` stalled triggers with a reason; returns how many.
pub async fn fail(
    conn: &mut AsyncPgConnection,
    which: FailStalled,
    limit: i64,
) -> Result<usize, StoreError> {
    if !which.queued && !which.processing {
        return Ok(0);
    }
    Ok(diesel::sql_query(
        "UPDATE triggers SET status = 'failed', completed_at = now(), \
           error = CASE status WHEN 'queued' \
             THEN 'stalled: still queued after its event was sent again' \
             ELSE 'stalled: matched, but the invitation stage never finished it' END \
         WHERE id IN ( \
           SELECT id FROM triggers \
           WHERE ($3 AND status = 'queued' AND redriven_at < now() - make_interval(secs => $1)) \
              OR ($4 AND status = 'processing' \
                  AND coalesce(started_at, created_at) < now() - make_interval(secs => $1)) \
           ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind::<Double, _>(which.after.as_secs_f64())
    .bind::<BigInt, _>(limit)
    .bind::<diesel::sql_types::Bool, _>(which.queued)
    .bind::<diesel::sql_types::Bool, _>(which.processing)
    .execute(conn)
    .await?)
}
