//! `pgx promote EXPERIMENT VARIANT`: the winning variant's SQL as the next migration,
//! written the way production needs it.
//!
//! An experiment builds its variant on an idle copy, so it may lock anything; a migration
//! runs against live traffic. Each statement of the variant is parsed (squawk's
//! PostgreSQL parser, as `pgx lint` uses) and, by kind:
//!
//! | statement | in the migration |
//! |---|---|
//! | `CREATE [UNIQUE] INDEX` on a plain table | `CREATE INDEX CONCURRENTLY IF NOT EXISTS` |
//! | `CREATE INDEX` on a partitioned table | `CREATE INDEX IF NOT EXISTS ... ON ONLY` the parent, then per partition `CREATE INDEX CONCURRENTLY IF NOT EXISTS` + `ALTER INDEX ... ATTACH PARTITION` (PostgreSQL cannot build a partitioned index concurrently) |
//! | `DROP INDEX` (plain index) | `DROP INDEX CONCURRENTLY IF EXISTS`, one per index, after every build |
//! | `DROP INDEX` (partitioned index) | `DROP INDEX IF EXISTS` with a comment on its ACCESS EXCLUSIVE lock (there is no concurrent form) |
//! | `ANALYZE`, `VACUUM` (not FULL) | kept, with their lock (SHARE UPDATE EXCLUSIVE: reads and writes go on) |
//! | `ALTER TABLE ... SET / RESET (storage parameters)` | kept, with a comment: it affects pages written from now on; the rewrite the experiment did is not promoted |
//! | other `ALTER TABLE` actions, `ALTER INDEX`, `CREATE STATISTICS`, `CREATE EXTENSION`, `CREATE TABLE`, `COMMENT`, `SET` / `RESET` | kept, with their lock where they take one; `pgx lint` then checks them |
//! | `VACUUM FULL`, `CLUSTER`, `REINDEX` | refused: a rewrite under ACCESS EXCLUSIVE for its whole length |
//! | `DO` blocks | refused: opaque to every check, and run in one transaction (no CONCURRENTLY inside) |
//! | `INSERT`, `UPDATE`, `DELETE`, `COPY`, `CREATE TABLE AS`, `SELECT`, `TRUNCATE`, `DROP TABLE`, renames | refused: data re-loads and layout swaps are experiment-only |
//! | `CREATE INDEX` without a name, `DROP INDEX ... CASCADE`, transaction control, anything else | refused, saying why |
//!
//! Refusals are all-or-nothing: a migration that silently did half of what was measured
//! would cite evidence it does not deserve.
//!
//! Which tables are partitioned, and into which partitions, only the schema knows:
//! [`schema`] applies `migrations/` to a scratch database, asks it, then applies the new
//! migration there too, so what is written is known to run.

pub mod schema;
pub mod write;

use squawk_syntax::SourceFile;
use squawk_syntax::ast::{self, AstNode};

/// A statement of the variant, located in its SQL.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// 1-based line of the statement's start in the variant's SQL.
    pub line: usize,
    /// Byte offset of `text` in the variant's SQL.
    pub offset: usize,
    /// The statement as written, without its semicolon.
    pub text: String,
}

impl Source {
    /// The first line, for messages.
    pub fn head(&self) -> String {
        let first = self.text.lines().next().unwrap_or("").trim();
        if first.chars().count() > 70 {
            format!("{}…", first.chars().take(70).collect::<String>())
        } else {
            first.to_string()
        }
    }
}

/// What one statement of the variant becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    CreateIndex(CreateIndex),
    DropIndex {
        source: Source,
        /// The index as written (possibly schema-qualified).
        name: String,
    },
    /// Kept as written, after a comment on what it costs.
    Keep {
        source: Source,
        note: Option<String>,
    },
}

/// `CREATE INDEX`, taken apart so it can be written for any relation.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateIndex {
    pub source: Source,
    pub unique: bool,
    /// The index name as written (never schema-qualified: PostgreSQL forbids it).
    pub name: String,
    /// The table as written.
    pub table: String,
    /// Everything after the table: method, columns, INCLUDE, WITH, WHERE.
    pub rest: String,
}

impl CreateIndex {
    /// The statement for `relation` (already quoted), named `name` (already quoted).
    pub fn render(&self, name: &str, relation: &str, concurrently: bool, only: bool) -> String {
        format!(
            "CREATE {}INDEX {}IF NOT EXISTS {name} ON {}{relation} {}",
            if self.unique { "UNIQUE " } else { "" },
            if concurrently { "CONCURRENTLY " } else { "" },
            if only { "ONLY " } else { "" },
            self.rest
        )
    }
}

