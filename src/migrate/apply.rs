//! Applying pending migrations, one at a time, under the migration lock: versioned ones
//! in version order, then repeatables that are new or changed, in name order, with the
//! Flyway callbacks pgx knows at their points.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use postgres::Client;
use refinery::{Runner, Target};

use super::error::MigrateError;
use super::files::{Kind, MigrationFile, RUN_CALLBACKS, Version};
use super::history::{self, HistoryOp, invalid_indexes, invalid_indexes_with_tables, read_history};
use super::lock::MigrationLock;
use super::{State, reconcile};
use crate::error::{describe_pg_error, line_col};

#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Apply versions up to and including this one (repeatables still run, as in Flyway).
    pub target: Option<Version>,
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
    /// What the user should know that is not an error (callbacks skipped, ...).
    pub notes: Vec<String>,
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
        // After an interrupt the session may be unusable; the lock ends with it anyway.
        let released = lock.release(client);
        if result.is_ok() {
            released?;
        }
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
    let versioned: Vec<&MigrationFile> = entries
        .iter()
        .filter(|e| e.state == State::Pending)
        .filter_map(|e| e.file.as_ref())
        .filter(|f| f.kind == Kind::Versioned)
        .filter(|f| options.target.as_ref().is_none_or(|t| &f.version <= t))
        .collect();
    let repeatable: Vec<&MigrationFile> = entries
        .iter()
        .filter(|e| e.state.is_pending())
        .filter_map(|e| e.file.as_ref())
        .filter(|f| f.kind == Kind::Repeatable)
        .collect();

    let mut outcome = ApplyOutcome {
        applied: Vec::new(),
        already_applied,
        notes: Vec::new(),
    };
    for file in files {
        if let Kind::Callback(event) = &file.kind
            && !RUN_CALLBACKS.contains(&event.as_str())
        {
            outcome.notes.push(format!(
                "skipped Flyway callback {} ({event}): pgx runs only {} callbacks",
                file.path.display(),
                RUN_CALLBACKS.join(", ")
            ));
        }
    }
    if options.dry_run {
        crate::interrupt::check()?;
        outcome.applied = versioned
            .iter()
            .chain(repeatable.iter())
            .map(|f| (f.label(), Duration::ZERO))
            .collect();
        return Ok(outcome);
    }

    let bar = progress_bar(versioned.len() + repeatable.len());
    let step = |client: &mut Client, file: &MigrationFile, outcome: &mut ApplyOutcome| {
        crate::interrupt::check().map_err(|_| MigrateError::Interrupted {
            path: None,
            rolled_back: false,
        })?;
        bar.set_message(file.label());
        let started = Instant::now();
        apply_one(client, file)?;
        let took = started.elapsed();
        bar.inc(1);
        if bar.is_hidden() && options.verbose {
            crate::say!("applied {} ({:.2}s)", file.label(), took.as_secs_f64())?;
        }
        outcome.applied.push((file.label(), took));
        anyhow::Ok(())
    };
    run_callbacks(client, files, "beforeMigrate", &mut outcome)?;
    for file in versioned {
        step(client, file, &mut outcome)?;
    }
    run_callbacks(client, files, "afterVersioned", &mut outcome)?;
    run_callbacks(client, files, "beforeRepeatables", &mut outcome)?;
    for file in repeatable {
        step(client, file, &mut outcome)?;
    }
    bar.finish_and_clear();
    run_callbacks(client, files, "afterMigrate", &mut outcome)?;
    if !outcome.applied.is_empty() {
        run_callbacks(client, files, "afterMigrateApplied", &mut outcome)?;
    }
    Ok(outcome)
}

/// Divergent, missing or out-of-order migrations stop the run before anything changes.
fn refuse_unsafe_states(entries: &[super::Reconciled]) -> Result<()> {
    for entry in entries {
        let path = entry
            .file
            .as_ref()
            .map(|f| f.path.clone())
            .unwrap_or_default();
        match entry.state {
            State::Divergent => return Err(MigrateError::Divergent { path }.into()),
            State::Missing => {
                return Err(MigrateError::Missing {
                    label: entry.label(),
                }
                .into());
            }
            State::OutOfOrder => return Err(MigrateError::OutOfOrder { path }.into()),
            _ => {}
        }
    }
    Ok(())
}

