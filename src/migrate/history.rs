//! The migration history, read by pgx itself: refinery's table for whole-number
//! versions (refinery's own reader panics on rows it cannot parse, and pgx must not), and
//! pgx's own table for what refinery cannot record: dotted versions (`V1.1`, refinery
//! stores int4), repeatable migrations and the baseline.

use anyhow::{Context, Result};
use postgres::{Client, GenericClient};

use super::error::MigrateError;
use super::files::{Kind, MigrationFile, Version};

/// refinery's table: whole-number `V` / `U` versions.
pub const HISTORY_TABLE: &str = "refinery_schema_history";
/// pgx's table: dotted versions, repeatables (`R__`) and the baseline marker.
pub const PGX_HISTORY_TABLE: &str = "pgx_schema_history";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    Versioned,
    Repeatable,
    /// `pgx baseline VERSION`: versions up to it count as applied.
    Baseline,
}

#[derive(Debug, Clone)]
pub struct AppliedRow {
    pub kind: RowKind,
    /// Empty for repeatables.
    pub version: Version,
    pub name: String,
    pub applied_on: String,
    pub checksum: u64,
    /// Recorded by refinery (true) or in pgx's own table.
    pub by_refinery: bool,
}

fn table_exists(client: &mut impl GenericClient, table: &str) -> Result<bool> {
    Ok(client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])?
        .get(0))
}

fn parse_checksum(checksum: &str, what: &str) -> Result<u64> {
    checksum.trim().parse().map_err(|_| {
        MigrateError::History(format!(
            "the row for {what} has checksum {checksum:?}, which is not a number"
        ))
        .into()
    })
}

/// Rows of both history tables; empty when they do not exist yet (nothing is created).
pub fn read_history(client: &mut Client) -> Result<Vec<AppliedRow>> {
    let mut out = Vec::new();
    if table_exists(client, HISTORY_TABLE)? {
        let rows = client
            .query(
                &format!(
                    "SELECT version, coalesce(name, ''), coalesce(applied_on, ''), coalesce(checksum, '') \
                     FROM {HISTORY_TABLE} ORDER BY version"
                ),
                &[],
            )
            .context("cannot read the migration history")?;
        for row in rows {
            // try_get: a table edited by hand (or refinery's int8 versions) is an error
            // naming the table, not a panic.
            let version: i32 = row.try_get(0).map_err(|e| damaged(HISTORY_TABLE, &e))?;
            let checksum: String = row.try_get(3).map_err(|e| damaged(HISTORY_TABLE, &e))?;
            let version = u64::try_from(version).map_err(|_| {
                MigrateError::History(format!("{HISTORY_TABLE} has a negative version {version}"))
            })?;
            out.push(AppliedRow {
                kind: RowKind::Versioned,
                version: Version::parse(&version.to_string())?,
                name: row.try_get(1).map_err(|e| damaged(HISTORY_TABLE, &e))?,
                applied_on: row.try_get(2).map_err(|e| damaged(HISTORY_TABLE, &e))?,
                checksum: parse_checksum(&checksum, &format!("version {version}"))?,
                by_refinery: true,
            });
        }
    }
    if table_exists(client, PGX_HISTORY_TABLE)? {
        let rows = client
            .query(
                &format!(
                    "SELECT kind, version, name, to_char(applied_on AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), checksum \
                     FROM {PGX_HISTORY_TABLE} ORDER BY kind, version, name"
                ),
                &[],
            )
            .context("cannot read pgx's migration history")?;
        for row in rows {
            let text = |i: usize| -> Result<String> {
                row.try_get(i)
                    .map_err(|e| damaged(PGX_HISTORY_TABLE, &e).into())
            };
            let kind = text(0)?;
            let version = text(1)?;
            let name = text(2)?;
            let kind = match kind.as_str() {
                "versioned" => RowKind::Versioned,
                "repeatable" => RowKind::Repeatable,
                "baseline" => RowKind::Baseline,
                other => {
                    return Err(MigrateError::History(format!(
                        "{PGX_HISTORY_TABLE} has a row of unknown kind {other:?}"
                    ))
                    .into());
                }
            };
            let version = if version.is_empty() {
                Version::default()
            } else {
                Version::parse(&version)?
            };
            let checksum = text(4)?;
            out.push(AppliedRow {
                kind,
                checksum: parse_checksum(&checksum, &name)?,
                version,
                name,
                applied_on: text(3)?,
                by_refinery: false,
            });
        }
    }
    Ok(out)
}

