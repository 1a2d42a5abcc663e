//! The zero-configuration path: `pgx apply && pgx status` with no DATABASE_URL starts
//! its own PostgreSQL, and stops it again.

use crate::common::*;

#[test]
fn apply_and_status_on_the_embedded_default_with_the_projects_migrations() {
    let _shared = shared();
    let project = tempfile::tempdir().unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir(project.path().join("migrations")).unwrap();
    let mut count = 0;
    for entry in std::fs::read_dir(repo.join("migrations")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(
            &path,
            project
                .path()
                .join("migrations")
                .join(path.file_name().unwrap()),
        )
        .unwrap();
        count += 1;
    }
    assert!(count >= 5, "the seeds' schemas are migrations");

    let out = pgx_command(project.path()).arg("apply").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!(
            "applied {count} migration(s) to embedded PostgreSQL"
        )),
        "{}",
        stdout(&out)
    );

    let out = pgx_command(project.path()).arg("status").output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(
        stdout(&out).matches("┆ applied ┆").count(),
        count,
        "{}",
        stdout(&out)
    );

    // Started on demand, so stopped again on exit.
    let out = pgx_command(project.path())
        .args(["cluster", "status"])
        .output()
        .unwrap();
    assert!(stdout(&out).contains("state: stopped"), "{}", stdout(&out));

    // The extensions experiments rely on are usable in it.
    let out = pgx_command(project.path())
        .args(["cluster", "start"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let cluster = pgx::cluster::Cluster::new(&project.path().join("target/pgx-cluster")).unwrap();
    let mut client = pgx::target::connect(&cluster.config("pgx")).unwrap();
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_trgm; CREATE EXTENSION IF NOT EXISTS pgstattuple; CREATE EXTENSION IF NOT EXISTS btree_gin;")
        .unwrap();
    drop(client);
    let out = pgx_command(project.path())
        .args(["cluster", "status"])
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("state: running"),
        "`cluster start` keeps it running: {}",
        stdout(&out)
    );
    let out = pgx_command(project.path())
        .args(["cluster", "destroy"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!project.path().join("target/pgx-cluster").exists());
}

#[test]
fn stale_pid_file_does_not_wedge_the_cluster() {
    let _shared = shared();
    let root = tempfile::tempdir().unwrap();
    let cluster = pgx::cluster::Cluster::new(&root.path().join("c")).unwrap();
    cluster.start().unwrap();
    cluster.stop().unwrap();
    // A crash leaves postmaster.pid naming a pid that is now something else (pid 1).
    let pid_file = cluster.data_dir().join("postmaster.pid");
    std::fs::write(&pid_file, "1\n").unwrap();
    cluster.start().unwrap();
    assert_eq!(cluster.state().unwrap(), pgx::cluster::State::Running);
    cluster.destroy().unwrap();
}

#[test]
fn bad_database_url_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("migrations")).unwrap();
    let out = pgx_command(dir.path())
        .env("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("cannot connect"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

/// A process that looks like a postmaster to a careless check: its command line says
/// `postgres`. Run as the account the server runs as, so that signalling it would work.
fn fake_postgres() -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new("bash");
    cmd.args(["-c", "exec -a postgres sleep 600"]);
    // SAFETY: geteuid and getpwnam only read; the record is read at once.
    if unsafe { libc::geteuid() } == 0 {
        let pw = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
        if !pw.is_null() {
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            cmd.uid(uid).gid(gid);
        }
    }
    cmd.spawn().unwrap()
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Issue 23: a stale `postmaster.pid` naming another live process (one whose command
/// line says postgres, or another cluster's postmaster) is not taken for a running
/// cluster, and `pgx cluster stop` never signals it.
#[test]
fn a_stale_pid_file_naming_another_live_process_is_neither_believed_nor_signalled() {
    let own = OwnCluster::new("stale-pid");
    let dir = tempfile::tempdir().unwrap();
    let pgx = |args: &[&str]| {
        pgx_command(dir.path())
            .arg("--data-dir")
            .arg(&own.0)
            .args(args)
            .output()
            .unwrap()
    };
    let out = pgx(&["cluster", "start"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = pgx(&["cluster", "stop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cluster = pgx::cluster::Cluster::new(&own.0).unwrap();

    // The shared test server's postmaster: a real postgres, of another data directory.
    let shared = server();
    let shared_pid: i32 =
        std::fs::read_to_string(shared.cluster().data_dir().join("postmaster.pid"))
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
    let mut fake = fake_postgres();
    let fake_pid = fake.id() as i32;
    for pid in [fake_pid, shared_pid] {
        std::fs::write(
            cluster.data_dir().join("postmaster.pid"),
            format!("{pid}\n{}\n", cluster.data_dir().display()),
        )
        .unwrap();
        // The socket a crash leaves behind, so only the pid decides.
        std::fs::write(cluster.socket_dir().join(".s.PGSQL.5432"), "").unwrap();
        let out = pgx(&["cluster", "status"]);
        assert_eq!(out.status.code(), Some(3), "pid {pid}: {}", stdout(&out));
        assert!(stdout(&out).contains("state: stopped"), "{}", stdout(&out));
        let out = pgx(&["cluster", "stop"]);
        assert!(out.status.success(), "{}", stderr(&out));
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(alive(pid), "pid {pid} was signalled by `pgx cluster stop`");
        assert!(alive(fake_pid) && alive(shared_pid));
    }
    // Starting over the stale file works, and stopping stops only the real server.
    let out = pgx(&["cluster", "start"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(cluster.state().unwrap(), pgx::cluster::State::Running);
    let out = pgx(&["cluster", "stop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(cluster.state().unwrap(), pgx::cluster::State::Stopped);
    assert!(alive(fake_pid) && alive(shared_pid));
    let _ = fake.kill();
    let _ = fake.wait();
}

/// `server: durable` on pgx's own server: the run goes to a cluster started with
/// production durability beside the experiment one, says so in its header, and the same
/// write load writes far more WAL per transaction there (full-page images after every
/// checkpoint) than on the experiment cluster (fsync and full_page_writes off, minimal
/// WAL). Both clusters are stopped and deleted afterwards.
#[test]
fn a_durable_experiment_runs_on_a_durable_cluster_and_writes_its_wal() {
    let own = OwnCluster::new("durable");
    let durable_cluster = own.durable();
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir(project.path().join("migrations")).unwrap();
    let yaml = |server: &str| {
        format!(
            "name: wal-{server}\n\
             {}\
             dataset:\n  scale: 1\n  steps:\n    - name: t\n      sql: CREATE TABLE t (id int PRIMARY KEY, n int NOT NULL DEFAULT 0); INSERT INTO t (id) SELECT g FROM generate_series(1, 100000) g;\n\
             baseline: plain\nvariants:\n  plain: {{}}\n\
             load:\n  clients: [2]\n  duration: 1s\n  warmup: 0s\n  repeat: 1\n  scripts:\n    bump:\n      statements:\n        - {{ sql: 'UPDATE t SET n = n + 1 WHERE id = $1', params: [{{uniform: {{min: 1, max: 100000}}}}] }}\n",
            if server == "durable" {
                "server: durable\n"
            } else {
                ""
            }
        )
    };
    let run = |server: &str| -> pgx::experiment::result::ExperimentResult {
        let path = project.path().join(format!("wal-{server}.yaml"));
        std::fs::write(&path, yaml(server)).unwrap();
        let out = pgx_command(project.path())
            .env("PGX_DATA_DIR", &own.0)
            .args(["experiment", path.to_str().unwrap(), "--out"])
            .arg(project.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{server}: {}", stderr(&out));
        let json =
            std::fs::read_to_string(project.path().join(format!("wal-{server}.json"))).unwrap();
        pgx::report::json::parse(&json).unwrap()
    };
    let setting = |r: &pgx::experiment::result::ExperimentResult, name: &str| -> String {
        r.environment
            .server_settings
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let wal_per_tx = |r: &pgx::experiment::result::ExperimentResult| -> f64 {
        let load = r
            .variants
            .iter()
            .find_map(|v| v.load.as_ref())
            .expect("a load ran");
        let run = &load.points[0].runs[0];
        let server = run
            .server
            .as_ref()
            .expect("the server's counters were read");
        assert!(server.transactions > 0, "{server:?}");
        server.wal_bytes as f64 / server.transactions as f64
    };
    let fast = run("experiment");
    let durable = run("durable");
    assert_eq!(setting(&fast, "fsync"), "off");
    assert_eq!(setting(&durable, "fsync"), "on");
    assert_eq!(setting(&durable, "full_page_writes"), "on");
    assert_eq!(setting(&durable, "wal_level"), "replica");
    assert!(
        durable.environment.server.contains("durable"),
        "{}",
        durable.environment.server
    );
    let md = std::fs::read_to_string(project.path().join("wal-durable.md")).unwrap();
    assert!(
        md.contains("fsync=on") && md.contains("durable"),
        "the header says so"
    );
    let (wal_fast, wal_durable) = (wal_per_tx(&fast), wal_per_tx(&durable));
    assert!(
        wal_durable > 4.0 * wal_fast,
        "full-page images: {wal_durable:.0} B per transaction durable, {wal_fast:.0} B on the experiment cluster"
    );
    assert!(
        durable_cluster.0.join("data/PG_VERSION").exists(),
        "the durable cluster lives beside the experiment one"
    );
}

/// A variant's `server_settings` hold while its load runs, on pgx's own cluster (read on
/// reload, or at start: the server restarts with them), and are undone after; a session
/// setting there is refused with what to do.
#[test]
fn a_variants_server_settings_hold_during_its_load_and_are_undone() {
    let own = OwnCluster::new("server-settings");
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir(project.path().join("migrations")).unwrap();
    let yaml = |tuned: &str| {
        format!(
            "name: checkpoints\n\
             dataset:\n  scale: 1\n  steps:\n    - name: t\n      sql: CREATE TABLE t (id int PRIMARY KEY);\n\
             baseline: plain\nvariants:\n  plain:\n    sql: CREATE TABLE expect AS SELECT 'checkpoint_timeout'::text AS name, '30min'::text AS v\n  tuned:\n    sql: CREATE TABLE expect AS SELECT 'checkpoint_timeout'::text AS name, '17min'::text AS v\n    server_settings: {{ {tuned} }}\n  restarted:\n    sql: CREATE TABLE expect AS SELECT 'shared_buffers'::text AS name, '48MB'::text AS v\n    server_settings: {{ shared_buffers: 48MB }}\n\
             load:\n  clients: [1]\n  duration: 500ms\n  warmup: 0s\n  repeat: 1\n  scripts:\n    one:\n      statements:\n        - {{ sql: SELECT 1 }}\n  verify:\n    setting:\n      about: the load's sessions run with the variant's setting\n      sql: SELECT name, v, current_setting(name) FROM expect WHERE v <> current_setting(name)\n"
        )
    };
    let path = project.path().join("checkpoints.yaml");
    let run = || {
        pgx_command(project.path())
            .env("PGX_DATA_DIR", &own.0)
            .args(["experiment", path.to_str().unwrap(), "--out"])
            .arg(project.path())
            .output()
            .unwrap()
    };
    std::fs::write(&path, yaml("checkpoint_timeout: 17min")).unwrap();
    let out = run();
    assert!(out.status.success(), "{}", stderr(&out));
    let md = std::fs::read_to_string(project.path().join("checkpoints.md")).unwrap();
    assert!(
        md.contains("server settings during its load: checkpoint_timeout=17min")
            && md.contains("server settings during its load: shared_buffers=48MB")
            && md.contains("A/A control · one"),
        "{md}"
    );
    let auto_conf = std::fs::read_to_string(
        pgx::cluster::Cluster::new(&own.0)
            .unwrap()
            .data_dir()
            .join("postgresql.auto.conf"),
    )
    .unwrap_or_default();
    assert!(
        !auto_conf.contains("checkpoint_timeout") && !auto_conf.contains("shared_buffers"),
        "undone after the load: {auto_conf}"
    );
    // Without the setting the verify sees the cluster's 30min against the expected 17min:
    // the variant fails.
    std::fs::write(&path, yaml("")).unwrap();
    let out = run();
    assert!(!out.status.success(), "the check can fail");
    assert!(stderr(&out).contains("17min"), "{}", stderr(&out));
    std::fs::write(&path, yaml("work_mem: 64MB")).unwrap();
    let out = run();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("work_mem is a session setting")
            && stderr(&out).contains("ALTER DATABASE"),
        "{}",
        stderr(&out)
    );
}

/// `load.start: cold` restarts pgx's server before every run with nothing of the table
/// in shared buffers, `load.on_start` runs before the clients (timed), and `load.first`
/// reports each run's first requests apart; on a server pgx does not run, a cold start is
/// refused before anything is built.
#[test]
fn a_cold_load_restarts_before_every_run_and_reports_its_first_requests() {
    let own = OwnCluster::new("cold-load");
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir(project.path().join("migrations")).unwrap();
    // on_start records, per run, the postmaster's start time and how many of t's blocks
    // were in shared buffers; verify fails the variant if two runs saw the same start or
    // any saw a block of t.
    let warm = |body: &str| {
        format!(
            "CREATE EXTENSION IF NOT EXISTS pg_buffercache; CREATE EXTENSION IF NOT EXISTS pg_prewarm;\n      CREATE TABLE starts (started timestamptz, cached bigint);\n      CREATE PROCEDURE warm() LANGUAGE plpgsql AS $$ BEGIN INSERT INTO starts SELECT pg_postmaster_start_time(), (SELECT count(*) FROM pg_buffercache WHERE relfilenode = pg_relation_filenode('t') AND reldatabase = (SELECT oid FROM pg_database WHERE datname = current_database())); {body} END $$;"
        )
    };
    let yaml = |start: &str| {
        format!(
            "name: cold-load\n\
             dataset:\n  scale: 1\n  steps:\n    - name: t\n      sql: CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 100000) g; ALTER TABLE t ADD PRIMARY KEY (id);\n\
             baseline: cold\nvariants:\n  cold:\n    sql: |\n      {}\n  prewarmed:\n    sql: |\n      {}\n\
             load:\n  clients: [1]\n  duration: 500ms\n  warmup: 0s\n  repeat: 2\n  start: {start}\n  on_start: CALL warm()\n  first: 20\n  scripts:\n    lookup:\n      statements:\n        - {{ sql: 'SELECT v FROM t WHERE id = $1', params: [{{uniform: {{min: 1, max: 100000}}}}] }}\n  verify:\n    restarted:\n      about: every run starts on a restarted server with nothing of t cached\n      sql: SELECT 'seen twice or cached' FROM starts HAVING count(DISTINCT started) <> count(*) OR max(cached) > 0\n",
            warm(""),
            warm("PERFORM pg_prewarm('t'); PERFORM pg_prewarm('t_pkey');")
        )
    };
    let path = project.path().join("cold-load.yaml");
    std::fs::write(&path, yaml("cold")).unwrap();
    let out = pgx_command(project.path())
        .env("PGX_DATA_DIR", &own.0)
        .args(["experiment", path.to_str().unwrap(), "--out"])
        .arg(project.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(project.path().join("cold-load.json")).unwrap(),
    )
    .unwrap();
    for v in json["variants"].as_array().unwrap() {
        let load = &v["load"];
        assert_eq!(load["start"]["cold"], true, "{}", v["name"]);
        let point = &load["points"][0];
        assert_eq!(point["first"]["per_run"], 20);
        assert_eq!(point["first"]["transactions"], 40, "two runs × 20");
        assert!(point["first"]["on_start_ms"].as_f64().unwrap() > 0.0);
        assert!(point["runs"][1]["first_ms"]["p50"].as_f64().unwrap() > 0.0);
    }
    let md = std::fs::read_to_string(project.path().join("cold-load.md")).unwrap();
    assert!(
        md.contains("First 20 requests of each run · lookup · 1 client: `cold` (cold + on_start")
            && md.contains("First requests of each run"),
        "{md}"
    );
    // The same file warm: the second run sees the first one's postmaster: verify fails.
    std::fs::write(&path, yaml("warm")).unwrap();
    let out = pgx_command(project.path())
        .env("PGX_DATA_DIR", &own.0)
        .args(["experiment", path.to_str().unwrap(), "--out"])
        .arg(project.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the check can fail");
    assert!(
        stderr(&out).contains("seen twice or cached"),
        "{}",
        stderr(&out)
    );
}
