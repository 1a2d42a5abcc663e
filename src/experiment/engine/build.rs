//! Building variants: the statements of a variant of its own, into its cache entry
//! (`crate::experiment::variants`), and the shared copy every index-only variant is built
//! on together (`crate::experiment::sharing`); each statement timed (index build times),
//! and what the catalog says about the result (sizes, which partitions belong to which
//! table).
//!
//! Statements run near the bulk-load limit: consecutive statements that may run in a
//! transaction block run in one, so with `wal_level = minimal` (the embedded cluster's)
//! rows written into a table created in it skip WAL — a layout variant's re-load of 20M
//! rows into its new table, and the indexes built on it. `VACUUM`, `CONCURRENTLY` and
//! the like run on their own, as PostgreSQL requires.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use anyhow::Result;
use postgres::{Client, GenericClient};
use serde::{Deserialize, Serialize};

use crate::error::{Interrupted, describe_pg_error, described};
use crate::experiment::databases::{self, LockSession};
use crate::experiment::result::{RelationKind, RelationSize, Timing};
use crate::experiment::variants::{self, Entry};
use crate::explain::PlanSummary;
use crate::sqlsplit;
use crate::target::{Target, connect};

/// Run a variant's statements, each timed; consecutive ones that may run in a
/// transaction block in one transaction. ANALYZE afterwards when `analyze` (so the
/// variant is planned on fresh statistics); a variant without statements keeps the
/// base's statistics as they are, so the baseline and its A/A control are planned on
/// exactly the same ones (ANALYZE samples rows at random).
pub fn run_statements(client: &mut Client, sql: &str, analyze: bool) -> Result<Vec<Timing>> {
    client.batch_execute("SET jit = off")?;
    let statements = sqlsplit::split(sql);
    let mut timings = Vec::new();
    let mut i = 0;
    while i < statements.len() {
        // The longest run of transaction-safe statements from here (at least one).
        let mut end = i + 1;
        if crate::experiment::dataset::transaction_safe(&statements[i].sql) {
            while end < statements.len()
                && crate::experiment::dataset::transaction_safe(&statements[end].sql)
            {
                end += 1;
            }
        }
        let group = &statements[i..end];
        let in_transaction = group.len() > 1;
        if in_transaction {
            client.batch_execute("BEGIN")?;
        }
        for statement in group {
            let ran = timed(client, &statement.sql);
            match ran {
                Ok(seconds) => timings.push(Timing {
                    label: one_line(&statement.sql),
                    seconds,
                }),
                Err(err) => {
                    if in_transaction {
                        let _ = client.batch_execute("ROLLBACK");
                    }
                    if err.downcast_ref::<Interrupted>().is_some() {
                        return Err(err);
                    }
                    return Err(anyhow::anyhow!(
                        "statement at line {} of its SQL: {err:#}",
                        statement.line
                    ));
                }
            }
        }
        if in_transaction {
            let started = Instant::now();
            client.batch_execute("COMMIT")?;
            // The commit flushes what skipped WAL: the last statement's cost.
            if let Some(last) = timings.last_mut() {
                last.seconds += started.elapsed().as_secs_f64();
            }
        }
        i = end;
    }
    if analyze && !timings.is_empty() {
        client.batch_execute("ANALYZE")?;
    }
    Ok(timings)
}

/// One statement, timed; Ctrl-C cancels it.
fn timed(client: &mut Client, sql: &str) -> Result<f64> {
    crate::interrupt::check()?;
    let started = Instant::now();
    let _cancel = crate::interrupt::CancelOnInterrupt::new(client);
    client.batch_execute(sql).map_err(|e| {
        if crate::interrupt::is_interrupted() {
            return anyhow::Error::new(Interrupted);
        }
        described(describe_pg_error(&e, Some(sql)), e)
    })?;
    Ok(started.elapsed().as_secs_f64())
}

pub fn one_line(sql: &str) -> String {
    let text: Vec<&str> = sql
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("--"))
        .collect();
    text.join(" ")
}

/// An object a shared variant added: hidden from every other variant's cells.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Object {
    /// "index" or "statistics".
    pub kind: String,
    /// Schema-qualified and quoted, as `DROP INDEX` / `DROP STATISTICS` take it.
    pub name: String,
}

