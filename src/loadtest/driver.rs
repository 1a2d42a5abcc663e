//! The sweep: check the scripts once on the database (prepare, list queries), then for
//! every script mix × repeat × client count a fresh run. A run splits its clients over
//! threads like `pgbench -j`; each thread drives its clients on a single-threaded tokio
//! runtime, so a client and its connection never hop between cores.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use hdrhistogram::Histogram;
use tokio::time::timeout;
use tokio_postgres::{NoTls, SimpleQueryMessage};

use super::client::{self, ClientStats, Clock, Conn, ERROR_SAMPLES, Script, Shared, Workload};
use super::generate::{Source, derive_seed};
use super::hooks::Hooks;
use super::locks::Samples;
use super::net::DelayPath;
use super::result::{
    BackendMemory, LoadPoint, LoadResult, LockWaits, RunStats, ServerActivity, new_histogram,
    percentiles,
};
use super::spec::{Generator, Length, Limits, LoadSpec, Mix};
use super::wire::Startup;
use crate::error::{describe_pg_error, fail};
use crate::values::substitute;

/// A `list:` generator larger than this is a mistake (it would sit in memory per run).
const MAX_LIST_ROWS: usize = 5_000_000;

/// Run the load described by `spec` against the database of `config`. `vars` fill
/// `{{name}}` in SQL and bounds; `on_progress` gets one-line status messages.
pub fn run(
    config: &postgres::Config,
    spec: &LoadSpec,
    vars: &[(String, String)],
    on_progress: &mut dyn FnMut(&str),
) -> Result<LoadResult> {
    run_with(config, spec, vars, &Hooks::default(), on_progress)
}

/// [`run`] with hooks: an observer of every transaction and a flag that stops the run.
pub fn run_with(
    config: &postgres::Config,
    spec: &LoadSpec,
    vars: &[(String, String)],
    hooks: &Hooks,
    on_progress: &mut dyn FnMut(&str),
) -> Result<LoadResult> {
    if spec.start == super::spec::Start::Cold {
        return Err(fail(
            "load.start: cold restarts the server before every run",
            "run it in an experiment on pgx's own cluster (pgx experiment)",
        ));
    }
    let mut sweep = Sweep::open(config, spec, vars, hooks, on_progress)?;
    for block in 0..sweep.blocks() {
        // Repeats outermost: drift over time spreads over every client count alike.
        for repeat in 0..spec.repeat {
            sweep.repeat(block, repeat, on_progress)?;
        }
    }
    Ok(sweep.finish(1, None))
}

/// One database's load, run a repeat at a time: [`run_with`] runs its repeats back to
/// back; an experiment alternates the repeats of every variant's sweep, so that what
/// drifts over the run (the server's caches, its checkpoints, the machine) spreads over
/// all of them alike. The scripts are checked once, at [`Sweep::open`].
pub struct Sweep<'a> {
    config: postgres::Config,
    spec: &'a LoadSpec,
    vars: &'a [(String, String)],
    hooks: Hooks,
    limits: Limits,
    round_trip_bound: Duration,
    connect_bound: Duration,
    /// The server's own endpoints (a delay path, reopened, replaces them per repeat).
    startup: Startup,
    /// Open between repeats unless [`Sweep::pause`]d (two delay paths cannot coexist).
    path: Option<DelayPath>,
    /// How the first path was made, for the result.
    transport: String,
    rtt_mode: Option<String>,
    rtt_note: Option<String>,
    rtt_probe: Option<Duration>,
    threads: usize,
    counters: Vec<(String, String)>,
    blocks: Vec<Block>,
    sums: Vec<Vec<PointSum>>,
    rtt_slept: Duration,
    rtt_sleeps: u64,
    /// The last repeat's runs, a line each.
    last: Vec<String>,
}

