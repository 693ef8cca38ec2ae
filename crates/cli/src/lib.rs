//! `beckon`: the operator CLI. The first way in — it migrates the database and creates the
//! organization and token everything else is done with — and the operator's tools after that:
//! tokens, scheduled triggers, webhook recovery, queues and dead letters, key rotation.
//!
//! # Layout
//! - [`cli`]: the command line, as clap types.
//! - [`output`]: `--output table|json`, the [`output::Report`] every command returns, and
//!   errors with stable codes.
//! - [`commands`]: one module per sub-resource (`org`, `token`, `triggers`, `webhooks`,
//!   `queues`, `dlq`, `keys`, `migrate`, `demo`, `completions`); each command is a function
//!   tests can call.
//! - [`broker`]: the broker connection, queue depths, and the pass that takes dead letters
//!   without spending their delivery attempts.
//! - [`dead_letter`]: what a dead letter says about itself (reason, time, envelope type), and
//!   how it is shown with its secrets redacted.
//! - [`pace`]: the `--rate` of a replay.

pub mod broker;
pub mod cli;
pub mod commands;
pub mod dead_letter;
pub mod output;
pub mod pace;
