//! Handling deliveries in batches: one transaction for many envelopes.
//!
//! Each delivery's task hands its decoded envelope to a small set of batch workers and waits
//! for the outcome. A worker takes the first envelope waiting and whatever else is already
//! queued (up to the batch size; it waits a moment for more only while another batch is being
//! handled, never when the stage is idle), and handles them all in one
//! transaction: one statement records every envelope as processed, the handler runs once for
//! the new ones, one statement adds every emitted envelope to the outbox, one commit. Then the
//! outbox rows are published and each delivery is acknowledged. (A handler whose repeats are
//! harmless needs neither the record nor the transaction: see [`crate::Repeats`].) Under light load a batch holds
//! one envelope and costs what handling it alone would; under load the per-envelope cost of
//! the transaction, the idempotency record and the outbox shrinks with the batch.
//!
//! A batch either commits whole or not at all. When it fails, each envelope is handled again
//! on its own, so one bad envelope (or a deadlock between batches) settles only itself: the
//! rest commit, and it is retried or dead-lettered exactly as it would be alone.

use crate::{Deps, Handler, Repeats, TxError, disposition_of};
use beckon_bus::Disposition;
use beckon_domain::envelope::{self, Envelope, Payload};
use beckon_outbox::flush;
use beckon_runtime::group;
use beckon_runtime::supervise::{TaskStatus, supervise};
use beckon_store::{outbox, processed};
use diesel_async::AsyncConnection;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Batches handled at once by one consumer (each on its own database connection).
const WORKERS: usize = 4;

/// How long a batch waits for more envelopes while another batch is being handled (never
/// when none is: a lone envelope goes at once). Under load this turns envelopes that arrive
/// a fraction of a millisecond apart into one commit instead of one each.
const LINGER: std::time::Duration = std::time::Duration::from_millis(1);

/// The pauses between tries in place.
const FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);
const MAX_PAUSE: std::time::Duration = std::time::Duration::from_secs(5);

/// An envelope waiting for a batch.
struct Pending<T: Payload> {
    env: Envelope<T>,
    /// The delivery's span: the handler's work and what it emits belong to its trace.
    span: tracing::Span,
    traceparent: Option<String>,
    done: oneshot::Sender<Settled>,
}

/// What became of an envelope handed to the batch workers.
#[derive(Debug, Clone)]
enum Settled {
    /// Handled (or failed for its own reason): settle the delivery so.
    Done(Disposition),
    /// It failed because the database is away: hold the delivery and try again once the
    /// database answers. Not the message's fault, so not one of its deliveries.
    DatabaseAway,
}

/// A handle that hands envelopes to the batch workers; cloning shares them.
pub struct Batcher<T: Payload> {
    queue: mpsc::UnboundedSender<Pending<T>>,
    consumer: &'static str,
    /// Whether the database answers, and how patient to be with failures while it does.
    deps: Deps,
    workers: Vec<TaskStatus>,
}

impl<T: Payload> Clone for Batcher<T> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            consumer: self.consumer,
            deps: self.deps.clone(),
            workers: self.workers.clone(),
        }
    }
}

impl<T: Payload> Batcher<T> {
    /// Starts the workers on the current runtime. They stop when every handle is gone.
    /// `max` is the most envelopes in one batch; 1 handles each on its own.
    pub fn start<H: Handler<T>>(
        consumer: &'static str,
        deps: Deps,
        handler: H,
        max: usize,
        cancel: CancellationToken,
    ) -> Self {
        let (queue, groups) = group::groups(max.max(1), LINGER);
        let shared = Arc::new((deps.clone(), handler));
        // Supervised: a handler that panics takes its worker down (its batch's deliveries are
        // retried, counted against their limit); the worker comes back for the others.
        let workers = (0..WORKERS)
            .map(|_| {
                let (shared, groups) = (shared.clone(), groups.clone());
                supervise("batch-worker", cancel.clone(), move || {
                    work(consumer, shared.clone(), groups.clone())
                })
            })
            .collect();
        Self {
            queue,
            consumer,
            deps,
            workers,
        }
    }

    /// The batch workers, for readiness.
    pub fn workers(&self) -> Vec<TaskStatus> {
        self.workers.clone()
    }

