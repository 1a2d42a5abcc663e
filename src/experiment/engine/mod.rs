//! Running an experiment's plan, phase by phase; the engine returns measurements and
//! concludes nothing (`crate::experiment::analysis` does):
//!
//! 1. the **matrix** is resolved on the base (`params_from`), the settings sets
//!    classified, and the variants screened with HypoPG when asked;
//! 2. **copies** (`copies`): the disk the run needs is checked before anything is
//!    created; the shared copy is built (every index-only variant on one copy of the
//!    base) and each variant of its own (`build`), stage by stage when the disk is short;
//! 3. per stage and phase (reads first: a rolled-back DELETE still clears
//!    visibility-map bits), an **evidence** pass (`evidence`): every cell on a fresh
//!    backend, its last warmup run gives its plan, blocks and rows; a
//!    cell whose evidence equals its reference's does the same work and is not timed;
//! 4. **rounds** (`rounds`, `cold`) of the cells left, in a seeded random order, each
//!    cell on a fresh backend warmed by one unrecorded run; after the rounds of the
//!    design's looks, **stopping** (`stopping`) lets go of every comparison whose answer
//!    is known, and of every cell no open comparison needs;
//! 5. the forms' **equivalence**, then the leaving variants' loads, taking turns
//!    repeat by repeat (`finish`), and their maintenance;
//! 6. the measurements **assembled** (`assemble`).
//!
//! `sessions` holds the backends, `clock` the progress estimate and where the wall time
//! went.

mod assemble;
pub mod build;
mod clock;
mod cold;
pub mod copies;
pub mod evict;
mod evidence;
mod finish;
pub mod measure;
mod prepare;
mod rounds;
pub mod sessions;
mod stopping;

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use postgres::Client;

use self::clock::Clock;
use self::copies::{Databases, Group};
use self::sessions::Sessions;
use super::databases::Base;
use super::matrix::{CellKey, Matrix, Role, VariantId};
use super::measured::{Measurements, TimedGroup};
use super::plan::{Plan, Screening as ScreenMode};
use super::progress::Progress;
use super::result::{Equivalence, RoundRun, Sample, Screening, VariantResult};
use super::settings::{self, Classified};
use crate::error::Interrupted;
use crate::explain::{PlanNode, PlanSummary};
use crate::target::{Target, connect};

/// A cell faster than this (execution time in the warmup) runs a block of several runs
/// per round, and the round's median of the block is what is compared: one run of a
/// 20 µs query is mostly timer and scheduler noise.
pub const FAST_CELL_MS: f64 = 1.0;
/// The largest block a fast cell gets.
pub const MAX_BLOCK: usize = 10;
/// A cell at least this slow runs one run per round; faster ones at least two: the
/// round's fresh backend costs one unrecorded run whatever the block, so two recorded
/// runs make the recorded time at least two thirds of a round's, and their median
/// halves the run-to-run jitter a round's ratio carries.
pub const SLOW_CELL_MS: f64 = 1000.0;

/// Runs per round of a cell whose warmup execution took `warm_ms`: enough to add up to
/// about [`FAST_CELL_MS`], two up to [`SLOW_CELL_MS`], one beyond; at least the
/// schedule's block, at most [`MAX_BLOCK`].
pub fn block_for(warm_ms: Option<f64>, block: usize) -> usize {
    let wanted = match warm_ms {
        Some(ms) if ms > 0.0 && ms < FAST_CELL_MS => (FAST_CELL_MS / ms).ceil() as usize,
        Some(ms) if ms > 0.0 && ms < SLOW_CELL_MS => 2,
        _ => 1,
    };
    wanted.clamp(1, MAX_BLOCK).max(block)
}

