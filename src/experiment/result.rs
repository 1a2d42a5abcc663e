//! What an experiment produced: one type that the terminal, Markdown and JSON reporters
//! all read (as hyperfine's exporters share one result type).

use serde::{Deserialize, Serialize};

use crate::explain::{Buffers, PlanSummary};
use crate::stats::{Change, Summary};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExperimentResult {
    pub experiment: String,
    pub about: String,
    pub seed: String,
    pub environment: Environment,
    pub scale: f64,
    pub runs: RunsUsed,
    pub dataset: DatasetInfo,
    pub baseline: String,
    pub settings: Vec<SettingsSet>,
    pub queries: Vec<QueryInfo>,
    pub variants: Vec<VariantResult>,
    pub cells: Vec<Cell>,
    /// The run was interrupted (Ctrl-C): what was measured until then, nothing more.
    #[serde(default)]
    pub interrupted: bool,
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunsUsed {
    pub warmup: usize,
    pub repeat: usize,
    pub timeout_ms: u64,
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
    /// Each variant statement and how long it took (index build times).
    pub statements: Vec<Timing>,
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
    pub load: Option<crate::load::LoadResult>,
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
    pub fn table_bytes(&self) -> i64 {
        self.relations
            .iter()
            .filter(|r| r.kind == RelationKind::Table)
            .map(|r| r.bytes)
            .sum()
    }
    pub fn index_bytes(&self) -> i64 {
        self.relations
            .iter()
            .filter(|r| r.kind == RelationKind::Index)
            .map(|r| r.bytes)
            .sum()
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
    pub query: String,
    pub form: String,
    pub params: String,
    pub samples: Vec<Sample>,
    /// Planning + execution time, the number the comparison is made on.
    pub time: Option<Summary>,
    pub planning: Option<Summary>,
    pub execution: Option<Summary>,
    /// The last measured (TIMING OFF) run's plan facts.
    pub plan: Option<PlanSummary>,
    /// One TIMING ON run, for per-node times in the report.
    pub timed_plan: Option<String>,
    /// Distinct plan signatures seen across the measured runs.
    pub signatures: Vec<String>,
    /// Against the reference cell (baseline variant, first settings, first form).
    pub change: Option<Change>,
    /// Why the cell has no numbers (timeout, error).
    pub error: Option<String>,
    /// Leaf partitions of the partitioned tables the plan reads: scanned + pruned.
    #[serde(default)]
    pub partitions_total: u64,
}

impl Cell {
    pub fn plan_changed(&self) -> bool {
        self.signatures.len() > 1
    }
    pub fn times(&self) -> Vec<f64> {
        self.samples
            .iter()
            .map(|s| s.planning_ms + s.execution_ms)
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    pub planning_ms: f64,
    pub execution_ms: f64,
    pub buffers: Buffers,
    pub heap_fetches: u64,
    /// Index into the cell's `signatures`.
    pub signature: usize,
}
