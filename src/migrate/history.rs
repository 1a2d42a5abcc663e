//! refinery's history table, read by pgx itself: refinery's own reader panics on rows it
//! cannot parse, and pgx must not.

use anyhow::{Context, Result};
use postgres::Client;

use crate::error::fail;

pub const HISTORY_TABLE: &str = "refinery_schema_history";

#[derive(Debug, Clone)]
pub struct AppliedRow {
    pub version: i32,
    pub name: String,
    pub applied_on: String,
    pub checksum: u64,
}

/// Rows of the history table; empty when it does not exist yet (nothing is created).
pub fn read_history(client: &mut Client) -> Result<Vec<AppliedRow>> {
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&HISTORY_TABLE])?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            &format!(
                "SELECT version, coalesce(name, ''), coalesce(applied_on, ''), coalesce(checksum, '') \
                 FROM {HISTORY_TABLE} ORDER BY version"
            ),
            &[],
        )
        .context("cannot read the migration history")?;
    rows.iter()
        .map(|row| {
            let checksum: String = row.get(3);
            let version: i32 = row.get(0);
            Ok(AppliedRow {
                version,
                name: row.get(1),
                applied_on: row.get(2),
                checksum: checksum.parse().map_err(|_| {
                    fail(
                        format!(
                            "{HISTORY_TABLE} row for version {version} has checksum {checksum:?}, which is not a number"
                        ),
                        "the history table was edited by hand: restore the row refinery wrote, or delete it and re-apply",
                    )
                })?,
            })
        })
        .collect()
}

/// Indexes a failed `CREATE INDEX CONCURRENTLY` left behind (`pg_index.indisvalid` false).
pub fn invalid_indexes(client: &mut Client) -> Result<Vec<String>> {
    let rows = client.query(
        "SELECT format('%I.%I', n.nspname, c.relname) \
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE NOT i.indisvalid ORDER BY 1",
        &[],
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
