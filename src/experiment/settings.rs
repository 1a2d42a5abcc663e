//! Settings sets. Session settings are `SET` on the connections that measure the set;
//! settings the server reads only on reload are applied server-wide on pgx's own
//! embedded cluster (ALTER SYSTEM + reload, undone by a guard on every exit); settings
//! that need a restart are reported as not applicable — never silently ignored.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use postgres::Client;

use crate::db::{quote_ident, quote_literal};
use crate::error::describe_pg_error;

/// How one settings set can be applied.
#[derive(Debug, Clone, Default)]
pub struct Classified {
    /// `SET` per session.
    pub session: Vec<(String, String)>,
    /// ALTER SYSTEM + reload (embedded cluster only).
    pub server: Vec<(String, String)>,
    /// Why the set cannot be applied at all; its cells report this.
    pub not_applicable: Option<String>,
}

/// Sort a set's settings by what it takes to apply them, asking the server (pg_settings
/// context) and trying each session value once, so a bad value is reported up front.
pub fn classify(
    client: &mut Client,
    values: &[(String, String)],
    embedded: bool,
) -> Result<Classified> {
    let mut out = Classified::default();
    for (name, value) in values {
        let context: Option<String> = client
            .query_opt("SELECT context FROM pg_settings WHERE name = $1", &[name])?
            .map(|r| r.get(0));
        let reason = match context.as_deref() {
            // A dotted name is an extension's setting, defined once its library loads.
            None if name.contains('.') => {
                out.session.push((name.clone(), value.clone()));
                None
            }
            None => Some(format!("{name} is not a setting of this server")),
            Some("user") | Some("superuser") => {
                let mut tx = client.transaction()?;
                let tried = tx.batch_execute(&format!(
                    "SET LOCAL {} = {}",
                    quote_ident(name),
                    quote_literal(value)
                ));
                drop(tx);
                match tried {
                    Ok(()) => {
                        out.session.push((name.clone(), value.clone()));
                        None
                    }
                    Err(e) => Some(format!(
                        "SET {name} = {value}: {}",
                        describe_pg_error(&e, None)
                    )),
                }
            }
            Some("sighup") if embedded => {
                out.server.push((name.clone(), value.clone()));
                None
            }
            Some("sighup") => Some(format!(
                "{name} can only be changed in the server's configuration (context sighup); pgx changes server configuration only on its embedded cluster"
            )),
            Some(other) => Some(format!(
                "{name} can only be changed by restarting the server (context {other}); set it in postgresql.conf and run the experiment again"
            )),
        };
        if reason.is_some() {
            out.not_applicable = reason;
            break;
        }
    }
    Ok(out)
}

/// What every measuring session starts from: pgx's defaults, then the set's values.
pub fn session_sql(timeout_ms: u64, session: &[(String, String)]) -> String {
    let mut sql = format!("SET jit = off; SET statement_timeout = {timeout_ms};");
    for (name, value) in session {
        sql.push_str(&format!(
            " SET {} = {};",
            quote_ident(name),
            quote_literal(value)
        ));
    }
    sql
}

/// Seconds since the epoch on the server's clock: reloads after it have a later
/// `pg_conf_load_time()`.
pub fn server_clock(client: &mut Client) -> Result<f64> {
    Ok(client
        .query_one("SELECT extract(epoch FROM clock_timestamp())::float8", &[])?
        .get(0))
}