/// A statement pgx will not promote, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub source: Source,
    pub reason: String,
}

/// The variant's statements, each a step or a refusal.
#[derive(Debug, Default)]
pub struct Classified {
    pub steps: Vec<Step>,
    pub refused: Vec<Refusal>,
}

fn text_of(node: &squawk_syntax::SyntaxNode) -> String {
    node.text().to_string()
}

fn start_offset(node: &squawk_syntax::SyntaxNode) -> usize {
    crate::lint::rules::start_of(node)
}

/// The statement's own text: from its first token (leading comments dropped) to its end,
/// without the semicolon.
fn source_of(sql: &str, stmt: &ast::Stmt) -> Source {
    let node = stmt.syntax();
    let start = start_offset(node).min(sql.len());
    let end = (u32::from(node.text_range().end()) as usize).clamp(start, sql.len());
    let text = sql
        .get(start..end)
        .unwrap_or("")
        .trim()
        .trim_end_matches(';')
        .trim_end()
        .to_string();
    Source {
        line: sql[..start].matches('\n').count() + 1,
        offset: start,
        text,
    }
}

const LOCK_SUE: &str = "takes SHARE UPDATE EXCLUSIVE on the table: reads and writes go on; it waits only for other maintenance (VACUUM, index builds)";

/// Parse the variant's SQL and decide, statement by statement.
pub fn classify(sql: &str) -> Classified {
    let parse = SourceFile::parse(sql);
    let mut out = Classified::default();
    if let Some(error) = parse.errors().first() {
        let offset = u32::from(error.range().start()) as usize;
        let line = sql[..offset.min(sql.len())].matches('\n').count() + 1;
        out.refused.push(Refusal {
            source: Source {
                line,
                offset,
                text: sql.lines().nth(line - 1).unwrap_or("").trim().to_string(),
            },
            reason: format!("cannot parse it: {}", error.message()),
        });
        return out;
    }
    for stmt in parse.tree().stmts() {
        let source = source_of(sql, &stmt);
        if source.text.is_empty() {
            continue;
        }
        match decide(&stmt, source.clone()) {
            Ok(mut steps) => out.steps.append(&mut steps),
            Err(reason) => out.refused.push(Refusal { source, reason }),
        }
    }
    out
}

fn keep(source: Source, note: &str) -> Result<Vec<Step>, String> {
    Ok(vec![Step::Keep {
        source,
        note: (!note.is_empty()).then(|| note.to_string()),
    }])
}