/// Measure the plan on the prepared base; `dataset_seconds` is what preparing it took.
pub fn run(
    target: &Target,
    plan: &Plan,
    base: Base,
    dataset_seconds: f64,
    progress: &mut Progress,
) -> Result<Measurements> {
    let started = std::time::Instant::now();
    let mut admin = connect(&target.admin_config())?;
    let checkpointer = super::databases::checkpointer_pid(&mut admin);
    let (matrix, classified) = {
        let config = target.config_for(&base.info.database);
        let mut matrix = super::matrix::resolve(plan, &config)?;
        let mut client = connect(&config)?;
        let classified = matrix
            .settings
            .iter()
            .map(|s| settings::classify(&mut client, &s.values, target.is_embedded()))
            .collect::<Result<Vec<_>>>()?;
        // A cold start restarts the server: only pgx's own.
        if plan
            .load
            .as_ref()
            .is_some_and(|l| l.start == crate::loadtest::spec::Start::Cold)
            && target.cluster().is_none()
        {
            return Err(crate::error::fail(
                "load.start: cold restarts the server before every run, and this server is not pgx's own",
                "run it on the embedded cluster (no DATABASE_URL / PG* variables), or use start: warm",
            ));
        }
        // Checked before anything is built; what each needs is kept for its load.
        for v in &mut matrix.variants {
            v.server_settings_restart = settings::check_server_settings(
                &mut client,
                &v.name,
                &v.server_settings,
                target.is_embedded(),
            )?;
        }
        (matrix, classified)
    };
    let screening_started = std::time::Instant::now();
    let screening = if plan.screening == ScreenMode::No {
        None
    } else {
        let reference = classified.first().cloned().unwrap_or_default();
        let inputs = super::screen::Inputs {
            target,
            base: &base.info.database,
            experiment: &plan.name,
            matrix: &matrix,
            reference: &reference,
            timeout_ms: plan.limits.timeout_ms,
        };
        Some(super::screen::run(&inputs, &mut admin, progress)?)
    };
    let screening_seconds = screening_started.elapsed().as_secs_f64();
    let mut engine = Engine::new(target, plan, matrix, base, classified, admin, progress);
    engine.clock.wall.dataset = dataset_seconds;
    engine.clock.wall.screening = screening_seconds;
    // A run that only screens says so: its report is the screening.
    engine.screening = screening.map(|s| Screening {
        only: plan.screening == ScreenMode::Only,
        ..s
    });
    if plan.screening == ScreenMode::Only {
        return engine.assemble(false, started, true);
    }
    let interrupted = match engine.run_stages() {
        Ok(()) => false,
        Err(err) if err.downcast_ref::<Interrupted>().is_some() => true,
        // A backend crashed or was killed, and the server ended every session: what was
        // measured until then is kept, as after Ctrl-C, once the server is back.
        Err(err) if crate::error::server_terminated(&err) => {
            let log = crate::target::embedded_cluster_of(&target.admin_config())
                .map(|c| format!("; see {}", c.log_file().display()))
                .unwrap_or_default();
            engine.lost = Some(format!(
                "the server terminated every backend mid-run ({err:#}){log}"
            ));
            engine.sessions.clear();
            // Ended by pg_terminate_backend (57P01), the server does not restart.
            let terminated_by_admin =
                crate::error::sqlstate_of(&err) == Some(postgres::error::SqlState::ADMIN_SHUTDOWN);
            super::databases::after_restart(
                &target.admin_config(),
                checkpointer.filter(|_| !terminated_by_admin),
                "write the partial report",
            )?;
            engine.admin = connect(&target.admin_config())?;
            true
        }
        Err(err) => return Err(err),
    };
    // The run's own connection may have been ended with every other (a backend killed
    // between statements, the server back before the next one): a fresh one for the report.
    if engine
        .admin
        .is_valid(std::time::Duration::from_secs(5))
        .is_err()
    {
        engine.admin = connect(&target.admin_config())?;
    }
    engine.assemble(interrupted, started, false)
}

/// Reads are measured on every copy before any rolled-back DML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// What one cell has measured so far.
#[derive(Default)]
struct CellState {
    samples: Vec<Sample>,
    signatures: Vec<String>,
    /// The last recorded run's plan facts (the evidence run's until one is recorded).
    plan: Option<PlanSummary>,
    /// The evidence: the warmup's last run.
    evidence: Option<PlanSummary>,
    timed_plan: Option<PlanNode>,
    error: Option<String>,
    partitions_total: u64,
    eviction: Option<String>,
    /// Execution time of the last untimed warmup run (sizes the cell's block).
    warm_ms: Option<f64>,
    /// Runs per round.
    block: usize,
    /// Why it is not timed.
    untimed: Option<String>,
    /// The group its comparison is judged in.
    group: Option<usize>,
    /// Its comparison is decided (or stopped by the budget): no more rounds for it.
    closed: bool,
    /// The A/A control's cell whose evidence differs from the baseline's (another
    /// build): timed, so the report can say by how much.
    built_differently: bool,
    /// ... by another plan or by more than a tenth of the blocks: judged like a
    /// comparison until decided. (A smaller difference, such as a DML statement's few
    /// percent of blocks between two copies, gets the rounds up to the first look.)
    built_far_apart: bool,
    /// Seconds of rounds spent on it (for the budget).
    spent: f64,
}

