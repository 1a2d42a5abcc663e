//! The build phase: a variant's own copy of the base, its statements timed one by one
//! (index build times), statistics, and what the catalog says about the result (sizes,
//! which partitions belong to which table).

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Result;
use postgres::Client;

use crate::error::{Interrupted, describe_pg_error};
use crate::experiment::databases::Copy;
use crate::experiment::matrix::Variant;
use crate::experiment::result::{RelationKind, RelationSize, Timing};
use crate::experiment::variants;
use crate::explain::PlanSummary;
use crate::sqlsplit;
use crate::target::{Target, connect};

/// A built variant: its copy (dropped with this value), what its statements took, and
/// the catalog facts the measurement needs.
pub struct Built {
    pub copy: Copy,
    pub config: postgres::Config,
    pub statements: Vec<Timing>,
    /// The statements ran in an earlier run (the variant cache); their times are from then.
    pub cached: bool,
    /// The variant-cache entry the copy was made from (None: made from the base).
    pub template: Option<String>,
    /// Holds the entry's in-use lock while the variant is measured.
    pub _locks: Option<crate::experiment::databases::LockSession>,
    pub relations: Vec<RelationSize>,
    pub partitions: Partitions,
}

/// Partition (or partition index) name -> its root: plans name the pieces, people think
/// in the tables and indexes they created.
#[derive(Default)]
pub struct Partitions {
    tables: HashMap<String, String>,
    indexes: HashMap<String, String>,
}

pub fn variant(
    target: &Target,
    admin: &mut Client,
    base: &str,
    experiment: &str,
    variant: &Variant,
    rebuild: bool,
) -> Result<Built> {
    let request = variants::Request {
        target,
        base,
        experiment,
        variant,
        rebuild,
    };
    let prepared = variants::prepare(admin, &request, &mut |client| {
        run_statements(client, &variant.sql)
    })?;
    let copy = Copy::create(
        target,
        admin,
        &prepared.template,
        experiment,
        &copy_tag(variant),
    )?;
    let config = target.config_for(&copy.name);
    let mut client = connect(&config)?;
    let statements = prepared.statements;
    let relations = relation_sizes(&mut client)?;
    let partitions = Partitions {
        tables: partition_parents(&mut client, 'r')?,
        indexes: partition_parents(&mut client, 'i')?,
    };
    Ok(Built {
        copy,
        config,
        statements,
        cached: prepared.cached,
        template: (prepared.template != base).then(|| prepared.template.clone()),
        _locks: prepared.locks,
        relations,
        partitions,
    })
}