impl<'a> Sweep<'a> {
    /// Check the scripts on the database (prepare, list queries) and open the delay path.
    pub fn open(
        config: &postgres::Config,
        spec: &'a LoadSpec,
        vars: &'a [(String, String)],
        hooks: &Hooks,
        on_progress: &mut dyn FnMut(&str),
    ) -> Result<Sweep<'a>> {
        let limits = spec.limits()?;
        let (round_trip_bound, connect_bound) = bounds(config, &limits)?;
        let startup = Startup::from_config(config, limits.timeout).map_err(|e| {
            fail(
                format!("load: {e}"),
                "check the connection settings (as for psql)",
            )
        })?;
        on_progress("load: preparing the scripts");
        let scripts = preflight(config, spec, vars, &limits, connect_bound)?;
        let counters: Vec<(String, String)> = spec
            .counters
            .iter()
            .map(|(name, sql)| {
                substitute(sql.sql(), vars, &format!("load.counters.{name}"))
                    .map(|sql| (name.clone(), sql))
            })
            .collect::<Result<_>>()?;
        let blocks = blocks(spec, &scripts);
        let sums = blocks
            .iter()
            .map(|b| b.members.iter().map(|_| PointSum::new()).collect())
            .collect();
        let mut sweep = Sweep {
            config: config.clone(),
            spec,
            vars,
            hooks: hooks.clone(),
            limits,
            round_trip_bound,
            connect_bound,
            startup,
            path: None,
            transport: transport(config),
            rtt_mode: None,
            rtt_note: None,
            rtt_probe: None,
            threads: spec.threads.unwrap_or_else(default_threads),
            counters,
            blocks,
            sums,
            rtt_slept: Duration::ZERO,
            rtt_sleeps: 0,
            last: Vec::new(),
        };
        sweep.open_path(on_progress)?;
        if sweep.limits.rtt.is_some() {
            let path = sweep.path.as_ref().expect("opened above");
            sweep.rtt_probe = Some(
                super::net::probe(&sweep.startup, path, 40, connect_bound).map_err(|e| {
                    fail(
                        format!("load.rtt: the SELECT 1 probe through the delay failed: {e}"),
                        "check the connection settings (as for psql)",
                    )
                })?,
            );
        }
        Ok(sweep)
    }

    /// The delay path (dropping it, on any return, error or Ctrl-C included, stops the
    /// relay and releases the namespaces).
    fn open_path(&mut self, on_progress: &mut dyn FnMut(&str)) -> Result<()> {
        if self.path.is_some() {
            return Ok(());
        }
        let path = match self.limits.rtt {
            None => DelayPath::direct(transport(&self.config)),
            Some(rtt) => {
                on_progress("load: setting up the round-trip delay");
                DelayPath::open(
                    rtt,
                    self.spec.rtt_mode,
                    &self.startup.endpoints,
                    &transport(&self.config),
                )
                .map_err(|e| {
                    fail(
                        format!("load.rtt: {e}"),
                        "rtt_mode: auto picks what this machine can do",
                    )
                })?
            }
        };
        self.transport = path.transport.clone();
        self.rtt_mode = self.limits.rtt.map(|_| path.mode.name().to_string());
        self.rtt_note = path.note.clone();
        self.path = Some(path);
        Ok(())
    }

    /// Let go of the delay path until the next repeat (another sweep's needs the names).
    pub fn pause(&mut self) {
        self.path = None;
    }

    /// How many blocks (script mixes, or the groups together) each repeat covers.
    pub fn blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Repeat `repeat` of block `b`: one run per client count (or one with every group),
    /// each followed by the load's `verify`.
    pub fn repeat(
        &mut self,
        b: usize,
        repeat: usize,
        on_progress: &mut dyn FnMut(&str),
    ) -> Result<()> {
        self.last.clear();
        for i in 0..self.runs(b) {
            self.run(b, repeat, i, on_progress)?;
        }
        Ok(())
    }

    /// Runs per repeat of block `b` (its client counts).
    pub fn runs(&self, b: usize) -> usize {
        self.blocks[b].runs.len()
    }

    /// Run `i` of repeat `repeat` of block `b`: `load.on_start`, the clients, the
    /// `verify`. (The caller empties the caches before it for `start: cold`.)
    pub fn run(
        &mut self,
        b: usize,
        repeat: usize,
        i: usize,
        on_progress: &mut dyn FnMut(&str),
    ) -> Result<()> {
        if i == 0 {
            self.last.clear();
        }
        if self.hooks.stopped() {
            return Ok(());
        }
        self.open_path(on_progress)?;
        let on_start_ms = match &self.spec.on_start {
            Some(sql) => Some(self.on_start(sql, on_progress)?),
            None => None,
        };
        let path = self.path.as_ref().expect("opened above");
        let mut startup = self.startup.clone();
        if let Some(endpoint) = &path.endpoint {
            startup.endpoints = vec![endpoint.clone()];
        }
        let (config, spec, limits) = (&self.config, self.spec, self.limits);
        let block = &self.blocks[b];
        {
            let run = &block.runs[i];
            let members: Vec<(Arc<Shared>, usize)> = run
                .iter()
                .map(|&k| {
                    let member = &block.members[k];
                    let mut startup = startup.clone();
                    set_application(&mut startup, &member.application);
                    let shared = Arc::new(Shared {
                        startup,
                        workload: Arc::clone(&member.workload),
                        limits,
                        client_delay: path.client_delay,
                        client_ns: path.client_ns.clone(),
                        round_trip_bound: self.round_trip_bound,
                        connect_bound: self.connect_bound,
                        measured: AtomicU64::new(0),
                        hooks: self.hooks.clone(),
                        rate_per_client: member.rate.map(|r| r / member.clients as f64),
                    });
                    (shared, member.clients)
                })
                .collect();
            let label = run
                .iter()
                .map(|&k| {
                    let member = &block.members[k];
                    format!("{} · {} clients", member.label, member.clients)
                })
                .collect::<Vec<_>>()
                .join(" + ");
            let prefix = format!("load {label} · run {}/{}", repeat + 1, spec.repeat);
            let seed = derive_seed(spec.seed, &[b as u64, repeat as u64]);
            let mut report = |msg: &str| on_progress(&format!("{prefix}: {msg}"));
            let before = super::server::snapshot(config, self.round_trip_bound);
            let done = run_once(
                config,
                &self.counters,
                &members,
                self.threads,
                seed,
                &mut report,
            )?;
            let rates = done.counters.clone().map_err(|e| {
                fail(
                    format!("load.counters: {e}"),
                    "each counter is a query returning one number",
                )
            })?;
            crate::interrupt::check()?;
            let activity = before.and_then(|b| {
                super::server::snapshot(config, self.round_trip_bound).map(|after| {
                    let mut activity = b.until(&after);
                    activity.transactions = done
                        .clients
                        .iter()
                        .flatten()
                        .map(|s| s.warmup + s.measured + s.late)
                        .sum();
                    activity
                })
            });
            let mut lines = Vec::new();
            for (&k, all) in run.iter().zip(&done.clients) {
                let member = &block.members[k];
                let waits = done.locks.as_ref().map(|s| {
                    super::locks::summarize(
                        s,
                        &done.window,
                        &member.application,
                        limits.lock_sampling.unwrap_or_default(),
                    )
                });
                let memory = done.locks.as_ref().and_then(|s| {
                    super::memory::summarize(
                        &s.memory,
                        &done.window,
                        &member.application,
                        super::locks::MEMORY_EVERY.as_secs_f64() * 1000.0,
                    )
                });
                let run = self.sums[b][k].add(
                    all,
                    &limits,
                    (waits, memory),
                    activity.clone(),
                    &rates,
                    on_start_ms,
                )?;
                for stats in all {
                    self.rtt_slept += stats.rtt_slept;
                    self.rtt_sleeps += stats.rtt_sleeps;
                }
                lines.push(format!(
                    "{}{:.0} TPS, p50 {:.2} ms, p99 {:.2} ms, {} errors, {} timeouts",
                    if run_is_grouped(block) {
                        format!("{}: ", member.label)
                    } else {
                        String::new()
                    },
                    run.tps,
                    run.latency_ms.p50,
                    run.latency_ms.p99,
                    run.errors,
                    run.timeouts
                ));
            }
            let line = lines.join("; ");
            report(&line);
            self.last.push(format!("{prefix}: {line}"));
            super::server::verify(
                config,
                spec,
                self.vars,
                &format!("run {} of {label}", repeat + 1),
                self.round_trip_bound,
            )?;
        }
        Ok(())
    }

    /// The last repeat's runs, a line each: "load read · 8 clients · run 2/3: 812 TPS,
    /// p50 ...".
    pub fn last(&self) -> &[String] {
        &self.last
    }

    /// `load.on_start` on a session of its own; what it took, in milliseconds.
    fn on_start(&self, sql: &str, on_progress: &mut dyn FnMut(&str)) -> Result<f64> {
        on_progress("load: on_start");
        let sql = substitute(sql, self.vars, "load.on_start")?;
        let mut client = crate::target::connect(&self.config)?;
        let started = Instant::now();
        client.batch_execute(&sql).map_err(|e| {
            fail(
                format!("load.on_start: {}", describe_pg_error(&e, Some(&sql))),
                "fix the statement in load.on_start",
            )
        })?;
        Ok(started.elapsed().as_secs_f64() * 1000.0)
    }

    /// The result: every point with the runs it has. `alternated`: how many databases'
    /// loads took turns with this one, repeat by repeat (1: back to back); `shortfall`:
    /// what the cold starts could not empty.
    pub fn finish(self, alternated: usize, shortfall: Option<String>) -> LoadResult {
        let mut points = Vec::new();
        for (block, sums) in self.blocks.into_iter().zip(self.sums) {
            for (sum, member) in sums.into_iter().zip(block.members) {
                let mut point = LoadPoint::new(
                    member.label,
                    member.clients,
                    sum.runs,
                    &sum.histogram,
                    sum.round_trips,
                    sum.error_samples,
                );
                point.group = member.group;
                point.rate = member.rate;
                point.lock_waits = sum.lock_waits;
                point.memory = sum.memory;
                point.by_script = member
                    .workload
                    .scripts
                    .iter()
                    .zip(&sum.by_script)
                    .map(|(script, h)| crate::loadtest::result::ScriptLatency {
                        script: script.name.clone(),
                        transactions: h.len(),
                        latency_ms: percentiles(h),
                    })
                    .collect();
                point.deadlocks = sum.deadlocks;
                point.serialization_failures = sum.serialization_failures;
                if self.limits.first > 0 {
                    let mut on_start: Vec<f64> =
                        point.runs.iter().filter_map(|r| r.on_start_ms).collect();
                    on_start.sort_by(f64::total_cmp);
                    point.first = Some(crate::loadtest::result::FirstRequests {
                        per_run: self.limits.first,
                        transactions: sum.first.len(),
                        latency_ms: percentiles(&sum.first),
                        on_start_ms: (!on_start.is_empty())
                            .then(|| crate::stats::percentile(&on_start, 50.0)),
                    });
                }
                points.push(point);
            }
        }
        let spec = self.spec;
        LoadResult {
            points,
            rtt_ms: self.limits.rtt.map(|d| d.as_secs_f64() * 1000.0),
            rtt_actual_ms: (self.rtt_sleeps > 0)
                .then(|| self.rtt_slept.as_secs_f64() * 1000.0 / self.rtt_sleeps as f64),
            transport: self.transport,
            rtt_mode: self.rtt_mode,
            rtt_note: self.rtt_note,
            rtt_probe_ms: self.rtt_probe.map(|d| d.as_secs_f64() * 1000.0),
            timeout_ms: Some(self.limits.timeout.as_secs_f64() * 1000.0),
            targets: spec.targets.clone(),
            counters: spec
                .counters
                .iter()
                .map(|(name, counter)| counter.info(name))
                .collect(),
            alternated: (alternated > 1).then_some(alternated),
            start: (spec.start == super::spec::Start::Cold || spec.on_start.is_some()).then(|| {
                crate::loadtest::result::StartInfo {
                    cold: spec.start == super::spec::Start::Cold,
                    shortfall,
                    on_start: spec.on_start.clone(),
                }
            }),
        }
    }
}

