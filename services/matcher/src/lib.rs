//! The matcher: for each accepted event, every Live survey of the project whose backend
//! trigger subscribes to that exact event, sent on as ONE `event.matched` envelope (possibly
//! listing none) so the invitation stage knows when the trigger is complete and can reply once.
//! A survey whose trigger conditions are false for the event and the user (as the user is
//! now) is listed too, marked to be skipped with the clause that was false.

use anyhow::Context as _;
use beckon_bus::Topology;
use beckon_bus::topology::queues;
use beckon_domain::condition::Subject;
use beckon_domain::envelope::{Envelope, EventMatched, EventReceived};
use beckon_runtime::InfraConfig;
use beckon_store::retention::RetentionError;
use beckon_store::{surveys, triggers, users};
use beckon_worker::{Emit, HandleError, Handled, Handler, Item, Repeats};
use diesel_async::AsyncPgConnection;
use serde_json::value::RawValue;
use targets::{Carried, ReadConditions, Target};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The name this consumer records processed envelopes under.
pub const CONSUMER: &str = "matcher";

pub mod reminders;
pub mod retention;
pub mod scheduler;
pub mod stalled;
mod targets;

/// The matcher's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub infra: InfraConfig,
    /// `BECKON_SCHEDULER_INTERVAL_MS`: how often the scheduler looks for due triggers
    /// (default 200).
    pub scheduler_interval: std::time::Duration,
    /// How long records that only grow are kept (`BECKON_RETENTION_ATTEMPTS_SECS`, default
    /// 30 days; `BECKON_RETENTION_PROCESSED_SECS`, 14 days; `BECKON_RETENTION_TRIGGERS_SECS`,
    /// 90 days), how long a webhook message keeps its body
    /// (`BECKON_RETENTION_WEBHOOK_PAYLOAD_SECS`, 30 days) and how long the message is kept
    /// at all (`BECKON_RETENTION_WEBHOOK_HISTORY_SECS`, 90 days; at least the other two
    /// webhook periods, or the matcher refuses to start).
    pub retention: beckon_store::retention::Retention,
    /// `BECKON_RETENTION_INTERVAL_SECS`: how often the sweep runs (default 60).
    pub retention_interval: std::time::Duration,
    /// `BECKON_STALLED_AFTER_SECS`: how long a trigger may stay queued or processing before
    /// it counts as stalled: sent again once, then failed (default 3600).
    pub stalled_after: std::time::Duration,
    /// `BECKON_STALLED_INTERVAL_MS`: how often the stalled-trigger sweep runs (default 60000).
    pub stalled_interval: std::time::Duration,
    /// `BECKON_REMINDER_SYNC_INTERVAL_MS`: how often the reminder sync looks for surveys whose
    /// users' trial reminders must follow a change (default 1000).
    pub reminder_sync_interval: std::time::Duration,
    /// `BECKON_REMINDER_SYNC_BATCH`: users per reminder-sync transaction (default 500).
    pub reminder_sync_batch: i64,
}

