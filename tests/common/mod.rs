//! Test harness: one embedded PostgreSQL shared by every test of a test binary (and,
//! through pgx's own reference counting, by concurrently running test binaries), and a
//! fresh database per test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, Weak};

use pgx::cluster::{Cluster, ClusterUse};

static SHARED: Mutex<Weak<ClusterUse>> = Mutex::new(Weak::new());

pub fn cluster_root() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("pgx-test-cluster")
}

/// The shared server; it stops when the last test holding it finishes.
pub fn server() -> Arc<ClusterUse> {
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(usage) = shared.upgrade() {
        return usage;
    }
    let cluster = Cluster::new(&cluster_root()).expect("PostgreSQL server binaries");
    let usage = Arc::new(cluster.attach().expect("embedded cluster starts"));
    *shared = Arc::downgrade(&usage);
    usage
}

/// An experiment fixture's file: tests/fixtures/experiments/`name`.
pub fn experiment_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/experiments")
        .join(name)
}

/// Run the experiment fixture `name` on the shared server (as a server pgx did not start).
pub fn run_fixture(
    server: &ClusterUse,
    name: &str,
    options: &pgx::experiment::RunOptions,
) -> pgx::experiment::ExperimentResult {
    let target = pgx::target::Target::External(server.cluster().config("postgres"));
    let spec = pgx::experiment::spec::read(&experiment_fixture(name)).unwrap();
    pgx::experiment::run(
        &target,
        &spec,
        options,
        &mut pgx::experiment::progress::Progress::quiet(),
    )
    .unwrap()
}

/// A database of its own for one test, dropped at the end.
pub struct TestDb {
    pub name: String,
    pub server: Arc<ClusterUse>,
}

impl TestDb {
    pub fn new(tag: &str) -> TestDb {
        let server = server();
        let name = format!("t_{tag}_{}", std::process::id());
        let mut admin = pgx::target::connect(&server.cluster().config("postgres")).unwrap();
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        TestDb { name, server }
    }

    pub fn config(&self) -> postgres::Config {
        self.server.cluster().config(&self.name)
    }

    pub fn client(&self) -> postgres::Client {
        pgx::target::connect(&self.config()).unwrap()
    }

    /// libpq key=value connection string, as a user would put in DATABASE_URL.
    pub fn url(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname={}",
            self.server.cluster().socket_dir().display(),
            pgx::cluster::PORT,
            self.name
        )
    }

    /// Run the real `pgx` binary against this database.
    pub fn pgx(&self, dir: &Path, args: &[&str]) -> Output {
        pgx_command(dir)
            .env("DATABASE_URL", self.url())
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = pgx::target::connect(&self.server.cluster().config("postgres")) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// The `pgx` binary with a clean environment (no PG* variables leaking in).
pub fn pgx_command(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgx"));
    cmd.current_dir(cwd);
    let ours = ["DATABASE_URL", "PGX_DATA_DIR"];
    for var in pgx::target::LIBPQ_VARS.iter().chain(ours.iter()) {
        cmd.env_remove(var);
    }
    cmd
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A temp directory with the given migration files.
pub fn migrations(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("migrations")).unwrap();
    for (name, sql) in files {
        std::fs::write(dir.path().join("migrations").join(name), sql).unwrap();
    }
    dir
}

pub fn history_versions(client: &mut postgres::Client) -> Vec<i32> {
    client
        .query(
            "SELECT version FROM refinery_schema_history ORDER BY version",
            &[],
        )
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default()
}

/// An embedded cluster directory of a test's own, stopped and deleted when dropped (also
/// when an assertion fails half-way).
pub struct OwnCluster(pub PathBuf);

impl OwnCluster {
    pub fn new(tag: &str) -> OwnCluster {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("pgx-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        OwnCluster(dir)
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        if let Ok(cluster) = Cluster::new(&self.0) {
            let _ = cluster.destroy();
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
