//! Running an experiment, phase by phase, each returning what it measured:
//!
//! 1. **dataset**: the base, cached (`databases`);
//! 2. **plan**: the matrix of cells and the stages that fit the disk (`plan`);
//! 3. per stage: **build** every variant's copy (`build`), then its **workload** and
//!    table statistics; **measure** the read cells in interleaved rounds, then their
//!    per-node plans and the **equivalence** of query forms; the same for the DML cells
//!    (reads first: a rolled-back DELETE still clears visibility-map bits); then each
//!    leaving variant's **load** and **maintenance**, and its copy is dropped;
//! 4. the **analysis** (`crate::experiment::analysis`) turns the samples into statistics
//!    before any reporter reads them.
//!
//! Measuring in rounds: every round visits every cell once, in a seeded random order,
//! on a session per variant and settings set that stays open all along; so machine
//! drift falls on all variants alike, and each cell is compared with its reference
//! round by round.

pub mod build;
pub mod evict;
pub mod measure;
pub mod plan;

use std::collections::{HashMap, HashSet};

use anyhow::{Result, bail};
use postgres::Client;

use self::build::Built;
use self::measure::{Run, Session, Statement};
use super::databases::{check_can_create_databases, prepare_base};
use super::matrix::{
    CacheState, CellKey, FormId, Matrix, ParamsId, QueryId, Role, Schedule, SettingsId, VariantId,
};
use super::progress::Progress;
use super::result::*;
use super::settings::{self, Classified, ServerWide};
use super::spec::{Spec, scaled_vars, substitute};
use super::tables;
use crate::error::Interrupted;
use crate::explain::{PlanNode, PlanSummary};
use crate::target::{Target, connect};

/// Default number of rounds: the measured runs of a cell are spread over this many.
pub const DEFAULT_ROUNDS: usize = 20;

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
}

/// With a budget, a cell whose median's 95% interval is within this share of the median
/// has been measured enough.
pub const TIGHT: f64 = 0.02;

/// A cell faster than this (execution time in the warmup) runs a block of several runs
/// per round, and the round's median of the block is what is compared: one run of a
/// 20 µs query is mostly timer and scheduler noise.
pub const FAST_CELL_MS: f64 = 1.0;
/// The largest block a fast cell gets.
pub const MAX_BLOCK: usize = 10;

/// Runs per round of a cell whose warmup execution took `warm_ms`: enough to add up to
/// about [`FAST_CELL_MS`], at least the schedule's block, at most [`MAX_BLOCK`].
pub fn block_for(warm_ms: Option<f64>, block: usize) -> usize {
    let wanted = match warm_ms {
        Some(ms) if ms > 0.0 && ms < FAST_CELL_MS => (FAST_CELL_MS / ms).ceil() as usize,
        _ => 1,
    };
    wanted.clamp(1, MAX_BLOCK).max(block)
}

/// The backend a cell runs on: one per cell (copy, settings set, query, form and
/// parameter set), so that a backend's history is that cell's statement and nothing else. A backend's history changes
/// its speed: on index-strategies, a session that had run one 10,000-block sequential scan
/// (id-range) answered the 16-partition lookup-by-referenced in 57 µs ever after, one that
/// had not in 28 µs (same database, same plan, same buffers), so copies measured on
/// sessions shared by every query differed by up to 2× between identical copies.
type SessionKey = (VariantId, SettingsId, QueryId, FormId, ParamsId);

/// Sessions kept open at once; past it the least recently used is closed (and primed
/// again when next used). Well under PostgreSQL's default `max_connections` of 100.
pub const MAX_SESSIONS: usize = 48;

/// Rounds of a cold or prewarmed cell without a budget: each run costs an eviction (a
/// server restart), so fewer than warm cells get, but enough for a 95% interval, and no
/// fewer than the sign test needs to call a change over the matrix (`runs.min`).
pub const COLD_ROUNDS: usize = 6;

pub fn run(
    target: &Target,
    spec: &Spec,
    options: &RunOptions,
    progress: &mut Progress,
) -> Result<ExperimentResult> {
    let load_before = super::environment::load_average();
    let run_started = std::time::Instant::now();
    let scale = options.scale.unwrap_or(spec.dataset.scale);
    let mut runs = RunsUsed {
        warmup: options.warmup.unwrap_or(spec.runs.warmup),
        repeat: options.repeat.unwrap_or(spec.runs.repeat).max(1),
        timeout_ms: u64::try_from(spec.timeout()?.as_millis()).unwrap_or(u64::MAX),
        budget_ms: options
            .budget
            .or(spec.budget()?)
            .map(|b| u64::try_from(b.as_millis()).unwrap_or(u64::MAX)),
        min: 0,
        min_in_rounds: true,
    };
    let schedule = Schedule::new(
        options
            .seed
            .or(spec.runs.seed)
            .unwrap_or_else(|| fastrand::u64(..)),
        runs.repeat,
        options
            .rounds
            .or(spec.runs.rounds)
            .unwrap_or(DEFAULT_ROUNDS),
        runs.warmup,
    );
    let mut admin = connect(&target.admin_config())?;
    let base = dataset(&mut admin, target, spec, options, progress)?;
    let dataset_seconds = run_started.elapsed().as_secs_f64();
    let vars = scaled_vars(spec, scale);
    let control = options.control.unwrap_or(spec.runs.control);
    let matrix = plan::matrix(
        target,
        spec,
        &options.only,
        &options.cache,
        control,
        &base.info.database,
        &vars,
    )?;
    // The fewest rounds a budget leaves a cell with: enough that the sign test can call a
    // change over this matrix's comparisons, unless the file says otherwise.
    runs.min = spec
        .runs
        .min
        .unwrap_or_else(|| crate::stats::rounds_to_call(matrix.comparisons()))
        .clamp(1, schedule.rounds.max(1));
    let classified = {
        let mut client = connect(&target.config_for(&base.info.database))?;
        matrix
            .settings
            .iter()
            .map(|s| settings::classify(&mut client, &s.values, target.is_embedded()))
            .collect::<Result<Vec<_>>>()?
    };
    let screening_started = std::time::Instant::now();
    let screening = if options.screen || options.screen_only || spec.screen {
        let reference = classified.first().cloned().unwrap_or_default();
        let inputs = super::screen::Inputs {
            target,
            base: &base.info.database,
            experiment: &spec.name,
            matrix: &matrix,
            reference: &reference,
            timeout_ms: runs.timeout_ms,
        };
        Some(super::screen::run(&inputs, &mut admin, progress)?)
    } else {
        None
    };
    let screening_seconds = screening_started.elapsed().as_secs_f64();
    if options.screen_only {
        let engine = Engine::new(
            target, spec, matrix, schedule, runs, vars, base, classified, admin, progress,
        );
        let mut result = engine.into_result(Vec::new(), false)?;
        result.cells.clear();
        result.scale = scale;
        result.screening = screening.map(|s| Screening { only: true, ..s });
        result.wall = None;
        result.environment.load_before = load_before;
        result.environment.load_after = super::environment::load_average();
        return Ok(result);
    }
    let kept = if matrix.control().is_some() { 2 } else { 1 };
    let copy_bytes: i64 = admin
        .query_one(
            "SELECT pg_database_size($1::text::name)",
            &[&base.info.database],
        )?
        .get(0);
    let stages = plan::stages(
        matrix.variants.len(),
        kept,
        u64::try_from(copy_bytes).unwrap_or(0),
        plan::free_disk(&mut admin),
    )?;

    let mut engine = Engine::new(
        target, spec, matrix, schedule, runs, vars, base, classified, admin, progress,
    );
    engine.rebuild = options.rebuild;
    let interrupted = match engine.run_stages(&stages, kept) {
        Ok(()) => false,
        Err(err) if err.downcast_ref::<Interrupted>().is_some() => true,
        Err(err) => return Err(err),
    };
    let mut result = engine.into_result(stages, interrupted)?;
    result.scale = scale;
    result.screening = screening;
    // The run's in-use locks went with its sessions: keep the variant cache in budget.
    let mut admin = connect(&target.admin_config())?;
    let free = plan::free_disk(&mut admin);
    let budget = super::variants::budget(&mut admin, free)?;
    for name in super::variants::evict(&mut admin, budget)? {
        progress.line(&format!(
            "dropped {name} from the variant cache (disk budget)"
        ));
    }
    result.environment.load_before = load_before;
    result.environment.load_after = super::environment::load_average();
    if let Some(wall) = &mut result.wall {
        wall.dataset = dataset_seconds;
        wall.screening = screening_seconds;
        wall.total = run_started.elapsed().as_secs_f64();
    }
    super::analysis::analyze(&mut result);
    Ok(result)
}

