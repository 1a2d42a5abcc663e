//! pgx's own lint rules, one per file with its tests (as squawk keeps its rules): where pgx
//! runs migrations differently from what a generic linter assumes.

pub mod concurrently_in_transaction;
pub mod misplaced_no_transaction_marker;
pub mod missing_lock_timeout;

use squawk_syntax::SourceFile;
use squawk_syntax::ast;

use super::Finding;

/// What a rule sees of one migration.
pub struct Context<'a> {
    pub sql: &'a str,
    pub file: &'a SourceFile,
    /// pgx runs the file statement by statement in autocommit (`-- pgx:no-transaction`).
    pub no_transaction: bool,
}

pub struct PgxRule {
    pub name: &'static str,
    pub about: &'static str,
    pub check: fn(&Context) -> Vec<Finding>,
}

pub const ALL: &[PgxRule] = &[
    concurrently_in_transaction::RULE,
    missing_lock_timeout::RULE,
    misplaced_no_transaction_marker::RULE,
];

/// Byte offset where a node's text starts (after leading comments and whitespace).
pub fn start_of(node: &squawk_syntax::SyntaxNode) -> usize {
    let start = node
        .children_with_tokens()
        .find(|x| !x.kind().is_trivia())
        .map_or_else(|| node.text_range().start(), |x| x.text_range().start());
    u32::from(start) as usize
}

/// The unqualified table name of `CREATE INDEX ... ON t` / `ALTER TABLE t`, as written.
pub fn relation_name(relation: Option<ast::TableRelationName>) -> Option<String> {
    relation
        .and_then(|r| r.table_name_ref())
        .and_then(|t| t.path_ref())
        .and_then(|p| p.segment())
        .map(|s| s.text().to_string())
}

/// Tables a migration creates (unqualified names), which no other session can be using.
pub fn tables_created(file: &SourceFile) -> Vec<String> {
    file.stmts()
        .filter_map(|stmt| match stmt {
            ast::Stmt::CreateTable(t) => t
                .table_name()
                .and_then(|n| n.path())
                .and_then(|p| p.segment())
                .map(|s| s.text().to_string()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
pub fn check(rule: &PgxRule, sql: &str, no_transaction: bool) -> Vec<Finding> {
    let parse = SourceFile::parse(sql);
    let file = parse.tree();
    (rule.check)(&Context {
        sql,
        file: &file,
        no_transaction,
    })
}
