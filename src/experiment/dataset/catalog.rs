//! What the bulk-load path takes away before the load and puts back after it: the
//! indexes (plain and constraint-backed) and foreign keys of the tables the migrations
//! created, read from the catalog as exact definitions (`pg_get_indexdef`,
//! `pg_get_constraintdef`), and the jobs that rebuild them.
//!
//! Which tables: every table that exists after the migrations (refinery's history
//! excepted). Which of them a step fills cannot be known before it runs (steps are
//! arbitrary SQL: DO blocks, dynamic `EXECUTE format(...)`), and guessing from
//! statistics after the fact is too late: the indexes would already have been maintained
//! row by row. Stripping every table is always right and costs nothing for the ones no
//! step fills: dropping an index of an empty table and rebuilding it take milliseconds.
//!
//! Rebuilt the way `pg_dump` restores, so every index keeps its exact name and the work
//! spreads over connections: a partitioned index becomes a shell (`CREATE INDEX ... ON
//! ONLY`, `ALTER TABLE ONLY ... ADD CONSTRAINT`), each partition's index is built on its
//! own (a primary key or unique constraint as `CREATE UNIQUE INDEX`, which takes only a
//! SHARE lock, then `ADD CONSTRAINT ... USING INDEX`), and the partitions' indexes are
//! attached to the shell. Foreign keys come back with `ALTER TABLE ... ADD CONSTRAINT`,
//! which validates every row in one join.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result};
use postgres::Client;

use super::jobs::{Job, Kind, Lock};
use crate::db::quote_literal;

/// One table the migrations created.
#[derive(Debug, Clone)]
pub struct Table {
    pub oid: u32,
    /// `schema.name`, quoted.
    pub name: String,
    /// The table's own name, unquoted (as server messages name it).
    pub relname: String,
    pub partitioned: bool,
    /// The partitioned table at the top of this table's tree (itself when it has none).
    pub root: u32,
}

/// An index-backed constraint (primary key, unique, exclusion).
#[derive(Debug, Clone)]
struct IndexConstraint {
    /// Unqualified, quoted.
    name: String,
    kind: char,
    def: String,
    deferrable: bool,
    deferred: bool,
    comment: Option<String>,
}

#[derive(Debug, Clone)]
struct IndexNode {
    oid: u32,
    /// `schema.index`, quoted.
    name: String,
    /// Unqualified, quoted.
    bare_name: String,
    table: u32,
    partitioned: bool,
    def: String,
    tablespace: Option<String>,
    constraint: Option<IndexConstraint>,
    clustered: bool,
    replica_identity: bool,
    comment: Option<String>,
    children: Vec<IndexNode>,
}

#[derive(Debug, Clone)]
struct ForeignKey {
    table: u32,
    referenced: u32,
    /// Unqualified, quoted.
    name: String,
    def: String,
    comment: Option<String>,
}

/// The migrations' tables and what the bulk path drops from them.
pub struct Snapshot {
    pub tables: Vec<Table>,
    indexes: Vec<IndexNode>,
    foreign_keys: Vec<ForeignKey>,
}

