//! `pgx lint` through the real binary, and the lint step of `pgx apply` against a real
//! PostgreSQL.

use std::path::Path;

use crate::common::*;

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/lint"))
}

fn project_with_fixtures() -> tempfile::TempDir {
    let files: Vec<(String, String)> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_str().unwrap().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_str()))
        .collect();
    migrations(&refs)
}

#[test]
fn flags_a_plain_create_index_with_its_file_and_line() {
    let out = pgx_command(fixtures())
        .args(["lint", "."])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(
        text.contains("V2__index_items.sql:4:1: warning[require-concurrent-index-creation]"),
        "{text}"
    );
    assert!(
        text.contains("4 | CREATE INDEX items_v_id ON items (v, id);"),
        "{text}"
    );
    // Nothing else: V1 indexes a table it creates; V3 builds concurrently outside a
    // transaction with a lock_timeout.
    assert!(text.contains("1 finding(s) in 1 of 3 file(s)"), "{text}");
}

#[test]
fn the_repos_own_migrations_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = pgx_command(root).args(["lint"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("0 finding(s) in 0 of 5 file(s)"));
}

#[test]
fn rules_can_be_turned_off_and_on_and_unknown_names_are_refused() {
    let off = pgx_command(fixtures())
        .args([
            "lint",
            ".",
            "--exclude",
            "require-concurrent-index-creation",
        ])
        .output()
        .unwrap();
    assert_eq!(off.status.code(), Some(0), "{}", stdout(&off));
    let style = pgx_command(fixtures())
        .args(["lint", "V1__items.sql", "--rule", "prefer-bigint-over-int"])
        .output()
        .unwrap();
    assert_eq!(style.status.code(), Some(1), "{}", stdout(&style));
    assert!(
        stdout(&style).contains("V1__items.sql:2:"),
        "{}",
        stdout(&style)
    );
    let bad = pgx_command(fixtures())
        .args(["lint", "--rule", "no-such-rule"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("unknown lint rule \"no-such-rule\""));
    assert!(stderr(&bad).contains("--list-rules"));
    let missing = pgx_command(fixtures())
        .args(["lint", "no/such/dir"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("no/such/dir does not exist"));
}

#[test]
fn apply_warns_before_changing_anything_and_strict_refuses() {
    let db = TestDb::new("lint_apply");
    let project = project_with_fixtures();
    // V1 alone: clean, nothing printed about lint.
    let first = db.pgx(project.path(), &["apply", "--target", "1"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(!stderr(&first).contains("warning["), "{}", stderr(&first));

    // --strict: the finding is an error and nothing is applied.
    let strict = db.pgx(project.path(), &["apply", "--strict"]);
    assert_eq!(strict.status.code(), Some(2), "{}", stdout(&strict));
    let err = stderr(&strict);
    assert!(
        err.contains("V2__index_items.sql:4:1: error[require-concurrent-index-creation]"),
        "{err}"
    );
    assert!(err.contains("--strict applies nothing"), "{err}");
    let mut client = db.client();
    assert_eq!(history_versions(&mut client), vec![1]);

    // Without it: warnings on stderr, then the migrations apply.
    let warned = db.pgx(project.path(), &["apply"]);
    assert!(warned.status.success(), "{}", stderr(&warned));
    assert!(
        stderr(&warned)
            .contains("V2__index_items.sql:4:1: warning[require-concurrent-index-creation]"),
        "{}",
        stderr(&warned)
    );
    assert_eq!(history_versions(&mut client), vec![1, 2, 3]);

    // Applied migrations are not linted again.
    let again = db.pgx(project.path(), &["apply", "--strict"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(!stderr(&again).contains("warning["));
}

#[test]
fn concurrently_in_a_transactional_migration_is_flagged_before_it_fails() {
    let project = migrations(&[(
        "V1__idx.sql",
        "-- forgot the header\nCREATE INDEX CONCURRENTLY i ON t (a);\n",
    )]);
    let out = pgx_command(project.path()).args(["lint"]).output().unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("V1__idx.sql:2:14: warning[concurrently-in-transaction]"),
        "{text}"
    );
    assert!(text.contains("-- pgx:no-transaction"), "{text}");
}