struct Engine<'a> {
    target: &'a Target,
    plan: &'a Plan,
    matrix: Matrix,
    /// Per settings set: how it is applied.
    settings: Vec<Classified>,
    base: Base,
    admin: Client,
    progress: &'a mut Progress,
    groups_of: Vec<Group>,
    dbs: Databases,
    sessions: Sessions,
    cells: Vec<CellState>,
    variants: Vec<VariantResult>,
    /// Groups of comparisons timed together, with their designs and rounds.
    timed_groups: Vec<TimedGroup>,
    /// The α each group gets: its share of the run's possible comparisons.
    alpha_shares: HashMap<(usize, Phase, bool), f64>,
    rounds_run: Vec<RoundRun>,
    next_round: usize,
    /// Per query: the equivalence checks of its forms.
    equivalence: Vec<Vec<Equivalence>>,
    checked: HashSet<(VariantId, usize, usize, usize)>,
    screening: Option<Screening>,
    stages: Vec<Vec<VariantId>>,
    /// The disk each candidate of its own was planned to need (its build, its copy).
    own_bytes: HashMap<VariantId, u64>,
    /// Candidates of their own whose build this run made (not found in the cache): a
    /// later stage may drop it for room (`make_room`).
    built_here: Vec<VariantId>,
    /// Measure the base and the builds as they are, not on copies (nothing writes and
    /// copies do not fit the disk).
    in_place: bool,
    /// Why the run stopped early other than by Ctrl-C (the server ended every session).
    lost: Option<String>,
    clock: Clock,
}