/// The client-side bound of one round trip (a little over the server's
/// statement_timeout) and of connecting; an error for durations too large to add up.
fn bounds(config: &postgres::Config, limits: &Limits) -> Result<(Duration, Duration)> {
    let too_long = || {
        fail(
            "load: the timeouts add up to more than pgx can represent",
            "use a timeout of at most a day",
        )
    };
    let round_trip_bound = limits
        .timeout
        .checked_add((limits.timeout / 10).max(Duration::from_millis(200)))
        .ok_or_else(too_long)?;
    let connect_timeout = config
        .get_connect_timeout()
        .copied()
        .unwrap_or(Duration::from_secs(10));
    let connect_bound = connect_timeout
        .checked_add(round_trip_bound)
        .ok_or_else(too_long)?;
    Ok((round_trip_bound, connect_bound))
}

/// One client thread per CPU (like `pgbench -j` set to the cores), at most one per client
/// (the caller caps it). The kernel shares a CPU between runnable threads, not processes:
/// with 64 backends runnable, a single client thread gets a 1/65th share of its core and
/// the server waits for it. Measured on 2 CPUs, pgx/pgbench TPS in alternating rounds on
/// an idle machine: 0.93 at 8 clients and 0.77 at 64 with one thread, 0.95 and 0.99 with
/// two, at the same client CPU per transaction (5.3 µs with one, 5.2-5.6 µs with two).
pub fn default_threads() -> usize {
    crate::host::cores()
}