/// A variant built on the shared copy.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Member {
    pub variant: String,
    /// Its statements as run (what a later run's member must match to reuse the copy).
    #[serde(default)]
    pub sql: Vec<String>,
    pub statements: Vec<Timing>,
    pub objects: Vec<Object>,
    pub error: Option<String>,
}

/// The shared copy's cache entry: the base with every member's objects.
pub struct Shared {
    pub template: String,
    pub members: Vec<Member>,
    pub cached: bool,
    /// Holds the entry's in-use lock while the run uses it.
    pub locks: Option<LockSession>,
}

/// Build (or find in the cache) the shared copy of `base` with every member's
/// statements (`creates`: name and statements, in order). A member whose statement
/// fails is recorded as failed (its objects dropped again); the others stand.
#[allow(clippy::too_many_arguments)]
pub fn shared(
    target: &Target,
    admin: &mut Client,
    base: &str,
    experiment: &str,
    name: &str,
    creates: &[(String, Vec<(usize, String)>)],
    rebuild: bool,
    on_member: &mut dyn FnMut(&str),
) -> Result<Shared> {
    // A shared copy built earlier for more of this experiment's variants serves a run of
    // fewer (`--only`): the others' objects are hidden from every cell too.
    if !rebuild && let Some(found) = superset(admin, base, creates)? {
        let mut locks = LockSession::open(target)?;
        locks.lock_shared(&databases::in_use_lock(&found))?;
        // Still there, now that it cannot be evicted under us?
        if let Some(entry) = variants::entry_of(admin, &found)? {
            let entry = variants::touch(admin, &found, entry)?;
            return Ok(Shared {
                template: found,
                members: entry.shared,
                cached: true,
                locks: Some(locks),
            });
        }
    }
    let name = name.to_string();
    let mut locks = LockSession::open(target)?;
    let build_lock = format!("build:{name}");
    locks.lock(&build_lock)?;
    let built = (|| -> Result<(Vec<Member>, bool)> {
        databases::drop_owned_database(admin, &name)?;
        databases::check_room(
            admin,
            base,
            "the shared copy's build",
            databases::Peak::AddsObjects,
        )?;
        databases::create_marked(admin, &name, Some(base), variants::BUILDING)?;
        let members = (|| -> Result<Vec<Member>> {
            let mut client = connect(&target.config_for(&name))?;
            client.batch_execute("SET jit = off")?;
            let mut members = Vec::new();
            for (variant, statements) in creates {
                on_member(variant);
                members.push(member(&mut client, variant, statements)?);
            }
            analyze_for_new_statistics(&mut client)?;
            Ok(members)
        })();
        let members = match members {
            Ok(members) => members,
            Err(err) => {
                let _ = databases::drop_owned_database(admin, &name);
                return Err(err);
            }
        };
        let entry = Entry {
            base: base.to_string(),
            experiment: experiment.to_string(),
            variant: "shared copy".into(),
            statements: members.iter().flat_map(|m| m.statements.clone()).collect(),
            used_at: variants::now(),
            shared: members.clone(),
        };
        variants::mark(admin, &name, &entry)?;
        Ok((members, false))
    })();
    let in_use = match &built {
        Ok(_) => locks.lock_shared(&databases::in_use_lock(&name)),
        Err(_) => Ok(()),
    };
    let unlocked = locks.unlock(&build_lock);
    let (members, cached) = built?;
    in_use?;
    unlocked?;
    // An earlier shared copy of this experiment on this base, of other variants or SQL.
    variants::drop_stale(admin, base, experiment, "shared copy", &name)?;
    Ok(Shared {
        template: name,
        members,
        cached,
        locks: Some(locks),
    })
}

