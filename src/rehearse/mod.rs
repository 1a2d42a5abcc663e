//! `pgx rehearse`: apply the pending migrations to a copy of an experiment's dataset while
//! the experiment's `load:` runs against the copy, and report what production would feel.
//!
//! The load runs on threads of its own (the load driver, with its observer hook recording
//! every transaction); a sampler thread reads `pg_stat_activity` and the ungranted
//! `pg_locks` every few tens of milliseconds from a separate connection; the migrations
//! run one at a time through `pgx apply`'s own code on a third connection. Phases: the
//! *before* window (the baseline), *during* (from the first migration's start to the last
//! one's end), *after* (recovery). Whatever happens (a failing migration, Ctrl-C), the load
//! and the sampler are stopped and joined and the copy is dropped.

mod collect;
pub mod report;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::error::{Interrupted, fail};
use crate::experiment::databases::{Copy, check_can_create_databases, prepare_base};
use crate::experiment::spec::{self, Spec};
use crate::lint::Diagnostic;
use crate::loadtest::{Hooks, LoadSpec, Mix};
use crate::migrate::{self, MigrationFile};
use crate::target::{Target, TargetOptions, connect};

use crate::loadtest::locks::{self as sampler, Sample, Samples, StopOnDrop};
pub use collect::Window;

/// What was asked for, checked.
#[derive(Debug, Clone)]
pub struct Plan {
    pub experiment: String,
    pub scale: f64,
    /// Versions up to this one are in the dataset.
    pub from: i32,
    pub clients: usize,
    pub warmup: Duration,
    pub before: Duration,
    pub after: Duration,
    pub sample_every: Duration,
}

/// A lock wait seen in the samples, grouped by who waited for what.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitGroup {
    /// "load client", "migration", or the application name of another session.
    pub who: String,
    /// The relation, or the lock type when the lock is not on a relation (`virtualxid`).
    pub on: String,
    /// The mode asked for.
    pub mode: String,
    /// Whether the migration's session was among the blockers.
    pub blocked_by_migration: bool,
    /// Samples in which at least one such session was waiting.
    pub samples: usize,
    /// Distinct sessions seen waiting.
    pub sessions: usize,
    pub max_at_once: usize,
    /// The longest-running waiting statement seen (it waited at most this long).
    pub longest_ms: f64,
    pub example_query: String,
}

#[derive(Debug, Clone)]
pub struct MigrationRun {
    pub label: String,
    pub path: PathBuf,
    pub no_transaction: bool,
    pub seconds: f64,
    pub error: Option<String>,
    /// The load while this migration ran.
    pub load: Window,
    pub waits: Vec<WaitGroup>,
    /// Distinct load clients seen waiting on a lock the migration held (or queued for).
    pub clients_blocked: usize,
    /// The most load clients seen waiting on the migration in one sample.
    pub max_clients_blocked: usize,
    pub samples: usize,
}

#[derive(Debug, Clone)]
pub struct Rehearsal {
    pub plan: Plan,
    pub base: String,
    pub server_version: String,
    pub git_commit: String,
    pub date: String,
    pub script_mix: String,
    pub migrations: Vec<MigrationRun>,
    /// before, during, after.
    pub phases: Vec<Window>,
    /// Per script: before, during, after.
    pub scripts: Vec<(String, Vec<Window>)>,
    /// Load clients waiting on a lock (any) per phase: (max at once, distinct sessions).
    pub phase_waits: Vec<(usize, usize)>,
    pub timeline: Vec<Bucket>,
    pub lint: Vec<Diagnostic>,
    pub samples: usize,
    pub error_samples: Vec<String>,
    /// What went wrong outside the migrations (load, sampling), if anything.
    pub problems: Vec<String>,
}

impl Rehearsal {
    pub fn failed(&self) -> bool {
        !self.problems.is_empty() || self.migrations.iter().any(|m| m.error.is_some())
    }
}

/// A slice of the timeline.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// Seconds since the before window opened.
    pub start: f64,
    pub seconds: f64,
    pub phase: &'static str,
    pub tps: f64,
    pub failed: u64,
    /// Most load clients seen waiting on a lock in one sample.
    pub waiting: usize,
}

