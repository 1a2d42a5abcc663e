//! Applying pending migrations, one at a time, under the migration lock.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use postgres::Client;
use refinery::{Runner, Target};

use super::files::MigrationFile;
use super::history::{invalid_indexes, read_history};
use super::lock::MigrationLock;
use super::{State, reconcile};
use crate::error::{describe_pg_error, fail, line_col};

#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Apply versions up to and including this one.
    pub target: Option<i32>,
    /// Print what would run; change nothing (not even the history table).
    pub dry_run: bool,
    /// Print a line per applied migration when no progress bar is shown.
    pub verbose: bool,
}

#[derive(Debug, Default)]
pub struct ApplyOutcome {
    /// Labels and durations of the migrations applied (or, with --dry-run, to apply).
    pub applied: Vec<(String, Duration)>,
    pub already_applied: usize,
}

pub fn apply(
    client: &mut Client,
    files: &[MigrationFile],
    options: &ApplyOptions,
) -> Result<ApplyOutcome> {
    // A dry run takes no lock: it only reads.
    let lock = if options.dry_run {
        None
    } else {
        Some(MigrationLock::acquire(client)?)
    };
    let result = apply_locked(client, files, options);
    if let Some(lock) = lock {
        lock.release(client)?;
    }
    result
}

fn apply_locked(
    client: &mut Client,
    files: &[MigrationFile],
    options: &ApplyOptions,
) -> Result<ApplyOutcome> {
    let history = read_history(client)?;
    let entries = reconcile(files, &history);
    refuse_unsafe_states(&entries)?;
    let already_applied = entries.iter().filter(|e| e.state == State::Applied).count();
    let pending: Vec<&MigrationFile> = entries
        .iter()
        .filter(|e| e.state == State::Pending)
        .filter_map(|e| e.file.as_ref())
        .filter(|f| options.target.is_none_or(|t| f.version <= t))
        .collect();

    let mut outcome = ApplyOutcome {
        applied: Vec::new(),
        already_applied,
    };
    if options.dry_run {
        outcome.applied = pending
            .iter()
            .map(|f| (f.label(), Duration::ZERO))
            .collect();
        return Ok(outcome);
    }

    let bar = progress_bar(pending.len());
    for file in pending {
        crate::interrupt::check()?;
        bar.set_message(file.label());
        let started = Instant::now();
        if file.no_transaction {
            apply_without_transaction(client, files, file)?;
        } else {
            apply_in_transaction(client, files, file)?;
        }
        let took = started.elapsed();
        bar.inc(1);
        if bar.is_hidden() && options.verbose {
            println!("applied {} ({:.2}s)", file.label(), took.as_secs_f64());
        }
        outcome.applied.push((file.label(), took));
    }
    bar.finish_and_clear();
    Ok(outcome)
}

/// Divergent, missing or out-of-order migrations stop the run before anything changes.
fn refuse_unsafe_states(entries: &[super::Reconciled]) -> Result<()> {
    for entry in entries {
        let label = entry
            .file
            .as_ref()
            .map(|f| f.path.display().to_string())
            .unwrap_or_default();
        match entry.state {
            State::Divergent => {
                return Err(fail(
                    format!(
                        "{label} was changed after it was applied (checksum differs from the history table's)"
                    ),
                    "restore the file as it was applied (see `git log -p` on it) and put the change in a new migration with a higher version",
                ));
            }
            State::Missing => {
                let name = entry.row.as_ref().map(|r| r.name.as_str()).unwrap_or("?");
                return Err(fail(
                    format!(
                        "version {} ({name}) is applied in the database but its file is missing",
                        entry.version
                    ),
                    "restore the migration file, or point --dir at the directory that has it",
                ));
            }
            State::OutOfOrder => {
                return Err(fail(
                    format!(
                        "{label} is not applied, but a higher version already is; V migrations run strictly in order"
                    ),
                    "give it a version above the highest applied one, or prefix it with U to allow out-of-order application",
                ));
            }
            State::Applied | State::Pending => {}
        }
    }
    Ok(())
}