fn decide(stmt: &ast::Stmt, source: Source) -> Result<Vec<Step>, String> {
    use ast::Stmt as S;
    match stmt {
        S::CreateIndex(index) => create_index(index, source),
        S::DropIndex(drop) => {
            if drop.drop_behavior().is_some_and(|b| {
                b.syntax()
                    .text()
                    .to_string()
                    .eq_ignore_ascii_case("cascade")
            }) {
                return Err("DROP INDEX ... CASCADE drops whatever depends on the index (a constraint, a view's index); CONCURRENTLY cannot cascade: drop the dependents explicitly in the experiment".into());
            }
            let names: Vec<String> = drop.index_refs().map(|r| text_of(r.syntax())).collect();
            if names.is_empty() {
                return Err("DROP INDEX without an index name".into());
            }
            Ok(names
                .into_iter()
                .map(|name| Step::DropIndex {
                    source: source.clone(),
                    name: name.trim().to_string(),
                })
                .collect())
        }
        S::Analyze(_) => keep(
            source,
            &format!("ANALYZE {LOCK_SUE}; fresh statistics for the planner"),
        ),
        S::Vacuum(vacuum) => {
            if vacuum_full(vacuum) {
                return Err("VACUUM FULL rewrites the table under an ACCESS EXCLUSIVE lock for as long as the rewrite takes: no reads, no writes. The experiment did it to measure a fresh layout; in production use pg_repack or pg_squeeze, or a maintenance window".into());
            }
            keep(
                source,
                &format!("VACUUM {LOCK_SUE}; it runs as long as the table is large"),
            )
        }
        S::Cluster(_) => Err("CLUSTER rewrites the table under an ACCESS EXCLUSIVE lock for its whole length (and the order decays with later writes); in production use pg_repack --order-by, or a maintenance window".into()),
        S::Reindex(_) => Err("REINDEX rebuilds indexes that already exist: maintenance the experiment did to measure a fresh index, not a schema change; if production needs it, run REINDEX ... CONCURRENTLY by hand".into()),
        S::Do(_) => Err("a DO block is opaque to pgx and to the linter, and runs in a single transaction, where CREATE INDEX CONCURRENTLY is impossible; write its statements out in the experiment (one per partition, if that is what it loops over)".into()),
        S::Insert(_) | S::Update(_) | S::Delete(_) | S::Merge(_) | S::Copy(_) | S::Truncate(_) => Err("a data change: experiments re-load and rewrite data on a private copy; a migration that does it on production holds row or table locks for its whole length. Write a batched backfill for production instead".into()),
        S::CreateTableAs(_) | S::SelectInto(_) => Err("a table filled from a query: a re-load on the experiment's copy (of every row), not something to run on production inside a migration".into()),
        S::Select(_) | S::CompoundSelect(_) | S::ParenSelect(_) | S::Values(_) | S::Table(_) | S::Call(_) => Err("a query or procedure call: in an experiment it fills or fixes up its copy (setval, a function); it has no place in a schema migration".into()),
        S::DropTable(_) => Err("DROP TABLE destroys data: in an experiment it is part of swapping a re-loaded layout in; promote the new layout with a planned data migration instead".into()),
        S::Begin(_) | S::Commit(_) | S::Rollback(_) | S::SavepointCreate(_) | S::ReleaseSavepoint(_) => Err("transaction control: the promoted migration runs statement by statement in autocommit (-- pgx:no-transaction), which CREATE INDEX CONCURRENTLY needs".into()),
        S::AlterTable(alter) => alter_table(alter, source),
        S::AlterIndex(_) => keep(
            source,
            "ALTER INDEX takes a lock on the index (SHARE UPDATE EXCLUSIVE for SET / RESET of storage parameters, ACCESS EXCLUSIVE for a rename): brief, but it waits for queries using the index",
        ),
        S::CreateStatistics(_) => keep(
            source,
            "CREATE STATISTICS is a catalog change; the next ANALYZE fills it",
        ),
        S::CreateExtension(_) => keep(
            source,
            "CREATE EXTENSION needs the extension's files on the server and the right privileges there",
        ),
        S::CreateTable(_) => keep(source, "a new, empty table: no other session uses it yet"),
        S::CommentOn(_) | S::Set(_) | S::Reset(_) => keep(source, ""),
        _ => Err(format!(
            "pgx does not know how to run `{}` safely on a live database; write this migration by hand (`pgx lint` checks it)",
            source.head()
        )),
    }
}

fn vacuum_full(vacuum: &ast::Vacuum) -> bool {
    if vacuum.full_token().is_some() {
        return true;
    }
    let Some(options) = vacuum.vacuum_option_list() else {
        return false;
    };
    options
        .syntax()
        .children()
        .map(|option| option.text().to_string().to_ascii_lowercase())
        .any(|text| {
            let mut words = text.split_whitespace();
            words.next() == Some("full") && !matches!(words.next(), Some("false" | "off" | "0"))
        })
}

fn create_index(index: &ast::CreateIndex, source: Source) -> Result<Vec<Step>, String> {
    let Some(name) = index.index() else {
        return Err("the index has no name: a re-runnable migration needs one (CREATE INDEX CONCURRENTLY IF NOT EXISTS name ...), and so does the report that cites its plans; name it in the experiment".into());
    };
    let Some(relation) = index.table_relation_name() else {
        return Err("CREATE INDEX without a table".into());
    };
    if relation.only_token().is_some() {
        return Err("CREATE INDEX ... ON ONLY builds no index on the partitions; name the partitioned table itself and pgx writes the per-partition builds".into());
    }
    let table = relation
        .table_name_ref()
        .map(|t| text_of(t.syntax()))
        .unwrap_or_else(|| text_of(relation.syntax()));
    // Everything after the table: USING, columns, INCLUDE, NULLS, WITH, TABLESPACE, WHERE.
    let relation_end = u32::from(relation.syntax().text_range().end()) as usize;
    let whole = index.syntax().text().to_string();
    let node_start = u32::from(index.syntax().text_range().start()) as usize;
    let rest = whole
        .get(relation_end.saturating_sub(node_start)..)
        .unwrap_or("")
        .trim()
        .trim_end_matches(';')
        .trim_end()
        .to_string();
    Ok(vec![Step::CreateIndex(CreateIndex {
        source,
        unique: index.unique_token().is_some(),
        name: text_of(name.syntax()).trim().to_string(),
        table: table.trim().to_string(),
        rest,
    })])
}

