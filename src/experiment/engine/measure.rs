//! One run of one cell: `EXPLAIN (ANALYZE, BUFFERS, SETTINGS, TIMING OFF)` on the
//! cell's own backend (per-node timing inflates the headline numbers; one TIMING ON run
//! per cell gives the per-node plan). DML runs inside a transaction that is rolled back;
//! so does every run of a variant on a shared copy, after the statements that hide what
//! the variant lacks (see `crate::experiment::sharing`).

use std::collections::HashSet;

use anyhow::Result;
use postgres::Client;

use crate::db::{RawText, TextParam, as_params, quote_literal};
use crate::error::{Interrupted, describe_pg_error, described};
use crate::explain::{Explained, parse_explain};
use crate::interrupt::{self, CancelOnInterrupt};
use crate::target::connect;

/// A connection to one variant's database under one settings set: settings are set
/// once, prepared statements stay prepared for as long as it lives.
pub struct Session {
    pub client: Client,
    prepared: HashSet<String>,
    /// Server-clock time of the last configuration reload this backend has seen.
    pub seen_reload: f64,
    /// The cells (matrix positions) whose statement this backend has primed.
    pub primed: HashSet<usize>,
    /// When the engine last used it (its counter), to close the least recently used.
    pub last_used: u64,
}

impl Session {
    pub fn open(config: &postgres::Config, setup_sql: &str) -> Result<Session> {
        let mut client = connect(config)?;
        client
            .batch_execute(setup_sql)
            .map_err(|e| described(describe_pg_error(&e, Some(setup_sql)), e))?;
        // I/O read times in EXPLAIN where the role may turn them on (a superuser setting;
        // the embedded cluster has it on already).
        let _ = client.batch_execute("SET track_io_timing = on");
        Ok(Session {
            client,
            prepared: HashSet::new(),
            seen_reload: 0.0,
            primed: HashSet::new(),
            last_used: 0,
        })
    }
}

/// What one cell runs.
pub struct Statement<'a> {
    pub sql: &'a str,
    pub params: &'a [TextParam],
    pub rollback: bool,
    /// Run first in the statement's transaction (dropping what the variant lacks on a
    /// shared copy); empty for none.
    pub hide: &'a str,
    /// Run as this prepared statement (`PREPARE` once per session, `EXPLAIN EXECUTE`), so
    /// `plan_cache_mode` decides between custom and generic plans, each cell with its own
    /// plan cache history.
    pub prepared: Option<&'a str>,
}

/// Outcome of one EXPLAIN: a parsed plan, or a message for the report.
pub enum Run {
    Plan(Box<Explained>),
    Failed(String),
}

/// What EXPLAIN wraps: the SQL itself, or EXECUTE of its prepared statement. EXECUTE's
/// arguments cannot be bound through the protocol (the server parses `EXPLAIN EXECUTE`
/// with no parameters), so they are passed as quoted literals, which the server coerces
/// to the prepared statement's parameter types exactly as bound text would be.
pub(crate) fn explained_statement(statement: &Statement) -> String {
    let Some(name) = statement.prepared else {
        return statement.sql.to_string();
    };
    let args: Vec<String> = statement
        .params
        .iter()
        .map(|p| {
            p.0.as_deref()
                .map_or_else(|| "NULL".to_string(), quote_literal)
        })
        .collect();
    if args.is_empty() {
        format!("EXECUTE {name}")
    } else {
        format!("EXECUTE {name}({})", args.join(", "))
    }
}

/// `PREPARE` a prepared cell's statement once per connection (`prepared`: the names
/// prepared on it); the failure's message if it fails.
pub(crate) fn prepare(
    client: &mut Client,
    prepared: &mut HashSet<String>,
    statement: &Statement,
) -> Option<String> {
    let name = statement.prepared?;
    if prepared.contains(name) {
        return None;
    }
    let prepare = format!("PREPARE {name} AS {}", statement.sql);
    if let Err(e) = client.batch_execute(&prepare) {
        return Some(format!(
            "PREPARE failed: {}",
            describe_pg_error(&e, Some(statement.sql))
        ));
    }
    prepared.insert(name.to_string());
    None
}

/// The protocol parameters: none for `EXECUTE`, whose arguments are in its text.
pub(crate) fn bound<'a>(statement: &'a Statement) -> Vec<&'a (dyn postgres::types::ToSql + Sync)> {
    if statement.prepared.is_some() {
        Vec::new()
    } else {
        as_params(statement.params)
    }
}

/// PostgreSQL's plan cache builds this many custom plans of a prepared statement before
/// it considers the generic one (`plan_cache_mode = auto`).
pub const CUSTOM_PLANS_BEFORE_GENERIC: usize = 5;

