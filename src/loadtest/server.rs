//! The server around a load run: what its counters say the run did (dead tuples,
//! autovacuum runs, buffer hits, deadlocks), and the `verify` checks a run must pass.

use std::sync::mpsc;
use std::time::Duration;

use anyhow::Result;
use postgres::SimpleQueryMessage;

use super::result::ServerActivity;
use super::spec::LoadSpec;
use crate::error::{describe_pg_error, fail};
use crate::target::connect;
use crate::values::substitute;

/// The counters `Activity` compares, at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    dead: i64,
    autovacuums: i64,
    autoanalyzes: i64,
    hits: i64,
    reads: i64,
    deadlocks: i64,
    wal: i64,
}

const COUNTERS: &str = "\
SELECT (SELECT coalesce(sum(n_dead_tup), 0)::bigint FROM pg_stat_user_tables), \
       (SELECT coalesce(sum(autovacuum_count), 0)::bigint FROM pg_stat_user_tables), \
       (SELECT coalesce(sum(autoanalyze_count), 0)::bigint FROM pg_stat_user_tables), \
       blks_hit, blks_read, deadlocks, \
       pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint \
FROM pg_stat_database WHERE datname = current_database()";

/// How long `verify` may take beyond the load's own bound: a check may scan what the load
/// wrote.
const VERIFY_BOUND: Duration = Duration::from_secs(60);

/// Run `work` on a thread of its own and wait at most `bound` for it: a server that stops
/// answering must not hang the load (the thread is left to fail on its own; pgx's exit
/// ends it). None when it did not finish in time.
pub fn within<T: Send + 'static>(
    bound: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("pgx-load-observer".into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .ok()?;
    rx.recv_timeout(bound).ok()
}

/// The database's counters now (a connection of its own, closed after); None when the
/// server does not answer within `bound` (the load's round-trip bound: a run ends about
/// one timeout after its window, hung server or not).
pub fn snapshot(config: &postgres::Config, bound: Duration) -> Option<Snapshot> {
    let config = config.clone();
    within(bound, move || read_counters(&config).ok()).flatten()
}

fn read_counters(config: &postgres::Config) -> Result<Snapshot> {
    let mut client = connect(config)?;
    let row = client
        .query_one(COUNTERS, &[])
        .map_err(|e| crate::error::described(describe_pg_error(&e, Some(COUNTERS)), e))?;
    Ok(Snapshot {
        dead: row.get(0),
        autovacuums: row.get(1),
        autoanalyzes: row.get(2),
        hits: row.get(3),
        reads: row.get(4),
        deadlocks: row.get(5),
        wal: row.get(6),
    })
}

impl Snapshot {
    /// What happened from this snapshot to `after`. The server's statistics lag by up to
    /// a second (backends flush them when idle): the run's clients have disconnected by
    /// the second snapshot, so theirs are in.
    pub fn until(&self, after: &Snapshot) -> ServerActivity {
        let before = self;
        let (hits, reads) = (after.hits - before.hits, after.reads - before.reads);
        ServerActivity {
            dead_tuples: after.dead - before.dead,
            autovacuums: after.autovacuums - before.autovacuums,
            autoanalyzes: after.autoanalyzes - before.autoanalyzes,
            hit_ratio: (hits + reads > 0).then(|| hits as f64 / (hits + reads) as f64),
            deadlocks: after.deadlocks - before.deadlocks,
            wal_bytes: after.wal - before.wal,
            transactions: 0,
        }
    }
}

