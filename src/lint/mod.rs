//! `pgx lint`: migration hazards (locks that block production traffic, statements that
//! cannot run the way pgx runs the file), reported with file:line:col.
//!
//! The rules are squawk's (`squawk-linter`, its parser `squawk-syntax`): a maintained
//! linter of PostgreSQL migrations. pgx runs its lock and safety rules and leaves out its
//! style rules (`prefer-text-field`, `prefer-bigint-over-int`, ...), which `--rule` turns
//! back on. Where pgx knows more than a generic linter, its own rules (one per file in
//! [`rules`], each with its tests) replace squawk's:
//!
//! - `concurrently-in-transaction` replaces squawk's
//!   `ban-concurrent-index-creation-in-transaction`: pgx runs every migration without the
//!   `-- pgx:no-transaction` header in a transaction, a file of one statement included;
//! - `missing-lock-timeout` replaces squawk's `require-lock-timeout`, which fires on any
//!   DDL (`CREATE SCHEMA` too): pgx's fires only on statements that lock a table the
//!   migration did not create itself, where waiting for the lock queues every query behind
//!   it.
//!
//! Findings are silenced in the file with `-- pgx:lint-ignore RULE[, RULE]` on the line(s)
//! before a statement, or `-- pgx:lint-ignore-file RULE[, RULE]` anywhere (no rule: all);
//! squawk's own `-- squawk-ignore` comments work for its rules too.

pub mod rules;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use squawk_linter::{Linter, LinterSettings, Rule};
use squawk_syntax::ast::AstNode;
use squawk_syntax::{SourceFile, SyntaxKind};

use crate::error::fail;
use crate::migrate::{MigrationFile, NO_TRANSACTION_MARKER};
use crate::sqlsplit::LineIndex;

/// squawk rules about style or naming, not about what a migration does to a running
/// database: off unless asked for with `--rule`.
pub const STYLE_RULES: &[&str] = &[
    "prefer-bigint-over-int",
    "prefer-bigint-over-smallint",
    "prefer-identity",
    "prefer-text-field",
    "prefer-timestamp-tz",
    "ban-char-field",
    "require-statement-timeout",
];

/// squawk rules that a pgx rule replaces (see the module docs).
pub const REPLACED_RULES: &[(&str, &str)] = &[
    (
        "ban-concurrent-index-creation-in-transaction",
        rules::concurrently_in_transaction::NAME,
    ),
    ("require-lock-timeout", rules::missing_lock_timeout::NAME),
];

/// A file the parser could not read completely: its findings may be incomplete.
pub const SYNTAX_ERROR: &str = "syntax-error";

/// Which rules run.
#[derive(Debug, Clone)]
pub struct RuleSet {
    squawk: Vec<Rule>,
    pgx: Vec<&'static str>,
    syntax_errors: bool,
}

impl Default for RuleSet {
    fn default() -> Self {
        RuleSet::new(&[], &[]).expect("the default rule set is valid")
    }
}

impl RuleSet {
    /// pgx's defaults, plus `include`, minus `exclude` (rule names as `pgx lint
    /// --list-rules` prints them).
    pub fn new(include: &[String], exclude: &[String]) -> Result<RuleSet> {
        let style: Vec<Rule> = STYLE_RULES.iter().filter_map(|n| n.parse().ok()).collect();
        let replaced: Vec<Rule> = REPLACED_RULES
            .iter()
            .filter_map(|(n, _)| n.parse().ok())
            .collect();
        let mut set = RuleSet {
            squawk: Linter::with_default_rules()
                .rules
                .into_iter()
                .filter(|r| !style.contains(r) && !replaced.contains(r))
                .collect(),
            pgx: rules::ALL.iter().map(|r| r.name).collect(),
            syntax_errors: true,
        };
        for name in include {
            match parse_rule(name)? {
                Named::Squawk(rule) => set.squawk.push(rule),
                Named::Pgx(rule) => set.pgx.push(rule),
                Named::Syntax => set.syntax_errors = true,
            }
        }
        for name in exclude {
            match parse_rule(name)? {
                Named::Squawk(rule) => set.squawk.retain(|r| *r != rule),
                Named::Pgx(rule) => set.pgx.retain(|r| *r != rule),
                Named::Syntax => set.syntax_errors = false,
            }
        }
        set.squawk.sort_by_key(|r| r.to_string());
        set.squawk.dedup();
        set.pgx.sort_unstable();
        set.pgx.dedup();
        Ok(set)
    }

