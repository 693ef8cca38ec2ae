//! Connecting to the broker.

use crate::BusError;
use lapin::{Connection, ConnectionProperties};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// One connection attempt.
pub async fn connect(uri: &str, name: &str) -> Result<Connection, BusError> {
    let props = ConnectionProperties::default().with_connection_name(name.to_owned().into());
    Connection::connect(uri, props)
        .await
        .map_err(BusError::amqp("connect to the broker"))
}

/// Connects, retrying with jittered pauses growing to 5 s, until it succeeds or `cancel` fires
/// (then `None`).
pub async fn connect_with_retry(
    uri: &str,
    name: &str,
    cancel: &CancellationToken,
) -> Option<Connection> {
    let mut pauses = crate::backoff::pauses(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let delay = pauses.next().unwrap_or(Duration::from_secs(5));
        match connect(uri, name).await {
            Ok(conn) => return Some(conn),
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "broker unreachable");
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}
