//! The retention sweep: every interval, delete what is past its retention, a batch at a
//! time, until a pass finds nothing more.

use beckon_runtime::error_chain;
use beckon_store::Store;
use beckon_store::retention::{self, Retention, Swept};
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
        let mut walked = retention::Walked::default();
        loop {
            let swept = async {
                let mut conn = store.conn().await?;
                retention::sweep(&mut conn, &retention, BATCH, &mut walked).await
            }
            .await;
            match swept {
                Ok(s) if s.total() == 0 => break,
                Ok(s) => {
                    count(&s);
                    tracing::info!(
                        attempts = s.attempts,
                        processed = s.processed,
                        triggers = s.triggers,
                        idempotency_keys = s.idempotency_keys,
                        webhook_payloads_erased = s.webhook_payloads,
                        webhook_messages = s.webhook_messages,
                        "retention sweep"
                    )
                }
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

/// Adds a sweep's rows to `beckon_retention_swept_total{kind}`.
fn count(swept: &Swept) {
    for (kind, n) in [
        ("webhook_attempts", swept.attempts),
        ("processed_envelopes", swept.processed),
        ("triggers", swept.triggers),
        ("idempotency_keys", swept.idempotency_keys),
        ("webhook_payloads_erased", swept.webhook_payloads),
        ("webhook_messages", swept.webhook_messages),
    ] {
        metrics::counter!("beckon_retention_swept_total", "kind" => kind).increment(n as u64);
    }
}
