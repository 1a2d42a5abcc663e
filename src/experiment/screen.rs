//! What-if screening with HypoPG, before anything is built.
//!
//! Building a variant can take minutes at the seeds' scale (a GIN index on 88M rows);
//! HypoPG estimates the plan and size of a *hypothetical* btree, BRIN or hash index in
//! milliseconds. A variant whose statements only create such indexes is screened: in one
//! session on a pgx-owned copy of the base (never the base itself: a connection to it
//! would block `CREATE DATABASE ... TEMPLATE base` for the variants' copies), each of its
//! indexes is created with `hypopg_create_index`, and every query form and parameter set
//! is planned with plain `EXPLAIN (FORMAT JSON)` under the reference settings, bound as
//! the engine binds them (`EXPLAIN EXECUTE` for prepared queries). The baseline's
//! estimates come from the same session with no hypothetical index.
//!
//! Which statements are screenable is decided per statement with squawk's parser:
//! `CREATE INDEX` with btree, BRIN or hash (partial, expression and INCLUDE indexes too:
//! HypoPG 1.3 creates them, and sizes a partial index by its predicate's selectivity);
//! `SET`/`RESET` run in the session as the build runs them; `ANALYZE` changes nothing
//! (every build is analyzed anyway). Anything else is *not screenable*, with the reason:
//! GIN, GiST and other access methods (HypoPG has none: hypopg#97), `DROP INDEX`
//! (`hypopg_hide_index` came with HypoPG 1.4), and statements that change tables, their
//! data or layout (ALTER, VACUUM, CLUSTER, DO blocks, re-loads).
//!
//! Without HypoPG on the server, nothing fails: the screening says what is missing and
//! how to install it, and the real run goes on. `analysis::screening` puts the
//! estimates beside the measurements once the real run is done.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use anyhow::Result;
use postgres::Client;
use squawk_syntax::SourceFile;
use squawk_syntax::ast::{self, AstNode};

use super::databases::Copy;
use super::engine::build::{Partitions, relation_sizes};
use super::engine::measure::{self, Statement, explained_statement};
use super::matrix::{Matrix, REFERENCE_SETTINGS, Role};
use super::progress::Progress;
use super::result::{HypotheticalIndex, ScreenedCell, ScreenedVariant, Screening};
use super::settings::{self, Classified, ServerWide};
use crate::db::{RawText, quote_ident};
use crate::error::{Interrupted, describe_pg_error};
use crate::explain::{PlanSummary, parse_explain};
use crate::interrupt::{self, CancelOnInterrupt};
use crate::target::{Target, connect};

/// The extension pgx looks for; set to a name no server has (as the tests do) to see
/// what a server without HypoPG gives.
pub const EXTENSION_ENV: &str = "PGX_SCREEN_EXTENSION";
pub const EXTENSION: &str = "hypopg";

/// Access methods HypoPG 1.3 can create hypothetical indexes for.
pub const METHODS: &[&str] = &["btree", "brin", "hash"];

/// One variant statement as screening sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A `CREATE INDEX` HypoPG can create as a hypothetical index; `declared` is the
    /// index name the statement gives (as the catalog will spell it).
    Index {
        sql: String,
        declared: Option<String>,
        /// Byte range of the table (`ON [ONLY] t`) in `sql`, to size the index on each
        /// partition of a partitioned table.
        table: Option<(usize, usize)>,
    },
    /// `SET` / `RESET`: run in the screening session too, as the build session runs it.
    Session(String),
    /// Nothing a plan sees (`ANALYZE`: every build is analyzed anyway; comments).
    Skip,
}

/// The statements of a variant as screening steps, or why it is not screenable: every
/// statement HypoPG cannot express, the first one named.
pub fn classify(sql: &str) -> std::result::Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    let mut refused = Vec::new();
    for statement in crate::sqlsplit::split(sql) {
        match classify_statement(&statement.sql) {
            Ok(step) => steps.push(step),
            Err(reason) => refused.push(format!("line {}: {reason}", statement.line)),
        }
    }
    match refused.len() {
        0 => Ok(steps),
        1 => Err(refused.remove(0)),
        n => Err(format!(
            "{} (and {} more statement{} HypoPG cannot express)",
            refused[0],
            n - 1,
            if n > 2 { "s" } else { "" }
        )),
    }
}

