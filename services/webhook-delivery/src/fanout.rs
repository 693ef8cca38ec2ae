//! The consumer: one message per event, one delivery per subscription that wants it.

use crate::engine::Engine;
use beckon_domain::envelope::Envelope;
use beckon_store::webhooks::{self, NewMessage};
use beckon_webhooks::payload::{Announcement, WebhookBody};
use beckon_worker::{Emit, HandleError, Handler, Item};
use diesel_async::AsyncPgConnection;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
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
    fn message<T: Announcement>(&self, env: &Envelope<T>) -> Result<NewMessage, HandleError> {
        let body = WebhookBody::from_envelope(env, self.engine.keys()).map_err(|err| {
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

impl<T: Announcement> Handler<T> for Fanout {
    /// One lookup of subscribers per project and event type, one insert of every message and
    /// one of every delivery.
    async fn handle(
        &self,
        items: &[Item<'_, T>],
        conn: &mut AsyncPgConnection,
    ) -> Result<Vec<Vec<Emit>>, HandleError> {
        let mut wanted: HashMap<(Uuid, &str), Vec<webhooks::Subscriber>> = HashMap::new();
        let mut messages = Vec::new();
        let mut deliveries = Vec::new();
        for item in items {
            let key = (item.env.project_id, item.env.data.webhook_type());
            let subscribers = match wanted.entry(key) {
                Entry::Occupied(found) => found.into_mut(),
                Entry::Vacant(slot) => {
                    slot.insert(webhooks::subscribers(conn, key.0, key.1).await?)
                }
            };
            if !subscribers.is_empty() {
                messages.push(self.message(item.env)?);
                deliveries.push((item.env.id, key));
            }
        }
        let deliveries: Vec<_> = deliveries
            .iter()
            .map(|(id, key)| (*id, wanted[key].as_slice()))
            .collect();
        // Sent together; the messages go first, as the deliveries refer to them.
        let conn = &*conn;
        futures_util::future::try_join(
            webhooks::insert_messages(conn, &messages),
            webhooks::insert_deliveries_of(conn, &deliveries, self.lease()),
        )
        .await?;
        Ok(vec![Vec::new(); items.len()])
    }

    async fn after_commit(&self, items: &[Item<'_, T>]) {
        let messages: Vec<_> = items.iter().map(|item| (item.env.id, item.span)).collect();
        self.engine.clone().start_first_attempts(&messages).await;
    }
}