/// What names a variant's copy database: its name, or `aa_control` for the control.
fn copy_tag(variant: &Variant) -> String {
    variant
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Each statement timed on its own, then ANALYZE so the variant is planned on fresh
/// statistics. A variant without SQL keeps the base's statistics as they are, so the
/// baseline and its A/A control are planned on exactly the same ones (ANALYZE samples
/// rows at random).
fn run_statements(client: &mut Client, sql: &str) -> Result<Vec<Timing>> {
    client.batch_execute("SET jit = off")?;
    let mut timings = Vec::new();
    let statements = sqlsplit::split(sql);
    for statement in &statements {
        crate::interrupt::check()?;
        let started = Instant::now();
        let _cancel = crate::interrupt::CancelOnInterrupt::new(client);
        client.batch_execute(&statement.sql).map_err(|e| {
            if crate::interrupt::is_interrupted() {
                return anyhow::Error::new(Interrupted);
            }
            anyhow::anyhow!(
                "statement at line {} of its SQL: {}",
                statement.line,
                describe_pg_error(&e, Some(&statement.sql))
            )
        })?;
        timings.push(Timing {
            label: one_line(&statement.sql),
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    if !statements.is_empty() {
        client.batch_execute("ANALYZE")?;
    }
    Ok(timings)
}

fn one_line(sql: &str) -> String {
    let text: Vec<&str> = sql
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("--"))
        .collect();
    text.join(" ")
}

impl Partitions {
    /// Which partitions (and partition indexes) of the connected database belong to
    /// which root.
    pub fn read(client: &mut Client) -> Result<Partitions> {
        Ok(Partitions {
            tables: partition_parents(client, 'r')?,
            indexes: partition_parents(client, 'i')?,
        })
    }

    /// Plan facts in the names people use: partition indexes and tables by their root,
    /// partitions scanned out of the total the catalog knows.
    pub fn attribute(&self, summary: &mut PlanSummary, relations: &[RelationSize]) -> u64 {
        summary.index_names = rename(&summary.index_names, &self.indexes);
        // The catalog knows which scanned tables are partitions; the plan text alone
        // does not always (a DELETE's pruned partition).
        let partitions = summary
            .relations
            .iter()
            .filter(|r| self.tables.contains_key(*r))
            .count() as u64;
        summary.partitions_scanned = partitions.saturating_sub(summary.never_executed);
        summary.relations = rename(&summary.relations, &self.tables);
        summary
            .relations
            .iter()
            .filter_map(|r| {
                relations
                    .iter()
                    .find(|x| x.kind == RelationKind::Table && x.name.ends_with(&format!(".{r}")))
            })
            .map(|x| x.partitions.max(0) as u64)
            .sum()
    }
}

fn partition_parents(client: &mut Client, kind: char) -> Result<HashMap<String, String>> {
    let rows = client.query(
        "SELECT c.relname::text, r.relname::text FROM pg_class c JOIN pg_class r ON r.oid = pg_partition_root(c.oid) \
         WHERE c.relkind = $1 AND c.relispartition",
        &[&(kind as i8)],
    )?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

fn rename(names: &[String], parents: &HashMap<String, String>) -> Vec<String> {
    let mut out: Vec<String> = names
        .iter()
        .map(|n| parents.get(n).unwrap_or(n).clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Size of every user table and index, summed over partitions.
pub fn relation_sizes(client: &mut Client) -> Result<Vec<RelationSize>> {
    let rows = client.query(
        "WITH rels AS ( \
           SELECT c.oid, c.relkind, format('%I.%I', n.nspname, c.relname) AS name, \
                  coalesce((SELECT format('%I.%I', tn.nspname, t.relname) FROM pg_index i \
                            JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace \
                            WHERE i.indexrelid = c.oid), format('%I.%I', n.nspname, c.relname)) AS tbl, \
                  coalesce(am.amname::text, '') AS method \
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_am am ON am.oid = c.relam \
           WHERE c.relkind IN ('r', 'p', 'i', 'I') AND NOT c.relispartition \
             AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' \
             AND n.nspname NOT LIKE 'pg_temp%') \
         SELECT relkind IN ('i', 'I'), name, tbl, method, \
           CASE WHEN relkind = 'i' THEN pg_relation_size(r.oid) WHEN relkind = 'r' THEN pg_table_size(r.oid) \
                ELSE (SELECT coalesce(sum(CASE WHEN r.relkind = 'I' THEN pg_relation_size(pt.relid) \
                                               ELSE pg_table_size(pt.relid) END), 0) \
                      FROM pg_partition_tree(r.oid) pt WHERE pt.isleaf) END::bigint, \
           (SELECT count(*) FROM pg_partition_tree(r.oid) pt WHERE pt.isleaf AND pt.relid <> r.oid) \
         FROM rels r WHERE tbl NOT LIKE '%refinery_schema_history' ORDER BY 1, 3, 2",
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|r| RelationSize {
            kind: if r.get::<_, bool>(0) {
                RelationKind::Index
            } else {
                RelationKind::Table
            },
            name: r.get(1),
            table: r.get(2),
            method: r.get(3),
            bytes: r.get(4),
            partitions: r.get(5),
        })
        .collect())
}