fn classify_statement(sql: &str) -> std::result::Result<Step, String> {
    let sql = sql.trim();
    let shown = one_line(sql, 70);
    let parse = SourceFile::parse(sql);
    let errors = parse.errors();
    if let Some(error) = errors.first() {
        return Err(format!(
            "`{shown}`: the SQL parser cannot read it ({error}), so pgx cannot tell what it does"
        ));
    }
    let file = parse.tree();
    let stmts: Vec<ast::Stmt> = file.stmts().collect();
    let stmt = match stmts.as_slice() {
        [] => return Ok(Step::Skip),
        [one] => one,
        _ => {
            return Err(format!(
                "`{shown}`: reads as several statements, so pgx cannot tell what it does"
            ));
        }
    };
    let not = |what: &str| Err(format!("`{shown}`: {what}"));
    match stmt {
        ast::Stmt::CreateIndex(index) => {
            let method = index
                .using_method()
                .and_then(|m| m.access_method_ref())
                .map(|m| unquote(&m.syntax().text().to_string()))
                .unwrap_or_else(|| "btree".to_string());
            if !METHODS.contains(&method.as_str()) {
                return not(&format!(
                    "access method {method}; HypoPG creates hypothetical btree, BRIN and hash indexes only (no GIN or GiST: hypopg#97)"
                ));
            }
            let declared = index
                .index()
                .and_then(|i| i.path())
                .and_then(|p| p.segment())
                .map(|s| unquote(&s.syntax().text().to_string()));
            let table = index.table_relation_name().map(|t| {
                let range = t.syntax().text_range();
                (
                    u32::from(range.start()) as usize,
                    u32::from(range.end()) as usize,
                )
            });
            Ok(Step::Index {
                sql: sql.to_string(),
                declared,
                table,
            })
        }
        ast::Stmt::Set(_) | ast::Stmt::Reset(_) => Ok(Step::Session(sql.to_string())),
        ast::Stmt::Analyze(_) | ast::Stmt::EmptyStmt(_) => Ok(Step::Skip),
        ast::Stmt::DropIndex(_) => not(
            "DROP INDEX; hiding an existing index from the planner needs hypopg_hide_index, which came with HypoPG 1.4 (Debian packages 1.3)",
        ),
        ast::Stmt::AlterTable(_) | ast::Stmt::AlterIndex(_) => {
            not("changes a table or index itself (storage, constraints, layout)")
        }
        ast::Stmt::Vacuum(_) | ast::Stmt::Cluster(_) | ast::Stmt::Reindex(_) => not(
            "rewrites or maintains a table or index (layout, bloat), which a hypothetical index cannot express",
        ),
        ast::Stmt::Insert(_)
        | ast::Stmt::Update(_)
        | ast::Stmt::Delete(_)
        | ast::Stmt::Merge(_)
        | ast::Stmt::Truncate(_)
        | ast::Stmt::Copy(_) => not("changes the data"),
        ast::Stmt::Do(_) => not("a DO block runs code pgx cannot see into"),
        ast::Stmt::CreateTable(_)
        | ast::Stmt::CreateTableAs(_)
        | ast::Stmt::DropTable(_)
        | ast::Stmt::CreateMaterializedView(_) => not("creates or drops a table (a layout change)"),
        _ => not("not a CREATE INDEX; HypoPG expresses only new indexes"),
    }
}

/// An identifier as the catalog spells it: a quoted one verbatim, others lower-cased.
fn unquote(text: &str) -> String {
    let text = text.trim();
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => text.to_lowercase(),
    }
}

fn one_line(sql: &str, max: usize) -> String {
    let text: Vec<&str> = sql
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("--"))
        .collect();
    let text = text.join(" ");
    if text.chars().count() > max {
        let head: String = text.chars().take(max).collect();
        format!("{head}…")
    } else {
        text
    }
}

/// What the screening needs from the run.
pub struct Inputs<'a> {
    pub target: &'a Target,
    pub base: &'a str,
    pub experiment: &'a str,
    pub matrix: &'a Matrix,
    /// How the reference settings set is applied.
    pub reference: &'a Classified,
    pub timeout_ms: u64,
}

