//! `pgx status`: every migration, applied or not, and whatever needs attention.

use anyhow::Result;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use postgres::Client;

use super::files::{Kind, MigrationFile, Version};
use super::history::{AppliedRow, invalid_indexes, read_history};
use super::reconcile;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Applied,
    Pending,
    /// Applied, but the file changed since (checksum or name differ).
    Divergent,
    /// Applied, but the file is gone.
    Missing,
    /// A `V` migration below the highest applied version that was never applied.
    OutOfOrder,
    /// A repeatable migration whose file changed since it was applied: re-applied next.
    Outdated,
    /// The `pgx baseline` marker.
    Baseline,
    /// A versioned file at or below the baseline: counts as applied, never runs.
    BelowBaseline,
    /// A Flyway callback `pgx apply` runs.
    Callback,
    /// A Flyway callback pgx does not run.
    SkippedCallback,
}

impl State {
    pub fn label(self) -> &'static str {
        match self {
            State::Applied => "applied",
            State::Pending => "pending",
            State::Divergent => "DIVERGENT",
            State::Missing => "MISSING",
            State::OutOfOrder => "OUT OF ORDER",
            State::Outdated => "outdated",
            State::Baseline => "baseline",
            State::BelowBaseline => "below baseline",
            State::Callback => "callback",
            State::SkippedCallback => "callback (skipped)",
        }
    }

    pub fn is_problem(self) -> bool {
        matches!(self, State::Divergent | State::Missing | State::OutOfOrder)
    }

    /// Work `pgx apply` would do.
    pub fn is_pending(self) -> bool {
        matches!(self, State::Pending | State::Outdated)
    }
}

#[derive(Debug, Clone)]
pub struct Reconciled {
    /// Empty for repeatables and callbacks.
    pub version: Version,
    pub file: Option<MigrationFile>,
    pub row: Option<AppliedRow>,
    pub state: State,
}

impl Reconciled {
    pub fn is_repeatable(&self) -> bool {
        self.file
            .as_ref()
            .map(|f| f.kind == Kind::Repeatable)
            .unwrap_or_else(|| {
                self.row
                    .as_ref()
                    .is_some_and(|r| r.kind == super::RowKind::Repeatable)
            })
    }

    /// `V3__content`, `R__views`, what is shown and named in errors.
    pub fn label(&self) -> String {
        if let Some(file) = &self.file {
            return file.label();
        }
        match &self.row {
            Some(r) if r.kind == super::RowKind::Repeatable => format!("R__{}", r.name),
            Some(r) if r.kind == super::RowKind::Baseline => format!("baseline {}", r.version),
            Some(r) => format!("V{}__{}", r.version, r.name),
            None => String::new(),
        }
    }
}

pub struct StatusReport {
    pub entries: Vec<Reconciled>,
    pub invalid_indexes: Vec<String>,
}

impl StatusReport {
    /// True when CI should fail: divergent, missing, out-of-order or invalid indexes.
    pub fn has_problems(&self) -> bool {
        self.entries.iter().any(|e| e.state.is_problem()) || !self.invalid_indexes.is_empty()
    }

    pub fn render(&self) -> String {
        let mut table = Table::new();
        table.load_style(UTF8_FULL_CONDENSED).set_header(vec![
            "version",
            "name",
            "state",
            "applied on",
            "checksum",
            "mode",
        ]);
        for e in &self.entries {
            let name = e
                .file
                .as_ref()
                .map(|f| f.name.clone())
                .or_else(|| e.row.as_ref().map(|r| r.name.clone()))
                .unwrap_or_default();
            let version = match (&e.file, e.state) {
                (_, State::Baseline) => e.version.to_string(),
                (Some(f), _) if f.kind == Kind::Repeatable => "R".to_string(),
                (Some(f), _) if matches!(f.kind, Kind::Callback(_)) => String::new(),
                (None, _) if e.is_repeatable() => "R".to_string(),
                _ => e.version.to_string(),
            };
            let checksum = match e.state {
                State::Applied => "ok",
                State::Divergent => "divergent",
                State::Outdated => "changed: re-applied next",
                State::Missing => "missing file",
                _ => "-",
            };
            let mode = match &e.file {
                Some(f) => match &f.kind {
                    Kind::Callback(event) if e.state == State::Callback => {
                        format!("runs at {event}")
                    }
                    Kind::Callback(event) => format!("{event}: not run by pgx"),
                    _ if f.no_transaction => "no-transaction".into(),
                    Kind::Repeatable => "transaction, repeatable".into(),
                    _ => "transaction".into(),
                },
                None => String::new(),
            };
            table.add_row(vec![
                version,
                name,
                e.state.label().to_string(),
                e.row
                    .as_ref()
                    .map(|r| r.applied_on.clone())
                    .unwrap_or_default(),
                checksum.to_string(),
                mode,
            ]);
        }
        let mut out = table.to_string();
        let count = |state: State| self.entries.iter().filter(|e| e.state == state).count();
        out.push_str(&format!(
            "\n{} applied, {} pending",
            count(State::Applied),
            count(State::Pending) + count(State::Outdated)
        ));
        for index in &self.invalid_indexes {
            out.push_str(&format!(
                "\nINVALID index {index} (left by a failed CREATE INDEX CONCURRENTLY): DROP INDEX CONCURRENTLY {index};"
            ));
        }
        out
    }
}

pub fn status(client: &mut Client, files: &[MigrationFile]) -> Result<StatusReport> {
    let history = read_history(client)?;
    Ok(StatusReport {
        entries: reconcile(files, &history),
        invalid_indexes: invalid_indexes(client)?,
    })
}
