#![doc = include_str!("../README.md")]
//!
//! # Layout
//! - [`event`]: the lifecycle event a backend fires (`trial_expired`, `{"custom": "…"}`).
//! - [`user_ref`]: the customer's identifier of one of its users.
//! - [`survey`]: survey status, questions, trigger, cooldown, sample rate, lifetime.
//! - [`answer`]: answers, validated against their question.
//! - [`cap`]: a project's cap on invitations per user across its surveys.
//! - [`condition`]: targeting conditions on the event and the user.
//! - [`envelope`]: the versioned JSON envelope every bus message travels in, and its payloads.
//! - [`ids`]: ids derived from their parent so a redelivered message derives the same ones.
//! - [`sampling`]: the sample roll, seeded so a redelivery rolls the same.
//! - [`scope`]: what an organization access token may do.
//! - [`secret`]: organization access tokens and magic-link tokens, and their hashes.
//! - [`reminder`]: when a `trial_ending_soon` reminder fires.
//! - [`outcome`]: what became of each matched survey, and the counts of a dispatch.
//! - [`status`]: subscription, delivery and response statuses.
//! - [`trigger`]: where a trigger (one fired event) is in its life.
//! - [`timestamp`]: timestamps from outside, in UTC and bounded, so none can overflow.
//! - [`tenant`]: the organization and project an event belongs to, by name.
//! - [`webhook_format`]: the payload formats a webhook subscription can receive.

pub mod answer;
pub mod cap;
pub mod condition;
pub mod envelope;
pub mod event;
pub mod ids;
pub mod outcome;
pub mod reminder;
pub mod sampling;
pub mod scope;
pub mod secret;
pub mod status;
pub mod survey;
pub mod targeting;
pub mod tenant;
pub mod timestamp;
pub mod trigger;
pub mod user_ref;
pub mod webhook_format;

pub use event::LifecycleEvent;
pub use user_ref::UserRef;
