//! Datasets copied from a database that exists already, so an experiment's variants and
//! queries run against real rows: `from_database` (same server: a template copy) or
//! `from_url` (another server: `pg_dump` and `pg_restore` with parallel jobs). The
//! source is only ever read: a template copy reads its files, pg_dump reads in a
//! read-only transaction.

use std::process::Command;

use anyhow::{Context, Result};
use postgres::Client;

use crate::error::{describe_pg_error, fail};
use crate::target::Target;

/// What identifies a same-server source for the cache key: its name and oid (a database
/// dropped and made again gets a new oid, so a new base).
pub fn database_identity(admin: &mut Client, name: &str) -> Result<String> {
    let oid: Option<u32> = admin
        .query_opt("SELECT oid FROM pg_database WHERE datname = $1", &[&name])?
        .map(|r| r.get(0));
    let Some(oid) = oid else {
        return Err(fail(
            format!("dataset.from_database: there is no database {name:?} on this server"),
            "name an existing database (psql's \\l lists them), or use from_url for another server",
        ));
    };
    Ok(format!("database:{name}:{oid}"))
}

/// What identifies a URL source: the URL without its password.
pub fn url_identity(url: &str) -> Result<String> {
    let config = parse_url(url)?;
    Ok(format!("url:{}", crate::db::describe_config(&config)))
}

fn parse_url(url: &str) -> Result<postgres::Config> {
    url.parse::<postgres::Config>().map_err(|e| {
        fail(
            format!("dataset.from_url is not a connection string: {e}"),
            "write it like postgresql://user@host:5432/dbname or host=... dbname=...",
        )
    })
}

/// `CREATE DATABASE dbname TEMPLATE source`: PostgreSQL copies the files and requires
/// that nobody else is connected to the source meanwhile, so pgx checks first and says so.
pub fn copy_database(admin: &mut Client, source: &str, dbname: &str, mark: &str) -> Result<()> {
    let others: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&source],
        )?
        .get(0);
    if others > 0 {
        return Err(fail(
            format!(
                "dataset.from_database: {source} has {others} other connection(s), and PostgreSQL copies a database only while nobody is connected to it"
            ),
            format!(
                "close them (SELECT pid, usename, application_name FROM pg_stat_activity WHERE datname = '{source}' lists them), or copy it with from_url, which goes through pg_dump"
            ),
        ));
    }
    super::databases::create_marked(admin, dbname, Some(source), mark)
        .with_context(|| format!("copying {source}"))
}

/// The libpq connection string of `config` without its password, and the password (for
/// PGPASSWORD: never on a command line other users can read).
fn conninfo(config: &postgres::Config) -> (String, Option<String>) {
    let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut parts = Vec::new();
    for host in config.get_hosts() {
        match host {
            postgres::config::Host::Tcp(h) => parts.push(format!("host={}", quote(h))),
            postgres::config::Host::Unix(p) => {
                parts.push(format!("host={}", quote(&p.display().to_string())))
            }
        }
    }
    if let Some(port) = config.get_ports().first() {
        parts.push(format!("port={port}"));
    }
    if let Some(user) = config.get_user() {
        parts.push(format!("user={}", quote(user)));
    }
    if let Some(db) = config.get_dbname() {
        parts.push(format!("dbname={}", quote(db)));
    }
    let password = config
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    (parts.join(" "), password)
}

/// pg_dump the source (directory format, parallel jobs) and pg_restore it into the
/// empty database `dbname`, without owners or privileges (the roles need not exist here).
pub fn restore_url(target: &Target, url: &str, dbname: &str) -> Result<()> {
    let source = parse_url(url)?;
    let bindir = crate::cluster::find_bindir()?;
    let jobs = crate::host::cores().max(1).to_string();
    let scratch = tempfile::tempdir().context("a temporary directory for the dump")?;
    let dump = scratch.path().join("dump");
    let run = |program: &str, args: Vec<String>, password: Option<String>| -> Result<()> {
        let mut cmd = Command::new(bindir.join(program));
        cmd.args(&args);
        cmd.env_remove("PGPASSWORD");
        if let Some(p) = password {
            cmd.env("PGPASSWORD", p);
        }
        let out = cmd
            .output()
            .with_context(|| format!("cannot run {program}"))?;
        if crate::interrupt::is_interrupted() {
            return Err(anyhow::Error::new(crate::error::Interrupted));
        }
        if !out.status.success() {
            return Err(fail(
                format!(
                    "dataset.from_url: {program} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                "check that the URL works with psql, and that this pgx's PostgreSQL tools are at least as new as the source server",
            ));
        }
        Ok(())
    };
    let (source_info, source_password) = conninfo(&source);
    run(
        "pg_dump",
        vec![
            "--format=directory".into(),
            format!("--jobs={jobs}"),
            "--no-owner".into(),
            "--no-privileges".into(),
            format!("--file={}", dump.display()),
            format!("--dbname={source_info}"),
        ],
        source_password,
    )?;
    let (target_info, target_password) = conninfo(&target.config_for(dbname));
    run(
        "pg_restore",
        vec![
            format!("--jobs={jobs}"),
            "--no-owner".into(),
            "--no-privileges".into(),
            "--exit-on-error".into(),
            format!("--dbname={target_info}"),
            dump.display().to_string(),
        ],
        target_password,
    )
}

/// VACUUM ANALYZE of the copy: fresh statistics and visibility maps for every variant.
pub fn settle(client: &mut Client) -> Result<()> {
    client.batch_execute("VACUUM ANALYZE").map_err(|e| {
        let message = format!(
            "VACUUM ANALYZE of the copy: {}",
            describe_pg_error(&e, None)
        );
        crate::error::described(message, e)
    })
}
