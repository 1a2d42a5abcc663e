//! Which database pgx talks to.
//!
//! `--database-url` / `DATABASE_URL`, else the libpq variables psql reads (`PGHOST`,
//! `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`), else the embedded cluster, which is
//! started on demand and stopped again when pgx exits.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, Result};
use postgres::{Client, NoTls};

use crate::cluster::{self, Cluster, ClusterUse};
use crate::db::describe_config;
use crate::error::fail;

/// Variables that, like for psql, point pgx at an existing server.
pub const LIBPQ_VARS: [&str; 6] = [
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGPASSWORD",
    "PGDATABASE",
];

#[derive(Debug, Clone, Default)]
pub struct TargetOptions {
    pub database_url: Option<String>,
    pub data_dir: Option<PathBuf>,
}

pub enum Target {
    External(postgres::Config),
    Embedded(ClusterUse),
}

impl Target {
    /// Decide from options and environment; starts the embedded cluster if that is it.
    pub fn resolve(options: &TargetOptions) -> Result<Target> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let Some(config) = external_config(options.database_url.as_deref(), &env)? {
            return Ok(Target::External(config));
        }
        let cluster = embedded_cluster(options)?;
        Ok(Target::Embedded(cluster.attach()?))
    }

    /// The database migrations are applied to.
    pub fn config(&self) -> postgres::Config {
        match self {
            Target::External(config) => config.clone(),
            Target::Embedded(usage) => usage.cluster().config(cluster::DEFAULT_DATABASE),
        }
    }

    /// Another database on the same server (experiments work in databases of their own).
    pub fn config_for(&self, dbname: &str) -> postgres::Config {
        let mut config = self.config();
        config.dbname(dbname);
        config
    }

    /// Where pgx creates and drops its own databases from: the database the user pointed
    /// at (only ever connected to, never changed), or `postgres` on the embedded cluster.
    pub fn admin_config(&self) -> postgres::Config {
        match self {
            Target::External(config) => config.clone(),
            Target::Embedded(usage) => usage.cluster().config("postgres"),
        }
    }

    pub fn is_embedded(&self) -> bool {
        matches!(self, Target::Embedded(_))
    }

    pub fn describe(&self) -> String {
        match self {
            Target::External(config) => describe_config(config),
            Target::Embedded(usage) => {
                format!("embedded PostgreSQL at {}", usage.cluster().root.display())
            }
        }
    }

    pub fn connect(&self) -> Result<Client> {
        if let Target::Embedded(usage) = self {
            ensure_default_database(usage.cluster())?;
        }
        connect(&self.config())
    }
}

/// Connect, turning the driver's terse failure into advice.
pub fn connect(config: &postgres::Config) -> Result<Client> {
    config.connect(NoTls).map_err(|err| {
        fail(
            format!(
                "cannot connect to {}: {}",
                describe_config(config),
                crate::error::describe_pg_error(&err, None)
            ),
            "check DATABASE_URL / PGHOST / PGPORT / PGUSER / PGPASSWORD (as for psql), or unset them to use pgx's embedded PostgreSQL",
        )
    })
}

pub fn embedded_cluster(options: &TargetOptions) -> Result<Cluster> {
    let root = options
        .data_dir
        .clone()
        .or_else(|| std::env::var_os("PGX_DATA_DIR").map(PathBuf::from))
        .unwrap_or_else(cluster::default_root);
    Cluster::new(&root)
}

/// Whether the embedded cluster's `pgx` database exists (the server must be running).
pub fn default_database_exists(cluster: &Cluster) -> Result<bool> {
    let mut admin = connect(&cluster.config("postgres"))?;
    Ok(admin
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&cluster::DEFAULT_DATABASE],
        )?
        .is_some())
}

/// Create the embedded cluster's `pgx` database (what apply and status use) if missing.
pub fn ensure_default_database(cluster: &Cluster) -> Result<()> {
    if !default_database_exists(cluster)? {
        let mut admin = connect(&cluster.config("postgres"))?;
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {}",
                crate::db::quote_ident(cluster::DEFAULT_DATABASE)
            ))
            .context("cannot create the embedded cluster's default database")?;
    }
    Ok(())
}

