//! The versioned JSON envelope every bus message travels in.
//!
//! `id` is a UUIDv7 and the consumer's idempotency key; `correlation_id` is the trigger the
//! message belongs to. The routing key names the payload's type and version
//! (`event.received.v1`). An additive change to a payload is a new `Option` field; a breaking
//! one is a new type with a new `VERSION`, consumed beside the old one.

mod messages;

pub use messages::*;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// What an envelope's `type` and `version` name: a [`Payload`], or a way of writing one
/// that reads as it.
pub trait Kind {
    /// The envelope `type`, dot-separated (`event.received`).
    const TYPE: &'static str;
    /// The envelope `version`, from 1.
    const VERSION: u32;

    fn routing_key() -> String {
        routing_key(Self::TYPE, Self::VERSION)
    }
}

/// A payload type carried in an [`Envelope`].
pub trait Payload:
    Kind + Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static
{
}

/// The routing key of a payload type and version.
pub fn routing_key(kind: &str, version: u32) -> String {
    format!("{kind}.v{version}")
}

/// A bus message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Envelope<T> {
    /// UUIDv7; the consumer's idempotency key. Kept on redelivery and on replay.
    pub id: Uuid,
    /// The payload type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The payload version, from 1.
    pub version: u32,
    /// When the fact the envelope reports happened.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub occurred_at: OffsetDateTime,
    pub org_id: Uuid,
    pub project_id: Uuid,
    /// The trigger this message belongs to.
    pub correlation_id: Uuid,
    pub data: T,
}

impl<T: Kind> Envelope<T> {
    /// A new envelope with the given id (fresh or derived from a parent).
    pub fn new(id: Uuid, org_id: Uuid, project_id: Uuid, correlation_id: Uuid, data: T) -> Self {
        Self {
            id,
            kind: T::TYPE.to_owned(),
            version: T::VERSION,
            occurred_at: OffsetDateTime::now_utc(),
            org_id,
            project_id,
            correlation_id,
            data,
        }
    }

    /// A child of `parent` in the same trigger: its id is derived from the parent's and
    /// `purpose`, so handling a redelivered parent emits the same child.
    pub fn child_of<P>(parent: &Envelope<P>, purpose: &str, data: T) -> Self {
        let mut child = Self::new(
            crate::ids::child_envelope_id(parent.id, purpose),
            parent.org_id,
            parent.project_id,
            parent.correlation_id,
            data,
        );
        child.occurred_at = parent.occurred_at;
        child
    }

    pub fn routing_key(&self) -> String {
        T::routing_key()
    }

    pub fn to_json(&self) -> Vec<u8>
    where
        T: Serialize,
    {
        // Serialising these types cannot fail: every map key is a string.
        serde_json::to_vec(self).expect("an envelope always serialises")
    }
}

/// Why bytes taken off the bus are not an envelope this consumer understands. Each is
/// permanent: redelivering the same bytes cannot succeed, so they are dead-lettered.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON at all.
    #[error("the message is not valid JSON: {0}")]
    MalformedJson(#[source] serde_json::Error),
    /// JSON, but not an envelope, or its `data` does not fit the payload's schema.
    #[error("the message does not match the envelope schema: {0}")]
    SchemaViolation(#[source] serde_json::Error),
    /// An envelope of a type this consumer does not handle.
    #[error("unexpected envelope type `{found}`, expected `{expected}`")]
    UnknownType {
        found: String,
        expected: &'static str,
    },
    /// An envelope of a known type in a version this consumer does not handle.
    #[error("unsupported version {found} of `{kind}`, this consumer handles version {expected}")]
    UnknownVersion {
        kind: String,
        found: u32,
        expected: u32,
    },
}

impl DecodeError {
    /// The stable reason written in the dead-letter headers.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed_json",
            Self::SchemaViolation(_) => "schema_violation",
            Self::UnknownType { .. } => "unknown_type",
            Self::UnknownVersion { .. } => "unknown_version",
        }
    }
}

