//! Applying a settings set. Session settings are `SET`; settings the server reads only on
//! reload are applied server-wide on pgx's own embedded cluster (ALTER SYSTEM + reload,
//! undone afterwards); settings that need a restart are reported as not applicable —
//! never silently ignored.

use anyhow::Result;
use postgres::Client;

use crate::db::{quote_ident, quote_literal};
use crate::error::describe_pg_error;

#[derive(Debug, Default)]
pub struct Applied {
    /// Set when the whole set could not be applied; its cells report this.
    pub not_applicable: Option<String>,
    /// Names changed with ALTER SYSTEM; `undo` resets them.
    pub server_wide: Vec<String>,
}

/// pgx's measurement defaults, then the set's values.
pub fn apply(
    client: &mut Client,
    values: &[(String, String)],
    timeout_ms: u64,
    embedded: bool,
) -> Result<Applied> {
    client.batch_execute(&format!(
        "RESET ALL; SET jit = off; SET statement_timeout = {timeout_ms}"
    ))?;
    let mut applied = Applied::default();
    for (name, value) in values {
        let context: Option<String> = client
            .query_opt("SELECT context FROM pg_settings WHERE name = $1", &[name])?
            .map(|r| r.get(0));
        match context.as_deref() {
            None => {
                applied.not_applicable = Some(format!("{name} is not a setting of this server"));
            }
            Some("user") | Some("superuser") => {
                client
                    .batch_execute(&format!(
                        "SET {} = {}",
                        quote_ident(name),
                        quote_literal(value)
                    ))
                    .map_err(|e| {
                        anyhow::anyhow!("SET {name} = {value}: {}", describe_pg_error(&e, None))
                    })?;
            }
            Some("sighup") if embedded => {
                client.batch_execute(&format!(
                    "ALTER SYSTEM SET {} = {}",
                    quote_ident(name),
                    quote_literal(value)
                ))?;
                client.batch_execute("SELECT pg_reload_conf()")?;
                applied.server_wide.push(name.clone());
            }
            Some("sighup") => {
                applied.not_applicable = Some(format!(
                    "{name} can only be changed in the server's configuration (context sighup); pgx changes server configuration only on its embedded cluster"
                ));
            }
            Some(other) => {
                applied.not_applicable = Some(format!(
                    "{name} can only be changed by restarting the server (context {other}); set it in postgresql.conf and run the experiment again"
                ));
            }
        }
        if applied.not_applicable.is_some() {
            break;
        }
    }
    if !applied.server_wide.is_empty() {
        // The reload reaches this backend by signal, handled before its next command.
        std::thread::sleep(std::time::Duration::from_millis(300));
        client.batch_execute("SELECT 1")?;
    }
    Ok(applied)
}

/// Undo server-wide changes made by `apply`.
pub fn undo(client: &mut Client, applied: &Applied) -> Result<()> {
    for name in &applied.server_wide {
        client.batch_execute(&format!("ALTER SYSTEM RESET {}", quote_ident(name)))?;
    }
    if !applied.server_wide.is_empty() {
        client.batch_execute("SELECT pg_reload_conf()")?;
    }
    Ok(())
}
