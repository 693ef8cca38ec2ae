//! Telling a database outage from a failed message.
//!
//! A message that fails because the database is away has nothing wrong with it. Returning it
//! to the queue would burn one of its deliveries each time, and a routine failover (30–120 s)
//! would dead-letter a whole backlog in seconds. So when a batch fails transiently, the worker
//! asks the database first: if it does not answer, the deliveries are held — unacknowledged, so
//! the broker sends no more than the prefetch and counts no redelivery — until it answers
//! again, and then handled afresh. Only a failure while the database answers is the message's
//! own, and counts towards its delivery limit.

use beckon_store::Store;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The first and the longest pause between probes of a database that does not answer.
const FIRST_PAUSE: Duration = Duration::from_millis(200);
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// A probe this recent that found the database answering is trusted without another.
const FRESH: Duration = Duration::from_millis(500);
/// Longest wait for one probe: a database that takes longer is as good as away.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the service's database answers; shared by every consumer of a process, so that one
/// probe at a time serves all the deliveries waiting for it.
#[derive(Clone)]
pub struct Database {
    store: Store,
    /// When a probe last found the database answering. Held while probing.
    last_up: Arc<Mutex<Option<Instant>>>,
    /// Someone is waiting for the database to come back: it is away.
    away: Arc<AtomicBool>,
}

impl Database {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            last_up: Arc::default(),
            away: Arc::default(),
        }
    }

    /// Whether the database answers a trivial query now.
    pub async fn answers(&self) -> bool {
        if self.away.load(Ordering::SeqCst) {
            return false;
        }
        let mut last_up = self.last_up.lock().await;
        if last_up.is_some_and(|at| at.elapsed() < FRESH) {
            return true;
        }
        let up = self.probe().await;
        *last_up = up.then(Instant::now);
        up
    }

    /// Waits until the database answers (`true`), or `cancel` fires (`false`). Whoever waits
    /// first probes, with jittered pauses growing to 5 s; the others wait for its verdict.
    pub async fn wait_up(&self, cancel: &CancellationToken) -> bool {
        let waited = async {
            let mut last_up = self.last_up.lock().await;
            if last_up.is_some_and(|at| at.elapsed() < FRESH) {
                return;
            }
            let mut pauses = beckon_bus::backoff::pauses(FIRST_PAUSE, MAX_PAUSE);
            let mut reported = false;
            loop {
                if self.probe().await {
                    *last_up = Some(Instant::now());
                    self.away.store(false, Ordering::SeqCst);
                    if reported {
                        tracing::warn!("the database answers again; handling the held messages");
                    }
                    return;
                }
                if !reported {
                    reported = true;
                    self.away.store(true, Ordering::SeqCst);
                    tracing::warn!("the database does not answer; holding messages until it does");
                }
                tokio::time::sleep(pauses.next().unwrap_or(MAX_PAUSE)).await;
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => false,
            _ = waited => true,
        }
    }

    async fn probe(&self) -> bool {
        let up = tokio::time::timeout(PROBE_TIMEOUT, self.store.ping())
            .await
            .unwrap_or(false);
        metrics::gauge!("beckon_database_up").set(if up { 1.0 } else { 0.0 });
        up
    }
}