/// The screening phase. Only an interruption is an error: anything else the server
/// refuses (no HypoPG, no permission, no disk for the copy) is reported in the result,
/// and the run goes on.
pub fn run(inputs: &Inputs, admin: &mut Client, progress: &mut Progress) -> Result<Screening> {
    let started = Instant::now();
    let m = inputs.matrix;
    let mut screening = Screening {
        settings: m
            .settings
            .first()
            .map(|s| s.name.clone())
            .unwrap_or_default(),
        ..Default::default()
    };
    let mut steps = Vec::new();
    for variant in m.variants.iter().filter(|v| v.role != Role::Control) {
        let (screenable, reason, s) = match classify(&variant.sql) {
            Ok(s) => (true, None, s),
            Err(reason) => (false, Some(reason), Vec::new()),
        };
        screening.variants.push(ScreenedVariant {
            name: variant.name.clone(),
            screenable,
            reason,
            indexes: Vec::new(),
        });
        steps.push(s);
    }
    match screen(inputs, admin, progress, &mut screening, &steps) {
        Ok(()) => {}
        Err(err) if err.downcast_ref::<Interrupted>().is_some() => return Err(err),
        Err(err) => screening.unavailable = Some(format!("screening failed: {err:#}")),
    }
    screening.seconds = started.elapsed().as_secs_f64();
    match &screening.unavailable {
        Some(why) => progress.line(&format!("screening: {why}")),
        None => progress.line(&format!(
            "screening: {} of {} variants screenable, {} estimated plans in {:.1}s (HypoPG {})",
            screening.variants.iter().filter(|v| v.screenable).count(),
            screening.variants.len(),
            screening.cells.len(),
            screening.seconds,
            screening.hypopg_version.as_deref().unwrap_or("?")
        )),
    }
    Ok(screening)
}

/// Why HypoPG cannot be used here, and how to install it for this server's version.
fn not_installed(admin: &mut Client, extension: &str) -> Result<String> {
    let version: i32 = admin
        .query_one("SELECT current_setting('server_version_num')::int", &[])?
        .get(0);
    let major = version / 10000;
    Ok(format!(
        "HypoPG is not installed on this server (no {extension} in pg_available_extensions), so nothing was screened; install the package matching the server (PostgreSQL {major}): `apt-get install postgresql-{major}-hypopg` on Debian/Ubuntu, then run again"
    ))
}

