//! Seismic's event super-structure: `{id, version, occurredAt, tenantId, tenantName, type,
//! data}` in camelCase, around the data of every Beckon event type. The tenant is the
//! organization; `data` is the data of Beckon's own body for the same event, unchanged (its
//! fields in snake_case, as Beckon names them), so one event reads the same in both formats.

use crate::payload::{Named, WebhookBody};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use uuid::Uuid;

/// A webhook in Seismic's super-structure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeismicEvent<D> {
    /// The event's id (a GUID): also the `webhook-id` header, the same on every retry.
    pub id: Uuid,
    /// The version of the event's payload (Beckon's `version`).
    pub version: u32,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub occurred_at: OffsetDateTime,
    /// The organization's id.
    pub tenant_id: Uuid,
    /// The organization's name when the event occurred.
    pub tenant_name: String,
    /// The event type (`invitation.created`, `response.ended`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// The event's details: the `data` of Beckon's own body.
    pub data: D,
}

/// What the super-structure reads of the data: whose event it is.
#[derive(Deserialize)]
struct Owner {
    organization: Named,
}

/// The Seismic body of a stored Beckon body.
pub fn render(stored: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    let body: WebhookBody<Box<RawValue>> = serde_json::from_slice(stored)?;
    let owner: Owner = serde_json::from_str(body.data.get())?;
    serde_json::to_vec(&SeismicEvent {
        id: body.id,
        version: body.version,
        occurred_at: body.occurred_at,
        tenant_id: owner.organization.id,
        tenant_name: owner.organization.name,
        kind: body.kind,
        data: body.data,
    })
}

/// The JSON Schema of the Seismic body of an event whose Beckon data is `T`, with `type` and
/// `version` pinned.
pub fn schema_of<T: JsonSchema>(kind: &str, version: u32) -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(SeismicEvent<T>))
        .expect("a schema always serialises");
    schema["title"] = format!("{kind} v{version} webhook (Seismic)").into();
    schema["properties"]["type"] = serde_json::json!({ "const": kind });
    schema["properties"]["version"] = serde_json::json!({ "const": version });
    schema
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{Ping, Tenant, Tenanted};

    fn stored() -> (WebhookBody<Tenanted<Ping>>, Vec<u8>) {
        let body = WebhookBody {
            id: Uuid::now_v7(),
            kind: crate::payload::PING.to_owned(),
            version: 1,
            occurred_at: time::macros::datetime!(2026-12-02 10:00:00.25 UTC),
            project_id: Uuid::now_v7(),
            data: Tenanted::new(
                Tenant {
                    organization: Named {
                        id: Uuid::now_v7(),
                        name: "Acme".to_owned(),
                    },
                    project: Named {
                        id: Uuid::now_v7(),
                        name: "Web".to_owned(),
                    },
                },
                Ping {
                    message: "ping".to_owned(),
                    subscription_id: Uuid::now_v7(),
                },
            ),
        };
        let bytes = serde_json::to_vec(&body).unwrap();
        (body, bytes)
    }

    #[test]
    fn the_super_structure_wraps_the_same_data_in_camel_case() {
        let (body, bytes) = stored();
        let rendered = render(&bytes).unwrap();
        let event: SeismicEvent<Tenanted<Ping>> = serde_json::from_slice(&rendered).unwrap();
        assert_eq!(event.id, body.id);
        assert_eq!(event.version, 1);
        assert_eq!(event.occurred_at, body.occurred_at);
        assert_eq!(event.tenant_id, body.data.organization.id);
        assert_eq!(event.tenant_name, "Acme");
        assert_eq!(event.kind, "webhook.ping");
        assert_eq!(event.data, body.data);
        let raw: serde_json::Value = serde_json::from_slice(&rendered).unwrap();
        let mut keys: Vec<&str> = raw
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "data",
                "id",
                "occurredAt",
                "tenantId",
                "tenantName",
                "type",
                "version"
            ]
        );
        assert_eq!(raw["occurredAt"], "2026-12-02T10:00:00.25Z");
    }

    #[test]
    fn a_body_without_its_organization_is_not_rendered() {
        let (_, bytes) = stored();
        let mut raw: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        raw["data"].as_object_mut().unwrap().remove("organization");
        assert!(render(&serde_json::to_vec(&raw).unwrap()).is_err());
        assert!(render(b"not json").is_err());
    }
}
