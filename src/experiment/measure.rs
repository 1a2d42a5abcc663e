//! Measuring one cell: warmup runs, then repeated `EXPLAIN (ANALYZE, BUFFERS, TIMING OFF)`
//! for headline numbers (per-node timing inflates them), plus one TIMING ON run for the
//! per-node plan. DML runs inside a transaction that is rolled back.

use anyhow::Result;
use postgres::Client;

use super::result::{Cell, Sample};
use crate::db::{RawText, TextParam, as_params, quote_literal};
use crate::error::{Interrupted, describe_pg_error};
use crate::explain::{PlanSummary, parse_explain};
use crate::interrupt::{self, CancelOnInterrupt};

pub struct CellPlan<'a> {
    pub sql: &'a str,
    pub params: &'a [TextParam],
    pub rollback: bool,
    /// Run as a prepared statement (`PREPARE` once, `EXPLAIN EXECUTE`), so
    /// `plan_cache_mode` decides between custom and generic plans.
    pub prepared: bool,
    pub warmup: usize,
    pub repeat: usize,
}

const PREPARED_NAME: &str = "pgx_cell";

/// What EXPLAIN wraps: the SQL itself, or EXECUTE of its prepared statement. EXECUTE's
/// arguments cannot be bound through the protocol (the server parses `EXPLAIN EXECUTE`
/// with no parameters), so they are passed as quoted literals, which the server coerces
/// to the prepared statement's parameter types exactly as bound text would be.
fn explained_statement(plan: &CellPlan) -> String {
    if !plan.prepared {
        return plan.sql.to_string();
    }
    let args: Vec<String> = plan
        .params
        .iter()
        .map(|p| {
            p.0.as_deref()
                .map_or_else(|| "NULL".to_string(), quote_literal)
        })
        .collect();
    if args.is_empty() {
        format!("EXECUTE {PREPARED_NAME}")
    } else {
        format!("EXECUTE {PREPARED_NAME}({})", args.join(", "))
    }
}

/// Outcome of one EXPLAIN: a parsed plan, or a message for the report.
enum Run {
    Plan(Box<PlanSummary>),
    Failed(String),
}

fn explain_once(client: &mut Client, plan: &CellPlan, timing: bool) -> Result<Run> {
    let sql = format!(
        "EXPLAIN (ANALYZE, BUFFERS, SETTINGS, TIMING {}, FORMAT JSON) {}",
        if timing { "ON" } else { "OFF" },
        explained_statement(plan)
    );
    let params = if plan.prepared {
        Vec::new()
    } else {
        as_params(plan.params)
    };
    let _cancel = CancelOnInterrupt::new(client);
    let rows = if plan.rollback {
        let mut tx = client.transaction()?;
        let rows = tx.query(&sql, &params);
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
            let timed_out = err.code() == Some(&postgres::error::SqlState::QUERY_CANCELED);
            return Ok(Run::Failed(if timed_out {
                "timed out (runs.timeout)".to_string()
            } else {
                describe_pg_error(&err, Some(plan.sql))
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
        Ok(summary) => Run::Plan(Box::new(summary)),
        Err(err) => Run::Failed(format!("unreadable EXPLAIN output: {err}")),
    })
}

/// Run a cell; `tick` is called once per EXPLAIN (for the progress bar).
pub fn measure(
    client: &mut Client,
    plan: &CellPlan,
    cell: &mut Cell,
    tick: &mut dyn FnMut(),
) -> Result<()> {
    if plan.prepared {
        let prepare = format!("DEALLOCATE ALL; PREPARE {PREPARED_NAME} AS {}", plan.sql);
        if let Err(e) = client.batch_execute(&prepare) {
            cell.error = Some(format!(
                "PREPARE failed: {}",
                describe_pg_error(&e, Some(plan.sql))
            ));
            return Ok(());
        }
    }
    let result = measure_runs(client, plan, cell, tick);
    if plan.prepared {
        client.batch_execute("DEALLOCATE ALL")?;
    }
    result
}

fn measure_runs(
    client: &mut Client,
    plan: &CellPlan,
    cell: &mut Cell,
    tick: &mut dyn FnMut(),
) -> Result<()> {
    for _ in 0..plan.warmup {
        interrupt::check()?;
        let run = explain_once(client, plan, false)?;
        tick();
        if let Run::Failed(message) = run {
            cell.error = Some(message);
            return Ok(());
        }
    }
    for _ in 0..plan.repeat {
        interrupt::check()?;
        let run = explain_once(client, plan, false)?;
        tick();
        match run {
            Run::Plan(summary) => {
                let signature = match cell.signatures.iter().position(|s| *s == summary.signature) {
                    Some(i) => i,
                    None => {
                        cell.signatures.push(summary.signature.clone());
                        cell.signatures.len() - 1
                    }
                };
                cell.samples.push(Sample {
                    planning_ms: summary.planning_ms,
                    execution_ms: summary.execution_ms,
                    buffers: summary.buffers.clone(),
                    heap_fetches: summary.heap_fetches,
                    signature,
                });
                cell.plan = Some(*summary);
            }
            Run::Failed(message) => {
                cell.error = Some(message);
                return Ok(());
            }
        }
    }
    interrupt::check()?;
    if let Run::Plan(summary) = explain_once(client, plan, true)? {
        cell.timed_plan = Some(summary.tree);
    }
    tick();
    Ok(())
}

/// A fingerprint of what a statement did, to check that alternative forms agree:
/// rows returned (count and a hash of the sorted rows) or rows affected, plus the
/// `verify` query's rows afterwards. Runs inside a transaction that is rolled back.
pub fn fingerprint(
    client: &mut Client,
    sql: &str,
    params: &[TextParam],
    verify: Option<&str>,
) -> Result<String> {
    let params = as_params(params);
    let _cancel = CancelOnInterrupt::new(client);
    let mut tx = client.transaction()?;
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
