//! `pgx rehearse` through the real binary against a real PostgreSQL: a plain CREATE INDEX
//! on a table the load writes blocks the writers; the CONCURRENTLY form does not. The
//! index is on a slow IMMUTABLE function, so its build lasts well over the sampling
//! interval; the assertions are on the lock waits seen, not on timings.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::common::*;

/// One rehearsal at a time: they share two cores, and their test databases differ, so
/// pgx's advisory lock around a dataset build (scoped to a database) would not keep two
/// of them from building the same cached base at once.
static SERIAL: Mutex<()> = Mutex::new(());

fn fixture(name: &str) -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/rehearse"
    ))
    .join(name)
}

/// A project with the fixture's experiment, its V1 and `v2` as V2__index.sql.
fn project(v2: &str) -> tempfile::TempDir {
    let v1 = std::fs::read_to_string(fixture("migrations/V1__items.sql")).unwrap();
    let v2 = std::fs::read_to_string(fixture(v2)).unwrap();
    let dir = migrations(&[("V1__items.sql", &v1), ("V2__index.sql", &v2)]);
    std::fs::create_dir(dir.path().join("experiments")).unwrap();
    std::fs::copy(
        fixture("rehearse-fixture.yaml"),
        dir.path().join("experiments/rehearse-fixture.yaml"),
    )
    .unwrap();
    dir
}

fn rehearse(db: &TestDb, project: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "rehearse",
        "rehearse-fixture",
        "--before",
        "1s",
        "--after",
        "1s",
    ];
    args.extend_from_slice(extra);
    db.pgx(project, &args)
}

/// pgx's rehearsal copies still in the cluster.
fn leftover_copies(db: &TestDb) -> Vec<String> {
    db.client()
        .query(
            "SELECT datname::text FROM pg_database WHERE datname LIKE 'pgx_run_rehearse_fixture%'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// "N distinct" from the verdict line, None when no client was blocked.
fn clients_blocked(text: &str) -> Option<usize> {
    let at = text.find("BLOCKED load clients: ")? + "BLOCKED load clients: ".len();
    text[at..].split(' ').next()?.parse().ok()
}

#[test]
fn plain_create_index_blocks_writers_and_concurrently_does_not() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let db = TestDb::new("rehearse");

    let plain = project("plain.sql");
    let out = rehearse(&db, plain.path(), &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    let blocked = clients_blocked(&text);
    assert!(
        blocked.is_some_and(|n| n >= 1),
        "a plain CREATE INDEX must block the writers:\n{text}"
    );
    assert!(text.contains("RowExclusiveLock on items"), "{text}");
    let report = plain.path().join("reports/rehearse-rehearse-fixture.md");
    let md = std::fs::read_to_string(&report).expect("the report is written");
    assert!(
        md.contains("| `V2__index` | load client | `items` | RowExclusiveLock | yes |"),
        "{md}"
    );
    assert!(md.contains("| before |") && md.contains("| during |") && md.contains("| after |"));
    // Lint's view of the same migration, next to the measurement.
    assert!(md.contains("require-concurrent-index-creation"), "{md}");
    assert!(leftover_copies(&db).is_empty());

    let concurrent = project("concurrently.sql");
    let out_md = concurrent.path().join("rehearsal.md");
    let out = rehearse(&db, concurrent.path(), &["--out", out_md.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert_eq!(clients_blocked(&text), None, "{text}");
    assert!(
        text.contains("V2__index took") && text.contains("no load client was seen waiting"),
        "{text}"
    );
    // It reused the dataset the first rehearsal built.
    assert!(
        stderr(&out).contains("reusing cached dataset"),
        "{}",
        stderr(&out)
    );
    let md = std::fs::read_to_string(&out_md).unwrap();
    assert!(!md.contains("| load client | `items` |"), "{md}");

    assert!(leftover_copies(&db).is_empty());
}

#[test]
fn a_failing_migration_is_reported_exits_non_zero_and_leaves_nothing() {
    // Alone (and so without this module's serial lock): it counts every load session on
    // the server, and other areas' load tests use the same application name.
    let _alone = exclusive();
    let db = TestDb::new("rehearse_fail");
    let broken = project("broken.sql");
    let out = db.pgx(
        broken.path(),
        &[
            "rehearse",
            "rehearse-fixture",
            "--before",
            "200ms",
            "--after",
            "200ms",
        ],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(text.contains("V2__index FAILED"), "{text}");
    assert!(text.contains("no_such_column"), "{text}");
    assert!(leftover_copies(&db).is_empty());
    let remaining: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name IN ('pgx load', 'pgx rehearse sampler')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(remaining, 0, "load and sampler connections are gone");
}

#[test]
fn bad_requests_fail_early_with_advice() {
    let db = TestDb::new("rehearse_bad");
    let plain = project("plain.sql");
    let nothing = db.pgx(
        plain.path(),
        &["rehearse", "rehearse-fixture", "--from", "2"],
    );
    assert_eq!(nothing.status.code(), Some(2));
    assert!(
        stderr(&nothing).contains("nothing to rehearse"),
        "{}",
        stderr(&nothing)
    );
    let bad = db.pgx(
        plain.path(),
        &["rehearse", "rehearse-fixture", "--before", "soon"],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("--before \"soon\" is not a duration"));
    let no_load = plain.path().join("experiments/no-load.yaml");
    let yaml = std::fs::read_to_string(fixture("rehearse-fixture.yaml")).unwrap();
    let cut = yaml.find("load:").unwrap();
    let without = format!(
        "{}queries:\n  q:\n    sql: SELECT 1\n",
        yaml[..cut].replace("name: rehearse-fixture", "name: no-load")
    );
    std::fs::write(&no_load, without).unwrap();
    let out = db.pgx(plain.path(), &["rehearse", "no-load"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("has no load: section"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn ctrl_c_during_a_migration_stops_everything_and_drops_the_copy() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let db = TestDb::new("rehearse_int");
    let plain = project("plain.sql");
    let child = pgx_command(plain.path())
        .env("DATABASE_URL", db.url())
        .args([
            "rehearse",
            "rehearse-fixture",
            "--before",
            "1s",
            "--after",
            "30s",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut admin = db.client();
    let building = "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE 'pgx_run_rehearse_fixture%' AND query LIKE '%CREATE INDEX items_slow_key%' AND pid <> pg_backend_pid()";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while admin.query_one(building, &[]).unwrap().get::<_, i64>(0) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the index build never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(leftover_copies(&db).is_empty(), "{}", stderr(&out));
    // The rehearsal's sessions (its load clients and its sampler) are on its copy; other
    // areas' loads, running meanwhile, are on theirs.
    let left: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE 'pgx_run_rehearse_fixture%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "nothing left running");
}
