//! `pgx apply` and `pgx status`: refinery's migrations, made safe to run from CI.
//!
//! What pgx adds to refinery: strict file names, one migration per transaction with its
//! history row (`set_grouped(true)` + `Target::Version`), `-- pgx:no-transaction`
//! migrations for `CREATE INDEX CONCURRENTLY`, an advisory lock between concurrent
//! runners, and errors instead of panics for divergent or missing migrations.

mod apply;
mod files;
mod history;
mod lock;
mod status;

pub use apply::{ApplyOptions, ApplyOutcome, apply};
pub use files::{MigrationFile, NO_TRANSACTION_MARKER, load_dir};
pub use history::{AppliedRow, HISTORY_TABLE, invalid_indexes, read_history};
pub use status::{Reconciled, State, StatusReport, status};

/// Pair local files with history rows, in version order.
pub fn reconcile(files: &[MigrationFile], history: &[AppliedRow]) -> Vec<Reconciled> {
    let mut versions: Vec<i32> = files
        .iter()
        .map(|f| f.version)
        .chain(history.iter().map(|h| h.version))
        .collect();
    versions.sort_unstable();
    versions.dedup();
    let last_applied = history.iter().map(|h| h.version).max();
    versions
        .into_iter()
        .map(|version| {
            let file = files.iter().find(|f| f.version == version).cloned();
            let row = history.iter().find(|h| h.version == version).cloned();
            let state = match (&file, &row) {
                (Some(f), Some(r)) if f.checksum == r.checksum && f.name == r.name => {
                    State::Applied
                }
                (Some(_), Some(_)) => State::Divergent,
                (None, Some(_)) => State::Missing,
                (Some(f), None) if f.prefix == 'V' && last_applied.is_some_and(|l| l > version) => {
                    State::OutOfOrder
                }
                _ => State::Pending,
            };
            Reconciled {
                version,
                file,
                row,
                state,
            }
        })
        .collect()
}
