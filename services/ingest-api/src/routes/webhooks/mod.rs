//! Webhook subscriptions of a project, one module per sub-resource: the subscriptions
//! themselves (create with URL verification, list, read, change, delete, verify again, rotate
//! the secret), the messages sent to one (ping, resend, recover), its deliveries, its attempt
//! log; and the catalogue of event types.

pub mod attempts;
pub mod deliveries;
pub mod event_types;
pub mod messages;
pub mod subscriptions;

use crate::auth::OrgAuth;
use crate::body;
use crate::error::ApiError;
use crate::routes::owned_project;
use beckon_store::Conn;
use beckon_store::webhooks::{self, Subscription};

pub async fn subscription(
    conn: &mut Conn,
    auth: OrgAuth,
    project_raw: &str,
    id_raw: &str,
) -> Result<Subscription, ApiError> {
    let project = owned_project(conn, auth.org_id, project_raw).await?;
    let id = body::path_id(id_raw, "webhook_not_found", "webhook subscription")?;
    webhooks::get_subscription(conn, project.id, id)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "webhook_not_found",
                format!(
                    "No webhook subscription {} in this project.",
                    crate::body::shown(id_raw)
                ),
            )
        })
}
