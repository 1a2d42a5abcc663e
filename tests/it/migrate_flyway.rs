//! Flyway-style projects through the real binary: V and R__ files, dotted versions,
//! callbacks, baseline and repair; and the typed errors callers branch on.

use crate::common::*;
use pgx::migrate::MigrateError;

const V1: &str = "CREATE TABLE account (id bigint PRIMARY KEY, email text NOT NULL);\n";
const V1_1: &str = "ALTER TABLE account ADD COLUMN created timestamptz DEFAULT now();\n";
const V2: &str = "CREATE TABLE payment (id bigint PRIMARY KEY, account_id bigint REFERENCES account, cents bigint);\n";
const R_FUNCTIONS: &str = "CREATE OR REPLACE FUNCTION account_count() RETURNS bigint LANGUAGE plpgsql AS $$\n\
BEGIN\n  RETURN (SELECT count(*) FROM account);\nEND;\n$$;\n\
CREATE OR REPLACE FUNCTION payment_total(a bigint) RETURNS bigint LANGUAGE sql\n\
BEGIN ATOMIC\n  SELECT coalesce(sum(cents), 0) FROM payment WHERE account_id = a;\nEND;\n";
const R_VIEWS: &str = "CREATE OR REPLACE VIEW account_summary AS SELECT a.id, payment_total(a.id) AS total FROM account a;\n";