fn damaged(table: &str, err: &postgres::Error) -> MigrateError {
    MigrateError::History(format!(
        "{table} does not have the columns pgx expects: {err}"
    ))
}

/// What pgx (or refinery, for pgx) was doing with a history table when the server refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryOp {
    Create,
    Read,
    Write,
}

/// The failure of a statement on a history table (refinery's `CREATE TABLE IF NOT EXISTS
/// refinery_schema_history`, pgx's own table, their reads and writes), said as such: the
/// user's migration is not what failed, and no position inside pgx's statement is shown.
/// For SQLSTATE 42501 the hint is the GRANT the role lacks. `client` must be usable (out of
/// any failed transaction): it is asked for the role and the schema.
pub fn history_error(
    client: &mut impl GenericClient,
    table: &str,
    op: HistoryOp,
    err: &postgres::Error,
    migration: Option<&MigrationFile>,
) -> MigrateError {
    let names = client
        .query_one(
            "SELECT quote_ident(current_user),                     (SELECT quote_ident(n.nspname) FROM pg_class c                      JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)),                     quote_ident(current_schema())",
            &[&table],
        )
        .ok();
    let text = |i: usize| -> Option<String> { names.as_ref().and_then(|r| r.try_get(i).ok()) };
    let role = text(0).unwrap_or_else(|| "<role>".into());
    let schema = text(1).or_else(|| text(2));
    let doing = match (op, &schema) {
        (HistoryOp::Create, Some(schema)) => {
            format!("create the history table {table} in schema {schema}")
        }
        (HistoryOp::Create, None) => format!("create the history table {table}"),
        (HistoryOp::Read, _) => format!("read the history table {table}"),
        (HistoryOp::Write, _) => format!("record the migration in the history table {table}"),
    };
    let qualified = match &schema {
        Some(schema) => format!("{schema}.{table}"),
        None => table.to_string(),
    };
    let denied = err.code() == Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE);
    let advice = match (op, &schema) {
        (HistoryOp::Create, Some(schema)) if denied => {
            format!("GRANT CREATE ON SCHEMA {schema} TO {role}, or run as its owner")
        }
        (HistoryOp::Create, None) => format!(
            "no schema of {role}'s search_path exists to create it in: create one, or set search_path (ALTER ROLE {role} SET search_path = ...)"
        ),
        (HistoryOp::Read, _) if denied => {
            format!("GRANT SELECT ON {qualified} TO {role}, or run as the table's owner")
        }
        (_, _) if denied => format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON {qualified} TO {role}, or run as the table's owner"
        ),
        _ => "this is pgx's own statement, not the migration's: fix what the server says, then run `pgx apply` again".into(),
    };
    MigrateError::HistoryTable {
        doing,
        reason: crate::error::describe_pg_error(err, None)
            .trim_start_matches("ERROR: ")
            .to_string(),
        advice,
        not_run: migration.map(|f| f.path.clone()),
    }
}

/// Create pgx's table if it is missing (inside the caller's transaction, if any).
pub fn ensure_pgx_table(client: &mut impl GenericClient) -> Result<(), postgres::Error> {
    client.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {PGX_HISTORY_TABLE} (\
           key text PRIMARY KEY,\
           kind text NOT NULL CHECK (kind IN ('versioned', 'repeatable', 'baseline')),\
           version text NOT NULL,\
           name text NOT NULL,\
           checksum text NOT NULL,\
           applied_on timestamptz NOT NULL DEFAULT now())"
    ))?;
    Ok(())
}

