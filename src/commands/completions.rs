//! `pgx completions SHELL`: a shell completion script on stdout.

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::Cli;

pub fn run(shell: clap_complete::Shell) -> Result<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "pgx", &mut script);
    crate::output::text(String::from_utf8_lossy(&script))?;
    Ok(crate::exit::OK)
}
