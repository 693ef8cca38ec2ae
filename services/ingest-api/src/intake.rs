//! Committing accepted events in groups.
//!
//! An `events/send` answers 201 only once its trigger and envelope are committed. Requests that
//! arrive together share one transaction: a few intake workers each take the first event
//! waiting and whatever else is already queued (waiting a moment for more only while another
//! group is being committed, never when the intake is idle), upsert the users,
//! insert every trigger with one statement and every envelope into the outbox with another,
//! and commit once. A lone request is a group of one and costs what it did alone. When a group
//! fails, each of its events is committed again on its own, so one bad request fails alone.
//!
//! An `events/batch` request is a group already, and one the caller wants whole: it is
//! committed at once by [`Intake::commit_batch`], in one transaction, all or nothing, not
//! queued event by event.

use beckon_runtime::TaskStatus;
use beckon_runtime::group;
use beckon_store::triggers::{self, NewTrigger};
use beckon_store::users::{self, UserChanges};
use beckon_store::{Store, StoreError, outbox};
use diesel_async::AsyncConnection;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

/// Groups committed at once (each on its own database connection).
const WORKERS: usize = 4;
/// Most events in one group.
const MAX_GROUP: usize = 64;
/// How long a group waits for more events while another group is being committed.
const LINGER: std::time::Duration = std::time::Duration::from_millis(1);

/// What one accepted event commits.
pub struct Event {
    pub org_id: Uuid,
    pub project_id: Uuid,
    /// The user the event is about, made if missing and updated; `None` when it names no
    /// contact.
    pub user: Option<UserUpdate>,
    pub trigger: NewTrigger,
    /// The envelope that carries the event now; `None` for a trigger scheduled for later.
    pub envelope: Option<Envelope>,
}

/// The user an event is about, and what to change on them.
pub struct UserUpdate {
    pub user_ref: String,
    pub changes: UserChanges,
}

/// An envelope bound for the outbox.
pub struct Envelope {
    pub id: Uuid,
    pub exchange: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    pub traceparent: Option<String>,
}

type Outcome = Result<Vec<outbox::OutboxMessage>, StoreError>;

struct Job {
    event: Event,
    done: oneshot::Sender<Outcome>,
}

/// A handle to the intake workers; they stop when it is dropped.
pub struct Intake {
    /// Stops the supervisors before `queue` closes (fields drop in order), so workers that end
    /// because the queue closed are not restarted.
    _stop: DropGuard,
    queue: mpsc::UnboundedSender<Job>,
    workers: Vec<TaskStatus>,
    /// For batches, committed by their own request.
    store: Store,
}

/// The event's group was lost: its worker died (and is being restarted), or the process is
/// stopping.
#[derive(Debug, thiserror::Error)]
#[error("the intake lost the event")]
pub struct Closed;

/// Why a group did not commit. Nothing of it was written.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The user update of the event at this index of the group would take the user's
    /// attributes past their bound (`StoreError::AttributesTooLarge`).
    #[error("the user update of event {index} would make the user's attributes too large")]
    AttributesTooLarge { index: usize },
    /// Any other failure of the transaction.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A statement that failed inside the group's transaction.
impl From<diesel::result::Error> for GroupError {
    fn from(err: diesel::result::Error) -> Self {
        Self::Store(err.into())
    }
}

impl GroupError {
    /// The error as the store would give it for the group's events committed one by one.
    fn into_store(self) -> StoreError {
        match self {
            Self::AttributesTooLarge { .. } => StoreError::AttributesTooLarge,
            Self::Store(err) => err,
        }
    }
}

impl Intake {
    /// Starts the workers on the current runtime, each supervised: one that panics is
    /// restarted (the events of the group it held are answered 503) until `cancel` fires.
    pub fn start(store: Store, cancel: CancellationToken) -> Self {
        let (queue, groups) = group::groups(MAX_GROUP, LINGER);
        let cancel = cancel.child_token();
        let workers = (0..WORKERS)
            .map(|_| {
                let (store, groups) = (store.clone(), groups.clone());
                beckon_runtime::supervise("intake", cancel.clone(), move || {
                    work(store.clone(), groups.clone())
                })
            })
            .collect();
        Self {
            _stop: cancel.drop_guard(),
            queue,
            workers,
            store,
        }
    }

    /// Whether each worker runs.
    pub fn workers(&self) -> &[TaskStatus] {
        &self.workers
    }

