//! Ctrl-C and SIGTERM through the real binary: the running statement is cancelled, a
//! transactional migration is rolled back (and pgx says so), experiment copies are
//! dropped and an on-demand embedded server is stopped, the same for both signals.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// Wait (bounded) until a statement matching `pattern` runs in a database matching `db`.
fn wait_for_statement(admin: &mut postgres::Client, db: &str, pattern: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let running: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE $1 AND query LIKE $2 \
                 AND state = 'active' AND pid <> pg_backend_pid()",
                &[&db, &pattern],
            )
            .unwrap()
            .get(0);
        if running > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{pattern} never started in {db}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(rc, 0);
}

fn interrupt_a_long_transactional_migration(sig: i32, tag: &str) {
    let db = TestDb::new(tag);
    let v1 = "CREATE TABLE account (id int);\n";
    let v2 = "CREATE TABLE half_done (id int);\nINSERT INTO half_done VALUES (1);\nSELECT pg_sleep(60);\n";
    let project = migrations(&[("V1__account.sql", v1), ("V2__slow.sql", v2)]);
    let child = pgx_command(project.path())
        .env("DATABASE_URL", db.url())
        .arg("apply")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut admin = db.client();
    wait_for_statement(&mut admin, &db.name, "%pg_sleep(60)%");
    signal(&child, sig);
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains("V2__slow.sql") && err.contains("cancelled") && err.contains("rolled back"),
        "pgx says what it undid: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(history_versions(&mut admin), vec![1], "V2 not recorded");
    let half_done: bool = admin
        .query_one("SELECT to_regclass('half_done') IS NOT NULL", &[])
        .unwrap()
        .get(0);
    assert!(!half_done, "V2 was rolled back, not committed");
    let still: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query LIKE '%pg_sleep(60)%' \
             AND pid <> pg_backend_pid()",
            &[&db.name],
        )
        .unwrap()
        .get(0);
    assert_eq!(still, 0, "the statement was cancelled, not left running");
}

#[test]
fn ctrl_c_during_a_transactional_migration_cancels_it_and_rolls_back() {
    interrupt_a_long_transactional_migration(libc::SIGINT, "sig_int_migration");
}

#[test]
fn sigterm_during_a_transactional_migration_cancels_it_and_rolls_back() {
    interrupt_a_long_transactional_migration(libc::SIGTERM, "sig_term_migration");
}

