//! Connecting to the broker, over TLS for `amqps://` addresses.
//!
//! An `amqps://` address takes RabbitMQ's URI parameters for TLS: `cacertfile` (PEM CA
//! certificates trusted besides the machine's roots), and `certfile` with `keyfile` (a client
//! certificate and its PKCS#8 key, PEM) for brokers that ask for one. The server's certificate
//! must be valid for the host named in the address. The files are read at every connection, so
//! renewed certificates are picked up at the next reconnect.

use crate::BusError;
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
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
        let tls = tls_config(address)?;
        let runtime =
            lapin::runtime::default_runtime().map_err(BusError::amqp("find a runtime"))?;
        let attempt = Connection::connect_with_config(address, props, tls, runtime);
        match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await {
            Ok(Ok(conn)) => return Ok(conn),
            Ok(Err(source)) => last = classify(source),
            Err(_) => last = BusError::Timeout(ATTEMPT_TIMEOUT, "connect to the broker"),
        }
    }
    Err(last)
}

/// A failed TLS handshake as such (it will fail the same way until the settings change), and
/// anything else as a broker that could not be reached.
fn classify(source: lapin::Error) -> BusError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&source);
    while let Some(err) = cause {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && inner.is::<rustls::Error>()
        {
            return BusError::Tls(format!(
                "the broker's TLS handshake failed ({inner}); check cacertfile and the host name in the AMQP URL"
            ));
        }
        cause = err.source();
    }
    BusError::Amqp {
        context: "connect to the broker",
        source,
    }
}

/// The TLS settings of one `amqps://` address, read from its query string.
fn tls_config(address: &str) -> Result<OwnedTLSConfig, BusError> {
    let mut config = OwnedTLSConfig::default();
    if !address.starts_with("amqps://") {
        return Ok(config);
    }
    let param = |name: &str| {
        address.split_once('?').and_then(|(_, query)| {
            query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(key, _)| *key == name)
                .map(|(_, value)| percent_decode(value))
        })
    };
    let read = |name: &str, path: &str| {
        std::fs::read(path).map_err(|e| BusError::Tls(format!("{name} {path} cannot be read: {e}")))
    };
    if let Some(path) = param("cacertfile") {
        let pem = read("cacertfile", &path)?;
        let pem = String::from_utf8(pem)
            .map_err(|_| BusError::Tls(format!("cacertfile {path} is not a PEM file")))?;
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(BusError::Tls(format!(
                "cacertfile {path} holds no PEM certificate"
            )));
        }
        config.cert_chain = Some(pem);
    }
    match (param("certfile"), param("keyfile")) {
        (None, None) => {}
        (Some(cert), Some(key)) => {
            config.identity = Some(OwnedIdentity::PKCS8 {
                pem: read("certfile", &cert)?,
                key: read("keyfile", &key)?,
            });
        }
        _ => {
            return Err(BusError::Tls(
                "certfile and keyfile go together in the AMQP URL: give both or neither".into(),
            ));
        }
    }
    Ok(config)
}

fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| raw.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
            Err(err @ BusError::Tls(_)) => {
                tracing::error!(error = %err, retry_in_ms = delay.as_millis() as u64, "broker refused over TLS");
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_addresses_need_no_tls() {
        let config = tls_config("amqp://guest:guest@127.0.0.1:5672/%2f?cacertfile=/nope").unwrap();
        assert!(config.cert_chain.is_none() && config.identity.is_none());
    }

    #[test]
    fn tls_files_that_cannot_be_used_are_named() {
        let err = tls_config("amqps://h:5671/%2f?cacertfile=%2Fno%2Fca.pem").unwrap_err();
        assert!(err.to_string().contains("/no/ca.pem"), "{err}");
        let err = tls_config("amqps://h:5671/%2f?certfile=/a.pem").unwrap_err();
        assert!(err.to_string().contains("go together"), "{err}");
        let not_pem = std::env::temp_dir().join(format!("beckon-not-pem-{}", std::process::id()));
        std::fs::write(&not_pem, "hello").unwrap();
        let err =
            tls_config(&format!("amqps://h/%2f?cacertfile={}", not_pem.display())).unwrap_err();
        std::fs::remove_file(&not_pem).unwrap();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }
}