/// Who is measured: one member per point of the report (a script mix at a client count,
/// or a client group), and which members run together.
struct Block {
    members: Vec<Member>,
    /// One repeat's runs, in order: the members each run has (one, or every group).
    runs: Vec<Vec<usize>>,
}

struct Member {
    label: String,
    clients: usize,
    workload: Arc<Workload>,
    /// Transactions per second for the whole member (a group's `rate`).
    rate: Option<f64>,
    /// The sessions' application_name: lock waits are told apart by it.
    application: String,
    group: Option<String>,
}

fn run_is_grouped(block: &Block) -> bool {
    block.members.iter().any(|m| m.group.is_some())
}

/// The blocks to measure: per script mix (all scripts by weight, or each on its own) a
/// run per client count; or, with groups, one run with every group.
fn blocks(spec: &LoadSpec, scripts: &[Script]) -> Vec<Block> {
    if !spec.groups.is_empty() {
        // One run per count of the group that sweeps (if one does), every group in it.
        let counts = spec
            .groups
            .values()
            .map(|g| g.clients.len())
            .max()
            .unwrap_or(1);
        let workloads: Vec<(String, Arc<Workload>)> = spec
            .groups
            .values()
            .map(|group| {
                let chosen: Vec<Script> = scripts
                    .iter()
                    .filter(|s| group.scripts.is_empty() || group.scripts.contains(&s.name))
                    .cloned()
                    .collect();
                let (mix, workload) = weighted(chosen);
                (mix, Arc::new(workload))
            })
            .collect();
        let mut members = Vec::new();
        let mut runs = Vec::new();
        for i in 0..counts {
            let mut run = Vec::new();
            for ((name, group), (mix, workload)) in spec.groups.iter().zip(&workloads) {
                run.push(members.len());
                members.push(Member {
                    label: format!("{name} ({mix})"),
                    clients: group.clients.get(i).copied().unwrap_or(group.clients[0]),
                    workload: Arc::clone(workload),
                    rate: group.rate,
                    application: format!("{APPLICATION}: {name}"),
                    group: Some(name.clone()),
                });
            }
            runs.push(run);
        }
        return vec![Block { members, runs }];
    }
    let mixes: Vec<(String, Workload)> = match spec.mix {
        Mix::Each => scripts
            .iter()
            .map(|s| (s.name.clone(), Workload::new(vec![s.clone()])))
            .collect(),
        Mix::Weighted => vec![weighted(
            scripts.iter().filter(|s| s.weight > 0).cloned().collect(),
        )],
    };
    mixes
        .into_iter()
        .map(|(label, workload)| {
            let workload = Arc::new(workload);
            let members: Vec<Member> = spec
                .clients
                .iter()
                .map(|&clients| Member {
                    label: label.clone(),
                    clients,
                    workload: Arc::clone(&workload),
                    rate: None,
                    application: APPLICATION.to_string(),
                    group: None,
                })
                .collect();
            let runs = (0..members.len()).map(|k| vec![k]).collect();
            Block { members, runs }
        })
        .collect()
}

/// Scripts picked by weight, and the mix's label ("read×9 + write×1", or the one name).
fn weighted(used: Vec<Script>) -> (String, Workload) {
    let label = match used.as_slice() {
        [one] => one.name.clone(),
        many => many
            .iter()
            .map(|s| format!("{}×{}", s.name, s.weight))
            .collect::<Vec<_>>()
            .join(" + "),
    };
    (label, Workload::new(used))
}

/// The load's sessions' application_name; a group's is "pgx load: <group>".
pub const APPLICATION: &str = "pgx load";

/// Whether a session (by its application_name) is one of a load's clients.
pub fn is_load_session(application: &str) -> bool {
    application
        .strip_prefix(APPLICATION)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(": "))
}

fn set_application(startup: &mut Startup, name: &str) {
    for (key, value) in &mut startup.params {
        if key == "application_name" {
            *value = name.to_string();
        }
    }
}

