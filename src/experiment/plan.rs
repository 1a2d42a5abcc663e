//! The experiment file and the command line resolved, before anything runs, into one
//! immutable [`Plan`]: which variants (and how each is built), the settings and cache
//! axes, every query's forms with `{{vars}}` substituted, the schedule and its limits,
//! the workload, prewarm list, load and maintenance. Options override the file, the file
//! overrides the defaults, here and nowhere else; durations are parsed once. The engine
//! takes a plan and never reads the [`Spec`].
//!
//! Only the parameter sets a query draws from the dataset (`params_from`) are left to
//! resolve once the dataset exists ([`crate::experiment::matrix::resolve`]).

use std::path::PathBuf;

use anyhow::Result;

use super::matrix::{CacheState, Form, Query, Role, Schedule, Settings, Variant};
use super::sharing::{self, Sharing};
use super::spec::{Spec, WorkloadSpec, scaled_vars, substitute, yaml_param};
use crate::db::TextParam;
use crate::error::fail;

/// Default number of rounds: the most a timed cell gets.
pub const DEFAULT_ROUNDS: usize = 20;
/// The most rounds a cold or prewarmed cell gets without a budget: every run costs an
/// eviction (a server restart).
pub const COLD_ROUNDS: usize = 12;
/// Parameter sets a `params_from` may return unless `runs.max_params` says otherwise.
pub const DEFAULT_MAX_PARAMS: usize = 100;

/// What the command line can override.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub scale: Option<f64>,
    pub repeat: Option<usize>,
    pub warmup: Option<usize>,
    pub rounds: Option<usize>,
    /// Seed of the schedule's order; a fresh one each run unless given.
    pub seed: Option<u64>,
    pub only: Vec<String>,
    pub rebuild: bool,
    /// Measure the A/A control (default: as the experiment file says, else yes).
    pub control: Option<bool>,
    /// Overrides `runs.budget`.
    pub budget: Option<std::time::Duration>,
    /// Only these states of the experiment's cache axis (empty: all of them).
    pub cache: Vec<CacheState>,
    /// Screen the variants with HypoPG before building them (also `screen: true`).
    pub screen: bool,
    /// Screen, then stop: no variant is built or measured.
    pub screen_only: bool,
    /// Every variant on a copy of its own (overrides `runs.share`).
    pub separate_copies: bool,
    /// Time cells with the same evidence as their reference too (`runs.time_identical`).
    pub time_identical: bool,
    /// Only the K-th of N slices of the candidates (`--shard K/N`).
    pub shard: Option<Shard>,
}

/// `--shard K/N`: the K-th of N slices of an experiment's candidates, by variant, so that
/// every comparison (a candidate against the baseline, under the run's own A/A control)
/// stays inside one run. Candidates are dealt out in file order: the i-th (from 0) goes
/// to shard `i mod N + 1`. `pgx merge` puts the slices together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    pub k: usize,
    pub n: usize,
}

impl Shard {
    /// Does the candidate at position `i` (from 0, baseline excluded) belong here?
    pub fn takes(&self, i: usize) -> bool {
        i % self.n == self.k - 1
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Shard, String> {
        let bad = || format!("{s:?} is not K/N with 1 <= K <= N (e.g. 2/4)");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let k: usize = k.trim().parse().map_err(|_| bad())?;
        let n: usize = n.trim().parse().map_err(|_| bad())?;
        if k == 0 || n == 0 || k > n {
            return Err(bad());
        }
        Ok(Shard { k, n })
    }
}

/// Everything a run does, resolved.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub about: String,
    /// The investigation in shared/seeds it reproduces.
    pub seed: String,
    /// The experiment file, for messages.
    pub path: PathBuf,
    pub scale: f64,
    /// `{{name}}` values at this scale.
    pub vars: Vec<(String, String)>,
    /// Baseline first, then the candidates in file order, then the A/A control.
    pub variants: Vec<Variant>,
    /// How each variant (same positions) is built.
    pub builds: Vec<Sharing>,
    /// The first set is the reference.
    pub settings: Vec<Settings>,
    pub caches: Vec<CacheState>,
    /// Every query with its forms; parameter sets are literal here or drawn later.
    pub queries: Vec<PlannedQuery>,
    pub schedule: Schedule,
    pub limits: Limits,
    pub prewarm: Vec<String>,
    pub workload: Option<Workload>,
    pub table_stats: Vec<String>,
    pub maintenance: bool,
    pub load: Option<crate::loadtest::LoadSpec>,
    pub screening: Screening,
    /// Build every variant again even when a cached build matches.
    pub rebuild: bool,
    /// The slice of the candidates this run measures (`--shard K/N`).
    pub shard: Option<Shard>,
}

