//! Faults lose nothing and leave nothing running: a failing variant, a hanging query,
//! Ctrl-C, and bad input.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use pgx::experiment::{RunOptions, progress::Progress, spec};
use pgx::target::Target;

/// Copy databases of one experiment still present (tests run in parallel, so only ours).
fn leftover_copies(server: &pgx::cluster::ClusterUse, pattern: &str) -> i64 {
    let mut admin = pgx::target::connect(&server.cluster().config("postgres")).unwrap();
    admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname ~ $1",
            &[&pattern],
        )
        .unwrap()
        .get(0)
}

#[test]
fn failing_variant_and_hanging_query_are_reported_and_the_rest_is_measured() {
    let server = server();
    let started = Instant::now();
    let r = run_fixture(&server, "faults.yaml", &RunOptions::default());
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "a 30 s sleep must not be waited for"
    );

    let broken = r.variants.iter().find(|v| v.name == "broken").unwrap();
    let error = broken.error.as_deref().unwrap();
    assert!(
        error.contains("no_such_table") && error.contains("line 2"),
        "{error}"
    );
    assert!(
        r.cells.iter().all(|c| c.variant != "broken"),
        "no numbers for a variant that did not build"
    );

    let indexed = r
        .cells
        .iter()
        .find(|c| c.variant == "indexed" && c.query == "fast")
        .unwrap();
    let rounds: std::collections::BTreeSet<usize> =
        indexed.samples.iter().map(|s| s.round).collect();
    assert_eq!(
        rounds.len(),
        3,
        "the variant after the broken one was measured in all 3 rounds"
    );
    let hang = r
        .cells
        .iter()
        .find(|c| c.variant == "plain" && c.query == "hang")
        .unwrap();
    assert!(
        hang.error.as_deref().unwrap().contains("timed out"),
        "{:?}",
        hang.error
    );
    assert_eq!(
        leftover_copies(&server, "^pgx_run_faults_(plain|broken|indexed)_"),
        0
    );

    let md = pgx::report::markdown::render(&r);
    assert!(md.contains("FAILED") && md.contains("timed out"));
}

/// A copy of the faults fixture in a project directory of its own: the hanging query
/// waits up to a minute, and runs in the DML phase (rollback: true), so every read cell
/// is measured in all its rounds before it starts.
fn hanging_project(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(project.path().join("tests/fixtures/no-migrations")).unwrap();
    let yaml = std::fs::read_to_string(experiment_fixture("faults.yaml"))
        .unwrap()
        .replace("timeout: 300ms", "timeout: 60s")
        .replace("name: faults", &format!("name: {name}"))
        .replace(
            "    params: [[30]]",
            "    params: [[30]]\n    rollback: true",
        );
    let path = project.path().join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    (project, path)
}

