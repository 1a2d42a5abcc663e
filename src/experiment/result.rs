//! What an experiment produced: one type that the terminal, Markdown and JSON reporters
//! all read (as hyperfine's exporters share one result type). The engine fills in what
//! was measured; `analysis` adds the statistics (per cell and for the run) before any
//! reporter sees it.

use serde::{Deserialize, Serialize};

use crate::explain::{Buffers, PlanNode, PlanSummary};
use crate::stats::{Change, Summary};

/// Version of the JSON layout. 2: interleaved rounds, paired comparisons on execution
/// time, the A/A control and the run's analysis. 3: evidence first (cells not timed),
/// sequential decisions (`analysis.method`).
pub const SCHEMA_VERSION: u32 = 3;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExperimentResult {
    pub schema_version: u32,
    pub experiment: String,
    pub about: String,
    pub seed: String,
    pub environment: Environment,
    pub scale: f64,
    pub runs: RunsUsed,
    pub dataset: DatasetInfo,
    pub baseline: String,
    /// The A/A control's variant name (a second copy of the baseline), if it ran.
    pub control: Option<String>,
    /// When every cell was measured: the order of each round, reproducible from its seed.
    pub schedule: ScheduleInfo,
    pub settings: Vec<SettingsSet>,
    pub queries: Vec<QueryInfo>,
    /// In the experiment file's order, baseline first; the control last.
    pub variants: Vec<VariantResult>,
    pub cells: Vec<Cell>,
    /// Noise floor, drift and the summary's findings, computed once from the cells.
    pub analysis: Analysis,
    /// The run was interrupted (Ctrl-C, or see `stopped_by`): what was measured until
    /// then, nothing more.
    #[serde(default)]
    pub interrupted: bool,
    /// Why it stopped when it was not Ctrl-C (the server ended every session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<String>,
    /// What-if screening with HypoPG before the build (`--screen`, `screen: true`):
    /// estimated plans, costs and index sizes of hypothetical indexes.
    #[serde(default)]
    pub screening: Option<Screening>,
    /// Where the run's wall time went (absent in reports made before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall: Option<WallTimes>,
    /// `--shard K/N`: this run measured the K-th of N slices of the candidates (with the
    /// baseline and its own A/A control); `pgx merge` puts the slices together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::experiment::plan::Shard>,
    /// A merged report (`pgx merge`): the shards it was made of, each with its machine
    /// and noise floors. Every cell keeps its own shard's change, threshold and verdict.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardRun>,
}

/// One shard of a merged report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardRun {
    pub shard: crate::experiment::plan::Shard,
    /// The candidates it measured.
    pub variants: Vec<String>,
    pub environment: Environment,
    /// Its A/A control's floors, which its cells' thresholds come from.
    pub floors: Vec<NoiseFloor>,
    /// Why its run was noisy, if it was.
    pub noisy: Option<String>,
    pub seed: u64,
}

/// Where a run's wall time went, in seconds: what bounds a long run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WallTimes {
    pub total: f64,
    /// Building the dataset, or finding it in the cache.
    pub dataset: f64,
    pub screening: f64,
    /// Every variant's copy (from the base or its cache entry; a first build copies
    /// twice, into the cache entry and from it), its statements, ANALYZE, workload and
    /// catalog reads.
    pub builds: f64,
    /// Of `builds`: the variant statements run in this run (not taken from the cache).
    pub statements: f64,
    /// The recorded runs.
    pub measured: f64,
    /// Unrecorded runs: the warmup rounds and every fresh backend's first run.
    pub warm: f64,
    /// Opening the fresh backends (one per cell and round).
    pub connect: f64,
    /// The per-node (TIMING ON) plans and the checks that forms return the same rows.
    pub plans: f64,
    /// Loads, maintenance, and dropping the copies.
    pub finish: f64,
    /// Cold and prewarmed cells: emptying the caches (a server restart) and `pg_prewarm`.
    #[serde(default)]
    pub evictions: f64,
}

impl WallTimes {
    /// What the parts above leave: server-wide settings and their reloads, the disk
    /// check, the sizes, reading the environment.
    pub fn other(&self) -> f64 {
        let parts = self.dataset
            + self.screening
            + self.builds
            + self.measured
            + self.warm
            + self.connect
            + self.plans
            + self.finish
            + self.evictions;
        (self.total - parts).max(0.0)
    }
}

impl ExperimentResult {
    /// Variants a reader compares: everything but the A/A control.
    pub fn compared_variants(&self) -> impl Iterator<Item = &VariantResult> {
        self.variants.iter().filter(|v| !v.control)
    }

