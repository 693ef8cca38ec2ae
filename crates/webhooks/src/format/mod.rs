//! Payload formats: the body a subscription receives, rendered from the message Beckon stores
//! (its own body, [`crate::payload::WebhookBody`]) when a delivery is attempted, in the format
//! and version the delivery pinned. Each format also brings the defaults of the product it
//! imitates: its retry policy, its timeout, and what counts as success.
//!
//! - [`PayloadFormat::Beckon`]: the stored body as it is.
//! - [`PayloadFormat::OneFlow`]: [`oneflow`]'s alert, for submitted responses only.
//! - [`PayloadFormat::Seismic`]: [`seismic`]'s super-structure around the same data.
//! - [`PayloadFormat::ScreebV2`]: [`screeb`]'s webhook v2.0.0, for the response stages.

pub mod oneflow;
pub mod screeb;
pub mod seismic;

use crate::payload::schema_of;
use crate::policy::RetryPolicy;
use beckon_domain::envelope::{Completion, ResponseStage};
pub use beckon_domain::webhook_format::PayloadFormat;
use schemars::JsonSchema;
use std::borrow::Cow;

/// Why a stored body cannot be rendered in a format. It never will be: the delivery fails.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the stored message is not a webhook body: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error(transparent)]
    OneFlow(#[from] oneflow::AlertError),
    #[error(transparent)]
    Screeb(#[from] screeb::EventError),
    #[error("{format} has no version {version}")]
    UnknownVersion { format: PayloadFormat, version: i32 },
}

/// What a format's subscription gets unless it asks otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    pub retry_policy: RetryPolicy,
    /// Milliseconds the endpoint has to answer.
    pub timeout_ms: i32,
}

/// The defaults of `format`'s product: Beckon's are Svix's; 1Flow answers within 10 s and is
/// retried every hour for 3 days; Seismic answers within 3 s and is retried exponentially
/// from 5 s for 24 hours; Screeb is retried once after 60 s, and on `429` many times with
/// exponential delay (its document names no timeout: Beckon's 10 s).
pub fn defaults(format: PayloadFormat) -> Defaults {
    match format {
        PayloadFormat::Beckon => Defaults {
            retry_policy: RetryPolicy::Exponential,
            timeout_ms: 10_000,
        },
        PayloadFormat::OneFlow => Defaults {
            retry_policy: RetryPolicy::Hourly,
            timeout_ms: 10_000,
        },
        PayloadFormat::Seismic => Defaults {
            retry_policy: RetryPolicy::Backoff24h,
            timeout_ms: 3_000,
        },
        PayloadFormat::ScreebV2 => Defaults {
            retry_policy: RetryPolicy::OnceAfter60s,
            timeout_ms: 10_000,
        },
    }
}

/// Whether a subscription in `format` must echo Beckon's verification challenge before it is
/// sent anything. Beckon's and Seismic's receivers do; 1Flow's and Screeb's products have no
/// such handshake, so their receivers would not: those subscriptions are active at once.
pub fn verifies(format: PayloadFormat) -> bool {
    match format {
        PayloadFormat::Beckon | PayloadFormat::Seismic => true,
        PayloadFormat::OneFlow | PayloadFormat::ScreebV2 => false,
    }
}

/// Whether an endpoint of `format` answering `status` received the webhook: any 2xx, but
/// for 1Flow only `200`, as its document asks.
pub fn succeeded(format: PayloadFormat, status: u16) -> bool {
    match format {
        PayloadFormat::Beckon | PayloadFormat::Seismic | PayloadFormat::ScreebV2 => {
            (200..300).contains(&status)
        }
        PayloadFormat::OneFlow => status == 200,
    }
}

/// The stages of a response, each a `response.*` event type.
const RESPONSE_STAGES: [ResponseStage; 3] = [
    ResponseStage::Displayed,
    ResponseStage::Answered,
    ResponseStage::Ended,
];

/// Whether a subscription in `format` is sent an event of type `kind` (about a response that
/// ended with `completion`, when it did): 1Flow alerts only on submitted responses, Screeb
/// only on response events.
pub fn delivers(format: PayloadFormat, kind: &str, completion: Option<Completion>) -> bool {
    match format {
        PayloadFormat::Beckon | PayloadFormat::Seismic => true,
        PayloadFormat::OneFlow => {
            kind == ResponseStage::Ended.webhook_type()
                && completion == Some(Completion::FullyCompleted)
        }
        PayloadFormat::ScreebV2 => RESPONSE_STAGES.iter().any(|s| s.webhook_type() == kind),
    }
}

/// The body `format` at `version` sends for the stored Beckon body `stored`.
pub fn render(
    format: PayloadFormat,
    version: i32,
    stored: &[u8],
) -> Result<Cow<'_, [u8]>, RenderError> {
    if !u32::try_from(version).is_ok_and(|v| format.versions().contains(&v)) {
        return Err(RenderError::UnknownVersion { format, version });
    }
    match format {
        PayloadFormat::Beckon => Ok(Cow::Borrowed(stored)),
        PayloadFormat::OneFlow => Ok(Cow::Owned(oneflow::render(stored)?)),
        PayloadFormat::Seismic => Ok(Cow::Owned(seismic::render(stored)?)),
        PayloadFormat::ScreebV2 => Ok(Cow::Owned(screeb::render(stored)?)),
    }
}

/// The JSON Schemas of an event type whose webhook data is `T`, in each format that delivers
/// it.
pub fn schemas<T: JsonSchema>(kind: &str, version: u32) -> Vec<(PayloadFormat, serde_json::Value)> {
    let mut schemas = vec![
        (PayloadFormat::Beckon, schema_of::<T>(kind, version)),
        (
            PayloadFormat::Seismic,
            seismic::schema_of::<T>(kind, version),
        ),
    ];
    if kind == ResponseStage::Ended.webhook_type() {
        schemas.push((PayloadFormat::OneFlow, oneflow::schema()));
    }
    if RESPONSE_STAGES.iter().any(|s| s.webhook_type() == kind) {
        schemas.push((PayloadFormat::ScreebV2, screeb::schema(kind)));
    }
    schemas
}