/// A complete shared copy of `base` whose members include every one of `creates` with
/// the same statements.
fn superset(
    admin: &mut Client,
    base: &str,
    creates: &[(String, Vec<(usize, String)>)],
) -> Result<Option<String>> {
    for (name, entry) in variants::entries(admin)? {
        if entry.base != base || entry.shared.is_empty() {
            continue;
        }
        let covers = creates.iter().all(|(variant, sql)| {
            entry.shared.iter().any(|m| {
                &m.variant == variant
                    && m.sql.len() == sql.len()
                    && m.sql.iter().zip(sql).all(|(a, (_, b))| a == b)
            })
        });
        if covers {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// One member's statements on the shared copy, and the objects they added.
fn member(client: &mut Client, variant: &str, statements: &[(usize, String)]) -> Result<Member> {
    let before = objects(client)?;
    let mut out = Member {
        variant: variant.to_string(),
        sql: statements.iter().map(|(_, s)| s.clone()).collect(),
        ..Member::default()
    };
    for (line, statement) in statements {
        match timed(client, statement) {
            Ok(seconds) => out.statements.push(Timing {
                label: one_line(statement),
                seconds,
            }),
            Err(err) if err.downcast_ref::<Interrupted>().is_some() => return Err(err),
            Err(err) => {
                out.error = Some(format!("statement at line {line} of its SQL: {err:#}"));
                break;
            }
        }
    }
    let before: HashSet<Object> = before.into_iter().collect();
    out.objects = objects(client)?
        .into_iter()
        .filter(|o| !before.contains(o))
        .collect();
    if out.error.is_some() {
        // What it did create goes again: a failed variant hides nothing from the others.
        client.batch_execute(&drop_sql(&out.objects))?;
        out.objects.clear();
    }
    Ok(out)
}

/// The user's indexes (not the ones a partitioned index made on each partition) and
/// extended statistics objects, in a stable order.
fn objects(client: &mut impl GenericClient) -> Result<Vec<Object>> {
    let rows = client.query(
        "SELECT 'index', format('%I.%I', n.nspname, c.relname) FROM pg_class c \
           JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('i', 'I') AND NOT c.relispartition \
           AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' \
         UNION ALL \
         SELECT 'statistics', format('%I.%I', n.nspname, s.stxname) FROM pg_statistic_ext s \
           JOIN pg_namespace n ON n.oid = s.stxnamespace \
         ORDER BY 1, 2",
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|r| Object {
            kind: r.get(0),
            name: r.get(1),
        })
        .collect())
}

/// New expression indexes and statistics objects need ANALYZE of their table; plain
/// column indexes do not (the planner reads the table's column statistics), and
/// analyzing would re-sample the shared copy away from the base the control keeps.
fn analyze_for_new_statistics(client: &mut Client) -> Result<()> {
    let tables: Vec<String> = client
        .query(
            "SELECT DISTINCT format('%I.%I', n.nspname, t.relname) FROM pg_class t \
               JOIN pg_namespace n ON n.oid = t.relnamespace \
             WHERE t.oid IN (SELECT indrelid FROM pg_index WHERE indexprs IS NOT NULL \
                             UNION SELECT stxrelid FROM pg_statistic_ext) \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
            &[],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for table in tables {
        client.batch_execute(&format!("ANALYZE {table}"))?;
    }
    Ok(())
}

/// `DROP INDEX ...; DROP STATISTICS ...;` of `objects` (empty for none).
pub fn drop_sql(objects: &[Object]) -> String {
    let names = |kind: &str| -> Vec<&str> {
        objects
            .iter()
            .filter(|o| o.kind == kind)
            .map(|o| o.name.as_str())
            .collect()
    };
    let mut sql = String::new();
    for (kind, statement) in [("index", "DROP INDEX"), ("statistics", "DROP STATISTICS")] {
        let list = names(kind);
        if !list.is_empty() {
            sql.push_str(&format!("{statement} {};", list.join(", ")));
        }
    }
    sql
}

/// Partition (or partition index) name -> its root: plans name the pieces, people think
/// in the tables and indexes they created.
#[derive(Default, Clone)]
pub struct Partitions {
    tables: HashMap<String, String>,
    indexes: HashMap<String, String>,
}

impl Partitions {
    /// Which partitions (and partition indexes) of the connected database belong to
    /// which root.
    pub fn read(client: &mut impl GenericClient) -> Result<Partitions> {
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

fn partition_parents(
    client: &mut impl GenericClient,
    kind: char,
) -> Result<HashMap<String, String>> {
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
pub fn relation_sizes(client: &mut impl GenericClient) -> Result<Vec<RelationSize>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hiding_drops_indexes_and_statistics_in_two_statements() {
        let objects = [
            Object {
                kind: "index".into(),
                name: "public.a".into(),
            },
            Object {
                kind: "statistics".into(),
                name: "public.s".into(),
            },
            Object {
                kind: "index".into(),
                name: "\"X\".\"b c\"".into(),
            },
        ];
        assert_eq!(
            drop_sql(&objects),
            "DROP INDEX public.a, \"X\".\"b c\";DROP STATISTICS public.s;"
        );
        assert_eq!(drop_sql(&[]), "");
    }
}
