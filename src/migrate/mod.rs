//! `pgx apply`, `pgx status`, `pgx baseline`, `pgx repair`: refinery's migrations, made
//! safe to run from CI, with what Flyway users expect.
//!
//! What pgx adds to refinery: strict file names, one migration per transaction with its
//! history row (`set_grouped(true)` + `Target::Version`), `-- pgx:no-transaction`
//! migrations for `CREATE INDEX CONCURRENTLY` (refused while an index they name is
//! INVALID), an advisory lock between concurrent runners, errors instead of panics for
//! divergent or missing migrations, and Flyway's repeatable migrations (`R__`), dotted
//! versions (`V1.1`), SQL callbacks, baseline and repair. What refinery cannot record
//! (dotted versions, repeatables, the baseline) is kept in pgx's own history table.

mod apply;
mod error;
mod files;
mod history;
mod lock;
mod maintain;
mod status;

pub use apply::{ApplyOptions, ApplyOutcome, apply};
pub use error::{MigrateError, drop_commands};
pub use files::{
    FLYWAY_CALLBACKS, Kind, MigrationFile, NO_TRANSACTION_MARKER, RUN_CALLBACKS, Version, load_dir,
    suggest_name,
};
pub use history::{
    AppliedRow, HISTORY_TABLE, PGX_HISTORY_TABLE, RowKind, invalid_indexes, read_history,
};
pub use lock::LOCK_KEY;
pub use maintain::{RepairPlan, baseline, repair};
pub use status::{Reconciled, State, StatusReport, status};

/// Pair local files with history rows: versioned ones in version order (the baseline
/// marker among them), then repeatables by name, then callbacks.
pub fn reconcile(files: &[MigrationFile], history: &[AppliedRow]) -> Vec<Reconciled> {
    let baseline = history
        .iter()
        .find(|r| r.kind == RowKind::Baseline)
        .map(|r| r.version.clone());
    let versioned_rows: Vec<&AppliedRow> = history
        .iter()
        .filter(|r| r.kind == RowKind::Versioned)
        .collect();
    let last_applied = versioned_rows
        .iter()
        .map(|r| r.version.clone())
        .chain(baseline.clone())
        .max();

    let mut versions: Vec<Version> = files
        .iter()
        .filter(|f| f.kind == Kind::Versioned)
        .map(|f| f.version.clone())
        .chain(versioned_rows.iter().map(|r| r.version.clone()))
        .chain(baseline.clone())
        .collect();
    versions.sort();
    versions.dedup();

    let mut out = Vec::new();
    for version in versions {
        let file = files
            .iter()
            .find(|f| f.kind == Kind::Versioned && f.version == version)
            .cloned();
        let row = versioned_rows
            .iter()
            .find(|r| r.version == version)
            .map(|r| (*r).clone());
        if baseline.as_ref() == Some(&version) && row.is_none() {
            out.push(Reconciled {
                version: version.clone(),
                row: history
                    .iter()
                    .find(|r| r.kind == RowKind::Baseline)
                    .cloned(),
                file: None,
                state: State::Baseline,
            });
            if file.is_none() {
                continue;
            }
        }
        let state = match (&file, &row) {
            (Some(f), Some(r)) if f.checksum == r.checksum && f.name == r.name => State::Applied,
            (Some(_), Some(_)) => State::Divergent,
            (None, Some(_)) => State::Missing,
            (Some(_), None) if baseline.as_ref().is_some_and(|b| &version <= b) => {
                State::BelowBaseline
            }
            (Some(f), None)
                if f.prefix == 'V' && last_applied.as_ref().is_some_and(|l| l > &version) =>
            {
                State::OutOfOrder
            }
            _ => State::Pending,
        };
        out.push(Reconciled {
            version,
            file,
            row,
            state,
        });
    }

    let mut names: Vec<String> = files
        .iter()
        .filter(|f| f.kind == Kind::Repeatable)
        .map(|f| f.name.clone())
        .chain(
            history
                .iter()
                .filter(|r| r.kind == RowKind::Repeatable)
                .map(|r| r.name.clone()),
        )
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        let file = files
            .iter()
            .find(|f| f.kind == Kind::Repeatable && f.name == name)
            .cloned();
        let row = history
            .iter()
            .find(|r| r.kind == RowKind::Repeatable && r.name == name)
            .cloned();
        let state = match (&file, &row) {
            (Some(f), Some(r)) if f.checksum == r.checksum => State::Applied,
            (Some(_), Some(_)) => State::Outdated,
            (None, Some(_)) => State::Missing,
            _ => State::Pending,
        };
        out.push(Reconciled {
            version: Version::default(),
            file,
            row,
            state,
        });
    }

    for file in files {
        if let Kind::Callback(event) = &file.kind {
            let state = if RUN_CALLBACKS.contains(&event.as_str()) {
                State::Callback
            } else {
                State::SkippedCallback
            };
            out.push(Reconciled {
                version: Version::default(),
                file: Some(file.clone()),
                row: None,
                state,
            });
        }
    }
    out
}