impl Snapshot {
    /// Read the catalog of the freshly migrated database. `skip` is a table to leave out
    /// (the migration history).
    pub fn read(client: &mut Client, skip: &str) -> Result<Snapshot> {
        let rows = client.query(
            "SELECT c.oid, format('%I.%I', n.nspname, c.relname), c.relkind = 'p', \
                    (SELECT i.inhparent FROM pg_inherits i WHERE i.inhrelid = c.oid), c.relname::text \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p' \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg\\_%' AND c.relname <> $1 \
             ORDER BY c.oid",
            &[&skip],
        )?;
        let parents: HashMap<u32, Option<u32>> =
            rows.iter().map(|r| (r.get(0), r.get(3))).collect();
        let root_of = |mut oid: u32| {
            // Bounded by the depth of the partition tree; a cycle is impossible in the
            // catalog, the bound only keeps a corrupt one from hanging pgx.
            for _ in 0..64 {
                match parents.get(&oid).copied().flatten() {
                    Some(parent) if parents.contains_key(&parent) => oid = parent,
                    _ => break,
                }
            }
            oid
        };
        let tables: Vec<Table> = rows
            .iter()
            .map(|r| Table {
                oid: r.get(0),
                name: r.get(1),
                relname: r.get(4),
                partitioned: r.get(2),
                root: root_of(r.get(0)),
            })
            .collect();
        let oids: Vec<u32> = tables.iter().map(|t| t.oid).collect();

        let rows = client.query(
            "SELECT ic.oid, format('%I.%I', n.nspname, ic.relname), quote_ident(ic.relname), \
                    i.indrelid, ic.relkind = 'I', pg_get_indexdef(ic.oid), \
                    (SELECT quote_ident(t.spcname) FROM pg_tablespace t WHERE t.oid = ic.reltablespace), \
                    quote_ident(c.conname), c.contype::text, pg_get_constraintdef(c.oid), \
                    coalesce(c.condeferrable, false), coalesce(c.condeferred, false), \
                    i.indisclustered, i.indisreplident, obj_description(ic.oid, 'pg_class'), \
                    obj_description(c.oid, 'pg_constraint'), \
                    (SELECT h.inhparent FROM pg_inherits h WHERE h.inhrelid = ic.oid), i.indisvalid \
             FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
             JOIN pg_namespace n ON n.oid = ic.relnamespace \
             LEFT JOIN pg_constraint c ON c.conindid = ic.oid AND c.conrelid = i.indrelid \
                                      AND c.contype IN ('p', 'u', 'x') \
             WHERE i.indrelid = ANY($1) ORDER BY ic.oid",
            &[&oids],
        )?;
        let mut nodes: HashMap<u32, (IndexNode, Option<u32>, bool)> = HashMap::new();
        let mut order = Vec::new();
        for r in &rows {
            let kind: Option<String> = r.get(8);
            let constraint = match (r.get::<_, Option<String>>(7), kind) {
                (Some(name), Some(kind)) => Some(IndexConstraint {
                    name,
                    kind: kind.chars().next().unwrap_or('u'),
                    def: r.get(9),
                    deferrable: r.get(10),
                    deferred: r.get(11),
                    comment: r.get(15),
                }),
                _ => None,
            };
            let node = IndexNode {
                oid: r.get(0),
                name: r.get(1),
                bare_name: r.get(2),
                table: r.get(3),
                partitioned: r.get(4),
                def: r.get(5),
                tablespace: r.get(6),
                constraint,
                clustered: r.get(12),
                replica_identity: r.get(13),
                comment: r.get(14),
                children: Vec::new(),
            };
            order.push(node.oid);
            nodes.insert(node.oid, (node, r.get(16), r.get(17)));
        }
        // Build the trees bottom-up: a child is moved into its parent's node.
        let parent_of: HashMap<u32, u32> = nodes
            .iter()
            .filter_map(|(oid, (_, parent, _))| {
                parent.filter(|p| nodes.contains_key(p)).map(|p| (*oid, p))
            })
            .collect();
        let depth = |mut oid: u32| {
            let mut d = 0;
            while let Some(p) = parent_of.get(&oid) {
                oid = *p;
                d += 1;
                if d > 64 {
                    break;
                }
            }
            d
        };
        let mut by_depth: Vec<u32> = order.clone();
        by_depth.sort_by_key(|oid| std::cmp::Reverse(depth(*oid)));
        for oid in by_depth {
            if let Some(parent) = parent_of.get(&oid).copied()
                && let Some((node, _, _)) = nodes.remove(&oid)
                && let Some((parent_node, _, _)) = nodes.get_mut(&parent)
            {
                parent_node.children.push(node);
            }
        }
        let mut indexes: Vec<IndexNode> = order
            .iter()
            .filter_map(|oid| nodes.remove(oid))
            // An invalid index (a failed CREATE INDEX CONCURRENTLY, a partitioned index
            // missing a partition) is left as it is: rebuilt, it would come back valid.
            .filter_map(|(node, _, valid)| (valid && tree_valid(&node)).then_some(node))
            .collect();
        for node in &mut indexes {
            sort_children(node);
        }

        let rows = client.query(
            "SELECT c.conrelid, c.confrelid, quote_ident(c.conname), pg_get_constraintdef(c.oid), \
                    obj_description(c.oid, 'pg_constraint') \
             FROM pg_constraint c WHERE c.contype = 'f' AND c.conparentid = 0 \
               AND c.conrelid = ANY($1) ORDER BY c.oid",
            &[&oids],
        )?;
        let foreign_keys = rows
            .iter()
            .map(|r| ForeignKey {
                table: r.get(0),
                referenced: r.get(1),
                name: r.get(2),
                def: r.get(3),
                comment: r.get(4),
            })
            .collect();
        Ok(Snapshot {
            tables,
            indexes,
            foreign_keys,
        })
    }

    pub fn index_count(&self) -> usize {
        fn count(node: &IndexNode) -> usize {
            1 + node.children.iter().map(count).sum::<usize>()
        }
        self.indexes.iter().map(count).sum()
    }

