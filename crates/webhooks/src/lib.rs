#![doc = include_str!("../README.md")]
//!
//! # Layout
//! - [`payload`]: the webhook body and the event type catalogue.
//! - [`signing`]: `whsec_` secrets and Standard Webhooks signatures.
//! - [`sealed`]: encryption at rest under the deployment's key.
//! - [`policy`]: retry policies.
//! - [`guard`]: which addresses a webhook may reach.
//! - [`sender`]: the HTTP client.

pub mod guard;
pub mod payload;
pub mod policy;
pub mod sealed;
pub mod sender;
pub mod signing;

/// The configuration every service that touches webhooks shares, from the environment.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "BECKON_SECRET_KEY is required: the base64 of 32 random bytes (`openssl rand -base64 32`)"
    )]
    MissingKey,
    #[error("BECKON_SECRET_KEY is invalid")]
    BadKey(#[source] sealed::SealError),
    #[error("BECKON_WEBHOOK_ALLOWED_CIDRS={0:?} is not a comma-separated list of address ranges")]
    BadAllowList(String),
}

/// `BECKON_SECRET_KEY` (required) and `BECKON_WEBHOOK_ALLOWED_CIDRS` (default none).
pub fn settings_from_env() -> Result<(sealed::SealingKey, guard::AllowList), SettingsError> {
    let key = std::env::var("BECKON_SECRET_KEY").map_err(|_| SettingsError::MissingKey)?;
    let key = sealed::SealingKey::from_base64(&key).map_err(SettingsError::BadKey)?;
    let raw = std::env::var("BECKON_WEBHOOK_ALLOWED_CIDRS").unwrap_or_default();
    let allow = guard::AllowList::parse(&raw).ok_or(SettingsError::BadAllowList(raw))?;
    Ok((key, allow))
}
