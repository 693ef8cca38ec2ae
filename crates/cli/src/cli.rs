//! The command line: every command, argument and setting, as clap reads them.

use crate::output::OutputMode;
use beckon_domain::scope::Scope;
use clap::{Args, Parser, Subcommand};
use std::num::NonZeroU32;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(name = "beckon", version, about = "Operate a Beckon deployment")]
pub struct Cli {
    /// PostgreSQL URL of the Beckon database.
    #[arg(
        long,
        env = "BECKON_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/beckon",
        global = true
    )]
    pub database_url: String,
    /// `session`, or `transaction` when the database URL goes through a pooler in transaction
    /// mode: nothing is set on a session then, and `migrate` refuses (it needs a session of its
    /// own; give it a URL straight to PostgreSQL).
    #[arg(
        long,
        env = "BECKON_DB_POOLING",
        default_value = "session",
        value_parser = parse_pooling,
        global = true
    )]
    pub db_pooling: beckon_runtime::DbPooling,
    /// RabbitMQ URL.
    #[arg(
        long,
        env = "BECKON_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        global = true
    )]
    pub amqp_url: String,
    /// Prefix of the deployment's exchanges and queues.
    #[arg(
        long,
        env = "BECKON_QUEUE_PREFIX",
        default_value = "beckon",
        global = true
    )]
    pub queue_prefix: String,
    /// How to print the result: `table` for a person, or `json`: one JSON document on stdout
    /// (notes and progress go to stderr; a failure is a JSON `{"error": {"code", "message"}}`
    /// on stderr).
    #[arg(
        long,
        env = "BECKON_OUTPUT",
        value_enum,
        default_value_t = OutputMode::Table,
        global = true
    )]
    pub output: OutputMode,
    #[command(subcommand)]
    pub command: Command,
}

