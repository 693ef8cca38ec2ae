//! `beckon webhooks recover`.

use crate::output::Report;
use anyhow::Context as _;
use serde::Serialize;
use std::io::{self, Write};
use time::OffsetDateTime;
use uuid::Uuid;

/// What a recover queued again.
#[derive(Debug, Serialize)]
pub struct Recovered {
    pub subscription_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// Failed or skipped deliveries made due again.
    pub queued: i64,
    /// Left as they are: their message bodies were erased at the end of the payload
    /// retention period.
    pub skipped_payload_erased: i64,
}

impl Report for Recovered {
    fn table(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{} failed deliveries queued again", self.queued)?;
        if self.skipped_payload_erased > 0 {
            writeln!(
                out,
                "{} not queued: their message bodies were erased at the end of the payload \
                 retention period",
                self.skipped_payload_erased
            )?;
        }
        Ok(())
    }
}

/// Sends again every failed or skipped delivery of a subscription created since `since`.
pub async fn recover(
    conn: &mut beckon_store::Conn,
    subscription: Uuid,
    since: OffsetDateTime,
) -> anyhow::Result<Recovered> {
    let recovered = beckon_store::webhooks::recover(conn, subscription, since)
        .await
        .context("Failed to queue the deliveries again")?;
    Ok(Recovered {
        subscription_id: subscription,
        since,
        queued: recovered.queued,
        skipped_payload_erased: recovered.skipped_payload_erased,
    })
}
