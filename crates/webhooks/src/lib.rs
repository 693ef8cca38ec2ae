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