    pub fn foreign_key_count(&self) -> usize {
        self.foreign_keys.len()
    }

    /// What the bulk path dropped that a failed step may have expected: the foreign keys,
    /// key constraints and indexes `sql` or the server's `message` name (as whole words,
    /// in any case), and when `keys_of_named_tables` (the server found no key to refer
    /// to) the keys of the tables `message` names. Unquoted names, in catalog order.
    pub fn dropped_named(
        &self,
        sql: &str,
        message: &str,
        keys_of_named_tables: bool,
    ) -> Vec<String> {
        let sql = sql.to_lowercase();
        let message = message.to_lowercase();
        let named = |name: &str| {
            let name = unquote(name).to_lowercase();
            names_word(&sql, &name) || names_word(&message, &name)
        };
        let mut out: Vec<String> = Vec::new();
        let mut add = |name: &str| {
            let name = unquote(name);
            if !out.contains(&name) {
                out.push(name);
            }
        };
        for fk in &self.foreign_keys {
            if named(&fk.name) {
                add(&fk.name);
            }
        }
        fn walk<'a>(node: &'a IndexNode, all: &mut Vec<&'a IndexNode>) {
            all.push(node);
            for child in &node.children {
                walk(child, all);
            }
        }
        let mut nodes = Vec::new();
        for node in &self.indexes {
            walk(node, &mut nodes);
        }
        for node in nodes {
            let name = node
                .constraint
                .as_ref()
                .map_or(node.bare_name.as_str(), |c| c.name.as_str());
            let key_of_named_table = keys_of_named_tables
                && node.constraint.as_ref().is_some_and(|c| c.kind != 'x')
                && self.tables.iter().any(|t| {
                    t.oid == node.table
                        && message.contains(&format!("\"{}\"", t.relname.to_lowercase()))
                });
            if named(name) || key_of_named_table {
                add(name);
            }
        }
        out
    }

    fn table(&self, oid: u32) -> Result<&Table> {
        self.tables
            .iter()
            .find(|t| t.oid == oid)
            .with_context(|| format!("table {oid} is not in the snapshot"))
    }

    /// Oids of the plain tables (partitions included) that hold rows.
    pub fn leaves(&self) -> impl Iterator<Item = &Table> {
        self.tables.iter().filter(|t| !t.partitioned)
    }

    /// Leaves of the tree `root`.
    fn leaves_of(&self, root: u32) -> Vec<u32> {
        self.leaves()
            .filter(|t| t.root == root)
            .map(|t| t.oid)
            .collect()
    }

    /// Drop every foreign key, then every index-backed constraint, then every index.
    pub fn drop_all(&self, client: &mut Client) -> Result<()> {
        let mut sql = String::new();
        for fk in &self.foreign_keys {
            sql.push_str(&format!(
                "ALTER TABLE {} DROP CONSTRAINT {};\n",
                self.table(fk.table)?.name,
                fk.name
            ));
        }
        for node in &self.indexes {
            match &node.constraint {
                Some(c) => sql.push_str(&format!(
                    "ALTER TABLE {} DROP CONSTRAINT {};\n",
                    self.table(node.table)?.name,
                    c.name
                )),
                None => sql.push_str(&format!("DROP INDEX {};\n", node.name)),
            }
        }
        if sql.is_empty() {
            return Ok(());
        }
        client
            .batch_execute(&format!("BEGIN;\n{sql}COMMIT;"))
            .map_err(|e| {
                let _ = client.batch_execute("ROLLBACK");
                anyhow::anyhow!(
                    "bulk load: cannot drop the migrations' indexes and foreign keys: {}",
                    crate::error::describe_pg_error(&e, None)
                )
            })
    }

    /// Every index and index-backed constraint as the migrations create them, one
    /// statement each on the top table (PostgreSQL builds the partitions' indexes), in
    /// catalog order: how a single session rebuilds them (the benchmark's limit).
    pub fn recreate_statements(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for node in &self.indexes {
            let mut sql = tablespace_prefix(node);
            match &node.constraint {
                Some(c) => sql.push_str(&format!(
                    "ALTER TABLE {} ADD CONSTRAINT {} {}",
                    self.table(node.table)?.name,
                    c.name,
                    c.def
                )),
                None => sql.push_str(&node.def.replacen(" ON ONLY ", " ON ", 1)),
            }
            out.push(sql);
        }
        Ok(out)
    }

    /// Statements that recreate the partitioned indexes' shells, parents before children:
    /// instant (no data), run before the builds.
    pub fn shells(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for node in &self.indexes {
            self.shell(node, &mut out)?;
        }
        Ok(out)
    }

    fn shell(&self, node: &IndexNode, out: &mut Vec<String>) -> Result<()> {
        if !node.partitioned {
            return Ok(());
        }
        let mut sql = tablespace_prefix(node);
        match &node.constraint {
            Some(c) => sql.push_str(&format!(
                "ALTER TABLE ONLY {} ADD CONSTRAINT {} {}",
                self.table(node.table)?.name,
                c.name,
                c.def
            )),
            None => sql.push_str(&node.def),
        }
        out.push(sql);
        for child in &node.children {
            self.shell(child, out)?;
        }
        Ok(())
    }

    /// The rebuild as jobs: every leaf index built on its own; per tree, the constraints
    /// attached, the leaf indexes attached to their partitioned parents, comments, cluster
    /// and replica-identity marks restored; then the foreign keys.
    /// `sizes` are the leaves' sizes in bytes, for the order (largest first).
    pub fn rebuild_jobs(
        &self,
        sizes: &HashMap<u32, i64>,
        jobs: &mut Vec<Job>,
        foreign_keys: bool,
    ) -> Result<()> {
        let size_of = |table: u32| sizes.get(&table).copied().unwrap_or(0);
        // Per tree root: the builds it must wait for, and its finishing statements.
        let mut builds_of_root: HashMap<u32, Vec<usize>> = HashMap::new();
        let mut finish_of_root: HashMap<u32, Vec<String>> = HashMap::new();
        let mut leaves_built = Vec::new();
        for node in &self.indexes {
            self.collect_leaves(node, &mut leaves_built);
        }
        leaves_built.sort_by_key(|n| std::cmp::Reverse(size_of(n.table)));
        for node in leaves_built {
            let table = self.table(node.table)?;
            let mut sql = tablespace_prefix(node);
            let exclusion = node.constraint.as_ref().filter(|c| c.kind == 'x');
            let lock = match exclusion {
                Some(c) => {
                    sql.push_str(&format!(
                        "ALTER TABLE ONLY {} ADD CONSTRAINT {} {}",
                        table.name, c.name, c.def
                    ));
                    Lock::Exclusive
                }
                None => {
                    sql.push_str(&node.def);
                    Lock::Shared
                }
            };
            let id = jobs.len();
            jobs.push(Job {
                kind: Kind::Index,
                label: format!("index {}", node.name),
                sql: vec![sql],
                tables: vec![(node.table, lock)],
                after: Vec::new(),
                maintenance: true,
                weight: size_of(node.table),
            });
            builds_of_root.entry(table.root).or_default().push(id);
        }
        for node in &self.indexes {
            let root = self.table(node.table)?.root;
            let finish = finish_of_root.entry(root).or_default();
            self.finish(node, None, finish)?;
        }
        let mut finish_job_of_root: HashMap<u32, usize> = HashMap::new();
        let mut roots: Vec<u32> = finish_of_root.keys().copied().collect();
        roots.sort_unstable();
        for root in roots {
            let statements = finish_of_root.remove(&root).unwrap_or_default();
            if statements.is_empty() {
                continue;
            }
            let id = jobs.len();
            jobs.push(Job {
                kind: Kind::Constraints,
                label: format!("constraints of {}", self.table(root)?.name),
                sql: statements,
                tables: self
                    .leaves_of(root)
                    .into_iter()
                    .chain(std::iter::once(root))
                    .map(|t| (t, Lock::Exclusive))
                    .collect(),
                after: builds_of_root.get(&root).cloned().unwrap_or_default(),
                maintenance: false,
                weight: 0,
            });
            finish_job_of_root.insert(root, id);
        }
        let foreign_keys = if foreign_keys {
            &self.foreign_keys[..]
        } else {
            &[]
        };
        for fk in foreign_keys {
            let table = self.table(fk.table)?;
            let mut sql = vec![format!(
                "ALTER TABLE {} ADD CONSTRAINT {} {}",
                table.name, fk.name, fk.def
            )];
            if let Some(comment) = &fk.comment {
                sql.push(format!(
                    "COMMENT ON CONSTRAINT {} ON {} IS {}",
                    fk.name,
                    table.name,
                    quote_literal(comment)
                ));
            }
            let mut roots = vec![table.root];
            // A key referencing a table outside the snapshot waits for nothing there.
            if let Ok(referenced) = self.table(fk.referenced) {
                roots.push(referenced.root);
            }
            roots.dedup();
            let mut after = Vec::new();
            let mut tables = Vec::new();
            for root in &roots {
                after.extend(builds_of_root.get(root).into_iter().flatten().copied());
                after.extend(finish_job_of_root.get(root).copied());
                tables.extend(
                    self.leaves_of(*root)
                        .into_iter()
                        .chain(std::iter::once(*root))
                        .map(|t| (t, Lock::Exclusive)),
                );
            }
            jobs.push(Job {
                kind: Kind::ForeignKey,
                label: format!("foreign key {} on {}", fk.name, table.name),
                sql,
                tables,
                after,
                maintenance: false,
                weight: size_of(fk.table),
            });
        }
        Ok(())
    }

    fn collect_leaves<'a>(&self, node: &'a IndexNode, out: &mut Vec<&'a IndexNode>) {
        if node.partitioned {
            for child in &node.children {
                self.collect_leaves(child, out);
            }
        } else {
            out.push(node);
        }
    }

    /// After the builds: constraints on leaf indexes, attachments (children first),
    /// comments, CLUSTER ON and REPLICA IDENTITY marks.
    fn finish(&self, node: &IndexNode, parent: Option<&str>, out: &mut Vec<String>) -> Result<()> {
        for child in &node.children {
            self.finish(child, Some(&node.name), out)?;
        }
        let table = &self.table(node.table)?.name;
        if !node.partitioned
            && let Some(c) = node.constraint.as_ref().filter(|c| c.kind != 'x')
        {
            let kind = if c.kind == 'p' {
                "PRIMARY KEY"
            } else {
                "UNIQUE"
            };
            let mut sql = format!(
                "ALTER TABLE ONLY {table} ADD CONSTRAINT {} {kind} USING INDEX {}",
                c.name, node.bare_name
            );
            if c.deferrable {
                sql.push_str(" DEFERRABLE");
                if c.deferred {
                    sql.push_str(" INITIALLY DEFERRED");
                }
            }
            out.push(sql);
        }
        if let Some(parent) = parent {
            out.push(format!(
                "ALTER INDEX {parent} ATTACH PARTITION {}",
                node.name
            ));
        }
        if let Some(comment) = &node.comment {
            out.push(format!(
                "COMMENT ON INDEX {} IS {}",
                node.name,
                quote_literal(comment)
            ));
        }
        if let Some(c) = &node.constraint
            && let Some(comment) = &c.comment
        {
            out.push(format!(
                "COMMENT ON CONSTRAINT {} ON {table} IS {}",
                c.name,
                quote_literal(comment)
            ));
        }
        if node.clustered {
            out.push(format!("ALTER TABLE {table} CLUSTER ON {}", node.bare_name));
        }
        if node.replica_identity {
            out.push(format!(
                "ALTER TABLE {table} REPLICA IDENTITY USING INDEX {}",
                node.bare_name
            ));
        }
        Ok(())
    }

    /// The tree roots (partitioned tables at the top, and plain tables), each with its
    /// leaves: the unit of ANALYZE (a partitioned table's ANALYZE covers its partitions).
    pub fn trees(&self) -> Vec<(&Table, Vec<u32>)> {
        let roots: HashSet<u32> = self.tables.iter().map(|t| t.root).collect();
        self.tables
            .iter()
            .filter(|t| roots.contains(&t.oid))
            .map(|t| (t, self.leaves_of(t.oid)))
            .collect()
    }
}