fn alter_table(alter: &ast::AlterTable, source: Source) -> Result<Vec<Step>, String> {
    use ast::AlterTableAction as A;
    let actions: Vec<A> = alter.actions().collect();
    if actions.iter().any(|a| {
        matches!(
            a,
            A::RenameColumn(_) | A::RenameConstraint(_) | A::TableRenameTo(_) | A::SetSchema(_)
        )
    }) {
        return Err("a rename: in an experiment it swaps a re-built table in; on production every query and every running application still uses the old name".into());
    }
    if actions.iter().any(|a| {
        matches!(
            a,
            A::AttachPartition(_)
                | A::DetachPartition(_)
                | A::MergePartitions(_)
                | A::SplitPartition(_)
        )
    }) {
        return Err("re-partitioning: part of a re-loaded layout in the experiment; plan it as its own data migration".into());
    }
    let storage_only = !actions.is_empty()
        && actions
            .iter()
            .all(|a| matches!(a, A::SetOptions(_) | A::ResetOptions(_)));
    if storage_only {
        return keep(
            source,
            "ALTER TABLE ... SET / RESET (storage parameters) takes SHARE UPDATE EXCLUSIVE, briefly. A new fillfactor applies only to pages written from now on: the experiment rewrote the table (VACUUM FULL) to measure it at once, which is not promoted, so expect the effect to grow as rows are updated",
        );
    }
    let mut source = source;
    source.text = robust(alter, &source);
    keep(
        source,
        "ALTER TABLE takes ACCESS EXCLUSIVE on the table (SHARE ROW EXCLUSIVE to add a foreign key) until the statement ends: brief for catalog-only changes, but it queues behind running queries, and they behind it; lock_timeout makes it give up instead",
    )
}

/// The ALTER TABLE with `IF EXISTS` on its DROP CONSTRAINTs and `IF NOT EXISTS` on its
/// ADD COLUMNs, so that the migration can run again after a failure part way.
fn robust(alter: &ast::AlterTable, source: &Source) -> String {
    let mut inserts: Vec<(usize, &str)> = Vec::new();
    let end_of = |token: Option<squawk_syntax::SyntaxToken>| {
        token.map(|t| u32::from(t.text_range().end()) as usize)
    };
    for action in alter.actions() {
        match action {
            ast::AlterTableAction::DropConstraint(drop) if drop.if_exists().is_none() => {
                if let Some(at) = end_of(drop.constraint_token()) {
                    inserts.push((at, " IF EXISTS"));
                }
            }
            ast::AlterTableAction::AddColumn(add) if add.if_not_exists().is_none() => {
                if let Some(at) = end_of(add.column_token().or_else(|| add.add_token())) {
                    inserts.push((at, " IF NOT EXISTS"));
                }
            }
            _ => {}
        }
    }
    let mut text = source.text.clone();
    inserts.sort_by_key(|b| std::cmp::Reverse(b.0));
    for (at, what) in inserts {
        let at = at.saturating_sub(source.offset);
        if text.is_char_boundary(at) && at <= text.len() {
            text.insert_str(at, what);
        }
    }
    text
}

/// `V{version}__{name}.sql`: refinery takes `\w+` only, so `-` becomes `_`.
pub fn file_name(version: u64, variant: &str) -> String {
    let name: String = variant
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("V{version}__{name}.sql")
}