impl<'a> Engine<'a> {
    fn new(
        target: &'a Target,
        plan: &'a Plan,
        matrix: Matrix,
        base: Base,
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
                placement: None,
            })
            .collect();
        let equivalence = vec![Vec::new(); matrix.queries.len()];
        let clock = Clock::new(matrix.cells.len());
        Engine {
            target,
            plan,
            groups_of: copies::arrange(plan),
            matrix,
            settings,
            base,
            admin,
            progress,
            dbs: Databases::default(),
            sessions: Sessions::default(),
            cells,
            variants,
            timed_groups: Vec::new(),
            alpha_shares: HashMap::new(),
            rounds_run: Vec::new(),
            next_round: 0,
            equivalence,
            checked: HashSet::new(),
            screening: None,
            stages: Vec::new(),
            own_bytes: HashMap::new(),
            built_here: Vec::new(),
            in_place: false,
            lost: None,
            clock,
        }
    }

    /// Everything after the screening: copies, then per stage the evidence, rounds,
    /// equivalence and finishing of every variant measured in it.
    fn run_stages(&mut self) -> Result<()> {
        let creates = copies::shared_creates(self.plan, &self.groups_of);
        let entry = copies::shared_entry_name(&self.base.info.database, &creates);
        let free = copies_free(&mut self.admin);
        let need = |engine: &mut Engine, copy: bool| {
            copies::need(
                &mut engine.admin,
                engine.plan,
                &engine.groups_of,
                &engine.base.info.database,
                entry.as_deref(),
                copy,
            )
        };
        let on_copies = need(self, true)?;
        let copied = copies::stages(&on_copies, free);
        self.own_bytes = on_copies.own.iter().copied().collect();
        self.stages = match copied {
            Ok(stages) if stages.len() == 1 || self.plan.writes() => stages,
            // Some cell writes: copies or nothing.
            Err(err) if self.plan.writes() => return Err(err),
            // Copies do not fit at once, and nothing writes: measure in place instead.
            copied => {
                let in_place = need(self, false)?;
                match copies::stages(&in_place, free) {
                    Ok(stages) => {
                        self.in_place = true;
                        self.own_bytes = in_place.own.iter().copied().collect();
                        self.progress.line(&format!(
                            "copies of every database measured on would need {}: measuring the base and the builds in place (nothing writes)",
                            copies::gib(on_copies.total())
                        ));
                        stages
                    }
                    Err(_) => copied?,
                }
            }
        };
        self.share_alpha();
        self.prepare_first(entry.as_deref(), &creates)?;
        self.settle_server();
        for s in 0..self.stages.len() {
            if s > 0 {
                self.make_room(s)?;
                self.prepare_stage(s)?;
                self.settle_server();
            }
            let last = s + 1 == self.stages.len();
            let in_play: Vec<VariantId> = (0..self.matrix.variants.len())
                .map(VariantId)
                .filter(|v| self.dbs.has(*v))
                .filter(|v| self.groups_of[v.0] != Group::Own || self.stages[s].contains(v))
                .collect();
            for phase in [Phase::Reads, Phase::Writes] {
                let cells: Vec<usize> = (0..self.matrix.cells.len())
                    .filter(|&c| {
                        let key = self.matrix.cells[c];
                        in_play.contains(&key.variant)
                            && self.cells[c].error.is_none()
                            && self.matrix.query(key.query).rollback == (phase == Phase::Writes)
                    })
                    .collect();
                if cells.is_empty() {
                    continue;
                }
                self.evidence(&cells)?;
                for warm in [true, false] {
                    let kind: Vec<usize> = cells
                        .iter()
                        .copied()
                        .filter(|&c| self.is_warm(c) == warm && self.cells[c].error.is_none())
                        .collect();
                    if kind.is_empty() {
                        continue;
                    }
                    let judged = self.judged_in_stage(&kind, s);
                    let group = self.select_timed(&kind, &judged, s, phase, warm);
                    let timed: Vec<usize> = kind
                        .iter()
                        .copied()
                        .filter(|&c| self.cells[c].untimed.is_none())
                        .collect();
                    if timed.is_empty() {
                        continue;
                    }
                    if warm {
                        self.rounds(&timed, group, phase)?;
                    } else {
                        self.cold_rounds(&timed, group, phase)?;
                    }
                }
                let started = std::time::Instant::now();
                self.equivalence(&cells)?;
                self.clock.wall.plans += started.elapsed().as_secs_f64();
            }
            let started = std::time::Instant::now();
            let leaving: Vec<VariantId> = in_play
                .iter()
                .copied()
                .filter(|v| last || self.groups_of[v.0] == Group::Own)
                .collect();
            self.finish(&leaving)?;
            self.clock.wall.finish += started.elapsed().as_secs_f64();
        }
        Ok(())
    }

    fn is_warm(&self, cell: usize) -> bool {
        self.matrix.cache(&self.matrix.cells[cell]) == super::matrix::CacheState::Warm
    }

    /// One cell's key.
    fn key(&self, cell: usize) -> CellKey {
        self.matrix.cells[cell]
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

    /// The cell failed: recorded, and not visited again.
    fn fail(&mut self, cell: usize, message: String) {
        self.cells[cell].error = Some(message);
        self.cells[cell].closed = true;
        self.clock.forget(cell);
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
                self.clock.forget(i);
            }
        }
        self.sessions.close_variant(v);
        self.dbs.release(v);
        Ok(())
    }
}

fn copies_free(admin: &mut Client) -> Option<u64> {
    super::databases::free_disk(admin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_cells_get_blocks_that_add_up_to_a_millisecond() {
        assert_eq!(block_for(Some(0.02), 1), MAX_BLOCK, "20 µs: capped at 10");
        assert_eq!(block_for(Some(0.25), 1), 4);
        assert_eq!(block_for(Some(0.9), 1), 2);
        assert_eq!(block_for(Some(1.0), 1), 2, "a millisecond: two runs");
        assert_eq!(block_for(Some(150.0), 1), 2);
        assert_eq!(block_for(Some(1000.0), 1), 1, "a second: one run");
        assert_eq!(block_for(None, 1), 1, "no warmup, no guess");
        assert_eq!(
            block_for(Some(150.0), 3),
            3,
            "never below the schedule's block"
        );
        assert_eq!(block_for(Some(0.0), 1), 1);
    }
}