fn parse_pooling(raw: &str) -> Result<beckon_runtime::DbPooling, &'static str> {
    raw.parse()
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending database migrations and print the versions applied (`migrate status`
    /// only reports).
    #[command(args_conflicts_with_subcommands = true)]
    Migrate {
        #[command(subcommand)]
        command: Option<MigrateCommand>,
    },
    /// Organizations.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Organization access tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Create a demo organization, token, project and Live survey.
    Demo,
    /// Scheduled triggers: list and cancel.
    Triggers {
        #[command(subcommand)]
        command: TriggerCommand,
    },
    /// Webhook deliveries.
    Webhooks {
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// List the work and dead-letter queues with their depths.
    Queues,
    /// Dead-lettered messages of a work queue (matcher, invitation, webhooks, webhook-responses).
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// The keys stored secrets, webhook bodies and magic-link tokens are sealed under.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Print a shell completion script for bash, zsh, fish, elvish or PowerShell, e.g.
    /// `beckon completions bash > /etc/bash_completion.d/beckon`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Report which migrations are applied, pending, or unknown to this binary (applied by a
    /// newer version). Applies nothing, and exits with status 0 even when some are pending:
    /// read `pending` to decide.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Seal every stored value that is not under the newest key (the first of
    /// BECKON_SECRET_KEYS) again under it, in batches. Safe while the services run, and to run
    /// again; fails while anything is left. Reads the keys as the services do.
    Reseal {
        /// Report what would be resealed; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Rows per transaction.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(i64).range(1..))]
        batch_size: i64,
        /// Reseal even though no stored value is under the newest key yet (nothing shows
        /// the services seal with it).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TriggerCommand {
    /// List triggers waiting for their time, soonest first.
    Scheduled {
        /// Only this project's.
        #[arg(long)]
        project: Option<Uuid>,
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..))]
        limit: i64,
    },
    /// Cancel a scheduled trigger so it never fires.
    Cancel { id: Uuid },
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Send again every failed or skipped delivery of a subscription created since a time
    /// (except those whose message body was erased past the payload retention period).
    Recover {
        #[arg(long)]
        subscription: Uuid,
        /// RFC 3339, e.g. 2026-11-23T00:00:00Z.
        #[arg(long, value_parser = parse_time)]
        since: OffsetDateTime,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Show dead-lettered messages (envelope, reason, when, headers) without removing them.
    /// Magic links and tokens in a body are shown as `<redacted>`.
    Peek {
        /// The work queue: matcher, invitation, webhooks or webhook-responses.
        queue: String,
        #[arg(long, default_value_t = 10)]
        count: u32,
        /// Show bodies as they are, secrets included.
        #[arg(long)]
        reveal: bool,
    },
    /// Move dead-lettered messages back to their work queue. They keep their envelope id, so
    /// what was already handled is skipped by the consumers. Goes once round the dead-letter
    /// queue as deep as it was at the start; the messages it does not move stay, in their
    /// order. SIGINT or SIGTERM stops it after settling what it holds.
    Replay(ReplayArgs),
    /// Delete every dead-lettered message of the queue.
    Purge {
        /// The work queue: matcher, invitation, webhooks or webhook-responses.
        queue: String,
        /// Count what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The work queue: matcher, invitation, webhooks or webhook-responses.
    pub queue: String,
    /// Report what would be moved; move nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// At most this many.
    #[arg(long)]
    pub count: Option<u32>,
    /// Only envelopes of this type (e.g. `event.received`).
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// Only those dead-lettered for this reason: Beckon's own (`malformed_json`,
    /// `unknown_version`, `schema_violation`, ...) or the broker's (`delivery_limit`,
    /// `rejected`, `expired`, `maxlen`), as `dlq peek` shows it.
    #[arg(long)]
    pub reason: Option<String>,
    /// Only those dead-lettered at or after this time (RFC 3339; recorded to the second).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<OffsetDateTime>,
    /// Only those dead-lettered before this time (RFC 3339; recorded to the second).
    #[arg(long, value_parser = parse_time)]
    pub until: Option<OffsetDateTime>,
    /// Move at most this many messages per second.
    #[arg(long)]
    pub rate: Option<NonZeroU32>,
}

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organization and its first access token (printed once).
    Create {
        /// The organization's name.
        #[arg(long)]
        name: String,
    },
    /// List every organization, newest first.
    List,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create another access token for an organization (printed once).
    Create {
        #[arg(long)]
        org: Uuid,
        /// A label to tell tokens apart.
        #[arg(long, default_value = "cli")]
        name: String,
        /// What it may do, comma-separated: send (events, dispatch, user upserts), read
        /// (every GET), admin (everything).
        #[arg(long, default_value = "admin", value_delimiter = ',', value_parser = parse_scope)]
        scopes: Vec<Scope>,
        /// When it stops working (RFC 3339); never, if left out.
        #[arg(long, value_parser = parse_expiry)]
        expires_at: Option<OffsetDateTime>,
    },
    /// List an organization's tokens (never their secrets), newest first.
    List {
        #[arg(long)]
        org: Uuid,
    },
    /// Revoke an access token by its id.
    Revoke {
        #[arg(long)]
        org: Uuid,
        #[arg(long)]
        id: Uuid,
    },
}

fn parse_scope(raw: &str) -> Result<Scope, String> {
    Scope::parse(raw.trim()).ok_or_else(|| format!("`{raw}` is not one of send, read, admin"))
}

fn parse_time(raw: &str) -> Result<OffsetDateTime, String> {
    beckon_domain::timestamp::parse_utc(raw).map_err(|e| format!("{raw}: {e}"))
}

fn parse_expiry(raw: &str) -> Result<OffsetDateTime, String> {
    let at = parse_time(raw)?;
    if at <= OffsetDateTime::now_utc() {
        return Err(format!("{raw} is in the past"));
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn migrate_alone_applies_and_migrate_status_reports() {
        let cli = Cli::try_parse_from(["beckon", "migrate"]).unwrap();
        assert!(matches!(cli.command, Command::Migrate { command: None }));
        let cli = Cli::try_parse_from(["beckon", "migrate", "status"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Migrate {
                command: Some(MigrateCommand::Status)
            }
        ));
    }

    #[test]
    fn the_output_mode_is_global() {
        let cli = Cli::try_parse_from(["beckon", "queues", "--output", "json"]).unwrap();
        assert_eq!(cli.output, OutputMode::Json);
    }
}