fn apply_one(client: &mut Client, file: &MigrationFile) -> Result<()> {
    if file.no_transaction {
        apply_without_transaction(client, file)
    } else if let Some(version) = file.refinery_version() {
        apply_with_refinery(client, file, version)
    } else {
        apply_in_own_transaction(client, file)
    }
}

/// The error, or `Interrupted` when Ctrl-C (or SIGTERM) cancelled the statement.
fn interrupted_or(err: MigrateError, file: &MigrationFile, rolled_back: bool) -> MigrateError {
    if crate::interrupt::is_interrupted() {
        MigrateError::Interrupted {
            path: Some(file.path.clone()),
            rolled_back,
        }
    } else {
        err
    }
}

/// Through refinery's runner: grouped, one version, so the SQL and its history row commit
/// in one transaction (refinery's ungrouped mode uses two). Ctrl-C cancels the running
/// statement; the transaction is then rolled back, not committed.
fn apply_with_refinery(client: &mut Client, file: &MigrationFile, version: i32) -> Result<()> {
    let result = {
        let _cancel = crate::interrupt::CancelOnInterrupt::new(client);
        run_refinery(client, file, Target::Version(version))
    };
    result.map_err(|failure| {
        let err = match failure {
            RefineryFailure::History(err) => err,
            RefineryFailure::Migration {
                server,
                denied_role,
            } => MigrateError::Failed {
                path: file.path.clone(),
                server,
                denied_role,
            },
        };
        interrupted_or(err, file, true).into()
    })
}

/// Dotted versions and repeatables: pgx records them in its own table, in the same
/// transaction as their SQL.
fn apply_in_own_transaction(client: &mut Client, file: &MigrationFile) -> Result<()> {
    prepare_history(client, file)?;
    let _cancel = crate::interrupt::CancelOnInterrupt::new(client);
    let mut tx = client.transaction()?;
    let failure = match tx.batch_execute(&file.sql) {
        Err(err) => Some((err, false)),
        Ok(()) => history::record(&mut tx, file).err().map(|err| (err, true)),
    };
    if let Some((err, recording)) = failure {
        // Rolled back first, so that the session can say which role lacks what.
        drop(tx);
        let err = if recording {
            history::history_error(
                client,
                history::PGX_HISTORY_TABLE,
                HistoryOp::Write,
                &err,
                Some(file),
            )
        } else {
            MigrateError::Failed {
                path: file.path.clone(),
                server: describe_pg_error(&err, Some(&file.sql)),
                denied_role: denied_role(client, &err),
            }
        };
        return Err(interrupted_or(err, file, true).into());
    }
    if crate::interrupt::is_interrupted() {
        // Dropping the transaction rolls it back.
        return Err(MigrateError::Interrupted {
            path: Some(file.path.clone()),
            rolled_back: true,
        }
        .into());
    }
    tx.commit().map_err(|e| {
        interrupted_or(
            MigrateError::Failed {
                path: file.path.clone(),
                server: describe_pg_error(&e, None),
                denied_role: None,
            },
            file,
            true,
        )
    })?;
    Ok(())
}

/// Statement by statement in autocommit, then recorded (with refinery's own checksum
/// through `Target::FakeVersion` for whole-number versions), for what cannot run in a
/// transaction block. Refused before recording while an index it names is INVALID.
fn apply_without_transaction(client: &mut Client, file: &MigrationFile) -> Result<()> {
    prepare_history(client, file)?;
    run_statements(client, file)?;
    let named = invalid_indexes_named(client, &file.sql)?;
    if !named.is_empty() {
        return Err(MigrateError::InvalidIndexes {
            path: file.path.clone(),
            indexes: named,
        }
        .into());
    }
    if matches!(file.kind, Kind::Callback(_)) {
        return Ok(());
    }
    let recorded = match file.refinery_version() {
        Some(version) => {
            run_refinery(client, file, Target::FakeVersion(version)).map_err(|f| match f {
                RefineryFailure::History(err) => err.to_string(),
                RefineryFailure::Migration { server, .. } => server,
            })
        }
        None => history::record(client, file).map_err(|e| format!("{e:#}")),
    };
    recorded.map_err(|server| {
        MigrateError::RecordFailed {
            path: file.path.clone(),
            server,
        }
        .into()
    })
}