/// A query before its parameter sets are known.
#[derive(Debug, Clone)]
pub struct PlannedQuery {
    /// Everything but `params`, which is empty until resolved.
    pub query: Query,
    pub params: ParamSource,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum ParamSource {
    /// Literal sets (with `{{vars}}` substituted); one empty set for a query without.
    Literal(Vec<Vec<TextParam>>),
    /// A SELECT run once on the dataset: each row is a set.
    From(String),
}

/// How much measuring a cell gets.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Unrecorded runs per cell in the first round (the last of them is
    /// the cell's evidence); at least one.
    pub warmup: usize,
    /// Measured runs per cell, at most (spread over the rounds).
    pub repeat: usize,
    pub timeout_ms: u64,
    /// Time a cell may spend before it leaves the remaining rounds.
    pub budget_ms: Option<u64>,
    /// With a budget: the rounds a timed cell gets regardless.
    pub min_rounds: usize,
    /// The most rounds a cold or prewarmed cell gets.
    pub cold_rounds: usize,
    /// Time cells whose evidence equals their reference's too.
    pub time_identical: bool,
    /// The most parameter sets a `params_from` may return.
    pub max_params: usize,
}

#[derive(Debug, Clone)]
pub struct Workload {
    pub about: String,
    pub batches: usize,
    pub seed: f64,
    /// With `{{vars}}` substituted.
    pub sql: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screening {
    No,
    /// Screen with HypoPG, then build and measure.
    Also,
    /// Screen, then stop.
    Only,
}

impl Plan {
    /// Does any cell change data (rolled-back DML), or does anything after the measured
    /// runs (load, workload, maintenance) change a copy? Then every measured database
    /// must be a throw-away copy.
    pub fn writes(&self) -> bool {
        self.queries.iter().any(|q| q.query.rollback)
            || self.load.is_some()
            || self.workload.is_some()
            || self.maintenance
    }