/// Runs of one point, accumulated.
struct PointSum {
    runs: Vec<RunStats>,
    histogram: Histogram<u64>,
    /// Per script, when the point runs several.
    by_script: Vec<Histogram<u64>>,
    round_trips: u64,
    error_samples: Vec<String>,
    lock_waits: Option<LockWaits>,
    memory: Option<BackendMemory>,
    deadlocks: u64,
    serialization_failures: u64,
    /// `load.first`: every run's first N transactions.
    first: Histogram<u64>,
}

impl PointSum {
    fn new() -> PointSum {
        PointSum {
            runs: Vec::new(),
            histogram: new_histogram(),
            by_script: Vec::new(),
            round_trips: 0,
            error_samples: Vec::new(),
            lock_waits: None,
            memory: None,
            deadlocks: 0,
            serialization_failures: 0,
            first: new_histogram(),
        }
    }

    fn add(
        &mut self,
        all: &[ClientStats],
        limits: &Limits,
        (waits, memory): (Option<LockWaits>, Option<BackendMemory>),
        activity: Option<ServerActivity>,
        counters: &indexmap::IndexMap<String, f64>,
        on_start_ms: Option<f64>,
    ) -> Result<RunStats> {
        if let Some(waits) = waits {
            self.lock_waits
                .get_or_insert_with(LockWaits::default)
                .add(&waits);
        }
        if let Some(memory) = memory {
            self.memory
                .get_or_insert_with(BackendMemory::default)
                .add(&memory);
        }
        for stats in all {
            self.deadlocks += stats.deadlocks;
            self.serialization_failures += stats.serialization_failures;
        }
        let mut histogram = new_histogram();
        let mut run = RunStats::default();
        let mut last_end: Option<Instant> = None;
        for stats in all {
            histogram
                .add(&stats.histogram)
                .map_err(|e| anyhow!("cannot merge latency histograms: {e:?}"))?;
            if self.by_script.len() < stats.by_script.len() {
                self.by_script
                    .resize_with(stats.by_script.len(), new_histogram);
            }
            for (sum, h) in self.by_script.iter_mut().zip(&stats.by_script) {
                sum.add(h)
                    .map_err(|e| anyhow!("cannot merge latency histograms: {e:?}"))?;
            }
            run.transactions += stats.measured;
            run.warmup_transactions += stats.warmup;
            run.late_transactions += stats.late;
            run.errors += stats.errors;
            run.timeouts += stats.timeouts;
            run.connections += stats.connections;
            self.round_trips += stats.round_trips;
            last_end = last_end.max(stats.last_measured_end);
            for message in &stats.error_samples {
                if self.error_samples.len() < ERROR_SAMPLES && !self.error_samples.contains(message)
                {
                    self.error_samples.push(message.clone());
                }
            }
        }
        run.seconds = match limits.length {
            Length::Duration(d) => d.as_secs_f64(),
            Length::Transactions(_) => all
                .iter()
                .filter_map(|s| s.window_start)
                .min()
                .zip(last_end)
                .map_or(0.0, |(start, end)| {
                    end.saturating_duration_since(start).as_secs_f64()
                }),
        };
        run.tps = if run.seconds > 0.0 {
            run.transactions as f64 / run.seconds
        } else {
            0.0
        };
        run.latency_ms = percentiles(&histogram);
        run.server = activity;
        run.counters = counters.clone();
        run.on_start_ms = on_start_ms;
        if limits.first > 0 {
            // The run's first N across its clients, by when they started.
            let mut first: Vec<(Instant, u64)> =
                all.iter().flat_map(|s| s.first.iter().copied()).collect();
            first.sort_by_key(|(started, _)| *started);
            let mut histogram = new_histogram();
            for &(_, micros) in first.iter().take(limits.first) {
                histogram.saturating_record(micros);
            }
            run.first_ms = Some(percentiles(&histogram));
            self.first
                .add(&histogram)
                .map_err(|e| anyhow!("cannot merge latency histograms: {e:?}"))?;
        }
        self.histogram
            .add(&histogram)
            .map_err(|e| anyhow!("cannot merge latency histograms: {e:?}"))?;
        self.runs.push(run.clone());
        Ok(run)
    }
}

/// What one run gave: each member's clients' counters, the lock samples (when sampled)
/// and the measured window they are judged in.
struct RunDone {
    clients: Vec<Vec<ClientStats>>,
    locks: Option<Samples>,
    window: (Instant, Instant),
    /// `load.counters` per second over the window (empty without counters; an error
    /// when they could not be read).
    counters: Result<indexmap::IndexMap<String, f64>, String>,
}