/// A config for an existing server, or `None` when nothing points at one.
/// `env` is the environment lookup (a parameter so tests need not mutate the process).
pub fn external_config(
    url: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<postgres::Config>> {
    let url = url.map(str::to_string).or_else(|| env("DATABASE_URL"));
    if url.is_none() && !LIBPQ_VARS.iter().any(|v| env(v).is_some()) {
        return Ok(None);
    }
    if let Some(mode) = env("PGSSLMODE")
        && matches!(mode.as_str(), "require" | "verify-ca" | "verify-full")
    {
        return Err(fail(
            format!("PGSSLMODE={mode} asks for TLS, which pgx does not support yet"),
            "connect over a Unix socket or a trusted network with PGSSLMODE=disable or prefer",
        ));
    }
    let mut config = match &url {
        Some(url) => postgres::Config::from_str(url).map_err(|err| {
            fail(
                format!("DATABASE_URL / --database-url is not a valid connection string: {err}"),
                "use postgresql://user@host:port/dbname or key=value form (host=... dbname=...)",
            )
        })?,
        None => postgres::Config::new(),
    };
    // Like libpq, the environment fills in whatever the URL left out.
    if config.get_hosts().is_empty() {
        match env("PGHOST").or_else(|| env("PGHOSTADDR")) {
            Some(hosts) => {
                for host in hosts.split(',') {
                    config.host(host);
                }
            }
            None => {
                config.host(default_host());
            }
        }
    }
    if config.get_ports().is_empty()
        && let Some(port) = env("PGPORT")
    {
        let port: u16 = port.parse().map_err(|_| {
            fail(
                format!("PGPORT={port} is not a port number"),
                "set PGPORT to a number such as 5432",
            )
        })?;
        config.port(port);
    }
    if config.get_user().is_none() {
        let user = env("PGUSER")
            .or_else(|| env("USER"))
            .unwrap_or_else(|| "postgres".into());
        config.user(&user);
    }
    if config.get_password().is_none()
        && let Some(password) = env("PGPASSWORD")
    {
        config.password(password);
    }
    if config.get_dbname().is_none() {
        let dbname = env("PGDATABASE")
            .or_else(|| config.get_user().map(str::to_string))
            .unwrap_or_else(|| "postgres".into());
        config.dbname(&dbname);
    }
    config.application_name("pgx");
    Ok(Some(config))
}

/// libpq's default: the distribution's socket directory if present, else localhost.
fn default_host() -> &'static str {
    ["/var/run/postgresql", "/tmp"]
        .into_iter()
        .find(|dir| std::path::Path::new(dir).join(".s.PGSQL.5432").exists())
        .unwrap_or("localhost")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    #[test]
    fn nothing_set_means_embedded() {
        let env = env_of(&[("USER", "me")]);
        assert!(external_config(None, &env).unwrap().is_none());
    }

    #[test]
    fn libpq_variables_are_read_like_psql() {
        let env = env_of(&[
            ("PGHOST", "db.internal"),
            ("PGPORT", "6543"),
            ("PGUSER", "alice"),
            ("PGPASSWORD", "s3cret"),
        ]);
        let config = external_config(None, &env).unwrap().unwrap();
        assert_eq!(config.get_ports(), &[6543]);
        assert_eq!(config.get_user(), Some("alice"));
        assert_eq!(
            config.get_dbname(),
            Some("alice"),
            "dbname defaults to user"
        );
        assert_eq!(config.get_password(), Some(&b"s3cret"[..]));
        let shown = describe_config(&config);
        assert!(!shown.contains("s3cret"), "password leaked: {shown}");
    }

    #[test]
    fn url_wins_and_environment_fills_gaps() {
        let env = env_of(&[("PGPASSWORD", "pw"), ("PGPORT", "1")]);
        let config = external_config(Some("postgresql://bob@h:7000/app"), &env)
            .unwrap()
            .unwrap();
        assert_eq!(config.get_ports(), &[7000]);
        assert_eq!(config.get_dbname(), Some("app"));
        assert_eq!(config.get_password(), Some(&b"pw"[..]));
    }

    #[test]
    fn bad_url_and_port_are_errors_not_panics() {
        let env = env_of(&[]);
        assert!(external_config(Some("postgresql://h:notaport/x"), &env).is_err());
        let env = env_of(&[("PGPORT", "abc")]);
        assert!(external_config(None, &env).is_err());
    }
}
