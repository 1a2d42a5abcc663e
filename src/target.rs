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
use crate::tls::{SslMode, TlsPolicy};

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

    /// pgx's own embedded cluster, when that is the target.
    pub fn cluster(&self) -> Option<&Cluster> {
        match self {
            Target::Embedded(usage) => Some(usage.cluster()),
            Target::External(_) => None,
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

/// Connect (with TLS when the config asks for it), turning the driver's terse failure
/// into what happened, where, and what to do; never showing the password.
pub fn connect(config: &postgres::Config) -> Result<Client> {
    let result = match crate::tls::connector_for(config)? {
        Some(tls) => config.connect(tls),
        None if crate::tls::all_unix(config) => {
            // PostgreSQL offers no TLS on Unix sockets; like libpq, sslmode does not apply.
            let mut plain = config.clone();
            plain.ssl_mode(postgres::config::SslMode::Disable);
            plain.connect(NoTls)
        }
        None => config.connect(NoTls),
    };
    result.map_err(|err| connect_error(config, &err))
}

/// Where a connection attempt went: `host:port` for TCP, the socket file for Unix.
pub fn addresses_tried(config: &postgres::Config) -> String {
    let ports = config.get_ports();
    let port_of = |i: usize| {
        ports
            .get(i)
            .or_else(|| ports.first())
            .copied()
            .unwrap_or(5432)
    };
    let hosts = config.get_hosts();
    if hosts.is_empty() {
        return format!("localhost:{}", port_of(0));
    }
    hosts
        .iter()
        .enumerate()
        .map(|(i, host)| match host {
            postgres::config::Host::Tcp(name) => format!("{name}:{}", port_of(i)),
            postgres::config::Host::Unix(dir) => {
                format!("socket {}/.s.PGSQL.{}", dir.display(), port_of(i))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a connection failed, in words: refused, no such host, timed out, the server's
/// own message (authentication, unknown database), or the TLS failure.
fn connect_error(config: &postgres::Config, err: &postgres::Error) -> anyhow::Error {
    let tried = addresses_tried(config);
    let who = format!(
        "user {} database {}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().unwrap_or("?")
    );
    let generic_hint = "check DATABASE_URL / PGHOST / PGPORT / PGUSER / PGPASSWORD (as for psql), or unset them to use pgx's embedded PostgreSQL";
    if let Some(db) = err.as_db_error() {
        let recovering = match embedded_cluster_of(config) {
            Some(cluster) => format!(
                "the embedded PostgreSQL is recovering from a crashed or killed backend (it restarts every session); {} says which; it accepts connections again in a moment",
                cluster.log_file().display()
            ),
            None => "the server is recovering from a crashed or killed backend (it restarts every session; its log says which); it accepts connections again in a moment".to_string(),
        };
        let hint = match db.code().code() {
            "28P01" | "28000" => {
                "check the password (URL, PGPASSWORD, or a ~/.pgpass / PGPASSFILE line) and pg_hba.conf on the server".to_string()
            }
            "3D000" => {
                "create the database, or name an existing one in the URL or PGDATABASE".to_string()
            }
            "57P03" => recovering,
            _ => generic_hint.to_string(),
        };
        return crate::error::fail_with_sqlstate(
            format!(
                "cannot connect to {tried} as {who}: the server said {}",
                crate::error::describe_pg_error(err, None)
            ),
            hint,
            Some(db.code().clone()),
        );
    }
    let mut causes = Vec::new();
    let mut io_kind = None;
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            io_kind.get_or_insert(io.kind());
        }
        causes.push(cause.to_string());
        source = cause.source();
    }
    let detail = causes.join(": ");
    let lower = detail.to_lowercase();
    // pgx's own server, gone while this process uses it: DATABASE_URL was never the
    // matter.
    let gone = matches!(
        io_kind,
        Some(std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound)
    );
    if gone && let Some(cluster) = embedded_cluster_of(config) {
        return cluster.stopped_unexpectedly();
    }
    // A connection reset while it opens: the server is ending every session (a backend
    // crashed or was killed) and about to recover. Said so, and marked as such, so the
    // caller waits for it rather than blaming the connection settings. (Broken pipe: the
    // start-up message written to a socket the dying backend had already closed; closed:
    // the socket ended before the start-up's answer.)
    if err.is_closed()
        || matches!(
            io_kind,
            Some(
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::BrokenPipe
            )
        )
    {
        let log = embedded_cluster_of(config)
            .map(|c| format!("; {} says why", c.log_file().display()))
            .unwrap_or_default();
        return crate::error::fail_with_sqlstate(
            format!(
                "cannot connect to {tried} as {who}: the server closed the connection ({detail})"
            ),
            format!(
                "the server is ending every session after a crashed or killed backend{log}, and accepts connections again once it has recovered"
            ),
            Some(postgres::error::SqlState::CRASH_SHUTDOWN),
        );
    }
    let (what, hint) = if io_kind == Some(std::io::ErrorKind::ConnectionRefused) {
        (
            format!("connection refused: no server is listening at {tried}"),
            "start the server, or check the host and port (DATABASE_URL, PGHOST, PGPORT)"
                .to_string(),
        )
    } else if io_kind == Some(std::io::ErrorKind::TimedOut) || lower.contains("timed out") {
        let after = config
            .get_connect_timeout()
            .map(|t| format!(" after {} s", t.as_secs()))
            .unwrap_or_default();
        (
            format!("timed out{after} connecting to {tried}"),
            "check that the host is reachable and the port open (a firewall drops the packets); connect_timeout=N in the URL or PGCONNECT_TIMEOUT waits longer".to_string(),
        )
    } else if lower.contains("lookup address")
        || lower.contains("name or service not known")
        || lower.contains("no address associated")
        || lower.contains("name resolution")
    {
        (
            format!("no such host: cannot resolve the host name of {tried} ({detail})"),
            "check the host name in DATABASE_URL or PGHOST".to_string(),
        )
    } else if io_kind == Some(std::io::ErrorKind::NotFound) {
        (
            format!("the socket does not exist ({tried}): no server is running there"),
            "no server is running with that socket directory and port: start it, or fix PGHOST / PGPORT".to_string(),
        )
    } else if lower.contains("tls")
        || lower.contains("certificate")
        || err.to_string().contains("TLS")
    {
        (
            format!("TLS failed with {tried}: {}", if detail.is_empty() { err.to_string() } else { format!("{err}: {detail}") }),
            "sslmode=require needs a server with ssl = on; verify-ca / verify-full also need sslrootcert=<CA file> (and for verify-full a host name the certificate names); sslmode=disable connects without TLS".to_string(),
        )
    } else {
        (
            if detail.is_empty() {
                format!("{err} ({tried})")
            } else {
                format!("{err} ({tried}): {detail}")
            },
            generic_hint.to_string(),
        )
    };
    fail(format!("cannot connect to {tried} as {who}: {what}"), hint)
}

/// The embedded cluster this process uses that `config` points at (by its socket).
pub fn embedded_cluster_of(config: &postgres::Config) -> Option<Cluster> {
    config.get_hosts().iter().find_map(|host| match host {
        postgres::config::Host::Unix(dir) => cluster::in_use_at_socket(dir),
        postgres::config::Host::Tcp(_) => None,
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

/// Connection options pgx understands in a URL or key=value string (the `postgres`
/// crate's, plus libpq's `sslrootcert` and the verify-* sslmodes pgx handles itself).
pub const CONNECTION_OPTIONS: &str = "host, hostaddr, port, user, password, dbname, options, application_name, sslmode, sslrootcert, connect_timeout, tcp_user_timeout, keepalives, keepalives_idle, keepalives_interval, keepalives_retries, target_session_attrs, channel_binding, load_balance_hosts";

/// The TLS options taken out of a connection string before the driver sees it.
#[derive(Debug, Default, PartialEq)]
struct TlsOptions {
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

/// Remove `sslmode` and `sslrootcert` from a URL's query or a key=value string: the
/// driver knows neither verify-ca / verify-full nor sslrootcert.
fn take_tls_options(conn: &str) -> (String, TlsOptions) {
    let mut tls = TlsOptions::default();
    let mut keep = |key: &str, value: &str| -> bool {
        match key {
            "sslmode" => {
                tls.sslmode = Some(value.to_string());
                false
            }
            "sslrootcert" => {
                tls.sslrootcert = Some(value.to_string());
                false
            }
            _ => true,
        }
    };
    if conn.starts_with("postgres://") || conn.starts_with("postgresql://") {
        let Some((base, query)) = conn.split_once('?') else {
            return (conn.to_string(), tls);
        };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                keep(k, &percent_decode(v))
            })
            .collect();
        let rebuilt = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        (rebuilt, tls)
    } else {
        static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
        let re = RE.get_or_init(|| {
            regex::Regex::new(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)").expect("static regex")
        });
        let mut out = String::new();
        let mut last = 0;
        for caps in re.captures_iter(conn) {
            let (Some(all), Some(k), Some(v)) = (caps.get(0), caps.get(1), caps.get(2)) else {
                continue;
            };
            let value = v.as_str().trim_matches('\'');
            if !keep(k.as_str(), value) {
                out.push_str(&conn[last..all.start()]);
                last = all.end();
            }
        }
        out.push_str(&conn[last..]);
        (out, tls)
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse a URL or key=value string, saying which part is wrong (never echoing it: it may
/// hold a password).
fn parse_connection_string(conn: &str) -> Result<postgres::Config> {
    if let Some((scheme, _)) = conn.split_once("://")
        && scheme != "postgres"
        && scheme != "postgresql"
    {
        return Err(fail(
            format!("DATABASE_URL / --database-url: the scheme {scheme:?} is not PostgreSQL's"),
            "start the URL with postgresql:// (or postgres://), e.g. postgresql://user@host:5432/dbname",
        ));
    }
    postgres::Config::from_str(conn).map_err(|err| {
        let reason = std::error::Error::source(&err)
            .map(|s| s.to_string())
            .unwrap_or_else(|| err.to_string());
        let hint = if reason.contains("unknown option") {
            format!("options pgx understands: {CONNECTION_OPTIONS}")
        } else if conn.contains("://") {
            "write it as postgresql://user[:password]@host[:port]/dbname[?option=value&...], with special characters in the password percent-encoded (@ as %40)".to_string()
        } else {
            "write it as key=value pairs separated by spaces: host=... port=5432 user=... dbname=...".to_string()
        };
        fail(
            format!("DATABASE_URL / --database-url is not a valid connection string: {reason}"),
            hint,
        )
    })
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
    let (url, url_tls) = match &url {
        Some(url) => {
            let (rest, tls) = take_tls_options(url);
            (Some(rest), tls)
        }
        None => (None, TlsOptions::default()),
    };
    let mode = match url_tls.sslmode.clone().or_else(|| env("PGSSLMODE")) {
        Some(text) => SslMode::parse(&text).ok_or_else(|| {
            fail(
                format!("sslmode {text:?} is not a libpq sslmode"),
                format!("use one of {}", crate::tls::SSLMODES),
            )
        })?,
        None => SslMode::default(),
    };
    let root_cert = url_tls
        .sslrootcert
        .clone()
        .or_else(|| env("PGSSLROOTCERT"))
        .map(PathBuf::from);
    let mut config = match &url {
        Some(url) => parse_connection_string(url)?,
        None => postgres::Config::new(),
    };
    config.ssl_mode(mode.for_driver());
    crate::tls::set_policy(TlsPolicy { mode, root_cert });
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
    if config.get_connect_timeout().is_none() {
        let seconds = match env("PGCONNECT_TIMEOUT") {
            Some(text) => text.trim().parse::<u64>().map_err(|_| {
                fail(
                    format!("PGCONNECT_TIMEOUT={text} is not a number of seconds"),
                    "set it to a whole number of seconds, e.g. 10",
                )
            })?,
            None => DEFAULT_CONNECT_TIMEOUT_SECS,
        };
        if seconds > 0 {
            config.connect_timeout(std::time::Duration::from_secs(seconds));
        }
    }
    if config.get_password().is_none()
        && let Some(path) = crate::pgpass::default_path(env)
    {
        let host = match config.get_hosts().first() {
            Some(postgres::config::Host::Tcp(name)) => name.clone(),
            // libpq matches a socket connection as localhost.
            _ => "localhost".to_string(),
        };
        let wanted = crate::pgpass::Wanted {
            host: &host,
            port: config.get_ports().first().copied().unwrap_or(5432),
            database: config.get_dbname().unwrap_or_default(),
            user: config.get_user().unwrap_or_default(),
        };
        if let Some(password) = crate::pgpass::lookup(&path, &wanted) {
            config.password(password);
        }
    }
    config.application_name("pgx");
    Ok(Some(config))
}

/// Seconds to wait for a TCP connection when neither the URL nor PGCONNECT_TIMEOUT says
/// (libpq waits forever; pgx would rather say what is wrong).
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 10;

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
