//! The databases an experiment works in, all created by pgx and marked as such.
//!
//! The *base* (migrations + dataset + VACUUM ANALYZE) is built once and cached, named
//! after a hash of everything that defines it. Each variant gets a *copy* of the base
//! (`CREATE DATABASE ... TEMPLATE`), dropped when the variant is done. pgx drops only
//! databases whose comment says pgx made them, so a user's own databases are never at
//! risk, even on a shared server. What goes into a base is loaded by `super::dataset`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use postgres::Client;
use sha2::{Digest, Sha256};

use super::dataset::{LoadOptions, Loader, Phases};
use super::result::DatasetInfo;
use super::spec::{Source, Spec, scaled_vars, substitute};
use crate::db::{quote_ident, quote_literal};
use crate::error::{describe_pg_error, fail};
use crate::migrate;
use crate::target::{Target, connect};

pub const BASE_COMPLETE: &str = "pgx:base:complete ";
pub const BASE_BUILDING: &str = "pgx:base:building";
pub const COPY_MARK: &str = "pgx:copy";

/// Refuse early, with advice, when the role cannot create databases.
pub fn check_can_create_databases(admin: &mut Client) -> Result<()> {
    let row = admin.query_one(
        "SELECT rolcreatedb OR rolsuper, current_user::text FROM pg_roles WHERE rolname = current_user",
        &[],
    )?;
    let (can, user): (bool, String) = (row.get(0), row.get(1));
    if !can {
        return Err(fail(
            format!(
                "role {user} may not create databases, and experiments work only in databases of their own"
            ),
            format!(
                "ALTER ROLE {} CREATEDB; or unset DATABASE_URL to use pgx's embedded PostgreSQL",
                quote_ident(&user)
            ),
        ));
    }
    Ok(())
}

fn comment_of(admin: &mut Client, dbname: &str) -> Result<Option<Option<String>>> {
    Ok(admin
        .query_opt(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            &[&dbname],
        )?
        .map(|row| row.get(0)))
}

/// Drop a database, but only one pgx created.
pub fn drop_owned_database(admin: &mut Client, dbname: &str) -> Result<()> {
    match comment_of(admin, dbname)? {
        None => Ok(()),
        Some(Some(comment)) if comment.starts_with("pgx:") => {
            admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(dbname)
                ))
                .with_context(|| format!("cannot drop database {dbname}"))?;
            Ok(())
        }
        Some(_) => Err(fail(
            format!("database {dbname} exists and was not created by pgx; refusing to touch it"),
            "rename or drop it yourself, or run the experiment against another server",
        )),
    }
}

/// How long dropping pgx's databases waits for a server recovering from a crash.
pub const RECOVERY_WAIT: Duration = Duration::from_secs(60);

