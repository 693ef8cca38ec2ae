//! The consumer: one message per event, one delivery per subscription that wants it, and
//! the first attempts started once they are committed.

use crate::engine::Engine;
use beckon_domain::envelope::Envelope;
use beckon_store::webhooks::{
    self, AttemptContext, Delivery, Message, NewMessage, Subscriber, Subscription,
};
use beckon_webhooks::format;
use beckon_webhooks::payload::{Announcement, Tenant, WebhookBody};
use beckon_worker::{HandleError, Handled, Handler, Item};
use diesel_async::AsyncPgConnection;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use time::OffsetDateTime;
use uuid::Uuid;

/// Handles every payload customers receive as webhooks.
#[derive(Clone)]
pub struct Fanout {
    pub engine: Arc<Engine>,
}

impl Fanout {
    /// The message customers receive for `env`. A sealed link that does not open under the
    /// deployment's keys never will: the envelope is dead-lettered, to be replayed once the
    /// key it was sealed with is configured again.
    fn message<T: Announcement>(
        &self,
        env: &Envelope<T>,
        tenant: Tenant,
    ) -> Result<NewMessage, HandleError> {
        let body = WebhookBody::from_envelope(env, self.engine.keys(), tenant).map_err(|err| {
            HandleError::Permanent {
                reason: "unsealable",
                detail: err.to_string(),
            }
        })?;
        let body = serde_json::to_vec(&body).unwrap_or_default();
        Ok(NewMessage {
            id: env.id,
            org_id: env.org_id,
            project_id: env.project_id,
            event_type: env.data.webhook_type().to_owned(),
            version: env.version as i32,
            body_encrypted: self.engine.seal(&body),
            occurred_at: env.occurred_at,
            user_ref: Some(env.data.user_ref().to_owned()),
        })
    }

    /// Leased to the attempts `after_commit` starts; should this process die first, they
    /// fall due when the lease ends and the poller sends them.
    fn lease(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + self.engine.lease()
    }
}

/// The subscriptions of one message: those that want its project's event type in a format
/// that delivers it, and the same as delivery targets.
struct Recipients<'a> {
    subscriptions: Vec<&'a Subscription>,
    targets: Vec<Subscriber>,
}

impl<T: Announcement> Handler<T> for Fanout {
    // Recorded, though a repeat mostly finds its message (the envelope's id) and deliveries
    // (ids derived from message and subscription) already there: erasing a user deletes
    // those rows, and an event no subscription wanted leaves none, so a copy coming after
    // either (a redelivery, a relayed duplicate, a replay) would be sent again, to an erased
    // user's receivers or to a subscription created since. The record outlives both.

    /// The first attempts to start once the batch is committed.
    type Then = Vec<AttemptContext>;

    /// One lookup of subscriptions per project and event type (sent together), then one insert
    /// of every message and one of every delivery (sent together); the first attempts of the
    /// deliveries created are handed on whole, so none is read back before it is sent.
    async fn handle(
        &self,
        items: &[Item<'_, T>],
        conn: &mut AsyncPgConnection,
    ) -> Result<Handled<Self::Then>, HandleError> {
        let conn = &*conn;
        let keys: Vec<(Uuid, &str)> = items
            .iter()
            .map(|item| (item.env.project_id, item.env.data.webhook_type()))
            .collect();
        let mut distinct = keys.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let mut projects: Vec<Uuid> = distinct.iter().map(|(project, _)| *project).collect();
        projects.dedup();
        // Sent together: who wants each event, and whose events they are.
        let (found, tenants) = futures_util::future::try_join(
            futures_util::future::try_join_all(
                distinct
                    .iter()
                    .map(|(project, event_type)| webhooks::wanting(conn, *project, event_type)),
            ),
            webhooks::tenants(conn, &projects),
        )
        .await?;
        let tenants: HashMap<Uuid, Tenant> = tenants
            .into_iter()
            .map(|tenant| (tenant.project.id, tenant))
            .collect();
        let wanted: HashMap<(Uuid, &str), Vec<Subscription>> =
            distinct.into_iter().zip(found).collect();
        let mut messages = Vec::new();
        for (item, key) in items.iter().zip(&keys) {
            // Of those that want the type, the ones whose format delivers this event.
            let subscriptions: Vec<&Subscription> = wanted
                .get(key)
                .into_iter()
                .flatten()
                .filter(|s| format::delivers(s.format, key.1, item.env.data.completion()))
                .collect();
            // Nothing is kept for an event no subscription wants. Nor for one whose project
            // was deleted since: its subscriptions went with it.
            if subscriptions.is_empty() {
                continue;
            }
            if let Some(tenant) = tenants.get(&key.0) {
                let targets = subscriptions.iter().map(|&s| Subscriber::from(s)).collect();
                let recipients = Recipients {
                    subscriptions,
                    targets,
                };
                messages.push((self.message(item.env, tenant.clone())?, recipients));
            }
        }
        let deliveries: Vec<_> = messages
            .iter()
            .map(|(message, to)| (message.id, to.targets.as_slice()))
            .collect();
        let lease = self.lease();
        let stored: Vec<NewMessage> = messages.iter().map(|(m, _)| m.clone()).collect();
        // Sent together; the messages go first, as the deliveries refer to them.
        let ((), created) = futures_util::future::try_join(
            webhooks::insert_messages(conn, &stored),
            webhooks::insert_deliveries_of(conn, &deliveries, lease),
        )
        .await?;
        let created: HashSet<Uuid> = created.into_iter().collect();
        let now = OffsetDateTime::now_utc();
        let mut first = Vec::new();
        for (message, to) in &messages {
            // An ordered subscription's deliveries go out through the poller, in order.
            for &sub in to.subscriptions.iter().filter(|s| !s.ordered) {
                let delivery = Delivery::inserted(message.id, sub, lease, now);
                // A disabled subscription's delivery is kept as skipped, never attempted.
                if sub.status == webhooks::status::ACTIVE && created.contains(&delivery.id) {
                    first.push((delivery, Message::stored(message, now), sub.clone()));
                }
            }
        }
        Ok(Handled {
            emits: vec![Vec::new(); items.len()],
            then: first,
        })
    }

    async fn after_commit(&self, items: &[Item<'_, T>], first: Self::Then) {
        self.engine.start_first_attempts(first, |message_id| {
            items
                .iter()
                .find(|item| item.env.id == message_id)
                .map(|item| item.span.clone())
        });
    }
}
