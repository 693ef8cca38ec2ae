//! Webhook subscriptions, messages, deliveries and the attempt log.
//!
//! A message is one event (its id is the `webhook-id`); a delivery is that message to one
//! subscription. A pending delivery's `next_attempt_at` is both its due time and, while an
//! attempt is in flight, a lease pushed past that attempt's timeout: a crash mid-attempt
//! leaves a delivery that falls due again, a live attempt is never doubled.

use crate::StoreError;
use crate::cached::Cached;
use crate::paging::{Keyset, Page, PageRequest, older_than};
use crate::schema::{
    organizations, projects, webhook_attempts, webhook_deliveries, webhook_messages,
    webhook_subscriptions,
};
use beckon_domain::tenant::{Named, Tenant};
use beckon_domain::webhook_format::PayloadFormat;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Uuid as SqlUuid};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use uuid::Uuid;

/// Subscription statuses.
pub mod status {
    use beckon_domain::status::SubscriptionStatus;
    pub const PENDING_VERIFICATION: &str = SubscriptionStatus::PendingVerification.as_str();
    pub const ACTIVE: &str = SubscriptionStatus::Active.as_str();
    pub const DISABLED: &str = SubscriptionStatus::Disabled.as_str();
}

/// Delivery statuses.
pub mod delivery {
    use beckon_domain::status::DeliveryStatus;
    pub const PENDING: &str = DeliveryStatus::Pending.as_str();
    pub const SUCCEEDED: &str = DeliveryStatus::Succeeded.as_str();
    pub const FAILED: &str = DeliveryStatus::Failed.as_str();
    pub const SKIPPED: &str = DeliveryStatus::Skipped.as_str();
}

/// A subscription that wants an event: an active one gets a delivery to attempt, a disabled
/// one a skipped delivery, so that what it missed can be recovered once it is re-enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscriber {
    pub id: Uuid,
    pub active: bool,
    /// Its deliveries go out through the poller, in order, never as first attempts started
    /// by the consumer.
    pub ordered: bool,
    /// The format and version its deliveries pin.
    pub format: PayloadFormat,
    pub payload_version: i32,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_subscriptions)]
pub struct Subscription {
    pub id: Uuid,
    pub org_id: Uuid,
    pub project_id: Uuid,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub status: String,
    pub disabled_reason: Option<String>,
    pub retry_policy: serde_json::Value,
    pub timeout_ms: i32,
    pub payload_version: i32,
    pub secret_encrypted: Vec<u8>,
    pub previous_secret_encrypted: Option<Vec<u8>>,
    pub previous_secret_expires_at: Option<OffsetDateTime>,
    pub last_success_at: Option<OffsetDateTime>,
    pub verified_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// When the current run of failed attempts began; cleared by any success.
    pub failing_since: Option<OffsetDateTime>,
    /// Failed attempts since `failing_since`.
    pub failures_in_streak: i32,
    pub disabled_at: Option<OffsetDateTime>,
    /// At most this many requests a second to the endpoint; `None`: no limit.
    pub rate_limit: Option<i32>,
    /// Events about one user go out one at a time, in the order they occurred.
    pub ordered: bool,
    /// The shape its webhooks take (at `payload_version`).
    #[diesel(deserialize_as = String)]
    pub format: PayloadFormat,
}

crate::paging::keyed_by_created_at_and_id!(Subscription);

impl Subscription {
    /// Whether one more failure at `now` ends the subscription's patience: its streak (this
    /// failure included) has lasted `window` and holds at least `min_failures` attempts. A
    /// quiet subscription whose last success is long past starts a new streak instead.
    pub fn failing_too_long(
        &self,
        now: OffsetDateTime,
        window: std::time::Duration,
        min_failures: u32,
    ) -> bool {
        let since = self.failing_since.unwrap_or(now);
        let lasted = std::time::Duration::try_from(now - since).unwrap_or_default();
        lasted >= window && (self.failures_in_streak + 1) as u32 >= min_failures
    }
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = webhook_subscriptions)]
pub struct NewSubscription {
    pub id: Uuid,
    pub org_id: Uuid,
    pub project_id: Uuid,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub status: String,
    pub retry_policy: serde_json::Value,
    pub timeout_ms: i32,
    pub payload_version: i32,
    pub secret_encrypted: Vec<u8>,
    pub verified_at: Option<OffsetDateTime>,
    pub rate_limit: Option<i32>,
    pub ordered: bool,
    #[diesel(serialize_as = String)]
    pub format: PayloadFormat,
}

/// How many subscriptions a project has, in any status.
pub async fn count_subscriptions(
    conn: &mut AsyncPgConnection,
    project_id: Uuid,
) -> Result<i64, StoreError> {
    Ok(webhook_subscriptions::table
        .filter(webhook_subscriptions::project_id.eq(project_id))
        .count()
        .get_result(conn)
        .await?)
}

/// What creating a subscription came to.
#[derive(Debug)]
pub enum SubscriptionCreated {
    Created(Box<Subscription>),
    /// The project already has `limit` subscriptions; nothing was created.
    LimitReached {
        limit: u32,
    },
}

/// Creates a subscription unless its project already has `limit` of them.
///
/// The project's row is locked first, so two creations racing for the last place are taken
/// one after the other and the count never passes the limit.
pub async fn create_subscription(
    conn: &mut AsyncPgConnection,
    new: &NewSubscription,
    limit: u32,
) -> Result<SubscriptionCreated, StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        // NO KEY UPDATE: serializes creations without blocking rows that merely reference
        // the project (invitations, triggers).
        projects::table
            .find(new.project_id)
            .select(projects::id)
            .for_no_key_update()
            .first::<Uuid>(conn)
            .await?;
        if count_subscriptions(conn, new.project_id).await? >= i64::from(limit) {
            return Ok(SubscriptionCreated::LimitReached { limit });
        }
        let created = diesel::insert_into(webhook_subscriptions::table)
            .values(new.clone())
            .returning(Subscription::as_returning())
            .get_result(conn)
            .await?;
        Ok(SubscriptionCreated::Created(Box::new(created)))
    })
    .await
}

