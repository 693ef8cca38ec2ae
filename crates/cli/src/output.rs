//! What a command prints, and where.
//!
//! Every command ends in one typed report. With `--output table` (the default) it is written
//! for a person; with `--output json` it is one JSON document on stdout (an object, or an array
//! for a listing), with snake_case field names and RFC 3339 timestamps, and nothing else ever
//! goes to stdout. Notes for the person at the terminal ("shown only once", progress) go to
//! stderr in both modes. A failure exits non-zero; with `--output json` it is also a JSON
//! object on stderr, `{"error": {"code": "not_found", "message": "..."}}`, whose `code` is one
//! of [`ErrorCode`].

use serde::Serialize;
use std::io::{self, Write};
use std::process::ExitCode;

/// How reports are printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputMode {
    /// Aligned columns and short sentences, for a person.
    #[default]
    Table,
    /// One JSON document on stdout, for a script.
    Json,
}

/// A command's report: serializable for `--output json`, and written out for a person.
pub trait Report: Serialize {
    /// Writes the report for a person.
    fn table(&self, out: &mut dyn Write) -> io::Result<()>;

    /// A failure the report records (the command did part of its work), raised once the
    /// report is printed, so a script gets both.
    fn failure(&self) -> Option<Failure> {
        None
    }
}

/// Prints `report` on stdout in `mode`, then returns the failure it records, if any.
pub fn emit<R: Report>(mode: OutputMode, report: &R) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    let written = match mode {
        OutputMode::Json => serde_json::to_writer_pretty(&mut out, report)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(out)),
        OutputMode::Table => report.table(&mut out),
    }
    .and_then(|()| out.flush());
    match written {
        // The reader went away (`beckon queues | head -1`): what it wanted, it got.
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => {}
        other => other.map_err(|e| anyhow::Error::new(e).context("Failed to write the report"))?,
    }
    match report.failure() {
        Some(failure) => Err(failure.into()),
        None => Ok(()),
    }
}

/// A note for the person at the terminal: always on stderr, never part of the report.
pub fn note(text: impl std::fmt::Display) {
    eprintln!("{text}");
}

/// What kind of failure ended a command: stable names a script can branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The command line or a value on it is wrong (exit status 2).
    InvalidInput,
    /// What the command names does not exist (an organization, a queue, a live token).
    NotFound,
    /// The state of things does not allow it (a trigger that already fired; a reseal that
    /// nothing shows is safe).
    Conflict,
    /// The database or the broker could not be reached; trying again later may work.
    Unavailable,
    /// The command did part of its work and says what is left; run it again.
    Incomplete,
    /// Stopped by SIGINT or SIGTERM after settling what it held (exit status 130).
    Interrupted,
    /// Anything else: the message says what.
    Internal,
}

impl ErrorCode {
    fn exit_code(self) -> ExitCode {
        match self {
            Self::InvalidInput => ExitCode::from(2),
            Self::Interrupted => ExitCode::from(130),
            _ => ExitCode::FAILURE,
        }
    }
}

/// A failure with its [`ErrorCode`]. Raised as an `anyhow::Error`; context added on top keeps
/// the code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub code: ErrorCode,
    pub message: String,
}

impl Failure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> anyhow::Error {
        Self::new(ErrorCode::NotFound, message).into()
    }

    pub fn invalid_input(message: impl Into<String>) -> anyhow::Error {
        Self::new(ErrorCode::InvalidInput, message).into()
    }

    pub fn conflict(message: impl Into<String>) -> anyhow::Error {
        Self::new(ErrorCode::Conflict, message).into()
    }
}

/// Marks `err` as the database or broker being out of reach.
pub fn unavailable(err: impl Into<anyhow::Error>, what: &str) -> anyhow::Error {
    err.into()
        .context(Failure::new(ErrorCode::Unavailable, what))
}

/// The code of a failure: the one it was raised with, else `unavailable` for a database or
/// broker that could not be reached, else `internal`.
pub fn code_of(err: &anyhow::Error) -> ErrorCode {
    // Finds a `Failure` added as context at any depth, or raised first.
    if let Some(failure) = err.downcast_ref::<Failure>() {
        return failure.code;
    }
    for cause in err.chain() {
        if let Some(failure) = cause.downcast_ref::<Failure>() {
            return failure.code;
        }
        if let Some(store) = cause.downcast_ref::<beckon_store::StoreError>() {
            use beckon_store::StoreError as E;
            use beckon_store::connect::ConnectError;
            match store {
                // Settings that can never work: retrying will not help.
                E::Config(_) | E::Open(ConnectError::Tls(_)) => return ErrorCode::InvalidInput,
                E::Pool(_) | E::Open(_) => return ErrorCode::Unavailable,
                _ => {}
            }
        }
        if let Some(bus) = cause.downcast_ref::<beckon_bus::BusError>() {
            use beckon_bus::BusError as E;
            match bus {
                E::Tls(_) => return ErrorCode::InvalidInput,
                E::Timeout(..) | E::Closed(_) => return ErrorCode::Unavailable,
                _ => {}
            }
        }
        if cause
            .downcast_ref::<lapin::Error>()
            .is_some_and(lapin::Error::is_io_error)
        {
            return ErrorCode::Unavailable;
        }
    }
    ErrorCode::Internal
}

