//! The embedded PostgreSQL cluster: pgx's zero-configuration database.
//!
//! Layout under the cluster root (default `<project>/target/pgx-cluster`):
//! `data/` is PGDATA, `run/` holds the Unix socket, `server.log` the server's log.
//! The server listens only on the socket, with settings for experiments (no fsync,
//! minimal WAL). PostgreSQL refuses to run as root, so when pgx runs as root the
//! server runs as the `postgres` user (or `nobody`), which owns the root directory.
//!
//! Several pgx processes may share one cluster. Each holds a shared lock on
//! `users.lock` while it uses the server; a server started on demand is stopped by the
//! last user to leave, while one started with `pgx cluster start` keeps running.
//!
//! `postmaster.pid` is believed only when its pid is a `postgres` process whose working
//! directory is this data directory (the postmaster runs in it): a stale file naming some
//! other live process is neither taken for a running server nor signalled.
//!
//! The clusters this process uses are registered ([`in_use`]): errors name the one that
//! stopped under pgx, and a second Ctrl-C still stops a server pgx started on demand.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::error::fail;

/// The suffix of a durable cluster's root (see [`Cluster::durable`]).
const DURABLE_SUFFIX: &str = "-durable";

/// Socket "port": only names the socket file, since no TCP listener is opened.
pub const PORT: u16 = 5432;
/// Superuser created by initdb; trust authentication over the private socket.
pub const SUPERUSER: &str = "postgres";
/// Database `pgx apply` / `pgx status` use on the embedded cluster.
pub const DEFAULT_DATABASE: &str = "pgx";

const ON_DEMAND_MARKER: &str = "run/started-on-demand";

#[derive(Debug, Clone)]
pub struct Cluster {
    pub root: PathBuf,
    pub bindir: PathBuf,
    /// The unprivileged account that runs the server when pgx runs as root.
    run_as: Option<Account>,
}

#[derive(Debug, Clone)]
struct Account {
    name: String,
    uid: u32,
    gid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    NotInitialized,
    Stopped,
    Running,
}

impl Cluster {
    /// Locate the server binaries and settle where the cluster lives.
    pub fn new(root: &Path) -> Result<Cluster> {
        let bindir = find_bindir()?;
        let run_as = if unsafe { libc::geteuid() } == 0 {
            Some(unprivileged_account()?)
        } else {
            None
        };
        let root = absolute(root)?;
        let root = match &run_as {
            Some(account) if !traversable_by_others(&root) => {
                let fallback = fallback_root(&root);
                crate::note!(
                    "pgx: {} is not reachable by the '{}' user that runs PostgreSQL; using {} instead",
                    root.display(),
                    account.name,
                    fallback.display()
                );
                fallback
            }
            _ => root,
        };
        Ok(Cluster {
            root,
            bindir,
            run_as,
        })
    }