/// A page of a project's subscriptions, newest first.
pub async fn list_subscriptions(
    conn: &mut AsyncPgConnection,
    project_id: Uuid,
    page: &PageRequest<Keyset>,
) -> Result<Page<Subscription>, StoreError> {
    let mut query = webhook_subscriptions::table
        .filter(webhook_subscriptions::project_id.eq(project_id))
        .into_boxed();
    if let Some(after) = page.after {
        query = query.filter(older_than(
            webhook_subscriptions::created_at,
            webhook_subscriptions::id,
            after,
        ));
    }
    let rows = query
        .order((
            webhook_subscriptions::created_at.desc(),
            webhook_subscriptions::id.desc(),
        ))
        .limit(page.fetch())
        .select(Subscription::as_select())
        .load(conn)
        .await?;
    Ok(page.page(rows))
}

pub async fn get_subscription(
    conn: &mut AsyncPgConnection,
    project_id: Uuid,
    id: Uuid,
) -> Result<Option<Subscription>, StoreError> {
    Ok(webhook_subscriptions::table
        .find(id)
        .filter(webhook_subscriptions::project_id.eq(project_id))
        .select(Subscription::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// A subscription, locked until the end of the transaction: a change checked against it is
/// made against what was checked, whatever another change does meanwhile.
pub async fn lock_subscription(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<Subscription>, StoreError> {
    Ok(webhook_subscriptions::table
        .find(id)
        .select(Subscription::as_select())
        .for_no_key_update()
        .first(conn)
        .await
        .optional()?)
}

/// Fields to change; `None` keeps the value.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = webhook_subscriptions)]
pub struct SubscriptionChanges {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub status: Option<String>,
    pub disabled_reason: Option<Option<String>>,
    pub retry_policy: Option<serde_json::Value>,
    pub timeout_ms: Option<i32>,
    pub payload_version: Option<i32>,
    pub secret_encrypted: Option<Vec<u8>>,
    pub previous_secret_encrypted: Option<Option<Vec<u8>>>,
    pub previous_secret_expires_at: Option<Option<OffsetDateTime>>,
    pub verified_at: Option<Option<OffsetDateTime>>,
    pub last_success_at: Option<Option<OffsetDateTime>>,
    pub failing_since: Option<Option<OffsetDateTime>>,
    pub failures_in_streak: Option<i32>,
    pub disabled_at: Option<Option<OffsetDateTime>>,
    pub rate_limit: Option<Option<i32>>,
    pub ordered: Option<bool>,
    /// A format's name ([`PayloadFormat::as_str`]).
    pub format: Option<String>,
    pub updated_at: Option<OffsetDateTime>,
}

pub async fn update_subscription(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    mut changes: SubscriptionChanges,
) -> Result<Subscription, StoreError> {
    changes.updated_at = Some(OffsetDateTime::now_utc());
    Ok(diesel::update(webhook_subscriptions::table.find(id))
        .set(changes)
        .returning(Subscription::as_returning())
        .get_result(conn)
        .await?)
}

pub async fn delete_subscription(conn: &mut AsyncPgConnection, id: Uuid) -> Result<(), StoreError> {
    diesel::delete(webhook_subscriptions::table.find(id))
        .execute(conn)
        .await?;
    Ok(())
}

/// The active and disabled subscriptions of a project that want `event_type` (an empty list
/// wants all); one still waiting for verification wants nothing yet. The future borrows the
/// connection shared, so lookups for several events can be awaited together, which the
/// connection pipelines.
pub fn wanting<'c>(
    conn: &'c AsyncPgConnection,
    project_id: Uuid,
    event_type: &str,
) -> impl Future<Output = Result<Vec<Subscription>, StoreError>> + Send + use<'c> {
    use diesel::PgArrayExpressionMethods;
    let sent = Cached(
        webhook_subscriptions::table
            .filter(webhook_subscriptions::project_id.eq(project_id))
            .filter(webhook_subscriptions::status.eq_any([status::ACTIVE, status::DISABLED]))
            .filter(
                webhook_subscriptions::event_types
                    .eq(Vec::<String>::new())
                    .or(webhook_subscriptions::event_types.contains(vec![event_type.to_owned()])),
            )
            .select(Subscription::as_select()),
    )
    .load::<Subscription>(&mut { conn });
    async move { Ok(sent.await?) }
}

/// The organizations and names of `projects` (those that exist), for the webhooks of their
/// events. The future borrows the connection shared, so it can be awaited together with other
/// statements, which the connection pipelines.
pub fn tenants<'c>(
    conn: &'c AsyncPgConnection,
    projects: &[Uuid],
) -> impl Future<Output = Result<Vec<Tenant>, StoreError>> + Send + use<'c> {
    let sent = Cached(
        projects::table
            .inner_join(organizations::table)
            .filter(projects::id.eq_any(projects.to_vec()))
            .select((
                organizations::id,
                organizations::name,
                projects::id,
                projects::name,
            )),
    )
    .load::<(Uuid, String, Uuid, String)>(&mut { conn });
    async move {
        Ok(sent
            .await?
            .into_iter()
            .map(|(org_id, org_name, project_id, project_name)| Tenant {
                organization: Named {
                    id: org_id,
                    name: org_name,
                },
                project: Named {
                    id: project_id,
                    name: project_name,
                },
            })
            .collect())
    }
}

