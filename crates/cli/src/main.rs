//! `beckon`: parses the command line, runs the command, and prints its report or its error
//! (see [`beckon_cli::output`]).

use beckon_cli::cli::Cli;
use beckon_cli::{commands, output};
use clap::Parser as _;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(err) => return output::usage(err, output::requested_mode(&args)),
    };
    let mode = cli.output;
    match commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => output::fail(mode, &err),
    }
}