    /// The cluster beside this one (`<root>-durable`) that runs with production
    /// durability: `fsync`, `synchronous_commit` and `full_page_writes` on, `wal_level =
    /// replica`, PostgreSQL's checkpoint defaults. For experiments whose question is the
    /// write path (`server: durable`): on this cluster's settings a commit waits for no
    /// disk and WAL holds no full-page images, so write numbers say nothing of production.
    pub fn durable(&self) -> Cluster {
        if self.is_durable() {
            return self.clone();
        }
        let mut name = self
            .root
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "pgx-cluster".into());
        name.push(DURABLE_SUFFIX);
        Cluster {
            root: self.root.with_file_name(name),
            bindir: self.bindir.clone(),
            run_as: self.run_as.clone(),
        }
    }

    /// Whether this is a durable cluster (its root's name ends in `-durable`).
    pub fn is_durable(&self) -> bool {
        self.root
            .file_name()
            .is_some_and(|n| n.to_string_lossy().ends_with(DURABLE_SUFFIX))
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    pub fn log_file(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// Connection settings for a database of the embedded cluster.
    pub fn config(&self, dbname: &str) -> postgres::Config {
        let mut config = postgres::Config::new();
        config
            .host_path(self.socket_dir())
            .port(PORT)
            .user(SUPERUSER)
            .dbname(dbname)
            .application_name("pgx")
            .connect_timeout(Duration::from_secs(10));
        config
    }

    pub fn state(&self) -> Result<State> {
        if !self.data_dir().join("PG_VERSION").exists() {
            return Ok(State::NotInitialized);
        }
        match self.server_pid() {
            Some(_) if self.socket_dir().join(format!(".s.PGSQL.{PORT}")).exists() => {
                Ok(State::Running)
            }
            _ => Ok(State::Stopped),
        }
    }

    /// The postmaster's pid, if `postmaster.pid` names a live `postgres` process running
    /// in this data directory. A pid file left by a crash (its pid now another program's,
    /// or another cluster's postgres) is stale.
    fn server_pid(&self) -> Option<i32> {
        let text = fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        is_postmaster_of(pid, &self.data_dir()).then_some(pid)
    }

    /// Run initdb (once) and write pgx's settings.
    pub fn init(&self) -> Result<()> {
        fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create {}", self.root.display()))?;
        fs::create_dir_all(self.socket_dir())?;
        self.give_to_server_account(&self.root)?;
        self.give_to_server_account(&self.socket_dir())?;
        if !self.data_dir().join("PG_VERSION").exists() {
            // A half-finished initdb leaves a non-empty directory initdb refuses to reuse.
            if self.data_dir().exists() {
                fs::remove_dir_all(self.data_dir())?;
            }
            let out = self
                .server_command("initdb")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-U", SUPERUSER, "--auth=trust", "--encoding=UTF8"])
                .args(["--locale=C.UTF-8", "--no-instructions"])
                .output()
                .context("cannot run initdb")?;
            check_output("initdb", &out)?;
            let conf = self.data_dir().join("postgresql.conf");
            let mut file = OpenOptions::new().append(true).open(&conf)?;
            writeln!(file, "\ninclude_if_exists = 'pgx.conf'")?;
        }
        // Rewritten every time so a newer pgx's settings take effect on restart.
        let pgx_conf = self.data_dir().join("pgx.conf");
        fs::write(&pgx_conf, self.settings())?;
        self.give_to_server_account(&pgx_conf)?;
        Ok(())
    }

    fn settings(&self) -> String {
        let mem = crate::host::memory_bytes().unwrap_or(4 << 30);
        let mb = |bytes: u64| format!("{}MB", bytes >> 20);
        // Two fifths of the machine: a run's warm working sets (every copy's pages its
        // cells touch) stay in shared buffers, so a warm cell does not read its pages
        // back each round (index-strategies at scale 1: four 1.6-2.7 GB id-range scans,
        // which 3 GB of shared buffers turned into a 0.7-1.8 s spread per run).
        let shared_buffers = (mem / 5 * 2).clamp(128 << 20, 32 << 30);
        let maintenance = (mem / 16).clamp(64 << 20, 1 << 30);
        // The durable cluster does what a production server does on every commit and
        // checkpoint, with a fifth of the machine (it may run beside the experiment one).
        let (durability, shared_buffers) = if self.is_durable() {
            (
                "# Durable: what a production server does on every commit and checkpoint.\n\
                 fsync = on\n\
                 synchronous_commit = on\n\
                 full_page_writes = on\n\
                 wal_level = replica\n\
                 max_wal_size = 1GB\n\
                 checkpoint_timeout = 5min\n",
                (mem / 5).clamp(128 << 20, 16 << 30),
            )
        } else {
            (
                "fsync = off\n\
                 synchronous_commit = off\n\
                 full_page_writes = off\n\
                 wal_level = minimal\n\
                 max_wal_senders = 0\n\
                 max_wal_size = 8GB\n\
                 checkpoint_timeout = 30min\n",
                shared_buffers,
            )
        };
        format!(
            "# Written by pgx on every start; edit postgresql.conf to override.\n\
             listen_addresses = ''\n\
             unix_socket_directories = '{socket}'\n\
             port = {PORT}\n\
             max_connections = 200\n\
             {durability}\
             shared_buffers = {sb}\n\
             effective_cache_size = {ecs}\n\
             maintenance_work_mem = {mwm}\n\
             max_locks_per_transaction = 256\n\
             huge_pages = off\n\
             jit = off\n\
             track_io_timing = on\n\
             log_min_messages = warning\n\
             log_line_prefix = '%m [%p] %d '\n",
            socket = self.socket_dir().display(),
            sb = mb(shared_buffers),
            ecs = mb(mem / 2),
            mwm = mb(maintenance),
        )
    }

    /// Start the server (initialising it first if needed). Idempotent.
    pub fn start(&self) -> Result<()> {
        self.init()?;
        if self.state()? == State::Running {
            return Ok(());
        }
        self.remove_stale_files()?;
        let out = self
            .server_command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_file())
            .args(["-w", "-t", "60", "start"])
            // Own process group: Ctrl-C in pgx's terminal must not reach the server.
            .process_group(0)
            .output()
            .context("cannot run pg_ctl")?;
        if !out.status.success() {
            return Err(fail(
                format!(
                    "the embedded PostgreSQL did not start:\n{}\n{}",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    self.log_tail(15)
                ),
                format!(
                    "read {} ; `pgx cluster destroy` starts over with a new cluster",
                    self.log_file().display()
                ),
            ));
        }
        Ok(())
    }

    /// A crash can leave `postmaster.pid` and the socket lock behind; PostgreSQL refuses
    /// to start over them if their pid was reused by another process.
    fn remove_stale_files(&self) -> Result<()> {
        if self.server_pid().is_none() {
            let pid_file = self.data_dir().join("postmaster.pid");
            if pid_file.exists() {
                crate::note!(
                    "pgx: the embedded PostgreSQL at {} was not shut down cleanly (it crashed or was killed; {} says why); it recovers as it starts",
                    self.root.display(),
                    self.log_file().display()
                );
                fs::remove_file(&pid_file)?;
            }
            for name in [format!(".s.PGSQL.{PORT}"), format!(".s.PGSQL.{PORT}.lock")] {
                let path = self.socket_dir().join(name);
                if path.exists() {
                    fs::remove_file(&path)?;
                }
            }
        }
        Ok(())
    }

    /// Restart the running server (fast shutdown, start again): its shared buffers come
    /// back empty. Every connection is cut; who started it and who uses it are unchanged.
    pub fn restart(&self) -> Result<()> {
        if self.server_pid().is_none() {
            return Err(self.stopped_unexpectedly());
        }
        let out = self
            .server_command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_file())
            .args(["-m", "fast", "-w", "-t", "60", "restart"])
            .process_group(0)
            .output()
            .context("cannot run pg_ctl")?;
        check_output("pg_ctl restart", &out)
    }

    /// Stop the server, if this data directory's postmaster is running (pg_ctl signals
    /// the pid in `postmaster.pid`: it is checked first, see [`Cluster::state`]).
    pub fn stop(&self) -> Result<()> {
        if self.state()? != State::Running {
            return Ok(());
        }
        let out = self
            .server_command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "-t", "60", "stop"])
            .output()
            .context("cannot run pg_ctl")?;
        check_output("pg_ctl stop", &out)?;
        let _ = fs::remove_file(self.root.join(ON_DEMAND_MARKER));
        Ok(())
    }

    /// Stop the server and delete the cluster, dataset caches included.
    pub fn destroy(&self) -> Result<()> {
        self.stop()?;
        if self.root.exists() {
            fs::remove_dir_all(&self.root)
                .with_context(|| format!("cannot remove {}", self.root.display()))?;
        }
        Ok(())
    }

    pub fn version(&self) -> Result<String> {
        let out = Command::new(self.bindir.join("postgres"))
            .arg("--version")
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Use the cluster for the life of the returned guard, starting it if needed.
    pub fn attach(&self) -> Result<ClusterUse> {
        fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create {}", self.root.display()))?;
        let start_lock = lock_file(&self.root.join("start.lock"), libc::LOCK_EX)?;
        let users = lock_file(&self.root.join("users.lock"), libc::LOCK_SH)?;
        if self.state()? != State::Running {
            self.start()?;
            fs::write(self.root.join(ON_DEMAND_MARKER), b"")?;
        }
        drop(start_lock);
        register(self, users.as_raw_fd());
        Ok(ClusterUse {
            cluster: self.clone(),
            users: Some(users),
        })
    }

    /// The error for a server that is gone while pgx used it (killed, crashed, out of
    /// memory): where it was and where its log is.
    pub fn stopped_unexpectedly(&self) -> anyhow::Error {
        crate::error::server_gone(
            format!(
                "the embedded PostgreSQL at {} stopped unexpectedly; see {}",
                self.root.display(),
                self.log_file().display()
            ),
            format!(
                "its last lines say why ({}); pgx starts it again on the next command, and `pgx gc` drops what the interrupted run left",
                self.log_file().display()
            ),
        )
    }

    /// Stop a server that pgx started on demand and no other pgx uses, at once and
    /// without unwinding (the second Ctrl-C). `ours` is this process's lock on
    /// `users.lock`, released first.
    fn stop_if_last_user(&self, ours: i32) {
        // SAFETY: flock(2) on a descriptor this process holds open (the ClusterUse's).
        unsafe { libc::flock(ours, libc::LOCK_UN) };
        let last = lock_file(&self.root.join("users.lock"), libc::LOCK_EX | libc::LOCK_NB).is_ok();
        if last && self.root.join(ON_DEMAND_MARKER).exists() {
            match self.stop() {
                Ok(()) => crate::note!(
                    "pgx: stopped the embedded PostgreSQL at {}",
                    self.root.display()
                ),
                Err(err) => crate::note!(
                    "pgx: could not stop the embedded PostgreSQL at {}: {err:#}",
                    self.root.display()
                ),
            }
        }
    }

    /// Mark the running server as started by the user: it outlives pgx commands.
    pub fn keep_running(&self) {
        let _ = fs::remove_file(self.root.join(ON_DEMAND_MARKER));
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(self.log_file()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn server_command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bindir.join(program));
        // initdb and pg_ctl fail when they cannot read the current directory.
        cmd.current_dir(&self.root);
        cmd.env_remove("PGDATA").env("LC_ALL", "C.UTF-8");
        if let Some(account) = &self.run_as {
            cmd.uid(account.uid).gid(account.gid);
            cmd.env("HOME", &self.root).env("USER", &account.name);
        }
        cmd
    }

    fn give_to_server_account(&self, path: &Path) -> Result<()> {
        if let Some(account) = &self.run_as {
            std::os::unix::fs::chown(path, Some(account.uid), Some(account.gid))
                .with_context(|| format!("cannot hand {} to {}", path.display(), account.name))?;
        }
        Ok(())
    }
}