/// The organization and names of one project, for a webhook of its events.
pub async fn tenant(conn: &mut AsyncPgConnection, project: Uuid) -> Result<Tenant, StoreError> {
    tenants(conn, &[project])
        .await?
        .pop()
        .ok_or(StoreError::Query(diesel::result::Error::NotFound))
}

impl From<&Subscription> for Subscriber {
    fn from(s: &Subscription) -> Self {
        Self {
            id: s.id,
            active: s.status == status::ACTIVE,
            ordered: s.ordered,
            format: s.format,
            payload_version: s.payload_version,
        }
    }
}

/// A message to store: one event, its body sealed.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = webhook_messages, treat_none_as_default_value = false)]
pub struct NewMessage {
    pub id: Uuid,
    pub org_id: Uuid,
    pub project_id: Uuid,
    pub event_type: String,
    pub version: i32,
    pub body_encrypted: Vec<u8>,
    pub occurred_at: OffsetDateTime,
    /// The user the event is about, for erasure.
    pub user_ref: Option<String>,
}

/// A stored message. Past the payload retention period its body is erased and only what
/// describes it is kept.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_messages)]
pub struct Message {
    pub id: Uuid,
    pub org_id: Uuid,
    pub project_id: Uuid,
    pub event_type: String,
    pub version: i32,
    body_encrypted: Option<Vec<u8>>,
    pub occurred_at: OffsetDateTime,
    pub created_at: OffsetDateTime,
    pub user_ref: Option<String>,
    payload_erased_at: Option<OffsetDateTime>,
}

/// What a stored message still holds of its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageBody<'a> {
    /// The body, sealed under the deployment's keys.
    Sealed(&'a [u8]),
    /// Erased at this time, at the end of the payload retention period.
    Erased(OffsetDateTime),
}

impl Message {
    /// The message `new` as it was stored at `created_at`.
    pub fn stored(new: &NewMessage, created_at: OffsetDateTime) -> Self {
        Self {
            id: new.id,
            org_id: new.org_id,
            project_id: new.project_id,
            event_type: new.event_type.clone(),
            version: new.version,
            body_encrypted: Some(new.body_encrypted.clone()),
            occurred_at: new.occurred_at,
            created_at,
            user_ref: new.user_ref.clone(),
            payload_erased_at: None,
        }
    }

    pub fn body(&self) -> MessageBody<'_> {
        match (&self.body_encrypted, self.payload_erased_at) {
            (Some(sealed), _) => MessageBody::Sealed(sealed),
            // The table's check keeps a body or the time it was erased; a row with neither
            // would have lost its body all the same.
            (None, at) => MessageBody::Erased(at.unwrap_or(self.created_at)),
        }
    }
}

/// Stores a message once; a repeat (a redelivered envelope) changes nothing.
pub async fn insert_message(
    conn: &mut AsyncPgConnection,
    message: &NewMessage,
) -> Result<(), StoreError> {
    insert_messages(conn, std::slice::from_ref(message)).await
}

/// [`insert_message`] for many messages, in one statement. The future borrows the connection
/// shared, so it can be awaited together with other statements, which the connection
/// pipelines.
pub fn insert_messages<'c>(
    conn: &'c AsyncPgConnection,
    messages: &[NewMessage],
) -> impl Future<Output = Result<(), StoreError>> + Send + use<'c> {
    let sent = (!messages.is_empty()).then(|| {
        Cached(
            diesel::insert_into(webhook_messages::table)
                .values(messages)
                .on_conflict_do_nothing(),
        )
        .execute(&mut { conn })
    });
    crate::pipelined::done(sent)
}

/// The delivery of `message_id` to `subscription_id`: one per pair, whoever asks.
pub fn delivery_id(message_id: Uuid, subscription_id: Uuid) -> Uuid {
    beckon_domain::ids::derive(message_id, "delivery", &[subscription_id])
}

/// Creates the deliveries of a message, due at `due` (a lease when the caller attempts them
/// itself right away; an ordered subscription's are due at once, for the poller to send in
/// order). Returns the ids of those it created.
pub async fn insert_deliveries(
    conn: &mut AsyncPgConnection,
    message_id: Uuid,
    subscriptions: &[&Subscription],
    due: OffsetDateTime,
) -> Result<Vec<Uuid>, StoreError> {
    // Attempted at `due`, whatever their status and order (a notice, a ping, a resend).
    let active: Vec<Subscriber> = subscriptions
        .iter()
        .map(|&s| Subscriber {
            active: true,
            ordered: false,
            ..Subscriber::from(s)
        })
        .collect();
    insert_deliveries_of(conn, &[(message_id, &active)], due).await
}

