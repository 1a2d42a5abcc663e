//! What CI gates on (`--fail-on`), read from one run's own verdicts (`pgx experiment
//! --fail-on`, where every comparison was measured in the same interleaved rounds) or
//! from two runs compared (`pgx compare --fail-on`, `crate::compare`).

use crate::experiment::matrix::CONTROL;
use crate::experiment::result::ExperimentResult;
use crate::stats::Verdict;

/// What CI can gate on (`--fail-on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Gate {
    /// A cell called slower beyond noise (timings: only when they are trusted), or a cell
    /// that now fails; across environments, a cell that touches more blocks stands in.
    Regression,
    /// A cell whose plan signature changed.
    PlanChange,
    /// A cell that touches more blocks (exact: shared hit + read).
    Buffers,
}

impl Gate {
    pub fn name(self) -> &'static str {
        match self {
            Gate::Regression => "regression",
            Gate::PlanChange => "plan-change",
            Gate::Buffers => "buffers",
        }
    }
}

/// A gate a cell of one run fails.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// Position in the result's `cells`.
    pub cell: usize,
    pub gate: Gate,
    /// What it found: "slower: +12.0% (threshold 5.0%)", "plan changed", ...
    pub what: String,
}

/// The gates one run fails: a cell compared with its reference (the A/A control's own
/// cells excluded: their differences are the run's noise, not a change).
pub fn failures(result: &ExperimentResult, gates: &[Gate]) -> Vec<Failure> {
    let mut found = Vec::new();
    for (i, cell) in result.cells.iter().enumerate() {
        if cell.variant == CONTROL {
            continue;
        }
        for &gate in gates {
            let what = match gate {
                Gate::Regression => match (&cell.change, &cell.error) {
                    (_, Some(error)) => Some(format!("failed: {error}")),
                    (Some(change), None) if change.verdict == Verdict::Slower => Some(format!(
                        "slower: {:+.1}% (threshold {:.1}%)",
                        change.ratio * 100.0,
                        change.threshold * 100.0
                    )),
                    _ => None,
                },
                Gate::PlanChange => cell
                    .evidence
                    .filter(|e| !e.same_plan)
                    .map(|_| "plan changed".to_string()),
                Gate::Buffers => cell
                    .evidence
                    .filter(|e| e.blocks > e.reference_blocks)
                    .map(|e| format!("blocks {} → {}", e.reference_blocks, e.blocks)),
            };
            if let Some(what) = what {
                found.push(Failure {
                    cell: i,
                    gate,
                    what,
                });
            }
        }
    }
    found
}
