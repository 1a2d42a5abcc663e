//! `misplaced-no-transaction-marker`: `-- pgx:no-transaction` anywhere but on the first
//! line. pgx reads the header only there, so such a file still runs in a transaction,
//! which is not what its author meant (and fails if it builds an index CONCURRENTLY).

use super::{Context, PgxRule};
use crate::lint::Finding;
use crate::migrate::NO_TRANSACTION_MARKER;

pub const NAME: &str = "misplaced-no-transaction-marker";

pub const RULE: PgxRule = PgxRule {
    name: NAME,
    about: "the -- pgx:no-transaction header below the first line, where pgx ignores it",
    check,
};

fn check(ctx: &Context) -> Vec<Finding> {
    let mut offset = 0;
    let mut found = Vec::new();
    for (n, line) in ctx.sql.split_inclusive('\n').enumerate() {
        if n > 0 && line.trim() == NO_TRANSACTION_MARKER {
            found.push(Finding {
                offset: offset + (line.len() - line.trim_start().len()),
                rule: NAME.into(),
                message: format!(
                    "`{NO_TRANSACTION_MARKER}` counts only on the first line: this file runs in a transaction"
                ),
                help: Some("move it to line 1 (before any comment or blank line)".into()),
            });
        }
        offset += line.len();
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::rules::check;

    #[test]
    fn flags_the_marker_below_line_one() {
        let sql =
            "-- add an index\n  -- pgx:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);\n";
        let found = check(&RULE, sql, false);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].offset, sql.find("-- pgx").unwrap());
        assert!(check(&RULE, "-- pgx:no-transaction\nSELECT 1;\n", true).is_empty());
    }
}