/// [`insert_deliveries`] for many messages, each with its subscriptions, in one statement. The
/// future borrows the connection shared, so it can be awaited together with other statements,
/// which the connection pipelines (after the messages it refers to, in the same round trip).
pub fn insert_deliveries_of<'c>(
    conn: &'c AsyncPgConnection,
    messages: &[(Uuid, &[Subscriber])],
    due: OffsetDateTime,
) -> impl Future<Output = Result<Vec<Uuid>, StoreError>> + Send + use<'c> {
    let now = OffsetDateTime::now_utc();
    let rows: Vec<_> = messages
        .iter()
        .flat_map(|(message_id, subscribers)| {
            subscribers.iter().map(move |s| {
                (
                    webhook_deliveries::id.eq(delivery_id(*message_id, s.id)),
                    webhook_deliveries::message_id.eq(*message_id),
                    webhook_deliveries::subscription_id.eq(s.id),
                    webhook_deliveries::status.eq(if s.active {
                        delivery::PENDING
                    } else {
                        delivery::SKIPPED
                    }),
                    webhook_deliveries::next_attempt_at.eq(if s.ordered { now } else { due }),
                    webhook_deliveries::format.eq(s.format.as_str()),
                    webhook_deliveries::payload_version.eq(s.payload_version),
                )
            })
        })
        .collect();
    let sent = (!rows.is_empty()).then(|| {
        Cached(
            diesel::insert_into(webhook_deliveries::table)
                .values(rows)
                .on_conflict_do_nothing()
                .returning(webhook_deliveries::id),
        )
        .get_results(&mut { conn })
    });
    crate::pipelined::rows(sent)
}

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// Claims due deliveries of active subscriptions, at most `per_subscription` of each so one
/// backlogged endpoint cannot crowd out the others, by pushing their due time `lease_seconds`
/// ahead. Of an ordered subscription, a delivery about a user is claimed only while no other
/// of that user's is pending before it (by when its event occurred) or in flight (or waiting
/// for a retry), so one goes out at a time, in order; one that went out already is finished
/// (retried) before any that has not started, even an event sorting before it that arrived
/// after it went out (events of one dispatch share their time and arrive in any order). Each subscription's due deliveries are
/// read from its own index range, so a claim costs what it takes, not the backlog. A
/// rate-limited subscription whose send slots are taken further than `rate_horizon_seconds`
/// ahead is left alone: what was claimed would only be given back. Two claimers
/// racing for a row serialise on it; the loser's re-check finds it no longer due.
pub async fn claim_due(
    conn: &mut AsyncPgConnection,
    per_subscription: i64,
    batch: i64,
    lease_seconds: f64,
    rate_horizon_seconds: f64,
) -> Result<Vec<Uuid>, StoreError> {
    // `share`: how many of a subscription's deliveries one claim may take — its share of
    // attempts, and for a rate-limited one no more than the send slots still free within the
    // horizon, so nothing is claimed only to be given back.
    let rows: Vec<Claimed> = diesel::sql_query(
        "WITH shares AS ( \
           SELECT id, ordered, CASE WHEN rate_limit IS NULL THEN $1 ELSE least($1, floor( \
             extract(epoch FROM now() + make_interval(secs => $4) \
               - greatest(coalesce(rate_next_slot, now()), now())) \
             * rate_limit / $5)::bigint) END AS share \
           FROM webhook_subscriptions WHERE status = 'active'), \
         due AS ( \
           SELECT c.id FROM shares s CROSS JOIN LATERAL ( \
             SELECT d.id FROM webhook_deliveries d \
             WHERE d.subscription_id = s.id AND d.status = 'pending' \
               AND d.next_attempt_at <= now() \
             ORDER BY d.next_attempt_at LIMIT s.share) c \
           WHERE NOT s.ordered AND s.share > 0 \
           UNION ALL \
           SELECT c.id FROM shares s CROSS JOIN LATERAL ( \
             SELECT d.id FROM webhook_deliveries d \
             JOIN webhook_messages m ON m.id = d.message_id \
             WHERE d.subscription_id = s.id AND d.status = 'pending' \
               AND d.next_attempt_at <= now() \
               AND NOT EXISTS ( \
                 SELECT 1 FROM webhook_messages m2 \
                 JOIN webhook_deliveries d2 \
                   ON d2.message_id = m2.id AND d2.subscription_id = d.subscription_id \
                 WHERE m2.project_id = m.project_id AND m2.user_ref = m.user_ref \
                   AND d2.status = 'pending' AND d2.id <> d.id \
                   AND (d2.next_attempt_at > now() \
                     OR (d2.last_attempt_at IS NOT NULL AND d.last_attempt_at IS NULL) \
                     OR ((d2.last_attempt_at IS NULL) = (d.last_attempt_at IS NULL) \
                       AND (m2.occurred_at, m2.id) < (m.occurred_at, m.id)))) \
             ORDER BY d.next_attempt_at LIMIT s.share) c \
           WHERE s.ordered AND s.share > 0) \
         UPDATE webhook_deliveries SET next_attempt_at = now() + make_interval(secs => $3) \
         WHERE id IN (SELECT id FROM due LIMIT $2) \
           AND status = 'pending' AND next_attempt_at <= now() \
         RETURNING id",
    )
    .bind::<BigInt, _>(per_subscription)
    .bind::<BigInt, _>(batch)
    .bind::<Double, _>(lease_seconds)
    .bind::<Double, _>(rate_horizon_seconds)
    .bind::<Double, _>(1.0 + RATE_MARGIN)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_deliveries)]
pub struct Delivery {
    pub id: Uuid,
    pub message_id: Uuid,
    pub subscription_id: Uuid,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: OffsetDateTime,
    pub first_attempt_at: Option<OffsetDateTime>,
    pub last_attempt_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    /// Attempts the endpoint answered 429 with `Retry-After`: they waited as asked and do not
    /// count against the retry policy.
    pub throttled: i32,
    /// The format and version its subscription had when it was created: every attempt of it
    /// sends that shape.
    #[diesel(deserialize_as = String)]
    pub format: PayloadFormat,
    pub payload_version: i32,
}

impl Delivery {
    /// A delivery just inserted for `subscription_id`, pending, never attempted, leased until
    /// `next_attempt_at` to the attempt about to start.
    pub fn inserted(
        message_id: Uuid,
        subscription: &Subscription,
        next_attempt_at: OffsetDateTime,
        created_at: OffsetDateTime,
    ) -> Self {
        Self {
            id: delivery_id(message_id, subscription.id),
            message_id,
            subscription_id: subscription.id,
            format: subscription.format,
            payload_version: subscription.payload_version,
            status: delivery::PENDING.to_owned(),
            attempts: 0,
            next_attempt_at,
            first_attempt_at: None,
            last_attempt_at: None,
            created_at,
            throttled: 0,
        }
    }

