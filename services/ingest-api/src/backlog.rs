//! Shedding load past a backlog: when the matcher's queue holds more than
//! `BECKON_SHED_BACKLOG` messages, `events/send`, `events/batch` and `dispatch` answer 429
//! `overloaded` with `Retry-After` instead of accepting more than the pipeline carries. Off by
//! default (0); what was accepted before stays accepted and is handled as the backlog drains.

use crate::error::ApiError;
use actix_web::http::StatusCode;
use beckon_bus::Publisher;
use beckon_bus::topology::queues;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the backlog is read from the broker.
const EVERY: Duration = Duration::from_millis(500);

/// The matcher's backlog as last read, against the limit past which intake is refused.
pub struct Backlog {
    limit: u32,
    waiting: AtomicU32,
}

impl Backlog {
    /// Starts reading the backlog; `None` when shedding is off (`limit` 0).
    pub fn start(publisher: Publisher, limit: u32, cancel: CancellationToken) -> Option<Arc<Self>> {
        if limit == 0 {
            return None;
        }
        let backlog = Arc::new(Self {
            limit,
            waiting: AtomicU32::new(0),
        });
        let watched = backlog.clone();
        tokio::spawn(async move {
            loop {
                match publisher.ready_messages(queues::matcher().name).await {
                    Ok(n) => {
                        watched.waiting.store(n, Ordering::Relaxed);
                        metrics::gauge!("beckon_intake_backlog").set(n as f64);
                    }
                    // Unknown: the last reading stands; the broker's absence has its own 503.
                    Err(err) => tracing::debug!(error = %err, "could not read the backlog"),
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(EVERY) => {}
                }
            }
        });
        Some(backlog)
    }

    /// `Err(429 overloaded)` while the backlog is past the limit.
    pub fn admit(&self) -> Result<(), ApiError> {
        let waiting = self.waiting.load(Ordering::Relaxed);
        if waiting <= self.limit {
            return Ok(());
        }
        metrics::counter!("beckon_intake_shed_total").increment(1);
        Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "overloaded",
            format!(
                "{waiting} events are waiting to be matched, more than this deployment accepts \
                 ({}); nothing was recorded. Try again after Retry-After seconds.",
                self.limit
            ),
        )
        .with_header("Retry-After", "1"))
    }
}
