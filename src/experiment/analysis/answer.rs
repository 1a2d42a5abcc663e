//! The report's answer, decided once: per row of the summary (query, parameter set,
//! cache state), which cell to adopt, which cells are slower, which are faster only on
//! other work or by less than anyone would notice, and whether the query's target is met
//! at this scale.
//!
//! A cell is adopted only when it is called faster, does the same work as its
//! reference (the same rows returned, or affected for DML; the forms of a query
//! returned the same result), and gains at least [`NEGLIGIBLE_MS`]. Its costs (sizes,
//! build time) and where it is slower elsewhere are for the reporters to read beside it.

use serde::{Deserialize, Serialize};

use super::super::result::{Cell, ExperimentResult};
use crate::stats::Verdict;

/// A gain smaller than this (10 µs) is reported as such, not as a reason to adopt.
pub const NEGLIGIBLE_MS: f64 = 0.010;

/// What the report answers for one row.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Answer {
    pub query: String,
    pub params: String,
    pub cache: String,
    /// Position in `cells` of the reference.
    pub reference: Option<usize>,
    /// The cell to adopt: faster, the same work, a gain worth having.
    pub adopt: Option<usize>,
    /// Called faster by less than [`NEGLIGIBLE_MS`].
    #[serde(default)]
    pub negligible: Vec<usize>,
    /// Called different but doing other work than the reference (other rows returned or
    /// affected): compared per row of work, never as a win.
    #[serde(default)]
    pub unequal: Vec<usize>,
    /// Called slower.
    #[serde(default)]
    pub slower: Vec<usize>,
    /// Cells not timed: the same plan, blocks and rows as the reference.
    #[serde(default)]
    pub untimed: usize,
    /// The query's target, and whether this row meets it.
    #[serde(default)]
    pub target: Option<TargetCheck>,
}

/// A query's target (execution under `under_ms`), judged at the seeds' scale only.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct TargetCheck {
    pub under_ms: f64,
    /// The median of the cell that would be adopted (else the reference's).
    pub best_ms: Option<f64>,
    /// Met or not; None when this run is not at the seed's scale (1), where the target
    /// holds.
    pub met: Option<bool>,
}

/// The units of work a cell did: rows affected by DML, else rows returned.
pub fn work(cell: &Cell) -> Option<f64> {
    cell.plan
        .as_ref()
        .map(|p| p.rows_affected.unwrap_or(p.rows))
}

/// Does the cell do the same work as its reference: the same rows, and (for another form
/// of the query) a result every form agreed on?
pub fn same_work(r: &ExperimentResult, cell: &Cell, reference: &Cell) -> bool {
    if work(cell) != work(reference) {
        return false;
    }
    if cell.form == reference.form {
        return true;
    }
    // Another form: the equivalence check of its variant, settings and parameters.
    r.queries
        .iter()
        .find(|q| q.name == cell.query)
        .and_then(|q| {
            q.equivalence.iter().find(|e| {
                e.variant == cell.variant && e.settings == cell.settings && e.params == cell.params
            })
        })
        .is_none_or(|e| e.equivalent)
}

fn median(cell: &Cell) -> Option<f64> {
    cell.execution.as_ref().map(|s| s.median)
}

/// Every row's answer. `noisy`: rows whose A/A control differed (no timing win there
/// unless the plan or blocks differ too).
pub fn answers(r: &ExperimentResult, noisy: &dyn Fn(&Cell) -> bool) -> Vec<Answer> {
    let control = r.control.clone();
    r.analysis
        .findings
        .iter()
        .map(|f| {
            let row: Vec<usize> = r
                .cells
                .iter()
                .enumerate()
                .filter(|(_, c)| {
                    c.query == f.query
                        && c.params == f.params
                        && c.cache == f.cache
                        && Some(&c.variant) != control.as_ref()
                        && c.reference.is_some()
                })
                .map(|(i, _)| i)
                .collect();
            let mut answer = Answer {
                query: f.query.clone(),
                params: f.params.clone(),
                cache: f.cache.clone(),
                reference: f.reference,
                ..Answer::default()
            };
            let mut winners: Vec<usize> = Vec::new();
            for &i in &row {
                let cell = &r.cells[i];
                if cell.untimed.is_some() {
                    answer.untimed += 1;
                }
                let Some(reference) = cell.reference.and_then(|j| r.cells.get(j)) else {
                    continue;
                };
                let Some(change) = cell.change else { continue };
                let called = change.verdict != Verdict::NoChange;
                if called && !same_work(r, cell, reference) {
                    answer.unequal.push(i);
                    continue;
                }
                match change.verdict {
                    Verdict::Slower => answer.slower.push(i),
                    Verdict::Faster => {
                        let gain = median(reference).zip(median(cell)).map(|(a, b)| a - b);
                        let backed = cell.evidence.as_ref().is_some_and(super::differs);
                        if noisy(cell) && !backed {
                            continue;
                        }
                        if gain.is_some_and(|g| g < NEGLIGIBLE_MS) {
                            answer.negligible.push(i);
                        } else {
                            winners.push(i);
                        }
                    }
                    Verdict::NoChange => {}
                }
            }
            answer.adopt = winners.into_iter().min_by(|&a, &b| {
                let m = |i: usize| median(&r.cells[i]).unwrap_or(f64::MAX);
                m(a).total_cmp(&m(b))
            });
            let target_ms = r
                .queries
                .iter()
                .find(|q| q.name == f.query)
                .and_then(|q| q.target_ms);
            answer.target = target_ms.map(|under_ms| {
                let best_ms = answer
                    .adopt
                    .or(answer.reference)
                    .and_then(|i| r.cells.get(i))
                    .and_then(median);
                TargetCheck {
                    under_ms,
                    best_ms,
                    met: (r.scale == 1.0).then(|| best_ms.is_some_and(|ms| ms <= under_ms)),
                }
            });
            answer
        })
        .collect()
}
