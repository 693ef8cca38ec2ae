//! Deleting published outbox rows in batches, off the request and handler path.
//!
//! A row published and confirmed has done its work; deleting it at once costs a statement and
//! a commit per message on the hot path. The cleaner collects the ids and deletes them together,
//! a batch at a time. A row it never gets to (a crash) is published again by the relay after its
//! grace period, which consumers drop as a duplicate.

use beckon_runtime::{error_chain, group};
use beckon_store::{Store, outbox};
use std::time::Duration;
use tokio::sync::mpsc;

/// Most ids deleted by one statement.
const BATCH: usize = 1000;
/// How long the cleaner gathers ids after the first of a batch arrives. Every delete is a
/// commit (a WAL flush), so a longer window means fewer of them; nothing waits on it, and the
/// relay leaves rows alone for seconds, so a published row lingering this long costs nothing.
const GATHER: Duration = Duration::from_millis(200);

/// A handle to the cleaner task; cloning shares it. The task ends when every handle is gone.
#[derive(Clone)]
pub struct OutboxCleaner {
    ids: mpsc::UnboundedSender<i64>,
}

impl OutboxCleaner {
    /// Starts the cleaner task on the current runtime.
    pub fn start(store: Store) -> Self {
        let (ids, rx) = group::queue();
        tokio::spawn(clean(store, rx));
        Self { ids }
    }

    /// Hands over the ids of rows that were published.
    pub fn published(&self, ids: impl IntoIterator<Item = i64>) {
        for id in ids {
            // Closed only when the process is shutting down: the relay covers what is left.
            let _ = self.ids.send(id);
        }
    }
}

async fn clean(store: Store, rx: group::Shared<i64>) {
    while let Some(batch) = group::take_within(&rx, BATCH, GATHER).await {
        let result = async {
            let mut conn = store.conn().await?;
            outbox::delete(&mut conn, &batch).await
        }
        .await;
        if let Err(err) = result {
            // The relay publishes these again after their grace period; consumers drop them.
            tracing::warn!(rows = batch.len(), error = %error_chain(&err), "could not clear published outbox rows");
        }
    }
}