/// Record (or, for a repeatable, re-record) a migration pgx applied itself.
pub fn record(
    client: &mut impl GenericClient,
    file: &MigrationFile,
) -> Result<(), postgres::Error> {
    ensure_pgx_table(client)?;
    let kind = match file.kind {
        Kind::Repeatable => "repeatable",
        _ => "versioned",
    };
    let version = match file.kind {
        Kind::Repeatable => String::new(),
        _ => file.version.to_string(),
    };
    client.execute(
        &format!(
            "INSERT INTO {PGX_HISTORY_TABLE} (key, kind, version, name, checksum) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (key) DO UPDATE SET name = excluded.name, checksum = excluded.checksum, applied_on = now()"
        ),
        &[&file.identity(), &kind, &version, &file.name, &file.checksum.to_string()],
    )?;
    Ok(())
}

/// The baseline marker: versions up to `version` count as applied.
pub fn record_baseline(client: &mut impl GenericClient, version: &Version) -> Result<()> {
    ensure_pgx_table(client)?;
    client.execute(
        &format!(
            "INSERT INTO {PGX_HISTORY_TABLE} (key, kind, version, name, checksum) \
             VALUES ('B:baseline', 'baseline', $1, '<< pgx baseline >>', '0')"
        ),
        &[&version.to_string()],
    )?;
    Ok(())
}

/// Make a history row say what the file says now (`pgx repair`).
pub fn realign(
    client: &mut impl GenericClient,
    row: &AppliedRow,
    file: &MigrationFile,
) -> Result<()> {
    if row.by_refinery {
        let version = row.version.as_refinery().ok_or_else(|| {
            MigrateError::History(format!("refinery row {} is not an int4", row.version))
        })?;
        client.execute(
            &format!("UPDATE {HISTORY_TABLE} SET name = $1, checksum = $2 WHERE version = $3"),
            &[&file.name, &file.checksum.to_string(), &version],
        )?;
    } else {
        client.execute(
            &format!("UPDATE {PGX_HISTORY_TABLE} SET name = $1, checksum = $2 WHERE key = $3"),
            &[&file.name, &file.checksum.to_string(), &file.identity()],
        )?;
    }
    Ok(())
}

/// Forget a history row whose file is gone (`pgx repair`).
pub fn forget(client: &mut impl GenericClient, row: &AppliedRow) -> Result<()> {
    if row.by_refinery {
        let version = row.version.as_refinery().ok_or_else(|| {
            MigrateError::History(format!("refinery row {} is not an int4", row.version))
        })?;
        client.execute(
            &format!("DELETE FROM {HISTORY_TABLE} WHERE version = $1"),
            &[&version],
        )?;
    } else {
        let key = match row.kind {
            RowKind::Repeatable => format!("R:{}", row.name),
            _ => format!("V:{}", row.version),
        };
        client.execute(
            &format!("DELETE FROM {PGX_HISTORY_TABLE} WHERE key = $1"),
            &[&key],
        )?;
    }
    Ok(())
}

/// Indexes a failed `CREATE INDEX CONCURRENTLY` left behind (`pg_index.indisvalid` false).
pub fn invalid_indexes(client: &mut Client) -> Result<Vec<String>> {
    Ok(invalid_indexes_with_tables(client)?
        .into_iter()
        .map(|i| i.index)
        .collect())
}

/// An INVALID index, with the names a migration would use for it and its table.
pub struct InvalidIndex {
    /// `schema.index`, quoted where needed.
    pub index: String,
    pub index_name: String,
    pub table_name: String,
}

pub fn invalid_indexes_with_tables(client: &mut Client) -> Result<Vec<InvalidIndex>> {
    let rows = client.query(
        "SELECT format('%I.%I', n.nspname, c.relname), c.relname::text, t.relname::text \
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_class t ON t.oid = i.indrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE NOT i.indisvalid ORDER BY 1",
        &[],
    )?;
    rows.iter()
        .map(|r| {
            Ok(InvalidIndex {
                index: r.try_get(0)?,
                index_name: r.try_get(1)?,
                table_name: r.try_get(2)?,
            })
        })
        .collect()
}
