//! `beckon triggers scheduled | cancel`.

use crate::output::{Failure, Report, cell};
use anyhow::Context as _;
use beckon_domain::LifecycleEvent;
use serde::Serialize;
use std::io::{self, Write};
use time::OffsetDateTime;
use uuid::Uuid;

/// A trigger waiting for its time.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduledTrigger {
    pub id: Uuid,
    pub project_id: Uuid,
    #[serde(with = "time::serde::rfc3339::option")]
    pub scheduled_for: Option<OffsetDateTime>,
    /// The event, as the API takes it: a predefined name, or `{"custom": "name"}`.
    pub event: LifecycleEvent,
    /// `None` when the event named no contact.
    pub user_ref: Option<String>,
}

/// Scheduled triggers, soonest first.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct ScheduledList(pub Vec<ScheduledTrigger>);

impl Report for ScheduledList {
    fn table(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "{:<38} {:<38} {:<28} {:<24} user_ref",
            "trigger", "project", "fires at", "event"
        )?;
        for t in &self.0 {
            writeln!(
                out,
                "{:<38} {:<38} {:<28} {:<24} {}",
                t.id.to_string(),
                t.project_id.to_string(),
                cell(t.scheduled_for),
                t.event.key(),
                t.user_ref.as_deref().unwrap_or("-")
            )?;
        }
        Ok(())
    }
}

pub async fn scheduled(
    conn: &mut beckon_store::Conn,
    project: Option<Uuid>,
    limit: i64,
) -> anyhow::Result<ScheduledList> {
    let rows = beckon_store::triggers::scheduled(conn, project, limit)
        .await
        .context("Failed to list the scheduled triggers")?;
    rows.into_iter()
        .map(|t| {
            let event = serde_json::from_value(t.event)
                .with_context(|| format!("Trigger {} holds an event Beckon cannot read", t.id))?;
            Ok(ScheduledTrigger {
                id: t.id,
                project_id: t.project_id,
                scheduled_for: t.scheduled_for,
                event,
                user_ref: t.user_ref,
            })
        })
        .collect::<anyhow::Result<_>>()
        .map(ScheduledList)
}

/// A cancelled trigger.
#[derive(Debug, Serialize)]
pub struct CancelledTrigger {
    pub trigger_id: Uuid,
}

impl Report for CancelledTrigger {
    fn table(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "trigger {} cancelled", self.trigger_id)
    }
}

/// Cancels a scheduled trigger so it never fires.
pub async fn cancel(conn: &mut beckon_store::Conn, id: Uuid) -> anyhow::Result<CancelledTrigger> {
    let cancelled = beckon_store::triggers::cancel_scheduled(conn, id)
        .await
        .context("Failed to cancel the trigger")?;
    if !cancelled {
        return Err(Failure::not_found(format!(
            "No scheduled trigger {id} (it fired, was cancelled, or does not exist)"
        )));
    }
    Ok(CancelledTrigger { trigger_id: id })
}