/// Read `counters` (name, SQL returning one number) at `start` and at `end` (or when
/// `stop` is set, for runs of a number of transactions) on a connection of its own, in a
/// thread of its own; the receiver gets each counter's change per second in between.
pub fn count_window(
    config: &postgres::Config,
    counters: Vec<(String, String)>,
    start: std::time::Instant,
    end: Option<std::time::Instant>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> mpsc::Receiver<Result<indexmap::IndexMap<String, f64>, String>> {
    let (tx, rx) = mpsc::channel();
    let config = config.clone();
    let _ = std::thread::Builder::new()
        .name("pgx-load-counters".into())
        .spawn(move || {
            let _ = tx.send(read_window(&config, &counters, start, end, &stop));
        });
    rx
}

fn read_window(
    config: &postgres::Config,
    counters: &[(String, String)],
    start: std::time::Instant,
    end: Option<std::time::Instant>,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<indexmap::IndexMap<String, f64>, String> {
    use std::sync::atomic::Ordering;
    use std::time::Instant;
    let mut client = connect(config).map_err(|e| format!("{e:#}"))?;
    let read = |client: &mut postgres::Client| -> Result<Vec<f64>, String> {
        counters
            .iter()
            .map(|(name, sql)| {
                let messages = client.simple_query(sql).map_err(|e| {
                    format!("load.counters.{name}: {}", describe_pg_error(&e, Some(sql)))
                })?;
                messages
                    .iter()
                    .find_map(|m| match m {
                        SimpleQueryMessage::Row(row) => {
                            row.get(0).and_then(|v| v.parse::<f64>().ok())
                        }
                        _ => None,
                    })
                    .ok_or_else(|| format!("load.counters.{name}: the query returned no number"))
            })
            .collect()
    };
    let wait_until = |at: Instant| {
        while Instant::now() < at && !stop.load(Ordering::Relaxed) {
            std::thread::sleep((at - Instant::now()).min(Duration::from_millis(20)));
        }
    };
    wait_until(start);
    let (first_at, first) = (Instant::now(), read(&mut client)?);
    match end {
        Some(end) => wait_until(end),
        None => {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    let (last_at, last) = (Instant::now(), read(&mut client)?);
    let seconds = last_at.duration_since(first_at).as_secs_f64().max(1e-9);
    Ok(counters
        .iter()
        .zip(first.iter().zip(&last))
        .map(|((name, _), (a, b))| (name.clone(), (b - a) / seconds))
        .collect())
}

/// Run every `load.verify` check on the database; the first that returns rows is an
/// error naming it, the run, and the first violating rows.
pub fn verify(
    config: &postgres::Config,
    spec: &LoadSpec,
    vars: &[(String, String)],
    after: &str,
    bound: Duration,
) -> Result<()> {
    if spec.verify.is_empty() {
        return Ok(());
    }
    let checks: Vec<(String, String, String)> = spec
        .verify
        .iter()
        .map(|(name, check)| {
            let what = format!("load.verify.{name}");
            substitute(&check.sql, vars, &what).map(|sql| (what, sql, check.about.clone()))
        })
        .collect::<Result<_>>()?;
    let (config, after) = (config.clone(), after.to_string());
    let bound = bound.saturating_add(VERIFY_BOUND);
    within(bound, move || run_checks(&config, &checks, &after)).unwrap_or_else(|| {
        Err(fail(
            format!("load.verify: no answer within {} s", bound.as_secs()),
            "the server may be hung or overloaded",
        ))
    })
}

fn run_checks(
    config: &postgres::Config,
    checks: &[(String, String, String)],
    after: &str,
) -> Result<()> {
    let mut client = connect(config)?;
    for (what, sql, about) in checks {
        let messages = client.simple_query(sql).map_err(|e| {
            fail(
                format!("{what}: {}", describe_pg_error(&e, Some(sql))),
                "the check is a query that returns the rows violating it",
            )
        })?;
        let rows: Vec<String> = messages
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).unwrap_or("NULL").to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                _ => None,
            })
            .collect();
        if !rows.is_empty() {
            let first: Vec<String> = rows.iter().take(3).map(|r| format!("({r})")).collect();
            return Err(fail(
                format!(
                    "{what} failed after {after}: {} row(s) violate it{}, first {}",
                    rows.len(),
                    if about.is_empty() {
                        String::new()
                    } else {
                        format!(" ({about})")
                    },
                    first.join(" ")
                ),
                "under concurrency this variant breaks the check: it is wrong, not fast",
            ));
        }
    }
    Ok(())
}