    /// Cells a reader compares, in report order.
    pub fn compared_cells(&self) -> impl Iterator<Item = &Cell> {
        let control = self.control.clone();
        self.cells
            .iter()
            .filter(move |c| Some(&c.variant) != control.as_ref())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScheduleInfo {
    pub seed: u64,
    pub rounds: usize,
    /// Runs per cell in each round.
    pub block: usize,
    /// Discarded runs per cell, in a warmup round before the first measured one.
    pub warmup: usize,
    /// Variants measured together: one stage when every copy fits the disk, else
    /// several, each with the baseline and the control.
    pub stages: Vec<Vec<String>>,
    /// Every round as it ran: positions in `cells`, in visiting order.
    pub rounds_run: Vec<RoundRun>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoundRun {
    /// The round number samples carry (warmup rounds are not numbered).
    pub round: usize,
    /// "reads" or "writes": reads are measured on every copy before any rolled-back DML.
    pub phase: String,
    pub cells: Vec<usize>,
}

/// What the analysis concluded for the run as a whole.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Analysis {
    /// Per query and parameter set: how far the A/A control drifted from the baseline.
    pub floors: Vec<NoiseFloor>,
    /// Why the run is noisy (the control differed from the baseline beyond noise); a
    /// noisy run names no winners on timing.
    pub noisy: Option<String>,
    /// The control differed in plan or blocks too, wherever it differed in time: its
    /// build is not the baseline's (not the machine's noise).
    #[serde(default)]
    pub noisy_builds: bool,
    /// The reference cells' median in every round, to see whether the machine was steady.
    pub drift: Vec<Drift>,
    /// The summary: one row per query and parameter set.
    pub findings: Vec<Finding>,
    /// How timed comparisons were decided (absent in reports of the sign test, before
    /// evidence came first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// The answer, row by row (absent in reports made before it was decided).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<super::analysis::answer::Answer>,
}

/// The statistical method of a run that timed only what could differ and stopped each
/// comparison when it was decided (`crate::stats::sequential`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Method {
    /// The groups of comparisons timed together, with their designs and rounds.
    pub groups: Vec<crate::experiment::measured::TimedGroup>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NoiseFloor {
    pub query: String,
    pub params: String,
    #[serde(default = "warm")]
    pub cache: String,
    /// Relative (0.031 = 3.1%); a change must exceed max(5%, floor) to be called.
    pub floor: f64,
    /// The control against the baseline in the reference settings and form.
    pub control: Option<Change>,
    /// One timer quantum (1 µs) relative to the baseline's median: a floor not much
    /// above it measures the timer, not noise. Absent in older reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<f64>,
}

impl NoiseFloor {
    /// The floor is within two timer quanta: it says how coarse the timer is for this
    /// query, not how noisy the machine was.
    pub fn at_resolution(&self) -> bool {
        self.resolution.is_some_and(|q| self.floor <= 2.0 * q)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Drift {
    pub query: String,
    pub params: String,
    /// Median execution time (ms) of the reference cell in each round; None where it
    /// was not measured.
    pub round_medians: Vec<Option<f64>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    pub query: String,
    pub params: String,
    #[serde(default = "warm")]
    pub cache: String,
    /// Position in `cells` of the reference cell.
    pub reference: Option<usize>,
    /// The fastest cell called significantly faster than the reference (none in a
    /// noisy run).
    pub best: Option<usize>,
    /// Cells whose plan or buffers differ from the reference's: evidence that cannot
    /// be noise.
    pub differs: Vec<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Environment {
    pub postgres_version: String,
    pub pgx_version: String,
    pub git_commit: String,
    /// UTC, to the minute: enough to date a report without making every re-run a diff.
    pub date: String,
    /// "embedded" or a description of the server (never a password).
    pub server: String,
    pub cpus: usize,
    pub memory_gib: f64,
    /// Server settings that matter for the numbers (shared_buffers, work_mem, ...).
    pub server_settings: Vec<(String, String)>,
    /// `/proc/loadavg` (1, 5, 15 minutes) when the run started and when it ended: how
    /// busy the machine was.
    #[serde(default)]
    pub load_before: Option<[f64; 3]>,
    #[serde(default)]
    pub load_after: Option<[f64; 3]>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunsUsed {
    pub warmup: usize,
    /// Measured runs per cell, spread over the schedule's rounds (at most, with a budget).
    pub repeat: usize,
    pub timeout_ms: u64,
    /// Time a cell may spend on measured runs before it leaves the remaining rounds.
    #[serde(default)]
    pub budget_ms: Option<u64>,
    /// With a budget: what every cell gets regardless, in rounds (`min_in_rounds`; in
    /// measured runs in reports made before it).
    #[serde(default)]
    pub min: usize,
    #[serde(default)]
    pub min_in_rounds: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// Content hash of everything that defines the base (cache key).
    pub key: String,
    pub database: String,
    /// True when this run reused a base built earlier.
    pub reused: bool,
    pub build_seconds: f64,
    pub steps: Vec<Timing>,
    pub row_counts: Vec<(String, i64)>,
    /// The experiment that built it; others with the same dataset definition reuse it.
    #[serde(default)]
    pub built_for: String,
    #[serde(default)]
    pub scale: f64,
    /// How the steps were loaded (bulk or plain path) and what that involved.
    #[serde(default)]
    pub load: LoadInfo,
}

/// The load path of a base.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadInfo {
    /// "bulk" or "plain" ("" for a base built before pgx recorded it).
    pub path: String,
    /// Connections used for parallel steps and maintenance.
    pub connections: usize,
    /// Indexes and foreign keys dropped before the steps and rebuilt after them.
    pub indexes: usize,
    pub foreign_keys: usize,
    /// Rows streamed through COPY by parallel steps.
    pub streamed_rows: u64,
    /// Maintenance work after the load, summed over connections, per kind.
    pub work: Vec<Timing>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timing {
    pub label: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SettingsSet {
    pub name: String,
    pub values: Vec<(String, String)>,
    /// Why this set could not be applied (e.g. a setting that needs a restart).
    #[serde(default)]
    pub not_applicable: Option<String>,
    /// Settings applied server-wide (ALTER SYSTEM + reload) rather than per session.
    #[serde(default)]
    pub applied_server_wide: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryInfo {
    pub name: String,
    pub about: String,
    pub forms: Vec<(String, String)>,
    pub params: Vec<ParamSet>,
    pub rollback: bool,
    /// Per (variant, settings, params): did every form return the same result?
    pub equivalence: Vec<Equivalence>,
    /// The seed's target: execution under this (ms) at scale 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParamSet {
    pub label: String,
    pub values: Vec<Option<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Equivalence {
    pub variant: String,
    pub settings: String,
    pub params: String,
    /// (form, fingerprint of its result: row count and a hash of the rows).
    pub fingerprints: Vec<(String, String)>,
    pub equivalent: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VariantResult {
    pub name: String,
    pub about: String,
    /// The A/A control: a second copy of the baseline, hidden from variant tables.
    #[serde(default)]
    pub control: bool,
    /// Each variant statement and how long it took (index build times).
    pub statements: Vec<Timing>,
    /// The statements ran in an earlier run (the variant cache); their times are from then.
    #[serde(default)]
    pub cached: bool,
    pub relations: Vec<RelationSize>,
    pub error: Option<String>,
    /// The write workload run before measurement, if the experiment has one.
    #[serde(default)]
    pub workload: Option<WorkloadResult>,
    /// `table_stats` tables before and after the workload.
    #[serde(default)]
    pub table_stats: Vec<TableStatsChange>,
    #[serde(default)]
    pub maintenance: Vec<Maintenance>,
    /// Throughput and latency under concurrent load, when the experiment has a `load:`.
    #[serde(default)]
    pub load: Option<crate::loadtest::LoadResult>,
    /// Which database its cells ran on: "shared" (the shared copy, what it lacks hidden
    /// in every run), "own" (a build of its own), "apart" (the A/A control on another
    /// copy of the base); absent in reports made before copies were shared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadResult {
    pub batches: usize,
    pub seconds: f64,
    pub batch_ms: Option<Summary>,
}

/// Counters of a table (summed over its partitions) at one moment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TableStats {
    pub inserted: i64,
    pub updated: i64,
    pub hot_updated: i64,
    pub deleted: i64,
    pub live_tuples: i64,
    pub dead_tuples: i64,
    pub vacuums: i64,
    pub autovacuums: i64,
    pub table_bytes: i64,
    pub index_bytes: i64,
    /// From pgstattuple: share of the table that is dead tuples / free space (None
    /// when the extension is not available).
    pub dead_tuple_percent: Option<f64>,
    pub free_percent: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableStatsChange {
    pub table: String,
    pub before: TableStats,
    pub after: TableStats,
}

impl TableStatsChange {
    /// Share of the workload's updates that were HOT (no index entries written).
    pub fn hot_percent(&self) -> Option<f64> {
        let updates = self.after.updated - self.before.updated;
        (updates > 0).then(|| {
            100.0 * (self.after.hot_updated - self.before.hot_updated) as f64 / updates as f64
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Maintenance {
    pub table: String,
    pub bytes_before: i64,
    pub vacuum_seconds: f64,
    pub bytes_after_vacuum: i64,
    pub vacuum_full_seconds: f64,
    pub bytes_after_vacuum_full: i64,
}

impl VariantResult {
    pub fn build_seconds(&self) -> f64 {
        self.statements.iter().map(|s| s.seconds).sum::<f64>() + 0.0 // an empty f64 sum is -0.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelationKind {
    Table,
    Index,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RelationSize {
    pub kind: RelationKind,
    /// schema-qualified name; for indexes the table they belong to is in `table`.
    pub name: String,
    pub table: String,
    /// For indexes: access method (btree, brin, gist, gin...).
    pub method: String,
    /// Summed over partitions for partitioned tables and indexes.
    pub bytes: i64,
    pub partitions: i64,
}

/// One measured combination: variant × settings × query form × parameter set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    pub variant: String,
    pub settings: String,
    /// What was in memory: "warm" (after warmups), "cold" (evicted before every run) or
    /// "prewarmed" (evicted, then `pg_prewarm` of the experiment's `prewarm:` relations).
    #[serde(default = "warm")]
    pub cache: String,
    pub query: String,
    pub form: String,
    pub params: String,
    /// Position in `cells` of the cell this one is compared with (see
    /// `Matrix::reference_of`); None for a reference itself.
    pub reference: Option<usize>,
    pub samples: Vec<Sample>,
    /// The last measured (TIMING OFF) run's plan facts.
    pub plan: Option<PlanSummary>,
    /// One TIMING ON run after the measured ones, for per-node times in the report.
    pub timed_plan: Option<PlanNode>,
    /// Distinct plan signatures seen across the measured runs.
    pub signatures: Vec<String>,
    /// Why the cell has no (more) numbers: a timeout or an error, and after which run.
    pub error: Option<String>,
    /// Leaf partitions of the partitioned tables the plan reads: scanned + pruned.
    #[serde(default)]
    pub partitions_total: u64,
    /// A cold cell's eviction that was not complete (e.g. shared buffers on a server pgx
    /// cannot restart): what was not possible.
    #[serde(default)]
    pub eviction: Option<String>,
    // Filled in by the analysis:
    /// Execution time, the number comparisons are made on.
    pub execution: Option<Summary>,
    /// Planning time, compared on its own (a real cost on partitioned tables, but not
    /// what an index changes).
    pub planning: Option<Summary>,
    /// Execution time against the reference cell (see `Matrix::reference_of`).
    pub change: Option<Change>,
    pub planning_change: Option<Change>,
    /// Plan and buffers against the reference cell's: exact, not noisy.
    pub evidence: Option<Evidence>,
    /// Why the cell was not timed: its plan, blocks and rows equal its reference's (or,
    /// for a reference, nothing compared with it differs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub untimed: Option<String>,
}

fn warm() -> String {
    "warm".into()
}

/// What identifies a cell across runs (two runs compared, shards merged, two scales side
/// by side): every axis by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub variant: String,
    pub settings: String,
    /// "warm", "cold" or "prewarmed": a cold cell is never the same cell as a warm one.
    pub cache: String,
    pub query: String,
    pub form: String,
    pub params: String,
}

impl Key {
    pub fn of(cell: &Cell) -> Key {
        Key {
            variant: cell.variant.clone(),
            settings: cell.settings.clone(),
            cache: cell.cache.clone(),
            query: cell.query.clone(),
            form: cell.form.clone(),
            params: cell.params.clone(),
        }
    }
}

impl Cell {
    pub fn plan_changed(&self) -> bool {
        self.signatures.len() > 1
    }

    /// (round, execution ms) of every measured run.
    pub fn execution_by_round(&self) -> Vec<(usize, f64)> {
        self.samples
            .iter()
            .map(|s| (s.round, s.execution_ms))
            .collect()
    }

    pub fn planning_by_round(&self) -> Vec<(usize, f64)> {
        self.samples
            .iter()
            .map(|s| (s.round, s.planning_ms))
            .collect()
    }

    /// Median of shared hit + read blocks over the measured runs (the evidence run's
    /// for a cell not timed).
    pub fn blocks(&self) -> Option<u64> {
        let mut blocks: Vec<u64> = self
            .samples
            .iter()
            .map(|s| s.buffers.shared_hit + s.buffers.shared_read)
            .collect();
        if blocks.is_empty() {
            return self.plan.as_ref().map(|p| p.blocks());
        }
        blocks.sort_unstable();
        blocks.get(blocks.len() / 2).copied()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// The round of the schedule this run belongs to.
    pub round: usize,
    pub planning_ms: f64,
    pub execution_ms: f64,
    pub buffers: Buffers,
    pub heap_fetches: u64,
    /// Index into the cell's `signatures`.
    pub signature: usize,
}

/// Deterministic evidence of a cell against its reference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// One plan signature on each side, and the same one.
    pub same_plan: bool,
    /// Median shared hit + read blocks, this cell and the reference.
    pub blocks: u64,
    pub reference_blocks: u64,
    /// Rows returned by the top node, this cell and the reference (last run).
    pub rows: f64,
    pub reference_rows: f64,
}

impl Evidence {
    pub fn same_buffers(&self) -> bool {
        self.blocks == self.reference_blocks
    }

    /// Relative change in blocks touched; None when the reference touched none.
    pub fn blocks_change(&self) -> Option<f64> {
        (self.reference_blocks > 0).then(|| self.blocks as f64 / self.reference_blocks as f64 - 1.0)
    }
}

/// What-if screening (`crate::experiment::screen`): each variant's indexes created as
/// HypoPG hypothetical indexes in a session on a copy of the base, and plain `EXPLAIN`
/// of every query form and parameter set under the reference settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Screening {
    /// `--screen-only`: nothing was built or measured; the report is the screening.
    #[serde(default)]
    pub only: bool,
    /// The HypoPG version used; None when screening was not possible.
    #[serde(default)]
    pub hypopg_version: Option<String>,
    /// Why nothing was screened (HypoPG not installed, CREATE EXTENSION refused), and
    /// how to make it possible.
    #[serde(default)]
    pub unavailable: Option<String>,
    /// The settings set the estimates were made under (the reference, the first one).
    #[serde(default)]
    pub settings: String,
    /// Wall time of the whole screening, its copy of the base included.
    #[serde(default)]
    pub seconds: f64,
    /// Per variant (baseline first; not the A/A control): screenable or why not.
    #[serde(default)]
    pub variants: Vec<ScreenedVariant>,
    /// Per screened variant × query × form × parameter set, under the reference settings.
    #[serde(default)]
    pub cells: Vec<ScreenedCell>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScreenedVariant {
    pub name: String,
    /// Every statement could be expressed as hypothetical indexes (or changes nothing a
    /// plan sees, as `SET` and `ANALYZE`), and HypoPG accepted them.
    pub screenable: bool,
    /// Why not: the first statement HypoPG cannot express, or the error it gave.
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub indexes: Vec<HypotheticalIndex>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HypotheticalIndex {
    /// The variant's statement, on one line.
    pub statement: String,
    /// The name HypoPG gave it (`<13556>btree_t_id`), as plans name it.
    pub name: String,
    /// The index the statement names, schema-qualified as `VariantResult.relations`
    /// spells it (`public.t_id`); None when the statement leaves the name to the server.
    #[serde(default)]
    pub declared: Option<String>,
    /// The table it is on, schema-qualified as `RelationSize.table` spells it.
    pub table: String,
    pub method: String,
    /// `hypopg_relation_size`: HypoPG's estimate of the index's size; on a partitioned
    /// table the sum of its estimates for each leaf partition.
    pub estimated_bytes: i64,
    /// Leaf partitions summed in `estimated_bytes` (0: not a partitioned table).
    #[serde(default)]
    pub partitions: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScreenedCell {
    pub variant: String,
    /// The cache state of the measured cell this estimate stands beside (a plan does not
    /// depend on it: one estimate per query, form and parameter set).
    #[serde(default = "warm")]
    pub cache: String,
    pub query: String,
    pub form: String,
    pub params: String,
    /// Position in `Screening.cells` of the cell whose estimate this one is compared
    /// with (the measured cell's reference: baseline, first form, same parameters).
    #[serde(default)]
    pub reference: Option<usize>,
    /// The estimated plan (plain EXPLAIN: no actual rows, times or buffers).
    pub plan: Option<PlanSummary>,
    /// The plan's estimated total cost (top node).
    #[serde(default)]
    pub cost: Option<f64>,
    /// Estimated cost against the reference's estimate, relative (-0.9 = 90% cheaper).
    #[serde(default)]
    pub cost_change: Option<f64>,
    /// The estimated plan uses one of the variant's hypothetical indexes.
    #[serde(default)]
    pub uses_hypothetical: bool,
    #[serde(default)]
    pub error: Option<String>,
}