impl Config {
    pub fn from_env() -> Result<Self, beckon_runtime::ConfigError> {
        let config = Self {
            infra: InfraConfig::from_env()?,
            scheduler_interval: std::time::Duration::from_millis(beckon_runtime::env_parse(
                "BECKON_SCHEDULER_INTERVAL_MS",
                200,
            )?),
            retention: beckon_store::retention::Retention {
                attempts: secs("BECKON_RETENTION_ATTEMPTS_SECS", 30 * DAY)?,
                processed: secs("BECKON_RETENTION_PROCESSED_SECS", 14 * DAY)?,
                triggers: secs("BECKON_RETENTION_TRIGGERS_SECS", 90 * DAY)?,
                webhook_payloads: secs("BECKON_RETENTION_WEBHOOK_PAYLOAD_SECS", 30 * DAY)?,
                webhook_history: secs("BECKON_RETENTION_WEBHOOK_HISTORY_SECS", 90 * DAY)?,
            },
            retention_interval: secs("BECKON_RETENTION_INTERVAL_SECS", 60)?,
            stalled_after: secs("BECKON_STALLED_AFTER_SECS", 3600)?,
            stalled_interval: std::time::Duration::from_millis(beckon_runtime::env_parse(
                "BECKON_STALLED_INTERVAL_MS",
                60_000,
            )?),
            reminder_sync_interval: std::time::Duration::from_millis(beckon_runtime::env_parse(
                "BECKON_REMINDER_SYNC_INTERVAL_MS",
                1000,
            )?),
            reminder_sync_batch: beckon_runtime::env_parse("BECKON_REMINDER_SYNC_BATCH", 500)?,
        };
        if config.reminder_sync_batch < 1 {
            return Err(beckon_runtime::ConfigError {
                name: "BECKON_REMINDER_SYNC_BATCH",
                value: config.reminder_sync_batch.to_string(),
                reason: "at least 1 user per batch".to_owned(),
            });
        }
        config.retention.validate().map_err(|err| {
            let (name, value) = match err {
                RetentionError::PayloadsOutliveHistory { payloads, .. } => {
                    ("BECKON_RETENTION_WEBHOOK_PAYLOAD_SECS", payloads)
                }
                RetentionError::AttemptsOutliveHistory { attempts, .. } => {
                    ("BECKON_RETENTION_ATTEMPTS_SECS", attempts)
                }
            };
            beckon_runtime::ConfigError {
                name,
                value: value.as_secs().to_string(),
                reason: format!("{err}; raise BECKON_RETENTION_WEBHOOK_HISTORY_SECS or lower it"),
            }
        })?;
        Ok(config)
    }
}

const DAY: u64 = 24 * 3600;

fn secs(
    name: &'static str,
    default: u64,
) -> Result<std::time::Duration, beckon_runtime::ConfigError> {
    Ok(std::time::Duration::from_secs(beckon_runtime::env_parse(
        name, default,
    )?))
}

/// Matches one event to the Live surveys subscribed to it.
pub struct Matcher {
    topology: Topology,
    read: ReadConditions,
}

/// What a lookup of matching surveys depends on: project, event key, and the one survey a
/// dispatch names.
type EventOf = (Uuid, String, Option<Uuid>);

impl Matcher {
    pub fn new(topology: Topology) -> Self {
        Self {
            topology,
            read: ReadConditions::default(),
        }
    }

    /// The `event.matched` envelope of `env`, listing the surveys it matched and those it did
    /// not.
    fn matched(
        &self,
        env: &Envelope<EventReceived>,
        surveys: Vec<Carried<'_>>,
        unmatched: Vec<&RawValue>,
    ) -> Emit {
        tracing::info!(
            matched = surveys.len(),
            skipped = surveys.iter().filter(|s| s.is_skipped()).count(),
            "event matched"
        );
        let out = Envelope::child_of(
            env,
            "matched",
            EventMatched {
                trigger_type: env.data.trigger_type,
                user_ref: env.data.user_ref.clone(),
                event: env.data.event.clone(),
                reply_to: env.data.reply_to.clone(),
                surveys,
                event_data: env.data.event_data.clone(),
                variables: env.data.variables.clone(),
                source: env.data.source.clone(),
                unmatched,
            },
        );
        Emit::event(&self.topology, &out)
    }
}

impl Handler<EventReceived> for Matcher {
    /// Matching again moves no trigger that has moved on (only a queued one becomes
    /// processing) and emits the `event.matched` envelope under the same derived id, which the
    /// invitation stage drops as a repeat.
    const REPEATS: Repeats = Repeats::Harmless;
    type Then = ();