fn screen(
    inputs: &Inputs,
    admin: &mut Client,
    progress: &mut Progress,
    screening: &mut Screening,
    steps: &[Vec<Step>],
) -> Result<()> {
    let extension = std::env::var(EXTENSION_ENV)
        .ok()
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| EXTENSION.to_string());
    let available = admin
        .query_opt(
            "SELECT 1 FROM pg_available_extensions WHERE name = $1",
            &[&extension],
        )?
        .is_some();
    if !available {
        screening.unavailable = Some(not_installed(admin, &extension)?);
        return Ok(());
    }
    progress.message("screening: a copy of the base for HypoPG");
    let copy = Copy::create(
        inputs.target,
        admin,
        inputs.base,
        inputs.experiment,
        "screen",
    )?;
    let mut client = connect(&inputs.target.config_for(&copy.name))?;
    if let Err(e) = client.batch_execute(&format!(
        "CREATE EXTENSION IF NOT EXISTS {}",
        quote_ident(&extension)
    )) {
        screening.unavailable = Some(format!(
            "CREATE EXTENSION {extension} failed in pgx's copy of the base: {}; HypoPG is not a trusted extension, so creating it needs a superuser (or run on the embedded cluster)",
            describe_pg_error(&e, None)
        ));
        return Ok(());
    }
    let Some(installed) = client.query_opt(
        "SELECT e.extversion::text, n.nspname::text FROM pg_extension e \
         JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = $1",
        &[&extension],
    )?
    else {
        screening.unavailable = Some(format!(
            "{extension} is not in pg_extension after CREATE EXTENSION"
        ));
        return Ok(());
    };
    screening.hypopg_version = Some(installed.get(0));
    // HypoPG's functions by their schema: a variant's `SET search_path` cannot hide them.
    let ns = quote_ident(&installed.get::<_, String>(1));
    let ns = ns.as_str();
    let reference = inputs.reference;
    // Server-wide reference settings are applied as the rounds apply them, and undone.
    let guard = if reference.server.is_empty() || reference.not_applicable.is_some() {
        None
    } else {
        let (guard, since) =
            ServerWide::apply(connect(&inputs.target.admin_config())?, &reference.server)?;
        settings::wait_for_reload(&mut client, since)?;
        Some(guard)
    };
    let m = inputs.matrix;
    // Matrix position -> position in screening.cells, for the references.
    let mut screened: HashMap<usize, usize> = HashMap::new();
    let variants = m
        .variants
        .iter()
        .enumerate()
        .filter(|(_, v)| v.role != Role::Control);
    for (i, (v, variant)) in variants.enumerate() {
        let sv = &mut screening.variants[i];
        if !sv.screenable && variant.role != Role::Baseline {
            continue;
        }
        interrupt::check()?;
        progress.message(&format!("screening {}", variant.name));
        client.batch_execute(&format!(
            "RESET ALL; DEALLOCATE ALL; SELECT {ns}.hypopg_reset()"
        ))?;
        client.batch_execute(&settings::session_sql(inputs.timeout_ms, &[]))?;
        if sv.screenable
            && let Err(reason) = hypothetical(&mut client, ns, &steps[i], &mut sv.indexes)?
        {
            sv.screenable = false;
            sv.reason = Some(reason);
            sv.indexes.clear();
            client.batch_execute(&format!("SELECT {ns}.hypopg_reset()"))?;
            if variant.role != Role::Baseline {
                continue;
            }
        }
        client.batch_execute(&format!(
            "RESET ALL; {}",
            settings::session_sql(inputs.timeout_ms, &reference.session)
        ))?;
        let names: HashSet<String> = sv.indexes.iter().map(|h| h.name.clone()).collect();
        let partitions = Partitions::read(&mut client)?;
        let relations = relation_sizes(&mut client)?;
        let mut prepared = HashSet::new();
        // A plan does not depend on what is cached: one estimate per query, form and
        // parameter set, in the first cache state that query is measured in (the
        // reference's, warm by default).
        let mut seen = HashSet::new();
        let cells: Vec<usize> = m
            .cells_of(super::matrix::VariantId(v))
            .filter(|&c| {
                let k = m.cells[c];
                k.settings == REFERENCE_SETTINGS && seen.insert((k.query, k.form, k.params))
            })
            .collect();
        for c in cells {
            interrupt::check()?;
            let key = m.cells[c];
            let query = m.query(key.query);
            let name = format!("pgx_s{c}");
            let statement = Statement {
                sql: &m.form(&key).sql,
                params: &m.params(&key).values,
                rollback: query.rollback,
                hide: "",
                prepared: query.prepared.then_some(name.as_str()),
            };
            let (plan, cost, error) = match &reference.not_applicable {
                Some(reason) => (None, None, Some(format!("not applicable: {reason}"))),
                None => match explain(&mut client, &statement, &mut prepared)? {
                    Ok((mut plan, cost)) => {
                        // Partition indexes by their root, as the measured plans name them.
                        partitions.attribute(&mut plan, &relations);
                        (Some(plan), cost, None)
                    }
                    Err(message) => (None, None, Some(message)),
                },
            };
            let uses_hypothetical = plan
                .as_ref()
                .is_some_and(|p| p.index_names.iter().any(|n| names.contains(n)));
            screened.insert(c, screening.cells.len());
            screening.cells.push(ScreenedCell {
                variant: variant.name.clone(),
                cache: m.cache(&key).name().to_string(),
                query: query.name.clone(),
                form: m.form(&key).name.clone(),
                params: m.params(&key).label.clone(),
                reference: None,
                plan,
                cost,
                cost_change: None,
                uses_hypothetical,
                error,
            });
        }
    }
    client.batch_execute(&format!("SELECT {ns}.hypopg_reset()"))?;
    if let Some(guard) = guard {
        guard.undo()?;
    }
    // The estimate each cell is compared with: its measured cell's reference.
    for (&c, &s) in &screened {
        let Some(r) = m
            .reference_of(&m.cells[c])
            .and_then(|r| m.position(&r))
            .and_then(|r| screened.get(&r).copied())
        else {
            continue;
        };
        let base_cost = screening.cells[r].cost;
        let cell = &mut screening.cells[s];
        cell.reference = Some(r);
        cell.cost_change = match (cell.cost, base_cost) {
            (Some(cost), Some(base)) if base > 0.0 => Some(cost / base - 1.0),
            _ => None,
        };
    }
    drop(client);
    drop(copy);
    Ok(())
}

