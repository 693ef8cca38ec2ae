//! The shapes a webhook subscription can receive its events in.

use serde::{Deserialize, Serialize};

/// A subscription's payload format: Beckon's own, or the webhook body of a product whose
/// receivers should work unchanged. Signing and headers are Standard Webhooks in every format.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum PayloadFormat {
    /// `{id, type, version, occurred_at, project_id, data}`, for every event type.
    #[default]
    #[serde(rename = "beckon")]
    Beckon,
    /// 1Flow's `submitted_survey` alert, for each submitted response (`response.ended`, not
    /// closed).
    #[serde(rename = "1flow")]
    OneFlow,
    /// Seismic's event super-structure `{id, version, occurredAt, tenantId, tenantName, type,
    /// data}` around every event type.
    #[serde(rename = "seismic")]
    Seismic,
    /// Screeb's webhook v2.0.0 `{event_id, event_type, version, time, time_ms, payload}`, for
    /// the three response stages (`response.displayed`, `response.answered`, `response.ended`).
    #[serde(rename = "screeb-v2")]
    ScreebV2,
}

impl PayloadFormat {
    pub const ALL: &[Self] = &[Self::Beckon, Self::OneFlow, Self::Seismic, Self::ScreebV2];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Beckon => "beckon",
            Self::OneFlow => "1flow",
            Self::Seismic => "seismic",
            Self::ScreebV2 => "screeb-v2",
        }
    }

    /// The inverse of [`PayloadFormat::as_str`].
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|f| f.as_str() == raw)
    }

    /// The versions of the format a subscription may pin, oldest first.
    pub const fn versions(self) -> &'static [u32] {
        &[1]
    }

    /// The newest version: what a subscription pins when it names none.
    pub const fn latest(self) -> u32 {
        let versions = self.versions();
        versions[versions.len() - 1]
    }
}

impl std::fmt::Display for PayloadFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored format name that names no format.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a payload format")]
pub struct UnknownFormat(pub String);

impl TryFrom<String> for PayloadFormat {
    type Error = UnknownFormat;
    fn try_from(raw: String) -> Result<Self, UnknownFormat> {
        Self::parse(&raw).ok_or(UnknownFormat(raw))
    }
}

impl From<PayloadFormat> for String {
    fn from(format: PayloadFormat) -> Self {
        format.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_format_is_spelled_the_same_stored_and_on_the_wire() {
        for &format in PayloadFormat::ALL {
            assert_eq!(PayloadFormat::parse(format.as_str()), Some(format));
            assert_eq!(
                serde_json::to_value(format).unwrap(),
                serde_json::Value::from(format.as_str())
            );
            assert!(format.versions().contains(&format.latest()));
        }
        assert_eq!(PayloadFormat::default(), PayloadFormat::Beckon);
        assert!(PayloadFormat::try_from("Seismic".to_owned()).is_err());
    }
}
