//! The stalled-trigger sweep: the net under every path that could leave a trigger waiting.
//!
//! Every `interval`, in one transaction: triggers queued for longer than `after` with nothing
//! in the outbox are sent again once (their envelope keeps its id, the trigger's `job_id`, so a
//! copy of one that was only slow is matched again into the same `event.matched` envelope,
//! which the invitation stage drops as a repeat), and triggers that
//! a re-drive did not move, or that are processing for longer than `after`, are failed with a
//! reason. A backlog in the stage a trigger waits for is work in flight: while the matcher's
//! queue holds messages no queued trigger is touched, and while the invitation queue does, no
//! processing one. Each trigger sent again or failed is counted in
//! `beckon_triggers_stalled_total{action}`.

use crate::scheduler::fire;
use beckon_bus::Topology;
use beckon_bus::topology::queues;
use beckon_domain::envelope::TriggerType;
use beckon_runtime::error_chain;
use beckon_store::StoreError;
use beckon_store::stalled::{self, FailStalled};
use beckon_worker::Deps;
use diesel_async::AsyncConnection;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Most triggers sent again, and most failed, in one pass.
const BATCH: i64 = 200;

/// How long the sweep stays its hand after a pass that could not reach the database. While the
/// database was away, consumers held their deliveries unacknowledged (not ready in the queue,
/// so invisible to the backlog check); once it answers they finish them within seconds. Failing
/// those triggers first would be wrong, so passes wait until the held work has had its chance.
const SETTLE: Duration = Duration::from_secs(120);

/// Whether a pass may run: not until `SETTLE` has passed since the last one that failed.
#[derive(Debug, Default)]
struct Settle {
    failed_at: Option<tokio::time::Instant>,
}

impl Settle {
    fn allows(&self, now: tokio::time::Instant) -> bool {
        self.failed_at
            .is_none_or(|at| now.saturating_duration_since(at) >= SETTLE)
    }

    fn failed(&mut self, now: tokio::time::Instant) {
        self.failed_at = Some(now);
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub redriven: usize,
    pub failed: usize,
}

/// Sweeps every `interval` until `cancel` fires.
pub async fn run(
    deps: Deps,
    topology: Topology,
    after: Duration,
    interval: Duration,
    cancel: CancellationToken,
) {
    let mut settle = Settle::default();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if !settle.allows(tokio::time::Instant::now()) {
            continue;
        }
        match sweep(&deps, &topology, after).await {
            Ok(swept) if swept == Swept::default() => {}
            Ok(swept) => {
                tracing::warn!(
                    redriven = swept.redriven,
                    failed = swept.failed,
                    "stalled triggers swept"
                )
            }
            Err(err) => {
                settle.failed(tokio::time::Instant::now());
                tracing::warn!(error = %error_chain(&err), "stalled-trigger sweep failed")
            }
        }
    }
}

/// One pass.
pub async fn sweep(deps: &Deps, topology: &Topology, after: Duration) -> Result<Swept, StoreError> {
    // The broker unreachable: nothing can be said about work in flight, so nothing is touched.
    let (Ok(matching), Ok(inviting)) = (
        deps.publisher.ready_messages(queues::matcher().name).await,
        deps.publisher
            .ready_messages(queues::invitation().name)
            .await,
    ) else {
        return Ok(Swept::default());
    };
    let mut conn = deps.store.conn().await?;
    let (rows, failed) = conn
        .transaction::<_, StoreError, _>(async |conn| {
            let mut rows = Vec::new();
            if matching == 0 {
                for trigger in stalled::claim_queued(conn, after, BATCH).await? {
                    let kind =
                        TriggerType::parse(&trigger.trigger_type).unwrap_or(TriggerType::Event);
                    rows.extend(fire(conn, topology, &trigger, kind).await?);
                }
            }
            let which = FailStalled {
                after,
                queued: matching == 0,
                processing: inviting == 0,
            };
            let failed = stalled::fail(conn, which, BATCH).await?;
            Ok((rows, failed))
        })
        .await?;
    drop(conn);
    let swept = Swept {
        redriven: rows.len(),
        failed,
    };
    metrics::counter!("beckon_triggers_stalled_total", "action" => "redriven")
        .increment(swept.redriven as u64);
    metrics::counter!("beckon_triggers_stalled_total", "action" => "failed")
        .increment(swept.failed as u64);
    beckon_outbox::flush(&deps.publisher, &deps.cleaner, &rows).await;
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[test]
    fn a_failed_pass_stays_the_sweep_until_held_work_had_its_chance() {
        let start = Instant::now();
        let mut settle = Settle::default();
        assert!(settle.allows(start));
        settle.failed(start);
        assert!(!settle.allows(start + Duration::from_secs(60)));
        assert!(!settle.allows(start + SETTLE - Duration::from_millis(1)));
        assert!(settle.allows(start + SETTLE));
    }
}
