//! The reminder sync: every interval, bring the trial reminders of each survey whose status,
//! events or lead changed in line with the project's users, a batch of users at a time (see
//! `beckon_store::reminders`), until no survey waits.

use beckon_runtime::error_chain;
use beckon_store::Store;
use beckon_store::reminders;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub async fn run(store: Store, interval: Duration, batch: i64, cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        loop {
            let synced = async {
                let mut conn = store.conn().await?;
                reminders::sync_batch(&mut conn, batch).await
            }
            .await;
            match synced {
                Ok(None) => break,
                Ok(Some(s)) => {
                    for (change, n) in [
                        ("created", s.created),
                        ("moved", s.moved),
                        ("cancelled", s.cancelled),
                    ] {
                        metrics::counter!("beckon_reminder_sync_total", "change" => change)
                            .increment(n as u64);
                    }
                    tracing::info!(
                        survey_id = %s.survey_id,
                        users = s.users,
                        created = s.created,
                        moved = s.moved,
                        cancelled = s.cancelled,
                        finished = s.finished,
                        "trial reminders synced"
                    );
                }
                Err(err) => {
                    tracing::warn!(error = %error_chain(&err), "reminder sync failed; tried again next interval");
                    break;
                }
            }
            if cancel.is_cancelled() {
                return;
            }
        }
    }
}
