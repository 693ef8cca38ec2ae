//! The retention sweep: every interval, delete what is past its retention, a batch at a
//! time, until a pass finds nothing more.

use beckon_store::Store;
use beckon_store::retention::{self, Retention};
use beckon_worker::error_chain;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const BATCH: i64 = 1000;

pub async fn run(
    store: Store,
    retention: Retention,
    interval: Duration,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        loop {
            let swept = async {
                let mut conn = store.conn().await?;
                retention::sweep(&mut conn, &retention, BATCH).await
            }
            .await;
            match swept {
                Ok(s) if s.total() == 0 => break,
                Ok(s) => tracing::info!(
                    attempts = s.attempts,
                    processed = s.processed,
                    triggers = s.triggers,
                    idempotency_keys = s.idempotency_keys,
                    "retention sweep"
                ),
                Err(err) => {
                    tracing::warn!(error = %error_chain(&err), "retention sweep failed");
                    break;
                }
            }
            if cancel.is_cancelled() {
                return;
            }
        }
    }
}
