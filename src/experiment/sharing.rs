//! Which variants can share one copy of the base.
//!
//! A variant whose statements only *add* objects — `CREATE INDEX`, `CREATE STATISTICS`,
//! `ANALYZE`, `COMMENT` — and drop existing indexes (`DROP INDEX` without `CASCADE`)
//! changes no table: its heap is the base's, byte for byte. Such variants are built
//! together on one *shared copy* (every variant's new objects, none of its drops), and
//! each of their cells runs in a transaction that first drops what the variant does not
//! have — the other variants' objects and the indexes it drops itself — and is rolled
//! back after the measured statement (`DROP INDEX` inside a transaction hides the index
//! from the planner and the executor; `ROLLBACK` restores it, and no other session uses
//! the copy while it runs). The baseline runs there too, with every added object hidden.
//!
//! One heap then serves every such variant: one copy instead of one per variant, one
//! set of pages in shared buffers, and no copy-to-copy difference between a variant and
//! the baseline it is compared with (two byte-identical `CREATE DATABASE ... TEMPLATE`
//! copies differed by 6.8% in every round on this machine).
//!
//! Anything else (`ALTER TABLE`, `VACUUM FULL`, re-loads, `DO` blocks, DML) rewrites or
//! may rewrite a table: the variant keeps a copy of its own.

use squawk_syntax::SourceFile;
use squawk_syntax::ast::{self, AstNode};

/// How a variant's statements can be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sharing {
    /// No statements: the base as it is.
    Nothing,
    /// Only adds objects and drops existing indexes: built on the shared copy.
    Shared {
        /// The statements run on the shared copy, in order (its `DROP INDEX`es left
        /// out), each with its line in the variant's SQL.
        creates: Vec<(usize, String)>,
        /// The names they give the objects they create, folded as PostgreSQL folds
        /// unquoted names (unnamed ones have none): two variants that create objects of
        /// one name cannot share a copy.
        names: Vec<String>,
        /// The indexes it drops, as written (hidden in its cells' transactions).
        drops: Vec<String>,
    },
    /// Rewrites (or may rewrite) a table: a copy of its own, and why.
    Own(String),
}

/// Classify a variant's SQL (see the module docs).
pub fn classify(sql: &str) -> Sharing {
    let statements = crate::sqlsplit::split(sql);
    if statements.iter().all(|s| s.sql.trim().is_empty()) {
        return Sharing::Nothing;
    }
    let mut creates = Vec::new();
    let mut names = Vec::new();
    let mut drops = Vec::new();
    for statement in &statements {
        let text = statement.sql.trim();
        if text.is_empty() {
            continue;
        }
        match statement_kind(text) {
            Kind::Creates(name) => {
                creates.push((statement.line, text.to_string()));
                names.extend(name);
            }
            Kind::Drops(names) => drops.extend(names),
            Kind::Nothing => {}
            Kind::Rewrites(why) => {
                return Sharing::Own(format!("line {}: {why}", statement.line));
            }
        }
    }
    Sharing::Shared {
        creates,
        names,
        drops,
    }
}

enum Kind {
    /// With the object's name, when the statement gives one.
    Creates(Option<String>),
    Drops(Vec<String>),
    Nothing,
    Rewrites(String),
}

