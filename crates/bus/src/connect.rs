//! Connecting to the broker.

use crate::BusError;
use lapin::{Connection, ConnectionProperties};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The longest one connection attempt to one address may take (a node that swallows packets
/// would otherwise hold the caller for the kernel's TCP timeout).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The addresses of `uri`: one AMQP URI, or several separated by commas (the nodes of a
/// cluster).
pub fn addresses(uri: &str) -> Vec<&str> {
    uri.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect()
}

/// One connection attempt to each address of `uri` in turn, until one answers. Each call
/// starts one address further along, so a process's connections spread over a cluster's
/// nodes, and a node that is down costs one refused attempt.
pub async fn connect(uri: &str, name: &str) -> Result<Connection, BusError> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let addresses = addresses(uri);
    let start = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut last = BusError::Closed("list of broker addresses (it is empty)");
    for i in 0..addresses.len() {
        let address = addresses[(start + i) % addresses.len()];
        let props = ConnectionProperties::default().with_connection_name(name.to_owned().into());
        match tokio::time::timeout(ATTEMPT_TIMEOUT, Connection::connect(address, props)).await {
            Ok(Ok(conn)) => return Ok(conn),
            Ok(Err(source)) => {
                last = BusError::Amqp {
                    context: "connect to the broker",
                    source,
                }
            }
            Err(_) => last = BusError::Timeout(ATTEMPT_TIMEOUT, "connect to the broker"),
        }
    }
    Err(last)
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
