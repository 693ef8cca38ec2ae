//! `beckon`: the operator CLI. The first way in: it migrates the database and creates the
//! organization and token everything else is done with.

use anyhow::Context as _;
use beckon_domain::LifecycleEvent;
use beckon_domain::scope::Scope;
use beckon_domain::survey::{
    DEFAULT_LIFETIME_SECONDS, DEFAULT_REMINDER_LEAD_SECONDS, Question, QuestionKind, SurveyStatus,
    SurveyTrigger,
};
use beckon_store::paging::PageRequest;
use beckon_store::surveys::{self, NewSurvey};
use beckon_store::{Store, tenancy};
use clap::{Parser, Subcommand};
use uuid::Uuid;

mod keys;
mod queues;

#[derive(Parser)]
#[command(name = "beckon", version, about = "Operate a Beckon deployment")]
struct Cli {
    /// PostgreSQL URL of the Beckon database.
    #[arg(
        long,
        env = "BECKON_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/beckon",
        global = true
    )]
    database_url: String,
    /// RabbitMQ URL.
    #[arg(
        long,
        env = "BECKON_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        global = true
    )]
    amqp_url: String,
    /// Prefix of the deployment's exchanges and queues.
    #[arg(
        long,
        env = "BECKON_QUEUE_PREFIX",
        default_value = "beckon",
        global = true
    )]
    queue_prefix: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending database migrations.
    Migrate,
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
    /// Create a demo organization, token, project and Live survey, and print them as JSON.
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
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Seal every stored value that is not under the newest key (the first of
    /// BECKON_SECRET_KEYS) again under it, in batches. Safe while the services run, and to run
    /// again; fails while anything is left. Reads the keys as the services do.
    Reseal {
        /// Report what would be resealed; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Rows per transaction.
        #[arg(long, default_value_t = 500)]
        batch_size: i64,
        /// Reseal even though no stored value is under the newest key yet (nothing shows
        /// the services seal with it).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum TriggerCommand {
    /// List triggers waiting for their time, soonest first.
    Scheduled {
        /// Only this project's.
        #[arg(long)]
        project: Option<Uuid>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Cancel a scheduled trigger so it never fires.
    Cancel { id: Uuid },
}

#[derive(Subcommand)]
enum WebhookCommand {
    /// Send again every failed or skipped delivery of a subscription created since a time
    /// (except those whose message body was erased past the payload retention period).
    Recover {
        #[arg(long)]
        subscription: Uuid,
        /// ISO 8601, e.g. 2026-11-23T00:00:00Z.
        #[arg(long)]
        since: String,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Show dead-lettered messages (envelope, reason, headers) without removing them. Magic
    /// links and tokens in a body are shown as `<redacted>`.
    Peek {
        queue: String,
        #[arg(long, default_value_t = 10)]
        count: u32,
        /// Show bodies as they are, secrets included.
        #[arg(long)]
        reveal: bool,
    },
    /// Move dead-lettered messages back to their work queue. They keep their envelope id, so
    /// what was already handled is skipped by the consumers.
    Replay {
        queue: String,
        /// At most this many.
        #[arg(long)]
        count: Option<u32>,
        /// Only envelopes of this type (e.g. `event.received`).
        #[arg(long = "type")]
        kind: Option<String>,
    },
    /// Delete every dead-lettered message of the queue.
    Purge {
        queue: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Create an organization and its first access token (printed once).
    Create {
        /// The organization's name.
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
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
        expires_at: Option<time::OffsetDateTime>,
    },
    /// List an organization's tokens (never their secrets), newest first, as JSON.
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

fn parse_expiry(raw: &str) -> Result<time::OffsetDateTime, String> {
    let at = beckon_domain::timestamp::parse_utc(raw).map_err(|e| e.to_string())?;
    if at <= time::OffsetDateTime::now_utc() {
        return Err(format!("{raw} is in the past"));
    }
    Ok(at)
}

/// Asks on the terminal; only `y` or `yes` agrees.
fn confirm(question: &str) -> anyhow::Result<bool> {
    use std::io::Write as _;
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn print(value: serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(&value).unwrap_or_default()
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Migrate = cli.command {
        let applied = beckon_store::migrate(&cli.database_url)
            .await
            .context("Failed to apply the migrations")?;
        eprintln!("{} migrations applied", applied.len());
        return Ok(());
    }
    if let Command::Queues | Command::Dlq { .. } = &cli.command {
        return broker_command(cli).await;
    }
    // An operator's command may run long (a big recover); the services' statement timeout is
    // theirs. Lock waits stay bounded, so a command never queues behind a stuck transaction.
    let store = Store::with_limits(
        &cli.database_url,
        2,
        Some(beckon_store::Limits {
            statement_timeout: std::time::Duration::ZERO,
            ..beckon_store::Limits::default()
        }),
    )
    .context("Failed to configure the database pool")?;
    let mut conn = store
        .conn()
        .await
        .context("Failed to connect to the database")?;
    match cli.command {
        Command::Migrate => unreachable!("handled above"),
        Command::Org {
            command: OrgCommand::Create { name },
        } => {
            let org = tenancy::create_organization(&mut conn, &name)
                .await
                .context("Failed to create the organization")?;
            let (token, plaintext) =
                tenancy::create_token(&mut conn, org.id, "initial", &[Scope::Admin], None, None)
                    .await
                    .context("Failed to create the token")?;
            print(serde_json::json!({
                "org_id": org.id,
                "token_id": token.id,
                "token": plaintext.expose(),
            }));
            eprintln!("The token is shown only this once; store it now.");
        }
        Command::Token {
            command:
                TokenCommand::Create {
                    org,
                    name,
                    scopes,
                    expires_at,
                },
        } => {
            tenancy::get_organization(&mut conn, org)
                .await?
                .with_context(|| format!("No organization {org}"))?;
            let (token, plaintext) =
                tenancy::create_token(&mut conn, org, &name, &scopes, expires_at, None)
                    .await
                    .context("Failed to create the token")?;
            print(serde_json::json!({
                "token_id": token.id,
                "token": plaintext.expose(),
                "scopes": token.scopes,
                "expires_at": token.expires_at.map(rfc3339),
            }));
            eprintln!("The token is shown only this once; store it now.");
        }
        Command::Token {
            command: TokenCommand::List { org },
        } => {
            let mut tokens = Vec::new();
            let mut page = PageRequest::first(100);
            loop {
                let listed = tenancy::list_tokens(&mut conn, org, &page)
                    .await
                    .context("Failed to list the tokens")?;
                page.after = listed.next_keyset();
                tokens.extend(listed.items);
                if page.after.is_none() {
                    break;
                }
            }
            let tokens: Vec<_> = tokens
                .into_iter()
                .map(|t| {
                    serde_json::json!({
                        "id": t.id,
                        "name": t.name,
                        "scopes": t.scopes,
                        "created_at": rfc3339(t.created_at),
                        "expires_at": t.expires_at.map(rfc3339),
                        "revoked_at": t.revoked_at.map(rfc3339),
                    })
                })
                .collect();
            print(serde_json::Value::Array(tokens));
        }
        Command::Token {
            command: TokenCommand::Revoke { org, id },
        } => {
            let revoked = tenancy::revoke_token(&mut conn, org, id)
                .await
                .context("Failed to revoke the token")?;
            anyhow::ensure!(revoked, "No live token {id} in organization {org}");
            eprintln!("token {id} revoked");
        }
        Command::Demo => demo(&mut conn).await?,
        Command::Triggers {
            command: TriggerCommand::Scheduled { project, limit },
        } => {
            let rows = beckon_store::triggers::scheduled(&mut conn, project, limit).await?;
            println!(
                "{:<38} {:<38} {:<28} {:<24} user_ref",
                "trigger", "project", "fires at", "event"
            );
            for t in rows {
                let at = t
                    .scheduled_for
                    .and_then(|d| {
                        d.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    })
                    .unwrap_or_default();
                println!(
                    "{:<38} {:<38} {:<28} {:<24} {}",
                    t.id, t.project_id, at, t.event, t.user_ref
                );
            }
        }
        Command::Triggers {
            command: TriggerCommand::Cancel { id },
        } => {
            let cancelled = beckon_store::triggers::cancel_scheduled(&mut conn, id).await?;
            anyhow::ensure!(
                cancelled,
                "Trigger {id} is not scheduled (it fired, was cancelled, or does not exist)"
            );
            eprintln!("trigger {id} cancelled");
        }
        Command::Webhooks {
            command:
                WebhookCommand::Recover {
                    subscription,
                    since,
                },
        } => {
            let since = beckon_domain::timestamp::parse_utc(&since)
                .with_context(|| format!("{since} is not a usable ISO 8601 time"))?;
            let recovered = beckon_store::webhooks::recover(&mut conn, subscription, since).await?;
            eprintln!("{} failed deliveries queued again", recovered.queued);
            if recovered.skipped_payload_erased > 0 {
                eprintln!(
                    "{} not queued: their message bodies were erased at the end of the payload \
                     retention period",
                    recovered.skipped_payload_erased
                );
            }
        }
        Command::Keys {
            command:
                KeysCommand::Reseal {
                    dry_run,
                    batch_size,
                    force,
                },
        } => keys::reseal(&mut conn, batch_size, dry_run, force).await?,
        Command::Queues | Command::Dlq { .. } => unreachable!("handled above"),
    }
    Ok(())
}

async fn demo(conn: &mut beckon_store::Conn) -> anyhow::Result<()> {
    let org = tenancy::create_organization(conn, "Demo")
        .await
        .context("Failed to create the demo organization")?;
    let (_, token) =
        tenancy::create_token(conn, org.id, "demo", &[Scope::Admin], None, None).await?;
    let project = tenancy::create_project(conn, org.id, "Demo app").await?;
    let survey = surveys::create_survey(
        conn,
        NewSurvey {
            org_id: org.id,
            project_id: project.id,
            name: "Why are you leaving?".into(),
            status: SurveyStatus::Live,
            questions: vec![
                Question {
                    id: "nps".into(),
                    title: "How likely are you to recommend us to a friend?".into(),
                    required: true,
                    kind: QuestionKind::Nps,
                },
                Question {
                    id: "reason".into(),
                    title: "What is the main reason you cancelled?".into(),
                    required: false,
                    kind: QuestionKind::Mcq {
                        options: vec![
                            "Price".into(),
                            "Missing features".into(),
                            "Switched tools".into(),
                        ],
                    },
                },
                Question {
                    id: "more".into(),
                    title: "Anything else we should know?".into(),
                    required: false,
                    kind: QuestionKind::Text,
                },
            ],
            trigger: SurveyTrigger {
                events: vec![
                    LifecycleEvent::SubscriptionCancelled,
                    LifecycleEvent::from_name("payment_failed")?,
                ],
            },
            cooldown_seconds: 0,
            sample_rate: 1.0,
            invitation_lifetime_seconds: DEFAULT_LIFETIME_SECONDS,
            trial_reminder_lead_seconds: DEFAULT_REMINDER_LEAD_SECONDS,
        },
    )
    .await
    .context("Failed to create the demo survey")?;
    print(serde_json::json!({
        "org_id": org.id,
        "token": token.expose(),
        "project_id": project.id,
        "survey_id": survey.id,
    }));
    Ok(())
}

async fn broker_command(cli: Cli) -> anyhow::Result<()> {
    let broker = queues::Broker::connect(&cli.amqp_url, &cli.queue_prefix).await?;
    match cli.command {
        Command::Queues => broker.list().await?,
        Command::Dlq { command } => match command {
            DlqCommand::Peek {
                queue,
                count,
                reveal,
            } => {
                let reveal = if reveal {
                    queues::Reveal::AsIs
                } else {
                    queues::Reveal::Redacted
                };
                broker.peek(&queue, count, reveal).await?
            }
            DlqCommand::Replay { queue, count, kind } => {
                let n = broker.replay(&queue, count, kind.as_deref()).await?;
                eprintln!("replayed {n} message(s)");
            }
            DlqCommand::Purge { queue, yes } => {
                let n = broker.dead_letters(&queue).await?;
                if !yes
                    && !confirm(&format!(
                        "Delete {n} dead-lettered message(s) of {queue} for good?"
                    ))?
                {
                    eprintln!("nothing deleted");
                    return Ok(());
                }
                let n = broker.purge(&queue).await?;
                eprintln!("deleted {n} message(s)");
            }
        },
        _ => unreachable!("only broker commands reach here"),
    }
    Ok(())
}
