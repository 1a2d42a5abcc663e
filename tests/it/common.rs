//! Test harness: one embedded PostgreSQL shared by every test of the binary, a fresh
//! database per test, and the gate that decides who uses the server at a time.
//!
//! Tests run two at a time (one per core) in one binary, whatever area they belong to.
//! Most share the server freely: `server()`, `TestDb` and `OwnCluster` hold the gate
//! *shared*. A test that restarts the shared server, asserts on server-wide state (every
//! session of an application name), or times something that needs the cores to itself
//! calls `exclusive()` first: it waits until no other test holds the gate and keeps it
//! to itself until it returns. A test's own further calls to `server()` (or its threads'
//! clones of a `Server`) never wait on the gate they already hold.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::ThreadId;

use pgx::cluster::{Cluster, ClusterUse};

static SHARED: Mutex<Weak<ClusterUse>> = Mutex::new(Weak::new());

/// Who holds the gate: shared holds per test thread, or the one exclusive thread; and
/// how many wait for it exclusively (while one does, no new test enters shared).
struct Holders {
    shared: Vec<(ThreadId, usize)>,
    exclusive: Option<ThreadId>,
    waiting: usize,
}

static GATE: Mutex<Holders> = Mutex::new(Holders {
    shared: Vec::new(),
    exclusive: None,
    waiting: 0,
});
static TURN: Condvar = Condvar::new();

fn holders() -> std::sync::MutexGuard<'static, Holders> {
    GATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// A hold on the gate, released when dropped (on whichever thread drops it).
pub struct Hold {
    thread: ThreadId,
    exclusive: bool,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut h = holders();
        if self.exclusive {
            h.exclusive = None;
        } else if let Some(at) = h.shared.iter().position(|(t, _)| *t == self.thread) {
            h.shared[at].1 -= 1;
            if h.shared[at].1 == 0 {
                h.shared.swap_remove(at);
            }
        }
        TURN.notify_all();
    }
}

/// Hold the gate shared; None when this thread holds it exclusively already.
pub fn shared() -> Option<Hold> {
    let me = std::thread::current().id();
    let mut h = holders();
    loop {
        if h.exclusive == Some(me) {
            return None;
        }
        if let Some(entry) = h.shared.iter_mut().find(|(t, _)| *t == me) {
            entry.1 += 1;
            break;
        }
        if h.exclusive.is_none() && h.waiting == 0 {
            h.shared.push((me, 1));
            break;
        }
        h = TURN.wait(h).unwrap_or_else(|e| e.into_inner());
    }
    Some(Hold {
        thread: me,
        exclusive: false,
    })
}

/// Have the server (and the cores) to this test alone: call it first, before `server()`,
/// `TestDb` or any module's serial lock.
pub fn exclusive() -> Hold {
    let me = std::thread::current().id();
    let mut h = holders();
    assert!(
        !h.shared.iter().any(|(t, _)| *t == me),
        "exclusive() must come before this test's first server(), TestDb or OwnCluster"
    );
    h.waiting += 1;
    while h.exclusive.is_some() || !h.shared.is_empty() {
        h = TURN.wait(h).unwrap_or_else(|e| e.into_inner());
    }
    h.waiting -= 1;
    h.exclusive = Some(me);
    Hold {
        thread: me,
        exclusive: true,
    }
}

pub fn cluster_root() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("pgx-test-cluster")
}

/// The shared server, held shared (see the module's header) as long as a clone lives.
#[derive(Clone)]
pub struct Server {
    usage: Arc<ClusterUse>,
    _hold: Option<Arc<Hold>>,
}

impl std::ops::Deref for Server {
    type Target = ClusterUse;
    fn deref(&self) -> &ClusterUse {
        &self.usage
    }
}

impl Server {
    /// Go on alone: give up this shared hold (keeping the server running) and wait for
    /// `exclusive()`; the returned server is held by it.
    pub fn alone(self) -> (Hold, Server) {
        let usage = self.usage;
        drop(self._hold);
        let hold = exclusive();
        (hold, Server { usage, _hold: None })
    }
}

/// The shared server; it stops when the last test holding it finishes.
pub fn server() -> Server {
    let hold = shared().map(Arc::new);
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    let usage = match shared.upgrade() {
        Some(usage) => usage,
        None => {
            let cluster = Cluster::new(&cluster_root()).expect("PostgreSQL server binaries");
            let usage = Arc::new(cluster.attach().expect("embedded cluster starts"));
            *shared = Arc::downgrade(&usage);
            usage
        }
    };
    Server { usage, _hold: hold }
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
    pub server: Server,
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
pub struct OwnCluster(pub PathBuf, Option<Hold>);

impl OwnCluster {
    /// The durable cluster pgx starts beside this one (`<dir>-durable`), deleted likewise.
    pub fn durable(&self) -> OwnCluster {
        let mut name = self.0.file_name().unwrap_or_default().to_os_string();
        name.push("-durable");
        OwnCluster(self.0.with_file_name(name), None)
    }

    pub fn new(tag: &str) -> OwnCluster {
        let hold = shared();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("pgx-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        OwnCluster(dir, hold)
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