/// While alive, this process counts as a user of the embedded server.
pub struct ClusterUse {
    cluster: Cluster,
    users: Option<File>,
}

impl ClusterUse {
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }
}

impl Drop for ClusterUse {
    fn drop(&mut self) {
        if let Some(users) = &self.users {
            unregister(users.as_raw_fd());
        }
        drop(self.users.take());
        // The last user out stops a server that was started on demand.
        let path = self.cluster.root.join("users.lock");
        if let Ok(_exclusive) = lock_file(&path, libc::LOCK_EX | libc::LOCK_NB)
            && self.cluster.root.join(ON_DEMAND_MARKER).exists()
            && let Err(err) = self.cluster.stop()
        {
            crate::note!("pgx: could not stop the embedded PostgreSQL: {err:#}");
        }
    }
}

/// A cluster this process uses, and its descriptor of `users.lock`.
struct InUse {
    cluster: Cluster,
    users_fd: i32,
}

static IN_USE: Mutex<Vec<InUse>> = Mutex::new(Vec::new());

fn register(cluster: &Cluster, users_fd: i32) {
    if let Ok(mut list) = IN_USE.lock() {
        list.push(InUse {
            cluster: cluster.clone(),
            users_fd,
        });
    }
}

fn unregister(users_fd: i32) {
    if let Ok(mut list) = IN_USE.lock() {
        list.retain(|u| u.users_fd != users_fd);
    }
}

