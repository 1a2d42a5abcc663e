//! Thin: install the signal handler, parse, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    pgx::interrupt::install();
    let cli = pgx::cli::Cli::parse();
    ExitCode::from(pgx::app::finish(pgx::app::run(cli)))
}
