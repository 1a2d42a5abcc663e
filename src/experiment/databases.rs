//! The databases an experiment works in, all created by pgx and marked as such.
//!
//! The *base* (migrations + dataset + VACUUM ANALYZE) is built once and cached, named
//! after a hash of everything that defines it. Each variant gets a *copy* of the base
//! (`CREATE DATABASE ... TEMPLATE`), dropped when the variant is done. pgx drops only
//! databases whose comment says pgx made them, so a user's own databases are never at
//! risk, even on a shared server. What goes into a base is loaded by `super::dataset`.

use std::time::Instant;

use anyhow::{Context, Result};
use postgres::Client;
use sha2::{Digest, Sha256};

use super::dataset::{LoadOptions, Loader, Phases};
use super::result::DatasetInfo;
use super::spec::{Spec, scaled_vars, substitute};
use crate::db::{quote_ident, quote_literal};
use crate::error::{describe_pg_error, fail};
use crate::migrate;
use crate::target::{Target, connect};

const BASE_COMPLETE: &str = "pgx:base:complete ";
const BASE_BUILDING: &str = "pgx:base:building";
const COPY_MARK: &str = "pgx:copy";

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

fn create_marked(
    admin: &mut Client,
    dbname: &str,
    template: Option<&str>,
    mark: &str,
) -> Result<()> {
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
        anyhow::anyhow!(
            "cannot create database {dbname}: {}",
            describe_pg_error(&e, None)
        )
    })?;
    admin.batch_execute(&format!(
        "COMMENT ON DATABASE {} IS {}",
        quote_ident(dbname),
        quote_literal(mark)
    ))?;
    Ok(())
}

/// PostgreSQL truncates names to 63 bytes; keep the hash tail intact instead.
fn database_name(prefix: &str, experiment: &str, tail: &str) -> String {
    let room = 63 - prefix.len() - tail.len() - 2;
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
    let base = recipe.reuse_or_build(admin, &mut locks, rebuild, options, on_step);
    // Held by the lock session until the base is dropped: no other pgx drops a base
    // being copied from. Taken before the build lock is let go, so there is no moment
    // where a fresh base is neither being built nor in use.
    let in_use = match &base {
        Ok(_) => locks.lock_shared(&in_use_lock(&recipe.dbname)),
        Err(_) => Ok(()),
    };
    let unlocked = locks.unlock(&build_lock);
    let mut base = base?;
    in_use?;
    unlocked?;
    base._locks = Some(locks);
    Ok(base)
}

fn in_use_lock(dbname: &str) -> String {
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
                eprintln!(
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
        let sql = format!("SELECT {function}(hashtext('pgx'), hashtext($1))::text");
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
}

/// Everything that defines a base, and the name its hash gives it.
struct Recipe<'a> {
    target: &'a Target,
    spec: &'a Spec,
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
        let migrations: Vec<migrate::MigrationFile> =
            migrate::load_dir(&crate::project_root().join(&spec.schema.migrations))?
                .into_iter()
                .filter(|f| spec.schema.up_to.is_none_or(|v| f.version <= v))
                .collect();
        let server_version: String = admin
            .query_one("SELECT current_setting('server_version_num')", &[])?
            .get(0);
        let key = cache_key(spec, scale, &migrations, &server_version)?;
        // Named by content alone: experiments with the same dataset share one base.
        let dbname = format!("pgx_base_{key}");
        Ok(Recipe {
            target,
            spec,
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
            if !locks.try_lock(&lock)? {
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
                let dropped = drop_owned_database(admin, &self.dbname);
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
        create_marked(admin, &self.dbname, None, BASE_BUILDING)?;
        let mut client = connect(&self.target.config_for(&self.dbname))?;
        let mut phases = Phases {
            on_step,
            timings: Vec::new(),
        };
        phases.run("migrations", || {
            migrate::apply(
                &mut client,
                &self.migrations,
                &migrate::ApplyOptions::default(),
            )
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
        let load = loader.load(&mut client, &mut phases)?;
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
        admin.batch_execute(&format!(
            "COMMENT ON DATABASE {} IS {}",
            quote_ident(&self.dbname),
            quote_literal(&mark)
        ))?;
        Ok(Base { info, _locks: None })
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
        let lock = in_use_lock(&name);
        if locks.try_lock(&lock)? {
            let dropped = drop_owned_database(admin, &name);
            locks.unlock(&lock)?;
            dropped?;
        }
    }
    Ok(())
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
/// happened (error, Ctrl-C).
pub struct Copy {
    pub name: String,
    admin: postgres::Config,
}

impl Copy {
    pub fn create(
        target: &Target,
        admin: &mut Client,
        base: &str,
        experiment: &str,
        variant: &str,
    ) -> Result<Copy> {
        let mut tag = variant.replace('-', "_");
        tag.truncate(20);
        let name = database_name(
            "pgx_run",
            experiment,
            &format!("{tag}_{}", std::process::id()),
        );
        drop_owned_database(admin, &name)?;
        create_marked(admin, &name, Some(base), &format!("{COPY_MARK} of {base}"))?;
        Ok(Copy {
            name,
            admin: target.admin_config(),
        })
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        let dropped =
            connect(&self.admin).and_then(|mut admin| drop_owned_database(&mut admin, &self.name));
        if let Err(err) = dropped {
            eprintln!(
                "pgx: could not drop experiment database {}: {err:#}",
                self.name
            );
        }
    }
}