/// Decodes `bytes` as an envelope of payload `T`, telling bad JSON, a foreign type, an
/// unknown version and a schema violation apart.
///
/// The envelope is read around its `data`, which is kept as text until the type and version
/// say what it is, then read straight into `T`: no passage through `serde_json::Value`. A
/// message that reading refuses is read again through a `Value`, which decides: so every
/// message is accepted or refused, and for the same reason, as when that was the only
/// reading (a repeated key, say, is read with its last value). The one difference: what a
/// field the payload does not know holds is skipped, not read, so a number out of range or a
/// lone surrogate there no longer refuses the message.
pub fn decode<T: Payload>(bytes: &[u8]) -> Result<Envelope<T>, DecodeError> {
    // Rare: never for what our own writers send.
    around_data(bytes).or_else(|_| through_value(bytes))
}

/// `bytes` read around its `data`.
fn around_data<T: Payload>(bytes: &[u8]) -> Result<Envelope<T>, DecodeError> {
    let raw: Envelope<&serde_json::value::RawValue> =
        serde_json::from_slice(bytes).map_err(DecodeError::SchemaViolation)?;
    raw.is_of::<T>()?;
    let data = serde_json::from_str(raw.data.get()).map_err(DecodeError::SchemaViolation)?;
    Ok(raw.with_data(data))
}

/// `bytes` read into a `serde_json::Value` first.
fn through_value<T: Payload>(bytes: &[u8]) -> Result<Envelope<T>, DecodeError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(DecodeError::MalformedJson)?;
    let mut raw: Envelope<serde_json::Value> =
        serde_json::from_value(value).map_err(DecodeError::SchemaViolation)?;
    raw.is_of::<T>()?;
    let data = serde_json::from_value(std::mem::take(&mut raw.data))
        .map_err(DecodeError::SchemaViolation)?;
    Ok(raw.with_data(data))
}

impl<D> Envelope<D> {
    /// Whether this envelope's type and version are `T`'s.
    fn is_of<T: Payload>(&self) -> Result<(), DecodeError> {
        if self.kind != T::TYPE {
            return Err(DecodeError::UnknownType {
                found: self.kind.clone(),
                expected: T::TYPE,
            });
        }
        if self.version != T::VERSION {
            return Err(DecodeError::UnknownVersion {
                kind: self.kind.clone(),
                found: self.version,
                expected: T::VERSION,
            });
        }
        Ok(())
    }

    fn with_data<T>(self, data: T) -> Envelope<T> {
        Envelope {
            id: self.id,
            kind: self.kind,
            version: self.version,
            occurred_at: self.occurred_at,
            org_id: self.org_id,
            project_id: self.project_id,
            correlation_id: self.correlation_id,
            data,
        }
    }
}

/// The JSON Schema of `Envelope<T>`, with `type` and `version` pinned to `T`'s.
pub fn schema_of<T: Payload>() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(Envelope<T>))
        .expect("a schema always serialises");
    schema["title"] = format!("{} v{}", T::TYPE, T::VERSION).into();
    schema["properties"]["type"] = serde_json::json!({ "const": T::TYPE });
    schema["properties"]["version"] = serde_json::json!({ "const": T::VERSION });
    schema
}

/// Every envelope the services emit, as (file name, schema), for `proto-schemas/envelopes/`.
pub fn all_schemas() -> Vec<(String, serde_json::Value)> {
    fn entry<T: Payload>() -> (String, serde_json::Value) {
        (format!("{}.json", T::routing_key()), schema_of::<T>())
    }
    vec![
        entry::<EventReceived>(),
        entry::<EventMatched>(),
        entry::<DispatchCompleted>(),
        entry::<InvitationCreated>(),
        entry::<ResponseProgressed>(),
    ]
}

#[cfg(test)]
mod tests;
