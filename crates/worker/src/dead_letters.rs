//! Watching every dead letter, whoever made it.
//!
//! A consumer dead-letters a poison message (and counts it); the broker dead-letters too — a
//! message past its queue's delivery limit — and tells no one. Every dead letter, whoever made
//! it, is therefore also copied to `{prefix}.dead-letters` (see `beckon_bus::topology`), and each
//! consumer service watches that queue: the trigger the envelope belongs to is marked failed
//! with the queue and reason — the one place that does it — and a dead letter the broker made is
//! counted in `beckon_messages_dead_lettered_total` like the consumers' own. The copies in the
//! dead-letter queues stay for the operator.

use crate::Deps;
use beckon_bus::consumer::{self, ConsumerConfig};
use beckon_bus::{Disposition, Message, Topology, headers};
use beckon_runtime::error_chain;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// What a dead letter says about itself.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DeadLetter {
    /// The work queue it came from (short name).
    pub queue: String,
    pub reason: String,
    /// Whether the broker made it (past the delivery limit, say) rather than a consumer, which
    /// counted it already.
    pub by_broker: bool,
    /// The trigger of its envelope and the organization it belongs to, when that much can be
    /// read.
    pub trigger: Option<(Uuid, Uuid)>,
}

impl DeadLetter {
    /// What the message says about itself; `None` for a message neither a consumer nor the
    /// broker dead-lettered (published to the dead-letter exchange by hand).
    pub(crate) fn read(topology: &Topology, message: &Message) -> Option<Self> {
        #[derive(serde::Deserialize)]
        struct Correlated {
            correlation_id: Uuid,
            org_id: Uuid,
        }
        let table = message.headers.as_ref();
        let trigger = serde_json::from_slice::<Correlated>(&message.body)
            .ok()
            .map(|c| (c.correlation_id, c.org_id));
        // A consumer's own dead letter names its reason; a replayed message carries no
        // dead-letter headers, so one with Beckon's reason was dead-lettered by a consumer, and
        // one with the broker's by the broker.
        Some(match headers::get_str(table, headers::REASON) {
            Some(reason) => Self {
                queue: headers::get_str(table, headers::SOURCE_QUEUE)
                    .map(|q| topology.short_name(&q).to_owned())
                    .unwrap_or_else(|| topology.short_name(&message.routing_key).to_owned()),
                reason,
                by_broker: false,
                trigger,
            },
            None => Self {
                queue: headers::get_str(table, headers::FIRST_DEATH_QUEUE)
                    .map(|q| topology.short_name(&q).to_owned())
                    .unwrap_or_else(|| topology.short_name(&message.routing_key).to_owned()),
                reason: headers::get_str(table, headers::FIRST_DEATH_REASON)?,
                by_broker: true,
                trigger,
            },
        })
    }
}

/// Watches `{prefix}.dead-letters` until `cancel` fires.
pub(crate) async fn watch(
    config: ConsumerConfig,
    deps: Deps,
    cancel: CancellationToken,
    ready: impl Fn(bool) + Send + Sync,
) {
    let topology = config.topology.clone();
    let handler_cancel = cancel.clone();
    consumer::run(
        config,
        move |message: Message| {
            let (topology, deps, cancel) = (topology.clone(), deps.clone(), handler_cancel.clone());
            async move { settle(&topology, &deps, &message, &cancel).await }
        },
        cancel,
        ready,
    )
    .await;
}

async fn settle(
    topology: &Topology,
    deps: &Deps,
    message: &Message,
    cancel: &CancellationToken,
) -> Disposition {
    let Some(dead) = DeadLetter::read(topology, message) else {
        tracing::warn!(routing_key = %message.routing_key, "a message on the dead-letter exchange that no consumer and not the broker dead-lettered; left in the dead-letter queue");
        return Disposition::Ack;
    };
    if let Some((trigger_id, org_id)) = dead.trigger {
        loop {
            let marked = async {
                let mut conn = deps.store.conn().await?;
                beckon_store::triggers::fail_dead_lettered(
                    &mut conn,
                    trigger_id,
                    org_id,
                    &format!("dead-lettered from {}: {}", dead.queue, dead.reason),
                )
                .await
            }
            .await;
            match marked {
                Ok(_) => break,
                // The database is away: hold the copy until it is back, like any delivery.
                Err(_) if !deps.database.answers().await => {
                    if !deps.database.wait_up(cancel).await {
                        return Disposition::Release;
                    }
                }
                Err(err) => {
                    return Disposition::Retry {
                        reason: error_chain(&err),
                    };
                }
            }
        }
    }
    if dead.by_broker {
        tracing::error!(queue = %dead.queue, reason = %dead.reason, trigger_id = ?dead.trigger.map(|t| t.0), "the broker dead-lettered a message");
        metrics::counter!("beckon_messages_dead_lettered_total", "queue" => dead.queue, "reason" => dead.reason)
            .increment(1);
    }
    Disposition::Ack
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::FieldTable;

    fn topology() -> Topology {
        Topology::new(&beckon_bus::BusConfig::new("amqp://x", "acme"))
    }

    fn message(headers: &[(&str, &str)], body: &str) -> Message {
        let mut table = FieldTable::default();
        for (k, v) in headers {
            headers::set_str(&mut table, k, v);
        }
        Message {
            body: body.as_bytes().to_vec(),
            headers: Some(table),
            routing_key: "acme.matcher".to_owned(),
            delivery_count: 0,
        }
    }

    #[test]
    fn a_dead_letter_the_broker_made_is_told_from_a_consumers_own() {
        let (trigger, org) = (Uuid::now_v7(), Uuid::now_v7());
        let body = format!(r#"{{"correlation_id":"{trigger}","org_id":"{org}","id":"x"}}"#);
        let broker = DeadLetter::read(
            &topology(),
            &message(
                &[
                    ("x-first-death-reason", "delivery_limit"),
                    ("x-first-death-queue", "acme.invitation"),
                ],
                &body,
            ),
        );
        assert_eq!(
            broker,
            Some(DeadLetter {
                queue: "invitation".into(),
                reason: "delivery_limit".into(),
                by_broker: true,
                trigger: Some((trigger, org)),
            })
        );
        let ours = DeadLetter::read(
            &topology(),
            &message(
                &[
                    ("x-beckon-reason", "malformed_json"),
                    ("x-beckon-queue", "acme.matcher"),
                ],
                "{not json",
            ),
        );
        assert_eq!(
            ours,
            Some(DeadLetter {
                queue: "matcher".into(),
                reason: "malformed_json".into(),
                by_broker: false,
                trigger: None,
            })
        );
        // Neither a consumer's nor the broker's: nothing to believe.
        assert_eq!(DeadLetter::read(&topology(), &message(&[], &body)), None);
    }
}
