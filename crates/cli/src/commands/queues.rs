//! `beckon queues`: each work queue and its dead-letter queue, with their depths.

use crate::broker::Broker;
use crate::output::Report;
use beckon_bus::topology::queues;
use serde::Serialize;
use std::io::{self, Write};

/// Which side of the pipeline a queue is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueKind {
    /// A service consumes it.
    Work,
    /// It keeps the work queue's dead letters for the operator.
    DeadLetter,
}

/// One queue and its depth.
#[derive(Debug, Clone, Serialize)]
pub struct QueueDepth {
    /// The full name, prefix included.
    pub name: String,
    pub kind: QueueKind,
    /// The work queue's short name, as `dlq` commands take it.
    pub work_queue: &'static str,
    pub messages: u32,
    pub consumers: u32,
}

/// Every work queue and dead-letter queue, in pipeline order.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct QueueList(pub Vec<QueueDepth>);

impl Report for QueueList {
    fn table(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "{:<48} {:>10} {:>10}",
            "queue", "messages", "consumers"
        )?;
        for q in &self.0 {
            writeln!(out, "{:<48} {:>10} {:>10}", q.name, q.messages, q.consumers)?;
        }
        Ok(())
    }
}

pub async fn list(broker: &Broker) -> anyhow::Result<QueueList> {
    let mut listed = Vec::new();
    for q in queues::all() {
        for (name, kind) in [
            (broker.topology().queue(q.name), QueueKind::Work),
            (
                broker.topology().dead_letter_queue(q.name),
                QueueKind::DeadLetter,
            ),
        ] {
            let depth = broker.depth(&name).await?;
            listed.push(QueueDepth {
                name,
                kind,
                work_queue: q.name,
                messages: depth.messages,
                consumers: depth.consumers,
            });
        }
    }
    Ok(QueueList(listed))
}
