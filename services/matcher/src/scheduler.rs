//! The scheduler: fires scheduled triggers when they are due.
//!
//! Scheduled triggers live in PostgreSQL (`triggers` with status `scheduled`), where they can
//! be listed, moved and cancelled, and survive restarts. Every matcher replica runs this loop;
//! `claim_due` takes rows with `FOR UPDATE SKIP LOCKED` by the database's clock, so each fires
//! exactly once. A claimed trigger's envelope goes through the outbox in the same transaction,
//! and from there into the same matching path as any event.

use beckon_bus::Topology;
use beckon_domain::envelope::{Envelope, EventReceived, TriggerType};
use beckon_domain::{LifecycleEvent, UserRef};
use beckon_runtime::error_chain;
use beckon_store::triggers::{self, Trigger};
use beckon_store::{StoreError, outbox};
use beckon_worker::Deps;
use diesel_async::AsyncConnection;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Most triggers claimed in one transaction.
const BATCH: i64 = 200;

/// Polls every `interval` (and at once again after a full batch) until `cancel` fires.
pub async fn run(deps: Deps, topology: Topology, interval: Duration, cancel: CancellationToken) {
    loop {
        let fired = match fire_due(&deps, &topology).await {
            Ok(n) => n,
            // The database is away: wait for it once, rather than fail (and log) every pass.
            Err(_) if !deps.database.answers().await => {
                if !deps.database.wait_up(&cancel).await {
                    return;
                }
                continue;
            }
            Err(err) => {
                tracing::warn!(error = %error_chain(&err), "scheduler pass failed");
                0
            }
        };
        if fired as i64 == BATCH {
            continue;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// The envelope a trigger fires as (`kind`: scheduled when due, its own when sent again): its
/// id is the trigger's `job_id`, so firing twice (which the claim prevents) would still be one
/// envelope to the consumers.
pub fn envelope_for(
    trigger: &Trigger,
    kind: TriggerType,
) -> Result<Envelope<EventReceived>, String> {
    let user_ref = trigger
        .user_ref
        .as_deref()
        .ok_or_else(|| "it names no contact".to_owned())
        .and_then(|raw| UserRef::parse(raw).map_err(|e| e.to_string()))?;
    let event: LifecycleEvent =
        serde_json::from_value(trigger.event.clone()).map_err(|e| e.to_string())?;
    let variables =
        triggers::object_of("variables", trigger.variables.clone()).map_err(|e| e.to_string())?;
    let source =
        triggers::object_of("source", trigger.source.clone()).map_err(|e| e.to_string())?;
    Ok(Envelope::new(
        trigger.job_id.unwrap_or(trigger.id),
        trigger.org_id,
        trigger.project_id,
        trigger.id,
        EventReceived {
            trigger_type: kind,
            user_ref,
            event,
            reply_to: None,
            survey_id: trigger.survey_id,
            event_data: trigger.event_data.clone(),
            variables,
            source,
        },
    ))
}

/// One pass: claims what is due, commits the envelopes to the outbox, publishes them.
pub async fn fire_due(deps: &Deps, topology: &Topology) -> Result<usize, StoreError> {
    let mut conn = deps.store.conn().await?;
    let rows = conn
        .transaction::<_, StoreError, _>(async |conn| {
            let due = triggers::claim_due(conn, BATCH).await?;
            let claimed_at = time::OffsetDateTime::now_utc();
            let mut rows = Vec::with_capacity(due.len());
            for trigger in &due {
                rows.extend(fire(conn, topology, trigger, TriggerType::Scheduled).await?);
            }
            Ok((rows, due, claimed_at))
        })
        .await
        .map(|(rows, due, claimed_at)| {
            // Committed: fired once, counted once (a pass that rolls back fires them later).
            record_lag(&due, claimed_at);
            rows
        })?;
    if !rows.is_empty() {
        tracing::info!(fired = rows.len(), "scheduled triggers fired");
        drop(conn);
        beckon_outbox::flush(&deps.publisher, &deps.cleaner, &rows).await;
    }
    Ok(rows.len())
}

/// How late each claimed trigger fires: from when it was due, or made if it was made already
/// due (a reminder for a trial that ends sooner than its lead time), to now.
fn record_lag(due: &[Trigger], now: time::OffsetDateTime) {
    let lag = metrics::histogram!("beckon_scheduler_lag_seconds");
    for trigger in due {
        let since = trigger
            .scheduled_for
            .map_or(trigger.created_at, |at| at.max(trigger.created_at));
        lag.record((now - since).as_seconds_f64().max(0.0));
    }
}

/// Puts `trigger`'s envelope (as `kind`) in the outbox, in the caller's transaction; a trigger
/// whose stored event cannot make one is failed with the reason instead. A trigger that names
/// no contact has no one to invite: it completes (`no_contact`) and sends nothing.
pub async fn fire(
    conn: &mut diesel_async::AsyncPgConnection,
    topology: &Topology,
    trigger: &Trigger,
    kind: TriggerType,
) -> Result<Option<outbox::OutboxMessage>, StoreError> {
    if trigger.user_ref.is_none() {
        triggers::complete_without_contact(conn, trigger.id).await?;
        return Ok(None);
    }
    match envelope_for(trigger, kind) {
        Ok(env) => Ok(Some(
            outbox::enqueue(
                conn,
                env.id,
                &topology.events_exchange(),
                &env.routing_key(),
                env.to_json(),
                // Fired long after it was accepted: a trace of its own.
                None,
            )
            .await?,
        )),
        Err(reason) => {
            tracing::error!(trigger_id = %trigger.id, %reason, "a trigger's stored event cannot fire");
            triggers::fail(conn, trigger.id, &format!("cannot fire: {reason}")).await?;
            Ok(None)
        }
    }
}