#[derive(Serialize)]
struct ErrorDocument<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: ErrorCode,
    message: &'a str,
}

/// The JSON document a failure is printed as with `--output json`.
pub fn error_json(code: ErrorCode, message: &str) -> String {
    serde_json::to_string(&ErrorDocument {
        error: ErrorBody { code, message },
    })
    .unwrap_or_else(|_| String::from(r#"{"error":{"code":"internal","message":""}}"#))
}

/// Prints a failed command's error on stderr in `mode` and gives its exit status.
pub fn fail(mode: OutputMode, err: &anyhow::Error) -> ExitCode {
    let code = code_of(err);
    match mode {
        OutputMode::Json => eprintln!("{}", error_json(code, &format!("{err:#}"))),
        // The cause chain, without the backtrace `{err:?}` adds when RUST_BACKTRACE is set.
        OutputMode::Table => {
            eprintln!("Error: {err}");
            let mut causes = err.chain().skip(1).peekable();
            if causes.peek().is_some() {
                eprintln!("\nCaused by:");
                for cause in causes {
                    eprintln!("    {cause}");
                }
            }
        }
    }
    code.exit_code()
}

/// Handles a command line clap refused: help and version are printed as asked; a mistake is
/// printed by clap, or with `--output json` as a JSON error, and exits with status 2.
pub fn usage(err: clap::Error, mode: OutputMode) -> ExitCode {
    use clap::error::ErrorKind;
    let asked = matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if asked || mode == OutputMode::Table {
        let _ = err.print();
        return if err.use_stderr() {
            ErrorCode::InvalidInput.exit_code()
        } else {
            ExitCode::SUCCESS
        };
    }
    let message = err.render().to_string();
    eprintln!(
        "{}",
        error_json(ErrorCode::InvalidInput, message.trim_end())
    );
    ErrorCode::InvalidInput.exit_code()
}

/// The output mode a command line asks for, read without clap, for when clap refused it:
/// `--output json`, `--output=json`, or `BECKON_OUTPUT=json`.
pub fn requested_mode(args: &[String]) -> OutputMode {
    let mut asked = std::env::var("BECKON_OUTPUT").ok();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--output" {
            asked = args.next().cloned();
        } else if let Some(value) = arg.strip_prefix("--output=") {
            asked = Some(value.to_owned());
        }
    }
    match asked.as_deref() {
        Some("json") => OutputMode::Json,
        _ => OutputMode::Table,
    }
}

/// An RFC 3339 timestamp, or nothing, for a table cell.
pub fn cell(at: Option<time::OffsetDateTime>) -> String {
    at.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .unwrap_or_else(|| "-".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_keeps_its_code_under_added_context() {
        let err = Failure::not_found("No organization x").context("Failed to create a token");
        assert_eq!(code_of(&err), ErrorCode::NotFound);
        assert_eq!(code_of(&anyhow::anyhow!("boom")), ErrorCode::Internal);
        let err = unavailable(
            anyhow::anyhow!("refused"),
            "Failed to connect to the broker",
        );
        assert_eq!(code_of(&err), ErrorCode::Unavailable);
    }

    #[test]
    fn an_error_is_one_json_object_with_a_code_and_a_message() {
        let doc: serde_json::Value =
            serde_json::from_str(&error_json(ErrorCode::InvalidInput, "no \"such\" flag")).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({"error": {"code": "invalid_input", "message": "no \"such\" flag"}})
        );
    }

    #[test]
    fn the_mode_a_refused_command_line_asked_for_is_read_by_hand() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            requested_mode(&args(&["beckon", "--output", "json", "nope"])),
            OutputMode::Json
        );
        assert_eq!(
            requested_mode(&args(&["beckon", "nope", "--output=json"])),
            OutputMode::Json
        );
        assert_eq!(
            requested_mode(&args(&["beckon", "--output", "table"])),
            OutputMode::Table
        );
    }
}