/// The embedded clusters this process uses right now (attached, not yet released).
pub fn in_use() -> Vec<Cluster> {
    IN_USE
        .lock()
        .map(|list| list.iter().map(|u| u.cluster.clone()).collect())
        .unwrap_or_default()
}

/// The cluster in use whose socket directory is `dir` (a connection's Unix host).
pub fn in_use_at_socket(dir: &Path) -> Option<Cluster> {
    in_use().into_iter().find(|c| c.socket_dir() == dir)
}

/// For the second Ctrl-C: stop every server this process started on demand that no
/// other pgx uses, without waiting for the code that holds them to unwind.
pub fn stop_on_demand_servers_now() {
    // try_lock: the signal may arrive while this thread's own code holds the list.
    let list: Vec<(Cluster, i32)> = match IN_USE.try_lock() {
        Ok(list) => list
            .iter()
            .map(|u| (u.cluster.clone(), u.users_fd))
            .collect(),
        Err(_) => return,
    };
    for (cluster, fd) in list {
        cluster.stop_if_last_user(fd);
    }
}

/// Is `pid` a `postgres` process whose working directory is `data_dir`? (The postmaster
/// changes into its data directory; any other process, or another cluster's server, is
/// not this cluster's.)
fn is_postmaster_of(pid: i32, data_dir: &Path) -> bool {
    if pid <= 0 {
        return false;
    }
    let Ok(exe) = fs::read_link(format!("/proc/{pid}/exe")) else {
        return false;
    };
    let name = exe
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .trim_end_matches(" (deleted)")
                .to_string()
        })
        .unwrap_or_default();
    if name != "postgres" && name != "postmaster" {
        return false;
    }
    let Ok(cwd) = fs::read_link(format!("/proc/{pid}/cwd")) else {
        return false;
    };
    let ours = fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    cwd == ours
}