/// Run `work` on a fresh connection to `admin`. While the server is recovering from a
/// crashed or killed backend (PostgreSQL then ends every session and refuses connections
/// for a moment: SQLSTATE 57P02, then 57P03 "the database system is in recovery mode"),
/// wait and retry, up to [`RECOVERY_WAIT`], saying so once; so pgx's copies are dropped,
/// not left behind for want of patience. Any other error is returned at once (a server
/// that is gone for good: at once, with where its log is).
pub fn when_server_is_up<T>(
    admin: &postgres::Config,
    what: &str,
    mut work: impl FnMut(&mut Client) -> Result<T>,
) -> Result<T> {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let started = Instant::now();
    loop {
        let err = match connect(admin).and_then(|mut client| work(&mut client)) {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        if !crate::error::server_recovering(&err) || started.elapsed() >= RECOVERY_WAIT {
            return Err(err);
        }
        if !SAID.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let log = crate::target::embedded_cluster_of(admin)
                .map(|c| format!(" ({} says why)", c.log_file().display()))
                .unwrap_or_default();
            crate::note!(
                "pgx: the server terminated every session after a backend crashed or was killed{log}; waiting for it to recover (up to {} s) to {what}",
                RECOVERY_WAIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The server's checkpointer process, which PostgreSQL starts anew when it restarts
/// after a crashed backend: its pid tells a restarted server from one that has not yet
/// noticed the crash. None when it cannot be read.
pub fn checkpointer_pid(client: &mut Client) -> Option<i32> {
    client
        .query_opt(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'",
            &[],
        )
        .ok()
        .flatten()
        .map(|row| row.get(0))
}

/// How long pgx waits for a server whose backend was killed to begin its restart.
const RESTART_NOTICE: Duration = Duration::from_secs(10);

/// Wait until the server is back after it ended every session, for `what`. pgx may see
/// its own backend die before the postmaster does: the server then still accepts
/// connections for a moment, and ends them once it restarts. So a server whose
/// checkpointer was `before` is back only once it has another (or, if it never restarts,
/// as after `pg_terminate_backend`, once [`RESTART_NOTICE`] has passed).
pub fn after_restart(admin: &postgres::Config, before: Option<i32>, what: &str) -> Result<()> {
    let started = Instant::now();
    loop {
        let now = when_server_is_up(admin, what, |client| Ok(checkpointer_pid(client)))?;
        if before.is_none() || now != before || started.elapsed() >= RESTART_NOTICE {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Drop a database pgx made after `err` ended its work: on `admin`, or, when the server
/// terminated every session (a crashed backend; `admin` is gone too), on a fresh
/// connection once the server has recovered.
pub(crate) fn drop_after(
    target: &Target,
    admin: &mut Client,
    err: &anyhow::Error,
    dbname: &str,
) -> Result<()> {
    if crate::error::server_terminated(err) {
        when_server_is_up(&target.admin_config(), &format!("drop {dbname}"), |admin| {
            drop_owned_database(admin, dbname)
        })
    } else {
        drop_owned_database(admin, dbname)
    }
}

pub(crate) fn create_marked(
    admin: &mut Client,
    dbname: &str,
    template: Option<&str>,
    mark: &str,
) -> Result<()> {
    create_database(admin, dbname, template)?;
    mark_database(admin, dbname, mark)
}

fn create_database(admin: &mut Client, dbname: &str, template: Option<&str>) -> Result<()> {
    let sql = match template {
        Some(t) => format!(
            "CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY",
            quote_ident(dbname),
            quote_ident(t)
        ),
        None => format!(
            "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'",
            quote_ident(dbname)
        ),
    };
    admin.batch_execute(&sql).map_err(|e| {
        let message = format!(
            "cannot create database {dbname}: {}",
            describe_pg_error(&e, None)
        );
        crate::error::described(message, e)
    })?;
    Ok(())
}

/// Mark a database as pgx's (its comment), durably: committed with synchronous_commit
/// on, whatever the server's setting (the embedded cluster's is off). A crashed backend
/// makes PostgreSQL reinitialise its shared memory, and an asynchronous commit still in
/// the WAL buffers is lost: the database (CREATE DATABASE flushes) would come back
/// unmarked, and pgx would refuse to drop it as not its own.
pub fn mark_database(admin: &mut Client, dbname: &str, mark: &str) -> Result<()> {
    admin.batch_execute(&format!(
        "BEGIN; SET LOCAL synchronous_commit = on; COMMENT ON DATABASE {} IS {}; COMMIT",
        quote_ident(dbname),
        quote_literal(mark)
    ))?;
    Ok(())
}

/// Free bytes on the file system of the server's data directory, when pgx can see it
/// (the embedded cluster, or a server on this machine that lets pgx read
/// `data_directory`; `PGX_FREE_DISK_BYTES` says it for one that does not); None
/// otherwise. With `PGX_DISK_QUOTA_BYTES` (the most pgx's databases may take on this
/// server, all of them together: bases, cached builds, copies), no more than what the
/// quota has left.
pub fn free_disk(admin: &mut Client) -> Option<u64> {
    let quota = std::env::var("PGX_DISK_QUOTA_BYTES")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok());
    let free = disk_free(admin);
    let Some(quota) = quota else {
        return free;
    };
    // Unreadable sizes count as nothing used: the quota still caps the disk.
    let used: i64 = admin
        .query_one(
            "SELECT coalesce(sum(pg_database_size(oid)), 0)::int8 FROM pg_database \
             WHERE coalesce(shobj_description(oid, 'pg_database'), '') LIKE 'pgx:%'",
            &[],
        )
        .map_or(0, |row| row.get(0));
    let left = quota.saturating_sub(u64::try_from(used).unwrap_or(0));
    Some(free.map_or(left, |free| free.min(left)))
}

fn disk_free(admin: &mut Client) -> Option<u64> {
    // For a server whose disk pgx cannot see, and for tests: the free space to assume.
    if let Some(bytes) = std::env::var("PGX_FREE_DISK_BYTES")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        return Some(bytes);
    }
    let dir: String = admin
        .query_opt("SELECT current_setting('data_directory', true)", &[])
        .ok()??
        .try_get::<_, Option<String>>(0)
        .ok()??;
    let path = std::ffi::CString::new(dir).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a zeroed out-parameter of the right type.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
    (rc == 0).then(|| (stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

/// What a database made from a template may take at its peak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peak {
    /// A copy: as much as the template.
    Copy,
    /// The shared copy's build: the copy and its new indexes and statistics (estimated
    /// at half as much again).
    AddsObjects,
    /// A variant's own build: the copy and what its statements rewrite, as much again (a
    /// re-loaded table holds its old and new rows, and their WAL, until the old ones are
    /// dropped: seed 003's partitioned junction took more than twice its 16 GB base).
    Rewrites,
}

impl Peak {
    pub fn of(self, template_bytes: u64) -> u64 {
        match self {
            Peak::Copy => template_bytes,
            Peak::AddsObjects => template_bytes.saturating_add(template_bytes / 2),
            Peak::Rewrites => template_bytes.saturating_mul(2),
        }
    }

    fn says(self, template: &str) -> String {
        match self {
            Peak::Copy => format!("a copy of {template} needs"),
            Peak::AddsObjects => {
                format!("a copy of {template} and its new objects (half as much again) need")
            }
            Peak::Rewrites => {
                format!("a copy of {template} and what its statements rewrite (as much again) need")
            }
        }
    }
}

/// Refuse, before creating it, a database made from `template` the disk has no room for
/// at its `peak` (with a tenth of the free space to spare), rather than fill the disk
/// half-way through.
pub fn check_room(admin: &mut Client, template: &str, what: &str, peak: Peak) -> Result<()> {
    let Some(free) = free_disk(admin) else {
        return Ok(());
    };
    let size: Option<i64> = admin
        .query_one("SELECT pg_database_size($1::text::name)", &[&template])?
        .get(0);
    let need = peak.of(u64::try_from(size.unwrap_or(0)).unwrap_or(0));
    if need.saturating_add(free / 10) > free {
        return Err(fail(
            format!(
                "not enough free disk for {what}: {} about {} MiB and {} MiB are free",
                peak.says(template),
                need >> 20,
                free >> 20
            ),
            "free disk space (`pgx gc --bases` drops cached datasets no run uses), or run at a smaller --scale",
        ));
    }
    Ok(())
}

/// PostgreSQL truncates names to 63 bytes; keep the hash tail intact instead.
fn database_name(prefix: &str, experiment: &str, tail: &str) -> String {
    let room = 63usize.saturating_sub(prefix.len() + tail.len() + 2);
    let exp: String = experiment.replace('-', "_").chars().take(room).collect();
    format!("{prefix}_{exp}_{tail}")
}

/// Everything that defines the base, hashed: migrations, dataset SQL, scale, server.
pub fn cache_key(
    spec: &Spec,
    scale: f64,
    migrations: &[migrate::MigrationFile],
    server_version: &str,
) -> Result<String> {
    let mut hasher = Sha256::new();
    hasher.update(b"pgx-base-v2\0");
    hasher.update(server_version.as_bytes());
    for file in migrations {
        hasher.update(format!("{}:{}\0", file.label(), file.checksum).as_bytes());
    }
    let vars = scaled_vars(spec, scale);
    for step in &spec.dataset.steps {
        hasher.update(step.name.as_bytes());
        // A parallel step's SQL keeps its {{lo}}/{{hi}}/{{chunk}} placeholders here.
        let mut step_vars = vars.clone();
        for chunk_var in ["lo", "hi", "chunk", "chunks"] {
            step_vars.push((chunk_var.to_string(), format!("{{{{{chunk_var}}}}}")));
        }
        hasher.update(substitute(&step.sql, &step_vars, &step.name)?.as_bytes());
        if let Some(parallel) = step.parallel() {
            // The chunks' bounds (and seeds) shape random() rows: part of the definition.
            hasher.update(
                format!("\0parallel:{:?}:{:?}", parallel.chunks, parallel.range).as_bytes(),
            );
        }
        hasher.update(b"\0");
    }
    // The two load paths give the same rows but are kept apart, so they can be compared.
    if !spec.dataset.bulk {
        hasher.update(b"plain-load\0");
    }
    let digest = hasher.finalize();
    Ok(digest.iter().take(8).map(|b| format!("{b:02x}")).collect())
}

pub struct Base {
    pub info: DatasetInfo,
    /// Holds the base's in-use lock for as long as the base is used.
    _locks: Option<LockSession>,
}

/// Reuse the cached base for this key, or build it. `on_step` reports progress.
pub fn prepare_base(
    target: &Target,
    admin: &mut Client,
    spec: &Spec,
    scale: f64,
    rebuild: bool,
    on_step: &mut dyn FnMut(&str, Option<f64>),
) -> Result<Base> {
    prepare_base_with(
        target,
        admin,
        spec,
        scale,
        rebuild,
        &LoadOptions::default(),
        on_step,
    )
}

/// [`prepare_base`] with the load's choices overridden (connections).
pub fn prepare_base_with(
    target: &Target,
    admin: &mut Client,
    spec: &Spec,
    scale: f64,
    rebuild: bool,
    options: &LoadOptions,
    on_step: &mut dyn FnMut(&str, Option<f64>),
) -> Result<Base> {
    let recipe = Recipe::new(target, admin, spec, scale)?;
    let mut locks = LockSession::open(target)?;
    // Two pgx processes building the same base would collide on CREATE DATABASE.
    let build_lock = format!("build:{}", recipe.dbname);
    locks.lock(&build_lock)?;
    // In use from before it is looked at until the lock session ends (the base is
    // dropped): another pgx building another base of this experiment drops the stale
    // ones it can lock, and must never drop this one between its reuse and its copies.
    // (A rebuild here still takes it exclusively: a session's own locks never conflict.)
    let in_use = locks.lock_shared(&in_use_lock(&recipe.dbname));
    let base =
        in_use.and_then(|()| recipe.reuse_or_build(admin, &mut locks, rebuild, options, on_step));
    let unlocked = locks.unlock(&build_lock);
    let mut base = base?;
    unlocked?;
    base._locks = Some(locks);
    Ok(base)
}

pub(crate) fn in_use_lock(dbname: &str) -> String {
    format!("in-use:{dbname}")
}

/// A session for pgx's advisory locks (the build lock and the in-use locks of bases).
///
/// Advisory locks belong to one database, so every pgx process must take them in the
/// same one, whatever database its `DATABASE_URL` names: `postgres`, which a server has
/// unless someone dropped it, and which any role may connect to by default. (Not
/// `template1`: while anyone is connected to it, every `CREATE DATABASE` that copies it,
/// the default, fails.) Without `postgres` pgx falls back to its admin database and says
/// that its locks then only hold against pgx processes pointed at that same database.
pub struct LockSession {
    client: Client,
    pub database: String,
}

pub const LOCK_DATABASE: &str = "postgres";

impl LockSession {
    pub fn open(target: &Target) -> Result<LockSession> {
        let config = target.config_for(LOCK_DATABASE);
        match config.connect(postgres::NoTls) {
            Ok(client) => Ok(LockSession {
                client,
                database: LOCK_DATABASE.to_string(),
            }),
            Err(err) => {
                let admin = target.admin_config();
                let database = admin.get_dbname().unwrap_or("postgres").to_string();
                crate::note!(
                    "pgx: cannot connect to database {LOCK_DATABASE} for server-wide locks ({}); \
                     taking them in {database}: pgx processes whose DATABASE_URL names another database will not see them",
                    describe_pg_error(&err, None)
                );
                Ok(LockSession {
                    client: connect(&admin)?,
                    database,
                })
            }
        }
    }

    fn call(&mut self, function: &str, key: &str) -> Result<bool> {
        let _cancel = crate::interrupt::CancelOnInterrupt::new(&self.client);
        // The one-key form on hashtext(name), as the rest of pgx (gc, the engine after a
        // restart) takes and reads these locks.
        let sql = format!("SELECT {function}(hashtext($1))::text");
        let row = self.client.query_one(&sql, &[&key]).map_err(|e| {
            if crate::interrupt::is_interrupted() {
                anyhow::Error::new(crate::error::Interrupted)
            } else {
                anyhow::anyhow!(
                    "advisory lock {key} in database {}: {}",
                    self.database,
                    describe_pg_error(&e, None)
                )
            }
        })?;
        let value: String = row.get(0);
        Ok(value != "false")
    }

    /// Wait for the lock (Ctrl-C stops the wait).
    pub fn lock(&mut self, key: &str) -> Result<()> {
        self.call("pg_advisory_lock", key).map(|_| ())
    }

    pub fn lock_shared(&mut self, key: &str) -> Result<()> {
        self.call("pg_advisory_lock_shared", key).map(|_| ())
    }

    pub fn try_lock(&mut self, key: &str) -> Result<bool> {
        self.call("pg_try_advisory_lock", key)
    }

    pub fn unlock(&mut self, key: &str) -> Result<()> {
        self.call("pg_advisory_unlock", key).map(|_| ())
    }

    /// Take `key` exclusively if nobody holds it, here or in any other database (a pgx
    /// that reconnected after a server restart holds its in-use locks in its admin
    /// database). `false`: held somewhere, and not taken.
    pub fn try_lock_everywhere(&mut self, key: &str) -> Result<bool> {
        if !self.try_lock(key)? {
            return Ok(false);
        }
        let elsewhere: bool = self
            .client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.objsubid = 1 \
                   AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtext($1)::bigint \
                   AND l.pid <> pg_backend_pid())",
                &[&key],
            )?
            .get(0);
        if elsewhere {
            self.unlock(key)?;
        }
        Ok(!elsewhere)
    }
}

/// Everything that defines a base, and the name its hash gives it.
struct Recipe<'a> {
    target: &'a Target,
    spec: &'a Spec,
    source: Source,
    scale: f64,
    migrations: Vec<migrate::MigrationFile>,
    key: String,
    dbname: String,
}

impl<'a> Recipe<'a> {
    fn new(
        target: &'a Target,
        admin: &mut Client,
        spec: &'a Spec,
        scale: f64,
    ) -> Result<Recipe<'a>> {
        let source = spec.dataset.source();
        // A copied database brings its schema along: no migrations.
        let migrations: Vec<migrate::MigrationFile> = if source == Source::Steps {
            migrate::load_dir(&crate::project_root().join(&spec.schema.migrations))?
                .into_iter()
                .filter(|f| spec.schema.up_to.is_none_or(|v| f.version <= v))
                .collect()
        } else {
            Vec::new()
        };
        let server_version: String = admin
            .query_one("SELECT current_setting('server_version_num')", &[])?
            .get(0);
        let identity = match &source {
            Source::Steps => None,
            Source::Database(name) => Some(super::source::database_identity(admin, name)?),
            Source::Url(url) => Some(super::source::url_identity(url)?),
        };
        let key = match &identity {
            None => cache_key(spec, scale, &migrations, &server_version)?,
            // Known by the source's identity; `--rebuild` copies it again when it changed.
            Some(identity) => {
                let mut hasher = Sha256::new();
                hasher.update(b"pgx-source-v1\0");
                hasher.update(server_version.as_bytes());
                hasher.update(b"\0");
                hasher.update(identity.as_bytes());
                let digest = hasher.finalize();
                digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
            }
        };
        // Named by content alone: experiments with the same dataset share one base.
        let dbname = format!("pgx_base_{key}");
        Ok(Recipe {
            target,
            spec,
            source,
            scale,
            migrations,
            key,
            dbname,
        })
    }

    fn reuse_or_build(
        &self,
        admin: &mut Client,
        locks: &mut LockSession,
        rebuild: bool,
        options: &LoadOptions,
        on_step: &mut dyn FnMut(&str, Option<f64>),
    ) -> Result<Base> {
        drop_stale_bases(admin, locks, self.spec, self.scale, &self.dbname)?;
        let comment = comment_of(admin, &self.dbname)?;
        if let Some(Some(comment)) = &comment
            && let Some(json) = comment.strip_prefix(BASE_COMPLETE)
            && !rebuild
            && let Ok(mut info) = serde_json::from_str::<DatasetInfo>(json)
        {
            info.reused = true;
            return Ok(Base { info, _locks: None });
        }
        if comment.is_some() {
            // Rebuilding (or replacing an unreadable base): not under another pgx using it.
            let lock = in_use_lock(&self.dbname);
            if !locks.try_lock_everywhere(&lock)? {
                return Err(fail(
                    format!(
                        "base {} is in use by another pgx process and cannot be rebuilt now",
                        self.dbname
                    ),
                    "wait for the other run to finish, then rebuild (--rebuild)",
                ));
            }
            let dropped = drop_owned_database(admin, &self.dbname);
            locks.unlock(&lock)?;
            dropped?;
        }
        match self.build(admin, options, on_step) {
            Ok(base) => Ok(base),
            Err(err) => {
                // A half-built base is useless and can be large: do not leave it behind.
                let dropped = drop_after(self.target, admin, &err, &self.dbname);
                if err.downcast_ref::<crate::error::Interrupted>().is_some() {
                    return Err(err);
                }
                let what = match dropped {
                    Ok(()) => format!("the half-built database {} was dropped", self.dbname),
                    Err(e) => format!(
                        "the half-built database {} could not be dropped ({e:#}); drop it with DROP DATABASE {} WITH (FORCE)",
                        self.dbname,
                        quote_ident(&self.dbname)
                    ),
                };
                Err(err.context(format!(
                    "building the dataset of {} at scale {} failed; {what}",
                    self.spec.name, self.scale
                )))
            }
        }
    }

    fn build(
        &self,
        admin: &mut Client,
        options: &LoadOptions,
        on_step: &mut dyn FnMut(&str, Option<f64>),
    ) -> Result<Base> {
        let started = Instant::now();
        let mut phases = Phases {
            on_step,
            timings: Vec::new(),
        };
        match &self.source {
            Source::Steps => create_marked(admin, &self.dbname, None, BASE_BUILDING)?,
            Source::Database(name) => phases.run(&format!("copy of {name}"), || {
                super::source::copy_database(admin, name, &self.dbname, BASE_BUILDING)
            })?,
            Source::Url(url) => {
                create_marked(admin, &self.dbname, None, BASE_BUILDING)?;
                phases.run("pg_dump | pg_restore", || {
                    super::source::restore_url(self.target, url, &self.dbname)
                })?;
            }
        }
        let mut client = connect(&self.target.config_for(&self.dbname))?;
        let load = if self.source == Source::Steps {
            self.load_steps(&mut client, &mut phases, options)?
        } else {
            phases.run("VACUUM ANALYZE", || super::source::settle(&mut client))?;
            Default::default()
        };
        let row_counts = row_counts(&mut client)?;
        drop(client);
        let info = DatasetInfo {
            key: self.key.clone(),
            database: self.dbname.clone(),
            reused: false,
            build_seconds: started.elapsed().as_secs_f64(),
            steps: phases.timings,
            row_counts,
            built_for: self.spec.name.clone(),
            scale: self.scale,
            load,
        };
        let mark = format!("{BASE_COMPLETE}{}", serde_json::to_string(&info)?);
        mark_database(admin, &self.dbname, &mark)?;
        Ok(Base { info, _locks: None })
    }

    /// Migrations, then the dataset's steps (the bulk-load path by default).
    fn load_steps(
        &self,
        client: &mut Client,
        phases: &mut Phases,
        options: &LoadOptions,
    ) -> Result<crate::experiment::result::LoadInfo> {
        phases.run("migrations", || {
            migrate::apply(client, &self.migrations, &migrate::ApplyOptions::default())
                .with_context(|| {
                    format!(
                        "applying {} to the dataset base",
                        self.spec.schema.migrations.display()
                    )
                })
                .map(|_| ())
        })?;
        let loader = Loader {
            target: self.target,
            dbname: &self.dbname,
            spec: self.spec,
            vars: scaled_vars(self.spec, self.scale),
            options,
        };
        loader.build(client, phases)
    }
}

/// Bases this experiment built at this scale under another key are out of date (its
/// definition changed): reclaim their space, unless a running pgx is using one. A base
/// another experiment still shares is rebuilt by it when next needed.
fn drop_stale_bases(
    admin: &mut Client,
    locks: &mut LockSession,
    spec: &Spec,
    scale: f64,
    current: &str,
) -> Result<()> {
    let rows = admin.query(
        "SELECT datname::text, shobj_description(oid, 'pg_database') FROM pg_database \
         WHERE datname <> $1 AND starts_with(coalesce(shobj_description(oid, 'pg_database'), ''), $2)",
        &[&current, &BASE_COMPLETE],
    )?;
    for row in rows {
        let (name, comment): (String, String) = (row.get(0), row.get(1));
        let Some(info) = comment
            .strip_prefix(BASE_COMPLETE)
            .and_then(|json| serde_json::from_str::<DatasetInfo>(json).ok())
        else {
            continue;
        };
        if info.built_for != spec.name || info.scale != scale {
            continue;
        }
        drop_if_unused(admin, locks, &name)?;
    }
    Ok(())
}

/// Drop a cached base or build no other pgx is using (its in-use lock taken everywhere
/// while it is dropped). `false`: in use, and kept.
pub fn drop_if_unused(admin: &mut Client, locks: &mut LockSession, name: &str) -> Result<bool> {
    let lock = in_use_lock(name);
    if !locks.try_lock_everywhere(&lock)? {
        return Ok(false);
    }
    let dropped = drop_owned_database(admin, name);
    locks.unlock(&lock)?;
    dropped.map(|()| true)
}

/// Exact row counts of every user table (partitioned parents, not their partitions).
fn row_counts(client: &mut Client) -> Result<Vec<(String, i64)>> {
    let tables = client.query(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
         AND n.nspname NOT LIKE 'pg_toast%' AND c.relname <> $1 ORDER BY 1",
        &[&migrate::HISTORY_TABLE],
    )?;
    let mut counts = Vec::new();
    for row in tables {
        let name: String = row.get(0);
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM {name}"), &[])?
            .get(0);
        counts.push((name, n));
    }
    Ok(counts)
}

/// A variant's private copy of the base; dropped when this guard goes away, whatever
/// happened (error, Ctrl-C). While it lives, a connection to the copy holds the copy's
/// owner lock: when the process dies without cleaning up (kill -9), the server releases
/// the lock, and the next run (or `pgx gc`) knows the copy is an orphan.
pub struct Copy {
    pub name: String,
    admin: postgres::Config,
    owner: Option<Client>,
}

/// Advisory lock key an owner holds in its copy (advisory locks are per database, so
/// one constant serves every copy).
pub const OWNER_LOCK: i64 = 0x7067_785f_636f_7079; // "pgx_copy"

impl Copy {
    pub fn create(
        target: &Target,
        admin: &mut Client,
        base: &str,
        experiment: &str,
        variant: &str,
    ) -> Result<Copy> {
        // Unique per copy: two runs in one process (a library user, tests) never collide.
        static SEQUENCE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut tag = variant.replace('-', "_");
        tag.truncate(20);
        let name = database_name(
            "pgx_run",
            experiment,
            &format!("{tag}_{}_{n}", std::process::id()),
        );
        drop_owned_database(admin, &name)?;
        check_room(
            admin,
            base,
            &format!("variant {variant}'s copy"),
            Peak::Copy,
        )?;
        // Marked only once its owner holds the lock: `pgx gc` never sees it unowned.
        create_database(admin, &name, Some(base))?;
        let owned = connect(&target.config_for(&name)).and_then(|mut owner| {
            owner.execute("SELECT pg_advisory_lock($1)", &[&OWNER_LOCK])?;
            mark_database(admin, &name, &format!("{COPY_MARK} of {base}"))?;
            Ok(owner)
        });
        match owned {
            Ok(owner) => Ok(Copy {
                name,
                admin: target.admin_config(),
                owner: Some(owner),
            }),
            Err(err) => {
                let _ = admin.batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(&name)
                ));
                Err(err)
            }
        }
    }
}

/// Is a session-level advisory lock on `key` held by anyone, in any database (or in
/// `database` only)? Read from pg_locks, so looking never takes the lock and never gets
/// in the way of a run that is about to.
pub fn advisory_held(admin: &mut Client, key: i64, database: Option<&str>) -> Result<bool> {
    Ok(admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.objsubid = 1 \
               AND ((l.classid::bigint << 32) | l.objid::bigint) = $1 \
               AND ($2::text IS NULL OR l.database = (SELECT oid FROM pg_database WHERE datname = $2::text)))",
            &[&key, &database],
        )?
        .get(0))
}