fn spawn_experiment(
    server: &pgx::cluster::ClusterUse,
    project: &Path,
    path: &Path,
) -> std::process::Child {
    let url = format!(
        "host={} port={} user=postgres dbname=postgres",
        server.cluster().socket_dir().display(),
        pgx::cluster::PORT
    );
    pgx_command(project)
        .env("DATABASE_URL", &url)
        .args([
            "experiment",
            path.to_str().unwrap(),
            "--out",
            project.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait until the hanging query runs in a copy that belongs to `child`.
fn wait_for_sleep_in_copy_of(admin: &mut postgres::Client, child: &mut std::process::Child) {
    let pid = child.id();
    let pattern = format!("^pgx_run_.*_{pid}_[0-9]+$");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let running: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(%' AND datname ~ $1",
                &[&pattern],
            )
            .unwrap()
            .get(0);
        if running > 0 {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            panic!("the experiment ended ({status}) before its hanging query started: {err}");
        }
        assert!(Instant::now() < deadline, "the hanging query never started");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A project directory with the faults fixture renamed `name` (so its copies are its
/// own), the experiment file's path, and a DATABASE_URL for the test cluster.
fn faults_project(
    server: &pgx::cluster::ClusterUse,
    name: &str,
) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(project.path().join("tests/fixtures/no-migrations")).unwrap();
    let yaml = std::fs::read_to_string(experiment_fixture("faults.yaml"))
        .unwrap()
        .replace("name: faults", &format!("name: {name}"));
    let path = project.path().join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    let url = format!(
        "host={} port={} user=postgres dbname=postgres",
        server.cluster().socket_dir().display(),
        pgx::cluster::PORT
    );
    (project, path, url)
}

#[test]
fn a_run_with_a_failed_variant_writes_its_report_and_exits_1() {
    let server = server();
    let (project, path, url) = faults_project(&server, "faults-exit");
    let out = pgx_command(project.path())
        .env("DATABASE_URL", &url)
        .args(["experiment", path.to_str().unwrap(), "--out"])
        .arg(project.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(i32::from(pgx::exit::ATTENTION)),
        "CI can gate on a broken experiment: {}",
        stderr(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains("variant broken") && err.contains("plain · hang"),
        "the failures are named: {err}"
    );
    let md = std::fs::read_to_string(project.path().join("faults-exit.md")).unwrap();
    assert!(md.contains("| broken |") && md.contains("FAILED"), "{md}");
}

#[test]
fn a_disk_without_room_for_the_copies_is_a_clear_error_and_leaves_nothing_behind() {
    let server = server();
    let (project, path, url) = faults_project(&server, "faults-disk");
    // A cell that writes: every database is measured on a copy (a run that writes
    // nothing could measure its cached builds in place, needing no disk at all).
    let yaml = std::fs::read_to_string(&path).unwrap().replace(
        "queries:\n",
        "queries:\n  touch:\n    sql: DELETE FROM t WHERE id = $1\n    params: [[1]]\n    rollback: true\n",
    );
    std::fs::write(&path, yaml).unwrap();
    // 1 MiB free: not even the baseline's copy fits (the base is several MiB).
    let out = pgx_command(project.path())
        .env("DATABASE_URL", &url)
        .env("PGX_FREE_DISK_BYTES", (1u64 << 20).to_string())
        .args(["experiment", path.to_str().unwrap(), "--out"])
        .arg(project.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("not enough free disk") && err.contains("hint:"),
        "{err}"
    );
    // It says what it needs, and how much is free, before creating anything.
    assert!(
        err.contains("it needs") && err.contains("are free"),
        "{err}"
    );
    assert_eq!(leftover_copies(&server, "^pgx_run_faults_disk_"), 0);
    assert!(
        !project.path().join("faults-disk.md").exists(),
        "nothing was measured, so no report"
    );
}

#[test]
fn ctrl_c_stops_the_run_and_drops_its_databases() {
    let server = server();
    let (project, path) = hanging_project("faults-interrupted");
    let mut child = spawn_experiment(&server, project.path(), &path);
    let mut admin = pgx::target::connect(&server.cluster().config("postgres")).unwrap();
    wait_for_sleep_in_copy_of(&mut admin, &mut child);
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "Ctrl-C cancels the running query"
    );
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    // What was measured before Ctrl-C is not lost: a partial report is written, with the
    // read cells measured before the hanging DML phase began (3 rounds of `fast` each,
    // a block of runs per round for a query this fast).
    let md = std::fs::read_to_string(project.path().join("faults-interrupted.md")).unwrap();
    assert!(md.contains("Partial run"), "{md}");
    let n_column = regex::Regex::new(r" \| (\d+) \|$").unwrap();
    let fast_row = |variant: &str| {
        md.lines()
            .filter(|l| l.starts_with(&format!("| {variant} | ")))
            .find(|l| {
                n_column
                    .captures(l)
                    .and_then(|c| c[1].parse::<usize>().ok())
                    .is_some_and(|n| n >= 3 && n.is_multiple_of(3))
            })
            .map(str::to_string)
    };
    assert!(
        fast_row("plain").is_some() && fast_row("indexed").is_some(),
        "the measured cells are in the partial report: {md}"
    );
    assert_eq!(
        leftover_copies(&server, "^pgx_run_faults_interrupted_"),
        0,
        "copies are dropped on Ctrl-C: {}",
        stderr(&out)
    );
    let still_running: i64 = admin
        .query_one("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(%' AND datname LIKE 'pgx_run_faults_interrupted%'", &[])
        .unwrap()
        .get(0);
    assert_eq!(still_running, 0, "nothing left running");
}

#[test]
fn copies_left_by_a_killed_run_are_collected_and_a_live_runs_are_not() {
    // Alone: any other run starting meanwhile collects orphans too (every run does, before
    // it starts), and would take the killed run's copies before this test's `pgx gc`.
    let _alone = exclusive();
    let server = server();
    let (project, path) = hanging_project("faults-killed");
    let mut killed = spawn_experiment(&server, project.path(), &path);
    let mut admin = pgx::target::connect(&server.cluster().config("postgres")).unwrap();
    wait_for_sleep_in_copy_of(&mut admin, &mut killed);
    let (live_project, live_path) = hanging_project("faults-alive");
    let mut live = spawn_experiment(&server, live_project.path(), &live_path);
    wait_for_sleep_in_copy_of(&mut admin, &mut live);

    killed.kill().unwrap(); // SIGKILL: no cleanup at all
    killed.wait().unwrap();
    let left = leftover_copies(&server, "^pgx_run_faults_killed_");
    assert!(left > 0, "kill -9 leaves the copies behind");

    let url = format!(
        "host={} port={} user=postgres dbname=postgres",
        server.cluster().socket_dir().display(),
        pgx::cluster::PORT
    );
    let gc = |args: &[&str]| {
        let out = pgx_command(project.path())
            .env("DATABASE_URL", &url)
            .arg("gc")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        stdout(&out)
    };
    // The killed run's backends notice their client is gone within moments.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listed = gc(&["--dry-run"]);
        let orphans = listed
            .lines()
            .filter(|l| l.contains("pgx_run_faults_killed_") && l.contains("orphaned"))
            .count() as i64;
        if orphans == left {
            break;
        }
        assert!(Instant::now() < deadline, "never seen as orphans: {listed}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let listed = gc(&[]);
    assert!(listed.contains("dropped"), "{listed}");
    assert_eq!(
        leftover_copies(&server, "^pgx_run_faults_killed_"),
        0,
        "pgx gc dropped the orphans: {listed}"
    );
    assert!(
        leftover_copies(&server, "^pgx_run_faults_alive_") > 0,
        "a running pgx's copies are in use, and kept: {listed}"
    );
    unsafe { libc::kill(live.id() as i32, libc::SIGINT) };
    let out = live.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert_eq!(leftover_copies(&server, "^pgx_run_faults_alive_"), 0);
}

#[test]
fn bad_experiment_files_are_clear_errors_with_locations() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: bad\nbaseline: a\ndataset:\n  scale: [1\nvariants: {}\n",
    )
    .unwrap();
    let out = pgx_command(dir.path())
        .args(["experiment", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("bad.yaml:"), "file named: {err}");
    assert!(
        regex::Regex::new(r"bad\.yaml:\d+:\d+")
            .unwrap()
            .is_match(&err),
        "line and column: {err}"
    );
    assert!(err.contains("hint:") && !err.contains("panicked"), "{err}");

    // A YAML alias bomb (issue 23): ten lines that expand to 10^9 values. Said in words
    // with its line, not as the parser's debug struct cut off at "(used".
    let mut bomb = String::from(
        "name: bomb\nbaseline: a\ndataset:\n  steps:\n    - name: s\n      sql: SELECT 1\n\
         variants:\n  a: {}\nqueries:\n  q:\n    sql: SELECT $1\n    params:\n\
         \x20   - &a0 [x, x, x, x, x, x, x, x, x, x]\n",
    );
    for i in 1..9 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        bomb.push_str(&format!("    - &a{i} [{refs}]\n"));
    }
    std::fs::write(&bad, bomb).unwrap();
    let out = pgx_command(dir.path())
        .args(["experiment", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "bad.yaml: the file expands to more than 250000 nodes (YAML aliases); at line 13"
        ),
        "{err}"
    );
    assert!(
        !err.contains("Nodes {") && !err.contains("budget breached"),
        "{err}"
    );

    let out = pgx_command(Path::new(env!("CARGO_MANIFEST_DIR")))
        .args(["experiment", "no-such-experiment"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("index-strategies"),
        "lists the known experiments: {}",
        stderr(&out)
    );

    let out = pgx_command(Path::new(env!("CARGO_MANIFEST_DIR")))
        .args(["experiment", "index-strategies", "--scale", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--scale"), "{}", stderr(&out));
}

#[test]
fn rebuilding_at_one_scale_keeps_the_base_of_another_scale_and_bases_in_use() {
    let server = server();
    let target = Target::External(server.cluster().config("postgres"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache-scales.yaml");
    let yaml = std::fs::read_to_string(experiment_fixture("faults.yaml"))
        .unwrap()
        .replace("name: faults", "name: cache-scales")
        .replace("rows: 1000", "rows: 1234");
    std::fs::write(&path, yaml).unwrap();
    let spec = spec::read(&path).unwrap();
    let build = |scale: f64, rebuild: bool| {
        let options = RunOptions {
            scale: Some(scale),
            rebuild,
            ..Default::default()
        };
        pgx::experiment::prepare_dataset(&target, &spec, &options, &mut Progress::quiet()).unwrap()
    };
    let full = build(1.0, false);
    let half = build(0.5, false);
    assert_ne!(full.database, half.database);
    // The definition changes (a new dataset step): the old base at scale 1 is stale.
    let changed = std::fs::read_to_string(&path).unwrap().replace(
        "    - name: table\n",
        "    - name: marker\n      sql: CREATE TABLE marker ();\n    - name: table\n",
    );
    std::fs::write(&path, changed).unwrap();
    let spec2 = spec::read(&path).unwrap();
    let options = RunOptions {
        scale: Some(1.0),
        ..Default::default()
    };
    let rebuilt =
        pgx::experiment::prepare_dataset(&target, &spec2, &options, &mut Progress::quiet())
            .unwrap();
    assert_ne!(rebuilt.database, full.database);
    let mut admin = pgx::target::connect(&server.cluster().config("postgres")).unwrap();
    let exists = |admin: &mut postgres::Client, name: &str| -> bool {
        admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .unwrap()
            .is_some()
    };
    assert!(
        !exists(&mut admin, &full.database),
        "the stale base at the same scale is dropped"
    );
    assert!(
        exists(&mut admin, &half.database),
        "a base at another scale is kept"
    );
}

/// A `params_from` that returns more sets than `runs.max_params` is refused before any
/// cell is measured, with what it would cost and what to do; raising the cap runs it.
#[test]
fn params_from_over_the_cap_is_refused_with_its_cost_and_the_cap_can_be_raised() {
    let db = TestDb::new("faults_params");
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(project.path().join("migrations")).unwrap();
    let yaml = |cap: &str| {
        format!(
            r#"
name: many
dataset:
  steps:
    - name: t
      sql: CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g
baseline: plain
variants:
  plain: {{}}
queries:
  by-id:
    sql: SELECT * FROM t WHERE id = $1
    params_from: SELECT id FROM t ORDER BY id LIMIT 120
runs: {{ rounds: 3{cap} }}
"#
        )
    };
    let path = project.path().join("many.yaml");
    std::fs::write(&path, yaml("")).unwrap();
    let started = Instant::now();
    let out = db.pgx(project.path(), &["experiment", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("returned 120 parameter sets, more than runs.max_params (100)")
            && err.contains("240 cells")
            && err.contains("LIMIT n in params_from"),
        "{err}"
    );
    assert!(!project.path().join("reports").exists(), "nothing written");
    assert!(started.elapsed() < Duration::from_secs(60));

    std::fs::write(&path, yaml(", max_params: 120")).unwrap();
    let out = db.pgx(
        project.path(),
        &["experiment", path.to_str().unwrap(), "--no-control"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json = std::fs::read_to_string(project.path().join("reports/many.json")).unwrap();
    let r = pgx::report::json::parse(&json).unwrap();
    assert_eq!(r.queries[0].params.len(), 120);
}

/// A materialiser that hands out offsets without a lock breaks contiguity under four
/// concurrent clients: the load's `verify` catches it after the run and fails that
/// variant, named, with the rows that violate it; the locked one passes.
#[test]
fn a_materialiser_that_breaks_contiguity_under_concurrency_fails_its_variant() {
    let server = server();
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(project.path().join("tests/fixtures/no-migrations")).unwrap();
    let path = project.path().join("materialisers.yaml");
    std::fs::copy(experiment_fixture("materialisers.yaml"), &path).unwrap();
    let url = format!(
        "host={} port={} user=postgres dbname=postgres",
        server.cluster().socket_dir().display(),
        pgx::cluster::PORT
    );
    let out = pgx_command(project.path())
        .env("DATABASE_URL", &url)
        .args(["experiment", path.to_str().unwrap(), "--out"])
        .arg(project.path())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(i32::from(pgx::exit::ATTENTION)),
        "a variant that breaks the check fails the run: {err}"
    );
    assert!(
        err.contains("racy")
            && err.contains("load.verify.contiguous failed after run 1")
            && err.contains("row(s) violate it"),
        "the failure names the variant, the check and the run: {err}"
    );
    assert!(
        !err.contains("variant locked failed"),
        "the locked form holds: {err}"
    );
    let json = std::fs::read_to_string(project.path().join("materialisers.json")).unwrap();
    let r = pgx::report::json::parse(&json).unwrap();
    let locked = r.variants.iter().find(|v| v.name == "locked").unwrap();
    assert!(locked.error.is_none(), "{:?}", locked.error);
    let load = locked.load.as_ref().expect("the locked variant was loaded");
    assert!(load.points[0].transactions > 0);
    let racy = r.variants.iter().find(|v| v.name == "racy").unwrap();
    assert!(
        racy.error
            .as_deref()
            .is_some_and(|e| e.contains("load.verify.contiguous")),
        "{:?}",
        racy.error
    );
}

#[test]
fn a_later_stage_drops_the_builds_an_earlier_stage_made_when_the_disk_needs_it() {
    // The disk is counted across every pgx database on the server: no other test's.
    let _alone = exclusive();
    let server = server();
    let (project, path, url) = faults_project(&server, "faults-stages");
    // Two candidates that each rewrite (add a table of ~5 MB): builds of their own.
    let wide = |n: u32| {
        format!(
            "  wide{n}:\n    sql: CREATE TABLE w{n} AS SELECT g AS id, repeat('x', 500) AS pad FROM generate_series(1, 10000) g;\n"
        )
    };
    let yaml = std::fs::read_to_string(&path).unwrap();
    let (head, _) = yaml.split_once("variants:\n").unwrap();
    let yaml = format!(
        "{head}variants:\n  plain:\n    about: nothing added\n{}{}queries:\n  fast:\n    sql: SELECT count(*) FROM t WHERE id < $1\n    params: [[100]]\nruns: {{ warmup: 1, repeat: 3 }}\n",
        wide(1),
        wide(2)
    );
    std::fs::write(&path, yaml).unwrap();
    let pgx = |quota: Option<u64>, args: &[&str]| {
        let mut cmd = pgx_command(project.path());
        cmd.env("DATABASE_URL", &url)
            .env("PGX_VARIANT_CACHE_GB", "100")
            .args(["experiment", path.to_str().unwrap(), "--out"])
            .arg(project.path())
            .args(args);
        if let Some(quota) = quota {
            cmd.env("PGX_DISK_QUOTA_BYTES", quota.to_string());
        }
        cmd.output().unwrap()
    };
    let built = pgx(None, &["--dataset-only"]);
    assert!(built.status.success(), "{}", stderr(&built));
    // Its name, as it says it (another experiment of the same dataset may have built it).
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&built.stdout),
        stderr(&built)
    );
    let base_name = regex::Regex::new(r"pgx_base_[0-9a-f]+")
        .unwrap()
        .find(&said)
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| panic!("the base is named: {said}"));
    let gc = pgx_command(project.path())
        .env("DATABASE_URL", &url)
        .arg("gc")
        .output()
        .unwrap();
    assert!(gc.status.success(), "{}", stderr(&gc));
    let mut admin = pgx::target::connect(&server.cluster().config("postgres")).unwrap();
    let size = |admin: &mut postgres::Client, pattern: &str| -> u64 {
        let bytes: i64 = admin
            .query_one(
                "SELECT coalesce(sum(pg_database_size(oid)), 0)::int8 FROM pg_database \
                 WHERE coalesce(shobj_description(oid, 'pg_database'), '') LIKE $1",
                &[&pattern],
            )
            .unwrap()
            .get(0);
        bytes as u64
    };
    let base: i64 = admin
        .query_one(
            "SELECT pg_database_size(oid) FROM pg_database WHERE datname = $1",
            &[&base_name],
        )
        .unwrap()
        .get(0);
    let base = base as u64;
    assert!(base > 0, "the base was built");
    // No build of an earlier run in the cache: this run builds both.
    let entries: Vec<String> = admin
        .query(
            "SELECT datname::text FROM pg_database WHERE shobj_description(oid, 'pg_database') \
             LIKE 'pgx:variant:%' AND shobj_description(oid, 'pg_database') LIKE '%' || $1 || '%'",
            &[&base_name],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    for entry in entries {
        admin
            .batch_execute(&format!("DROP DATABASE \"{entry}\" WITH (FORCE)"))
            .unwrap();
    }
    // The quota leaves 3.6 bases: the control's copy of the base and one build (planned
    // at 2 bases, ~1.7 in fact) fit, two builds do not, so they are measured in two
    // stages; once the first build stays cached, the second no longer fits.
    let used = size(&mut admin, "pgx:%");
    let out = pgx(Some(used + base * 18 / 5), &[]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("stage 2 of 2"), "two stages: {err}");
    assert!(
        err.contains("dropped the cached build of wide1") && err.contains("measured in stage 1"),
        "the first stage's build made room for the second: {err}"
    );
    let md = std::fs::read_to_string(project.path().join("faults-stages.md")).unwrap();
    assert!(
        !md.contains("FAILED") && !md.contains("not enough free disk"),
        "both candidates measured: {md}"
    );
}

/// A session the server ends under a statement is the server ending it, also once the
/// error is said in words (psql's form): the run keeps what it measured and writes a
/// partial report, instead of failing on "error communicating with the server" (a
/// session opened while a killed backend's siblings were being ended lost the error's
/// type, and with it the partial report).
#[test]
fn a_session_ended_by_the_server_is_seen_as_such_once_described() {
    let server = server();
    let config = server.cluster().config("postgres");
    let mut victim = pgx::target::connect(&config).unwrap();
    let pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let mut admin = pgx::target::connect(&config).unwrap();
    admin
        .execute("SELECT pg_terminate_backend($1, 5000)", &[&pid])
        .unwrap();
    let err = victim.batch_execute("SELECT 1").unwrap_err();
    let said = pgx::error::describe_pg_error(&err, Some("SELECT 1"));
    let described = pgx::error::described(said.clone(), err);
    assert!(
        pgx::error::server_terminated(&described),
        "the described error still says the server ended the session: {described:#}"
    );
    assert_eq!(format!("{described:#}"), said, "said once, in words");
    let in_words_only = anyhow::anyhow!("{said}");
    assert!(!pgx::error::server_terminated(&in_words_only));
}