/// Make sure the history table the migration will be recorded in exists before any of its
/// SQL runs, so that a role that cannot create it learns that first, from pgx's own
/// statement, and not after a no-transaction migration's statements already ran.
fn prepare_history(client: &mut Client, file: &MigrationFile) -> Result<()> {
    if matches!(file.kind, Kind::Callback(_)) {
        return Ok(());
    }
    if file.refinery_version().is_some() {
        // refinery creates its own table (with its own DDL) when asked to run nothing.
        return match run_refinery_on(client, &[], Target::Latest, None) {
            Ok(()) => Ok(()),
            Err(RefineryFailure::History(err)) => Err(err.with_migration(file).into()),
            Err(RefineryFailure::Migration { server, .. }) => Err(MigrateError::HistoryTable {
                doing: format!("create the history table {}", history::HISTORY_TABLE),
                reason: server,
                advice: "this is refinery's own statement, not the migration's: fix what the server says, then run `pgx apply` again".into(),
                not_run: Some(file.path.clone()),
            }
            .into()),
        };
    }
    if let Err(err) = history::ensure_pgx_table(client) {
        return Err(history::history_error(
            client,
            history::PGX_HISTORY_TABLE,
            HistoryOp::Create,
            &err,
            Some(file),
        )
        .into());
    }
    Ok(())
}

/// The current role, quoted where needed, when the server refused for lack of a privilege
/// (SQLSTATE 42501): the hint then says what to grant instead of "fix the SQL".
fn denied_role(client: &mut Client, err: &postgres::Error) -> Option<String> {
    if err.code() != Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) {
        return None;
    }
    Some(
        client
            .query_one("SELECT quote_ident(current_user)", &[])
            .and_then(|row| row.try_get::<_, String>(0))
            .unwrap_or_else(|_| "<role>".into()),
    )
}

fn run_statements(client: &mut Client, file: &MigrationFile) -> Result<()> {
    let statements = crate::sqlsplit::split(&file.sql);
    let invalid_before = invalid_indexes(client)?;
    for (n, statement) in statements.iter().enumerate() {
        crate::interrupt::check().map_err(|_| MigrateError::Interrupted {
            path: Some(file.path.clone()),
            rolled_back: false,
        })?;
        let result = {
            let _cancel = crate::interrupt::CancelOnInterrupt::new(client);
            client.batch_execute(&statement.sql)
        };
        if let Err(err) = result {
            if crate::interrupt::is_interrupted() {
                return Err(MigrateError::Interrupted {
                    path: Some(file.path.clone()),
                    rolled_back: false,
                }
                .into());
            }
            let line = match err.as_db_error().and_then(|d| d.position()) {
                Some(postgres::error::ErrorPosition::Original(p)) => {
                    let (l, _) = line_col(&statement.sql, *p as usize);
                    statement.line.saturating_add(l).saturating_sub(1)
                }
                _ => statement.line,
            };
            let left: Vec<String> = invalid_indexes(client)?
                .into_iter()
                .filter(|i| !invalid_before.contains(i))
                .collect();
            return Err(MigrateError::StatementFailed {
                path: file.path.clone(),
                statement: n + 1,
                line,
                server: describe_pg_error(&err, Some(&statement.sql)),
                invalid_indexes: left,
                denied_role: denied_role(client, &err),
            }
            .into());
        }
    }
    Ok(())
}

/// INVALID indexes the SQL names, by index or by table (a re-run whose
/// `CREATE INDEX CONCURRENTLY IF NOT EXISTS` skipped an index left INVALID by a failed
/// first run must not count as applied).
fn invalid_indexes_named(client: &mut Client, sql: &str) -> Result<Vec<String>> {
    let code = sql.to_lowercase();
    let mentions = |name: &str| {
        regex::Regex::new(&format!(
            r"(^|[^\w$]){}($|[^\w$])",
            regex::escape(&name.to_lowercase())
        ))
        .map(|re| re.is_match(&code))
        .unwrap_or(false)
    };
    Ok(invalid_indexes_with_tables(client)?
        .into_iter()
        .filter(|i| mentions(&i.index_name) || mentions(&i.table_name))
        .map(|i| i.index)
        .collect())
}