/// What to rehearse: the experiment (a name or a path), the migrations above `from`
/// (default: its `schema.up_to`, else all but the newest) up to `target`, and the load's
/// shape; durations as typed (`5s`, `500ms`).
#[derive(Debug, Clone)]
pub struct Request {
    pub name: String,
    pub from: Option<i32>,
    pub target: Option<i32>,
    pub scale: Option<f64>,
    pub clients: Option<usize>,
    pub before: String,
    pub after: String,
    pub sample_every: String,
}

/// Rehearse: the dataset with the migrations up to `from`, a copy of it, the load with
/// the rehearsed migrations applied meanwhile, and what the load saw.
pub fn run(options: &TargetOptions, args: &Request) -> Result<Rehearsal> {
    let spec = spec::read(&spec::resolve_path(&args.name))?;
    let Some(load) = spec.load.clone() else {
        return Err(fail(
            format!(
                "{} has no load: section; a rehearsal runs the experiment's load while the migrations apply",
                spec.path.display()
            ),
            "add a load: section (see docs/loads.md) with scripts that read and write the tables the migrations change",
        ));
    };
    let duration = |flag: &str, text: &str| {
        spec::parse_duration(text).ok_or_else(|| {
            fail(
                format!("--{flag} {text:?} is not a duration"),
                "write it like 5s, 500ms or 1min",
            )
        })
    };
    let sample_every = duration("sample-every", &args.sample_every)?;
    if sample_every < Duration::from_millis(5) {
        return Err(fail(
            "--sample-every is below 5ms",
            "50ms to 100ms sees every wait that matters without loading the server",
        ));
    }
    if let Some(scale) = args.scale {
        spec::check_scale(&spec, scale, "--scale")?;
    }
    let limits = load.limits()?;
    let files = migrate::load_dir(&crate::project_root().join(&spec.schema.migrations))?;
    let from = match args.from.or(spec.schema.up_to) {
        Some(v) => v,
        None => {
            // All but the newest: the migration a pull request adds.
            let mut versions: Vec<i32> =
                files.iter().filter_map(|f| f.refinery_version()).collect();
            versions.pop();
            versions.last().copied().unwrap_or(0)
        }
    };
    let rehearsed: Vec<&MigrationFile> = files
        .iter()
        .filter(|f| f.version > from && args.target.is_none_or(|t| f.version <= t))
        .collect();
    if rehearsed.is_empty() {
        return Err(fail(
            format!(
                "nothing to rehearse: no migration in {} above version {from}",
                spec.schema.migrations.display()
            ),
            "add the migration to rehearse, or pass --from with the version the dataset should stop at",
        ));
    }
    let plan = Plan {
        experiment: spec.name.clone(),
        scale: args.scale.unwrap_or(spec.dataset.scale),
        from,
        clients: args.clients.unwrap_or_else(|| load.most_clients()).max(1),
        warmup: limits.warmup,
        before: duration("before", &args.before)?,
        after: duration("after", &args.after)?,
        sample_every,
    };
    let lint = crate::lint::lint_migrations(&rehearsed, &crate::lint::RuleSet::default());

    let target = Target::resolve(options)?;
    rehearse(&target, &spec, &load, &files, &rehearsed, &plan, lint)
}

/// Dataset, copy, load + sampler + migrations, and the numbers.
fn rehearse(
    target: &Target,
    spec: &Spec,
    load: &LoadSpec,
    files: &[MigrationFile],
    rehearsed: &[&MigrationFile],
    plan: &Plan,
    lint: Vec<Diagnostic>,
) -> Result<Rehearsal> {
    let mut admin = connect(&target.admin_config())?;
    check_can_create_databases(&mut admin)?;
    // The dataset as production has it: migrations up to `from` only. Named apart from
    // the experiment's own base, so the two never evict each other from the cache (they
    // are the same database when the experiment's schema.up_to is `from`).
    let mut base_spec = spec.clone();
    base_spec.schema.up_to = Some(plan.from);
    base_spec.name = format!("{}~rehearse", spec.name);
    let base = prepare_base(
        target,
        &mut admin,
        &base_spec,
        plan.scale,
        false,
        &mut |step, done| match done {
            None => crate::note!("rehearse: dataset step {step}"),
            Some(seconds) => crate::note!("rehearse: dataset step {step}: {seconds:.1}s"),
        },
    )?;
    if base.info.reused {
        crate::note!("rehearse: reusing cached dataset {}", base.info.database);
    }
    let server_version: String = admin.query_one("SHOW server_version", &[])?.get(0);
    let copy = Copy::create(
        target,
        &mut admin,
        &base.info.database,
        &spec.name,
        "rehearse",
    )?;
    let config = target.config_for(&copy.name);
    let vars = spec::scaled_vars(spec, plan.scale);
    let mut load = load.clone();
    if load.groups.is_empty() {
        load.clients = vec![plan.clients];
    }
    load.repeat = 1;
    load.warmup = "0s".into();
    load.transactions = None;
    // Stopped through the hook when the after window closes.
    load.duration = Some("24h".into());
    if load.mix == Mix::Each {
        load.mix = Mix::Weighted;
    }
    let script_mix = script_mix(&load);
    let measured = under_load(&config, &load, &vars, files, rehearsed, plan);
    drop(copy);
    let measured = measured?;
    Ok(assemble(
        plan.clone(),
        base.info.database.clone(),
        server_version,
        script_mix,
        measured,
        lint,
    ))
}

