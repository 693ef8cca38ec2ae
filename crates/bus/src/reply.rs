//! Request/reply for the synchronous dispatch.
//!
//! Each gateway instance owns one exclusive, auto-deleted reply queue. A caller registers the
//! trigger id it waits for, publishes, and awaits its oneshot with a deadline; the stage that
//! finishes the trigger publishes the reply to the queue named inside the envelope. Replies
//! for callers that gave up (or for a previous incarnation of the gateway) find no waiter and
//! are dropped: the work itself is recorded either way.

use crate::topology::Topology;
use crate::{BusError, connect};
use futures_util::StreamExt;
use lapin::Connection;
use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

type Waiters = Arc<Mutex<HashMap<Uuid, oneshot::Sender<Vec<u8>>>>>;

/// The reply queue of one gateway instance and the callers waiting on it.
#[derive(Clone)]
pub struct ReplyListener {
    queue: String,
    waiters: Waiters,
    ready: watch::Receiver<bool>,
}

/// A registered wait; dropping it unregisters.
pub struct Waiting {
    id: Uuid,
    waiters: Waiters,
    rx: Option<oneshot::Receiver<Vec<u8>>>,
}

impl Waiting {
    /// The reply body, or `None` when `deadline` passes first. The wait stays registered
    /// until dropped, so a caller that gave up answering may still wait on.
    pub async fn wait(&mut self, deadline: Duration) -> Option<Vec<u8>> {
        let rx = self.rx.as_mut()?;
        tokio::time::timeout(deadline, rx).await.ok()?.ok()
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Ok(mut map) = self.waiters.lock() {
            map.remove(&self.id);
        }
    }
}

impl ReplyListener {
    /// Starts listening on a new reply queue, reconnecting as needed, until `cancel` fires.
    pub fn start(uri: &str, topology: &Topology, cancel: CancellationToken) -> Self {
        let queue = format!("{}.reply.{}", topology.prefix(), Uuid::now_v7());
        let waiters: Waiters = Arc::default();
        let (ready_tx, ready) = watch::channel(false);
        let listener = Self {
            queue: queue.clone(),
            waiters: waiters.clone(),
            ready,
        };
        let uri = uri.to_owned();
        tokio::spawn(async move {
            let mut pauses =
                crate::backoff::pauses(Duration::from_millis(100), Duration::from_secs(5));
            while let Some(conn) =
                connect::connect_with_retry(&uri, "reply-listener", &cancel).await
            {
                let result = tokio::select! {
                    _ = cancel.cancelled() => Ok(()),
                    r = listen(&conn, &queue, &waiters, &ready_tx) => r,
                };
                let _ = ready_tx.send(false);
                let _ = conn.close(200, "reconnecting".into()).await;
                match result {
                    Ok(()) if cancel.is_cancelled() => break,
                    Ok(()) => {}
                    Err(err) => tracing::warn!(error = %err, "reply listener lost its connection"),
                }
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(pauses.next().unwrap_or(Duration::from_secs(5))) => {}
                }
            }
        });
        listener
    }

    /// The queue replies must be sent to.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Whether the reply queue is being consumed right now.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until the reply queue is consumed, or `deadline` passes (then `false`).
    pub async fn wait_ready(&self, deadline: Duration) -> bool {
        let mut ready = self.ready.clone();
        tokio::time::timeout(deadline, ready.wait_for(|r| *r))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Registers interest in the reply correlated to `id`. Register before publishing.
    pub fn register(&self, id: Uuid) -> Waiting {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut map) = self.waiters.lock() {
            map.insert(id, tx);
        }
        Waiting {
            id,
            waiters: self.waiters.clone(),
            rx: Some(rx),
        }
    }
}

#[derive(serde::Deserialize)]
struct Correlated {
    correlation_id: Uuid,
}

async fn listen(
    conn: &Connection,
    queue: &str,
    waiters: &Waiters,
    ready: &watch::Sender<bool>,
) -> Result<(), BusError> {
    let channel = conn
        .create_channel()
        .await
        .map_err(BusError::amqp("open the reply channel"))?;
    // Exclusive and auto-deleted: the queue lives exactly as long as this gateway's
    // connection, so replies for a gateway that is gone are dropped by the broker.
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(BusError::amqp("declare the reply queue"))?;
    let mut replies = channel
        .basic_consume(
            queue.into(),
            "".into(),
            // Replies are advisory (the outcome is recorded in the database), so they are
            // consumed without acks.
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(BusError::amqp("consume the reply queue"))?;
    let _ = ready.send(true);
    while let Some(delivery) = replies.next().await {
        let delivery = delivery.map_err(BusError::amqp("receive a reply"))?;
        let Ok(Correlated { correlation_id }) = serde_json::from_slice(&delivery.data) else {
            tracing::warn!("dropping a reply that is not an envelope");
            continue;
        };
        let waiter = waiters
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&correlation_id));
        match waiter {
            Some(tx) => {
                let _ = tx.send(delivery.data);
            }
            None => tracing::debug!(%correlation_id, "dropping a late reply"),
        }
    }
    Err(BusError::Closed("reply consumer"))
}