/// A variant's statements in the session: its hypothetical indexes, with what HypoPG
/// says of each. `Ok(Err(reason))` when the server refuses one.
fn hypothetical(
    client: &mut Client,
    ns: &str,
    steps: &[Step],
    out: &mut Vec<HypotheticalIndex>,
) -> Result<std::result::Result<(), String>> {
    for step in steps {
        interrupt::check()?;
        match step {
            Step::Skip => {}
            Step::Session(sql) => {
                if let Err(e) = client.batch_execute(sql) {
                    return Ok(Err(format!(
                        "`{}` failed in the screening session: {}",
                        one_line(sql, 70),
                        describe_pg_error(&e, Some(sql))
                    )));
                }
            }
            Step::Index {
                sql,
                declared,
                table,
            } => {
                let created = client.query_one(
                    &format!(
                        "SELECT indexrelid, indexname::text FROM {ns}.hypopg_create_index($1)"
                    ),
                    &[sql],
                );
                let row = match created {
                    Ok(row) => row,
                    Err(e) => {
                        if interrupt::is_interrupted() {
                            return Err(anyhow::Error::new(Interrupted));
                        }
                        return Ok(Err(format!(
                            "HypoPG refused `{}`: {}",
                            one_line(sql, 70),
                            describe_pg_error(&e, Some(sql))
                        )));
                    }
                };
                let (oid, name): (u32, String) = (row.get(0), row.get(1));
                let facts = client.query_one(
                    &format!(
                        "SELECT format('%I.%I', n.nspname, c.relname), am.amname::text, \
                                {ns}.hypopg_relation_size(h.indexrelid)::bigint, \
                                CASE WHEN $2::text IS NULL THEN NULL ELSE format('%I.%I', n.nspname, $2::text) END, \
                                h.indrelid, c.relkind = 'p' \
                         FROM {ns}.hypopg() h JOIN pg_class c ON c.oid = h.indrelid \
                         JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am am ON am.oid = h.amid \
                         WHERE h.indexrelid = $1"
                    ),
                    &[&oid, declared],
                )?;
                let mut estimated_bytes: i64 = facts.get(2);
                let mut partitions = 0;
                if facts.get::<_, bool>(5)
                    && let Some(range) = table
                    && let Some(sum) = size_on_partitions(client, ns, sql, *range, facts.get(4))?
                {
                    (estimated_bytes, partitions) = sum;
                }
                out.push(HypotheticalIndex {
                    statement: one_line(sql, usize::MAX),
                    name,
                    declared: facts.get(3),
                    table: facts.get(0),
                    method: facts.get(1),
                    estimated_bytes,
                    partitions,
                });
            }
        }
    }
    Ok(Ok(()))
}

/// An index on a partitioned table is one index per partition: sized as the sum of
/// hypothetical indexes on each leaf partition, created for the sizing and dropped again
/// (HypoPG sizes an index on the parent from the parent's own statistics, and a BRIN
/// from its relpages, which a partitioned table does not have: hundreds of MB for a few
/// KB). None when a partition refuses (the parent's estimate stands).
fn size_on_partitions(
    client: &mut Client,
    ns: &str,
    sql: &str,
    (start, end): (usize, usize),
    parent: u32,
) -> Result<Option<(i64, i64)>> {
    let (Some(before), Some(after)) = (sql.get(..start), sql.get(end..)) else {
        return Ok(None);
    };
    let leaves = client.query(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_partition_tree($1::oid::regclass) pt \
         JOIN pg_class c ON c.oid = pt.relid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE pt.isleaf AND c.relkind = 'r' ORDER BY 1",
        &[&parent],
    )?;
    let (mut bytes, mut count) = (0i64, 0i64);
    for leaf in leaves {
        let leaf: String = leaf.get(0);
        let statement = format!("{before}{leaf}{after}");
        let sized = client.query_one(
            &format!(
                "SELECT h.indexrelid, {ns}.hypopg_relation_size(h.indexrelid)::bigint FROM {ns}.hypopg_create_index($1) h"
            ),
            &[&statement],
        );
        let Ok(row) = sized else {
            return Ok(None);
        };
        let oid: u32 = row.get(0);
        bytes += row.get::<_, i64>(1);
        count += 1;
        client.execute(&format!("SELECT {ns}.hypopg_drop_index($1)"), &[&oid])?;
    }
    Ok((count > 0).then_some((bytes, count)))
}

