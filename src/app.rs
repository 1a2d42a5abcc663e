//! The top: each parsed command to its function in [`crate::commands`], and the result
//! to an exit code ([`finish`]: the error, its causes and its hint on stderr).

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::commands;
use crate::exit;
use crate::migrate;
use crate::target::TargetOptions;

pub fn run(cli: Cli) -> Result<u8> {
    let options = TargetOptions {
        database_url: cli.database_url.clone(),
        data_dir: cli.data_dir.clone(),
    };
    match cli.command {
        Command::Apply(args) => commands::apply::run(&options, &args),
        Command::Status(args) => commands::status::run(&options, &args),
        Command::Baseline(args) => commands::baseline::run(&options, &args),
        Command::Repair(args) => commands::repair::run(&options, &args),
        Command::Cluster { action } => commands::cluster::run(&options, action),
        Command::Experiment(args) => commands::experiment::run(&options, &args),
        Command::Lint(args) => commands::lint::run(&args),
        Command::Rehearse(args) => commands::rehearse::run(&options, &args),
        Command::Compare(args) => commands::compare::run(&args),
        Command::Promote(args) => commands::promote::run(&options, &args),
        Command::Gc(args) => commands::gc::run(&options, &args),
        Command::Merge(args) => commands::merge::run(&args),
        Command::Report { json } => commands::report::run(&json),
        Command::Completions { shell } => commands::completions::run(shell),
    }
}

/// Map the result of [`run`] to an exit code, printing the error (message, causes, hint)
/// to stderr. A closed stdout is a normal end, as in ripgrep.
pub fn finish(result: Result<u8>) -> u8 {
    let err = match result {
        Ok(code) => return code,
        Err(err) => err,
    };
    // A second Ctrl-C stopped the server under the work: not an error of the work's.
    if crate::interrupt::is_exiting() {
        return exit::INTERRUPTED;
    }
    if crate::output::is_broken_pipe(&err) {
        return exit::OK;
    }
    let migration = err
        .chain()
        .find_map(|e| e.downcast_ref::<migrate::MigrateError>());
    if crate::error::is_interrupted(&err)
        || matches!(migration, Some(migrate::MigrateError::Interrupted { .. }))
    {
        // A plain interrupt was announced by the handler; a migration says what it undid.
        if migration.is_some() {
            crate::note!("pgx: {err}");
        }
        return exit::INTERRUPTED;
    }
    let mut message = format!("error: {err}");
    for cause in err.chain().skip(1) {
        message.push_str(&format!("\n  caused by: {cause}"));
    }
    if let Some(hint) = migration
        .map(migrate::MigrateError::hint)
        .or_else(|| crate::error::hint_of(&err))
    {
        message.push_str(&format!("\nhint: {hint}"));
    }
    crate::note!("{message}");
    exit::ERROR
}