/// Through refinery's runner: grouped, one version, so the SQL and its history row commit
/// in one transaction (refinery's ungrouped mode uses two).
fn apply_in_transaction(
    client: &mut Client,
    files: &[MigrationFile],
    file: &MigrationFile,
) -> Result<()> {
    run_refinery(client, files, file, Target::Version(file.version)).map_err(|err| {
        let server = server_error(&err, &file.sql);
        fail(
            format!(
                "{} failed and was rolled back; nothing of it was recorded:\n  {server}",
                file.path.display()
            ),
            "fix the SQL and run `pgx apply` again; the migrations before it stay applied",
        )
    })
}

/// Statement by statement in autocommit, then recorded with refinery's own checksum
/// (`Target::FakeVersion`), for what cannot run in a transaction block.
fn apply_without_transaction(
    client: &mut Client,
    files: &[MigrationFile],
    file: &MigrationFile,
) -> Result<()> {
    let statements = crate::sqlsplit::split(&file.sql);
    let invalid_before = invalid_indexes(client)?;
    for (n, statement) in statements.iter().enumerate() {
        let _cancel = crate::interrupt::CancelOnInterrupt::new(client);
        if let Err(err) = client.batch_execute(&statement.sql) {
            let (line, _) = match err.as_db_error().and_then(|d| d.position()) {
                Some(postgres::error::ErrorPosition::Original(p)) => {
                    let (l, c) = line_col(&statement.sql, *p as usize);
                    (statement.line + l - 1, c)
                }
                _ => (statement.line, 1),
            };
            let mut message = format!(
                "{} (no-transaction) failed at statement {} (line {line}); statements before it stay applied and the migration is not recorded:\n  {}",
                file.path.display(),
                n + 1,
                describe_pg_error(&err, Some(&statement.sql)),
            );
            let mut hint = "fix the statement, make the earlier ones re-runnable (IF NOT EXISTS), and run `pgx apply` again".to_string();
            let left: Vec<String> = invalid_indexes(client)?
                .into_iter()
                .filter(|i| !invalid_before.contains(i))
                .collect();
            if !left.is_empty() {
                message.push_str(&format!(
                    "\n  the failed build left INVALID index(es): {}",
                    left.join(", ")
                ));
                hint = format!(
                    "drop them first ({}), then fix the migration and run `pgx apply` again",
                    left.iter()
                        .map(|i| format!("DROP INDEX CONCURRENTLY {i};"))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
            return Err(fail(message, hint));
        }
    }
    run_refinery(client, files, file, Target::FakeVersion(file.version)).map_err(|err| {
        fail(
            format!(
                "{} ran, but recording it in {} failed: {}",
                file.path.display(),
                super::HISTORY_TABLE,
                server_error(&err, "")
            ),
            "its statements are applied; rerun `pgx apply` once the cause is fixed (statements must be re-runnable)",
        )
    })
}

fn run_refinery(
    client: &mut Client,
    files: &[MigrationFile],
    file: &MigrationFile,
    target: Target,
) -> Result<(), refinery::Error> {
    // Everything up to this version, so refinery sees the applied ones as present.
    let migrations: Vec<refinery::Migration> = files
        .iter()
        .filter(|f| f.version <= file.version)
        .filter_map(|f| f.to_refinery().ok())
        .collect();
    Runner::new(&migrations)
        .set_grouped(true)
        .set_abort_divergent(false) // already checked, with better messages
        .set_abort_missing(false)
        .set_target(target)
        .run(client)
        .map(|_| ())
}

fn server_error(err: &refinery::Error, sql: &str) -> String {
    if let refinery::error::Kind::Connection(_, source) = err.kind()
        && let Some(pg) = source.downcast_ref::<postgres::Error>()
    {
        return describe_pg_error(pg, Some(sql));
    }
    err.to_string()
}

fn progress_bar(len: usize) -> ProgressBar {
    if !std::io::stderr().is_terminal() || len == 0 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} migrating [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
