//! Bus configuration.

/// Where the broker is and how this deployment's queues are named and bounded.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// AMQP URI, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`, or several separated by commas
    /// (the nodes of a cluster), tried in turn.
    pub uri: String,
    /// Prefix of every exchange and queue name, so deployments (and tests) sharing one broker
    /// never see each other's messages.
    pub prefix: String,
    /// Most unacknowledged deliveries a consumer holds at once.
    pub prefetch: u16,
    /// Deliveries of one message before the quorum queue dead-letters it.
    pub delivery_limit: u32,
    /// When set, queues unused for this many milliseconds are deleted by the broker
    /// (`x-expires`). Meant for tests; leave unset in production.
    pub queue_expires_ms: Option<u32>,
}

impl BusConfig {
    pub fn new(uri: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            prefix: prefix.into(),
            prefetch: 64,
            delivery_limit: 5,
            queue_expires_ms: None,
        }
    }
}