/// The experiment's base: reused from the cache or built (migrations, steps, VACUUM ANALYZE).
pub fn prepare_dataset(
    target: &Target,
    spec: &Spec,
    options: &RunOptions,
    progress: &mut Progress,
) -> Result<DatasetInfo> {
    let mut admin = connect(&target.admin_config())?;
    Ok(dataset(&mut admin, target, spec, options, progress)?.info)
}

fn dataset(
    admin: &mut Client,
    target: &Target,
    spec: &Spec,
    options: &RunOptions,
    progress: &mut Progress,
) -> Result<super::databases::Base> {
    check_can_create_databases(admin)?;
    for name in super::gc::drop_orphans(admin)? {
        progress.line(&format!(
            "dropped {name}, left behind by a pgx that is gone"
        ));
    }
    let scale = options.scale.unwrap_or(spec.dataset.scale);
    progress.set_total(spec.dataset.steps.len() as u64 + 2);
    let base = prepare_base(
        target,
        admin,
        spec,
        scale,
        options.rebuild,
        &mut |step, done| match done {
            None => progress.message(&format!("dataset: {step}")),
            Some(seconds) => {
                progress.tick(1);
                progress.line(&format!("dataset step {step}: {seconds:.1}s"));
            }
        },
    )?;
    if base.info.reused {
        progress.line(&format!(
            "dataset: reusing cached base {} (built in {:.1}s for {})",
            base.info.database, base.info.build_seconds, base.info.built_for
        ));
    }
    Ok(base)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Reads,
    Writes,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Reads => "reads",
            Phase::Writes => "writes",
        }
    }
}

/// A cell's statement, owned (see `Engine::statement_of`).
struct CellStatement {
    sql: String,
    params: Vec<crate::db::TextParam>,
    rollback: bool,
    /// Its prepared statement's name, one per cell.
    prepared: Option<String>,
}

impl CellStatement {
    fn borrowed(&self) -> Statement<'_> {
        Statement {
            sql: &self.sql,
            params: &self.params,
            rollback: self.rollback,
            prepared: self.prepared.as_deref(),
        }
    }
}

/// What one cell has measured so far.
#[derive(Default)]
struct CellState {
    samples: Vec<Sample>,
    signatures: Vec<String>,
    plan: Option<PlanSummary>,
    timed_plan: Option<PlanNode>,
    error: Option<String>,
    partitions_total: u64,
    eviction: Option<String>,
    /// Execution time of the last warmup run (sizes the cell's block).
    warm_ms: Option<f64>,
    /// Runs per round.
    block: usize,
}

struct Engine<'a> {
    target: &'a Target,
    spec: &'a Spec,
    matrix: Matrix,
    schedule: Schedule,
    runs: RunsUsed,
    vars: Vec<(String, String)>,
    base: super::databases::Base,
    /// Per settings set: how it is applied.
    settings: Vec<Classified>,
    /// Build every variant again even when a cached build matches.
    rebuild: bool,
    admin: Client,
    progress: &'a mut Progress,
    /// Per matrix position.
    cells: Vec<CellState>,
    /// Per variant id.
    variants: Vec<VariantResult>,
    built: HashMap<VariantId, Built>,
    /// One backend per cell ([`SessionKey`]), at most [`MAX_SESSIONS`].
    sessions: HashMap<SessionKey, Session>,
    /// Counts uses of sessions: each session's `last_used` is a reading of it.
    session_clock: u64,
    /// Server-clock time of the last server-wide reload pgx caused.
    last_reload: f64,
    rounds_run: Vec<RoundRun>,
    /// Per query: the equivalence checks of its forms.
    equivalence: Vec<Vec<Equivalence>>,
    /// For the progress estimate: when measuring began, EXPLAINs still to run and the
    /// wall time one run took, per cell; builds still to do and what they took.
    started: std::time::Instant,
    runs_left: Vec<u64>,
    cost: Vec<Option<f64>>,
    /// Wall time of every cell's measured runs so far (for the budget).
    spent: Vec<f64>,
    builds_left: usize,
    build_seconds: Vec<f64>,
    checked: HashSet<FormsOf>,
    /// Where the run's time went, for the report.
    wall: WallTimes,
}

/// The cells whose forms are checked against each other: variant, settings, query, params.
type FormsOf = (VariantId, SettingsId, usize, usize);

