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