/// Wait until `client`'s backend has re-read the configuration after the reload that
/// was requested at `since` (server clock): a bounded poll of `pg_conf_load_time()`.
pub fn wait_for_reload(client: &mut Client, since: f64) -> Result<()> {
    let started = Instant::now();
    loop {
        // Each command gives the backend a chance to handle the pending SIGHUP.
        let seen: bool = client
            .query_one(
                "SELECT extract(epoch FROM pg_conf_load_time())::float8 > $1",
                &[&since],
            )?
            .get(0);
        if seen {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(10) {
            bail!("the server did not reload its configuration within 10 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A variant's `server_settings` must be server settings (read on reload, or at start),
/// on a cluster pgx owns: a session setting belongs in the variant's SQL (`ALTER DATABASE
/// ... SET`, which its load's sessions then get), and another server's configuration is
/// not pgx's to change. Ok(true) when one needs a restart (`shared_buffers`, ...).
pub fn check_server_settings(
    client: &mut Client,
    variant: &str,
    values: &[(String, String)],
    embedded: bool,
) -> Result<bool> {
    if values.is_empty() {
        return Ok(false);
    }
    if !embedded {
        return Err(crate::error::fail(
            format!(
                "variant {variant}: server_settings change the server's configuration, and this server is not one pgx runs"
            ),
            "run it on pgx's embedded server (unset DATABASE_URL / PG*), or set them on your server and run the variants one at a time",
        ));
    }
    let mut restart = false;
    for (name, value) in values {
        let context: Option<String> = client
            .query_opt("SELECT context FROM pg_settings WHERE name = $1", &[name])?
            .map(|r| r.get(0));
        match context.as_deref() {
            Some("sighup") => {}
            Some("postmaster") => restart = true,
            Some("user") | Some("superuser") => {
                return Err(crate::error::fail(
                    format!("variant {variant}: server_settings: {name} is a session setting"),
                    format!(
                        "set it for the variant's sessions in its sql: DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET {name} = %L', current_database(), '{value}'); END $$;"
                    ),
                ));
            }
            Some(other) => {
                return Err(crate::error::fail(
                    format!(
                        "variant {variant}: server_settings: {name} cannot be changed on a running cluster (context {other})"
                    ),
                    "server_settings takes settings read on reload (checkpoint_timeout, max_wal_size) or at start (shared_buffers)",
                ));
            }
            None => {
                return Err(crate::error::fail(
                    format!(
                        "variant {variant}: server_settings: {name} is not a setting of this server"
                    ),
                    "see SHOW ALL or pg_settings for the names",
                ));
            }
        }
    }
    Ok(restart)
}

/// ALTER SYSTEM SET each value (in effect at the next reload or restart); the names set.
pub fn alter_system(admin: &mut Client, values: &[(String, String)]) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for (name, value) in values {
        admin
            .batch_execute(&format!(
                "ALTER SYSTEM SET {} = {}",
                quote_ident(name),
                quote_literal(value)
            ))
            .map_err(|e| {
                let message = format!(
                    "ALTER SYSTEM SET {name} = {value}: {}",
                    describe_pg_error(&e, None)
                );
                crate::error::described(message, e)
            })?;
        names.push(name.clone());
    }
    Ok(names)
}

/// ALTER SYSTEM RESET each name.
pub fn alter_system_reset(admin: &mut Client, names: &[String]) -> Result<()> {
    for name in names {
        admin.batch_execute(&format!("ALTER SYSTEM RESET {}", quote_ident(name)))?;
    }
    Ok(())
}

/// Settings applied to the whole server for as long as this guard lives: dropping it
/// (an error, Ctrl-C, a panic) resets them; [`ServerWide::undo`] does the same and
/// reports failures. Each change returns the server-clock time of its reload, for
/// [`wait_for_reload`].
pub struct ServerWide {
    admin: Client,
    names: Vec<String>,
}

impl ServerWide {
    pub fn apply(mut admin: Client, values: &[(String, String)]) -> Result<(ServerWide, f64)> {
        let names = alter_system(&mut admin, values)?;
        let mut guard = ServerWide { admin, names };
        let since = guard.reload()?;
        Ok((guard, since))
    }

    fn reload(&mut self) -> Result<f64> {
        let since = server_clock(&mut self.admin)?;
        self.admin
            .batch_execute("SELECT pg_reload_conf()")
            .context("reloading the server configuration")?;
        Ok(since)
    }

    fn reset(&mut self) -> Result<f64> {
        alter_system_reset(&mut self.admin, &std::mem::take(&mut self.names))?;
        self.reload()
    }

    /// Reset what `apply` changed; returns the time of the reload.
    pub fn undo(mut self) -> Result<f64> {
        self.reset()
    }
}

impl Drop for ServerWide {
    fn drop(&mut self) {
        if self.names.is_empty() {
            return;
        }
        let names = self.names.join(", ");
        if let Err(err) = self.reset() {
            crate::note!(
                "pgx: could not reset server settings {names}: {err:#}; run ALTER SYSTEM RESET for them"
            );
        }
    }
}

/// Settings that change only which plan the planner picks, or whose effect on running a
/// plan shows in what EXPLAIN counts (`crate::explain::PlanSummary::same_work`): a cell
/// under such settings that has its reference's plan, blocks, rows, temporary blocks
/// and lossy bitmap blocks does the same work, and needs no stopwatch.
///
/// - the planner's cost constants and `enable_*` switches, join search limits, GEQO;
/// - `work_mem` and `hash_mem_multiplier`: a sort, hash or aggregate that no longer fits
///   spills (temporary blocks), a bitmap that no longer fits turns lossy (lossy blocks
///   and rows removed by recheck), a Memoize cache that evicts re-runs its inner side
///   (blocks); in memory, the same plan does the same work.
///
/// Not here, so always timed: `jit*` (compiles, which EXPLAIN's counters do not show),
/// `plan_cache_mode` (a generic plan's run-time pruning costs time of its own),
/// `effective_io_concurrency` (prefetching), and anything else.
pub fn plan_only(name: &str) -> bool {
    const NAMES: &[&str] = &[
        "seq_page_cost",
        "random_page_cost",
        "cpu_tuple_cost",
        "cpu_index_tuple_cost",
        "cpu_operator_cost",
        "parallel_setup_cost",
        "parallel_tuple_cost",
        "min_parallel_table_scan_size",
        "min_parallel_index_scan_size",
        "effective_cache_size",
        "from_collapse_limit",
        "join_collapse_limit",
        "cursor_tuple_fraction",
        "constraint_exclusion",
        "work_mem",
        "hash_mem_multiplier",
    ];
    let name = name.to_ascii_lowercase();
    NAMES.contains(&name.as_str()) || name.starts_with("enable_") || name.starts_with("geqo")
}

/// Do two settings sets differ only in [`plan_only`] settings (a setting one sets and
/// the other leaves at the server's value counts as differing)?
pub fn differ_only_in_plan(a: &[(String, String)], b: &[(String, String)]) -> bool {
    let value = |set: &[(String, String)], name: &str| {
        set.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    a.iter()
        .chain(b.iter())
        .filter(|(name, _)| value(a, name) != value(b, name))
        .all(|(name, _)| plan_only(name))
}

#[cfg(test)]
mod plan_only_tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_settings_whose_effect_evidence_shows_spare_the_stopwatch() {
        let reference = set(&[("work_mem", "4MB"), ("random_page_cost", "4")]);
        assert!(differ_only_in_plan(
            &reference,
            &set(&[("work_mem", "64MB"), ("random_page_cost", "1.1")])
        ));
        assert!(differ_only_in_plan(
            &reference,
            &set(&[
                ("work_mem", "4MB"),
                ("random_page_cost", "4"),
                ("enable_seqscan", "off")
            ])
        ));
        assert!(!differ_only_in_plan(
            &reference,
            &set(&[
                ("work_mem", "4MB"),
                ("random_page_cost", "4"),
                ("jit", "on")
            ])
        ));
        assert!(!differ_only_in_plan(
            &set(&[("plan_cache_mode", "force_custom_plan")]),
            &set(&[("plan_cache_mode", "force_generic_plan")])
        ));
        // The same value on both sides is no difference, whatever the setting.
        assert!(differ_only_in_plan(
            &set(&[("jit", "off"), ("work_mem", "4MB")]),
            &set(&[("jit", "off"), ("work_mem", "1GB")])
        ));
    }
}