/// One run: connect every client of every member, start them together, wait for all of
/// them; meanwhile sample lock waits, when asked.
fn run_once(
    config: &postgres::Config,
    counters: &[(String, String)],
    members: &[(Arc<Shared>, usize)],
    threads: usize,
    seed: u64,
    progress: &mut dyn FnMut(&str),
) -> Result<RunDone> {
    // Every client: (member, its Shared, the id its parameter stream is seeded with).
    let mut everyone: Vec<(usize, Arc<Shared>, usize)> = Vec::new();
    for (k, (shared, clients)) in members.iter().enumerate() {
        for _ in 0..*clients {
            everyone.push((k, Arc::clone(shared), everyone.len()));
        }
    }
    let total = everyone.len();
    let Some((first, _)) = members.first() else {
        return Ok(RunDone {
            clients: Vec::new(),
            locks: None,
            window: (Instant::now(), Instant::now()),
            counters: Ok(Default::default()),
        });
    };
    let first = Arc::clone(first);
    let threads = threads.clamp(1, total.max(1));
    progress("connecting");
    let stop_sampling = Arc::new(AtomicBool::new(false));
    // On every way out of this function (an error included) the sampler stops.
    let _stop = super::locks::StopOnDrop(&stop_sampling);
    // The sampler is not a scoped thread: a server that stops answering must not keep
    // the run from ending (its last sample is awaited for a bounded time).
    let sampler = match first.limits.lock_sampling {
        Some(every) => {
            let (tx, rx) = mpsc::channel::<Samples>();
            let (stop, config) = (Arc::clone(&stop_sampling), config.clone());
            std::thread::Builder::new()
                .name("pgx-load-locks".into())
                .spawn(move || {
                    let _ = tx.send(super::locks::run(
                        &config,
                        every,
                        &stop,
                        "pgx load lock sampler",
                        true,
                    ));
                })
                .context("cannot start the lock sampler")?;
            Some((rx, every))
        }
        None => None,
    };
    std::thread::scope(|scope| {
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let mut starts = Vec::new();
        let mut handles = Vec::new();
        for t in 0..threads {
            let (start_tx, start_rx) = mpsc::channel::<Clock>();
            starts.push(start_tx);
            let mine: Vec<(usize, Arc<Shared>, usize)> =
                everyone.iter().skip(t).step_by(threads).cloned().collect();
            let ready = ready_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("pgx-load-{t}"))
                .spawn_scoped(scope, move || client_thread(mine, seed, ready, start_rx))
                .context("cannot start a load thread")?;
            handles.push(handle);
        }
        drop(ready_tx);
        // Every thread reports once its clients are connected (or failed to); bounded.
        let setup_bound = first.connect_bound.saturating_add(Duration::from_secs(5));
        let setup_start = Instant::now();
        for _ in 0..threads {
            let left = setup_bound.saturating_sub(setup_start.elapsed());
            if ready_rx.recv_timeout(left).is_err() {
                break;
            }
        }
        let start = Instant::now();
        let clock = Clock::new(start, &first.limits, first.round_trip_bound);
        for tx in &starts {
            // A thread that gets no start (the clock is None) returns its clients unused.
            if let Some(clock) = clock {
                let _ = tx.send(clock);
            }
        }
        drop(starts);
        let clock = clock.ok_or_else(|| {
            stop_sampling.store(true, Ordering::Relaxed);
            fail(
                "load: warmup + duration + timeout is later than this system's clock can represent",
                "use durations of at most a few days",
            )
        })?;
        let counted = (!counters.is_empty()).then(|| {
            super::server::count_window(
                config,
                counters.to_vec(),
                clock.warmup_end,
                clock.window_end,
                Arc::clone(&stop_sampling),
            )
        });
        let mut reported = 0u64;
        while !handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
            let now = Instant::now();
            let second = now.saturating_duration_since(start).as_secs();
            if second > reported {
                reported = second;
                let measured = members
                    .iter()
                    .map(|(s, _)| s.measured.load(Ordering::Relaxed))
                    .sum();
                progress(&status(&first.limits, &clock, now, measured));
            }
        }
        let ended = Instant::now();
        stop_sampling.store(true, Ordering::Relaxed);
        let mut clients: Vec<Vec<ClientStats>> = members.iter().map(|_| Vec::new()).collect();
        for handle in handles {
            let done = handle
                .join()
                .map_err(|_| anyhow!("a load thread panicked"))?;
            for (k, stats) in done {
                clients[k].push(stats);
            }
        }
        let locks = sampler.map(|(rx, every)| {
            rx.recv_timeout(every.min(first.round_trip_bound) + first.round_trip_bound)
                .unwrap_or_else(|_| Samples {
                    error: Some("the lock sampler got no answer from the server".into()),
                    ..Samples::default()
                })
        });
        let counters = match counted {
            None => Ok(Default::default()),
            Some(rx) => rx
                .recv_timeout(first.round_trip_bound + Duration::from_secs(1))
                .unwrap_or_else(|_| Err("the counters got no answer from the server".into())),
        };
        Ok(RunDone {
            clients,
            locks,
            window: (
                clock.warmup_end,
                clock.window_end.unwrap_or(ended).min(ended),
            ),
            counters,
        })
    })
}

fn status(limits: &Limits, clock: &Clock, now: Instant, measured: u64) -> String {
    if now < clock.warmup_end {
        return "warmup".into();
    }
    let elapsed = now
        .saturating_duration_since(clock.warmup_end)
        .as_secs_f64();
    let tps = measured as f64 / elapsed.max(1e-9);
    match limits.length {
        Length::Duration(d) if elapsed <= d.as_secs_f64() => {
            format!("{elapsed:.0}/{:.0} s, {tps:.0} TPS", d.as_secs_f64())
        }
        Length::Duration(_) => "finishing".into(),
        Length::Transactions(_) => format!("{elapsed:.0} s, {tps:.0} TPS"),
    }
}

