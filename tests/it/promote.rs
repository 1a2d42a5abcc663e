//! `pgx promote` through the real binary on a copy of `tests/fixtures/promote` (a
//! schema with a plain and a hash-partitioned table): the migrations it writes cite the
//! experiment's report, pass `pgx lint`, apply with `pgx apply` to a database that has
//! rows, build valid indexes and are recorded; what only an experiment may do is refused.

use std::path::Path;
use std::sync::Mutex;

use crate::common::*;

/// The tests here run one at a time: the first counts the scratch databases left over.
static SERIAL: Mutex<()> = Mutex::new(());

/// The fixture project in a directory of its own, so the migrations written there do not
/// touch the repository.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/promote");
    for sub in ["migrations", "experiments"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for entry in std::fs::read_dir(src.join(sub)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.path().join(sub).join(entry.file_name())).unwrap();
        }
    }
    dir
}

fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "exit {:?}\n{}\n{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
}

fn scratch_databases(db: &TestDb) -> i64 {
    let mut admin = pgx::target::connect(&db.server.cluster().config("postgres")).unwrap();
    admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'pgx_promote_%'",
            &[],
        )
        .unwrap()
        .get(0)
}

#[test]
fn promoted_migrations_cite_the_evidence_lint_clean_apply_and_build_valid_indexes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let db = TestDb::new("promote");
    let project = project();
    let dir = project.path();

    // The evidence: the experiment's JSON report, where promote looks for it.
    ok(&db.pgx(dir, &["experiment", "promo", "--rounds", "6"]));
    assert!(dir.join("reports/promo.json").is_file());

    let out = db.pgx(dir, &["promote", "promo", "items-v"]);
    ok(&out);
    assert!(
        stderr(&out).contains("pgx lint: no findings"),
        "{}",
        stderr(&out)
    );
    let plain = std::fs::read_to_string(dir.join("migrations/V2__items_v.sql")).unwrap();
    assert!(plain.starts_with("-- pgx:no-transaction\n"), "{plain}");
    for needle in [
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS items_v ON shop.items (v);",
        "SET lock_timeout = '5s';",
        "-- Evidence: reports/promo.json (measured at commit",
        "--   by-v · p1: ",
        "plan differs",
        "RESET lock_timeout;",
    ] {
        assert!(plain.contains(needle), "{needle} not in:\n{plain}");
    }

    // A partitioned table: ON ONLY the parent, each partition concurrently, attached; the
    // index it replaces dropped after the build.
    let out = db.pgx(dir, &["promote", "promo", "events-covering"]);
    ok(&out);
    let partitioned =
        std::fs::read_to_string(dir.join("migrations/V3__events_covering.sql")).unwrap();
    assert!(
        partitioned.contains(
            "CREATE INDEX IF NOT EXISTS events_k_v ON ONLY shop.events (k, v) INCLUDE (id);"
        ),
        "{partitioned}"
    );
    for p in 0..4 {
        assert!(partitioned.contains(&format!(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS events_{p}_events_k_v ON shop.events_{p} (k, v) INCLUDE (id);\nALTER INDEX shop.events_k_v ATTACH PARTITION shop.events_{p}_events_k_v;"
        )), "partition {p}: {partitioned}");
    }
    let drop = partitioned
        .find("DROP INDEX IF EXISTS shop.events_k;")
        .expect("the old index dropped");
    assert!(drop > partitioned.rfind("ATTACH PARTITION").unwrap());
    assert_eq!(scratch_databases(&db), 0, "the scratch schema is dropped");

    // pgx lint on its own agrees.
    let out = db.pgx(dir, &["lint", "migrations"]);
    ok(&out);
    assert!(stdout(&out).contains("0 finding(s)"), "{}", stdout(&out));

    // Production: the schema, then rows, then the promoted migrations, linted strictly.
    ok(&db.pgx(dir, &["apply", "--target", "1"]));
    let mut client = db.client();
    client
        .batch_execute(
            "INSERT INTO shop.items SELECT g, g % 100, g % 997, 'x' FROM generate_series(1, 5000) g;
             INSERT INTO shop.events SELECT g % 50, g, g % 997 FROM generate_series(1, 5000) g;",
        )
        .unwrap();
    let out = db.pgx(dir, &["apply", "--strict"]);
    ok(&out);
    assert!(
        stdout(&out).contains("applied 2 migration(s)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(history_versions(&mut client), [1, 2, 3]);
    let valid: Vec<(String, bool)> = client
        .query(
            "SELECT c.relname::text, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE c.relname = 'items_v' OR c.relname LIKE 'events%k_v' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expected: Vec<(String, bool)> = [
        "events_0_events_k_v",
        "events_1_events_k_v",
        "events_2_events_k_v",
        "events_3_events_k_v",
        "events_k_v",
        "items_v",
    ]
    .iter()
    .map(|n| (n.to_string(), true))
    .collect();
    assert_eq!(valid, expected);
    let gone: bool = client
        .query_one("SELECT to_regclass('shop.events_k') IS NULL", &[])
        .unwrap()
        .get(0);
    assert!(gone, "the replaced index is dropped");
    client.batch_execute("ANALYZE shop.items").unwrap();
    let plan: String = client
        .query("EXPLAIN SELECT count(*) FROM shop.items WHERE v = 42", &[])
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(plan.contains("items_v"), "{plan}");
    let out = db.pgx(dir, &["status"]);
    ok(&out);
}

#[test]
fn what_only_an_experiment_may_do_is_refused_and_nothing_is_written() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let db = TestDb::new("promote_refused");
    let project = project();
    let dir = project.path();
    let out = db.pgx(dir, &["promote", "promo", "rewrite"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("experiments/promo.yaml:31: `VACUUM FULL shop.items`"),
        "file and line: {err}"
    );
    assert!(err.contains("ACCESS EXCLUSIVE"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert!(!dir.join("migrations/V2__rewrite.sql").exists());

    for (args, needle) in [
        (
            vec!["promote", "promo", "no-such"],
            "experiment promo has no variant \"no-such\"",
        ),
        (
            vec!["promote", "promo", "current"],
            "variant current (the baseline) has no SQL",
        ),
        (
            vec!["promote", "promo", "items-v", "--dir", "nowhere"],
            "migrations directory nowhere does not exist",
        ),
        (vec!["promote", "nope", "x"], "cannot read experiment file"),
        (
            vec!["promote", "promo", "items-v", "--lock-timeout", "soon"],
            "is not a duration",
        ),
    ] {
        let out = db.pgx(dir, &args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let written: Vec<_> = std::fs::read_dir(dir.join("migrations"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(written.len(), 1, "only V1: {written:?}");

    // A missing report is said in the migration (and on stderr), not an error.
    let out = db.pgx(dir, &["promote", "promo", "items-v", "--dry-run"]);
    ok(&out);
    assert!(
        stdout(&out).contains("-- Evidence: none cited: reports/promo.json does not exist."),
        "{}",
        stdout(&out)
    );
    assert!(
        !dir.join("migrations/V2__items_v.sql").exists(),
        "--dry-run writes nothing"
    );
}
