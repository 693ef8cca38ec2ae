//! The consumer: one message per event, one delivery per subscription that wants it.

use crate::engine::Engine;
use beckon_domain::envelope::Envelope;
use beckon_store::webhooks::{self, Message};
use beckon_webhooks::payload::{Announcement, WebhookBody};
use beckon_worker::{Emit, HandleError, Handler};
use diesel_async::AsyncPgConnection;
use std::sync::Arc;
use time::OffsetDateTime;

/// Handles every payload customers receive as webhooks.
#[derive(Clone)]
pub struct Fanout {
    pub engine: Arc<Engine>,
}

impl<T: Announcement> Handler<T> for Fanout {
    async fn handle(
        &self,
        env: &Envelope<T>,
        conn: &mut AsyncPgConnection,
    ) -> Result<Vec<Emit>, HandleError> {
        let kind = env.data.webhook_type();
        let subscribers = webhooks::subscribers(conn, env.project_id, kind).await?;
        if subscribers.is_empty() {
            // Nothing is kept for an event no active subscription wants.
            return Ok(Vec::new());
        }
        let body = serde_json::to_vec(&WebhookBody::from_envelope(env)).unwrap_or_default();
        webhooks::insert_message(
            conn,
            &Message {
                id: env.id,
                org_id: env.org_id,
                project_id: env.project_id,
                event_type: kind.to_owned(),
                version: env.version as i32,
                body_encrypted: self.engine.seal(&body),
                occurred_at: env.occurred_at,
                user_ref: Some(env.data.user_ref().to_owned()),
            },
        )
        .await?;
        // Leased to the attempts `after_commit` starts; should this process die first, they
        // fall due when the lease ends and the poller sends them.
        let lease = OffsetDateTime::now_utc() + self.engine.lease();
        webhooks::insert_deliveries(conn, env.id, &subscribers, lease).await?;
        Ok(Vec::new())
    }

    async fn after_commit(&self, env: &Envelope<T>) {
        self.engine.clone().start_first_attempts(env.id).await;
    }
}
