//! The catalogue of event types a subscription may choose.

use actix_web::HttpResponse;
use beckon_webhooks::payload;
use serde::Serialize;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventTypeView {
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u32,
    pub description: String,
    /// The JSON Schema (draft 2020-12) of the payload.
    #[schema(value_type = HashMap<String, serde_json::Value>)]
    pub schema: serde_json::Value,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventTypeList {
    pub data: Vec<EventTypeView>,
}

/// The event types a subscription may choose, with the JSON Schema of each webhook body.
#[utoipa::path(get, path = "/api/v1/webhook-event-types", operation_id = "listWebhookEventTypes", tag = "webhooks",
    responses((status = 200, body = EventTypeList)))]
pub async fn event_types() -> HttpResponse {
    HttpResponse::Ok().json(EventTypeList {
        data: payload::catalogue()
            .into_iter()
            .map(|t| EventTypeView {
                kind: t.kind.to_owned(),
                version: t.version,
                description: t.description.to_owned(),
                schema: t.schema,
            })
            .collect(),
    })
}
