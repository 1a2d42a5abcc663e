//! `pgx apply` / `pgx status` through the real binary against a real PostgreSQL.

use crate::common::*;

const V1: &str = "CREATE TABLE account (id bigint PRIMARY KEY, email text NOT NULL);\n";
const V2: &str =
    "CREATE TABLE payment (id bigint PRIMARY KEY, account_id bigint REFERENCES account);\n";

fn table_exists(client: &mut postgres::Client, name: &str) -> bool {
    client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
        .unwrap()
        .get(0)
}

#[test]
fn apply_on_empty_database_then_second_apply_is_a_no_op() {
    let db = TestDb::new("apply_twice");
    let project = migrations(&[("V1__account.sql", V1), ("V2__payment.sql", V2)]);
    let out = db.pgx(project.path(), &["apply"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("applied 2 migration(s)"),
        "{}",
        stdout(&out)
    );
    let mut client = db.client();
    assert_eq!(history_versions(&mut client), vec![1, 2]);
    assert!(table_exists(&mut client, "payment"));

    let again = db.pgx(project.path(), &["apply"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("applied 0 migration(s)"),
        "{}",
        stdout(&again)
    );
    assert!(stdout(&again).contains("2 already applied"));
    assert_eq!(history_versions(&mut client), vec![1, 2]);

    let status = db.pgx(project.path(), &["status"]);
    assert_eq!(status.status.code(), Some(0), "{}", stdout(&status));
    assert_eq!(
        stdout(&status).matches("┆ applied ┆").count(),
        2,
        "{}",
        stdout(&status)
    );
}

#[test]
fn failing_migration_is_rolled_back_and_earlier_ones_stay() {
    let db = TestDb::new("apply_fail");
    let bad = "CREATE TABLE half_done (id int);\nINSERT INTO half_done VALUES (1);\nSELEC oops;\n";
    let project = migrations(&[
        ("V1__account.sql", V1),
        ("V2__broken.sql", bad),
        ("V3__payment.sql", V2),
    ]);
    let out = db.pgx(project.path(), &["apply"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("V2__broken.sql"), "{err}");
    assert!(
        err.contains("syntax error"),
        "server message missing: {err}"
    );
    assert!(err.contains("line 3"), "line missing: {err}");
    assert!(err.contains("hint:"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let mut client = db.client();
    assert_eq!(history_versions(&mut client), vec![1], "only V1 recorded");
    assert!(table_exists(&mut client, "account"));
    assert!(
        !table_exists(&mut client, "half_done"),
        "V2 must leave no trace"
    );
    assert!(
        !table_exists(&mut client, "payment"),
        "V3 must not run after a failure"
    );
}

#[test]
fn concurrently_migration_runs_outside_a_transaction_with_refinery_checksum() {
    let db = TestDb::new("apply_cic");
    let cic = "-- pgx:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS account_email ON account (email);\n\
               CREATE INDEX CONCURRENTLY IF NOT EXISTS account_email_lower ON account (lower(email));\n";
    let project = migrations(&[("V1__account.sql", V1), ("V2__email_index.sql", cic)]);
    let out = db.pgx(project.path(), &["apply"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut client = db.client();
    let valid: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE c.relname IN ('account_email', 'account_email_lower') AND i.indisvalid",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(valid, 2);
    let stored: String = client
        .query_one(
            "SELECT checksum FROM refinery_schema_history WHERE version = 2",
            &[],
        )
        .unwrap()
        .get(0);
    let expected = refinery::Migration::unapplied("V2__email_index", cic)
        .unwrap()
        .checksum();
    assert_eq!(stored, expected.to_string());
    let status = db.pgx(project.path(), &["status"]);
    assert_eq!(status.status.code(), Some(0), "{}", stdout(&status));
}

#[test]
fn failed_concurrent_index_is_reported_as_invalid_with_cleanup() {
    let db = TestDb::new("apply_invalid");
    let seed = "CREATE TABLE dup (v int); INSERT INTO dup VALUES (1), (1);\n";
    let cic = "-- pgx:no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY dup_v ON dup (v);\n";
    let project = migrations(&[("V1__dup.sql", seed), ("V2__unique.sql", cic)]);
    let out = db.pgx(project.path(), &["apply"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("INVALID"), "{err}");
    assert!(
        err.contains("DROP INDEX CONCURRENTLY public.dup_v"),
        "{err}"
    );
    let mut client = db.client();
    assert_eq!(history_versions(&mut client), vec![1]);
    let status = db.pgx(project.path(), &["status"]);
    assert_eq!(
        status.status.code(),
        Some(1),
        "invalid index must fail status"
    );
    assert!(
        stdout(&status).contains("INVALID index public.dup_v"),
        "{}",
        stdout(&status)
    );
}

#[test]
fn edited_applied_migration_fails_status_and_apply() {
    let db = TestDb::new("apply_divergent");
    let project = migrations(&[("V1__account.sql", V1)]);
    assert!(db.pgx(project.path(), &["apply"]).status.success());
    std::fs::write(
        project.path().join("migrations/V1__account.sql"),
        "CREATE TABLE account (id bigint PRIMARY KEY, email text);\n",
    )
    .unwrap();
    std::fs::write(project.path().join("migrations/V2__payment.sql"), V2).unwrap();
    let status = db.pgx(project.path(), &["status"]);
    assert_eq!(status.status.code(), Some(1));
    assert!(stdout(&status).contains("DIVERGENT"), "{}", stdout(&status));
    let out = db.pgx(project.path(), &["apply"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("changed after it was applied"),
        "{}",
        stderr(&out)
    );
    let mut client = db.client();
    assert!(
        !table_exists(&mut client, "payment"),
        "apply must refuse before running V2"
    );
}

#[test]
fn missing_migration_file_fails_status_and_apply() {
    let db = TestDb::new("apply_missing");
    let project = migrations(&[("V1__account.sql", V1), ("V2__payment.sql", V2)]);
    assert!(db.pgx(project.path(), &["apply"]).status.success());
    std::fs::remove_file(project.path().join("migrations/V2__payment.sql")).unwrap();
    let status = db.pgx(project.path(), &["status"]);
    assert_eq!(status.status.code(), Some(1));
    assert!(stdout(&status).contains("MISSING"));
    let out = db.pgx(project.path(), &["apply"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("file is missing"), "{}", stderr(&out));
}

#[test]
fn dry_run_changes_nothing() {
    let db = TestDb::new("apply_dry");
    let project = migrations(&[("V1__account.sql", V1), ("V2__payment.sql", V2)]);
    let out = db.pgx(project.path(), &["apply", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("would apply V1__account"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("would apply V2__payment"));
    let mut client = db.client();
    assert!(!table_exists(&mut client, "refinery_schema_history"));
    assert!(!table_exists(&mut client, "account"));
}

#[test]
fn target_stops_at_the_given_version() {
    let db = TestDb::new("apply_target");
    let project = migrations(&[("V1__account.sql", V1), ("V2__payment.sql", V2)]);
    let out = db.pgx(project.path(), &["apply", "--target", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut client = db.client();
    assert_eq!(history_versions(&mut client), vec![1]);
    let status = db.pgx(project.path(), &["status"]);
    assert!(stdout(&status).contains("pending"), "{}", stdout(&status));
}

#[test]
fn misnamed_and_unreadable_input_are_clear_errors() {
    let db = TestDb::new("apply_badname");
    let project = migrations(&[("V1__account.sql", V1), ("V2__add-payment.sql", V2)]);
    let out = db.pgx(project.path(), &["apply"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("V2__add-payment.sql"), "{err}");
    assert!(
        err.contains("V2__add_payment.sql"),
        "suggestion missing: {err}"
    );
    let out = db.pgx(project.path(), &["apply", "--dir", "nowhere"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("does not exist"));
    let mut client = db.client();
    assert!(
        !table_exists(&mut client, "account"),
        "nothing applied on bad input"
    );
}

#[test]
fn two_concurrent_runners_wait_for_the_lock_and_apply_each_migration_once() {
    use std::io::{BufRead, BufReader, Read};

    let db = TestDb::new("apply_race");
    // V2 builds an index CONCURRENTLY: the waiters must poll, not block in
    // pg_advisory_lock, or they would deadlock against it.
    let v1 = "CREATE TABLE big (id int, v text);\nINSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 20000) g;\n";
    let v2 = "-- pgx:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS big_v ON big (v);\n";
    let v3 = "CREATE TABLE after_index (id int);\n";
    let project = migrations(&[
        ("V1__big.sql", v1),
        ("V2__big_v.sql", v2),
        ("V3__after.sql", v3),
    ]);
    // The test holds the migration lock, so both runners must wait: an observable
    // ordering, not a timing window.
    let mut holder = db.client();
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&pgx::migrate::LOCK_KEY])
        .unwrap();
    let holder_pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let spawn = || {
        pgx_command(project.path())
            .env("DATABASE_URL", db.url())
            .arg("apply")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut runners = [spawn(), spawn()];
    let mut waited = Vec::new();
    for child in &mut runners {
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        // Lines before it (lint warnings) are skipped; at EOF the runner never waited.
        let expected = format!("waiting for another migration runner (backend pid {holder_pid})");
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            let n = stderr.read_line(&mut line).unwrap();
            seen.push_str(&line);
            assert!(
                n > 0,
                "a runner must say it waits for the lock holder: {seen:?}"
            );
            if line.contains(&expected) {
                break;
            }
        }
        waited.push(stderr);
    }
    // Both are waiting and nothing has been applied yet.
    let mut client = db.client();
    assert!(history_versions(&mut client).is_empty());
    assert!(!table_exists(&mut client, "big"));
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&pgx::migrate::LOCK_KEY])
        .unwrap();

    let mut outputs = Vec::new();
    for (child, mut stderr) in runners.into_iter().zip(waited) {
        let mut rest = String::new();
        stderr.read_to_string(&mut rest).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{rest}");
        outputs.push(stdout(&out));
    }
    outputs.sort();
    assert!(
        outputs[0].contains("applied 0 migration(s)") && outputs[0].contains("3 already applied"),
        "the second runner finds nothing left to do: {outputs:?}"
    );
    assert!(outputs[1].contains("applied 3 migration(s)"), "{outputs:?}");
    assert_eq!(history_versions(&mut client), vec![1, 2, 3]);
    let rows: i64 = client
        .query_one("SELECT count(*) FROM big", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 20000, "V1 ran once");
    let valid: bool = client
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'big_v'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(valid);
}

#[test]
fn rerun_after_a_failed_unique_index_build_refuses_while_the_index_is_invalid() {
    let db = TestDb::new("apply_invalid_rerun");
    let seed = "CREATE TABLE dup (v int); INSERT INTO dup VALUES (1), (1);\n";
    let cic =
        "-- pgx:no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS dup_v ON dup (v);\n";
    let project = migrations(&[("V1__dup.sql", seed), ("V2__uq.sql", cic)]);
    let first = db.pgx(project.path(), &["apply"]);
    assert_eq!(first.status.code(), Some(2), "{}", stderr(&first));
    // Re-run without dropping it: IF NOT EXISTS skips the build, the index stays INVALID.
    let again = db.pgx(project.path(), &["apply"]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "an INVALID index must not be recorded as applied: {}{}",
        stdout(&again),
        stderr(&again)
    );
    let err = stderr(&again);
    assert!(
        err.contains("INVALID") && err.contains("V2__uq.sql"),
        "{err}"
    );
    assert!(
        err.contains("DROP INDEX CONCURRENTLY public.dup_v;"),
        "{err}"
    );
    let mut client = db.client();
    assert_eq!(history_versions(&mut client), vec![1], "V2 not recorded");
    // Following the hint works.
    for sql in [
        "DROP INDEX CONCURRENTLY public.dup_v",
        "DELETE FROM dup",
        "INSERT INTO dup VALUES (1), (2)",
    ] {
        client.batch_execute(sql).unwrap();
    }
    let fixed = db.pgx(project.path(), &["apply"]);
    assert!(fixed.status.success(), "{}", stderr(&fixed));
    assert_eq!(history_versions(&mut client), vec![1, 2]);
}

#[test]
fn no_transaction_migration_with_begin_atomic_function_applies_as_one_statement() {
    let db = TestDb::new("apply_atomic");
    let v2 = "-- pgx:no-transaction\n\
              CREATE FUNCTION account_emails() RETURNS bigint LANGUAGE sql\n\
              BEGIN ATOMIC\n  SELECT 1;\n  SELECT count(email) FROM account;\nEND;\n\
              CREATE INDEX CONCURRENTLY IF NOT EXISTS account_email ON account (email);\n";
    let project = migrations(&[("V1__account.sql", V1), ("V2__fn.sql", v2)]);
    let out = db.pgx(project.path(), &["apply"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut client = db.client();
    let n: i64 = client
        .query_one("SELECT account_emails()", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    assert_eq!(history_versions(&mut client), vec![1, 2]);
}

#[test]
fn copy_from_stdin_in_a_migration_is_refused_with_what_to_do() {
    let db = TestDb::new("apply_copy");
    let v2 = "COPY account (id, email) FROM stdin;\n1\ta@example.org\n2\tb@example.org\n\\.\n";
    let project = migrations(&[("V1__account.sql", V1), ("V2__data.sql", v2)]);
    let out = db.pgx(project.path(), &["apply"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("V2__data.sql:1"), "{err}");
    assert!(err.contains("COPY ... FROM STDIN"), "{err}");
    assert!(err.contains("hint:") && err.contains("INSERT"), "{err}");
    assert!(!err.contains("syntax error"), "{err}");
    let mut client = db.client();
    assert!(!table_exists(&mut client, "account"), "nothing applied");
}

/// A login role of this test's own on the shared server (roles are cluster-wide), with no
/// privileges beyond connecting; dropped with everything it owns when the test ends.
struct LowRole {
    name: String,
    db: String,
    server: Server,
}

impl LowRole {
    fn new(db: &TestDb, tag: &str) -> LowRole {
        let name = format!("r_{tag}_{}", std::process::id());
        let mut admin = db.client();
        admin
            .batch_execute(&format!(
                "DROP ROLE IF EXISTS {name}; CREATE ROLE {name} LOGIN; \
                 REVOKE CREATE ON SCHEMA public FROM PUBLIC;"
            ))
            .unwrap();
        LowRole {
            name,
            db: db.name.clone(),
            server: db.server.clone(),
        }
    }

    /// DATABASE_URL for the test database as this role.
    fn url(&self) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            self.server.cluster().socket_dir().display(),
            pgx::cluster::PORT,
            self.name,
            self.db
        )
    }
}

impl Drop for LowRole {
    fn drop(&mut self) {
        if let Ok(mut admin) = pgx::target::connect(&self.server.cluster().config(&self.db)) {
            let _ = admin.batch_execute(&format!(
                "DROP OWNED BY {0}; DROP ROLE IF EXISTS {0}",
                self.name
            ));
        }
    }
}

/// Issue 23: a role without CREATE on schema public applies `SELECT 1;`. The statement
/// that fails is refinery's `CREATE TABLE IF NOT EXISTS refinery_schema_history`: pgx must
/// say so with the GRANT that is missing, not "fix the SQL" at a position inside its own
/// statement. A privilege error in the user's own migration gets a privilege hint too.
#[test]
fn a_role_without_create_on_public_is_told_what_to_grant_not_to_fix_the_sql() {
    let db = TestDb::new("low_privilege");
    let role = LowRole::new(&db, "lowpriv");
    let project = migrations(&[("V1__noop.sql", "SELECT 1;\n")]);
    let apply = |project: &std::path::Path| {
        pgx_command(project)
            .env("DATABASE_URL", role.url())
            .arg("apply")
            .output()
            .unwrap()
    };
    let out = apply(project.path());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot create the history table refinery_schema_history in schema public: ")
            && err.contains("permission denied"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "hint: GRANT CREATE ON SCHEMA public TO {}, or run as its owner",
            role.name
        )),
        "{err}"
    );
    assert!(err.contains("V1__noop.sql was not run"), "{err}");
    assert!(!err.contains("fix the SQL"), "{err}");
    assert!(
        !err.contains("at line"),
        "no position inside pgx's statement: {err}"
    );

    // pgx's own table (dotted versions), and a no-transaction migration: refused before
    // any of its statements runs.
    let dotted = migrations(&[
        ("V1.1__dotted.sql", "SELECT 1;\n"),
        ("V2__nt.sql", "-- pgx:no-transaction\nSELECT 1;\n"),
    ]);
    let out = apply(dotted.path());
    let err = stderr(&out);
    assert!(
        err.contains("cannot create the history table pgx_schema_history in schema public")
            && err.contains(&format!("GRANT CREATE ON SCHEMA public TO {}", role.name)),
        "{err}"
    );
    let no_tx = migrations(&[("V2__nt.sql", "-- pgx:no-transaction\nSELECT 1;\n")]);
    let out = apply(no_tx.path());
    let err = stderr(&out);
    assert!(
        err.contains("cannot create the history table refinery_schema_history")
            && err.contains("V2__nt.sql was not run"),
        "{err}"
    );

    // With CREATE granted the history table is created; a migration reading a table the
    // role may not read fails with a hint about privileges.
    let mut admin = db.client();
    admin
        .batch_execute(&format!(
            "GRANT CREATE ON SCHEMA public TO {0}; CREATE TABLE secret (id int);",
            role.name
        ))
        .unwrap();
    let project = migrations(&[
        ("V1__noop.sql", "SELECT 1;\n"),
        ("V2__read_secret.sql", "SELECT 1;\nSELECT * FROM secret;\n"),
    ]);
    let out = apply(project.path());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("V2__read_secret.sql failed")
            && err.contains("permission denied for table secret"),
        "{err}"
    );
    assert!(
        err.contains("lacks a privilege it needs (SQLSTATE 42501)")
            && err.contains(&format!("TO {}", role.name)),
        "{err}"
    );
    assert!(!err.contains("fix the SQL"), "{err}");
    assert_eq!(history_versions(&mut admin), vec![1]);
}