    /// Every rule pgx knows, with whether it is on in this set, sorted by name.
    pub fn describe(&self) -> Vec<(String, &'static str, bool)> {
        let mut out: Vec<(String, &'static str, bool)> = rules::ALL
            .iter()
            .map(|r| (r.name.to_string(), "pgx", self.pgx.contains(&r.name)))
            .collect();
        out.push((SYNTAX_ERROR.into(), "pgx", self.syntax_errors));
        for rule in enum_all_squawk() {
            if rule == Rule::RequireTimeoutSettings || rule == Rule::UnusedIgnore {
                continue; // an alias of two others; an internal code
            }
            out.push((rule.to_string(), "squawk", self.squawk.contains(&rule)));
        }
        out.sort();
        out
    }
}

/// squawk's rules, all of them (its `Rule` implements `enum_iterator::Sequence`).
fn enum_all_squawk() -> Vec<Rule> {
    enum_iterator::all::<Rule>().collect()
}

enum Named {
    Squawk(Rule),
    Pgx(&'static str),
    Syntax,
}

fn parse_rule(name: &str) -> Result<Named> {
    let name = name.trim();
    if let Some(rule) = rules::ALL.iter().find(|r| r.name == name) {
        return Ok(Named::Pgx(rule.name));
    }
    if name == SYNTAX_ERROR {
        return Ok(Named::Syntax);
    }
    if let Ok(rule) = name.parse::<Rule>() {
        return Ok(Named::Squawk(rule));
    }
    Err(fail(
        format!("unknown lint rule {name:?}"),
        "`pgx lint --list-rules` lists every rule by name",
    ))
}

/// One finding, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: PathBuf,
    /// 1-based line and column (in characters) of where the finding starts.
    pub line: usize,
    pub column: usize,
    pub rule: String,
    pub message: String,
    pub help: Option<String>,
    /// The source line the finding starts on, for the excerpt.
    pub source_line: String,
}

impl Diagnostic {
    /// `path:line:col: warning[rule] message`, the line, and the help.
    pub fn render(&self, severity: &str) -> String {
        let mut out = format!(
            "{}:{}:{}: {severity}[{}] {}",
            self.path.display(),
            self.line,
            self.column,
            self.rule,
            self.message
        );
        let gutter = self.line.to_string().len();
        let _ = write!(
            out,
            "\n {:>gutter$} | {}",
            self.line,
            self.source_line.trim_end()
        );
        let _ = write!(
            out,
            "\n {:>gutter$} | {}^",
            "",
            " ".repeat(self.column.saturating_sub(1))
        );
        if let Some(help) = &self.help {
            let _ = write!(out, "\n {:>gutter$} = help: {help}", "");
        }
        out
    }
}

/// A finding before it is located: byte offset into the SQL, rule, text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub offset: usize,
    pub rule: String,
    pub message: String,
    pub help: Option<String>,
}

/// Lint one migration's SQL. `no_transaction` is whether pgx runs it outside a
/// transaction (its first line is `-- pgx:no-transaction`).
pub fn lint_sql(sql: &str, no_transaction: bool, set: &RuleSet) -> Vec<Finding> {
    let parse = SourceFile::parse(sql);
    let mut findings = Vec::new();
    if set.syntax_errors {
        for error in parse.errors() {
            findings.push(Finding {
                offset: u32::from(error.range().start()) as usize,
                rule: SYNTAX_ERROR.into(),
                message: format!("cannot parse: {}", error.message()),
                help: Some(
                    "the server will likely reject this too; if it does not, the rules may have missed something here (`--exclude syntax-error` hides this)"
                        .into(),
                ),
            });
        }
    }
    let mut linter = Linter::from(set.squawk.iter().copied());
    linter.settings = LinterSettings {
        assume_in_transaction: !no_transaction,
        ..LinterSettings::default()
    };
    for violation in linter.lint(&parse, sql) {
        findings.push(Finding {
            offset: u32::from(violation.text_range.start()) as usize,
            rule: violation.code.to_string(),
            message: violation.message,
            help: violation.help,
        });
    }
    let file = parse.tree();
    let context = rules::Context {
        sql,
        file: &file,
        no_transaction,
    };
    for rule in rules::ALL.iter().filter(|r| set.pgx.contains(&r.name)) {
        findings.extend((rule.check)(&context));
    }
    let ignores = Ignores::find(&file);
    findings.retain(|f| !ignores.covers(f));
    findings.sort_by(|a, b| a.offset.cmp(&b.offset).then_with(|| a.rule.cmp(&b.rule)));
    findings.dedup();
    findings
}

