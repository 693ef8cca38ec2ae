//! `beckon dlq peek | replay | purge`: a work queue's dead letters.
//!
//! # One bounded pass
//!
//! `peek` and `replay` read the dead-letter queue with a [`Pass`]: they take messages from
//! its head one by one and never hand one back with a requeue (that counts a failed delivery,
//! and RabbitMQ 4 drops a quorum-queue message past 20 of them). A message that is not moved —
//! peeked at, filtered out by `replay --type/--reason/--since/--until`, past `--count`, or
//! looked at by `replay --dry-run` — is put back at the tail of the queue as an identical copy
//! (body, properties, headers), published with a confirm, and its original is acknowledged
//! only once the broker confirmed the copy. A message that is moved goes to its work queue the
//! same way. So:
//!
//! - **Memory is bounded**: a skipped message is not held; at most the pass's window of
//!   messages (128) awaits its confirm at any moment, whatever the queue's depth.
//! - **It ends**: the pass takes as many messages as the queue held when it started, then
//!   stops. Dead letters that arrive meanwhile queue up behind those and ahead of the copies,
//!   are never looked at, and stay. Once the pass is over the queue holds what it held, in the
//!   same order, less what was moved. (A replay that moved everything it wanted from the head
//!   without skipping any stops at once: the rest is in order where it is.)
//! - **Nothing is lost or duplicated**: a copy or a move exists before its original is
//!   acknowledged, and a refused move is put back as a copy instead. SIGINT or SIGTERM stops
//!   the pass between two messages and settles every message held before exiting, so each
//!   one is in exactly one place (those already looked at are then at the tail). Only a
//!   process killed outright (SIGKILL, a crash, a lost connection) can leave a message of the
//!   window in two places; none is ever lost, and the consumers skip an envelope id they
//!   handled. With `--rate`, nothing is held while the pass waits for its next move.
//! - **Dry runs move nothing**: every message looked at is put back as a copy, so depth,
//!   order, bodies and headers are as they were.

use crate::broker::{Broker, Pass, work_queue};
use crate::cli::ReplayArgs;
use crate::dead_letter::{Filter, Peeked, Reveal, Summary};
use crate::output::{ErrorCode, Failure, Report, cell, note};
use crate::pace::Pacer;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::io::{self, Write};
use std::num::NonZeroU32;
use tokio_util::sync::CancellationToken;

/// Tells a pass to stop between two messages.
#[derive(Debug, Clone, Default)]
pub struct Stop(CancellationToken);

impl Stop {
    /// A stop nothing asks for, but [`Stop::now`].
    pub fn never() -> Self {
        Self::default()
    }

    /// A stop asked for by SIGINT or SIGTERM. A second one exits at once (nothing is lost;
    /// the messages held may then be in the queue twice).
    pub fn on_signals() -> Self {
        let stop = Self::default();
        let token = stop.0.clone();
        tokio::spawn(async move {
            signal().await;
            note("Stopping: settling the messages held first (interrupt again to exit at once)");
            token.cancel();
            signal().await;
            std::process::exit(130);
        });
        stop
    }

    /// Asks the pass to stop.
    pub fn now(&self) {
        self.0.cancel();
    }

    fn asked(&self) -> bool {
        self.0.is_cancelled()
    }
}

/// Resolves at the next SIGINT or SIGTERM.
async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// What `dlq peek` saw.
#[derive(Debug, Serialize)]
pub struct PeekReport {
    pub queue: String,
    pub dead_letter_queue: String,
    /// Dead letters in the queue when the peek began.
    pub depth: u32,
    /// Stopped by a signal before the pass was over.
    pub interrupted: bool,
    /// The first `--count` of them, from the head.
    pub messages: Vec<Peeked>,
}

impl Report for PeekReport {
    fn table(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.messages.is_empty() {
            writeln!(out, "no dead letters in {}", self.dead_letter_queue)?;
        }
        for message in &self.messages {
            message.table(out)?;
        }
        Ok(())
    }

    fn failure(&self) -> Option<Failure> {
        self.interrupted.then(|| {
            Failure::new(
                ErrorCode::Interrupted,
                format!(
                    "Interrupted; every dead letter is still in {} (those looked at are at its tail)",
                    self.dead_letter_queue
                ),
            )
        })
    }
}

