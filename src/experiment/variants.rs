//! Built variants, cached across runs like the base: a variant's statements (index
//! builds, VACUUM FULL, re-loads) run once into `pgx_variant_<hash>`, named after the base
//! and the variant's SQL; each run measures on its own copy of that, so a re-run rebuilds
//! only what changed. The cache is kept within a disk budget (least recently used first
//! out), and entries whose base is gone are dropped.

use anyhow::{Context, Result};
use postgres::Client;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::databases::{self, advisory_held};
use super::matrix::Variant;
use super::result::Timing;
use crate::target::{Target, connect};

pub const COMPLETE: &str = "pgx:variant:complete ";
pub const BUILDING: &str = "pgx:variant:building";

/// What the cache entry's comment records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub base: String,
    pub experiment: String,
    pub variant: String,
    pub statements: Vec<Timing>,
    /// Unix seconds of the last run that used it (least recently used goes first).
    pub used_at: i64,
    /// The shared copy's entry: each variant built on it and the objects it added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared: Vec<crate::experiment::engine::build::Member>,
}

/// Where a variant's copy is made from.
pub struct Prepared {
    /// The database to copy: the base for a variant without SQL, else its cache entry.
    pub template: String,
    pub statements: Vec<Timing>,
    /// The statements ran in an earlier run; their times are from then.
    pub cached: bool,
    /// Holds the entry's in-use lock (server-wide, as the bases') while the run uses it.
    pub locks: Option<databases::LockSession>,
}

/// The cache entry of a variant's build, named after its base and SQL: the A/A control
/// of a baseline with statements of its own copies the baseline's build (with
/// `--rebuild`, it is built a second time: two builds of one SQL can differ, as GiST
/// builds do, and the control then shows it).
pub fn entry_name(base: &str, variant: &Variant) -> String {
    name_of(base, &variant.sql)
}

pub fn name_of(base: &str, sql: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"pgx-variant-v1\0");
    hasher.update(base.as_bytes());
    hasher.update(b"\0");
    hasher.update(sql.as_bytes());
    let digest = hasher.finalize();
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("pgx_variant_{hex}")
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

pub(crate) fn entry_of(admin: &mut Client, name: &str) -> Result<Option<Entry>> {
    let comment: Option<Option<String>> = admin
        .query_opt(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            &[&name],
        )?
        .map(|r| r.get(0));
    Ok(comment
        .flatten()
        .and_then(|c| c.strip_prefix(COMPLETE).map(str::to_string))
        .and_then(|json| serde_json::from_str(&json).ok()))
}

pub(crate) fn mark(admin: &mut Client, name: &str, entry: &Entry) -> Result<()> {
    let comment = format!("{COMPLETE}{}", serde_json::to_string(entry)?);
    databases::mark_database(admin, name, &comment)
}

/// Which variant to prepare, of which experiment, on which base.
pub struct Request<'a> {
    pub target: &'a Target,
    pub base: &'a str,
    pub experiment: &'a str,
    pub variant: &'a Variant,
    /// Build it again even when a cached build matches.
    pub rebuild: bool,
}

/// The database a variant's copy is made from: the cached build when there is one (and
/// `rebuild` is off), else built now. `build` runs the variant's statements in a client
/// connected to the new entry. While this session lives, the entry is marked in use, so
/// no other pgx trims it away under this run.
pub fn prepare(
    admin: &mut Client,
    request: &Request,
    build: &mut dyn FnMut(&mut Client) -> Result<Vec<Timing>>,
) -> Result<Prepared> {
    let Request {
        base,
        experiment,
        variant,
        ..
    } = *request;
    if variant.sql.trim().is_empty() {
        return Ok(Prepared {
            template: base.to_string(),
            statements: Vec::new(),
            cached: false,
            locks: None,
        });
    }
    let name = entry_name(base, variant);
    // The same server-wide lock session as the bases' (advisory locks are per database).
    let mut locks = databases::LockSession::open(request.target)?;
    let build_lock = format!("build:{name}");
    locks.lock(&build_lock)?;
    let prepared = reuse_or_build(admin, request, &name, build);
    let in_use = match &prepared {
        Ok(_) => locks.lock_shared(&databases::in_use_lock(&name)),
        Err(_) => Ok(()),
    };
    let unlocked = locks.unlock(&build_lock);
    let mut prepared = prepared?;
    in_use?;
    unlocked?;
    prepared.locks = Some(locks);
    drop_stale(admin, base, experiment, &variant.name, &name)?;
    Ok(prepared)
}

