//! `concurrently-in-transaction`: `CREATE INDEX CONCURRENTLY` (and the other
//! `CONCURRENTLY` forms that refuse a transaction block) in a migration pgx runs in a
//! transaction, which fails with SQLSTATE 25001 when applied.
//!
//! squawk's `ban-concurrent-index-creation-in-transaction` stays quiet for a file of a
//! single statement (one statement outside BEGIN runs on its own elsewhere); pgx runs
//! every file without the `-- pgx:no-transaction` header in a transaction, one statement
//! or many, so this rule replaces it.

use squawk_syntax::SyntaxKind;
use squawk_syntax::ast::{self, AstNode};

use super::{Context, PgxRule};
use crate::lint::Finding;

pub const NAME: &str = "concurrently-in-transaction";

pub const RULE: PgxRule = PgxRule {
    name: NAME,
    about: "CONCURRENTLY in a migration pgx runs in a transaction (it would fail)",
    check,
};

fn check(ctx: &Context) -> Vec<Finding> {
    if ctx.no_transaction {
        return Vec::new();
    }
    let mut found = Vec::new();
    for stmt in ctx.file.stmts() {
        let what = match &stmt {
            ast::Stmt::CreateIndex(_) => "CREATE INDEX CONCURRENTLY",
            ast::Stmt::DropIndex(_) => "DROP INDEX CONCURRENTLY",
            ast::Stmt::Reindex(_) => "REINDEX CONCURRENTLY",
            ast::Stmt::AlterTable(_) => "DETACH PARTITION ... CONCURRENTLY",
            // REFRESH MATERIALIZED VIEW CONCURRENTLY may run in a transaction.
            _ => continue,
        };
        let Some(token) = stmt
            .syntax()
            .descendants_with_tokens()
            .find(|t| t.kind() == SyntaxKind::CONCURRENTLY_KW)
        else {
            continue;
        };
        found.push(Finding {
            offset: u32::from(token.text_range().start()) as usize,
            rule: NAME.into(),
            message: format!(
                "{what} cannot run inside a transaction block, and pgx runs this migration in one (it would fail with SQLSTATE 25001)"
            ),
            help: Some(format!(
                "make `{}` the first line of the file: pgx then runs its statements one by one in autocommit (make them re-runnable: IF NOT EXISTS / IF EXISTS)",
                crate::migrate::NO_TRANSACTION_MARKER
            )),
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::rules::check;

    #[test]
    fn flags_concurrently_in_a_transactional_file_even_alone() {
        let sql = "CREATE INDEX CONCURRENTLY i ON t (a);";
        let found = check(&RULE, sql, false);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].offset, sql.find("CONCURRENTLY").unwrap());
        let drop = check(&RULE, "DROP INDEX CONCURRENTLY IF EXISTS i;", false);
        assert_eq!(drop.len(), 1);
        let detach = check(
            &RULE,
            "ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY;",
            false,
        );
        assert_eq!(detach.len(), 1);
    }

    #[test]
    fn quiet_in_a_no_transaction_file_and_for_plain_forms() {
        let sql = "CREATE INDEX CONCURRENTLY i ON t (a);";
        assert!(check(&RULE, sql, true).is_empty());
        assert!(check(&RULE, "CREATE INDEX i ON t (a);", false).is_empty());
        assert!(check(&RULE, "REFRESH MATERIALIZED VIEW CONCURRENTLY v;", false).is_empty());
    }
}