/// Shows up to `count` dead letters of `queue` from the head, leaving every one in place.
pub async fn peek(
    broker: &Broker,
    queue: &str,
    count: u32,
    reveal: Reveal,
    stop: &Stop,
) -> anyhow::Result<PeekReport> {
    let q = work_queue(queue)?;
    let dlq = broker.topology().dead_letter_queue(q.name);
    let depth = broker.depth(&dlq).await?.messages;
    let mut pass = Pass::new(broker, &dlq);
    let mut report = PeekReport {
        queue: q.name.to_owned(),
        dead_letter_queue: dlq.clone(),
        depth,
        interrupted: false,
        messages: Vec::new(),
    };
    let walked = async {
        for position in 1..=depth {
            if stop.asked() {
                report.interrupted = true;
                break;
            }
            let Some(delivery) = pass.take().await? else {
                break;
            };
            if position <= count {
                report
                    .messages
                    .push(Peeked::of(position, &delivery, reveal));
            }
            pass.keep(delivery).await?;
        }
        anyhow::Ok(())
    }
    .await;
    // Whatever happened, what was sent on is acknowledged, so it is not there twice.
    let settled = pass.settle().await;
    walked?;
    settled?;
    Ok(report)
}

/// What `dlq replay` is asked to do.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The work queue's short name.
    pub queue: String,
    pub filter: Filter,
    /// At most this many.
    pub count: Option<u32>,
    /// At most this many moves a second.
    pub rate: Option<NonZeroU32>,
    pub dry_run: bool,
}

impl From<ReplayArgs> for ReplayOptions {
    fn from(args: ReplayArgs) -> Self {
        Self {
            queue: args.queue,
            filter: Filter {
                kind: args.kind,
                reason: args.reason,
                since: args.since,
                until: args.until,
            },
            count: args.count,
            rate: args.rate,
            dry_run: args.dry_run,
        }
    }
}

/// What `dlq replay` did, or on a dry run would do.
#[derive(Debug, Serialize)]
pub struct ReplayReport {
    pub queue: String,
    pub dead_letter_queue: String,
    pub work_queue: String,
    pub dry_run: bool,
    /// Dead letters in the queue when the pass began: how many it looks at, at most.
    pub depth: u32,
    /// How many it looked at.
    pub examined: u32,
    /// How many the filters and `--count` selected: moved, or to be moved on a dry run.
    pub selected: u32,
    /// How many went to the work queue (none on a dry run).
    pub replayed: u32,
    /// Selected, but the broker refused to route them: they stay in the dead-letter queue.
    pub refused: u32,
    /// Stopped by a signal before the pass was over.
    pub interrupted: bool,
    /// The first [`MAX_LISTED`] selected, in the order the pass met them (`selected` counts
    /// them all), so a replay of millions holds no list of millions.
    pub messages: Vec<Summary>,
}

/// How many selected dead letters a replay report lists at most.
pub const MAX_LISTED: usize = 1000;

impl Report for ReplayReport {
    fn table(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.dry_run {
            writeln!(
                out,
                "dry run: would replay {} message(s) of {} from {} into {}",
                self.selected, self.depth, self.dead_letter_queue, self.work_queue
            )?;
        } else {
            writeln!(
                out,
                "replayed {} message(s) of {} from {} into {}",
                self.replayed, self.depth, self.dead_letter_queue, self.work_queue
            )?;
        }
        if (self.selected as usize) > self.messages.len() {
            writeln!(out, "the first {} of them:", self.messages.len())?;
        }
        if !self.messages.is_empty() {
            writeln!(
                out,
                "{:<38} {:<24} {:<20} dead_lettered_at",
                "message_id", "type", "reason"
            )?;
        }
        for m in &self.messages {
            writeln!(
                out,
                "{:<38} {:<24} {:<20} {}",
                m.message_id.as_deref().unwrap_or("-"),
                m.kind.as_deref().unwrap_or("-"),
                m.reason.as_deref().unwrap_or("-"),
                cell(m.dead_lettered_at)
            )?;
        }
        Ok(())
    }

    fn failure(&self) -> Option<Failure> {
        if self.refused > 0 {
            return Some(Failure::new(
                ErrorCode::Incomplete,
                format!(
                    "The broker refused {} replayed message(s); they stay in {} (at its tail); {} replayed",
                    self.refused, self.dead_letter_queue, self.replayed
                ),
            ));
        }
        self.interrupted.then(|| {
            Failure::new(
                ErrorCode::Interrupted,
                format!(
                    "Interrupted after {} replayed; the rest stays in {} (those looked at are at its tail)",
                    self.replayed, self.dead_letter_queue
                ),
            )
        })
    }
}

