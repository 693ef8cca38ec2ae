//! One module per sub-resource. Each command is a function that takes what it works on (a
//! database connection, a [`Broker`]) and its arguments, and returns a typed report that
//! [`crate::output::emit`] prints; [`run`] wires the command line to them.

use crate::broker::Broker;
use crate::cli::{
    Cli, Command, DlqCommand, KeysCommand, MigrateCommand, OrgCommand, TokenCommand,
    TriggerCommand, WebhookCommand,
};
use crate::output::{OutputMode, Report, emit, note, unavailable};
use anyhow::Context as _;

pub mod completions;
pub mod demo;
pub mod dlq;
pub mod keys;
pub mod migrate;
pub mod org;
pub mod queues;
pub mod token;
pub mod triggers;
pub mod webhooks;

const SHOWN_ONCE: &str = "The token is shown only this once; store it now.";

/// Runs the command `cli` names and prints its report.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let mode = cli.output;
    match cli.command {
        Command::Migrate { command } => match command {
            None if cli.db_pooling == beckon_runtime::DbPooling::Transaction => {
                Err(crate::output::Failure::invalid_input(
                    "migrations take turns on a session-level lock, which a pooler in \
                     transaction mode would leave held on one of its server connections: run \
                     `beckon migrate` with a BECKON_DATABASE_URL straight to PostgreSQL, \
                     without BECKON_DB_POOLING=transaction",
                ))
            }
            None => emit(mode, &migrate::apply(&cli.database_url).await?),
            Some(MigrateCommand::Status) => emit(mode, &migrate::status(&cli.database_url).await?),
        },
        Command::Completions { shell } => completions::write(shell, &mut std::io::stdout().lock()),
        Command::Queues => {
            let broker = Broker::connect(&cli.amqp_url, &cli.queue_prefix).await?;
            let listed = queues::list(&broker).await;
            settle_then_emit(broker, mode, listed).await
        }
        Command::Dlq { command } => {
            let broker = Broker::connect(&cli.amqp_url, &cli.queue_prefix).await?;
            dlq_command(broker, command, mode).await
        }
        command => {
            let store = connect_store(&cli.database_url, cli.db_pooling)?;
            // A TLS setting that can never work is told apart from a database that is away.
            if let Err(err @ beckon_store::connect::ConnectError::Tls(_)) =
                store.check_connect().await
            {
                return Err(anyhow::Error::new(beckon_store::StoreError::Open(err))
                    .context("Failed to connect to the database"));
            }
            let mut conn = store
                .conn()
                .await
                .map_err(|e| unavailable(e, "Failed to connect to the database"))?;
            database_command(&mut conn, command, mode).await
        }
    }
}

/// An operator's command may run long (a big recover); the services' statement timeout is
/// theirs. Lock waits stay bounded, so a command never queues behind a stuck transaction.
/// Behind a pooler in transaction mode nothing is set: a `SET` would stay on a server
/// connection the services share.
fn connect_store(
    url: &str,
    pooling: beckon_runtime::DbPooling,
) -> anyhow::Result<beckon_store::Store> {
    let limits = beckon_store::Limits {
        statement_timeout: std::time::Duration::ZERO,
        ..beckon_store::Limits::default()
    };
    beckon_store::Store::with_limits(
        url,
        2,
        (pooling == beckon_runtime::DbPooling::Session).then_some(limits),
    )
    .context("Failed to configure the database pool")
}

async fn database_command(
    conn: &mut beckon_store::Conn,
    command: Command,
    mode: OutputMode,
) -> anyhow::Result<()> {
    match command {
        Command::Org { command } => match command {
            OrgCommand::Create { name } => {
                let created = org::create(conn, &name).await?;
                emit(mode, &created)?;
                note(SHOWN_ONCE);
                Ok(())
            }
            OrgCommand::List => emit(mode, &org::list(conn, org::PAGE_SIZE).await?),
        },
        Command::Token { command } => match command {
            TokenCommand::Create {
                org,
                name,
                scopes,
                expires_at,
            } => {
                let created = token::create(conn, org, &name, &scopes, expires_at).await?;
                emit(mode, &created)?;
                note(SHOWN_ONCE);
                Ok(())
            }
            TokenCommand::List { org } => emit(mode, &token::list(conn, org).await?),
            TokenCommand::Revoke { org, id } => emit(mode, &token::revoke(conn, org, id).await?),
        },
        Command::Demo => {
            let demo = demo::create(conn).await?;
            emit(mode, &demo)?;
            note(SHOWN_ONCE);
            Ok(())
        }
        Command::Triggers { command } => match command {
            TriggerCommand::Scheduled { project, limit } => {
                emit(mode, &triggers::scheduled(conn, project, limit).await?)
            }
            TriggerCommand::Cancel { id } => emit(mode, &triggers::cancel(conn, id).await?),
        },
        Command::Webhooks {
            command:
                WebhookCommand::Recover {
                    subscription,
                    since,
                },
        } => emit(mode, &webhooks::recover(conn, subscription, since).await?),
        Command::Keys {
            command:
                KeysCommand::Reseal {
                    dry_run,
                    batch_size,
                    force,
                },
        } => emit(mode, &keys::reseal(conn, batch_size, dry_run, force).await?),
        Command::Migrate { .. }
        | Command::Completions { .. }
        | Command::Queues
        | Command::Dlq { .. } => {
            unreachable!("run handles the commands that need no database connection")
        }
    }
}

async fn dlq_command(broker: Broker, command: DlqCommand, mode: OutputMode) -> anyhow::Result<()> {
    match command {
        DlqCommand::Peek {
            queue,
            count,
            reveal,
        } => {
            let reveal = if reveal {
                crate::dead_letter::Reveal::AsIs
            } else {
                crate::dead_letter::Reveal::Redacted
            };
            let stop = dlq::Stop::on_signals();
            let peeked = dlq::peek(&broker, &queue, count, reveal, &stop).await;
            settle_then_emit(broker, mode, peeked).await
        }
        DlqCommand::Replay(args) => {
            let stop = dlq::Stop::on_signals();
            let replayed = dlq::replay(&broker, &dlq::ReplayOptions::from(args), &stop).await;
            settle_then_emit(broker, mode, replayed).await
        }
        DlqCommand::Purge {
            queue,
            dry_run,
            yes,
        } => {
            let confirm = |question: &str| if yes { Ok(true) } else { confirm(question) };
            let purged = dlq::purge(&broker, &queue, dry_run, confirm).await;
            settle_then_emit(broker, mode, purged).await
        }
    }
}

/// Closes the broker connection, so every acknowledgement the command sent is processed
/// before it reports (and before the process ends), then prints the report.
async fn settle_then_emit<R: Report>(
    broker: Broker,
    mode: OutputMode,
    report: anyhow::Result<R>,
) -> anyhow::Result<()> {
    let closed = broker.close().await;
    emit(mode, &report?)?;
    closed
}

/// Asks on the terminal (the question on stderr); only `y` or `yes` agrees.
fn confirm(question: &str) -> anyhow::Result<bool> {
    use std::io::Write as _;
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .context("Failed to read the answer")?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}