    pub fn control(&self) -> Option<usize> {
        self.variants.iter().position(|v| v.role == Role::Control)
    }
}

/// Resolve the file and the options into a plan (no database is touched).
pub fn resolve(spec: &Spec, options: &RunOptions) -> Result<Plan> {
    let scale = options.scale.unwrap_or(spec.dataset.scale);
    let vars = scaled_vars(spec, scale);
    let timeout_ms = u64::try_from(spec.timeout()?.as_millis()).unwrap_or(u64::MAX);
    let budget_ms = options
        .budget
        .or(spec.budget()?)
        .map(|b| u64::try_from(b.as_millis()).unwrap_or(u64::MAX));
    let warmup = options.warmup.unwrap_or(spec.runs.warmup);
    let repeat = options.repeat.unwrap_or(spec.runs.repeat).max(1);
    let schedule = Schedule::new(
        options
            .seed
            .or(spec.runs.seed)
            .unwrap_or_else(|| fastrand::u64(..)),
        repeat,
        options
            .rounds
            .or(spec.runs.rounds)
            .unwrap_or(DEFAULT_ROUNDS),
        warmup,
    );
    let first_look = crate::stats::sequential::LOOKS[0];
    let limits = Limits {
        warmup,
        repeat,
        timeout_ms,
        budget_ms,
        min_rounds: spec
            .runs
            .min
            .unwrap_or(first_look)
            .clamp(1, schedule.rounds.max(1)),
        cold_rounds: if budget_ms.is_some() {
            schedule.rounds
        } else {
            schedule.rounds.min(COLD_ROUNDS)
        },
        time_identical: options.time_identical || spec.runs.time_identical,
        max_params: spec.runs.max_params.unwrap_or(DEFAULT_MAX_PARAMS).max(1),
    };
    let control = options.control.unwrap_or(spec.runs.control);
    let variants = variants(spec, &options.only, options.shard, control, &vars)?;
    // Load, workload and maintenance change a variant's copy for good: one copy each.
    let alone = options.separate_copies
        || !spec.runs.share
        || spec.load.is_some()
        || spec.workload.is_some()
        || spec.maintenance;
    // Two variants that create objects of one name (the same index in two variants) cannot
    // both be built on the shared copy: the later one gets a copy of its own.
    let mut named: Vec<(String, String)> = Vec::new();
    let builds = variants
        .iter()
        .map(|v| match sharing::classify(&v.sql) {
            Sharing::Shared { .. } if alone => Sharing::Own(if options.separate_copies {
                "--separate-copies".into()
            } else {
                "runs.share: false, or the experiment has a load, workload or maintenance".into()
            }),
            Sharing::Shared {
                creates,
                names,
                drops,
            } => {
                if let Some((name, other)) = names
                    .iter()
                    .find_map(|n| named.iter().find(|(m, _)| m == n))
                {
                    Sharing::Own(format!(
                        "it creates {name}, as variant {other} does: two objects of one name \
                         cannot share a copy"
                    ))
                } else {
                    named.extend(names.iter().map(|n| (n.clone(), v.name.clone())));
                    Sharing::Shared {
                        creates,
                        names,
                        drops,
                    }
                }
            }
            other => other,
        })
        .collect();
    let caches: Vec<CacheState> = spec
        .cache_axis()
        .into_iter()
        .filter(|c| options.cache.is_empty() || options.cache.contains(c))
        .collect();
    if caches.is_empty() {
        return Err(fail(
            "--cache leaves none of the experiment's cache states",
            format!(
                "the experiment measures: {}",
                spec.cache_axis()
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let screening = match (options.screen_only, options.screen || spec.screen) {
        (true, _) => Screening::Only,
        (false, true) => Screening::Also,
        (false, false) => Screening::No,
    };
    let workload = spec
        .workload
        .as_ref()
        .map(|w: &WorkloadSpec| {
            Ok::<_, anyhow::Error>(Workload {
                about: w.about.clone(),
                batches: w.batches,
                seed: w.seed,
                sql: substitute(&w.sql, &vars, "workload")?,
            })
        })
        .transpose()?;
    Ok(Plan {
        name: spec.name.clone(),
        about: spec.about.trim().to_string(),
        seed: spec.seed.clone(),
        path: spec.path.clone(),
        scale,
        queries: queries(spec, &vars)?,
        vars,
        variants,
        builds,
        settings: spec
            .settings_axis()
            .into_iter()
            .map(|(name, values)| Settings { name, values })
            .collect(),
        caches,
        schedule,
        limits,
        prewarm: spec.prewarm.clone(),
        workload,
        table_stats: spec.table_stats.clone(),
        maintenance: spec.maintenance,
        load: spec.load.clone(),
        screening,
        rebuild: options.rebuild,
        shard: options.shard,
    })
}

/// The baseline, the candidates (`--only` narrows them) and the A/A control.
fn variants(
    spec: &Spec,
    only: &[String],
    shard: Option<Shard>,
    control: bool,
    vars: &[(String, String)],
) -> Result<Vec<Variant>> {
    for name in only {
        if !spec.variants.contains_key(name) {
            return Err(fail(
                format!("--only names an unknown variant {name:?}"),
                format!(
                    "variants of {}: {}",
                    spec.name,
                    spec.variants.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    let candidates: Vec<&String> = spec
        .variants
        .keys()
        .filter(|n| **n != spec.baseline)
        .collect();
    let mut names = vec![spec.baseline.clone()];
    names.extend(
        candidates
            .iter()
            .enumerate()
            .filter(|(i, n)| {
                (only.is_empty() || only.contains(n)) && shard.is_none_or(|s| s.takes(*i))
            })
            .map(|(_, n)| (*n).clone()),
    );
    if let Some(shard) = shard
        && names.len() == 1
    {
        return Err(fail(
            format!(
                "shard {shard} of {} has no variant: it has {} besides the baseline",
                spec.name,
                candidates.len()
            ),
            format!("split it into at most {} shards", candidates.len().max(1)),
        ));
    }
    let mut variants = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        let sql = substitute(&spec.variant_sql(&name)?, vars, &format!("variant {name}"))?;
        let about = spec
            .variants
            .get(&name)
            .map(|v| v.about.trim().to_string())
            .unwrap_or_default();
        let server_settings = spec.variant_server_settings(&name);
        let about = if server_settings.is_empty() {
            about
        } else {
            let set: Vec<String> = server_settings
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!(
                "{about} (server settings during its load: {})",
                set.join(", ")
            )
        };
        variants.push(Variant {
            name,
            about,
            sql,
            server_settings,
            server_settings_restart: false,
            role: if i == 0 {
                Role::Baseline
            } else {
                Role::Candidate
            },
        });
    }
    // The control measures the noise of EXPLAIN cells, and what differs between two
    // identical databases' loads (its load takes turns with the variants').
    if control
        && (!spec.queries.is_empty() || spec.load.is_some())
        && let Some(baseline) = variants.first()
    {
        let control = Variant {
            name: super::matrix::CONTROL.to_string(),
            about: format!(
                "a second copy of the baseline `{}`, built and measured like every variant: its difference from the baseline is this run's noise floor",
                baseline.name
            ),
            sql: baseline.sql.clone(),
            server_settings: baseline.server_settings.clone(),
            server_settings_restart: false,
            role: Role::Control,
        };
        variants.push(control);
    }
    Ok(variants)
}

fn queries(spec: &Spec, vars: &[(String, String)]) -> Result<Vec<PlannedQuery>> {
    let mut out = Vec::new();
    for (name, q) in &spec.queries {
        let params = match (&q.params_from, &q.params) {
            (Some(sql), _) => {
                ParamSource::From(substitute(sql, vars, &format!("query {name} params_from"))?)
            }
            (None, Some(sets)) => ParamSource::Literal(
                sets.iter()
                    .map(|set| {
                        set.iter()
                            .map(|v| {
                                let TextParam(text) = yaml_param(v);
                                Ok(TextParam(
                                    text.map(|t| substitute(&t, vars, name)).transpose()?,
                                ))
                            })
                            .collect::<Result<Vec<_>>>()
                    })
                    .collect::<Result<_>>()?,
            ),
            (None, None) => ParamSource::Literal(vec![Vec::new()]),
        };
        let forms = q
            .sql
            .forms()
            .into_iter()
            .map(|f| {
                Ok(Form {
                    name: f.name,
                    sql: substitute(f.sql.trim(), vars, name)?,
                    variants: f.variants,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.push(PlannedQuery {
            query: Query {
                name: name.clone(),
                about: q.about.trim().to_string(),
                forms,
                params: Vec::new(),
                rollback: q.rollback,
                prepared: q.prepared,
                verify: q
                    .verify
                    .as_ref()
                    .map(|v| substitute(v, vars, name))
                    .transpose()?,
                variants: q.variants.clone(),
                caches: spec.cache_of(q),
                target_ms: q
                    .target
                    .as_deref()
                    .and_then(super::spec::parse_duration)
                    .map(|d| d.as_secs_f64() * 1000.0),
            },
            params,
            labels: q.labels.clone(),
        });
    }
    Ok(out)
}
