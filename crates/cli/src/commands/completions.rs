//! `beckon completions bash | zsh | fish | ...`: a completion script for the shell, generated
//! from the command line's definition, so it never drifts from it.

use crate::cli::Cli;
use clap::CommandFactory as _;
use std::io::Write;

/// Writes the completion script for `shell`. `--output` does not apply: the script is the
/// output.
pub fn write(shell: clap_complete::Shell, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut command = Cli::command();
    let name = command.get_name().to_owned();
    clap_complete::generate(shell, &mut command, name, out);
    out.flush()?;
    Ok(())
}