fn script_mix(load: &LoadSpec) -> String {
    let used: Vec<String> = load
        .scripts
        .iter()
        .filter(|(_, s)| s.weight > 0)
        .map(|(name, s)| format!("{name}×{}", s.weight))
        .collect();
    used.join(" + ")
}

/// The raw outcome of a rehearsal, before it is summarised.
struct Measured {
    /// The before window opens here.
    opened: Instant,
    during: (Instant, Instant),
    closed: Instant,
    migrations: Vec<(MigrationRun, Instant, Instant)>,
    migration_pid: i32,
    collected: collect::Collected,
    samples: Samples,
    load_error: Option<String>,
}

fn under_load(
    config: &postgres::Config,
    load: &LoadSpec,
    vars: &[(String, String)],
    files: &[MigrationFile],
    rehearsed: &[&MigrationFile],
    plan: &Plan,
) -> Result<Measured> {
    let mut client = connect(config)?;
    let migration_pid: i32 = client.query_one("SELECT pg_backend_pid()", &[])?.get(0);
    let stop = Arc::new(AtomicBool::new(false));
    let collector = Arc::new(collect::Collector::default());
    let observer = Arc::clone(&collector);
    let hooks = Hooks {
        observer: Some(Arc::new(move |event| observer.observe(event))),
        stop: Some(Arc::clone(&stop)),
    };
    std::thread::scope(|scope| -> Result<Measured> {
        let stop_guard = StopOnDrop(&stop);
        let load_thread = std::thread::Builder::new()
            .name("pgx-rehearse-load".into())
            .spawn_scoped(scope, || {
                crate::loadtest::run_with(config, load, vars, &hooks, &mut |_| {})
            })
            .context("cannot start the load thread")?;
        let sampler_thread = std::thread::Builder::new()
            .name("pgx-rehearse-sampler".into())
            .spawn_scoped(scope, || {
                sampler::run(
                    config,
                    plan.sample_every,
                    &stop,
                    "pgx rehearse sampler",
                    false,
                )
            })
            .context("cannot start the lock sampler")?;

        crate::note!(
            "rehearse: load starting ({} clients: {})",
            plan.clients,
            script_mix(load)
        );
        // The load is running once its first transaction has finished.
        let started = Instant::now();
        while collector.first_end().is_none() {
            if load_thread.is_finished() {
                let why = match load_thread.join() {
                    Ok(Ok(_)) => "the load ended before any transaction".to_string(),
                    Ok(Err(err)) => format!("{err:#}"),
                    Err(_) => "the load thread panicked".to_string(),
                };
                return Err(fail(
                    format!("the experiment's load did not start: {why}"),
                    "check the load: section on the dataset (`pgx experiment` runs the same load)",
                ));
            }
            if started.elapsed() > Duration::from_secs(120) {
                return Err(fail(
                    "the experiment's load finished no transaction within 120 s",
                    "check that its scripts run on the dataset",
                ));
            }
            pause(Duration::from_millis(20))?;
        }
        pause(plan.warmup)?;
        let opened = Instant::now();
        crate::note!(
            "rehearse: before: {:.1}s of load",
            plan.before.as_secs_f64()
        );
        pause(plan.before)?;

        let during_start = Instant::now();
        let mut migrations = Vec::new();
        for file in rehearsed {
            crate::interrupt::check()?;
            crate::note!("rehearse: applying {}", file.label());
            let t0 = Instant::now();
            let applied = {
                let _cancel = crate::interrupt::CancelOnInterrupt::new(&client);
                migrate::apply(
                    &mut client,
                    files,
                    &migrate::ApplyOptions {
                        target: Some(file.version.clone()),
                        ..migrate::ApplyOptions::default()
                    },
                )
            };
            let t1 = Instant::now();
            if crate::interrupt::is_interrupted() {
                return Err(anyhow::Error::new(Interrupted));
            }
            let error = applied.err().map(|e| {
                let mut text = format!("{e:#}");
                if let Some(hint) = crate::error::hint_of(&e) {
                    text.push_str(&format!(" (hint: {hint})"));
                }
                text
            });
            crate::note!(
                "rehearse: {} {} in {:.2}s",
                file.label(),
                if error.is_some() { "FAILED" } else { "applied" },
                (t1 - t0).as_secs_f64()
            );
            let failed = error.is_some();
            migrations.push((
                MigrationRun {
                    label: file.label(),
                    path: file.path.clone(),
                    no_transaction: file.no_transaction,
                    seconds: (t1 - t0).as_secs_f64(),
                    error,
                    load: Window::default(),
                    waits: Vec::new(),
                    clients_blocked: 0,
                    max_clients_blocked: 0,
                    samples: 0,
                },
                t0,
                t1,
            ));
            if failed {
                break; // as `pgx apply` would: the later ones are not run
            }
        }
        let during_end = Instant::now();
        crate::note!("rehearse: after: {:.1}s of load", plan.after.as_secs_f64());
        pause(plan.after)?;
        let closed = Instant::now();
        drop(stop_guard);
        let load_error = match load_thread.join() {
            Ok(Ok(_)) => None,
            Ok(Err(err)) => Some(format!("load: {err:#}")),
            Err(_) => Some("the load thread panicked".into()),
        };
        let samples = sampler_thread.join().unwrap_or_else(|_| Samples {
            error: Some("the lock sampler panicked".into()),
            ..Samples::default()
        });
        Ok(Measured {
            opened,
            during: (during_start, during_end),
            closed,
            migrations,
            migration_pid,
            collected: collector.take(),
            samples,
            load_error,
        })
    })
}

