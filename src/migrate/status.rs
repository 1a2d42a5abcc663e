//! `pgx status`: every migration, applied or not, and whatever needs attention.

use anyhow::Result;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use postgres::Client;

use super::files::MigrationFile;
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
}

impl State {
    pub fn label(self) -> &'static str {
        match self {
            State::Applied => "applied",
            State::Pending => "pending",
            State::Divergent => "DIVERGENT",
            State::Missing => "MISSING",
            State::OutOfOrder => "OUT OF ORDER",
        }
    }

    pub fn is_problem(self) -> bool {
        matches!(self, State::Divergent | State::Missing | State::OutOfOrder)
    }
}

#[derive(Debug, Clone)]
pub struct Reconciled {
    pub version: i32,
    pub file: Option<MigrationFile>,
    pub row: Option<AppliedRow>,
    pub state: State,
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
            let checksum = match e.state {
                State::Applied => "ok",
                State::Divergent => "divergent",
                State::Missing => "missing file",
                State::Pending | State::OutOfOrder => "-",
            };
            let mode = match &e.file {
                Some(f) if f.no_transaction => "no-transaction",
                Some(_) => "transaction",
                None => "",
            };
            table.add_row(vec![
                e.version.to_string(),
                name,
                e.state.label().to_string(),
                e.row
                    .as_ref()
                    .map(|r| r.applied_on.clone())
                    .unwrap_or_default(),
                checksum.to_string(),
                mode.to_string(),
            ]);
        }
        let mut out = table.to_string();
        let applied = self
            .entries
            .iter()
            .filter(|e| e.state == State::Applied)
            .count();
        let pending = self
            .entries
            .iter()
            .filter(|e| e.state == State::Pending)
            .count();
        out.push_str(&format!("\n{applied} applied, {pending} pending"));
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