fn history_of_repeatables(client: &mut postgres::Client) -> Vec<(String, String)> {
    client
        .query(
            "SELECT name, applied_on::text FROM pgx_schema_history WHERE kind = 'repeatable' ORDER BY name",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[test]
fn versioned_and_repeatable_migrations_apply_and_only_changed_repeatables_rerun() {
    let db = TestDb::new("flyway_mix");
    // File names chosen so that name order differs from creation order where it matters:
    // R__a_functions runs before R__views, which uses its function.
    let project = migrations(&[
        ("V1__account.sql", V1),
        ("V1.1__created.sql", V1_1),
        ("V2__payment.sql", V2),
        ("R__a_functions.sql", R_FUNCTIONS),
        ("R__views.sql", R_VIEWS),
    ]);
    let out = db.pgx(project.path(), &["apply"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("applied 5 migration(s)"), "{text}");
    // Versioned first in Flyway order (1 < 1.1 < 2), then repeatables by name.
    let order: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("applied "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|l| l.contains("__"))
        .collect();
    assert_eq!(
        order,
        [
            "V1__account",
            "V1.1__created",
            "V2__payment",
            "R__a_functions",
            "R__views"
        ]
    );
    let mut client = db.client();
    assert_eq!(
        history_versions(&mut client),
        vec![1, 2],
        "refinery keeps int versions"
    );
    let dotted: String = client
        .query_one(
            "SELECT version FROM pgx_schema_history WHERE kind = 'versioned'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(dotted, "1.1");
    client
        .batch_execute("INSERT INTO account (id, email) VALUES (1, 'a@x'); INSERT INTO payment VALUES (1, 1, 250)")
        .unwrap();
    let total: i64 = client
        .query_one("SELECT total FROM account_summary WHERE id = 1", &[])
        .unwrap()
        .get(0);
    assert_eq!(total, 250);

    let status = db.pgx(project.path(), &["status"]);
    assert_eq!(status.status.code(), Some(0), "{}", stdout(&status));
    let table = stdout(&status);
    assert_eq!(table.matches("┆ applied ┆").count(), 5, "{table}");
    assert!(table.contains("│ 1.1 "), "{table}");
    assert!(table.contains("│ R       ┆ views"), "{table}");

    // A second apply does nothing.
    let again = db.pgx(project.path(), &["apply"]);
    assert!(
        stdout(&again).contains("applied 0 migration(s)"),
        "{}",
        stdout(&again)
    );
    let before = history_of_repeatables(&mut client);

    // Change the view: only it is re-applied.
    std::fs::write(
        project.path().join("migrations/R__views.sql"),
        "CREATE OR REPLACE VIEW account_summary AS SELECT a.id, payment_total(a.id) AS total, account_count() AS accounts FROM account a;\n",
    )
    .unwrap();
    let status = db.pgx(project.path(), &["status"]);
    assert_eq!(
        status.status.code(),
        Some(0),
        "a changed R__ is not a problem"
    );
    assert!(stdout(&status).contains("outdated"), "{}", stdout(&status));
    let out = db.pgx(project.path(), &["apply"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("applied 1 migration(s)"), "{text}");
    assert!(text.contains("applied R__views"), "{text}");
    assert!(!text.contains("R__a_functions"), "{text}");
    let after = history_of_repeatables(&mut client);
    assert_eq!(after[0], before[0], "R__a_functions untouched");
    assert_ne!(after[1].1, before[1].1, "R__views re-recorded");
    let accounts: i64 = client
        .query_one("SELECT accounts FROM account_summary WHERE id = 1", &[])
        .unwrap()
        .get(0);
    assert_eq!(accounts, 1, "the new view definition is in force");
}

#[test]
fn a_failing_repeatable_is_rolled_back_and_not_recorded() {
    let db = TestDb::new("flyway_rfail");
    let project = migrations(&[
        ("V1__account.sql", V1),
        (
            "R__broken.sql",
            "CREATE VIEW v_ok AS SELECT 1;\nCREATE VIEW v_bad AS SELECT nope FROM account;\n",
        ),
    ]);
    let out = db.pgx(project.path(), &["apply"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("R__broken.sql") && err.contains("rolled back"),
        "{err}"
    );
    assert!(err.contains("line 2"), "{err}");
    let mut client = db.client();
    let v_ok: bool = client
        .query_one("SELECT to_regclass('v_ok') IS NOT NULL", &[])
        .unwrap()
        .get(0);
    assert!(!v_ok);
    assert_eq!(history_versions(&mut client), vec![1]);
}

#[test]
fn flyway_callbacks_run_or_are_skipped_by_name_with_a_note() {
    let db = TestDb::new("flyway_callbacks");
    let project = migrations(&[("V1__account.sql", V1)]);
    let callbacks = project.path().join("migrations/callbacks");
    std::fs::create_dir(&callbacks).unwrap();
    std::fs::write(
        callbacks.join("afterMigrate__log.sql"),
        "CREATE TABLE IF NOT EXISTS callback_log (at timestamptz DEFAULT now());\nINSERT INTO callback_log DEFAULT VALUES;\n",
    )
    .unwrap();
    std::fs::write(callbacks.join("beforeClean.sql"), "DROP TABLE account;\n").unwrap();
    for round in 1..=2i64 {
        let out = db.pgx(project.path(), &["apply"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("ran Flyway callback") && err.contains("afterMigrate__log.sql"),
            "{err}"
        );
        assert!(
            err.contains("skipped Flyway callback") && err.contains("beforeClean.sql"),
            "{err}"
        );
        let mut client = db.client();
        let n: i64 = client
            .query_one("SELECT count(*) FROM callback_log", &[])
            .unwrap()
            .get(0);
        assert_eq!(n, round, "afterMigrate runs on every apply");
        let account: bool = client
            .query_one("SELECT to_regclass('account') IS NOT NULL", &[])
            .unwrap()
            .get(0);
        assert!(account, "beforeClean never runs");
    }
    let status = db.pgx(project.path(), &["status"]);
    assert_eq!(status.status.code(), Some(0), "{}", stdout(&status));
    assert!(
        stdout(&status).contains("runs at afterMigrate"),
        "{}",
        stdout(&status)
    );
    assert!(
        stdout(&status).contains("callback (skipped)"),
        "{}",
        stdout(&status)
    );
}

#[test]
fn dotted_version_names_are_accepted_and_bad_names_get_an_accepted_suggestion() {
    let db = TestDb::new("flyway_names");
    let project = migrations(&[("V1__account.sql", V1), ("V1.1_created.sql", V1_1)]);
    let out = db.pgx(project.path(), &["apply"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("V1.1__created.sql"),
        "suggests an accepted name: {err}"
    );
    std::fs::rename(
        project.path().join("migrations/V1.1_created.sql"),
        project.path().join("migrations/V1.1__created.sql"),
    )
    .unwrap();
    let out = db.pgx(project.path(), &["apply"]);
    assert!(
        out.status.success(),
        "the suggested name is accepted: {}",
        stderr(&out)
    );
    // A version between two applied ones is out of order, as for whole numbers.
    std::fs::write(project.path().join("migrations/V2__payment.sql"), V2).unwrap();
    assert!(db.pgx(project.path(), &["apply"]).status.success());
    std::fs::write(
        project.path().join("migrations/V1.2__late.sql"),
        "SELECT 1;",
    )
    .unwrap();
    let out = db.pgx(project.path(), &["apply"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("V1.2__late.sql") && stderr(&out).contains("strictly in order"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn baseline_marks_an_existing_database_and_later_versions_apply() {
    let db = TestDb::new("flyway_baseline");
    let mut client = db.client();
    // The database already has what V1 and V2 would create.
    client.batch_execute(V1).unwrap();
    client.batch_execute(V2).unwrap();
    let project = migrations(&[
        ("V1__account.sql", V1),
        ("V2__payment.sql", V2),
        ("V3__refund.sql", "CREATE TABLE refund (id bigint);\n"),
    ]);
    let out = db.pgx(project.path(), &["baseline", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("2 migration file(s)"),
        "{}",
        stdout(&out)
    );
    let status = db.pgx(project.path(), &["status"]);
    assert_eq!(status.status.code(), Some(0), "{}", stdout(&status));
    let table = stdout(&status);
    assert_eq!(table.matches("below baseline").count(), 2, "{table}");
    assert!(table.contains("┆ baseline "), "{table}");
    let out = db.pgx(project.path(), &["apply"]);
    assert!(
        out.status.success(),
        "V1 and V2 must not run again: {}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("applied 1 migration(s)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(history_versions(&mut client), vec![3]);
    // A second baseline is refused: the database has a history now.
    let out = db.pgx(project.path(), &["baseline", "3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("already has"), "{}", stderr(&out));
    let out = db.pgx(project.path(), &["baseline", "x.1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not a version"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn repair_needs_confirmation_then_realigns_checksums_and_forgets_deleted_files() {
    let db = TestDb::new("flyway_repair");
    let project = migrations(&[
        ("V1__account.sql", V1),
        ("V2__payment.sql", V2),
        ("V2.1__note.sql", "CREATE TABLE note (id int);\n"),
    ]);
    assert!(db.pgx(project.path(), &["apply"]).status.success());
    // An intentional, harmless edit (a comment) and a deleted file.
    std::fs::write(
        project.path().join("migrations/V1__account.sql"),
        format!("-- accounts of the shop\n{V1}"),
    )
    .unwrap();
    std::fs::remove_file(project.path().join("migrations/V2.1__note.sql")).unwrap();
    let status = db.pgx(project.path(), &["status"]);
    assert_eq!(status.status.code(), Some(1));
    assert!(stdout(&status).contains("DIVERGENT") && stdout(&status).contains("MISSING"));

    let out = db.pgx(project.path(), &["repair"]);
    assert_eq!(out.status.code(), Some(2), "no change without --yes");
    let err = stderr(&out);
    assert!(
        err.contains("V1__account") && err.contains("V2.1__note") && err.contains("--yes"),
        "{err}"
    );
    assert_eq!(db.pgx(project.path(), &["status"]).status.code(), Some(1));

    let out = db.pgx(project.path(), &["repair", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status = db.pgx(project.path(), &["status"]);
    assert_eq!(status.status.code(), Some(0), "{}", stdout(&status));
    let out = db.pgx(project.path(), &["repair", "--yes"]);
    assert!(
        stdout(&out).contains("nothing to repair"),
        "{}",
        stdout(&out)
    );
    let mut client = db.client();
    let stored: String = client
        .query_one(
            "SELECT checksum FROM refinery_schema_history WHERE version = 1",
            &[],
        )
        .unwrap()
        .get(0);
    let files = pgx::migrate::load_dir(&project.path().join("migrations")).unwrap();
    assert_eq!(stored, files[0].checksum.to_string());
}

#[test]
fn errors_are_typed_so_callers_branch_on_kinds() {
    let db = TestDb::new("flyway_kinds");
    let project = migrations(&[("V1__account.sql", V1)]);
    let dir = project.path().join("migrations");
    let mut client = db.client();
    let files = pgx::migrate::load_dir(&dir).unwrap();
    pgx::migrate::apply(&mut client, &files, &Default::default()).unwrap();
    std::fs::write(
        dir.join("V1__account.sql"),
        "CREATE TABLE account (id int);\n",
    )
    .unwrap();
    let files = pgx::migrate::load_dir(&dir).unwrap();
    let err = pgx::migrate::apply(&mut client, &files, &Default::default()).unwrap_err();
    assert!(
        matches!(
            err.downcast_ref::<MigrateError>(),
            Some(MigrateError::Divergent { .. })
        ),
        "{err:?}"
    );
    std::fs::write(dir.join("V1__account.sql"), V1).unwrap();
    std::fs::write(dir.join("V2__bad.sql"), "SELEC 1;").unwrap();
    let files = pgx::migrate::load_dir(&dir).unwrap();
    let err = pgx::migrate::apply(&mut client, &files, &Default::default()).unwrap_err();
    assert!(
        matches!(
            err.downcast_ref::<MigrateError>(),
            Some(MigrateError::Failed { .. })
        ),
        "{err:?}"
    );
    let err = pgx::migrate::load_dir(&project.path().join("nowhere")).unwrap_err();
    assert!(matches!(
        err.downcast_ref::<MigrateError>(),
        Some(MigrateError::NoDirectory { .. })
    ));
}

#[test]
fn a_history_table_of_another_shape_is_an_error_not_a_panic() {
    let db = TestDb::new("flyway_damaged");
    let mut client = db.client();
    client
        .batch_execute(
            "CREATE TABLE refinery_schema_history (version int8 PRIMARY KEY, name text, applied_on text, checksum text);\
             INSERT INTO refinery_schema_history VALUES (1, 'account', '', '1')",
        )
        .unwrap();
    let project = migrations(&[("V1__account.sql", V1)]);
    let out = db.pgx(project.path(), &["status"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("refinery_schema_history does not have the columns"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