/// Earlier builds of the same variant of the same experiment on the same base, with
/// other SQL, are out of date: reclaim their space unless a running pgx uses one.
pub(crate) fn drop_stale(
    admin: &mut Client,
    base: &str,
    experiment: &str,
    variant: &str,
    current: &str,
) -> Result<()> {
    let rows = admin.query(
        "SELECT datname::text, shobj_description(oid, 'pg_database') FROM pg_database \
         WHERE datname <> $1 AND starts_with(coalesce(shobj_description(oid, 'pg_database'), ''), $2)",
        &[&current, &COMPLETE],
    )?;
    for row in rows {
        let (name, comment): (String, Option<String>) = (row.get(0), row.get(1));
        let Some(entry) = comment
            .as_deref()
            .and_then(|c| c.strip_prefix(COMPLETE))
            .and_then(|json| serde_json::from_str::<Entry>(json).ok())
        else {
            continue;
        };
        if entry.base == base
            && entry.experiment == experiment
            && entry.variant == variant
            && !in_use(admin, &name)?
        {
            databases::drop_owned_database(admin, &name)?;
        }
    }
    Ok(())
}

fn in_use(admin: &mut Client, name: &str) -> Result<bool> {
    let key: i64 = admin
        .query_one("SELECT hashtext($1)::bigint", &[&format!("in-use:{name}")])?
        .get(0);
    advisory_held(admin, key, None)
}

fn reuse_or_build(
    admin: &mut Client,
    request: &Request,
    name: &str,
    build: &mut dyn FnMut(&mut Client) -> Result<Vec<Timing>>,
) -> Result<Prepared> {
    let Request {
        target,
        base,
        experiment,
        variant,
        rebuild,
    } = *request;
    if !rebuild && let Some(entry) = entry_of(admin, name)? {
        let entry = touch(admin, name, entry)?;
        return Ok(Prepared {
            template: name.to_string(),
            statements: entry.statements,
            cached: true,
            locks: None,
        });
    }
    databases::drop_owned_database(admin, name)?;
    databases::check_room(
        admin,
        base,
        &format!("variant {}'s build", variant.name),
        databases::Peak::Rewrites,
    )?;
    databases::create_marked(admin, name, Some(base), BUILDING)?;
    let built = (|| -> Result<Vec<Timing>> {
        let mut client = connect(&target.config_for(name))?;
        build(&mut client)
    })();
    let statements = match built {
        Ok(statements) => statements,
        Err(err) => {
            // A half-built entry is useless and can be large: do not leave it behind.
            let _ = databases::drop_after(target, admin, &err, name);
            return Err(err);
        }
    };
    let entry = Entry {
        base: base.to_string(),
        experiment: experiment.to_string(),
        variant: variant.name.clone(),
        statements: statements.clone(),
        used_at: now(),
        shared: Vec::new(),
    };
    mark(admin, name, &entry)?;
    Ok(Prepared {
        template: name.to_string(),
        statements,
        cached: false,
        locks: None,
    })
}

