//! `beckon keys reseal`: after a key rotation, seal every stored value that is not under the
//! newest key again under it, so the old key can be dropped.
//!
//! The keys come from the environment as the services read them (`BECKON_SECRET_KEYS`, newest
//! first, or `BECKON_SECRET_KEY`), never from the command line, where they would show in the
//! process list and the shell's history. Each batch is one transaction over rows it locks with
//! `FOR UPDATE SKIP LOCKED`, so the services keep running; rows they hold at that moment are
//! left for the next run, and a run that leaves any says so and fails.

use anyhow::Context as _;
use beckon_store::sealed::{self, Mode, SEALED_COLUMNS};
use beckon_webhooks::sealed::SealingKeys;
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

/// Runs `beckon keys reseal`, printing one line per column.
pub async fn reseal(
    conn: &mut beckon_store::Conn,
    batch_size: i64,
    dry_run: bool,
    force: bool,
) -> anyhow::Result<()> {
    anyhow::ensure!(batch_size > 0, "--batch-size must be at least 1");
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
        anyhow::ensure!(
            current > 0,
            "no stored value is sealed under key {} yet, so nothing shows the services have it: \
             roll out BECKON_SECRET_KEYS with it first (step 2), or pass --force if you are sure",
            keys.newest_id()
        );
    }
    let mode = if dry_run { Mode::DryRun } else { Mode::Rewrite };
    println!(
        "{} under key {}",
        if dry_run {
            "dry run: would reseal"
        } else {
            "resealing"
        },
        keys.newest_id()
    );
    println!(
        "{:<45} {:>10} {:>10} {:>10}",
        "column",
        if dry_run { "to reseal" } else { "resealed" },
        "unreadable",
        "left"
    );
    let (mut left, mut unreadable) = (0, 0);
    for column in SEALED_COLUMNS {
        let tally = pass(conn, &keys, *column, batch_size, mode).await?;
        println!(
            "{:<45} {:>10} {:>10} {:>10}",
            column.to_string(),
            tally.resealed,
            tally.unreadable,
            tally.left
        );
        left += tally.left;
        unreadable += tally.unreadable;
    }
    if dry_run {
        return Ok(());
    }
    anyhow::ensure!(
        unreadable == 0,
        "{unreadable} value(s) open under none of the configured keys: keep the key they were \
         sealed with in BECKON_SECRET_KEYS, or they are corrupt"
    );
    anyhow::ensure!(
        left == 0,
        "{left} value(s) are not yet under key {}: rows the services held, or values sealed by \
         a process that does not have the new key yet; run `beckon keys reseal` again",
        keys.newest_id()
    );
    Ok(())
}