/// One thread's share of the clients, on a single-threaded runtime: each client with
/// its member's index, its member's `Shared` and the id its parameters are seeded with.
/// Returns each client's counters with its member's index.
fn client_thread(
    mine: Vec<(usize, Arc<Shared>, usize)>,
    seed: u64,
    ready: mpsc::Sender<()>,
    start: mpsc::Receiver<Clock>,
) -> Vec<(usize, ClientStats)> {
    let stats: Vec<Rc<RefCell<ClientStats>>> = mine
        .iter()
        .map(|_| Rc::new(RefCell::new(ClientStats::new())))
        .collect();
    let members: Vec<usize> = mine.iter().map(|(k, _, _)| *k).collect();
    let collect = |stats: Vec<Rc<RefCell<ClientStats>>>| -> Vec<(usize, ClientStats)> {
        members
            .iter()
            .copied()
            .zip(stats.into_iter().map(|s| s.replace(ClientStats::new())))
            .collect()
    };
    let Some(any) = mine.first().map(|(_, shared, _)| Arc::clone(shared)) else {
        let _ = ready.send(());
        return Vec::new();
    };
    if let Some(ns) = &any.client_ns
        && let Err(e) = super::net::enter(ns)
    {
        for s in &stats {
            s.borrow_mut()
                .record_error(format!("cannot enter the client network namespace: {e}"));
        }
        let _ = ready.send(());
        return collect(stats);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            for s in &stats {
                s.borrow_mut()
                    .record_error(format!("cannot start a tokio runtime: {e}"));
            }
            let _ = ready.send(());
            return collect(stats);
        }
    };
    let local = tokio::task::LocalSet::new();
    let conns: Vec<Option<Conn>> = local.block_on(&runtime, async {
        let setups: Vec<_> = stats
            .iter()
            .zip(&mine)
            .map(|(s, (_, shared, _))| {
                let (shared, s) = (Arc::clone(shared), Rc::clone(s));
                tokio::task::spawn_local(async move {
                    match client::connect(&shared).await {
                        Ok(conn) => {
                            s.borrow_mut().connections += conn.sessions();
                            Some(conn)
                        }
                        Err(message) => {
                            s.borrow_mut().record_error(message);
                            None
                        }
                    }
                })
            })
            .collect();
        let mut conns = Vec::with_capacity(setups.len());
        for setup in setups {
            conns.push(setup.await.ok().flatten());
        }
        conns
    });
    let _ = ready.send(());
    let Ok(clock) = start.recv() else {
        for conn in conns.into_iter().flatten() {
            conn.close();
        }
        return collect(stats);
    };
    // Last resort only: every await inside a client is bounded already.
    let most_trips = mine
        .iter()
        .flat_map(|(_, shared, _)| &shared.workload.scripts)
        .map(|s| s.statements.len() as u32 + 2)
        .max()
        .unwrap_or(3);
    let guard = clock.window_end.and_then(|end| {
        let slack = any
            .round_trip_bound
            .checked_mul(most_trips + 1)?
            .checked_add(any.connect_bound)?;
        end.checked_add(slack)
    });
    local.block_on(&runtime, async {
        let tasks: Vec<_> = conns
            .into_iter()
            .zip(&mine)
            .zip(&stats)
            .map(|((conn, (_, shared, id)), s)| {
                let rng = fastrand::Rng::with_seed(derive_seed(seed, &[*id as u64]));
                let run = client::run(Arc::clone(shared), clock, conn, Rc::clone(s), rng);
                tokio::task::spawn_local(run)
            })
            .collect();
        let all = async {
            for task in tasks {
                let _ = task.await;
            }
        };
        match guard {
            Some(guard) => {
                if tokio::time::timeout_at(guard.into(), all).await.is_err()
                    && let Some(s) = stats.first()
                {
                    s.borrow_mut()
                        .record_error("clients did not stop in time; abandoned".into());
                }
            }
            None => all.await,
        }
    });
    // Dropping the runtime drops whatever is left (connection tasks of abandoned clients).
    drop(local);
    drop(runtime);
    collect(stats)
}

/// Check every statement on the database (prepares, parameter counts), run the `list:`
/// queries, and resolve the generators.
fn preflight(
    config: &postgres::Config,
    spec: &LoadSpec,
    vars: &[(String, String)],
    limits: &Limits,
    connect_bound: Duration,
) -> Result<Vec<Script>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a tokio runtime")?;
    // List queries may scan a table: give them at least a minute.
    let setup_timeout = limits.timeout.max(Duration::from_secs(60));
    let bound = setup_timeout.saturating_add(Duration::from_secs(1));
    let async_config = async_config(config, setup_timeout);
    let lists = runtime.block_on(async {
        let (client, connection) = timeout(connect_bound, async_config.connect(NoTls))
            .await
            .map_err(|_| {
                fail(
                    format!(
                        "load: no answer from {} within {} s",
                        crate::db::describe_config(config),
                        connect_bound.as_secs()
                    ),
                    "is the server up and accepting connections?",
                )
            })?
            .map_err(|e| {
                fail(
                    format!(
                        "load: cannot connect to {}: {}",
                        crate::db::describe_config(config),
                        describe_pg_error(&e, None)
                    ),
                    "check the connection settings (as for psql)",
                )
            })?;
        let task = tokio::spawn(connection);
        let checked = check_scripts(&client, spec, vars, bound).await;
        drop(client);
        let _ = timeout(Duration::from_secs(1), task).await;
        checked
    })?;
    let mut fetch = |sql: &str| {
        lists
            .get(sql)
            .cloned()
            .ok_or_else(|| anyhow!("list query was not run: {sql}"))
    };
    let mut scripts = Vec::new();
    for (name, script) in &spec.scripts {
        let let_names: Vec<String> = script.lets.keys().cloned().collect();
        let mut lets = Vec::new();
        for (key, generator) in &script.lets {
            let what = format!("load script {name}, let.{key}");
            lets.push(Source::build(
                generator,
                spec.seed,
                vars,
                &[],
                &what,
                &mut fetch,
            )?);
        }
        let mut statements = Vec::new();
        for (i, statement) in script.statements.iter().enumerate() {
            let what = format!("load script {name}, statement {}", i + 1);
            let sql = substitute(&statement.sql, vars, &what)?;
            let mut sources = Vec::new();
            for (j, generator) in statement.params.iter().enumerate() {
                let what = format!("{what}, ${}", j + 1);
                sources.push(Source::build(
                    generator, spec.seed, vars, &let_names, &what, &mut fetch,
                )?);
            }
            statements.push((sql, sources));
        }
        scripts.push(Script {
            name: name.clone(),
            weight: script.weight,
            pattern: script.pattern,
            fanout: script.fanout.unwrap_or(1),
            lets,
            statements,
        });
    }
    Ok(scripts)
}