/// A PostgreSQL identifier at most 63 bytes long: names longer than that are cut, with a
/// hash of the whole name appended so that two long names never collide.
pub fn fit_identifier(name: &str) -> String {
    if name.len() <= 63 {
        return name.to_string();
    }
    use sha2::Digest;
    let hash = sha2::Sha256::digest(name.as_bytes());
    let tail: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let mut cut = 63 - tail.len() - 1;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{tail}", &name[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(sql: &str) -> (Vec<String>, Vec<String>) {
        let c = classify(sql);
        let steps = c
            .steps
            .iter()
            .map(|s| match s {
                Step::CreateIndex(i) => format!("create {} on {}", i.name, i.table),
                Step::DropIndex { name, .. } => format!("drop {name}"),
                Step::Keep { source, .. } => format!("keep {}", source.head()),
            })
            .collect();
        let refused = c
            .refused
            .iter()
            .map(|r| format!("{}: {}", r.source.line, r.source.head()))
            .collect();
        (steps, refused)
    }

    #[test]
    fn index_builds_are_taken_apart_and_drops_split() {
        let sql = "-- the winner\nCREATE UNIQUE INDEX idx_a ON dms.reference (a, b) INCLUDE (c) WHERE c IS NOT NULL;\nDROP INDEX dms.old_1, old_2;\nANALYZE dms.reference;";
        let c = classify(sql);
        assert!(c.refused.is_empty(), "{:?}", c.refused);
        let Step::CreateIndex(index) = &c.steps[0] else {
            panic!("{:?}", c.steps[0])
        };
        assert_eq!(
            (index.unique, index.name.as_str(), index.table.as_str()),
            (true, "idx_a", "dms.reference")
        );
        assert_eq!(index.rest, "(a, b) INCLUDE (c) WHERE c IS NOT NULL");
        assert_eq!(
            index.source.line, 2,
            "leading comments are not the statement"
        );
        assert_eq!(
            index.render("idx_a", "dms.reference", true, false),
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS idx_a ON dms.reference (a, b) INCLUDE (c) WHERE c IS NOT NULL"
        );
        assert_eq!(
            index.render("idx_a", "dms.reference", false, true),
            "CREATE UNIQUE INDEX IF NOT EXISTS idx_a ON ONLY dms.reference (a, b) INCLUDE (c) WHERE c IS NOT NULL"
        );
        let (steps, _) = kinds(sql);
        assert_eq!(
            steps,
            [
                "create idx_a on dms.reference",
                "drop dms.old_1",
                "drop old_2",
                "keep ANALYZE dms.reference"
            ]
        );
    }

    #[test]
    fn methods_and_concurrently_as_written_are_kept_apart() {
        let c = classify(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS b ON t USING brin (id) WITH (pages_per_range = 32)",
        );
        let Step::CreateIndex(index) = &c.steps[0] else {
            panic!()
        };
        assert_eq!(index.rest, "USING brin (id) WITH (pages_per_range = 32)");
        assert!(!index.unique);
    }

    #[test]
    fn experiment_only_statements_are_refused_with_their_line() {
        let sql = "CREATE INDEX ok ON t (a);\nVACUUM FULL t;\nVACUUM (FULL, ANALYZE) t;\nVACUUM (ANALYZE) t;\nDO $$ BEGIN PERFORM 1; END $$;\nINSERT INTO t SELECT 1;\nCREATE INDEX ON t (b);\nALTER TABLE t RENAME TO u;\nDROP INDEX i CASCADE;\nCLUSTER t USING ok;";
        let (steps, refused) = kinds(sql);
        assert_eq!(steps, ["create ok on t", "keep VACUUM (ANALYZE) t"]);
        assert_eq!(
            refused,
            [
                "2: VACUUM FULL t",
                "3: VACUUM (FULL, ANALYZE) t",
                "5: DO $$ BEGIN PERFORM 1; END $$",
                "6: INSERT INTO t SELECT 1",
                "7: CREATE INDEX ON t (b)",
                "8: ALTER TABLE t RENAME TO u",
                "9: DROP INDEX i CASCADE",
                "10: CLUSTER t USING ok",
            ]
        );
    }

    #[test]
    fn storage_parameters_are_kept_with_what_they_do_not_do() {
        let c = classify("ALTER TABLE t SET (fillfactor = 70);");
        let Step::Keep { note, source } = &c.steps[0] else {
            panic!()
        };
        assert_eq!(source.text, "ALTER TABLE t SET (fillfactor = 70)");
        assert!(
            note.as_deref()
                .unwrap_or("")
                .contains("pages written from now on")
        );
    }

    #[test]
    fn alter_table_is_made_re_runnable() {
        let c = classify(
            "SELECT 1;\nALTER TABLE t DROP CONSTRAINT fk, ADD COLUMN c int, ADD d text, DROP CONSTRAINT IF EXISTS g;",
        );
        let Step::Keep { source, .. } = &c.steps[0] else {
            panic!("{:?}", c)
        };
        assert_eq!(c.refused.len(), 1, "the SELECT");
        assert_eq!(
            source.text,
            "ALTER TABLE t DROP CONSTRAINT IF EXISTS fk, ADD COLUMN IF NOT EXISTS c int, ADD IF NOT EXISTS d text, DROP CONSTRAINT IF EXISTS g"
        );
    }

    #[test]
    fn syntax_errors_are_refusals_not_panics() {
        let c = classify("CREATE INDEX i ON t (a;\n");
        assert_eq!(c.refused.len(), 1);
        assert!(c.refused[0].reason.contains("cannot parse"));
    }

    #[test]
    fn file_names_follow_refinery_and_long_identifiers_fit() {
        assert_eq!(file_name(6, "brin-parent"), "V6__brin_parent.sql");
        let long = format!("reference_00_{}", "x".repeat(60));
        let fitted = fit_identifier(&long);
        assert_eq!(fitted.len(), 63);
        assert_ne!(fitted, fit_identifier(&format!("{long}y")));
        assert_eq!(fit_identifier("short"), "short");
    }
}