impl<'a> Engine<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        target: &'a Target,
        spec: &'a Spec,
        matrix: Matrix,
        schedule: Schedule,
        runs: RunsUsed,
        vars: Vec<(String, String)>,
        base: super::databases::Base,
        settings: Vec<Classified>,
        admin: Client,
        progress: &'a mut Progress,
    ) -> Engine<'a> {
        let mut cells: Vec<CellState> = matrix.cells.iter().map(|_| CellState::default()).collect();
        for (state, key) in cells.iter_mut().zip(&matrix.cells) {
            if let Some(reason) = &settings[key.settings.0].not_applicable {
                state.error = Some(format!("not applicable: {reason}"));
            }
        }
        let variants = matrix
            .variants
            .iter()
            .map(|v| VariantResult {
                name: v.name.clone(),
                about: v.about.clone(),
                control: v.role == Role::Control,
                cached: false,
                statements: Vec::new(),
                relations: Vec::new(),
                error: None,
                workload: None,
                table_stats: Vec::new(),
                maintenance: Vec::new(),
                load: None,
            })
            .collect();
        let equivalence = vec![Vec::new(); matrix.queries.len()];
        let (cell_count, variant_count) = (matrix.cells.len(), matrix.variants.len());
        Engine {
            target,
            spec,
            matrix,
            schedule,
            runs,
            vars,
            base,
            settings,
            rebuild: false,
            admin,
            progress,
            cells,
            variants,
            built: HashMap::new(),
            sessions: HashMap::new(),
            session_clock: 0,
            last_reload: 0.0,
            rounds_run: Vec::new(),
            equivalence,
            checked: HashSet::new(),
            started: std::time::Instant::now(),
            runs_left: vec![0; cell_count],
            cost: vec![None; cell_count],
            spent: vec![0.0; cell_count],
            builds_left: variant_count,
            build_seconds: Vec::new(),
            wall: WallTimes::default(),
        }
    }

    /// Every EXPLAIN each cell will run: per stage it is measured in, the warmup, the
    /// rounds and the timed plan.
    fn plan_progress(&mut self, stages: usize) {
        let s = self.schedule;
        let warm = (s.warmup + s.rounds * s.block + 1) as u64;
        let cold = self.cold_rounds() as u64;
        for (i, key) in self.matrix.cells.iter().enumerate() {
            let per_stage = if self.matrix.cache(key) == CacheState::Warm {
                warm
            } else {
                cold
            };
            let visits = match self.matrix.variant(key.variant).role {
                Role::Candidate => 1,
                Role::Baseline | Role::Control => stages.max(1) as u64,
            };
            self.runs_left[i] = if self.cells[i].error.is_some() {
                0
            } else {
                per_stage * visits
            };
        }
        self.started = std::time::Instant::now();
    }

    /// Time left: the EXPLAINs still to run at what each took so far (cells not yet
    /// run at the median of those that did), plus the builds at their average.
    fn update_progress(&mut self) {
        let mut known: Vec<f64> = self.cost.iter().flatten().copied().collect();
        known.sort_by(f64::total_cmp);
        let typical = if known.is_empty() {
            0.01
        } else {
            crate::stats::percentile(&known, 50.0)
        };
        let runs: f64 = self
            .runs_left
            .iter()
            .zip(&self.cost)
            .map(|(n, c)| *n as f64 * c.unwrap_or(typical))
            .sum();
        let build = if self.build_seconds.is_empty() {
            1.0
        } else {
            self.build_seconds.iter().sum::<f64>() / self.build_seconds.len() as f64
        };
        let left = runs + self.builds_left as f64 * build;
        self.progress.estimate(
            self.started.elapsed(),
            std::time::Duration::from_secs_f64(left.clamp(0.0, 1e9)),
        );
    }

    /// One EXPLAIN of `cell` done in `seconds`.
    fn ran(&mut self, cell: usize, seconds: f64) {
        self.runs_left[cell] = self.runs_left[cell].saturating_sub(1);
        self.cost[cell] = Some(match self.cost[cell] {
            Some(c) => 0.8 * c + 0.2 * seconds,
            None => seconds,
        });
    }

    fn run_stages(&mut self, stages: &[std::ops::Range<usize>], kept: usize) -> Result<()> {
        self.plan_progress(stages.len());
        let baseline_and_control: Vec<VariantId> = self
            .matrix
            .variants
            .iter()
            .enumerate()
            .filter(|(_, v)| v.role != Role::Candidate)
            .map(|(i, _)| VariantId(i))
            .collect();
        // Candidates are the variants that are neither baseline nor control, in order.
        let candidates: Vec<VariantId> = self
            .matrix
            .variants
            .iter()
            .enumerate()
            .filter(|(_, v)| v.role == Role::Candidate)
            .map(|(i, _)| VariantId(i))
            .collect();
        debug_assert_eq!(baseline_and_control.len(), kept);
        let rounds = self.schedule.rounds;
        for (s, range) in stages.iter().enumerate() {
            let last = s + 1 == stages.len();
            let mut stage = baseline_and_control.clone();
            stage.extend(candidates[range.clone()].iter().copied());
            // The baseline and control stay until the last stage.
            let leaving: Vec<VariantId> = stage
                .iter()
                .copied()
                .filter(|v| last || self.matrix.variant(*v).role == Role::Candidate)
                .collect();
            self.stage(&stage, s * rounds, &leaving)?;
        }
        Ok(())
    }

    fn stage(
        &mut self,
        stage: &[VariantId],
        round_offset: usize,
        leaving: &[VariantId],
    ) -> Result<()> {
        for &v in stage {
            if !self.built.contains_key(&v) && self.variants[v.0].error.is_none() {
                self.build(v)?;
            }
        }
        for phase in [Phase::Reads, Phase::Writes] {
            for warm in [true, false] {
                let cells: Vec<usize> = self
                    .matrix
                    .cells
                    .iter()
                    .enumerate()
                    .filter(|(i, k)| {
                        stage.contains(&k.variant)
                            && self.built.contains_key(&k.variant)
                            && self.cells[*i].error.is_none()
                            && (self.matrix.query(k.query).rollback == (phase == Phase::Writes))
                            && ((self.matrix.cache(k) == CacheState::Warm) == warm)
                    })
                    .map(|(i, _)| i)
                    .collect();
                if cells.is_empty() {
                    continue;
                }
                if warm {
                    self.measure(&cells, phase, round_offset)?;
                    let started = std::time::Instant::now();
                    self.timed_plans(&cells)?;
                    self.equivalence(&cells)?;
                    self.wall.plans += started.elapsed().as_secs_f64();
                } else {
                    self.measure_cold(&cells, phase, round_offset)?;
                }
            }
        }
        let started = std::time::Instant::now();
        for &v in leaving {
            self.finish(v)?;
        }
        self.wall.finish += started.elapsed().as_secs_f64();
        Ok(())
    }

    /// Build phase of one variant: its copy and statements, then the workload and the
    /// table statistics around it. A failure is the variant's, not the run's.
    fn build(&mut self, v: VariantId) -> Result<()> {
        let variant = self.matrix.variant(v).clone();
        self.update_progress();
        self.progress
            .message(&format!("{}: building its copy", variant.name));
        let started = std::time::Instant::now();
        let built = build::variant(
            self.target,
            &mut self.admin,
            &self.base.info.database,
            &self.spec.name,
            &variant,
            self.rebuild,
        );
        self.builds_left = self.builds_left.saturating_sub(1);
        let seconds = started.elapsed().as_secs_f64();
        self.build_seconds.push(seconds);
        self.wall.builds += seconds;
        if let Ok(built) = &built
            && !built.cached
        {
            self.wall.statements += built.statements.iter().map(|t| t.seconds).sum::<f64>();
        }
        let built = match built {
            Ok(built) => built,
            Err(err) => return self.variant_failed(v, err),
        };
        self.variants[v.0].statements = built.statements.clone();
        self.variants[v.0].cached = built.cached;
        self.variants[v.0].relations = built.relations.clone();
        let config = built.config.clone();
        self.built.insert(v, built);
        let started = std::time::Instant::now();
        let workload = self.workload(v, &config);
        self.wall.builds += started.elapsed().as_secs_f64();
        if let Err(err) = workload {
            return self.variant_failed(v, err);
        }
        Ok(())
    }

    fn variant_failed(&mut self, v: VariantId, err: anyhow::Error) -> Result<()> {
        if err.downcast_ref::<Interrupted>().is_some() {
            return Err(err);
        }
        let name = &self.matrix.variant(v).name;
        self.progress
            .line(&format!("variant {name} failed: {err:#}"));
        self.variants[v.0].error = Some(format!("{err:#}"));
        for (i, key) in self.matrix.cells.iter().enumerate() {
            if key.variant == v {
                self.runs_left[i] = 0;
            }
        }
        self.sessions.retain(|key, _| key.0 != v);
        self.built.remove(&v);
        Ok(())
    }

    fn workload(&mut self, v: VariantId, config: &postgres::Config) -> Result<()> {
        let spec = self.spec;
        if spec.workload.is_none() && spec.table_stats.is_empty() {
            return Ok(());
        }
        let mut client = connect(config)?;
        let pgstattuple = !spec.table_stats.is_empty() && tables::enable_pgstattuple(&mut client);
        let before = tables::snapshot(&mut client, &spec.table_stats, pgstattuple)?;
        if let Some(workload) = &spec.workload {
            self.progress
                .message(&format!("{}: workload", self.matrix.variant(v).name));
            let sql = substitute(&workload.sql, &self.vars, "workload")?;
            self.variants[v.0].workload = Some(tables::run_workload(&mut client, workload, &sql)?);
        }
        let after = tables::snapshot(&mut client, &spec.table_stats, pgstattuple)?;
        self.variants[v.0].table_stats = before
            .into_iter()
            .zip(after)
            .map(|((table, before), (_, after))| TableStatsChange {
                table,
                before,
                after,
            })
            .collect();
        Ok(())
    }

    /// Measurement phase: a warmup round, then the schedule's rounds, every round in its
    /// own seeded order, each cell for its block of runs (more than one for cells
    /// faster than [`FAST_CELL_MS`]). Rounds are numbered from `round_offset`, so a cell measured in
    /// several stages (the baseline) pairs with each stage's variants on their rounds.
    fn measure(&mut self, cells: &[usize], phase: Phase, round_offset: usize) -> Result<()> {
        let salt = |round: usize| ((round as u64) << 1) | (phase == Phase::Writes) as u64;
        if self.schedule.warmup > 0 {
            let order = self
                .schedule
                .order(salt(usize::MAX >> 1), &self.groups(cells));
            self.round(&order, None)?;
        }
        // The blocks, now that the warmup showed how fast the cells are: one block for all
        // the cells of a query and parameter set (every variant, settings set, form), so
        // a cell and its reference always run the same number of runs in a row (later
        // runs of a block are faster than its first: blocks of different sizes would be a
        // difference of their own). Sized from the group's median warmup time.
        let mut groups: HashMap<(usize, usize), Vec<usize>> = HashMap::new();
        for &c in cells {
            let key = self.matrix.cells[c];
            groups
                .entry((key.query.0, key.params.0))
                .or_default()
                .push(c);
        }
        for members in groups.values() {
            let mut warm: Vec<f64> = members
                .iter()
                .filter_map(|&c| self.cells[c].warm_ms)
                .collect();
            warm.sort_by(f64::total_cmp);
            let median = (!warm.is_empty()).then(|| crate::stats::percentile(&warm, 50.0));
            let block = block_for(median, self.schedule.block);
            let extra = (block - self.schedule.block.min(block)) * self.schedule.rounds;
            for &c in members {
                self.cells[c].block = block;
                self.runs_left[c] = self.runs_left[c].saturating_add(extra as u64);
            }
        }
        let mut active = cells.to_vec();
        for r in 0..self.schedule.rounds {
            let round = round_offset + r;
            let order = self.schedule.order(salt(round), &self.groups(&active));
            self.rounds_run.push(RoundRun {
                round,
                phase: phase.name().to_string(),
                cells: order.concat(),
            });
            // Fresh backends every round: a backend settles into a speed of its own (the
            // heap its allocator grew, the huge pages it got), so one session per cell
            // for the whole run would pair one draw of the baseline's with one of the
            // variant's; a session per round pairs as many draws as there are rounds.
            self.sessions.clear();
            self.round(&order, Some(round))?;
            if let Some(budget) = self.runs.budget_ms {
                active = self.still_measuring(&active, budget as f64 / 1000.0);
                if active.is_empty() {
                    break;
                }
            }
        }
        Ok(())
    }

    /// With a budget: the cells that go on to the next round. A cell is done once it has
    /// run in `min` rounds and either spent its budget or has a median tight to ±2% (over
    /// its rounds' medians, the unit the comparison pairs); but a cell stays while any
    /// cell compared with it goes on, so every run of a cell has its reference's run in
    /// the same round.
    fn still_measuring(&mut self, active: &[usize], budget: f64) -> Vec<usize> {
        let min = self.runs.min;
        let done = |c: usize| {
            let state = &self.cells[c];
            if state.error.is_some() {
                return true;
            }
            let samples: Vec<(usize, f64)> = state
                .samples
                .iter()
                .map(|s| (s.round, s.execution_ms))
                .collect();
            let mut times = crate::stats::round_medians(&samples);
            if times.len() < min {
                return false;
            }
            times.sort_by(f64::total_cmp);
            let median = crate::stats::percentile(&times, 50.0);
            let tight = crate::stats::median_ci(&times, 0.95)
                .is_some_and(|(lo, hi)| (hi - lo) / 2.0 <= TIGHT * median);
            tight || self.spent[c] >= budget
        };
        let mut keep: HashSet<usize> = active.iter().copied().filter(|&c| !done(c)).collect();
        loop {
            let needed: Vec<usize> = keep
                .iter()
                .filter_map(|&c| {
                    let reference = self.matrix.reference_of(&self.matrix.cells[c])?;
                    self.matrix.position(&reference)
                })
                .filter(|r| active.contains(r) && !keep.contains(r))
                .collect();
            if needed.is_empty() {
                break;
            }
            keep.extend(needed);
        }
        for &c in active {
            if !keep.contains(&c) {
                // Only its per-node plan is left to run.
                self.runs_left[c] = self.runs_left[c].min(1);
            }
        }
        active
            .iter()
            .copied()
            .filter(|c| keep.contains(c))
            .collect()
    }

    fn cold_rounds(&self) -> usize {
        if self.runs.budget_ms.is_some() {
            self.schedule.rounds
        } else {
            // No fewer than a call needs: with fewer, a cold cell could never be called.
            self.schedule.rounds.min(COLD_ROUNDS.max(self.runs.min))
        }
    }

    /// Cold and prewarmed cells, in rounds of their own (evicting the caches would spoil
    /// the warm cells'): every round visits every such cell once, in a seeded random
    /// order, one run per visit, right after an eviction. One eviction serves one cell of
    /// each variant: copies share no buffers or files, so a cell cannot warm another
    /// variant's. Cells under server-wide settings are not measured cold (a restart
    /// would have to re-apply them).
    fn measure_cold(&mut self, cells: &[usize], phase: Phase, round_offset: usize) -> Result<()> {
        let mut active: Vec<usize> = Vec::new();
        for &c in cells {
            let key = self.matrix.cells[c];
            if self.settings[key.settings.0].server.is_empty() {
                active.push(c);
            } else {
                self.fail(
                    c,
                    "not measured cold: its settings apply to the whole server, and evicting the caches restarts it".into(),
                );
            }
        }
        let salt = |round: usize| ((round as u64) << 2) | 2 | (phase == Phase::Writes) as u64;
        for r in 0..self.cold_rounds() {
            let round = round_offset + r;
            let order = self.schedule.order(salt(round), &[active.clone()]).concat();
            self.rounds_run.push(RoundRun {
                round,
                phase: format!("{} (cold)", phase.name()),
                cells: order.clone(),
            });
            // Batches of at most one cell per variant, in the round's order.
            let mut batches: Vec<Vec<usize>> = Vec::new();
            for cell in order {
                let variant = self.matrix.cells[cell].variant;
                match batches
                    .iter_mut()
                    .find(|b| b.iter().all(|c| self.matrix.cells[*c].variant != variant))
                {
                    Some(batch) => batch.push(cell),
                    None => batches.push(vec![cell]),
                }
            }
            for batch in batches {
                let batch: Vec<usize> = batch
                    .into_iter()
                    .filter(|c| self.cells[*c].error.is_none())
                    .collect();
                if batch.is_empty() {
                    continue;
                }
                self.cold_batch(&batch, round)?;
            }
            if let Some(budget) = self.runs.budget_ms {
                active = self.still_measuring(&active, budget as f64 / 1000.0);
                if active.is_empty() {
                    break;
                }
            }
        }
        Ok(())
    }

    /// One eviction, then one run of each cell of the batch (each in its own variant).
    fn cold_batch(&mut self, batch: &[usize], round: usize) -> Result<()> {
        crate::interrupt::check()?;
        self.update_progress();
        let databases: Vec<String> = batch
            .iter()
            .filter_map(|c| self.built.get(&self.matrix.cells[*c].variant))
            .map(|b| b.copy.name.clone())
            .collect();
        self.progress
            .message("evicting the caches (restarting the server)");
        self.sessions.clear();
        let started = std::time::Instant::now();
        let evicted = evict::evict(self.target, &mut self.admin, &databases)?;
        if evicted.shared_buffers {
            self.after_restart()?;
        }
        self.wall.evictions += started.elapsed().as_secs_f64();
        let shortfall = evicted.shortfall();
        for &cell in batch {
            self.cells[cell].eviction = shortfall.clone();
            let started = std::time::Instant::now();
            let prewarmed = if self.matrix.cache(&self.matrix.cells[cell]) == CacheState::Prewarmed
            {
                self.prewarm(cell)
            } else {
                Ok(())
            };
            self.wall.evictions += started.elapsed().as_secs_f64();
            if let Err(err) = prewarmed {
                self.fail(cell, format!("pg_prewarm failed: {err:#}"));
                continue;
            }
            self.visit(cell, 1, Some(round))?;
        }
        Ok(())
    }

    /// Load the experiment's `prewarm:` relations into shared buffers, on the cell's session.
    fn prewarm(&mut self, cell: usize) -> Result<()> {
        let key = self.matrix.cells[cell];
        let relations = self.spec.prewarm.clone();
        let session = self.session(&key)?;
        session
            .client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")?;
        for relation in &relations {
            // A relation one variant lacks (another's index) is skipped; a partitioned
            // one is prewarmed partition by partition.
            session
                .client
                .query(
                    "WITH r AS (SELECT to_regclass($1) AS rel), \
                     leaves AS (SELECT t.relid FROM r, pg_partition_tree(r.rel) t WHERE t.isleaf \
                                UNION ALL SELECT r.rel FROM r WHERE r.rel IS NOT NULL \
                                AND NOT EXISTS (SELECT 1 FROM pg_partition_tree(r.rel))) \
                     SELECT pg_prewarm(relid) FROM leaves",
                    &[relation],
                )
                .map_err(|e| {
                    anyhow::anyhow!("{relation}: {}", crate::error::describe_pg_error(&e, None))
                })?;
        }
        Ok(())
    }

    /// The server restarted: every connection is gone. Connect again and take back what
    /// this run holds: its admin session, the base's and the cached builds' in-use
    /// locks, each copy's owner lock.
    fn after_restart(&mut self) -> Result<()> {
        self.sessions.clear();
        self.admin = connect(&self.target.admin_config())?;
        let mut held = vec![self.base.info.database.clone()];
        held.extend(self.built.values().filter_map(|b| b.template.clone()));
        for name in held {
            self.admin.execute(
                "SELECT pg_advisory_lock_shared(hashtext($1))",
                &[&super::databases::in_use_lock(&name)],
            )?;
        }
        for built in self.built.values_mut() {
            built.copy.reown(self.target)?;
        }
        Ok(())
    }

    /// Cells grouped by the server-wide settings they need: one group for everything
    /// set per session, one per settings set with server-wide values.
    fn groups(&self, cells: &[usize]) -> Vec<Vec<usize>> {
        let mut groups: Vec<Vec<usize>> = vec![Vec::new(); self.settings.len() + 1];
        for &c in cells {
            let s = self.matrix.cells[c].settings.0;
            let group = if self.settings[s].server.is_empty() {
                0
            } else {
                s + 1
            };
            groups[group].push(c);
        }
        groups
    }

    /// One round: every group in the given order, each under its server-wide settings
    /// (applied by a guard that undoes them on any exit), `runs` runs per cell.
    /// `round` None is the warmup round (the schedule's warmup runs per cell); a measured
    /// round runs each cell's block.
    fn round(&mut self, order: &[Vec<usize>], round: Option<usize>) -> Result<()> {
        for group in order {
            let Some(&first) = group.first() else {
                continue;
            };
            let guard = self.server_settings(self.matrix.cells[first].settings)?;
            for &cell in group {
                let runs = match round {
                    None => self.schedule.warmup,
                    Some(_) => self.cells[cell].block.max(1),
                };
                self.visit(cell, runs, round)?;
            }
            if let Some(guard) = guard {
                self.last_reload = guard.undo()?;
            }
        }
        Ok(())
    }

    /// A settings set's server-wide values, applied until the returned guard is undone
    /// or dropped; None for a set of session settings only.
    fn server_settings(&mut self, settings: SettingsId) -> Result<Option<ServerWide>> {
        let server = self.settings[settings.0].server.clone();
        if server.is_empty() {
            return Ok(None);
        }
        let admin = connect(&self.target.admin_config())?;
        let (guard, since) = ServerWide::apply(admin, &server)?;
        self.last_reload = since;
        Ok(Some(guard))
    }

    /// What a cell runs, owned: the matrix stays free while a session is borrowed.
    fn statement_of(&self, cell: usize) -> CellStatement {
        let key = self.matrix.cells[cell];
        let query = self.matrix.query(key.query);
        CellStatement {
            sql: self.matrix.form(&key).sql.clone(),
            params: self.matrix.params(&key).values.clone(),
            rollback: query.rollback,
            prepared: query.prepared.then(|| format!("pgx_c{cell}")),
        }
    }

    fn session(&mut self, key: &CellKey) -> Result<&mut Session> {
        let id: SessionKey = (key.variant, key.settings, key.query, key.form, key.params);
        self.session_clock = self.session_clock.saturating_add(1);
        if !self.sessions.contains_key(&id) {
            let Some(built) = self.built.get(&key.variant) else {
                bail!(
                    "internal: no copy of variant {}",
                    self.matrix.variant(key.variant).name
                );
            };
            let sql =
                settings::session_sql(self.runs.timeout_ms, &self.settings[key.settings.0].session);
            let config = built.config.clone();
            if self.sessions.len() >= MAX_SESSIONS {
                let oldest = self
                    .sessions
                    .iter()
                    .min_by_key(|(_, s)| s.last_used)
                    .map(|(k, _)| *k);
                if let Some(oldest) = oldest {
                    self.sessions.remove(&oldest);
                }
            }
            let started = std::time::Instant::now();
            let session = Session::open(&config, &sql)?;
            self.wall.connect += started.elapsed().as_secs_f64();
            self.sessions.insert(id, session);
        }
        let last_reload = self.last_reload;
        let Some(session) = self.sessions.get_mut(&id) else {
            bail!("internal: session vanished");
        };
        session.last_used = self.session_clock;
        if session.seen_reload < last_reload {
            settings::wait_for_reload(&mut session.client, last_reload)?;
            session.seen_reload = last_reload;
        }
        Ok(session)
    }

    /// `runs` EXPLAINs of one cell; kept as samples of `round` (warmup when None). The
    /// first failure ends the cell: it is recorded and the cell is not visited again.
    fn visit(&mut self, cell: usize, runs: usize, round: Option<usize>) -> Result<()> {
        if self.cells[cell].error.is_some() {
            self.runs_left[cell] = 0;
            return Ok(());
        }
        let key = self.matrix.cells[cell];
        self.update_progress();
        let message = self.cell_label(&key);
        self.progress.message(&message);
        let owned = self.statement_of(cell);
        let statement = owned.borrowed();
        if round.is_some()
            && self.matrix.cache(&key) == CacheState::Warm
            && self.session(&key)?.primed.insert(cell)
        {
            // The fresh backend's unrecorded first run is part of what the round costs
            // the cell: it counts against the budget.
            let started = std::time::Instant::now();
            let failed = self.warm_backend(&key, &statement)?;
            let seconds = started.elapsed().as_secs_f64();
            self.spent[cell] += seconds;
            self.wall.warm += seconds;
            if let Some(message) = failed {
                self.fail(cell, message);
                return Ok(());
            }
        }
        for _ in 0..runs {
            crate::interrupt::check()?;
            // Opened (and caught up with a reload) before the clock starts.
            self.session(&key)?;
            let started = std::time::Instant::now();
            let run = measure::explain(self.session(&key)?, &statement, false)?;
            let seconds = started.elapsed().as_secs_f64();
            self.ran(cell, seconds);
            match run {
                Run::Plan(explained) => match round {
                    Some(round) => {
                        self.spent[cell] += seconds;
                        self.wall.measured += seconds;
                        self.record(cell, round, explained.summary);
                    }
                    None => {
                        self.wall.warm += seconds;
                        self.cells[cell].warm_ms = Some(explained.summary.execution_ms);
                    }
                },
                Run::Failed(message) => {
                    self.fail(cell, message);
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// A backend opened in a measured round has no history: the cell runs once first,
    /// not recorded. That fills its catalog caches and maps the shared buffers the
    /// statement touches into its page tables: a fresh backend's first touch of a buffer
    /// is a page fault, and a 9,432-buffer scan took 17-20 ms on a fresh backend against
    /// 12 ms on one that had run it (by copy: how the copy's buffers lie in shared memory
    /// decides how many faults the kernel's fault-around saves). A prepared statement is
    /// planned (plain EXPLAIN) four times before, so that with that run its plan cache has
    /// built its five custom plans and chosen. Not for a cold or prewarmed cell (the
    /// caller's check), whose run follows an eviction that also took its backend. The
    /// failure's message if the statement fails.
    fn warm_backend(&mut self, key: &CellKey, statement: &Statement) -> Result<Option<String>> {
        let plans = if statement.prepared.is_some() {
            measure::CUSTOM_PLANS_BEFORE_GENERIC - 1
        } else {
            0
        };
        for _ in 0..plans {
            crate::interrupt::check()?;
            if let Some(message) = measure::prime(self.session(key)?, statement)? {
                return Ok(Some(message));
            }
        }
        crate::interrupt::check()?;
        Ok(
            match measure::explain(self.session(key)?, statement, false)? {
                Run::Failed(message) => Some(message),
                Run::Plan(_) => None,
            },
        )
    }

    /// The cell failed: recorded, and not visited again.
    fn fail(&mut self, cell: usize, message: String) {
        self.cells[cell].error = Some(message);
        self.runs_left[cell] = 0;
    }

    fn record(&mut self, cell: usize, round: usize, mut summary: PlanSummary) {
        let key = self.matrix.cells[cell];
        let state = &mut self.cells[cell];
        let signature = match state
            .signatures
            .iter()
            .position(|s| *s == summary.signature)
        {
            Some(i) => i,
            None => {
                state.signatures.push(summary.signature.clone());
                state.signatures.len() - 1
            }
        };
        state.samples.push(Sample {
            round,
            planning_ms: summary.planning_ms,
            execution_ms: summary.execution_ms,
            buffers: summary.buffers.clone(),
            heap_fetches: summary.heap_fetches,
            signature,
        });
        if let Some(built) = self.built.get(&key.variant) {
            state.partitions_total = built.partitions.attribute(&mut summary, &built.relations);
        }
        state.plan = Some(summary);
    }

    fn cell_label(&self, key: &CellKey) -> String {
        let m = &self.matrix;
        format!(
            "{} · {} · {} · {} · {}",
            m.variant(key.variant).name,
            m.settings[key.settings.0].name,
            m.query(key.query).name,
            m.form(key).name,
            m.params(key).label
        )
    }

    /// One TIMING ON run per cell, after its measured runs, for the per-node plan.
    fn timed_plans(&mut self, cells: &[usize]) -> Result<()> {
        for &cell in cells {
            let state = &self.cells[cell];
            if state.error.is_some() || state.timed_plan.is_some() {
                self.runs_left[cell] = self.runs_left[cell].saturating_sub(1);
                continue;
            }
            let key = self.matrix.cells[cell];
            let owned = self.statement_of(cell);
            let statement = owned.borrowed();
            let guard = self.server_settings(key.settings)?;
            crate::interrupt::check()?;
            self.update_progress();
            self.progress
                .message(&format!("per-node plan of {}", self.cell_label(&key)));
            let started = std::time::Instant::now();
            let run = measure::explain(self.session(&key)?, &statement, true)?;
            self.ran(cell, started.elapsed().as_secs_f64());
            if let Some(guard) = guard {
                self.last_reload = guard.undo()?;
            }
            if let Run::Plan(explained) = run {
                self.cells[cell].timed_plan = Some(explained.tree);
            }
        }
        Ok(())
    }

    /// Forms of one query must return the same rows (and leave the same `verify`
    /// result): checked per variant, settings and parameter set.
    fn equivalence(&mut self, cells: &[usize]) -> Result<()> {
        let mut groups: Vec<(FormsOf, Vec<usize>)> = Vec::new();
        for &cell in cells {
            let key = self.matrix.cells[cell];
            if self.matrix.query(key.query).forms.len() < 2 || self.cells[cell].error.is_some() {
                continue;
            }
            let id = (key.variant, key.settings, key.query.0, key.params.0);
            match groups.iter_mut().find(|(g, _)| *g == id) {
                Some((_, members)) => members.push(cell),
                None => groups.push((id, vec![cell])),
            }
        }
        for (id, members) in groups {
            if members.len() < 2 || !self.checked.insert(id) {
                continue;
            }
            let (variant, settings_id, query, params) = id;
            self.progress.message(&format!(
                "{}: checking the forms of {} return the same rows",
                self.matrix.variant(variant).name,
                self.matrix.queries[query].name
            ));
            let verify = self.matrix.queries[query].verify.clone();
            let mut prints = Vec::new();
            for &cell in &members {
                let key = self.matrix.cells[cell];
                let sql = self.matrix.form(&key).sql.clone();
                let values = self.matrix.params(&key).values.clone();
                let form = self.matrix.form(&key).name.clone();
                let session = self.session(&key)?;
                let print =
                    measure::fingerprint(&mut session.client, &sql, &values, verify.as_deref())
                        .unwrap_or_else(|err| format!("error: {err:#}"));
                prints.push((form, print));
            }
            crate::interrupt::check()?;
            let equivalent = prints.windows(2).all(|w| w[0].1 == w[1].1);
            let query_def = &self.matrix.queries[query];
            self.equivalence[query].push(Equivalence {
                variant: self.matrix.variant(variant).name.clone(),
                settings: self.matrix.settings[settings_id.0].name.clone(),
                params: query_def.params[params].label.clone(),
                fingerprints: prints,
                equivalent,
            });
        }
        Ok(())
    }

    /// A variant's last phases, after every EXPLAIN on it: the load (whose write
    /// scripts commit, changing the copy for good), then VACUUM / VACUUM FULL; then its
    /// sessions and copy go.
    fn finish(&mut self, v: VariantId) -> Result<()> {
        // Every measuring backend goes, not only this copy's: the load may open as many
        // connections as the server allows (a later stage opens, and warms, its own).
        self.sessions.clear();
        let Some(built) = self.built.get(&v) else {
            return Ok(());
        };
        let config = built.config.clone();
        let name = self.matrix.variant(v).name.clone();
        // The control is there for the EXPLAIN cells' noise floor: no load, no VACUUM.
        let control = self.matrix.variant(v).role == Role::Control;
        let outcome = (|| -> Result<()> {
            if control {
                return Ok(());
            }
            if let Some(load) = &self.spec.load {
                self.progress.message(&format!("{name}: load"));
                let progress = &mut *self.progress;
                self.variants[v.0].load =
                    Some(crate::load::run(&config, load, &self.vars, &mut |m| {
                        progress.message(&format!("{name}: load {m}"))
                    })?);
            }
            if self.spec.maintenance && !self.spec.table_stats.is_empty() {
                self.progress
                    .message(&format!("{name}: VACUUM / VACUUM FULL"));
                let mut client = connect(&config)?;
                self.variants[v.0].maintenance =
                    tables::maintenance(&mut client, &self.spec.table_stats)?;
            }
            Ok(())
        })();
        self.built.remove(&v);
        match outcome {
            Ok(()) => {
                self.progress.line(&format!("variant {name}: done"));
                Ok(())
            }
            Err(err) => self.variant_failed(v, err),
        }
    }

    fn into_result(
        mut self,
        stages: Vec<std::ops::Range<usize>>,
        interrupted: bool,
    ) -> Result<ExperimentResult> {
        // Dropping the copies before reading the environment: nothing left behind.
        let started = std::time::Instant::now();
        self.sessions.clear();
        self.built.clear();
        self.wall.finish += started.elapsed().as_secs_f64();
        let m = &self.matrix;
        let failed: HashSet<usize> = self
            .variants
            .iter()
            .enumerate()
            .filter(|(_, v)| v.error.is_some())
            .map(|(i, _)| i)
            .collect();
        // Cells of variants that did not build are left out: they have no numbers.
        let kept: Vec<usize> = (0..m.cells.len())
            .filter(|i| !failed.contains(&m.cells[*i].variant.0))
            .collect();
        let position: HashMap<usize, usize> = kept
            .iter()
            .enumerate()
            .map(|(new, old)| (*old, new))
            .collect();
        let mut states: Vec<Option<CellState>> = std::mem::take(&mut self.cells)
            .into_iter()
            .map(Some)
            .collect();
        let cells = kept
            .iter()
            .map(|&i| {
                let key = m.cells[i];
                let state = states[i].take().unwrap_or_default();
                Cell {
                    variant: m.variant(key.variant).name.clone(),
                    settings: m.settings[key.settings.0].name.clone(),
                    cache: m.cache(&key).name().to_string(),
                    query: m.query(key.query).name.clone(),
                    form: m.form(&key).name.clone(),
                    params: m.params(&key).label.clone(),
                    reference: m
                        .reference_of(&key)
                        .and_then(|r| m.position(&r))
                        .and_then(|r| position.get(&r).copied()),
                    samples: state.samples,
                    plan: state.plan,
                    timed_plan: state.timed_plan,
                    signatures: state.signatures,
                    error: state.error,
                    partitions_total: state.partitions_total,
                    eviction: state.eviction,
                    execution: None,
                    planning: None,
                    change: None,
                    planning_change: None,
                    evidence: None,
                }
            })
            .collect();
        let rounds_run = self
            .rounds_run
            .iter()
            .map(|r| RoundRun {
                round: r.round,
                phase: r.phase.clone(),
                cells: r
                    .cells
                    .iter()
                    .filter_map(|c| position.get(c).copied())
                    .collect(),
            })
            .collect();
        let candidates: Vec<String> = m
            .variants
            .iter()
            .filter(|v| v.role == Role::Candidate)
            .map(|v| v.name.clone())
            .collect();
        let kept_names: Vec<String> = m
            .variants
            .iter()
            .filter(|v| v.role != Role::Candidate)
            .map(|v| v.name.clone())
            .collect();
        let stage_names = stages
            .iter()
            .map(|range| {
                let mut names = kept_names.clone();
                names.extend(candidates[range.clone()].iter().cloned());
                names
            })
            .collect();
        let queries = m
            .queries
            .iter()
            .zip(std::mem::take(&mut self.equivalence))
            .map(|(q, equivalence)| QueryInfo {
                name: q.name.clone(),
                about: q.about.clone(),
                forms: q
                    .forms
                    .iter()
                    .map(|f| (f.name.clone(), f.sql.clone()))
                    .collect(),
                params: q
                    .params
                    .iter()
                    .map(|p| ParamSet {
                        label: p.label.clone(),
                        values: p.values.iter().map(|v| v.0.clone()).collect(),
                    })
                    .collect(),
                rollback: q.rollback,
                equivalence,
            })
            .collect();
        let settings = m
            .settings
            .iter()
            .zip(&self.settings)
            .map(|(s, c)| SettingsSet {
                name: s.name.clone(),
                values: s.values.clone(),
                not_applicable: c.not_applicable.clone(),
                applied_server_wide: c.server.iter().map(|(k, _)| k.clone()).collect(),
            })
            .collect();
        Ok(ExperimentResult {
            schema_version: SCHEMA_VERSION,
            experiment: self.spec.name.clone(),
            about: self.spec.about.trim().to_string(),
            seed: self.spec.seed.clone(),
            environment: super::environment::collect(self.target, &mut self.admin)?,
            scale: self.base.info.scale,
            runs: self.runs.clone(),
            dataset: self.base.info.clone(),
            baseline: m
                .variants
                .first()
                .map(|v| v.name.clone())
                .unwrap_or_default(),
            control: m.control().map(|c| m.variant(c).name.clone()),
            schedule: ScheduleInfo {
                seed: self.schedule.seed,
                rounds: self.schedule.rounds,
                block: self.schedule.block,
                warmup: self.schedule.warmup,
                stages: stage_names,
                rounds_run,
            },
            settings,
            queries,
            variants: std::mem::take(&mut self.variants),
            cells,
            analysis: Analysis::default(),
            interrupted,
            screening: None,
            wall: Some(self.wall.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_cells_get_blocks_that_add_up_to_a_millisecond() {
        assert_eq!(block_for(Some(0.02), 1), MAX_BLOCK, "20 µs: capped at 10");
        assert_eq!(block_for(Some(0.25), 1), 4);
        assert_eq!(block_for(Some(0.9), 1), 2);
        assert_eq!(block_for(Some(1.0), 1), 1);
        assert_eq!(block_for(Some(150.0), 1), 1);
        assert_eq!(block_for(None, 1), 1, "no warmup, no guess");
        assert_eq!(
            block_for(Some(150.0), 3),
            3,
            "never below the schedule's block"
        );
        assert_eq!(block_for(Some(0.0), 1), 1);
    }
}
