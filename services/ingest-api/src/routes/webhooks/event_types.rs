//! The catalogue of event types a subscription may choose.

use crate::error::ErrorBody;
use actix_web::{HttpResponse, web};
use beckon_webhooks::format::PayloadFormat;
use beckon_webhooks::payload;
use serde::{Deserialize, Serialize};

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

/// Which format's schemas to show.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FormatQuery {
    /// The payload format (default `beckon`): only the event types it delivers, with the
    /// schema of its bodies.
    #[param(inline)]
    pub format: Option<PayloadFormat>,
}

/// The event types a subscription may choose, with the JSON Schema of each webhook body in
/// the payload format asked for.
#[utoipa::path(get, path = "/api/v1/webhook-event-types", operation_id = "listWebhookEventTypes", tag = "webhooks",
    params(FormatQuery),
    responses((status = 200, body = EventTypeList),
        (status = 400, description = "`format` names no payload format (`invalid_query`)", body = ErrorBody)))]
pub async fn event_types(query: web::Query<FormatQuery>) -> HttpResponse {
    let format = query.format.unwrap_or_default();
    HttpResponse::Ok().json(EventTypeList {
        data: payload::catalogue()
            .iter()
            .filter_map(|t| {
                Some(EventTypeView {
                    kind: t.kind.to_owned(),
                    version: t.version,
                    description: t.description.to_owned(),
                    schema: t.schema(format)?.clone(),
                })
            })
            .collect(),
    })
}