/// Run the callbacks for one Flyway event, in name order, each in its own transaction
/// (or statement by statement with the no-transaction marker); never recorded.
fn run_callbacks(
    client: &mut Client,
    files: &[MigrationFile],
    event: &str,
    outcome: &mut ApplyOutcome,
) -> Result<()> {
    for file in files {
        if file.kind != Kind::Callback(event.to_string()) {
            continue;
        }
        crate::interrupt::check().map_err(|_| MigrateError::Interrupted {
            path: None,
            rolled_back: false,
        })?;
        if file.no_transaction {
            run_statements(client, file)?;
        } else {
            let _cancel = crate::interrupt::CancelOnInterrupt::new(client);
            let mut tx = client.transaction()?;
            if let Err(e) = tx.batch_execute(&file.sql) {
                drop(tx); // rolled back, so that the session can name the role
                return Err(interrupted_or(
                    MigrateError::CallbackFailed {
                        path: file.path.clone(),
                        server: describe_pg_error(&e, Some(&file.sql)),
                        denied_role: denied_role(client, &e),
                    },
                    file,
                    true,
                )
                .into());
            }
            tx.commit()?;
        }
        outcome.notes.push(format!(
            "ran Flyway callback {} ({event})",
            file.path.display()
        ));
    }
    Ok(())
}

/// Why a refinery run failed.
enum RefineryFailure {
    /// One of refinery's own statements on its history table (creating, reading or
    /// writing it): not the migration's fault, said as such.
    History(MigrateError),
    /// The migration's SQL: the server's error located in the file, and the role when it
    /// lacked a privilege.
    Migration {
        server: String,
        denied_role: Option<String>,
    },
}

/// Run refinery for this migration alone (it checks nothing pgx has not checked already
/// and records exactly this version).
fn run_refinery(
    client: &mut Client,
    file: &MigrationFile,
    target: Target,
) -> Result<(), RefineryFailure> {
    let migration = file.to_refinery().map_err(|e| RefineryFailure::Migration {
        server: format!("{e:#}"),
        denied_role: None,
    })?;
    run_refinery_on(client, &[migration], target, Some(file))
}

fn run_refinery_on(
    client: &mut Client,
    migrations: &[refinery::Migration],
    target: Target,
    file: Option<&MigrationFile>,
) -> Result<(), RefineryFailure> {
    let Err(err) = Runner::new(migrations)
        .set_grouped(true)
        .set_abort_divergent(false) // already checked, with better messages
        .set_abort_missing(false)
        .set_target(target)
        .run(client)
    else {
        return Ok(());
    };
    let refinery::error::Kind::Connection(step, source) = err.kind() else {
        return Err(RefineryFailure::Migration {
            server: err.to_string(),
            denied_role: None,
        });
    };
    let Some(pg) = source.downcast_ref::<postgres::Error>() else {
        return Err(RefineryFailure::Migration {
            server: err.to_string(),
            denied_role: None,
        });
    };
    // refinery names the step that failed: its CREATE TABLE IF NOT EXISTS, its reads, or
    // the batch of the migration's SQL and its history INSERT (FakeVersion: the INSERT
    // alone).
    let names_history = pg
        .as_db_error()
        .is_some_and(|db| db.message().contains(history::HISTORY_TABLE));
    let op = match step.as_str() {
        "error asserting migrations table" => Some(HistoryOp::Create),
        s if s.starts_with("error getting") => Some(HistoryOp::Read),
        _ if matches!(target, Target::FakeVersion(_)) || names_history => Some(HistoryOp::Write),
        _ => None,
    };
    Err(match (op, file) {
        (Some(op), _) => RefineryFailure::History(history::history_error(
            client,
            history::HISTORY_TABLE,
            op,
            pg,
            file.filter(|_| !matches!(target, Target::FakeVersion(_))),
        )),
        (None, Some(file)) => RefineryFailure::Migration {
            server: describe_pg_error(pg, Some(&file.sql)),
            denied_role: denied_role(client, pg),
        },
        (None, None) => RefineryFailure::Migration {
            server: describe_pg_error(pg, None),
            denied_role: denied_role(client, pg),
        },
    })
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
