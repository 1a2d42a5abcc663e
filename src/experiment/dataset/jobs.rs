//! Maintenance work (VACUUM, index builds, constraints, foreign keys, ANALYZE) spread
//! over several connections.
//!
//! Jobs form a DAG (`after`) and name the tables they lock: two jobs on one table run at
//! once only when both take a SHARE lock (`CREATE INDEX`); anything else on the table
//! waits for the scheduler instead of blocking a connection inside PostgreSQL, so no
//! two jobs ever wait for each other's locks. The largest ready job goes first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use postgres::{Client, NoTls};

use crate::error::Interrupted;
use crate::target::connect;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// `CREATE INDEX`: SHARE, compatible with itself.
    Shared,
    /// Everything else this scheduler runs.
    Exclusive,
}

/// What a job does, for its summary line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Vacuum,
    Index,
    Constraints,
    ForeignKey,
    Analyze,
    /// Tables the steps created themselves.
    VacuumAnalyze,
}

impl Kind {
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Vacuum => "VACUUM",
            Kind::Index => "index builds",
            Kind::Constraints => "constraints and attachments",
            Kind::ForeignKey => "foreign keys",
            Kind::Analyze => "ANALYZE",
            Kind::VacuumAnalyze => "VACUUM ANALYZE (tables the steps created)",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Job {
    pub kind: Kind,
    pub label: String,
    /// Run one after another, each as one simple query.
    pub sql: Vec<String>,
    pub tables: Vec<(u32, Lock)>,
    /// Jobs (indexes into the job list) that must be done first.
    pub after: Vec<usize>,
    /// An index build: gets parallel maintenance workers when cores are idle.
    pub maintenance: bool,
    /// Bytes of table it works through: the largest ready job starts first.
    pub weight: i64,
}

pub struct Pool {
    pub config: postgres::Config,
    pub connections: usize,
    /// CPUs pgx may keep busy (parallel maintenance workers included).
    pub cores: usize,
    /// Run on every connection first (SET ...).
    pub setup: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Pending,
    Running,
    Done,
}

struct State {
    status: Vec<Status>,
    /// Per table: SHARE holders, or an exclusive holder.
    shared: HashMap<u32, usize>,
    exclusive: HashMap<u32, usize>,
    running: usize,
    error: Option<anyhow::Error>,
    timings: Vec<(usize, f64)>,
}

/// Run every job; the first failure stops the others (their statements are cancelled).
/// Returns each job's kind, label and duration, in completion order.
pub fn run(pool: &Pool, jobs: &[Job]) -> Result<Vec<(Kind, String, f64)>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let connections = pool.connections.clamp(1, jobs.len());
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        let mut client = connect(&pool.config)?;
        for sql in &pool.setup {
            client.batch_execute(sql)?;
        }
        clients.push(client);
    }
    let tokens: Vec<postgres::CancelToken> = clients.iter().map(|c| c.cancel_token()).collect();
    let state = Mutex::new(State {
        status: vec![Status::Pending; jobs.len()],
        shared: HashMap::new(),
        exclusive: HashMap::new(),
        running: 0,
        error: None,
        timings: Vec::new(),
    });
    let wake = Condvar::new();
    let finished = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for client in clients {
            let (state, wake, finished) = (&state, &wake, &finished);
            scope.spawn(move || {
                worker(client, pool, jobs, state, wake);
                finished.fetch_add(1, Ordering::SeqCst);
                wake.notify_all();
            });
        }
        // Ctrl-C or a failed job: cancel what the other connections are running.
        let mut cancelled = false;
        while finished.load(Ordering::SeqCst) < connections {
            let failed = state.lock().map(|s| s.error.is_some()).unwrap_or(true);
            if !cancelled && (failed || crate::interrupt::is_interrupted()) {
                for token in &tokens {
                    let _ = token.cancel_query(NoTls);
                }
                cancelled = true;
                wake.notify_all();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let state = state
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a maintenance connection panicked"))?;
    if crate::interrupt::is_interrupted() {
        return Err(anyhow::Error::new(Interrupted));
    }
    if let Some(err) = state.error {
        return Err(err);
    }
    Ok(state
        .timings
        .into_iter()
        .map(|(job, seconds)| (jobs[job].kind, jobs[job].label.clone(), seconds))
        .collect())
}

fn worker(mut client: Client, pool: &Pool, jobs: &[Job], state: &Mutex<State>, wake: &Condvar) {
    loop {
        let Some((id, workers)) = next_job(pool, jobs, state, wake) else {
            return;
        };
        let job = &jobs[id];
        let started = Instant::now();
        let mut result = Ok(());
        if job.maintenance {
            result =
                client.batch_execute(&format!("SET max_parallel_maintenance_workers = {workers}"));
        }
        for sql in &job.sql {
            if result.is_err() {
                break;
            }
            result = client.batch_execute(sql);
        }
        let Ok(mut s) = state.lock() else { return };
        s.running -= 1;
        for (table, lock) in &job.tables {
            let holders = match lock {
                Lock::Shared => &mut s.shared,
                Lock::Exclusive => &mut s.exclusive,
            };
            if let Some(n) = holders.get_mut(table) {
                *n = n.saturating_sub(1);
            }
        }
        match result {
            Ok(()) => {
                s.status[id] = Status::Done;
                s.timings.push((id, started.elapsed().as_secs_f64()));
            }
            Err(e) => {
                if s.error.is_none() && !crate::interrupt::is_interrupted() {
                    let sql = job.sql.join(";\n");
                    s.error = Some(super::server_error(
                        &e,
                        &format!("bulk load: {} failed", job.label),
                        Some(&sql),
                    ));
                }
                wake.notify_all();
                return;
            }
        }
        wake.notify_all();
    }
}

/// Wait for a job that is ready and whose locks are free; `None` when there is nothing
/// left for this connection (all done, or a failure).
fn next_job(
    pool: &Pool,
    jobs: &[Job],
    state: &Mutex<State>,
    wake: &Condvar,
) -> Option<(usize, usize)> {
    let mut s = state.lock().ok()?;
    loop {
        if s.error.is_some() || crate::interrupt::is_interrupted() {
            return None;
        }
        if s.status.iter().all(|st| *st != Status::Pending) {
            return None;
        }
        let ready = (0..jobs.len())
            .filter(|&j| s.status[j] == Status::Pending)
            .filter(|&j| {
                jobs[j]
                    .after
                    .iter()
                    .all(|&d| s.status.get(d) == Some(&Status::Done))
            })
            .filter(|&j| {
                jobs[j].tables.iter().all(|(t, lock)| {
                    let exclusive = s.exclusive.get(t).copied().unwrap_or(0) > 0;
                    let shared = s.shared.get(t).copied().unwrap_or(0) > 0;
                    match lock {
                        Lock::Shared => !exclusive,
                        Lock::Exclusive => !exclusive && !shared,
                    }
                })
            })
            .max_by_key(|&j| (jobs[j].weight, std::cmp::Reverse(j)));
        if let Some(id) = ready {
            s.status[id] = Status::Running;
            s.running += 1;
            for (table, lock) in &jobs[id].tables {
                let holders = match lock {
                    Lock::Shared => &mut s.shared,
                    Lock::Exclusive => &mut s.exclusive,
                };
                *holders.entry(*table).or_insert(0) += 1;
            }
            // Idle cores go to this build's parallel workers: with as many jobs left as
            // connections, none; for the last builds, the cores the others left.
            let pending = s.status.iter().filter(|st| **st == Status::Pending).count();
            let busy = s.running + pending.min(pool.connections.saturating_sub(s.running));
            let workers = (pool.cores / busy.max(1)).saturating_sub(1);
            return Some((id, workers));
        }
        if s.running == 0 {
            // Nothing runs and nothing is ready: a dependency can never be met.
            s.error = Some(anyhow::anyhow!(
                "bulk load: internal error: {} maintenance jobs can never start",
                s.status.iter().filter(|st| **st == Status::Pending).count()
            ));
            wake.notify_all();
            return None;
        }
        s = wake.wait_timeout(s, Duration::from_millis(100)).ok()?.0;
    }
}