    /// Commits `event` (with others arriving at the same time); returns its outbox rows, to
    /// publish.
    pub async fn commit(&self, event: Event) -> Result<Outcome, Closed> {
        let (done, outcome) = oneshot::channel();
        self.queue.send(Job { event, done }).map_err(|_| Closed)?;
        outcome.await.map_err(|_| Closed)
    }

    /// Commits `events` in one transaction of their own, on the caller's task: all of them or
    /// none, never split as a failed group of separate requests is. Returns their outbox rows,
    /// to publish. A user named by several of them is updated in their order.
    pub async fn commit_batch(
        &self,
        events: &[Event],
    ) -> Result<Vec<outbox::OutboxMessage>, GroupError> {
        // A transaction of accepted events like a group's, counted with them.
        metrics::histogram!("beckon_intake_group_size").record(events.len() as f64);
        let events: Vec<&Event> = events.iter().collect();
        commit_group(&self.store, &events).await
    }
}

async fn work(store: Store, groups: group::Groups<Job>) {
    while let Some((jobs, _working)) = groups.next().await {
        metrics::histogram!("beckon_intake_group_size").record(jobs.len() as f64);
        // Should the group fail, every event is committed again on its own, all at once.
        let outcomes = group::commit_each(&jobs, jobs.len(), |jobs| {
            Box::pin(commit_jobs(&store, jobs))
        })
        .await;
        for (job, outcome) in jobs.into_iter().zip(outcomes) {
            let _ = job.done.send(outcome);
        }
    }
}

/// Commits the events of `jobs` together; answers each one's outbox rows.
async fn commit_jobs(
    store: &Store,
    jobs: &[Job],
) -> Result<Vec<Vec<outbox::OutboxMessage>>, StoreError> {
    let events: Vec<&Event> = jobs.iter().map(|j| &j.event).collect();
    let mut rows = commit_group(store, &events)
        .await
        .map_err(GroupError::into_store)?;
    Ok(jobs
        .iter()
        .map(|job| {
            let id = job.event.envelope.as_ref().map(|e| e.id);
            rows.extract_if(.., |r| Some(r.envelope_id) == id).collect()
        })
        .collect())
}

/// Commits `events` in one transaction: every user created if missing, the triggers and the
/// envelopes, with one statement each sent together (the connection pipelines them), then the
/// users with new details updated one by one.
///
/// Users are created, then updated, in one fixed order, so two groups sharing users wait on
/// each other instead of deadlocking. The sort is stable: several events about one user update
/// it in their order in `events` (the later `email` wins, `custom_fields` merge in turn).
async fn commit_group(
    store: &Store,
    events: &[&Event],
) -> Result<Vec<outbox::OutboxMessage>, GroupError> {
    let mut conn = store.conn().await?;
    conn.transaction::<_, GroupError, _>(async |conn| {
        let mut by_user: Vec<(usize, &Event, &UserUpdate)> = events
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((i, *e, e.user.as_ref()?)))
            .collect();
        by_user.sort_by_key(|(_, e, u)| (e.project_id, u.user_ref.as_str()));
        let users: Vec<_> = by_user
            .iter()
            .map(|(_, e, u)| (e.org_id, e.project_id, u.user_ref.as_str()))
            .collect();
        let triggers: Vec<&NewTrigger> = events.iter().map(|e| &e.trigger).collect();
        let messages: Vec<_> = events
            .iter()
            .filter_map(|e| e.envelope.as_ref())
            .map(|e| outbox::NewOutboxMessage {
                envelope_id: e.id,
                exchange: &e.exchange,
                routing_key: &e.routing_key,
                body: &e.body,
                traceparent: e.traceparent.as_deref(),
            })
            .collect();
        let (_, _, rows) = {
            let conn = &*conn;
            futures_util::try_join!(
                users::ensure_many(conn, &users),
                triggers::insert_many(conn, &triggers),
                outbox::enqueue_many(conn, &messages),
            )?
        };
        for (index, e, u) in by_user.iter().filter(|(_, _, u)| !u.changes.is_empty()) {
            users::upsert(conn, e.org_id, e.project_id, &u.user_ref, &u.changes)
                .await
                .map_err(|err| match err {
                    StoreError::AttributesTooLarge => {
                        GroupError::AttributesTooLarge { index: *index }
                    }
                    err => err.into(),
                })?;
        }
        Ok(rows)
    })
    .await
}
