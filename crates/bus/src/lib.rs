#![doc = include_str!("../README.md")]
//!
//! # Layout
//! - [`config`]: where the broker is and how queues are named and bounded.
//! - [`topology`]: exchange and queue names, and their idempotent declaration.
//! - [`connect`]: connecting, with retries until a deadline or for ever.
//! - [`publisher`]: confirmed publishing that survives a broker restart.
//! - [`consumer`]: the consume loop with manual ack, retries and dead letters.
//! - [`acks`]: acknowledging many deliveries with one frame.
//! - [`reply`]: the gateway's reply queue for request/reply.
//! - [`headers`]: reading and writing AMQP headers.

pub mod acks;
pub mod config;
pub mod connect;
pub mod consumer;
pub mod headers;
pub mod publisher;
pub mod reply;
pub mod topology;

/// Jittered, growing pauses between retries (the runtime's, shared by every retry loop).
pub use beckon_runtime::backoff;
pub use config::BusConfig;
pub use consumer::{Disposition, Message};
pub use publisher::Publisher;
pub use topology::{Topology, WorkQueue};

/// A broker operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The broker could not be reached or the channel broke.
    #[error("broker operation failed: {context}")]
    Amqp {
        context: &'static str,
        #[source]
        source: lapin::Error,
    },
    /// The TLS settings of an `amqps://` address cannot be used, or the broker's certificate
    /// was refused (or it refused ours): trying again will not help until they change.
    #[error("{0}")]
    Tls(String),
    /// The broker did not answer in time (a hung connection).
    #[error("the broker did not answer within {0:?} while trying to {1}")]
    Timeout(std::time::Duration, &'static str),
    /// The broker closed the channel or connection under us.
    #[error("the broker closed the {0}")]
    Closed(&'static str),
    /// The broker refused a published message (a negative confirm).
    #[error(
        "the broker did not accept the message published to `{exchange}` with key `{routing_key}`"
    )]
    Nacked {
        exchange: String,
        routing_key: String,
    },
}

impl BusError {
    pub(crate) fn amqp(context: &'static str) -> impl FnOnce(lapin::Error) -> Self {
        move |source| Self::Amqp { context, source }
    }
}
