//! Lock waits as they happen: `pg_stat_activity` joined with the ungranted `pg_locks`
//! rows, sampled from a connection of its own every few tens of milliseconds (by a load
//! run, per client group, and by `pgx rehearse`, around a migration).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::error::describe_pg_error;
use crate::target::connect;

/// Sets a stop flag when dropped: on every way out (an error included), the sampler
/// (and whatever else watches the flag) ends.
pub struct StopOnDrop<'a>(pub &'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Every session of the database waiting for a heavyweight lock, with what it waits for
/// and who blocks it. Connected to the database under load, so `regclass` names resolve.
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
    /// The sessions' private memory, every [`MEMORY_EVERY`] (a load run's sampler, on a
    /// server on this machine).
    pub memory: Vec<super::memory::MemorySample>,
}

/// How often a load's sampler reads its backends' memory: reading every backend's
/// `/proc` status costs more than the lock query, and memory moves slower.
pub const MEMORY_EVERY: Duration = Duration::from_millis(200);

/// Sample until `stop` is set. Returns what was seen; a failed query ends sampling and
/// is reported in `error` (the rehearsal is then incomplete). With `memory`, the
/// sessions' private memory too, every [`MEMORY_EVERY`], when the server's processes are
/// on this machine.
pub fn run(
    config: &postgres::Config,
    every: Duration,
    stop: &Arc<AtomicBool>,
    application: &str,
    memory: bool,
) -> Samples {
    let mut out = Samples::default();
    let mut config = config.clone();
    config.application_name(application);
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
    let sessions = if memory && super::memory::local(&mut client).is_ok() {
        client.prepare(super::memory::SESSIONS).ok()
    } else {
        None
    };
    let mut next = Instant::now();
    let mut memory_next = next;
    while !stop.load(Ordering::Relaxed) {
        let at = Instant::now();
        match sample(&mut client, &statement) {
            Ok(waiting) => out.samples.push(Sample { at, waiting }),
            Err(err) => {
                out.error = Some(format!("lock sampler: {err:#}"));
                return out;
            }
        }
        if let Some(sessions) = sessions.as_ref().filter(|_| at >= memory_next) {
            memory_next = at + MEMORY_EVERY;
            match super::memory::sample(&mut client, sessions) {
                Ok(memory) => out.memory.push(memory),
                Err(err) => {
                    out.error = Some(format!("memory sampler: {err}"));
                    return out;
                }
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
        .map_err(|e| crate::error::described(describe_pg_error(&e, None), e))?;
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

/// The waits of the sessions named `application` among the samples taken inside
/// `window` (the measured window of a load run).
pub fn summarize(
    samples: &Samples,
    window: &(Instant, Instant),
    application: &str,
    every: Duration,
) -> crate::loadtest::LockWaits {
    let mut waits = crate::loadtest::LockWaits {
        every_ms: every.as_secs_f64() * 1000.0,
        error: samples.error.clone(),
        ..Default::default()
    };
    let mut before: Vec<i32> = Vec::new();
    let mut seen_on: Vec<(String, u64)> = Vec::new();
    for sample in samples
        .samples
        .iter()
        .filter(|s| s.at >= window.0 && s.at <= window.1)
    {
        waits.samples += 1;
        let now: Vec<&Waiting> = sample
            .waiting
            .iter()
            .filter(|w| w.application == application)
            .collect();
        for w in &now {
            if !before.contains(&w.pid) {
                waits.waits += 1;
            }
            waits.waited_ms += waits.every_ms;
            waits.longest_ms = waits.longest_ms.max(w.statement_ms);
            let on = if w.relation.is_empty() {
                w.wait_event.clone()
            } else {
                format!("{} {}", w.wait_event, w.relation)
            };
            match seen_on.iter_mut().find(|(o, _)| *o == on) {
                Some((_, n)) => *n += 1,
                None => seen_on.push((on, 1)),
            }
        }
        before = now.iter().map(|w| w.pid).collect();
    }
    seen_on.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    waits.on = seen_on.into_iter().take(3).map(|(on, _)| on).collect();
    waits
}