/// One plain EXPLAIN of a cell's statement: the estimated plan and its total cost, or
/// the server's message.
fn explain(
    client: &mut Client,
    statement: &Statement,
    prepared: &mut HashSet<String>,
) -> Result<std::result::Result<(PlanSummary, Option<f64>), String>> {
    if let Some(message) = measure::prepare(client, prepared, statement) {
        return Ok(Err(message));
    }
    let sql = format!(
        "EXPLAIN (SETTINGS, FORMAT JSON) {}",
        explained_statement(statement)
    );
    let params = measure::bound(statement);
    let rows = {
        let _cancel = CancelOnInterrupt::new(client);
        client.query(&sql, &params)
    };
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            if interrupt::is_interrupted() {
                return Err(anyhow::Error::new(Interrupted));
            }
            return Ok(Err(describe_pg_error(&e, Some(statement.sql))));
        }
    };
    let text = rows
        .first()
        .map(|r| r.try_get::<_, RawText>(0))
        .transpose()?
        .map(|t| t.0)
        .unwrap_or_default();
    let explained = match parse_explain(&text) {
        Ok(explained) => explained,
        Err(err) => return Ok(Err(format!("unreadable EXPLAIN output: {err}"))),
    };
    Ok(Ok((explained.summary, total_cost(&text))))
}

/// The top node's `Total Cost` in EXPLAIN's JSON.
fn total_cost(json: &str) -> Option<f64> {
    let doc: serde_json::Value = serde_json::from_str(json).ok()?;
    let root = match &doc {
        serde_json::Value::Array(items) => items.first()?,
        other => other,
    };
    root.get("Plan")?.get("Total Cost")?.as_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(sql: &str) -> String {
        classify(sql).expect_err(sql)
    }

    #[test]
    fn btree_brin_hash_partial_and_expression_indexes_are_screenable() {
        let steps = classify(
            "SET maintenance_work_mem = '256MB';\n\
             CREATE INDEX t_id ON t (id);\n\
             CREATE INDEX \"Mixed\" ON s.t USING BRIN (id);\n\
             CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS x ON ONLY t USING hash (k);\n\
             CREATE INDEX ON t (lower(pad)) WHERE k > 5;\n\
             CREATE INDEX t_cov ON t (k) INCLUDE (id);\n\
             ANALYZE t;",
        )
        .unwrap();
        let declared: Vec<Option<&str>> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Index { declared, .. } => Some(declared.as_deref()),
                _ => None,
            })
            .collect();
        assert_eq!(
            declared,
            [Some("t_id"), Some("Mixed"), Some("x"), None, Some("t_cov")]
        );
        assert!(matches!(&steps[0], Step::Session(s) if s.starts_with("SET")));
        assert_eq!(steps.last(), Some(&Step::Skip));
        assert_eq!(classify("").unwrap(), Vec::new(), "no statements: the base");
    }

    #[test]
    fn what_hypopg_cannot_express_is_not_screenable_with_the_reason() {
        assert!(reason("CREATE INDEX t_trgm ON t USING gin (pad gin_trgm_ops)").contains("gin"));
        assert!(reason("CREATE INDEX ON t USING gist (p)").contains("access method gist"));
        let drop = reason("DROP INDEX t_k;\nCREATE INDEX t_k2 ON t (k);");
        assert!(drop.starts_with("line 1: `DROP INDEX t_k`"), "{drop}");
        assert!(
            drop.contains("hypopg_hide_index") && drop.contains("1.4"),
            "{drop}"
        );
        assert!(reason("VACUUM FULL t").contains("rewrites"));
        assert!(reason("ALTER TABLE t SET (fillfactor = 70)").contains("changes a table"));
        assert!(reason("DO $$ BEGIN PERFORM 1; END $$").contains("DO block"));
        assert!(reason("INSERT INTO t SELECT * FROM t").contains("changes the data"));
        let many = reason("DO $$ BEGIN END $$;\nVACUUM FULL t;\nVACUUM t;");
        assert!(many.contains("and 2 more statements"), "{many}");
    }
}
