//! Facts about where the numbers came from, for the report header.

use std::process::Command;

use anyhow::Result;
use postgres::Client;

use super::result::Environment;
use crate::target::Target;

/// Settings that change what a plan costs or how fast it runs.
const REPORTED_SETTINGS: [&str; 11] = [
    "shared_buffers",
    "work_mem",
    "maintenance_work_mem",
    "effective_cache_size",
    "random_page_cost",
    "max_parallel_workers_per_gather",
    "jit",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_level",
];

pub fn collect(target: &Target, client: &mut Client) -> Result<Environment> {
    let version: String = client
        .query_one("SELECT current_setting('server_version')", &[])?
        .get(0);
    let mut server_settings = Vec::new();
    for name in REPORTED_SETTINGS {
        let value: String = client
            .query_one("SELECT current_setting($1)", &[&name])?
            .get(0);
        server_settings.push((name.to_string(), value));
    }
    Ok(Environment {
        postgres_version: format!(
            "PostgreSQL {}",
            version.split_whitespace().next().unwrap_or(&version)
        ),
        pgx_version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit: git_commit(),
        date: utc_now_minutes(),
        server: if let Target::Embedded(usage) = target {
            if usage.cluster().is_durable() {
                "embedded (pgx-managed), durable: fsync, synchronous_commit and full_page_writes on, wal_level = replica".into()
            } else {
                "embedded (pgx-managed)".into()
            }
        } else {
            target.describe()
        },
        cpus: crate::host::cores(),
        memory_gib: memory_gib(),
        server_settings,
        load_before: None,
        load_after: None,
    })
}

/// Short commit of the project, with "-dirty" when its code differs from the commit: what
/// every report and benchmark says produced it.
pub fn git_commit() -> String {
    let root = crate::project_root();
    let run = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(commit) = run(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    let dirty = run(&[
        "status",
        "--porcelain",
        "--",
        "src",
        "migrations",
        "experiments",
        "benches",
        "Cargo.toml",
        "Cargo.lock",
    ])
    .is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    }
}

/// Now, to the minute, as reports date themselves.
pub fn utc_now_minutes() -> String {
    let now = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    now.format(&format).unwrap_or_else(|_| "unknown".into())
}

fn memory_gib() -> f64 {
    crate::host::memory_bytes()
        .map(|b| (b as f64 / (1u64 << 30) as f64 * 10.0).round() / 10.0)
        .unwrap_or(0.0)
}
