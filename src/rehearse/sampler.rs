//! Lock waits as they happen: `pg_stat_activity` joined with the ungranted `pg_locks`
//! rows, sampled from a connection of its own every few tens of milliseconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::error::describe_pg_error;
use crate::target::connect;

/// Every session of the database waiting for a heavyweight lock, with what it waits for
/// and who blocks it. Connected to the rehearsal's database, so `regclass` names resolve.
const WAITING: &str = "\
SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.wait_event, ''), \
       coalesce(l.locktype, ''), coalesce(l.mode, ''), \
       coalesce(CASE WHEN l.relation IS NOT NULL THEN l.relation::regclass::text END, ''), \
       pg_blocking_pids(a.pid), \
       coalesce(extract(epoch FROM clock_timestamp() - a.query_start) * 1000, 0)::float8, \
       left(coalesce(a.query, ''), 120) \
FROM pg_stat_activity a \
LEFT JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted \
WHERE a.datname = current_database() AND a.wait_event_type = 'Lock' \
  AND a.pid <> pg_backend_pid()";

/// One session seen waiting.
#[derive(Debug, Clone)]
pub struct Waiting {
    pub pid: i32,
    pub application: String,
    /// `relation`, `transactionid`, `virtualxid`, ... (pg_stat_activity.wait_event).
    pub wait_event: String,
    pub locktype: String,
    /// The mode it asked for, e.g. `RowExclusiveLock`.
    pub mode: String,
    /// The relation, when the lock is on one.
    pub relation: String,
    pub blocked_by: Vec<i32>,
    /// How long its statement has run so far: at least this long it has waited... or worked.
    pub statement_ms: f64,
    pub query: String,
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    pub waiting: Vec<Waiting>,
}

#[derive(Debug, Default)]
pub struct Samples {
    pub samples: Vec<Sample>,
    /// Why sampling stopped early, if it did.
    pub error: Option<String>,
}

/// Sample until `stop` is set. Returns what was seen; a failed query ends sampling and
/// is reported in `error` (the rehearsal is then incomplete).
pub fn run(config: &postgres::Config, every: Duration, stop: &Arc<AtomicBool>) -> Samples {
    let mut out = Samples::default();
    let mut config = config.clone();
    config.application_name("pgx rehearse sampler");
    let mut client = match connect(&config) {
        Ok(client) => client,
        Err(err) => {
            out.error = Some(format!("lock sampler cannot connect: {err:#}"));
            return out;
        }
    };
    let statement = match client.prepare(WAITING) {
        Ok(statement) => statement,
        Err(err) => {
            out.error = Some(format!(
                "lock sampler: {}",
                describe_pg_error(&err, Some(WAITING))
            ));
            return out;
        }
    };
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let at = Instant::now();
        match sample(&mut client, &statement) {
            Ok(waiting) => out.samples.push(Sample { at, waiting }),
            Err(err) => {
                out.error = Some(format!("lock sampler: {err:#}"));
                return out;
            }
        }
        next += every;
        let now = Instant::now();
        if next < now {
            next = now; // a slow sample: do not try to catch up in a burst
        }
        std::thread::sleep(next - now);
    }
    out
}

fn sample(client: &mut postgres::Client, statement: &postgres::Statement) -> Result<Vec<Waiting>> {
    let rows = client
        .query(statement, &[])
        .map_err(|e| anyhow::anyhow!(describe_pg_error(&e, None)))?;
    Ok(rows
        .iter()
        .map(|row| Waiting {
            pid: row.get(0),
            application: row.get(1),
            wait_event: row.get(2),
            locktype: row.get(3),
            mode: row.get(4),
            relation: row.get(5),
            blocked_by: row.get(6),
            statement_ms: row.get(7),
            query: row.get(8),
        })
        .collect())
}