/// An experiment on an embedded cluster of its own, started on demand: SIGTERM must drop
/// the variant's copy and stop the server, as Ctrl-C does.
#[test]
fn sigterm_during_an_experiment_drops_its_copy_and_stops_the_on_demand_server() {
    let own = OwnCluster::new("sigterm");
    let data_dir = own.0.clone();
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir(project.path().join("migrations")).unwrap();
    let yaml = "name: sigterm-copies\n\
        dataset:\n  scale: 1\n  steps:\n    - name: t\n      sql: CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 100) g;\n\
        baseline: plain\nvariants:\n  plain: {}\n\
        queries:\n  hang:\n    sql: SELECT pg_sleep($1)\n    params: [[60]]\n\
        runs: { warmup: 0, repeat: 1, timeout: 120s }\n";
    let path = project.path().join("sigterm-copies.yaml");
    std::fs::write(&path, yaml).unwrap();
    let child = pgx_command(project.path())
        .env("PGX_DATA_DIR", &data_dir)
        .args(["experiment", path.to_str().unwrap(), "--out"])
        .arg(project.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the server, then for the hanging query in this run's own copy.
    let cluster = pgx::cluster::Cluster::new(&data_dir).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut admin = loop {
        if cluster.state().unwrap() == pgx::cluster::State::Running
            && let Ok(client) = cluster.config("postgres").connect(postgres::NoTls)
        {
            break client;
        }
        assert!(
            Instant::now() < deadline,
            "the embedded server never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    wait_for_statement(&mut admin, "pgx_run_sigterm_copies_%", "%pg_sleep%");
    drop(admin);
    signal(&child, libc::SIGTERM);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert_eq!(
        cluster.state().unwrap(),
        pgx::cluster::State::Stopped,
        "the server pgx started on demand is stopped again: {}",
        stderr(&out)
    );
    // Start it again to look: no copy of this run is left.
    {
        let usage = cluster.attach().unwrap();
        let mut admin = usage
            .cluster()
            .config("postgres")
            .connect(postgres::NoTls)
            .unwrap();
        let copies: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_database WHERE datname LIKE 'pgx_run_sigterm_copies_%'",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(copies, 0, "the variant's copy is dropped on SIGTERM");
    }
}

/// A data migration of about `bytes` bytes: one INSERT a line.
fn data_migration(bytes: usize) -> String {
    let mut sql = String::from("CREATE TABLE big (id bigint PRIMARY KEY, note text);\n");
    let mut n = 0;
    while sql.len() < bytes {
        n += 1;
        sql.push_str(&format!(
            "INSERT INTO big (id, note) VALUES ({n}, 'row {n}; it''s text');\n"
        ));
    }
    sql
}

/// Issue 23: a huge migration is split and linted before anything runs; Ctrl-C during
/// that must stop pgx at once (it used to go on linting, then print "would apply").
#[test]
fn ctrl_c_while_a_huge_migration_is_read_stops_pgx_at_once() {
    let db = TestDb::new("sig_huge_file");
    // Squawk parses this for many seconds in a debug build (about 15 s here).
    let project = migrations(&[("V1__big.sql", &data_migration(4 << 20))]);
    let mut child = pgx_command(project.path())
        .env("DATABASE_URL", db.url())
        .args(["apply", "--dry-run"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // pgx has read the history (to know what is pending) and is linting.
    let mut admin = db.client();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let reading: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
                 AND query LIKE '%to_regclass%' AND state = 'idle' AND pid <> pg_backend_pid()",
                &[&db.name],
            )
            .unwrap()
            .get(0);
        if reading > 0 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "pgx ended before it read the history"
        );
        assert!(Instant::now() < deadline, "pgx never read the history");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "still linting when interrupted"
    );
    signal(&child, libc::SIGINT);
    let interrupted = Instant::now();
    let deadline = interrupted + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pgx was still running 10 s after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(130), "{}", stderr(&out));
    assert!(!stdout(&out).contains("would apply"), "{}", stdout(&out));
}

/// An experiment whose one query sleeps `seconds`, run by the binary on an embedded
/// cluster of the test's own (started on demand), and a connection to that cluster once it
/// is up.
fn sleeping_experiment(
    own: &OwnCluster,
    name: &str,
    seconds: u32,
) -> (tempfile::TempDir, Child, pgx::cluster::Cluster) {
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir(project.path().join("migrations")).unwrap();
    let yaml = format!(
        "name: {name}\n\
         dataset:\n  scale: 1\n  steps:\n    - name: t\n      sql: CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 100) g;\n\
         baseline: plain\nvariants:\n  plain: {{}}\n\
         queries:\n  hang:\n    sql: SELECT pg_sleep($1)\n    params: [[{seconds}]]\n\
         runs: {{ warmup: 0, repeat: 1, rounds: 1, timeout: 120s }}\n"
    );
    let path = project.path().join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    let child = pgx_command(project.path())
        .env("PGX_DATA_DIR", &own.0)
        .args(["experiment", path.to_str().unwrap(), "--out"])
        .arg(project.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let cluster = pgx::cluster::Cluster::new(&own.0).unwrap();
    (project, child, cluster)
}

/// Wait (bounded) for the embedded server the child started, and connect to it.
fn connect_when_up(cluster: &pgx::cluster::Cluster) -> postgres::Client {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if cluster.state().unwrap() == pgx::cluster::State::Running
            && let Ok(client) = cluster.config("postgres").connect(postgres::NoTls)
        {
            return client;
        }
        assert!(
            Instant::now() < deadline,
            "the embedded server never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// pgx's copies on the cluster, looked at with the server started again if it is not
/// running.
fn copies_left(cluster: &pgx::cluster::Cluster, pattern: &str) -> i64 {
    let usage = cluster.attach().unwrap();
    let mut admin = usage
        .cluster()
        .config("postgres")
        .connect(postgres::NoTls)
        .unwrap();
    admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname LIKE $1",
            &[&pattern],
        )
        .unwrap()
        .get(0)
}

fn kill9(pid: i32) {
    // SAFETY: kill(2) with a pid read from the server; the test runs the server.
    let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill -9 {pid}");
}

/// Issue 23, item 1: a backend killed with kill -9 mid-experiment makes PostgreSQL end
/// every session and recover for a moment (SQLSTATE 57P03). pgx must wait for it and drop
/// its copies, not leave them behind, and must not point at DATABASE_URL (never set).
#[test]
fn a_killed_backend_leaves_no_copies_behind() {
    let own = OwnCluster::new("killed-backend");
    let (project, child, cluster) = sleeping_experiment(&own, "killed-backend", 30);
    let mut admin = connect_when_up(&cluster);
    wait_for_statement(&mut admin, "pgx_run_killed_backend_%", "%pg_sleep%");
    let pid: i32 = admin
        .query_one(
            "SELECT pid FROM pg_stat_activity WHERE datname LIKE 'pgx_run_killed_backend_%' \
             AND query LIKE '%pg_sleep%' AND state = 'active' LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    drop(admin);
    kill9(pid);
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        !err.contains("DATABASE_URL"),
        "DATABASE_URL was never set: {err}"
    );
    assert!(
        !err.contains("could not drop"),
        "every copy was dropped: {err}"
    );
    assert_eq!(
        copies_left(&cluster, "pgx_run_killed_backend_%"),
        0,
        "no copy is left behind: {err}"
    );
    // What was measured is kept, marked partial, as after Ctrl-C, naming why.
    let md = std::fs::read_to_string(project.path().join("killed-backend.md"))
        .unwrap_or_else(|e| panic!("a partial report: {e}; {err}"));
    assert!(
        md.contains("**Partial run:** stopped before it finished"),
        "{md}"
    );
    assert!(md.contains("server.log"), "where to read why: {md}");
}

/// Issue 23, item 1: when the embedded postmaster itself dies, pgx says so and where its
/// log is, not "connection refused ... check DATABASE_URL"; the next command, which
/// starts it again, says it was not shut down cleanly, and `pgx gc` drops the copies the
/// crashed run left.
#[test]
fn a_killed_embedded_postmaster_is_named_with_its_log_and_the_next_run_cleans_up() {
    let own = OwnCluster::new("killed-postmaster");
    let (project, child, cluster) = sleeping_experiment(&own, "killed-postmaster", 30);
    let mut admin = connect_when_up(&cluster);
    wait_for_statement(&mut admin, "pgx_run_killed_postmaster_%", "%pg_sleep%");
    drop(admin);
    let pid_file = std::fs::read_to_string(cluster.data_dir().join("postmaster.pid")).unwrap();
    let postmaster: i32 = pid_file.lines().next().unwrap().trim().parse().unwrap();
    kill9(postmaster);
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let root = cluster.root.display().to_string();
    assert!(
        err.contains(&format!(
            "the embedded PostgreSQL at {root} stopped unexpectedly; see {root}/server.log"
        )),
        "{err}"
    );
    assert!(
        !err.contains("DATABASE_URL"),
        "DATABASE_URL was never set: {err}"
    );
    // Its backends notice the postmaster's death and exit; then the next command can
    // start the server again.
    std::thread::sleep(Duration::from_secs(1));
    let out = pgx_command(project.path())
        .env("PGX_DATA_DIR", &own.0)
        .arg("gc")
        .output()
        .unwrap();
    let (said, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "the embedded PostgreSQL at {root} was not shut down cleanly"
        )),
        "{err}"
    );
    assert!(
        said.contains("dropped") && said.contains("pgx_run_killed_postmaster_"),
        "{said}"
    );
    assert_eq!(copies_left(&cluster, "pgx_run_killed_postmaster_%"), 0);
}

/// Issue 23, item 3: a second Ctrl-C right after the first exits at once, but still stops
/// the embedded server pgx started on demand.
#[test]
fn a_second_ctrl_c_still_stops_the_embedded_server() {
    let own = OwnCluster::new("second-ctrl-c");
    let (_project, child, cluster) = sleeping_experiment(&own, "second-ctrl-c", 60);
    let mut admin = connect_when_up(&cluster);
    wait_for_statement(&mut admin, "pgx_run_second_ctrl_c_%", "%pg_sleep%");
    drop(admin);
    signal(&child, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(5));
    signal(&child, libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        cluster.state().unwrap(),
        pgx::cluster::State::Stopped,
        "the server pgx started on demand is stopped: {err}"
    );
}
