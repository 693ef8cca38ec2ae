//! Attempts: sign, send, log, and decide what comes next.

use crate::notices;
use beckon_runtime::error_chain;
use beckon_runtime::group;
use beckon_store::webhooks::{
    self, AttemptContext, AttemptRecord, MessageBody, NextStep, Subscription,
};
use beckon_store::{Store, StoreError};
use beckon_webhooks::format;
use beckon_webhooks::policy::RetryPolicy;
use beckon_webhooks::sealed::SealingKeys;
use beckon_webhooks::sender::{Outcome, Sender};
use beckon_webhooks::signing::{SigningSecret, signature_header};
use diesel_async::AsyncConnection;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;

/// Longer than the longest allowed response timeout (30 s), so a live attempt's lease never
/// ends before the attempt does.
const LEASE: Duration = Duration::from_secs(60);
/// Most deliveries claimed per poll.
const BATCH: i64 = 256;
/// How far ahead a rate-limited subscription's send slots are handed out; a delivery that
/// finds them all taken goes back to wait, rather than wait in memory.
const RATE_HORIZON: Duration = Duration::from_secs(4);
/// How long after its first attempt a delivery may still be throttled (429 with
/// `Retry-After`) without using up its retry policy's attempts; after that a 429 is a failure
/// like any other, so an endpoint that never stops asking for patience is given up on.
const THROTTLED_AT_MOST: Duration = Duration::from_secs(3 * 24 * 3600);

/// How many deliveries per send slot of a subscription may wait in memory, in line, for one
/// to free up; more go back to the database for [`SLOT_RETRY`].
const WAITING_PER_SLOT: usize = 4;
/// How long a delivery that found every send slot of its subscription taken, and the line
/// behind them full, waits in the database before the poller tries it again.
const SLOT_RETRY: Duration = Duration::from_secs(1);

/// The longest a delivery waits in line for a send slot, whatever its lease leaves.
const SLOT_WAIT_AT_MOST: Duration = Duration::from_secs(20);
/// What a delivery's lease keeps in hand beyond the wait, its rate-limit slot and its response
/// timeout, so the poller never sends it a second time.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// A subscription's send slots: its share of attempts in flight, and the line waiting for them.
struct Slots {
    in_flight: Arc<Semaphore>,
    waiting: std::sync::atomic::AtomicUsize,
    most_waiting: usize,
}

