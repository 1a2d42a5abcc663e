//! `pgx baseline` and `pgx repair`, as Flyway users know them.

use anyhow::Result;
use postgres::Client;

use super::error::MigrateError;
use super::files::{Kind, MigrationFile, Version};
use super::history::{self, read_history};
use super::lock::MigrationLock;
use super::{State, reconcile};

/// Mark an existing database as being at `version`: versioned migrations up to it count
/// as applied and never run; later ones and repeatables apply as usual. Refused when
/// the database already has a history. Returns how many local files it covers.
pub fn baseline(client: &mut Client, files: &[MigrationFile], version: &Version) -> Result<usize> {
    let lock = MigrationLock::acquire(client)?;
    let result = (|| -> Result<_> {
        let rows = read_history(client)?;
        if !rows.is_empty() {
            return Err(MigrateError::BaselineNotEmpty {
                applied: rows.len(),
            }
            .into());
        }
        let mut tx = client.transaction()?;
        history::record_baseline(&mut tx, version)?;
        tx.commit()?;
        Ok(files
            .iter()
            .filter(|f| f.kind == Kind::Versioned && &f.version <= version)
            .count())
    })();
    let released = lock.release(client);
    let covered = result?;
    released?;
    Ok(covered)
}

/// What `pgx repair` changes: history rows re-recorded with the file's checksum (an
/// intentional edit of an applied migration), and rows whose file is gone, forgotten.
#[derive(Debug, Default)]
pub struct RepairPlan {
    pub realign: Vec<String>,
    pub forget: Vec<String>,
}

impl RepairPlan {
    pub fn is_empty(&self) -> bool {
        self.realign.is_empty() && self.forget.is_empty()
    }

    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.realign.is_empty() {
            parts.push(format!(
                "re-record the checksum of {}",
                self.realign.join(", ")
            ));
        }
        if !self.forget.is_empty() {
            parts.push(format!("forget {} (file missing)", self.forget.join(", ")));
        }
        parts.join("; ")
    }
}

/// Work out the repair; with `confirmed`, carry it out in one transaction, else refuse
/// with [`MigrateError::NeedsConfirmation`] saying what it would change.
pub fn repair(client: &mut Client, files: &[MigrationFile], confirmed: bool) -> Result<RepairPlan> {
    let lock = MigrationLock::acquire(client)?;
    let result = (|| -> Result<_> {
        let entries = reconcile(files, &read_history(client)?);
        let mut plan = RepairPlan::default();
        let mut tx = client.transaction()?;
        for entry in &entries {
            match (entry.state, &entry.row, &entry.file) {
                (State::Divergent, Some(row), Some(file)) => {
                    plan.realign.push(file.label());
                    if confirmed {
                        history::realign(&mut tx, row, file)?;
                    }
                }
                (State::Missing, Some(row), None) => {
                    plan.forget.push(entry.label());
                    if confirmed {
                        history::forget(&mut tx, row)?;
                    }
                }
                _ => {}
            }
        }
        if !confirmed && !plan.is_empty() {
            return Err(MigrateError::NeedsConfirmation {
                changes: plan.describe(),
            }
            .into());
        }
        tx.commit()?;
        Ok(plan)
    })();
    let released = lock.release(client);
    let plan = result?;
    released?;
    Ok(plan)
}
