//! `beckon completions bash | zsh | fish | ...`: a completion script for the shell, generated
//! from the command line's definition, so it never drifts from it.

use crate::cli::Cli;
use anyhow::Context as _;
use clap::CommandFactory as _;
use std::io::Write;

/// Writes the completion script for `shell`. `--output` does not apply: the script is the
/// output.
pub fn write(shell: clap_complete::Shell, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut command = Cli::command();
    let name = command.get_name().to_owned();
    // Generated whole first: clap_complete panics on a failed write.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut script);
    match out.write_all(&script).and_then(|()| out.flush()) {
        // `beckon completions bash | head`: the reader had what it wanted.
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("Failed to write the completion script"),
    }
}