/// Sleep, but wake up for Ctrl-C.
fn pause(duration: Duration) -> Result<()> {
    let end = Instant::now() + duration;
    loop {
        crate::interrupt::check()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

fn who(waiting: &sampler::Waiting, migration_pid: i32) -> String {
    if waiting.pid == migration_pid {
        "migration".into()
    } else if crate::loadtest::driver::is_load_session(&waiting.application) {
        "load client".into()
    } else if waiting.application.is_empty() {
        "other session".into()
    } else {
        waiting.application.clone()
    }
}

/// Group the waits seen in samples.
fn wait_groups(samples: &[&Sample], migration_pid: i32) -> Vec<WaitGroup> {
    use std::collections::{BTreeMap, HashSet};
    struct Acc {
        samples: usize,
        pids: HashSet<i32>,
        max_at_once: usize,
        longest_ms: f64,
        example: String,
    }
    let mut groups: BTreeMap<(String, String, String, bool), Acc> = BTreeMap::new();
    for sample in samples {
        let mut in_sample: BTreeMap<(String, String, String, bool), usize> = BTreeMap::new();
        for w in &sample.waiting {
            let on = if w.relation.is_empty() {
                if w.locktype.is_empty() {
                    w.wait_event.clone()
                } else {
                    w.locktype.clone()
                }
            } else {
                w.relation.clone()
            };
            let key = (
                who(w, migration_pid),
                on,
                w.mode.clone(),
                w.blocked_by.contains(&migration_pid),
            );
            *in_sample.entry(key.clone()).or_default() += 1;
            let acc = groups.entry(key).or_insert_with(|| Acc {
                samples: 0,
                pids: HashSet::new(),
                max_at_once: 0,
                longest_ms: 0.0,
                example: w.query.clone(),
            });
            acc.pids.insert(w.pid);
            acc.longest_ms = acc.longest_ms.max(w.statement_ms);
        }
        for (key, n) in in_sample {
            if let Some(acc) = groups.get_mut(&key) {
                acc.samples += 1;
                acc.max_at_once = acc.max_at_once.max(n);
            }
        }
    }
    groups
        .into_iter()
        .map(|((who, on, mode, by), acc)| WaitGroup {
            who,
            on,
            mode,
            blocked_by_migration: by,
            samples: acc.samples,
            sessions: acc.pids.len(),
            max_at_once: acc.max_at_once,
            longest_ms: acc.longest_ms,
            example_query: acc.example,
        })
        .collect()
}

/// Load clients waiting on a lock in the samples: (most at once, distinct sessions),
/// all of them or only those the migration blocked.
fn clients_waiting(samples: &[&Sample], migration_pid: Option<i32>) -> (usize, usize) {
    let mut pids = std::collections::HashSet::new();
    let mut most = 0;
    for sample in samples {
        let waiting: Vec<i32> = sample
            .waiting
            .iter()
            .filter(|w| crate::loadtest::driver::is_load_session(&w.application))
            .filter(|w| migration_pid.is_none_or(|m| w.blocked_by.contains(&m)))
            .map(|w| w.pid)
            .collect();
        most = most.max(waiting.len());
        pids.extend(waiting);
    }
    (most, pids.len())
}

fn assemble(
    plan: Plan,
    base: String,
    server_version: String,
    script_mix: String,
    measured: Measured,
    lint: Vec<Diagnostic>,
) -> Rehearsal {
    let Measured {
        opened,
        during,
        closed,
        migrations,
        migration_pid,
        collected,
        samples,
        load_error,
    } = measured;
    let between = |from: Instant, to: Instant| -> Vec<&Sample> {
        samples
            .samples
            .iter()
            .filter(|s| s.at >= from && s.at < to)
            .collect()
    };
    let phases_at = [
        ("before", opened, during.0),
        ("during", during.0, during.1),
        ("after", during.1, closed),
    ];
    let phases: Vec<Window> = phases_at
        .iter()
        .map(|(name, from, to)| collected.window(name, *from, *to, None))
        .collect();
    let scripts = collected
        .scripts
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let windows = phases_at
                .iter()
                .map(|(phase, from, to)| collected.window(phase, *from, *to, Some(i)))
                .collect();
            (name.clone(), windows)
        })
        .collect();
    let phase_waits = phases_at
        .iter()
        .map(|(_, from, to)| clients_waiting(&between(*from, *to), None))
        .collect();
    let migrations = migrations
        .into_iter()
        .map(|(mut run, from, to)| {
            // The sample in flight when the migration ended still belongs to it.
            let seen = between(from, to);
            run.load = collected.window(&run.label, from, to, None);
            run.waits = wait_groups(&seen, migration_pid);
            let (most, distinct) = clients_waiting(&seen, Some(migration_pid));
            run.max_clients_blocked = most;
            run.clients_blocked = distinct;
            run.samples = seen.len();
            run
        })
        .collect();
    let timeline = timeline(&collected, &samples.samples, opened, during, closed);
    let mut problems = Vec::new();
    problems.extend(load_error);
    problems.extend(samples.error.clone());
    Rehearsal {
        plan,
        base,
        server_version,
        git_commit: crate::experiment::environment::git_commit(),
        date: crate::experiment::environment::utc_now_minutes(),
        script_mix,
        migrations,
        phases,
        scripts,
        phase_waits,
        timeline,
        lint,
        samples: samples.samples.len(),
        error_samples: collected.error_samples.clone(),
        problems,
    }
}

/// At most about 60 buckets of at least half a second.
fn timeline(
    collected: &collect::Collected,
    samples: &[Sample],
    opened: Instant,
    during: (Instant, Instant),
    closed: Instant,
) -> Vec<Bucket> {
    let total = closed.saturating_duration_since(opened).as_secs_f64();
    // Half-second steps, wider for long rehearsals; a last sliver is left out (its
    // TPS would be a few transactions over a few milliseconds).
    let width = ((total / 60.0) * 2.0).ceil().max(1.0) / 2.0;
    let mut buckets = Vec::new();
    let mut start = 0.0;
    while start + width / 2.0 < total {
        let from = opened + Duration::from_secs_f64(start);
        let to = (opened + Duration::from_secs_f64(start + width)).min(closed);
        let window = collected.window("", from, to, None);
        let phase = if from < during.0 {
            "before"
        } else if from < during.1 {
            "during"
        } else {
            "after"
        };
        let in_bucket: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.at >= from && s.at < to)
            .collect();
        buckets.push(Bucket {
            start,
            seconds: window.seconds,
            phase,
            tps: window.tps,
            failed: window.errors + window.timeouts,
            waiting: clients_waiting(&in_bucket, None).0,
        });
        start += width;
    }
    buckets
}