    /// The attempts the retry policy counts: all but the throttled ones.
    pub fn policy_attempts(&self) -> u32 {
        (self.attempts - self.throttled).max(0) as u32
    }
}

/// A delivery with its message and subscription: everything an attempt needs.
pub type AttemptContext = (Delivery, Message, Subscription);

/// The contexts of the deliveries `ids` (those that exist), in one query.
pub async fn attempt_contexts(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> Result<Vec<AttemptContext>, StoreError> {
    load_contexts(conn, contexts().filter(webhook_deliveries::id.eq_any(ids))).await
}

type Contexts<'a> = diesel::helper_types::IntoBoxed<
    'a,
    diesel::helper_types::InnerJoin<
        diesel::helper_types::InnerJoin<webhook_deliveries::table, webhook_messages::table>,
        webhook_subscriptions::table,
    >,
    diesel::pg::Pg,
>;

/// Deliveries with their messages and subscriptions, to filter.
fn contexts<'a>() -> Contexts<'a> {
    webhook_deliveries::table
        .inner_join(webhook_messages::table)
        .inner_join(webhook_subscriptions::table)
        .into_boxed()
}

async fn load_contexts(
    conn: &mut AsyncPgConnection,
    query: Contexts<'_>,
) -> Result<Vec<AttemptContext>, StoreError> {
    // Boxed, so diesel would not prepare it; each caller's filter is one shape.
    Ok(Cached(query.select((
        Delivery::as_select(),
        Message::as_select(),
        Subscription::as_select(),
    )))
    .load(conn)
    .await?)
}

/// One attempt, as logged.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_attempts)]
pub struct Attempt {
    pub id: i64,
    pub delivery_id: Uuid,
    pub message_id: Uuid,
    pub subscription_id: Uuid,
    pub attempted_at: OffsetDateTime,
    pub status_code: Option<i32>,
    pub duration_ms: i32,
    pub response_body: Option<String>,
    pub error: Option<String>,
}

/// What to record after an attempt.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub status_code: Option<i32>,
    pub duration_ms: i32,
    pub response_body: Option<String>,
    pub error: Option<String>,
    /// The delivery's fate: succeeded, failed, or pending again at this time.
    pub next: NextStep,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NextStep {
    Succeeded,
    RetryAt(OffsetDateTime),
    /// The endpoint asked to be called again later (429 with `Retry-After`): pending again at
    /// this time, without using up an attempt of the retry policy.
    Throttled(OffsetDateTime),
    GiveUp,
}

/// Logs an attempt and moves the delivery on, in one transaction's worth of statements (the
/// caller wraps them).
pub async fn record_attempt(
    conn: &mut AsyncPgConnection,
    delivery: &Delivery,
    record: &AttemptRecord,
) -> Result<Vec<FailingStreak>, StoreError> {
    record_attempts(conn, &[(delivery, record)]).await
}

/// A subscription whose failure streak is due a `webhook.failing` notice: none was ever sent
/// about it, or the last is a day old.
#[derive(Debug, Clone, QueryableByName)]
pub struct FailingStreak {
    #[diesel(sql_type = SqlUuid)]
    pub subscription_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub org_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub project_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub description: String,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub failing_since: OffsetDateTime,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pub failures_in_streak: i32,
    /// When the attempts were recorded, the last failed one among them.
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub recorded_at: OffsetDateTime,
}

/// How often a lasting failure streak is announced again.
const FAILING_NOTICE_EVERY: time::Duration = time::Duration::DAY;

/// [`record_attempt`] for many attempts (of different deliveries), with three statements in
/// all. Call inside a transaction. Returns the subscriptions whose failure streak is due a
/// `webhook.failing` notice, each once; the caller sends it in the same transaction.
pub async fn record_attempts(
    conn: &mut AsyncPgConnection,
    attempts: &[(&Delivery, &AttemptRecord)],
) -> Result<Vec<FailingStreak>, StoreError> {
    use diesel::sql_types::{Array, Text, Timestamptz};
    if attempts.is_empty() {
        return Ok(Vec::new());
    }
    let now = OffsetDateTime::now_utc();
    let rows: Vec<_> = attempts
        .iter()
        .map(|(delivery, record)| {
            (
                webhook_attempts::delivery_id.eq(delivery.id),
                webhook_attempts::message_id.eq(delivery.message_id),
                webhook_attempts::subscription_id.eq(delivery.subscription_id),
                webhook_attempts::attempted_at.eq(now),
                webhook_attempts::status_code.eq(record.status_code),
                webhook_attempts::duration_ms.eq(record.duration_ms),
                webhook_attempts::response_body.eq(&record.response_body),
                webhook_attempts::error.eq(&record.error),
            )
        })
        .collect();
    Cached(diesel::insert_into(webhook_attempts::table).values(rows))
        .execute(conn)
        .await?;

    let mut ids = Vec::with_capacity(attempts.len());
    let mut statuses = Vec::with_capacity(attempts.len());
    let mut next_ats = Vec::with_capacity(attempts.len());
    let mut throttled = Vec::with_capacity(attempts.len());
    let mut succeeded = Vec::new();
    let mut failed: std::collections::BTreeMap<Uuid, i32> = std::collections::BTreeMap::new();
    for (delivery, record) in attempts {
        let (status, next_at) = match &record.next {
            NextStep::Succeeded => (delivery::SUCCEEDED, now),
            NextStep::GiveUp => (delivery::FAILED, now),
            NextStep::RetryAt(at) | NextStep::Throttled(at) => (delivery::PENDING, *at),
        };
        ids.push(delivery.id);
        statuses.push(status);
        next_ats.push(next_at);
        throttled.push(i32::from(matches!(record.next, NextStep::Throttled(_))));
        match record.next {
            NextStep::Succeeded => succeeded.push(delivery.subscription_id),
            // The endpoint asked for patience: not a failure of it.
            NextStep::Throttled(_) => {}
            NextStep::RetryAt(_) | NextStep::GiveUp => {
                *failed.entry(delivery.subscription_id).or_insert(0) += 1
            }
        }
    }
    Cached(
        diesel::sql_query(
            "UPDATE webhook_deliveries AS d SET status = v.status, attempts = d.attempts + 1, \
           throttled = d.throttled + v.throttled, \
           next_attempt_at = v.next_at, first_attempt_at = COALESCE(d.first_attempt_at, $4), \
           last_attempt_at = $4 \
         FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $5::int[]) \
           AS v(id, status, next_at, throttled) \
         WHERE d.id = v.id",
        )
        .bind::<Array<SqlUuid>, _>(&ids)
        .bind::<Array<Text>, _>(&statuses)
        .bind::<Array<Timestamptz>, _>(&next_ats)
        .bind::<Timestamptz, _>(now)
        .bind::<Array<diesel::sql_types::Integer>, _>(&throttled),
    )
    .execute(conn)
    .await?;

    if !succeeded.is_empty() {
        succeeded.sort_unstable();
        succeeded.dedup();
        // Kept to the second: a busy subscription's row is written about once a second, not
        // on every success, so its concurrent attempts do not queue on that row's lock (an
        // UPDATE whose filter does not match takes no lock). Any success also ends a failure
        // streak, so a subscription in one is written whatever its last success.
        Cached(
            diesel::update(
                webhook_subscriptions::table
                    .filter(webhook_subscriptions::id.eq_any(&succeeded))
                    .filter(
                        webhook_subscriptions::last_success_at
                            .is_null()
                            .or(webhook_subscriptions::last_success_at
                                .lt(now - time::Duration::seconds(1)))
                            .or(webhook_subscriptions::failing_since.is_not_null()),
                    ),
            )
            .set((
                webhook_subscriptions::last_success_at.eq(now),
                webhook_subscriptions::failing_since.eq(None::<OffsetDateTime>),
                webhook_subscriptions::failures_in_streak.eq(0),
            )),
        )
        .execute(conn)
        .await?;
    }
    if !failed.is_empty() {
        // A failure starts a streak or lengthens it; a subscription that also succeeded in
        // this group had its streak cleared just above and starts a new one only if it
        // failed after (the order within a group is not known: a success wins).
        let (subs, counts): (Vec<Uuid>, Vec<i32>) = failed
            .into_iter()
            .filter(|(id, _)| !succeeded.contains(id))
            .unzip();
        // The notice is due when none was ever sent or the last is a day old, whatever the
        // streak: a flapping endpoint, whose every success ends a streak, is announced at most
        // daily too. The row lock serialises racing recorders, so one of them sends it.
        return Ok(Cached(
            diesel::sql_query(
                "WITH v AS (SELECT * FROM unnest($1::uuid[], $2::int[]) AS v(id, n)), \
                 changed AS ( \
                   UPDATE webhook_subscriptions AS s \
                   SET failing_since = COALESCE(s.failing_since, $3), \
                       failures_in_streak = s.failures_in_streak + v.n, \
                       failing_notified_at = CASE \
                         WHEN s.failing_notified_at IS NULL \
                           OR s.failing_notified_at <= $3 - make_interval(secs => $4) THEN $3 \
                         ELSE s.failing_notified_at END \
                   FROM v WHERE s.id = v.id \
                   RETURNING s.id, s.org_id, s.project_id, s.description, s.failing_since, \
                     s.failures_in_streak, s.failing_notified_at) \
                 SELECT id AS subscription_id, org_id, project_id, description, failing_since, \
                   failures_in_streak, failing_notified_at AS recorded_at \
                 FROM changed WHERE failing_notified_at = $3",
            )
            .bind::<Array<SqlUuid>, _>(&subs)
            .bind::<Array<diesel::sql_types::Integer>, _>(&counts)
            .bind::<Timestamptz, _>(now)
            .bind::<Double, _>(FAILING_NOTICE_EVERY.as_seconds_f64()),
        )
        .load(conn)
        .await?);
    }
    Ok(Vec::new())
}

/// Sends an operational notice (`webhook.failing`, `webhook.disabled`) about subscription
/// `about`: the message, and a delivery due now to each other active subscription of the
/// organization that names its type. Nothing is stored when none does. Returns how many
/// subscriptions get it.
pub async fn notify(
    conn: &mut AsyncPgConnection,
    message: &NewMessage,
    about: Uuid,
) -> Result<usize, StoreError> {
    use diesel::PgArrayExpressionMethods;
    let recipients: Vec<Subscription> = webhook_subscriptions::table
        .filter(webhook_subscriptions::org_id.eq(message.org_id))
        .filter(webhook_subscriptions::status.eq(status::ACTIVE))
        .filter(webhook_subscriptions::id.ne(about))
        .filter(webhook_subscriptions::event_types.contains(vec![message.event_type.as_str()]))
        .select(Subscription::as_select())
        .load(conn)
        .await?;
    if recipients.is_empty() {
        return Ok(0);
    }
    let recipients: Vec<&Subscription> = recipients.iter().collect();
    insert_message(conn, message).await?;
    insert_deliveries(conn, message.id, &recipients, OffsetDateTime::now_utc()).await?;
    Ok(recipients.len())
}

/// Gives a claimed delivery back, due `after` from now (its subscription had no free slot).
pub async fn release(
    conn: &mut AsyncPgConnection,
    delivery_id: Uuid,
    after: std::time::Duration,
) -> Result<(), StoreError> {
    let due = OffsetDateTime::now_utc() + time::Duration::try_from(after).unwrap_or_default();
    diesel::update(webhook_deliveries::table.find(delivery_id))
        .set(webhook_deliveries::next_attempt_at.eq(due))
        .execute(conn)
        .await?;
    Ok(())
}

#[derive(QueryableByName)]
struct Reserved {
    #[diesel(sql_type = Double)]
    wait: f64,
}

/// How much more than `1/rate_limit` apart a rate-limited subscription's send slots are, so
/// that requests sent a little late still arrive no more than `rate_limit` a second.
pub const RATE_MARGIN: f64 = 0.05;

/// Reserves the next send slot of a rate-limited subscription: slots are `(1 + RATE_MARGIN) /
/// rate_limit` seconds apart, for every process alike. Returns how long to wait for it, or `None` when
/// the subscription's slots are taken further than `horizon` ahead (come back later) or it
/// has no limit any more.
pub async fn reserve_slot(
    conn: &mut AsyncPgConnection,
    subscription_id: Uuid,
    horizon: std::time::Duration,
) -> Result<Option<std::time::Duration>, StoreError> {
    let reserved: Option<Reserved> = diesel::sql_query(
        "WITH s AS (SELECT id, rate_limit, greatest(coalesce(rate_next_slot, now()), now()) AS slot \
           FROM webhook_subscriptions WHERE id = $1 AND rate_limit IS NOT NULL FOR UPDATE) \
         UPDATE webhook_subscriptions AS w \
         SET rate_next_slot = s.slot + make_interval(secs => $3 / s.rate_limit) \
         FROM s WHERE w.id = s.id AND s.slot < now() + make_interval(secs => $2) \
         RETURNING extract(epoch FROM s.slot - now())::float8 AS wait",
    )
    .bind::<SqlUuid, _>(subscription_id)
    .bind::<Double, _>(horizon.as_secs_f64())
    .bind::<Double, _>(1.0 + RATE_MARGIN)
    .get_result(conn)
    .await
    .optional()?;
    Ok(reserved.map(|r| std::time::Duration::from_secs_f64(r.wait.max(0.0))))
}

/// Disables a subscription at `at` with a reason, if it is not disabled already.
pub async fn disable(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    reason: &str,
    at: OffsetDateTime,
) -> Result<bool, StoreError> {
    let n = diesel::update(
        webhook_subscriptions::table
            .find(id)
            .filter(webhook_subscriptions::status.ne(status::DISABLED)),
    )
    .set((
        webhook_subscriptions::status.eq(status::DISABLED),
        webhook_subscriptions::disabled_reason.eq(reason),
        webhook_subscriptions::disabled_at.eq(at),
        webhook_subscriptions::updated_at.eq(at),
    ))
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// A page of a subscription's attempts (of one message, when given), newest first. Attempt ids
/// grow with time and are unique: the id alone is the page's key.
pub async fn attempts_of_subscription(
    conn: &mut AsyncPgConnection,
    subscription_id: Uuid,
    message_id: Option<Uuid>,
    page: &PageRequest<i64>,
) -> Result<Page<Attempt>, StoreError> {
    let mut query = webhook_attempts::table
        .filter(webhook_attempts::subscription_id.eq(subscription_id))
        .into_boxed();
    if let Some(message) = message_id {
        query = query.filter(webhook_attempts::message_id.eq(message));
    }
    if let Some(after) = page.after {
        query = query.filter(webhook_attempts::id.lt(after));
    }
    let rows = query
        .order(webhook_attempts::id.desc())
        .limit(page.fetch())
        .select(Attempt::as_select())
        .load(conn)
        .await?;
    Ok(page.page(rows))
}

/// What asking to send one message again came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resent {
    /// Its delivery to the subscription is due now.
    Queued,
    /// No such message in the subscription's project, nor sent to it before.
    NotFound,
    /// The message's body was erased at the end of the payload retention period: there is
    /// nothing to send.
    PayloadErased,
}

/// Makes one message due again to a subscription (resend), creating the delivery if the
/// message never had one there.
pub async fn resend(
    conn: &mut AsyncPgConnection,
    subscription: &Subscription,
    message_id: Uuid,
) -> Result<Resent, StoreError> {
    let erased: Option<bool> = message_erased(conn, subscription, message_id).await?;
    match erased {
        None => return Ok(Resent::NotFound),
        Some(true) => return Ok(Resent::PayloadErased),
        Some(false) => {}
    }
    let now = OffsetDateTime::now_utc();
    insert_deliveries(conn, message_id, &[subscription], now).await?;
    diesel::update(webhook_deliveries::table.find(delivery_id(message_id, subscription.id)))
        .set((
            webhook_deliveries::status.eq(delivery::PENDING),
            webhook_deliveries::next_attempt_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(Resent::Queued)
}

/// Whether a message the subscription may be sent has lost its body; `None` when there is no
/// such message. It may be sent a message of its own project, and any message it was sent
/// before (an operational notice about another project's subscription).
async fn message_erased(
    conn: &mut AsyncPgConnection,
    subscription: &Subscription,
    message_id: Uuid,
) -> Result<Option<bool>, StoreError> {
    let delivered_before = diesel::dsl::exists(
        webhook_deliveries::table.find(delivery_id(message_id, subscription.id)),
    );
    Ok(webhook_messages::table
        .filter(webhook_messages::id.eq(message_id))
        .filter(
            webhook_messages::project_id
                .eq(subscription.project_id)
                .or(delivered_before),
        )
        .select(webhook_messages::body_encrypted.is_null())
        .first(conn)
        .await
        .optional()?)
}

/// What a recover came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, QueryableByName)]
pub struct Recovered {
    /// Deliveries made due again.
    #[diesel(sql_type = BigInt)]
    pub queued: i64,
    /// Failed or skipped deliveries left as they are because their message's body was erased
    /// at the end of the payload retention period.
    #[diesel(sql_type = BigInt)]
    pub skipped_payload_erased: i64,
}

/// Makes every failed or skipped delivery of a subscription created since `since` due again
/// (recover), except those whose message's body was erased, which are counted instead.
pub async fn recover(
    conn: &mut AsyncPgConnection,
    subscription_id: Uuid,
    since: OffsetDateTime,
) -> Result<Recovered, StoreError> {
    // Due a millisecond apart in the order they were emitted, so they are claimed (and, one
    // at a time per subscription's share, sent) oldest first.
    Ok(diesel::sql_query(
        "WITH candidates AS ( \
           SELECT d.id, d.created_at, m.body_encrypted IS NULL AS erased \
           FROM webhook_deliveries d JOIN webhook_messages m ON m.id = d.message_id \
           WHERE d.subscription_id = $1 AND d.status IN ('failed', 'skipped') \
             AND d.created_at >= $2), \
         ranked AS ( \
           SELECT id, row_number() OVER (ORDER BY created_at, id) AS rank \
           FROM candidates WHERE NOT erased), \
         queued AS ( \
           UPDATE webhook_deliveries AS d SET status = 'pending', \
             next_attempt_at = now() + r.rank * interval '1 millisecond' \
           FROM ranked r WHERE d.id = r.id RETURNING d.id) \
         SELECT (SELECT count(*) FROM queued) AS queued, \
                (SELECT count(*) FROM candidates WHERE erased) AS skipped_payload_erased",
    )
    .bind::<SqlUuid, _>(subscription_id)
    .bind::<diesel::sql_types::Timestamptz, _>(since)
    .get_result(conn)
    .await?)
}

/// Fails a pending delivery that can never be sent, logging why as an attempt that reached no
/// endpoint. Its subscription's failure streak is left alone: the endpoint did nothing wrong.
pub async fn give_up(
    conn: &mut AsyncPgConnection,
    delivery_id: Uuid,
    reason: &str,
) -> Result<(), StoreError> {
    diesel::sql_query(
        "WITH failed AS ( \
           UPDATE webhook_deliveries SET status = 'failed', attempts = attempts + 1, \
             first_attempt_at = COALESCE(first_attempt_at, now()), last_attempt_at = now() \
           WHERE id = $1 AND status = 'pending' \
           RETURNING id, message_id, subscription_id) \
         INSERT INTO webhook_attempts (delivery_id, message_id, subscription_id, duration_ms, error) \
         SELECT id, message_id, subscription_id, 0, $2 FROM failed",
    )
    .bind::<SqlUuid, _>(delivery_id)
    .bind::<diesel::sql_types::Text, _>(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// The age in seconds of the oldest delivery waiting to go out to an active subscription (0
/// when none waits): a disabled subscription's deliveries wait on purpose, and would hold the
/// alert on this age up for as long as it stays disabled.
pub async fn oldest_pending_age(conn: &mut AsyncPgConnection) -> Result<f64, StoreError> {
    #[derive(QueryableByName)]
    struct Age {
        #[diesel(sql_type = Double)]
        age: f64,
    }
    let row: Age = diesel::sql_query(
        "SELECT coalesce(extract(epoch FROM now() - min(d.created_at)), 0)::float8 AS age \
         FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id \
         WHERE d.status = 'pending' AND s.status = 'active'",
    )
    .get_result(conn)
    .await?;
    Ok(row.age)
}

/// A delivery as listed: with its message's type.
#[derive(Debug, Clone, Queryable)]
pub struct DeliveryRow {
    pub delivery: Delivery,
    pub event_type: String,
    /// When the message's body was erased at the end of the payload retention period.
    pub payload_erased_at: Option<OffsetDateTime>,
}

impl crate::paging::Keyed for DeliveryRow {
    fn keyset(&self) -> crate::paging::Keyset {
        crate::paging::Keyset {
            created_at: self.delivery.created_at,
            id: self.delivery.id,
        }
    }
}

/// A page of a subscription's deliveries, newest first, optionally of one status. A batch's
/// deliveries share one `created_at`: the id breaks the tie, so none is skipped at a page's
/// edge.
pub async fn deliveries_of_subscription(
    conn: &mut AsyncPgConnection,
    subscription_id: Uuid,
    status_filter: Option<&str>,
    page: &PageRequest<Keyset>,
) -> Result<Page<DeliveryRow>, StoreError> {
    let mut query = webhook_deliveries::table
        .inner_join(webhook_messages::table)
        .filter(webhook_deliveries::subscription_id.eq(subscription_id))
        .into_boxed();
    if let Some(s) = status_filter {
        query = query.filter(webhook_deliveries::status.eq(s));
    }
    if let Some(after) = page.after {
        query = query.filter(older_than(
            webhook_deliveries::created_at,
            webhook_deliveries::id,
            after,
        ));
    }
    let rows = query
        .order((
            webhook_deliveries::created_at.desc(),
            webhook_deliveries::id.desc(),
        ))
        .limit(page.fetch())
        .select((
            Delivery::as_select(),
            webhook_messages::event_type,
            webhook_messages::payload_erased_at,
        ))
        .load(conn)
        .await?;
    Ok(page.page(rows))
}