fn tree_valid(node: &IndexNode) -> bool {
    // The validity of children is checked by PostgreSQL for a valid partitioned parent;
    // a leaf with a parent is valid when the parent is.
    node.children.iter().all(tree_valid)
}

fn sort_children(node: &mut IndexNode) {
    node.children.sort_by_key(|c| c.oid);
    for child in &mut node.children {
        sort_children(child);
    }
}

/// `SET default_tablespace` for an index outside the default one (`pg_get_indexdef`
/// leaves the tablespace out, as `pg_dump` expects).
fn tablespace_prefix(node: &IndexNode) -> String {
    match &node.tablespace {
        Some(space) => format!("SET LOCAL default_tablespace = {space};\n"),
        None => String::new(),
    }
}

/// `schema.table` of a qualified name, for messages.
pub fn describe(tables: &[Table], oid: u32) -> String {
    tables
        .iter()
        .find(|t| t.oid == oid)
        .map_or_else(|| oid.to_string(), |t| t.name.clone())
}

/// A name as `quote_ident` gave it, without the quotes.
fn unquote(name: &str) -> String {
    match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => name.to_string(),
    }
}

/// Does `text` have `word` as a whole word (not inside a longer identifier)?
fn names_word(text: &str, word: &str) -> bool {
    if word.is_empty() {
        return false;
    }
    let ident = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}