/// Lint one file's SQL and locate the findings in it.
pub fn lint_text(path: &Path, sql: &str, set: &RuleSet) -> Vec<Diagnostic> {
    let no_transaction = sql
        .lines()
        .next()
        .is_some_and(|l| l.trim() == NO_TRANSACTION_MARKER);
    let lines = LineIndex::new(sql);
    lint_sql(sql, no_transaction, set)
        .into_iter()
        .map(|f| locate(path, sql, &lines, f))
        .collect()
}

/// Lint migrations as pgx loaded them.
pub fn lint_migrations(files: &[&MigrationFile], set: &RuleSet) -> Vec<Diagnostic> {
    files
        .iter()
        .flat_map(|f| {
            let lines = LineIndex::new(&f.sql);
            lint_sql(&f.sql, f.no_transaction, set)
                .into_iter()
                .map(|finding| locate(&f.path, &f.sql, &lines, finding))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The finding's line and column; `lines` indexes `sql` once for all its findings.
fn locate(path: &Path, sql: &str, lines: &LineIndex, finding: Finding) -> Diagnostic {
    let offset = floor_char_boundary(sql, finding.offset);
    let line_start = lines.line_start(offset);
    let line = lines.line_of(offset);
    let column = sql[line_start..offset].chars().count() + 1;
    let source_line = sql[line_start..].lines().next().unwrap_or("").to_string();
    Diagnostic {
        path: path.to_path_buf(),
        line,
        column,
        rule: finding.rule,
        message: finding.message,
        help: finding.help,
        source_line,
    }
}

fn floor_char_boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// `-- pgx:lint-ignore` comments: rules silenced for the next statement or the file.
struct Ignores {
    /// (statement start, statement end, rules; empty = all)
    statements: Vec<(usize, usize, HashSet<String>)>,
    file: Option<HashSet<String>>,
}

const IGNORE_LINE: &str = "pgx:lint-ignore";
const IGNORE_FILE: &str = "pgx:lint-ignore-file";

impl Ignores {
    fn find(file: &SourceFile) -> Ignores {
        let statements: Vec<(usize, usize)> = file
            .stmts()
            .map(|s| {
                let range = s.syntax().text_range();
                (
                    u32::from(range.start()) as usize,
                    u32::from(range.end()) as usize,
                )
            })
            .collect();
        let mut ignores = Ignores {
            statements: Vec::new(),
            file: None,
        };
        for token in file
            .syntax()
            .descendants_with_tokens()
            .filter_map(|e| e.into_token())
            .filter(|t| t.kind() == SyntaxKind::COMMENT)
        {
            let Some(body) = token.text().strip_prefix("--").map(str::trim) else {
                continue;
            };
            let (is_file, names) = if let Some(rest) = body.strip_prefix(IGNORE_FILE) {
                (true, rest)
            } else if let Some(rest) = body.strip_prefix(IGNORE_LINE) {
                (false, rest)
            } else {
                continue;
            };
            // A comment after the names: `-- pgx:lint-ignore rule -- because ...`
            let names = names.split("--").next().unwrap_or("");
            let names: HashSet<String> = names
                .split(',')
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect();
            if is_file {
                let all = ignores.file.get_or_insert_with(HashSet::new);
                if names.is_empty() {
                    all.insert("*".into());
                }
                all.extend(names);
                continue;
            }
            let at = u32::from(token.text_range().end()) as usize;
            // The statement the comment is on (trailing) or the next one after it.
            if let Some(&(start, end)) = statements.iter().find(|(_, end)| *end > at) {
                ignores.statements.push((start, end, names));
            }
        }
        ignores
    }

    fn covers(&self, finding: &Finding) -> bool {
        let named = |names: &HashSet<String>| {
            names.is_empty() || names.contains("*") || names.contains(&finding.rule)
        };
        if self.file.as_ref().is_some_and(named) {
            return true;
        }
        self.statements.iter().any(|(start, end, names)| {
            finding.offset >= *start && finding.offset < *end && named(names)
        })
    }
}

/// Lint files and directories given on the command line (or `dir`, all of it).
pub fn collect_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found)?;
            found.sort();
            out.extend(found);
        } else if path.is_file() {
            out.push(path.clone());
        } else {
            return Err(fail(
                format!("{} does not exist", path.display()),
                "give migration files or directories of them (default: migrations)",
            ));
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        fail(
            format!("cannot read {}: {e}", dir.display()),
            "check the path",
        )
    })?;
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("sql"))
        {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules_of(sql: &str, no_transaction: bool) -> Vec<String> {
        lint_sql(sql, no_transaction, &RuleSet::default())
            .into_iter()
            .map(|f| f.rule)
            .collect()
    }

    #[test]
    fn plain_index_on_an_existing_table_is_located() {
        let sql = "SET lock_timeout = '1s';\n\n  CREATE INDEX items_v ON items (v);\n";
        let found = lint_text(Path::new("V2__x.sql"), sql, &RuleSet::default());
        assert_eq!(found.len(), 1, "{found:?}");
        let d = &found[0];
        assert_eq!(d.rule, "require-concurrent-index-creation");
        assert_eq!((d.line, d.column), (3, 3));
        assert!(
            d.render("warning")
                .starts_with("V2__x.sql:3:3: warning[require-concurrent-index-creation]")
        );
    }

    #[test]
    fn tables_created_in_the_migration_may_be_indexed_plainly() {
        let sql = "CREATE TABLE t (id bigint);\nCREATE INDEX t_id ON t (id);\n";
        assert!(
            rules_of(sql, false).is_empty(),
            "{:?}",
            rules_of(sql, false)
        );
    }

    #[test]
    fn hazards_of_the_issue_are_flagged() {
        let cases = [
            (
                "SET lock_timeout = '1s';\nALTER TABLE t ADD CONSTRAINT c CHECK (a > 0);",
                "constraint-missing-not-valid",
            ),
            (
                "SET lock_timeout = '1s';\nALTER TABLE t ADD COLUMN u uuid DEFAULT gen_random_uuid();",
                "adding-field-with-default",
            ),
            ("ALTER TABLE t ADD COLUMN a int;", "missing-lock-timeout"),
            (
                "CREATE INDEX CONCURRENTLY i ON t (a);",
                "concurrently-in-transaction",
            ),
        ];
        for (sql, rule) in cases {
            let found = rules_of(sql, false);
            assert!(found.iter().any(|r| r == rule), "{sql}: {found:?}");
        }
    }

    #[test]
    fn style_rules_are_off_by_default_and_can_be_turned_on() {
        let sql = "CREATE TABLE t (id int, name varchar(10));";
        assert!(rules_of(sql, false).is_empty());
        let set = RuleSet::new(&["prefer-text-field".into()], &[]).unwrap();
        let found: Vec<String> = lint_sql(sql, false, &set)
            .into_iter()
            .map(|f| f.rule)
            .collect();
        assert_eq!(found, ["prefer-text-field"]);
    }

    #[test]
    fn unknown_rule_names_are_an_error_with_advice() {
        let err = RuleSet::new(&["no-such-rule".into()], &[]).unwrap_err();
        assert!(err.to_string().contains("no-such-rule"));
        assert!(
            crate::error::hint_of(&err)
                .unwrap()
                .contains("--list-rules")
        );
    }

    #[test]
    fn ignore_comments_silence_one_statement_or_the_file() {
        let sql = "SET lock_timeout = '1s';\n-- pgx:lint-ignore require-concurrent-index-creation -- small table\nCREATE INDEX a ON t (a);\nCREATE INDEX b ON t (b);\n";
        let found = lint_text(Path::new("f.sql"), sql, &RuleSet::default());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].line, 4);
        let whole = format!("-- pgx:lint-ignore-file\n{sql}");
        assert!(lint_text(Path::new("f.sql"), &whole, &RuleSet::default()).is_empty());
    }

    #[test]
    fn syntax_errors_are_findings_not_panics() {
        let found = lint_text(
            Path::new("f.sql"),
            "CREATE TABLE t (id int;\nSELEC 1;",
            &RuleSet::default(),
        );
        assert!(found.iter().any(|d| d.rule == SYNTAX_ERROR), "{found:?}");
    }

    #[test]
    fn every_rule_is_listed_once() {
        let listed = RuleSet::default().describe();
        let names: HashSet<&String> = listed.iter().map(|(n, _, _)| n).collect();
        assert_eq!(names.len(), listed.len());
        assert!(
            listed
                .iter()
                .any(|(n, _, on)| n == "prefer-text-field" && !on)
        );
        assert!(
            listed
                .iter()
                .any(|(n, _, on)| n == "missing-lock-timeout" && *on)
        );
    }
}