fn statement_kind(sql: &str) -> Kind {
    let parse = SourceFile::parse(sql);
    if let Some(error) = parse.errors().first() {
        return Kind::Rewrites(format!(
            "the SQL parser cannot read it ({error}), so pgx cannot tell what it changes"
        ));
    }
    let stmts: Vec<ast::Stmt> = parse.tree().stmts().collect();
    let stmt = match stmts.as_slice() {
        [] => return Kind::Nothing,
        [one] => one,
        _ => return Kind::Rewrites("reads as several statements".into()),
    };
    match stmt {
        ast::Stmt::CreateIndex(create) => Kind::Creates(
            create
                .index()
                .and_then(|i| i.path())
                .map(|p| folded(&p.syntax().text().to_string())),
        ),
        ast::Stmt::CreateStatistics(create) => Kind::Creates(
            create
                .statistics()
                .and_then(|s| s.path())
                .map(|p| folded(&p.syntax().text().to_string())),
        ),
        ast::Stmt::DropIndex(drop) => {
            let cascade = drop.drop_behavior().is_some_and(|b| {
                b.syntax()
                    .text()
                    .to_string()
                    .eq_ignore_ascii_case("cascade")
            });
            if cascade {
                return Kind::Rewrites(
                    "DROP INDEX ... CASCADE may drop constraints that depend on it".into(),
                );
            }
            Kind::Drops(
                drop.index_refs()
                    .map(|r| r.syntax().text().to_string().trim().to_string())
                    .collect(),
            )
        }
        ast::Stmt::Analyze(_) | ast::Stmt::CommentOn(_) | ast::Stmt::EmptyStmt(_) => Kind::Nothing,
        ast::Stmt::Set(_) | ast::Stmt::Reset(_) => Kind::Nothing,
        _ => Kind::Rewrites(format!(
            "`{}` is not CREATE INDEX, CREATE STATISTICS or DROP INDEX",
            one_line(sql, 60)
        )),
    }
}

/// A name as PostgreSQL stores it: quoted as written, unquoted in lower case.
fn folded(name: &str) -> String {
    let name = name.trim();
    match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => name.to_ascii_lowercase(),
    }
}

fn one_line(sql: &str, max: usize) -> String {
    let text = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() > max {
        format!("{}…", text.chars().take(max).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_only_variants_share_and_rewrites_do_not() {
        assert_eq!(classify(""), Sharing::Nothing);
        assert_eq!(classify("  -- nothing\n"), Sharing::Nothing);
        let covering = "DROP INDEX dms.ux_reference_parentdocumentid;\n\
            CREATE INDEX idx_cover ON dms.reference (a, b) INCLUDE (c);";
        assert_eq!(
            classify(covering),
            Sharing::Shared {
                creates: vec![(
                    2,
                    "CREATE INDEX idx_cover ON dms.reference (a, b) INCLUDE (c)".into()
                )],
                names: vec!["idx_cover".into()],
                drops: vec!["dms.ux_reference_parentdocumentid".into()],
            }
        );
        let gin = "CREATE INDEX ON t USING gin (name gin_trgm_ops); ANALYZE t;";
        assert!(matches!(classify(gin), Sharing::Shared { ref creates, .. } if creates.len() == 1));
        let stats = "CREATE STATISTICS s (dependencies) ON a, b FROM t;";
        assert!(matches!(classify(stats), Sharing::Shared { .. }));
        for own in [
            "ALTER TABLE t SET (fillfactor = 70); VACUUM FULL t;",
            "CREATE TABLE t2 (LIKE t); INSERT INTO t2 SELECT * FROM t;",
            "DO $$ BEGIN PERFORM 1; END $$;",
            "DROP INDEX a CASCADE;",
            "UPDATE t SET x = 1;",
        ] {
            assert!(matches!(classify(own), Sharing::Own(_)), "{own}");
        }
        let names = |sql: &str| match classify(sql) {
            Sharing::Shared { names, .. } => names,
            _ => panic!("shared"),
        };
        assert_eq!(
            names(
                "CREATE INDEX Idx_A ON t (a); CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS \"B\" ON t (b);"
            ),
            vec!["idx_a", "B"]
        );
        assert!(names("CREATE INDEX ON t (a); CREATE INDEX ON t USING gin (b);").is_empty());
        assert_eq!(names("CREATE STATISTICS s1 ON a, b FROM t;"), vec!["s1"]);
        let Sharing::Own(why) = classify("CREATE INDEX i ON t (a);\nVACUUM FULL t;") else {
            panic!("own");
        };
        assert!(why.starts_with("line 2:"), "{why}");
    }
}