    /// One status update for every trigger and one lookup per distinct event, all sent
    /// together (the connection pipelines them).
    async fn handle(
        &self,
        items: &[Item<'_, EventReceived>],
        conn: &mut AsyncPgConnection,
    ) -> Result<Handled, HandleError> {
        let ids: Vec<_> = items.iter().map(|item| item.env.correlation_id).collect();
        let keys: Vec<EventOf> = items
            .iter()
            .map(|item| {
                let env = item.env;
                (env.project_id, env.data.event.key(), env.data.survey_id)
            })
            .collect();
        let mut distinct: Vec<&EventOf> = Vec::new();
        for key in &keys {
            if !distinct.contains(&key) {
                distinct.push(key);
            }
        }
        let people: Vec<(Uuid, &str)> = items
            .iter()
            .map(|item| (item.env.project_id, item.env.data.user_ref.as_str()))
            .collect();
        let conn = &*conn;
        // The users are read with the surveys, whether or not a condition reads them: in the
        // same round trip, it costs less than a second one when one does.
        let (_, found, users) = futures_util::future::try_join3(
            triggers::mark_processing_many(conn, &ids),
            futures_util::future::try_join_all(
                distinct
                    .iter()
                    .map(|(project, key, only)| surveys::candidates(conn, *project, key, *only)),
            ),
            users::get_many(conn, &people),
        )
        .await?;
        let now = time::OffsetDateTime::now_utc();
        // Conditions read and surveys written once per lookup, not once per event that
        // shares it.
        let found: Vec<(Vec<Target>, Vec<Box<RawValue>>)> = found
            .into_iter()
            .map(|candidates| {
                let live = candidates
                    .live
                    .into_iter()
                    .map(|live| self.read.target(live))
                    .collect();
                (live, targets::unmatched(&candidates.unmatched))
            })
            .collect();
        Ok(Handled::emits(
            items
                .iter()
                .zip(&keys)
                .map(|(item, key)| {
                    let at = distinct.iter().position(|k| *k == key).unwrap_or_default();
                    let (live, others) = match found.get(at) {
                        Some((live, others)) => (live.as_slice(), others.as_slice()),
                        None => (&[][..], &[][..]),
                    };
                    let user = users.iter().find(|u| {
                        u.project_id == item.env.project_id
                            && u.user_ref == item.env.data.user_ref.as_str()
                    });
                    let subject = Subject {
                        now,
                        event_data: item.env.data.event_data.as_ref(),
                        user: user.map(users::User::facts),
                    };
                    let matched = live.iter().map(|s| s.for_event(&subject)).collect();
                    let unmatched = others.iter().map(Box::as_ref).collect();
                    vec![
                        item.span
                            .in_scope(|| self.matched(item.env, matched, unmatched)),
                    ]
                })
                .collect(),
        ))
    }
}

/// Runs until `cancel` fires; then finishes in-flight messages and returns.
pub async fn run(config: Config, cancel: CancellationToken) -> anyhow::Result<()> {
    beckon_worker::serve(
        CONSUMER,
        &config.infra,
        "127.0.0.1:9101",
        queues::matcher(),
        |topology| Matcher::new(topology.clone()),
        // Beside the consumer: the scheduler, the retention sweep, the stalled-trigger sweep
        // and the reminder sync.
        move |deps: beckon_worker::Deps,
              topology: beckon_bus::Topology,
              cancel: CancellationToken| {
            let stalled = stalled::run(
                deps.clone(),
                topology.clone(),
                config.stalled_after,
                config.stalled_interval,
                cancel.clone(),
            );
            let sweep = retention::run(
                deps.store.clone(),
                config.retention.clone(),
                config.retention_interval,
                cancel.clone(),
            );
            let reminders = reminders::run(
                deps.store.clone(),
                config.reminder_sync_interval,
                config.reminder_sync_batch,
                cancel.clone(),
            );
            let schedule = scheduler::run(deps, topology, config.scheduler_interval, cancel);
            async move {
                tokio::join!(sweep, schedule, stalled, reminders);
            }
        },
        cancel,
    )
    .await
    .context("The matcher failed to start")
}