fn lock_file(path: &Path, operation: i32) -> Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    if unsafe { libc::flock(file.as_raw_fd(), operation) } != 0 {
        bail!(
            "cannot lock {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(file)
}

fn check_output(what: &str, out: &Output) -> Result<()> {
    if out.status.success() {
        return Ok(());
    }
    bail!(
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `PGX_PG_BINDIR`, then `pg_config --bindir`, then the newest `/usr/lib/postgresql/*/bin`.
pub fn find_bindir() -> Result<PathBuf> {
    let has_server = |dir: &Path| dir.join("postgres").is_file() && dir.join("initdb").is_file();
    if let Some(dir) = std::env::var_os("PGX_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        if has_server(&dir) {
            return Ok(dir);
        }
        return Err(fail(
            format!(
                "PGX_PG_BINDIR={} has no `postgres` and `initdb`",
                dir.display()
            ),
            "point PGX_PG_BINDIR at the bin directory of a PostgreSQL server installation",
        ));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server(&dir) {
            return Ok(dir);
        }
    }
    let mut candidates: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_server(dir))
        .collect();
    candidates.sort();
    if let Some((_, dir)) = candidates.pop() {
        return Ok(dir);
    }
    Err(fail(
        "no PostgreSQL server binaries found (looked at PGX_PG_BINDIR, `pg_config --bindir` and /usr/lib/postgresql/*/bin)",
        "pgx starts its own PostgreSQL when no DATABASE_URL is given, and needs the server installed: \
         on Debian/Ubuntu `apt-get install postgresql postgresql-contrib`, on Fedora `dnf install postgresql-server postgresql-contrib`, \
         on macOS `brew install postgresql@16`. Or set PGX_PG_BINDIR to its bin directory, or DATABASE_URL to use an existing server.",
    ))
}

fn unprivileged_account() -> Result<Account> {
    for name in ["postgres", "nobody"] {
        let Ok(cname) = std::ffi::CString::new(name) else {
            continue;
        };
        // SAFETY: getpwnam returns a pointer to static storage or null; read it at once.
        let pw = unsafe { libc::getpwnam(cname.as_ptr()) };
        if !pw.is_null() {
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            return Ok(Account {
                name: name.to_string(),
                uid,
                gid,
            });
        }
    }
    Err(fail(
        "pgx runs as root, PostgreSQL refuses to, and there is no `postgres` or `nobody` user to run it as",
        "create one (`useradd --system postgres`) or run pgx as an ordinary user",
    ))
}

/// Every ancestor must let others search it (x bit), or the server account cannot
/// reach its data directory.
fn traversable_by_others(path: &Path) -> bool {
    path.ancestors().skip(1).all(|dir| match fs::metadata(dir) {
        Ok(meta) => meta.permissions().mode() & 0o001 != 0,
        Err(_) => true, // not created yet: create_dir_all makes it 0755
    })
}

fn fallback_root(root: &Path) -> PathBuf {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(root.as_os_str().as_encoded_bytes());
    let tag: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    PathBuf::from("/var/tmp/pgx-clusters").join(tag)
}

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Ok(std::env::current_dir()?.join(path))
    }
}

/// Where the cluster lives when neither `--data-dir` nor `PGX_DATA_DIR` says.
pub fn default_root() -> PathBuf {
    crate::project_root().join("target").join("pgx-cluster")
}