/// The key `pg_advisory_lock(hashtext(name))` locks.
fn text_key(admin: &mut Client, name: &str) -> Result<i64> {
    Ok(admin
        .query_one("SELECT hashtext($1)::bigint", &[&name])?
        .get(0))
}

impl Copy {
    /// After a server restart cut every connection: hold the owner lock again.
    pub fn reown(&mut self, target: &Target) -> Result<()> {
        drop(self.owner.take());
        let mut owner = connect(&target.config_for(&self.name))?;
        owner.execute("SELECT pg_advisory_lock($1)", &[&OWNER_LOCK])?;
        self.owner = Some(owner);
        Ok(())
    }
}

/// A base whose build lock nobody holds: its builder died (kill -9) mid-build.
pub fn build_lock_free(admin: &mut Client, dbname: &str) -> Result<bool> {
    let key = text_key(admin, &format!("build:{dbname}"))?;
    Ok(!advisory_held(admin, key, None)?)
}

/// A complete base no running pgx is copying from.
pub fn base_unused(admin: &mut Client, dbname: &str) -> Result<bool> {
    let key = text_key(admin, &in_use_lock(dbname))?;
    Ok(!advisory_held(admin, key, None)?)
}

/// A copy whose owner (a running pgx) holds its owner lock.
pub fn copy_owned(admin: &mut Client, dbname: &str) -> Result<bool> {
    advisory_held(admin, OWNER_LOCK, Some(dbname))
}

impl Drop for Copy {
    fn drop(&mut self) {
        // The owner's connection first: DROP DATABASE waits for no one then.
        drop(self.owner.take());
        let dropped = when_server_is_up(&self.admin, &format!("drop {}", self.name), |admin| {
            drop_owned_database(admin, &self.name)
        });
        if let Err(err) = dropped {
            crate::note!(
                "pgx: could not drop experiment database {}: {err:#}",
                self.name
            );
        }
    }
}
