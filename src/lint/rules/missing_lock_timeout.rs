//! `missing-lock-timeout`: a statement that locks a table the migration did not create,
//! with no `lock_timeout` set before it.
//!
//! Such a statement first waits for its lock behind every transaction using the table, and
//! while it waits, every later query on the table queues behind it: a migration that waits
//! a minute for a long report to finish blocks all traffic for that minute. With
//! `lock_timeout` it gives up instead (and can be retried). squawk's
//! `require-lock-timeout` asks for it before any DDL, `CREATE SCHEMA` and a `CREATE TABLE`
//! of a new table included; this rule asks only where another session can hold the lock.
//! Reported once per file, at the first such statement, like squawk's.

use squawk_syntax::ast::{self, AstNode};

use super::{Context, PgxRule, relation_name, start_of, tables_created};
use crate::lint::Finding;

pub const NAME: &str = "missing-lock-timeout";

pub const RULE: PgxRule = PgxRule {
    name: NAME,
    about: "a statement locking an existing table with no lock_timeout set before it",
    check,
};

fn check(ctx: &Context) -> Vec<Finding> {
    let created = tables_created(ctx.file);
    let is_new = |name: &Option<String>| name.as_ref().is_some_and(|n| created.contains(n));
    for stmt in ctx.file.stmts() {
        let (what, lock) = match &stmt {
            ast::Stmt::Set(set) if sets_lock_timeout(set) => return Vec::new(),
            ast::Stmt::CreateIndex(index) => {
                if is_new(&relation_name(index.table_relation_name())) {
                    continue;
                }
                if index.concurrently_token().is_some() {
                    ("CREATE INDEX CONCURRENTLY", "SHARE UPDATE EXCLUSIVE")
                } else {
                    ("CREATE INDEX", "SHARE")
                }
            }
            ast::Stmt::AlterTable(alter) => {
                if is_new(&relation_name(alter.table_relation_name())) {
                    continue;
                }
                ("ALTER TABLE", alter_table_lock(alter))
            }
            ast::Stmt::DropTable(drop) => {
                let names: Vec<Option<String>> = drop
                    .table_name_refs()
                    .map(|t| {
                        t.path_ref()
                            .and_then(|p| p.segment())
                            .map(|s| s.text().to_string())
                    })
                    .collect();
                if !names.is_empty() && names.iter().all(is_new) {
                    continue;
                }
                ("DROP TABLE", "ACCESS EXCLUSIVE")
            }
            ast::Stmt::DropIndex(drop) => {
                if drop.concurrently_token().is_some() {
                    ("DROP INDEX CONCURRENTLY", "SHARE UPDATE EXCLUSIVE")
                } else {
                    ("DROP INDEX", "ACCESS EXCLUSIVE")
                }
            }
            ast::Stmt::Truncate(_) => ("TRUNCATE", "ACCESS EXCLUSIVE"),
            ast::Stmt::Lock(_) => ("LOCK TABLE", "the requested"),
            ast::Stmt::Cluster(_) => ("CLUSTER", "ACCESS EXCLUSIVE"),
            ast::Stmt::Reindex(r) if !r.is_concurrently() => ("REINDEX", "ACCESS EXCLUSIVE"),
            ast::Stmt::Refresh(_) => ("REFRESH MATERIALIZED VIEW", "EXCLUSIVE"),
            ast::Stmt::CreateTrigger(_) => ("CREATE TRIGGER", "SHARE ROW EXCLUSIVE"),
            ast::Stmt::AlterIndex(_) => ("ALTER INDEX", "ACCESS EXCLUSIVE"),
            _ => continue,
        };
        let set = if ctx.no_transaction {
            "SET lock_timeout = '2s';"
        } else {
            "SET LOCAL lock_timeout = '2s';"
        };
        return vec![Finding {
            offset: start_of(stmt.syntax()),
            rule: NAME.into(),
            message: format!(
                "{what} waits for a {lock} lock on a table that already exists, with no lock_timeout: while it waits, every later query on the table queues behind it"
            ),
            help: Some(format!(
                "put `{set}` before it, so the migration gives up (and can be retried) instead of blocking traffic; `pgx rehearse` shows the waits under load"
            )),
        }];
    }
    Vec::new()
}

/// `SET [LOCAL|SESSION] lock_timeout ...`
fn sets_lock_timeout(set: &ast::Set) -> bool {
    if let Some(ast::SetTarget::SetConfig(config)) = set.set_target()
        && let Some(path) = config.config_parameter_ref().and_then(|c| c.path_ref())
        && path.qualifier().is_none()
        && let Some(segment) = path.segment()
    {
        return segment.text().eq_ignore_ascii_case("lock_timeout");
    }
    false
}

/// The strongest lock an ALTER TABLE's actions take (the common cases; else ACCESS EXCLUSIVE).
fn alter_table_lock(alter: &ast::AlterTable) -> &'static str {
    let mut strongest = 0;
    for action in alter.actions() {
        let rank = match action {
            ast::AlterTableAction::ValidateConstraint(_)
            | ast::AlterTableAction::SetOptions(_)
            | ast::AlterTableAction::ResetOptions(_) => 1,
            ast::AlterTableAction::AddConstraint(add)
                if matches!(
                    add.constraint(),
                    Some(ast::Constraint::ForeignKeyConstraint(_))
                ) =>
            {
                2
            }
            _ => 3,
        };
        strongest = strongest.max(rank);
    }
    match strongest {
        1 => "SHARE UPDATE EXCLUSIVE",
        2 => "SHARE ROW EXCLUSIVE",
        _ => "ACCESS EXCLUSIVE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::rules::check;

    #[test]
    fn flags_the_first_lock_on_an_existing_table() {
        let sql = "CREATE SCHEMA s;\nALTER TABLE t ADD COLUMN a int;\nCREATE INDEX i ON t (a);";
        let found = check(&RULE, sql, false);
        assert_eq!(found.len(), 1, "reported once per file");
        assert_eq!(found[0].offset, sql.find("ALTER").unwrap());
        assert!(found[0].message.contains("ACCESS EXCLUSIVE"));
        assert!(found[0].help.as_ref().unwrap().contains("SET LOCAL"));
        let fk = check(
            &RULE,
            "ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES u (id) NOT VALID;",
            true,
        );
        assert!(fk[0].message.contains("SHARE ROW EXCLUSIVE"), "{fk:?}");
        assert!(!fk[0].help.as_ref().unwrap().contains("LOCAL"));
    }

    #[test]
    fn new_tables_and_a_timeout_set_first_are_fine() {
        let new = "CREATE SCHEMA s;\nCREATE TABLE t (id int);\nALTER TABLE t ADD COLUMN a int;\nCREATE INDEX i ON t (a);\nDROP TABLE t;";
        assert!(check(&RULE, new, false).is_empty());
        let set = "SET lock_timeout = '1s';\nCREATE INDEX i ON t (a);";
        assert!(check(&RULE, set, false).is_empty());
        let local = "SET LOCAL lock_timeout TO '1s';\nALTER TABLE t ADD COLUMN a int;";
        assert!(check(&RULE, local, false).is_empty());
    }

    #[test]
    fn a_timeout_set_after_the_statement_does_not_count() {
        let sql = "CREATE INDEX i ON t (a);\nSET lock_timeout = '1s';";
        assert_eq!(check(&RULE, sql, false).len(), 1);
    }
}
