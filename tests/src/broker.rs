//! Direct broker access for tests: publish raw bytes, tap the events exchange, read a
//! dead-letter queue.

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use std::time::Duration;

pub struct Broker {
    _conn: Connection,
    pub channel: Channel,
    prefix: String,
}

impl Broker {
    pub async fn connect(prefix: &str) -> Self {
        Self::connect_to(&crate::amqp_url(), prefix).await
    }

    /// On the broker (or virtual host) at `url`.
    pub async fn connect_to(url: &str, prefix: &str) -> Self {
        // Through the bus's connect, which takes a cluster's list of addresses too.
        let conn = beckon_bus::connect::connect(url, "test-broker")
            .await
            .expect("the broker is reachable");
        let channel = conn.create_channel().await.expect("a channel");
        Self {
            _conn: conn,
            channel,
            prefix: prefix.to_owned(),
        }
    }

    /// Publishes raw bytes to the events exchange under `routing_key`.
    pub async fn publish_raw(&self, routing_key: &str, body: &[u8]) {
        self.channel
            .basic_publish(
                format!("{}.events", self.prefix).into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default(),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
    }

    /// Puts raw bytes into the dead-letter queue of work queue `queue` (short name), as a
    /// consumer that gave up on them would, with a reason header.
    pub async fn dead_letter(&self, queue: &str, body: &[u8], reason: &str) {
        let mut headers = FieldTable::default();
        beckon_bus::headers::set_str(&mut headers, beckon_bus::headers::REASON, reason);
        self.channel
            .basic_publish(
                format!("{}.dlx", self.prefix).into(),
                format!("{}.{queue}", self.prefix).into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default().with_headers(headers),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
    }

    /// How many messages are ready in `queue` (full name).
    pub async fn depth(&self, queue: &str) -> u32 {
        self.channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("the queue exists")
            .message_count()
    }

    /// Takes every message now in `queue` (full name), waiting up to `wait` for `at_least`.
    pub async fn drain(
        &self,
        queue: &str,
        at_least: usize,
        wait: Duration,
    ) -> Vec<lapin::message::BasicGetMessage> {
        let deadline = std::time::Instant::now() + wait;
        let mut out = Vec::new();
        loop {
            match self
                .channel
                .basic_get(queue.into(), BasicGetOptions { no_ack: true })
                .await
                .expect("basic.get")
            {
                Some(m) => out.push(m),
                None if out.len() >= at_least || std::time::Instant::now() > deadline => {
                    return out;
                }
                None => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// A queue receiving a copy of every envelope published to the events exchange.
    pub async fn tap(&self) -> Tap {
        let name = format!("{}.tap", self.prefix);
        self.channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare the tap");
        self.channel
            .queue_bind(
                name.as_str().into(),
                format!("{}.events", self.prefix).into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind the tap");
        let consumer = self
            .channel
            .basic_consume(
                name.as_str().into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consume the tap");
        Tap { consumer }
    }
}

pub struct Tap {
    consumer: lapin::Consumer,
}

impl Tap {
    /// The next tapped body, or `None` after `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Vec<u8>> {
        match tokio::time::timeout(wait, self.consumer.next()).await {
            Ok(Some(Ok(d))) => Some(d.data),
            _ => None,
        }
    }
}
