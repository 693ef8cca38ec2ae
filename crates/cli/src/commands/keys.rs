//! `beckon keys reseal`: after a key rotation, seal every stored value that is not under the
//! newest key again under it, so the old key can be dropped.
//!
//! The keys come from the environment as the services read them (`BECKON_SECRET_KEYS`, newest
//! first, or `BECKON_SECRET_KEY`), never from the command line, where they would show in the
//! process list and the shell's history. Each batch is one transaction over rows it locks with
//! `FOR UPDATE SKIP LOCKED`, so the services keep running; rows they hold at that moment are
//! left for the next run, and a run that leaves any says so and fails.

use crate::output::{ErrorCode, Failure, Report};
use anyhow::Context as _;
use beckon_store::sealed::{self, Mode, SEALED_COLUMNS};
use beckon_webhooks::sealed::SealingKeys;
use serde::Serialize;
use std::io::{self, Write};
use uuid::Uuid;

/// What one column came to.
struct Tally {
    resealed: usize,
    unreadable: usize,
    /// Values not under the newest key once the pass is over (unreadable ones included).
    left: i64,
}

async fn pass(
    conn: &mut beckon_store::Conn,
    keys: &SealingKeys,
    column: sealed::SealedColumn,
    batch_size: i64,
    mode: Mode,
) -> anyhow::Result<Tally> {
    let header = keys.newest_header();
    let reseal = |value: &[u8]| keys.reseal(value).ok();
    let mut tally = Tally {
        resealed: 0,
        unreadable: 0,
        left: 0,
    };
    // Ids are never nil, so the first batch starts before every row.
    let mut after = Uuid::nil();
    loop {
        let batch = sealed::reseal_batch(conn, column, &header, after, batch_size, mode, &reseal)
            .await
            .with_context(|| format!("Failed to reseal a batch of {column}"))?;
        tally.resealed += batch.resealed;
        tally.unreadable += batch.unreadable;
        match batch.last {
            Some(last) => after = last,
            None => break,
        }
    }
    tally.left = sealed::count_stale(conn, column, &header)
        .await
        .with_context(|| format!("Failed to count what is left of {column}"))?;
    Ok(tally)
}

/// What one column came to, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnReport {
    /// `table.column`.
    pub column: String,
    /// Values resealed, or on a dry run to reseal.
    pub resealed: usize,
    /// Values no configured key opens.
    pub unreadable: usize,
    /// Values not under the newest key once the pass is over (unreadable ones included).
    pub left: i64,
}

/// What `beckon keys reseal` did, column by column.
#[derive(Debug, Serialize)]
pub struct ResealReport {
    /// The newest key's id: the one everything is sealed under afterwards.
    pub key_id: String,
    pub dry_run: bool,
    pub columns: Vec<ColumnReport>,
}

impl Report for ResealReport {
    fn table(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "{} under key {}",
            if self.dry_run {
                "dry run: would reseal"
            } else {
                "resealing"
            },
            self.key_id
        )?;
        writeln!(
            out,
            "{:<45} {:>10} {:>10} {:>10}",
            "column",
            if self.dry_run {
                "to reseal"
            } else {
                "resealed"
            },
            "unreadable",
            "left"
        )?;
        for c in &self.columns {
            writeln!(
                out,
                "{:<45} {:>10} {:>10} {:>10}",
                c.column, c.resealed, c.unreadable, c.left
            )?;
        }
        Ok(())
    }

    /// A run that could not reseal everything fails once it has reported.
    fn failure(&self) -> Option<Failure> {
        if self.dry_run {
            return None;
        }
        let unreadable: usize = self.columns.iter().map(|c| c.unreadable).sum();
        let left: i64 = self.columns.iter().map(|c| c.left).sum();
        if unreadable > 0 {
            return Some(Failure::new(
                ErrorCode::Incomplete,
                format!(
                    "{unreadable} value(s) open under none of the configured keys: keep the key \
                     they were sealed with in BECKON_SECRET_KEYS, or they are corrupt"
                ),
            ));
        }
        (left > 0).then(|| {
            Failure::new(
                ErrorCode::Incomplete,
                format!(
                    "{left} value(s) are not yet under key {}: rows the services held, or values \
                     sealed by a process that does not have the new key yet; run `beckon keys \
                     reseal` again",
                    self.key_id
                ),
            )
        })
    }
}

/// Runs `beckon keys reseal` over every sealed column.
pub async fn reseal(
    conn: &mut beckon_store::Conn,
    batch_size: i64,
    dry_run: bool,
    force: bool,
) -> anyhow::Result<ResealReport> {
    if batch_size < 1 {
        return Err(Failure::invalid_input("--batch-size must be at least 1"));
    }
    let keys = beckon_webhooks::sealing_keys_from_env()
        .context("Failed to read the sealing keys from the environment")?;
    // Resealing under a key the services do not have would make every value unreadable to
    // them. A value the services sealed under the newest key shows they have it.
    if !dry_run && !force {
        let header = keys.newest_header();
        let mut current = 0;
        for column in SEALED_COLUMNS {
            current += sealed::count_current(conn, *column, &header)
                .await
                .with_context(|| format!("Failed to count {column}"))?;
        }
        if current == 0 {
            return Err(Failure::conflict(format!(
                "no stored value is sealed under key {} yet, so nothing shows the services have \
                 it: roll out BECKON_SECRET_KEYS with it first (step 2), or pass --force if you \
                 are sure",
                keys.newest_id()
            )));
        }
    }
    let mode = if dry_run { Mode::DryRun } else { Mode::Rewrite };
    let mut report = ResealReport {
        key_id: keys.newest_id().to_string(),
        dry_run,
        columns: Vec::new(),
    };
    for column in SEALED_COLUMNS {
        let tally = pass(conn, &keys, *column, batch_size, mode).await?;
        report.columns.push(ColumnReport {
            column: column.to_string(),
            resealed: tally.resealed,
            unreadable: tally.unreadable,
            left: tally.left,
        });
    }
    Ok(report)
}
