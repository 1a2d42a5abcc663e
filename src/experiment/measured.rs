//! What the engine hands the analysis: measurements and nothing concluded from them.
//! [`crate::experiment::analysis::analyze`] turns them into the
//! [`ExperimentResult`](super::result::ExperimentResult) every reporter reads.

use serde::{Deserialize, Serialize};

use super::result::{
    DatasetInfo, Environment, QueryInfo, RunsUsed, Sample, ScheduleInfo, Screening, SettingsSet,
    VariantResult, WallTimes,
};
use crate::explain::{PlanNode, PlanSummary};
use crate::stats::sequential::Design;

/// A run's measurements.
#[derive(Debug, Clone)]
pub struct Measurements {
    pub experiment: String,
    pub about: String,
    pub seed: String,
    pub scale: f64,
    pub environment: Environment,
    pub runs: RunsUsed,
    pub dataset: DatasetInfo,
    pub baseline: String,
    pub control: Option<String>,
    pub schedule: ScheduleInfo,
    pub settings: Vec<SettingsSet>,
    pub queries: Vec<QueryInfo>,
    pub variants: Vec<VariantResult>,
    pub cells: Vec<MeasuredCell>,
    /// The groups of comparisons timed together, each with its statistical design.
    pub groups: Vec<TimedGroup>,
    pub interrupted: bool,
    /// Why the run stopped early when it was not Ctrl-C.
    pub stopped_by: Option<String>,
    pub screening: Option<Screening>,
    pub wall: Option<WallTimes>,
    /// The slice of the candidates measured (`--shard K/N`).
    pub shard: Option<crate::experiment::plan::Shard>,
}

/// Comparisons timed in the same rounds and judged as one family.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimedGroup {
    /// "reads, warm", "writes, cold", ... (with the stage when there are several).
    pub name: String,
    pub design: Design,
    /// A/A control comparisons timed in it (judged as a family of their own: is the
    /// run steady?).
    pub controls: usize,
    /// The rounds (numbers) it ran.
    #[serde(default)]
    pub rounds: Vec<usize>,
}

/// One cell as measured.
#[derive(Debug, Clone)]
pub struct MeasuredCell {
    pub variant: String,
    pub settings: String,
    pub cache: String,
    pub query: String,
    pub form: String,
    pub params: String,
    /// Position in `cells` of the cell it is compared with.
    pub reference: Option<usize>,
    pub samples: Vec<Sample>,
    /// The last recorded run's plan facts; the evidence run's for a cell not timed.
    pub plan: Option<PlanSummary>,
    /// The evidence run (TIMING ON), for per-node times.
    pub timed_plan: Option<PlanNode>,
    pub signatures: Vec<String>,
    pub error: Option<String>,
    pub partitions_total: u64,
    pub eviction: Option<String>,
    /// Why the cell was not timed (its evidence equals its reference's).
    pub untimed: Option<String>,
    /// The group (position in `groups`) its comparison was judged in, when timed.
    pub group: Option<usize>,
}