/// Every complete cache entry: its database name and what its comment records.
pub(crate) fn entries(admin: &mut Client) -> Result<Vec<(String, Entry)>> {
    let rows = admin.query(
        "SELECT datname::text, shobj_description(oid, 'pg_database') FROM pg_database \
         WHERE starts_with(coalesce(shobj_description(oid, 'pg_database'), ''), $1) ORDER BY 1",
        &[&COMPLETE],
    )?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let (name, comment): (String, Option<String>) = (row.get(0), row.get(1));
            let entry = comment
                .as_deref()
                .and_then(|c| c.strip_prefix(COMPLETE))
                .and_then(|json| serde_json::from_str::<Entry>(json).ok())?;
            Some((name, entry))
        })
        .collect())
}

/// Mark an entry as used now (the least recently used leaves the cache first).
pub(crate) fn touch(admin: &mut Client, name: &str, mut entry: Entry) -> Result<Entry> {
    entry.used_at = now();
    mark(admin, name, &entry)?;
    Ok(entry)
}

/// After a run: drop entries whose base is gone, then, least recently used first, the
/// entries no running pgx uses until the cache fits `budget` bytes. Returns what was
/// dropped.
pub fn trim(admin: &mut Client, budget: u64) -> Result<Vec<String>> {
    let rows = admin.query(
        "SELECT datname::text, shobj_description(oid, 'pg_database'), pg_database_size(oid) \
         FROM pg_database WHERE starts_with(coalesce(shobj_description(oid, 'pg_database'), ''), $1)",
        &[&COMPLETE],
    )?;
    let mut entries: Vec<(String, Entry, u64)> = Vec::new();
    for row in rows {
        let (Ok(name), Ok(Some(comment)), Ok(Some(bytes))) = (
            row.try_get::<_, String>(0),
            row.try_get::<_, Option<String>>(1),
            row.try_get::<_, Option<i64>>(2),
        ) else {
            continue;
        };
        let Some(entry) = comment
            .strip_prefix(COMPLETE)
            .and_then(|json| serde_json::from_str::<Entry>(json).ok())
        else {
            continue;
        };
        entries.push((name, entry, u64::try_from(bytes).unwrap_or(0)));
    }
    let mut dropped = Vec::new();
    // Orphans first: a base that no longer exists (rebuilt under a new key, or dropped).
    let mut kept = Vec::new();
    for (name, entry, bytes) in entries {
        let base_exists = admin
            .query_opt(
                "SELECT 1 FROM pg_database WHERE datname = $1",
                &[&entry.base],
            )?
            .is_some();
        if !base_exists && !in_use(admin, &name)? {
            databases::drop_owned_database(admin, &name)
                .with_context(|| format!("dropping the stale variant cache {name}"))?;
            dropped.push(name);
        } else {
            kept.push((name, entry, bytes));
        }
    }
    kept.sort_by_key(|(_, entry, _)| std::cmp::Reverse(entry.used_at));
    let mut total: u64 = kept.iter().map(|(_, _, b)| *b).sum();
    while total > budget {
        let Some((name, _, bytes)) = kept.pop() else {
            break;
        };
        if in_use(admin, &name)? {
            continue;
        }
        databases::drop_owned_database(admin, &name)?;
        total = total.saturating_sub(bytes);
        dropped.push(name);
    }
    Ok(dropped)
}

/// How much disk the variant cache may keep: `PGX_VARIANT_CACHE_GB` when set, else half
/// of what the disk has free plus what the cache already holds (so a full disk shrinks it).
pub fn budget(admin: &mut Client, free: Option<u64>) -> Result<u64> {
    if let Some(gb) = std::env::var("PGX_VARIANT_CACHE_GB")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|gb| gb.is_finite() && *gb >= 0.0)
    {
        return Ok((gb * (1u64 << 30) as f64) as u64);
    }
    let held: i64 = admin
        .query_one(
            "SELECT coalesce(sum(pg_database_size(oid)), 0)::bigint FROM pg_database \
             WHERE starts_with(coalesce(shobj_description(oid, 'pg_database'), ''), $1)",
            &[&COMPLETE],
        )?
        .get(0);
    let held = u64::try_from(held).unwrap_or(0);
    Ok(free.map_or(u64::MAX, |free| free.saturating_add(held) / 2))
}
