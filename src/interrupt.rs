//! Ctrl-C and SIGTERM (and SIGHUP): stop at the next safe point, cancel the running
//! query, clean up. One handler for all three (ctrlc's `termination` feature), so a
//! `kill` from a supervisor or CI cleans up exactly as Ctrl-C does.
//!
//! The handler only sets a flag and cancels the registered query; the code that is
//! running notices (`check()` or the cancelled query's error), unwinds through its
//! guards (temporary databases dropped, on-demand server stopped) and exits. pgx never
//! needs a second signal; if one comes anyway, pgx exits at once, but first stops the
//! embedded server it started on demand (copies it leaves are collected by the next run).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use postgres::{CancelToken, NoTls};

use crate::error::Interrupted;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// A second signal came: the handler is stopping the on-demand server and exiting.
static EXITING: AtomicBool = AtomicBool::new(false);
static RUNNING_QUERY: Mutex<Option<CancelToken>> = Mutex::new(None);

/// Install the handler once, at start-up. A second signal exits at once, after stopping
/// the embedded server pgx started on demand.
pub fn install() {
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            EXITING.store(true, Ordering::SeqCst);
            eprintln!(
                "pgx: interrupted again: exiting now; databases it was dropping are left for the next run (or `pgx gc`)"
            );
            crate::cluster::stop_on_demand_servers_now();
            std::process::exit(130);
        }
        eprintln!("pgx: interrupted, cleaning up (Ctrl-C again to exit at once)");
        if let Ok(guard) = RUNNING_QUERY.lock()
            && let Some(token) = guard.as_ref()
        {
            // The cancel request travels like the connection it cancels (TLS if required).
            let _ = match crate::tls::cancel_connector() {
                Some(tls) => token.cancel_query(tls),
                None => token.cancel_query(NoTls),
            };
        }
    });
}

/// A second signal is ending pgx: whatever the main thread runs into meanwhile (the
/// server it was using stops under it) is that signal's doing, and the exit is 130.
pub fn is_exiting() -> bool {
    EXITING.load(Ordering::SeqCst)
}

pub fn is_interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// `Err(Interrupted)` once the user pressed Ctrl-C (or pgx got SIGTERM).
pub fn check() -> anyhow::Result<()> {
    if is_interrupted() {
        Err(anyhow::Error::new(Interrupted))
    } else {
        Ok(())
    }
}

/// Run work that has no safe point of its own (squawk parsing a 50 MB migration takes
/// seconds) on a thread of its own, and stop waiting for it as soon as Ctrl-C or SIGTERM
/// arrives: `Err(Interrupted)` at once, the thread abandoned. Only for work that changes
/// nothing outside itself, so that abandoning it leaves nothing half done.
pub fn abandon_on_interrupt<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    check()?;
    let (done, result) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(format!("pgx {what}"))
        .spawn(move || {
            let _ = done.send(work());
        })
        .map_err(|e| anyhow::anyhow!("cannot start a thread for {what}: {e}"))?;
    loop {
        match result.recv_timeout(std::time::Duration::from_millis(25)) {
            Ok(value) => return Ok(value),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => check()?,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                anyhow::bail!("{what} failed unexpectedly (a bug in pgx; its message is above)")
            }
        }
    }
}

/// While the guard lives, Ctrl-C or SIGTERM cancels the query running on that connection.
pub struct CancelOnInterrupt;

impl CancelOnInterrupt {
    pub fn new(client: &postgres::Client) -> CancelOnInterrupt {
        if let Ok(mut guard) = RUNNING_QUERY.lock() {
            *guard = Some(client.cancel_token());
        }
        CancelOnInterrupt
    }
}

impl Drop for CancelOnInterrupt {
    fn drop(&mut self) {
        if let Ok(mut guard) = RUNNING_QUERY.lock() {
            *guard = None;
        }
    }
}