/// Plan the statement without running it (plain `EXPLAIN`): fills a fresh backend's
/// catalog caches, and counts as an execution in a prepared statement's plan cache. Some
/// message when the statement fails (the cell then fails with it).
pub fn prime(session: &mut Session, statement: &Statement) -> Result<Option<String>> {
    if let Some(message) = prepare(&mut session.client, &mut session.prepared, statement) {
        return Ok(Some(message));
    }
    let sql = format!("EXPLAIN (FORMAT JSON) {}", explained_statement(statement));
    let params = bound(statement);
    let client = &mut session.client;
    let _cancel = CancelOnInterrupt::new(client);
    let planned = if statement.hide.is_empty() {
        client.query(&sql, &params)
    } else {
        client.transaction().and_then(|mut tx| {
            tx.batch_execute(statement.hide)?;
            tx.query(&sql, &params)
        })
    };
    match planned {
        Ok(_) => Ok(None),
        Err(_) if interrupt::is_interrupted() => Err(anyhow::Error::new(Interrupted)),
        // The server ended the session: the run stops (a partial report), not the cell.
        Err(err) if crate::error::session_ended(&err) => Err(anyhow::Error::new(err)),
        Err(err) => Ok(Some(describe_pg_error(&err, Some(statement.sql)))),
    }
}

/// One EXPLAIN ANALYZE of the statement; Ctrl-C cancels it.
pub fn explain(session: &mut Session, statement: &Statement, timing: bool) -> Result<Run> {
    if let Some(message) = prepare(&mut session.client, &mut session.prepared, statement) {
        return Ok(Run::Failed(message));
    }
    let sql = format!(
        "EXPLAIN (ANALYZE, BUFFERS, SETTINGS, TIMING {}, FORMAT JSON) {}",
        if timing { "ON" } else { "OFF" },
        explained_statement(statement)
    );
    let params = bound(statement);
    let client = &mut session.client;
    let _cancel = CancelOnInterrupt::new(client);
    let rows = if statement.rollback || !statement.hide.is_empty() {
        let mut tx = client.transaction()?;
        let rows = match tx.batch_execute(statement.hide) {
            Ok(()) => tx.query(&sql, &params),
            Err(e) => Err(e),
        };
        drop(tx); // rolls back
        rows
    } else {
        client.query(&sql, &params)
    };
    let rows = match rows {
        Ok(rows) => rows,
        Err(err) => {
            if interrupt::is_interrupted() {
                return Err(anyhow::Error::new(Interrupted));
            }
            // The server ended the session (a killed backend, a restart): the run stops
            // with what it measured (a partial report); the cell did not fail.
            if crate::error::session_ended(&err) {
                return Err(anyhow::Error::new(err));
            }
            let timed_out = err.code() == Some(&postgres::error::SqlState::QUERY_CANCELED);
            return Ok(Run::Failed(if timed_out {
                "timed out (runs.timeout)".to_string()
            } else {
                describe_pg_error(&err, Some(statement.sql))
            }));
        }
    };
    let text = rows
        .first()
        .map(|r| r.try_get::<_, RawText>(0))
        .transpose()?
        .map(|t| t.0)
        .unwrap_or_default();
    Ok(match parse_explain(&text) {
        Ok(explained) => Run::Plan(Box::new(explained)),
        Err(err) => Run::Failed(format!("unreadable EXPLAIN output: {err}")),
    })
}

/// A fingerprint of what a statement did, to check that alternative forms agree:
/// rows returned (count and a hash of the sorted rows) or rows affected, plus the
/// `verify` query's rows afterwards. Runs inside a transaction that is rolled back.
pub fn fingerprint(
    client: &mut Client,
    hide: &str,
    sql: &str,
    params: &[TextParam],
    verify: Option<&str>,
) -> Result<String> {
    let params = as_params(params);
    let _cancel = CancelOnInterrupt::new(client);
    let mut tx = client.transaction()?;
    tx.batch_execute(hide)?;
    let returns_rows = !tx.prepare(sql)?.columns().is_empty();
    let wrapped = format!(
        "SELECT count(*)::text || ' rows, md5 ' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '-') FROM ({sql}) t"
    );
    let mut print = if returns_rows {
        // Data-modifying WITH cannot be a subquery: fall back to the row count.
        let mut sp = tx.transaction()?;
        match sp.query_one(&wrapped, &params) {
            Ok(row) => {
                let text: String = row.get(0);
                sp.commit()?;
                text
            }
            Err(_) => {
                drop(sp);
                format!("{} rows", tx.query(sql, &params)?.len())
            }
        }
    } else {
        format!("{} rows affected", tx.execute(sql, &params)?)
    };
    if let Some(verify) = verify {
        let verify_wrapped = format!(
            "SELECT count(*)::text || ' rows, md5 ' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '-') FROM ({verify}) t"
        );
        let text: String = tx.query_one(&verify_wrapped, &[])?.get(0);
        print.push_str(&format!("; verify: {text}"));
    }
    drop(tx);
    Ok(print)
}