/// Moves the selected dead letters of a queue back to its work queue (or, on a dry run,
/// reports which it would), in one bounded pass: see the module's documentation.
pub async fn replay(
    broker: &Broker,
    options: &ReplayOptions,
    stop: &Stop,
) -> anyhow::Result<ReplayReport> {
    let q = work_queue(&options.queue)?;
    let work = broker.topology().queue(q.name);
    let dlq = broker.topology().dead_letter_queue(q.name);
    let depth = broker.depth(&dlq).await?.messages;
    let limit = options.count.unwrap_or(u32::MAX);
    let mut report = ReplayReport {
        queue: q.name.to_owned(),
        dead_letter_queue: dlq.clone(),
        work_queue: work.clone(),
        dry_run: options.dry_run,
        depth,
        examined: 0,
        selected: 0,
        replayed: 0,
        refused: 0,
        interrupted: false,
        messages: Vec::new(),
    };
    let bar = ProgressBar::new(u64::from(depth)).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} looked at, {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut pacer = options
        .rate
        .filter(|_| !options.dry_run)
        .map(Pacer::per_second);
    let mut pass = Pass::new(broker, &dlq);
    let mut kept = 0u32;
    let walked = async {
        for _ in 0..depth {
            if stop.asked() {
                report.interrupted = true;
                break;
            }
            let want_more = report.selected < limit && pass.replays_refused() == 0;
            if !want_more && kept == 0 && pass.replays_refused() == 0 {
                // Nothing was put at the tail: the rest is in order where it is.
                break;
            }
            let Some(delivery) = pass.take().await? else {
                break;
            };
            report.examined += 1;
            bar.inc(1);
            let summary = Summary::of(&delivery);
            if !(want_more && options.filter.selects(&summary)) {
                pass.keep(delivery).await?;
                kept += 1;
                continue;
            }
            if options.dry_run {
                report.selected += 1;
                list(&mut report.messages, summary);
                pass.keep(delivery).await?;
                kept += 1;
                continue;
            }
            if let Some(pacer) = pacer.as_mut() {
                let delay = pacer.delay(tokio::time::Instant::now());
                if !delay.is_zero() {
                    // Nothing held while waiting: a kill during the wait leaves no duplicate.
                    pass.settle().await?;
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = stop.0.cancelled() => {
                            pass.keep(delivery).await?;
                            kept += 1;
                            report.interrupted = true;
                            break;
                        }
                    }
                }
                pacer.moved(tokio::time::Instant::now());
            }
            report.selected += 1;
            list(&mut report.messages, summary);
            pass.replay(delivery, &work).await?;
            bar.set_message(format!("{} replayed", report.selected));
        }
        anyhow::Ok(())
    }
    .await;
    // Whatever happened, what was sent on is acknowledged, so it is not there twice.
    let settled = pass.settle().await;
    bar.finish_and_clear();
    walked?;
    settled?;
    report.refused = pass.replays_refused();
    if !options.dry_run {
        report.replayed = report.selected - report.refused;
    }
    Ok(report)
}

fn list(listed: &mut Vec<Summary>, summary: Summary) {
    if listed.len() < MAX_LISTED {
        listed.push(summary);
    }
}

/// What became of a purge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PurgeStatus {
    /// `--dry-run`: only counted.
    DryRun,
    /// The operator said no: nothing deleted.
    Declined,
    /// Deleted.
    Purged,
}

/// What `dlq purge` did.
#[derive(Debug, Serialize)]
pub struct PurgeReport {
    pub queue: String,
    pub dead_letter_queue: String,
    pub status: PurgeStatus,
    /// Dead letters in the queue when it was counted.
    pub messages: u32,
    /// How many were deleted (those that arrived after the count too).
    pub deleted: u32,
}

impl Report for PurgeReport {
    fn table(&self, out: &mut dyn Write) -> io::Result<()> {
        match self.status {
            PurgeStatus::DryRun => writeln!(
                out,
                "dry run: would delete {} message(s) of {}",
                self.messages, self.dead_letter_queue
            ),
            PurgeStatus::Declined => writeln!(out, "nothing deleted"),
            PurgeStatus::Purged => writeln!(
                out,
                "deleted {} message(s) of {}",
                self.deleted, self.dead_letter_queue
            ),
        }
    }
}

/// Deletes every dead letter of `queue` once `confirm` agrees; on a dry run only counts them.
pub async fn purge(
    broker: &Broker,
    queue: &str,
    dry_run: bool,
    confirm: impl FnOnce(&str) -> anyhow::Result<bool>,
) -> anyhow::Result<PurgeReport> {
    let q = work_queue(queue)?;
    let dlq = broker.topology().dead_letter_queue(q.name);
    let messages = broker.depth(&dlq).await?.messages;
    let mut report = PurgeReport {
        queue: q.name.to_owned(),
        dead_letter_queue: dlq.clone(),
        status: PurgeStatus::DryRun,
        messages,
        deleted: 0,
    };
    if dry_run {
        return Ok(report);
    }
    if !confirm(&format!(
        "Delete {messages} dead-lettered message(s) of {queue} for good?"
    ))? {
        report.status = PurgeStatus::Declined;
        return Ok(report);
    }
    report.deleted = broker.purge(&dlq).await?;
    report.status = PurgeStatus::Purged;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_report_lists_a_bounded_number_of_messages() {
        let mut listed = Vec::new();
        for _ in 0..MAX_LISTED + 5 {
            list(
                &mut listed,
                Summary {
                    message_id: None,
                    kind: None,
                    reason: None,
                    dead_lettered_at: None,
                },
            );
        }
        assert_eq!(listed.len(), MAX_LISTED);
    }
}