impl Slots {
    fn new(share: usize) -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(share)),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            most_waiting: share * WAITING_PER_SLOT,
        }
    }

    /// A send slot: at once when one is free; else after those ahead in line (first come,
    /// first served), unless the line is full, the wait would outlast `until`, or `stop`
    /// fires (a stopping process starts no send it may not finish). A burst beyond the share
    /// so waits the moment it takes an attempt to finish, not a poll of the database.
    async fn take(
        &self,
        until: tokio::time::Instant,
        stop: &CancellationToken,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        use std::sync::atomic::Ordering;
        if stop.is_cancelled() {
            return None;
        }
        if let Ok(permit) = self.in_flight.clone().try_acquire_owned() {
            return Some(permit);
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.most_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let permit = tokio::select! {
            permit = tokio::time::timeout_at(until, self.in_flight.clone().acquire_owned()) => {
                permit.ok().and_then(Result::ok)
            }
            _ = stop.cancelled() => None,
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        permit.filter(|_| !stop.is_cancelled())
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub disable_after: Duration,
    /// Fewest failed attempts in a streak that disables its subscription.
    pub disable_min_failures: u32,
    pub per_subscription: usize,
}

pub struct Engine {
    store: Store,
    sender: Sender,
    keys: SealingKeys,
    settings: Settings,
    /// Attempts in flight per subscription.
    slots: Mutex<HashMap<Uuid, Arc<Slots>>>,
    /// When this process last sent to each rate-limited subscription.
    pacers: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<Option<tokio::time::Instant>>>>>,
    tasks: TaskTracker,
    /// Fired when the process starts to stop: deliveries waiting for a send slot give up.
    stopping: CancellationToken,
    /// Logs finished attempts in groups.
    recorder: Recorder,
}

impl Engine {
    pub fn new(store: Store, sender: Sender, keys: SealingKeys, settings: Settings) -> Self {
        Self {
            recorder: Recorder::start(store.clone(), keys.clone()),
            store,
            sender,
            keys,
            settings,
            slots: Mutex::new(HashMap::new()),
            pacers: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            stopping: CancellationToken::new(),
        }
    }

    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        self.keys.seal(plaintext)
    }

    /// The deployment's keys, to open what travelled sealed.
    pub fn keys(&self) -> &SealingKeys {
        &self.keys
    }

    pub fn lease(&self) -> time::Duration {
        time::Duration::try_from(LEASE).unwrap_or(time::Duration::MINUTE)
    }

    fn slot(&self, subscription: Uuid) -> Arc<Slots> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .entry(subscription)
            .or_insert_with(|| Arc::new(Slots::new(self.settings.per_subscription.max(1))))
            .clone()
    }

    /// Waits for a send slot of a rate-limited subscription: one shared by every process
    /// (reserved on the subscription's row), then this process's own pacing. A slot woken up
    /// for too late — the process was busy — is given up for a new one, so a late request
    /// cannot land beside another process's punctual one. `false` when no slot is free within
    /// the horizon.
    async fn take_slot(&self, subscription: Uuid, limit: i32) -> Result<bool, StoreError> {
        let tolerance = rate_gap(limit).mul_f64(webhooks::RATE_MARGIN);
        for _ in 0..3 {
            let reserved = {
                let mut conn = self.store.conn().await?;
                webhooks::reserve_slot(&mut conn, subscription, RATE_HORIZON).await?
            };
            let Some(wait) = reserved else {
                return Ok(false);
            };
            let slot = tokio::time::Instant::now() + wait;
            tokio::time::sleep_until(slot).await;
            if slot.elapsed() <= tolerance {
                self.pace(subscription, limit).await;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Holds a rate-limited subscription's requests from this process at least a slot apart,
    /// whatever delays the shared slots they were given picked up on the way.
    async fn pace(&self, subscription: Uuid, limit: i32) {
        let pacer = {
            let mut pacers = self.pacers.lock().unwrap_or_else(|e| e.into_inner());
            pacers
                .entry(subscription)
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(None)))
                .clone()
        };
        let mut last = pacer.lock().await;
        let gap = rate_gap(limit);
        if let Some(at) = *last {
            tokio::time::sleep_until(at + gap).await;
        }
        *last = Some(tokio::time::Instant::now());
    }

    /// Sends the first attempts of deliveries just committed, each in its own task and in the
    /// span of the delivery that brought its message: with what the consumer already holds,
    /// so nothing is read back from the database before the request goes out.
    pub fn start_first_attempts(
        self: &Arc<Self>,
        contexts: Vec<AttemptContext>,
        span_of: impl Fn(Uuid) -> Option<tracing::Span>,
    ) {
        for context in contexts {
            match span_of(context.1.id) {
                Some(span) => span.in_scope(|| self.spawn(context)),
                None => self.spawn(context),
            }
        }
    }

    fn spawn(self: &Arc<Self>, context: AttemptContext) {
        let engine = self.clone();
        let delivery_id = context.0.id;
        // A first attempt continues the trace of the event that caused it.
        self.tasks.spawn(
            async move {
                if let Err(err) = engine.attempt(context).await {
                    tracing::warn!(%delivery_id, error = %error_chain(&err), "attempt failed to run; it will fall due again");
                }
            }
            .in_current_span(),
        );
    }

    /// Claims due retries every `interval` until `cancel` fires. Also keeps the age of the
    /// oldest pending delivery as a gauge, so a silent stall shows in the metrics.
    pub async fn run_poller(self: Arc<Self>, interval: Duration, cancel: CancellationToken) {
        let mut last_gauge = std::time::Instant::now() - Duration::from_secs(60);
        loop {
            if last_gauge.elapsed() >= Duration::from_secs(5) {
                last_gauge = std::time::Instant::now();
                if let Ok(mut conn) = self.store.conn().await
                    && let Ok(age) = webhooks::oldest_pending_age(&mut conn).await
                {
                    metrics::gauge!("beckon_webhook_oldest_pending_seconds").set(age);
                }
            }
            let claimed = async {
                let mut conn = self.store.conn().await?;
                let ids = webhooks::claim_due(
                    &mut conn,
                    self.settings.per_subscription as i64,
                    BATCH,
                    LEASE.as_secs_f64(),
                    RATE_HORIZON.as_secs_f64(),
                )
                .await?;
                let full = ids.len() as i64 == BATCH;
                Ok::<_, StoreError>((webhooks::attempt_contexts(&mut conn, &ids).await?, full))
            }
            .await;
            let full = match claimed {
                Ok((contexts, full)) => {
                    contexts.into_iter().for_each(|c| self.spawn(c));
                    full
                }
                Err(err) => {
                    tracing::warn!(error = %error_chain(&err), "could not claim due deliveries");
                    false
                }
            };
            if full {
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// Waits (up to `timeout`) for attempts in flight to finish and be recorded.
    pub async fn drain(&self, timeout: Duration) {
        self.stopping.cancel();
        self.tasks.close();
        if tokio::time::timeout(timeout, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "attempts still in flight at shutdown; their leases will expire and they will be retried"
            );
        }
    }

    /// The secrets that sign for `sub`: its current one, and its previous one while that still
    /// signs. `None` when one of them does not open (a key dropped before its values were
    /// resealed): a webhook is then held back, never sent without the signature its receiver
    /// checks.
    fn secrets(&self, sub: &Subscription) -> Option<Vec<SigningSecret>> {
        let open = |sealed: &[u8]| {
            self.keys
                .open(sealed)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| SigningSecret::parse(&s).ok())
        };
        let mut secrets = vec![open(&sub.secret_encrypted)?];
        if let (Some(previous), Some(until)) = (
            &sub.previous_secret_encrypted,
            sub.previous_secret_expires_at,
        ) && until > OffsetDateTime::now_utc()
        {
            secrets.push(open(previous)?);
        }
        Some(secrets)
    }

    #[tracing::instrument(skip_all, fields(delivery_id = %context.0.id, message_id = %context.1.id, subscription_id = %context.2.id))]
    async fn attempt(self: Arc<Self>, context: AttemptContext) -> Result<(), StoreError> {
        let (delivery, message, sub) = context;
        if delivery.status != webhooks::delivery::PENDING || sub.status != webhooks::status::ACTIVE
        {
            return Ok(());
        }
        let sealed = match message.body() {
            MessageBody::Sealed(sealed) => sealed,
            // Erased at the end of the payload retention period (a recover or resend racing
            // the sweep): there is nothing to send, now or later, so the delivery fails at once
            // instead of being retried.
            MessageBody::Erased(at) => {
                let reason = format!(
                    "the message's body was erased at {} (payload retention): nothing to send",
                    at.format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default()
                );
                tracing::warn!(%reason, "delivery given up");
                let mut conn = self.store.conn().await?;
                return webhooks::give_up(&mut conn, delivery.id, &reason).await;
            }
        };
        let timeout = Duration::from_millis(sub.timeout_ms.max(1000) as u64);
        // The wait in line ends while the lease still covers the rate-limit slot, the request
        // and a margin.
        let lease_left =
            std::time::Duration::try_from(delivery.next_attempt_at - OffsetDateTime::now_utc())
                .unwrap_or_default();
        let wait = lease_left
            .saturating_sub(timeout + RATE_HORIZON + LEASE_MARGIN)
            .min(SLOT_WAIT_AT_MOST);
        let until = tokio::time::Instant::now() + wait;
        // The send slot first, then the rate-limit slot: requests spaced by the rate limit are
        // never held back behind a slow one and then released together.
        let Some(permit) = self.slot(sub.id).take(until, &self.stopping).await else {
            // Its share is in flight and enough wait behind it (or the process is stopping):
            // this one waits in the database, where the poller finds it again.
            let mut conn = self.store.conn().await?;
            webhooks::release(&mut conn, delivery.id, SLOT_RETRY).await?;
            return Ok(());
        };
        if let Some(limit) = sub.rate_limit
            && !self.take_slot(sub.id, limit).await?
        {
            // Its slots are taken for the next few seconds: come back when some are free.
            drop(permit);
            let mut conn = self.store.conn().await?;
            webhooks::release(&mut conn, delivery.id, RATE_HORIZON / 2).await?;
            return Ok(());
        }

        let opened = match (self.keys.open(sealed), self.secrets(&sub)) {
            (Ok(body), Some(secrets)) => Ok((body, secrets)),
            (Err(err), _) => Err(format!("the stored message cannot be opened: {err}")),
            (_, None) => Err(
                "a signing secret of the subscription cannot be opened: no configured key opens it"
                    .to_owned(),
            ),
        };
        // In the format the delivery pinned when it was created. A body the format cannot be
        // made from never will be: the delivery fails at once instead of being retried.
        let opened = match opened {
            Ok((stored, secrets)) => {
                match format::render(delivery.format, delivery.payload_version, &stored) {
                    Ok(body) => Ok((body.into_owned(), secrets)),
                    Err(err) => {
                        drop(permit);
                        let reason = format!(
                            "the message cannot be sent in the {} format: {err}",
                            delivery.format
                        );
                        tracing::warn!(%reason, "delivery given up");
                        let mut conn = self.store.conn().await?;
                        return webhooks::give_up(&mut conn, delivery.id, &reason).await;
                    }
                }
            }
            Err(error) => Err(error),
        };
        let outcome = match opened {
            Ok((body, secrets)) => {
                let refs: Vec<&SigningSecret> = secrets.iter().collect();
                let id = message.id.to_string();
                let timestamp = OffsetDateTime::now_utc().unix_timestamp();
                let headers = [
                    ("webhook-id", id.clone()),
                    ("webhook-timestamp", timestamp.to_string()),
                    (
                        "webhook-signature",
                        signature_header(&refs, &id, timestamp, &body),
                    ),
                ];
                self.sender.post(&sub.url, &headers, body, timeout).await
            }
            Err(error) => Outcome {
                status: None,
                duration: Duration::ZERO,
                body: None,
                error: Some(error),
                retry_after: None,
            },
        };
        // The share limits requests in flight to the endpoint, not the recording after them.
        drop(permit);

        let now = beckon_domain::timestamp::now_micros();
        let mut disable = None;
        let next = if outcome
            .status
            .is_some_and(|status| format::succeeded(delivery.format, status))
        {
            NextStep::Succeeded
        } else if outcome.status == Some(410) {
            disable = Some("the endpoint answered 410 Gone".to_owned());
            NextStep::GiveUp
        } else {
            let policy: RetryPolicy =
                serde_json::from_value(sub.retry_policy.clone()).unwrap_or_default();
            let failed = delivery.policy_attempts() + 1;
            let since_first = delivery
                .first_attempt_at
                .map(|t| Duration::try_from(now - t).unwrap_or_default())
                .unwrap_or_default();
            let delay = policy.next_delay(failed, since_first, jitter());
            // Asked to wait: as long as asked, but never sooner than a failure would be retried
            // nor than a floor that doubles with each throttled attempt, so `Retry-After: 0` is
            // no tight loop; and the wait is neither a failed attempt of the policy nor a
            // failure of the endpoint.
            // A policy may take every 429 as asking for patience, `Retry-After` or not.
            let asked = outcome
                .retry_after
                .or_else(|| policy.throttles_every_429().then_some(Duration::ZERO));
            let throttled = match asked {
                Some(asked) if outcome.status == Some(429) && since_first < THROTTLED_AT_MOST => {
                    Some(
                        asked
                            .max(throttle_floor(delivery.throttled))
                            .max(policy.throttle_wait(delivery.throttled))
                            .max(delay.unwrap_or_default()),
                    )
                }
                _ => None,
            };
            if throttled.is_none()
                && sub.failing_too_long(
                    now,
                    self.settings.disable_after,
                    self.settings.disable_min_failures,
                )
            {
                disable = Some(format!(
                    "failing continuously for {} seconds ({} failed attempts since {})",
                    self.settings.disable_after.as_secs(),
                    sub.failures_in_streak + 1,
                    sub.failing_since
                        .and_then(|t| t
                            .format(&time::format_description::well_known::Rfc3339)
                            .ok())
                        .unwrap_or_default(),
                ));
            }
            match (throttled, delay) {
                (Some(wait), _) => NextStep::Throttled(
                    now + time::Duration::try_from(wait).unwrap_or(time::Duration::HOUR),
                ),
                (None, None) => NextStep::GiveUp,
                (None, Some(delay)) => {
                    let wait = outcome.retry_after.map_or(delay, |r| r.max(delay));
                    NextStep::RetryAt(
                        now + time::Duration::try_from(wait).unwrap_or(time::Duration::HOUR),
                    )
                }
            }
        };
        let class = match outcome.status {
            Some(s) => format!("{}xx", s / 100),
            None if outcome
                .error
                .as_deref()
                .is_some_and(|e| e.contains("timed out")) =>
            {
                "timeout".to_owned()
            }
            None => "error".to_owned(),
        };
        metrics::counter!("beckon_webhook_attempts_total", "outcome" => class).increment(1);
        metrics::histogram!("beckon_webhook_attempt_seconds")
            .record(outcome.duration.as_secs_f64());
        tracing::info!(
            status = outcome.status,
            duration_ms = outcome.duration.as_millis() as u64,
            error = outcome.error.as_deref(),
            next = ?next,
            "webhook attempt"
        );
        let record = AttemptRecord {
            status_code: outcome.status.map(i32::from),
            duration_ms: outcome.duration.as_millis().min(i32::MAX as u128) as i32,
            response_body: outcome.body,
            error: outcome
                .error
                .map(|e| beckon_webhooks::sender::storable(e.as_bytes())),
            next,
        };
        if let Some(reason) = disable {
            let mut conn = self.store.conn().await?;
            let sent = conn
                .transaction::<_, StoreError, _>(async |conn| {
                    let streaks = webhooks::record_attempt(conn, &delivery, &record).await?;
                    let mut sent =
                        notices::failing(conn, &self.keys, &streaks, &[(&delivery, &record)])
                            .await?;
                    if webhooks::disable(conn, sub.id, &reason, now).await? {
                        sent.push(notices::disabled(conn, &self.keys, &sub, &reason, now).await?);
                    }
                    Ok(sent)
                })
                .await?;
            notices::announce(&sent);
            return Ok(());
        }
        self.recorder.record_or_bare(delivery, record).await
    }
}

/// Records finished attempts in groups: attempts that finish together are logged, and their
/// deliveries moved on, with three statements and one commit between them. A group that fails
/// is recorded again attempt by attempt, so one failure is reported only to its own attempt.
struct Recorder {
    queue: tokio::sync::mpsc::UnboundedSender<Finished>,
    store: Store,
    keys: SealingKeys,
}

struct Finished {
    delivery: webhooks::Delivery,
    record: AttemptRecord,
    done: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
}

/// Groups recorded at once, and the most attempts in one.
const RECORDERS: usize = 2;
const MAX_RECORDED: usize = 128;
/// How long a recorder gathers finished attempts before it commits them. The endpoint has its
/// webhook already and its share back; only the delivery's status waits, and every group
/// saved is a commit (a WAL flush) saved.
const RECORD_WINDOW: Duration = Duration::from_millis(50);

impl Recorder {
    fn start(store: Store, keys: SealingKeys) -> Self {
        let (queue, rx) = group::queue();
        for _ in 0..RECORDERS {
            tokio::spawn(record_groups(store.clone(), keys.clone(), rx.clone()));
        }
        Self { queue, store, keys }
    }

    async fn record(
        &self,
        delivery: webhooks::Delivery,
        record: AttemptRecord,
    ) -> Result<(), StoreError> {
        let (done, recorded) = tokio::sync::oneshot::channel();
        let finished = Finished {
            delivery,
            record,
            done,
        };
        if let Err(unsent) = self.queue.send(finished) {
            // No recorder runs any more (the process is stopping): record it here.
            let Finished {
                delivery, record, ..
            } = unsent.0;
            return record_group(&self.store, &self.keys, &[(&delivery, &record)]).await;
        }
        recorded.await.unwrap_or_else(|_| {
            // Only a recorder that panicked drops its answer; the delivery keeps its lease.
            tracing::warn!(
                "an attempt was not recorded; its delivery falls due again when the lease ends"
            );
            Ok(())
        })
    }
}

impl Recorder {
    /// Records the attempt; when it cannot be stored as it is while the database answers (data
    /// it refuses), records its fate without the answer, rather than leave the delivery to fall
    /// due again outside its policy.
    async fn record_or_bare(
        &self,
        delivery: webhooks::Delivery,
        record: AttemptRecord,
    ) -> Result<(), StoreError> {
        match self.record(delivery.clone(), record.clone()).await {
            Ok(()) => Ok(()),
            Err(err) if self.store.ping().await => {
                tracing::error!(delivery_id = %delivery.id, error = %error_chain(&err), "an attempt could not be recorded as it was; recording it without the answer");
                let bare = AttemptRecord {
                    response_body: None,
                    error: Some("the attempt's answer could not be stored".to_owned()),
                    ..record
                };
                self.record(delivery, bare).await
            }
            Err(err) => Err(err),
        }
    }
}

async fn record_groups(store: Store, keys: SealingKeys, rx: group::Shared<Finished>) {
    while let Some(finished) = group::take_within(&rx, MAX_RECORDED, RECORD_WINDOW).await {
        metrics::histogram!("beckon_webhook_record_group_size").record(finished.len() as f64);
        // Should the group fail, each attempt is recorded on its own, one after the other: the
        // recorders leave the rest of the pool to the consumers.
        let outcomes = group::commit_each(&finished, 1, |finished| {
            Box::pin(async {
                let attempts: Vec<_> = finished.iter().map(|f| (&f.delivery, &f.record)).collect();
                record_group(&store, &keys, &attempts)
                    .await
                    .map(|()| vec![(); finished.len()])
            })
        })
        .await;
        for (f, outcome) in finished.into_iter().zip(outcomes) {
            let _ = f.done.send(outcome);
        }
    }
}

/// Records a group of attempts and sends the `webhook.failing` notices they make due, in one
/// transaction.
async fn record_group(
    store: &Store,
    keys: &SealingKeys,
    attempts: &[(&webhooks::Delivery, &AttemptRecord)],
) -> Result<(), StoreError> {
    let mut conn = store.conn().await?;
    let sent = conn
        .transaction::<_, StoreError, _>(async |conn| {
            let streaks = webhooks::record_attempts(conn, attempts).await?;
            notices::failing(conn, keys, &streaks, attempts).await
        })
        .await?;
    notices::announce(&sent);
    Ok(())
}

/// The time between two requests to an endpoint limited to `limit` a second: a little more
/// than `1/limit`, so that they also arrive that far apart.
fn rate_gap(limit: i32) -> Duration {
    Duration::from_secs_f64((1.0 + webhooks::RATE_MARGIN) / f64::from(limit.max(1)))
}

/// The shortest wait after a delivery's `throttled`-th throttled attempt: 1 s, doubling with
/// each throttled attempt up to 10 minutes, whatever shorter `Retry-After` the endpoint sends.
fn throttle_floor(throttled: i32) -> Duration {
    Duration::from_secs(1u64 << throttled.clamp(0, 10)).min(Duration::from_secs(600))
}

/// A number in `[0, 1)` for spreading retries.
fn jitter() -> f64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    (u64::from_be_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use beckon_store::testing::WithProject;
    use diesel_async::RunQueryDsl;

    fn keys() -> SealingKeys {
        // 32 bytes of 7.
        SealingKeys::from_base64_list("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=").unwrap()
    }

    fn succeeded() -> AttemptRecord {
        AttemptRecord {
            status_code: Some(200),
            duration_ms: 3,
            response_body: Some("thanks".into()),
            error: None,
            next: NextStep::Succeeded,
        }
    }

    /// On this single-threaded runtime both attempts are queued before the recorder runs, so
    /// they are taken as one group. One's delivery is gone (its subscription was deleted
    /// mid-attempt), so the group fails on the attempt log's foreign key; recorded again one by
    /// one, the other is recorded and only the gone one reports the error.
    /// A subscription with `n` pending deliveries, in a fresh database.
    async fn pending(n: usize) -> (WithProject, Vec<webhooks::Delivery>) {
        let seeded = WithProject::new(4).await;
        let sub = seeded.subscription(false).await;
        let mut deliveries = Vec::new();
        for _ in 0..n {
            let message = seeded
                .message(sub.id, false, true, OffsetDateTime::now_utc())
                .await;
            deliveries.push(webhooks::delivery_id(message, sub.id));
        }
        let mut conn = seeded.store.conn().await.unwrap();
        let contexts = webhooks::attempt_contexts(&mut conn, &deliveries)
            .await
            .unwrap();
        drop(conn);
        (seeded, contexts.into_iter().map(|c| c.0).collect())
    }

    #[tokio::test]
    async fn an_attempt_whose_answer_cannot_be_stored_is_recorded_without_it() {
        let (seeded, deliveries) = pending(1).await;
        let recorder = Recorder::start(seeded.store.clone(), keys());
        let refused = AttemptRecord {
            // PostgreSQL's text refuses NUL: a stand-in for any answer it cannot store.
            response_body: Some("bad\0answer".into()),
            ..succeeded()
        };
        recorder
            .record_or_bare(deliveries[0].clone(), refused)
            .await
            .expect("recorded without the answer");
        let mut conn = seeded.store.conn().await.unwrap();
        let logged = diesel::sql_query(
            "SELECT 1 FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id \
             WHERE d.id = $1 AND d.status = 'succeeded' AND a.response_body IS NULL \
               AND a.error = 'the attempt''s answer could not be stored'",
        )
        .bind::<diesel::sql_types::Uuid, _>(deliveries[0].id)
        .execute(&mut conn)
        .await
        .unwrap();
        assert_eq!(logged, 1);
    }

    #[tokio::test]
    async fn a_group_with_an_attempt_that_cannot_be_recorded_records_the_others() {
        let (seeded, deliveries) = pending(2).await;
        let store = seeded.store.clone();
        let mut conn = store.conn().await.unwrap();
        let (kept, gone) = (deliveries[0].clone(), deliveries[1].clone());
        diesel::sql_query("DELETE FROM webhook_deliveries WHERE id = $1")
            .bind::<diesel::sql_types::Uuid, _>(gone.id)
            .execute(&mut conn)
            .await
            .unwrap();

        let recorder = Recorder::start(store.clone(), keys());
        let (recorded, failed) = tokio::join!(
            recorder.record(kept.clone(), succeeded()),
            recorder.record(gone, succeeded()),
        );
        recorded.expect("the kept delivery's attempt is recorded");
        assert!(
            failed.is_err(),
            "the gone delivery's attempt reports its error"
        );
        let logged = diesel::sql_query(
            "SELECT 1 FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id \
             WHERE d.id = $1 AND d.status = 'succeeded' AND d.attempts = 1",
        )
        .bind::<diesel::sql_types::Uuid, _>(kept.id)
        .execute(&mut conn)
        .await
        .unwrap();
        assert_eq!(logged, 1);
    }
}