    /// Decodes and handles one message (in a batch with others): the whole of a consumer's
    /// work except the ack. Call it inside the delivery's span.
    ///
    /// What is not the message's fault does not use up its deliveries. While the database is
    /// away the message is held here and handled again once it answers. A transient failure
    /// while it answers (a lock held by a migration, a deadlock, a statement timeout) is tried
    /// again here, with growing pauses, for up to `Deps::patience`; only a message still failing
    /// after that goes back to the broker as a counted retry. Should `cancel` fire meanwhile,
    /// the message is released: given back without a delivery counted.
    pub async fn process(&self, body: &[u8], cancel: &CancellationToken) -> Disposition {
        let stopping = || Disposition::Retry {
            reason: format!("{} is shutting down", self.consumer),
        };
        let mut held = false;
        let mut failing_since: Option<tokio::time::Instant> = None;
        let mut tries = 0u32;
        loop {
            let env = match envelope::decode::<T>(body) {
                Ok(env) => env,
                // Its trigger is failed by the dead-letter watch, as for every dead letter.
                Err(err) => {
                    return Disposition::DeadLetter {
                        reason: err.reason().to_owned(),
                        detail: err.to_string(),
                    };
                }
            };
            let (done, outcome) = oneshot::channel();
            let pending = Pending {
                env,
                span: tracing::Span::current(),
                traceparent: beckon_runtime::telemetry::traceparent(),
                done,
            };
            if self.queue.send(pending).is_err() {
                return stopping();
            }
            match outcome.await {
                Ok(Settled::Done(Disposition::Retry { reason })) => {
                    let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() >= self.deps.patience {
                        return Disposition::Retry { reason };
                    }
                    metrics::counter!("beckon_handler_retries_total", "consumer" => self.consumer)
                        .increment(1);
                    let pause = beckon_bus::backoff::nth(FIRST_PAUSE, MAX_PAUSE, tries);
                    tries += 1;
                    tracing::info!(%reason, pause_ms = pause.as_millis() as u64, "handling failed while the database answers; trying again");
                    tokio::select! {
                        _ = cancel.cancelled() => return Disposition::Release,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
                Ok(Settled::Done(disposition)) => return disposition,
                Ok(Settled::DatabaseAway) => {
                    if !held {
                        held = true;
                        metrics::counter!("beckon_messages_held_total", "consumer" => self.consumer)
                            .increment(1);
                    }
                    if !self.deps.database.wait_up(cancel).await {
                        return Disposition::Release;
                    }
                }
                Err(_) => return stopping(),
            }
        }
    }
}

async fn work<T: Payload, H: Handler<T>>(
    consumer: &'static str,
    shared: Arc<(Deps, H)>,
    groups: group::Groups<Pending<T>>,
) {
    let (deps, handler) = &*shared;
    while let Some((batch, _working)) = groups.next().await {
        metrics::histogram!("beckon_batch_size", "consumer" => consumer).record(batch.len() as f64);
        let committed = group::commit(
            &batch,
            batch.len(),
            |items| Box::pin(handled(consumer, deps, handler, items)),
            // One envelope's fault, or a conflict between batches: each is handled again as a
            // batch of its own, so only what fails alone fails. Not while the database is away.
            |err| {
                let (may_pass, error) = (err.may_pass(), beckon_runtime::error_chain(err));
                let size = batch.len();
                Box::pin(async move {
                    let alone = !may_pass || deps.database.answers().await;
                    if alone {
                        tracing::info!(size, %error, "a batch failed; handling its envelopes one by one");
                    }
                    alone
                })
            },
        )
        .await;
        match committed {
            group::Committed::Together(_) => {
                for pending in batch {
                    let _ = pending.done.send(Settled::Done(Disposition::Ack));
                }
            }
            group::Committed::Failed(err) => {
                // A batch of more than one fails whole only when the database was found away.
                let settled = if batch.len() > 1 {
                    Settled::DatabaseAway
                } else {
                    settled(deps, Err(err)).await
                };
                for pending in batch {
                    let _ = pending.done.send(settled.clone());
                }
            }
            group::Committed::Alone(outcomes) => {
                for (pending, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = pending.done.send(settled(deps, outcome).await);
                }
            }
        }
    }
}

/// Handles a batch (in the span of its envelope, when it holds one), one outcome per envelope.
async fn handled<T: Payload, H: Handler<T>>(
    consumer: &str,
    deps: &Deps,
    handler: &H,
    batch: &[Pending<T>],
) -> Result<Vec<()>, TxError> {
    let span = match batch {
        [pending] => pending.span.clone(),
        _ => tracing::Span::none(),
    };
    together(consumer, deps, handler, batch)
        .instrument(span)
        .await
        .map(|()| vec![(); batch.len()])
}

/// What the outcome of handling a batch means for each of its deliveries: a failure that may
/// pass while the database does not answer holds them until it does.
async fn settled(deps: &Deps, result: Result<(), TxError>) -> Settled {
    match result {
        Ok(()) => Settled::Done(Disposition::Ack),
        Err(err) if err.may_pass() && !deps.database.answers().await => Settled::DatabaseAway,
        Err(err) => Settled::Done(disposition_of(err.into())),
    }
}

/// Handles every envelope of `batch`, publishes what they emit and runs their after-commit
/// steps. On an error nothing of the batch is committed (a harmless handler's own statements
/// excepted, which may be done again).
async fn together<T: Payload, H: Handler<T>>(
    consumer: &str,
    deps: &Deps,
    handler: &H,
    batch: &[Pending<T>],
) -> Result<(), TxError> {
    match H::REPEATS {
        Repeats::Recorded => recorded(consumer, deps, handler, batch).await,
        Repeats::Harmless => harmless(deps, handler, batch).await,
    }
}

/// What the new envelopes of a batch emit, bound for the broker (or the outbox).
fn outgoing<'a, T: Payload>(
    new: &[&'a Pending<T>],
    emitted: &'a [Vec<crate::Emit>],
) -> Vec<outbox::NewOutboxMessage<'a>> {
    new.iter()
        .zip(emitted)
        .flat_map(|(pending, emits)| {
            emits.iter().map(|emit| outbox::NewOutboxMessage {
                envelope_id: emit.envelope_id,
                exchange: &emit.exchange,
                routing_key: &emit.routing_key,
                body: &emit.body,
                traceparent: pending.traceparent.as_deref(),
            })
        })
        .collect()
}

/// A harmless handler's batch: no transaction, no record and no outbox on the way. Its
/// statements commit on their own (doing them again changes nothing that matters), and what
/// it emits is published at once, confirmed, before the deliveries are acknowledged. Only
/// what the broker does not take goes to the outbox, for the relay; should that fail too,
/// the batch fails and is handled again.
async fn harmless<T: Payload, H: Handler<T>>(
    deps: &Deps,
    handler: &H,
    batch: &[Pending<T>],
) -> Result<(), TxError> {
    // The same envelope twice in one batch is still handled once.
    let mut seen = HashSet::with_capacity(batch.len());
    let handled: Vec<bool> = batch.iter().map(|p| seen.insert(p.env.id)).collect();
    let (new, items) = items_of(batch, &handled);
    let handled = {
        let mut conn = deps.store.conn().await?;
        handler.handle(&items, &mut conn).await?
    };
    let messages = outgoing(&new, &handled.emits);
    let published = futures_util::future::join_all(messages.iter().map(|m| {
        beckon_outbox::publish(
            &deps.publisher,
            m.envelope_id,
            m.exchange,
            m.routing_key,
            m.body,
            m.traceparent,
        )
    }))
    .await;
    let unpublished: Vec<_> = messages
        .into_iter()
        .zip(published)
        .filter_map(|(message, result)| match result {
            Ok(()) => None,
            Err(err) => {
                tracing::warn!(error = %beckon_runtime::error_chain(&err), "publish failed; left to the outbox relay");
                Some(message)
            }
        })
        .collect();
    if !unpublished.is_empty() {
        let conn = deps.store.conn().await?;
        outbox::enqueue_many(&conn, &unpublished).await?;
    }
    handler.after_commit(&items, handled.then).await;
    Ok(())
}

/// A batch in one transaction with the record of its envelopes and the outbox rows of what
/// they emit; published after the commit.
async fn recorded<T: Payload, H: Handler<T>>(
    consumer: &str,
    deps: &Deps,
    handler: &H,
    batch: &[Pending<T>],
) -> Result<(), TxError> {
    let ids: Vec<_> = batch.iter().map(|p| p.env.id).collect();
    let mut conn = deps.store.conn().await?;
    let (rows, fresh, then) = conn
        .transaction::<_, TxError, _>(async |conn| {
            let mut fresh: HashSet<_> = processed::mark_many(conn, consumer, &ids)
                .await?
                .into_iter()
                .collect();
            // Not a repeat of an envelope handled before, or earlier in this batch.
            let handled: Vec<bool> = batch.iter().map(|p| fresh.remove(&p.env.id)).collect();
            let (new, items) = items_of(batch, &handled);
            let done = handler.handle(&items, conn).await?;
            let rows = outbox::enqueue_many(conn, &outgoing(&new, &done.emits)).await?;
            Ok((rows, handled, done.then))
        })
        .await?;
    drop(conn);
    flush(&deps.publisher, &deps.cleaner, &rows).await;
    for (pending, _) in batch.iter().zip(&fresh).filter(|(_, handled)| !**handled) {
        pending
            .span
            .in_scope(|| tracing::info!("duplicate envelope; already handled"));
    }
    let (_, items) = items_of(batch, &fresh);
    handler.after_commit(&items, then).await;
    Ok(())
}

/// The envelopes of `batch` whose `handled` flag is set, and the same as handler items.
fn items_of<'a, T: Payload>(
    batch: &'a [Pending<T>],
    handled: &[bool],
) -> (Vec<&'a Pending<T>>, Vec<crate::Item<'a, T>>) {
    let new: Vec<_> = batch
        .iter()
        .zip(handled)
        .filter(|(_, handled)| **handled)
        .map(|(pending, _)| pending)
        .collect();
    let items = new
        .iter()
        .map(|pending| crate::Item {
            env: &pending.env,
            span: &pending.span,
        })
        .collect();
    (new, items)
}