/// Prepare every statement (checking its parameter count) and run every list query.
async fn check_scripts(
    client: &tokio_postgres::Client,
    spec: &LoadSpec,
    vars: &[(String, String)],
    bound: Duration,
) -> Result<HashMap<String, Vec<Option<String>>>> {
    let no_answer = |what: &str| {
        fail(
            format!("{what}: no answer within {} s", bound.as_secs()),
            "the server may be hung or overloaded",
        )
    };
    let mut lists = HashMap::new();
    for (name, script) in &spec.scripts {
        for (i, statement) in script.statements.iter().enumerate() {
            let what = format!("load script {name}, statement {}", i + 1);
            let sql = substitute(&statement.sql, vars, &what)?;
            let prepared = timeout(bound, client.prepare(&sql))
                .await
                .map_err(|_| no_answer(&what))?
                .map_err(|e| {
                    fail(
                        format!("{what}: {}", describe_pg_error(&e, Some(&sql))),
                        "each statement is one SQL statement, prepared once; values come as $1, $2, ...",
                    )
                })?;
            if prepared.params().len() != statement.params.len() {
                return Err(fail(
                    format!(
                        "{what} has {} parameter(s) but params lists {} generator(s)",
                        prepared.params().len(),
                        statement.params.len()
                    ),
                    "give one generator per $n, in order",
                ));
            }
        }
        let generators = script
            .lets
            .values()
            .chain(script.statements.iter().flat_map(|s| &s.params));
        for generator in generators {
            let Generator::List { sql } = generator else {
                continue;
            };
            let what = format!("load script {name}, list");
            let sql = substitute(sql, vars, &what)?;
            if lists.contains_key(&sql) {
                continue;
            }
            let messages = timeout(bound, client.simple_query(&sql))
                .await
                .map_err(|_| no_answer(&what))?
                .map_err(|e| {
                    fail(
                        format!("{what}: {}", describe_pg_error(&e, Some(&sql))),
                        "the list query must run on the dataset",
                    )
                })?;
            let values: Vec<Option<String>> = messages
                .iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_string)),
                    _ => None,
                })
                .collect();
            if values.len() > MAX_LIST_ROWS {
                return Err(fail(
                    format!("{what}: {} rows is too many for a list", values.len()),
                    format!(
                        "add a LIMIT (at most {MAX_LIST_ROWS}) or use uniform/hot over an id range"
                    ),
                ));
            }
            lists.insert(sql, values);
        }
    }
    Ok(lists)
}

/// The async driver's config from the sync one, with pgx's statement_timeout.
pub fn async_config(
    config: &postgres::Config,
    statement_timeout: Duration,
) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    if let Some(user) = config.get_user() {
        c.user(user);
    }
    if let Some(password) = config.get_password() {
        c.password(password);
    }
    if let Some(dbname) = config.get_dbname() {
        c.dbname(dbname);
    }
    for host in config.get_hosts() {
        match host {
            postgres::config::Host::Tcp(name) => c.host(name),
            postgres::config::Host::Unix(path) => c.host_path(path),
        };
    }
    for addr in config.get_hostaddrs() {
        c.hostaddr(*addr);
    }
    for port in config.get_ports() {
        c.port(*port);
    }
    // Set at connection start: no extra statement (or transaction) per connection.
    let options = format!(
        "{} -c statement_timeout={}",
        config.get_options().unwrap_or_default(),
        statement_timeout.as_millis().max(1)
    );
    c.options(options.trim_start())
        .application_name(APPLICATION)
        .connect_timeout(
            config
                .get_connect_timeout()
                .copied()
                .unwrap_or(Duration::from_secs(10)),
        )
        .keepalives(config.get_keepalives())
        .keepalives_idle(config.get_keepalives_idle())
        .target_session_attrs(config.get_target_session_attrs())
        .channel_binding(config.get_channel_binding())
        .ssl_mode(config.get_ssl_mode());
    c
}

/// How requests reach the server, for the report.
pub fn transport(config: &postgres::Config) -> String {
    match config.get_hosts().first() {
        Some(postgres::config::Host::Unix(_)) => "unix socket".into(),
        Some(postgres::config::Host::Tcp(name))
            if matches!(name.as_str(), "localhost" | "127.0.0.1" | "::1") =>
        {
            "tcp loopback".into()
        }
        Some(postgres::config::Host::Tcp(_)) => "tcp".into(),
        None => "unix socket".into(), // libpq's default without a host
    }
}
