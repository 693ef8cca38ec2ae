//! `beckon migrate` and `beckon migrate status`.

use crate::output::Report;
use anyhow::Context as _;
use serde::Serialize;
use std::io::{self, Write};

/// The migrations one run applied.
#[derive(Debug, Serialize)]
pub struct Applied {
    /// Versions applied by this run, oldest first (none when the database was up to date).
    pub applied: Vec<String>,
}

impl Report for Applied {
    fn table(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.applied.is_empty() {
            return writeln!(out, "nothing to apply: the database is up to date");
        }
        for version in &self.applied {
            writeln!(out, "applied {version}")?;
        }
        writeln!(out, "{} migration(s) applied", self.applied.len())
    }
}

/// Applies every pending migration, taking turns with other processes doing the same.
pub async fn apply(url: &str) -> anyhow::Result<Applied> {
    let applied = beckon_store::migrate_reporting(url, |holder| {
        crate::output::note(format!("waiting for the migration lock, held by {holder}"));
    })
    .await
    .context("Failed to apply the migrations")?;
    Ok(Applied { applied })
}

/// Where one version stands, in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum VersionState {
    Applied,
    Pending,
    /// Applied by a binary newer than this one.
    Unknown,
}

/// Where the database stands against the migrations this binary has.
#[derive(Debug, Serialize)]
pub struct Status {
    /// Versions applied, oldest first.
    pub applied: Vec<String>,
    /// Versions this binary would apply, oldest first.
    pub pending: Vec<String>,
    /// Versions applied that this binary does not know (a newer version migrated it).
    pub unknown: Vec<String>,
}

impl Report for Status {
    fn table(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut rows: Vec<(&str, VersionState)> = self
            .applied
            .iter()
            .map(|v| {
                let state = if self.unknown.contains(v) {
                    VersionState::Unknown
                } else {
                    VersionState::Applied
                };
                (v.as_str(), state)
            })
            .chain(
                self.pending
                    .iter()
                    .map(|v| (v.as_str(), VersionState::Pending)),
            )
            .collect();
        rows.sort();
        writeln!(out, "{:<20} state", "version")?;
        for (version, state) in rows {
            let state = match state {
                VersionState::Applied => "applied",
                VersionState::Pending => "pending",
                VersionState::Unknown => "unknown (applied by a newer version)",
            };
            writeln!(out, "{version:<20} {state}")?;
        }
        writeln!(
            out,
            "{} applied, {} pending, {} unknown",
            self.applied.len(),
            self.pending.len(),
            self.unknown.len()
        )
    }
}

/// Reports what is applied and what is pending; applies nothing.
pub async fn status(url: &str) -> anyhow::Result<Status> {
    let status = beckon_store::migrations::status(url)
        .await
        .context("Failed to read the applied migrations")?;
    Ok(Status {
        applied: status.applied,
        pending: status.pending,
        unknown: status.unknown,
    })
}
