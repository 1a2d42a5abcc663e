//! From samples to conclusions, once, between the engine and the reporters:
//!
//! - per cell: execution and planning time summaries;
//! - the A/A control against the baseline, round by round: this run's noise floor per
//!   query, and whether the run is *noisy* (the control itself differed);
//! - per cell against its reference: the paired change of execution time (and, on its
//!   own, of planning time), called only beyond max(5%, the floor), Holm-corrected
//!   across the matrix; and the deterministic evidence (plan, buffers, rows);
//! - the reference cells' per-round medians (drift), and the summary's findings.

use std::collections::HashMap;

use super::result::{Analysis, Cell, Drift, Evidence, ExperimentResult, Finding, NoiseFloor};
use crate::stats::{self, Change, Verdict};

/// Buffers differ "for real" when the blocks touched differ by more than this share
/// (and by more than one block): a catalog lookup can add a block or two.
const BLOCKS_TOLERANCE: f64 = 0.01;

pub fn analyze(r: &mut ExperimentResult) {
    for cell in &mut r.cells {
        let execution: Vec<f64> = cell.samples.iter().map(|s| s.execution_ms).collect();
        let planning: Vec<f64> = cell.samples.iter().map(|s| s.planning_ms).collect();
        cell.execution = stats::summarize(&execution);
        cell.planning = stats::summarize(&planning);
    }
    let control = r.control.clone();
    let is_control = |c: &Cell| Some(&c.variant) == control.as_ref();

    // The control against the baseline: floors, and whether the run is noisy.
    let mut floors: HashMap<Row, (f64, f64)> = HashMap::new();
    let mut control_changes: Vec<(usize, Option<Change>)> = Vec::new();
    for (i, cell) in r.cells.iter().enumerate() {
        let Some(reference) = reference_of(&r.cells, cell).filter(|_| is_control(cell)) else {
            continue;
        };
        let execution =
            stats::paired_ratios(&cell.execution_by_round(), &reference.execution_by_round());
        let planning =
            stats::paired_ratios(&cell.planning_by_round(), &reference.planning_by_round());
        let floor = floors.entry(row_of(cell)).or_insert((0.0, 0.0));
        floor.0 = floor.0.max(stats::noise_floor(&execution));
        floor.1 = floor.1.max(stats::noise_floor(&planning));
        control_changes.push((i, stats::compare_ratios(&execution, stats::NOISE)));
    }
    let mut changes: Vec<Option<Change>> = control_changes.iter().map(|(_, c)| *c).collect();
    stats::holm_correct(&mut changes);
    let mut noisy = Vec::new();
    // Flagged cells whose plan or blocks differ too: the control's build is not the
    // baseline's (a GiST build breaks ties at random), which timing noise cannot explain.
    let mut built_differently = 0;
    for ((i, _), change) in control_changes.iter().zip(changes) {
        let evidence = reference_of(&r.cells, &r.cells[*i])
            .and_then(|reference| evidence_of(&r.cells[*i], reference))
            .filter(differs);
        let cell = &mut r.cells[*i];
        if let Some(c) = change
            && c.verdict != Verdict::NoChange
        {
            let blocks = match &evidence {
                Some(e) => {
                    built_differently += 1;
                    format!(
                        "; {} blocks against the baseline's {}{}",
                        e.blocks,
                        e.reference_blocks,
                        if e.same_plan { "" } else { ", another plan" }
                    )
                }
                None => String::new(),
            };
            noisy.push(format!(
                "{} {} ({:+.1}%{blocks})",
                cell.query,
                cell.params,
                c.ratio * 100.0
            ));
        }
        cell.change = change;
    }
    let noisy_builds = !noisy.is_empty() && built_differently == noisy.len();

    // Every other cell against its reference.
    let threshold = |cell: &Cell, planning: bool| {
        let (execution, plan) = floors.get(&row_of(cell)).copied().unwrap_or((0.0, 0.0));
        stats::NOISE.max(if planning { plan } else { execution })
    };
    let mut execution_changes = Vec::new();
    let mut planning_changes = Vec::new();
    let mut evidence = Vec::new();
    let mut compared = Vec::new();
    for (i, cell) in r.cells.iter().enumerate() {
        if is_control(cell) {
            continue;
        }
        let Some(reference) = reference_of(&r.cells, cell) else {
            continue;
        };
        compared.push(i);
        let execution =
            stats::paired_ratios(&cell.execution_by_round(), &reference.execution_by_round());
        let planning =
            stats::paired_ratios(&cell.planning_by_round(), &reference.planning_by_round());
        execution_changes.push(stats::compare_ratios(&execution, threshold(cell, false)));
        planning_changes.push(stats::compare_ratios(&planning, threshold(cell, true)));
        evidence.push(evidence_of(cell, reference));
    }
    for changes in [&mut execution_changes, &mut planning_changes] {
        stats::holm_correct(changes);
        stats::mark_too_few_rounds(changes);
    }
    for (((i, execution), planning), evidence) in compared
        .into_iter()
        .zip(execution_changes)
        .zip(planning_changes)
        .zip(evidence)
    {
        let cell = &mut r.cells[i];
        cell.change = execution;
        cell.planning_change = planning;
        cell.evidence = evidence;
    }

    let noisy = (!noisy.is_empty()).then(|| {
        if noisy_builds {
            format!(
                "the A/A control, a second build of the baseline's statements, differed from it \
                 beyond the 5% noise band on {}: its plan or blocks differ as well, so the same \
                 SQL built a different copy (GiST builds, for one, break ties at random), and a \
                 variant's difference of that size may be its build rather than its design",
                noisy.join(", ")
            )
        } else {
            format!(
                "the A/A control, an identical copy of the baseline, differed from it beyond the 5% noise band on {}",
                noisy.join(", ")
            )
        }
    });
    r.analysis = Analysis {
        floors: floors_of(r, &floors),
        drift: drift_of(r),
        findings: findings_of(r, noisy.is_some()),
        noisy,
        noisy_builds,
    };
}

/// A row of the summary: query, parameter set, cache state.
type Row = (String, String, String);

fn row_of(cell: &Cell) -> Row {
    (cell.query.clone(), cell.params.clone(), cell.cache.clone())
}

fn reference_of<'a>(cells: &'a [Cell], cell: &Cell) -> Option<&'a Cell> {
    cell.reference.and_then(|r| cells.get(r))
}

fn evidence_of(cell: &Cell, reference: &Cell) -> Option<Evidence> {
    let (blocks, reference_blocks) = (cell.blocks()?, reference.blocks()?);
    Some(Evidence {
        same_plan: cell.signatures.len() == 1 && cell.signatures == reference.signatures,
        blocks,
        reference_blocks,
        rows: cell.plan.as_ref().map_or(0.0, |p| p.rows),
        reference_rows: reference.plan.as_ref().map_or(0.0, |p| p.rows),
    })
}

/// Plan or buffers differ beyond a block or two: evidence that is not timing.
pub fn differs(evidence: &Evidence) -> bool {
    let gap = evidence.blocks.abs_diff(evidence.reference_blocks);
    !evidence.same_plan
        || (gap > 1 && gap as f64 > BLOCKS_TOLERANCE * evidence.reference_blocks as f64)
}

/// (query, params, cache) rows in report order: queries and parameter sets as in the
/// file, cache states as the cells have them (the reference state first).
fn rows(r: &ExperimentResult) -> Vec<Row> {
    let mut caches: Vec<&str> = Vec::new();
    for c in &r.cells {
        if !caches.contains(&c.cache.as_str()) {
            caches.push(&c.cache);
        }
    }
    let mut out = Vec::new();
    for q in &r.queries {
        for p in &q.params {
            for cache in &caches {
                let row = (q.name.clone(), p.label.clone(), cache.to_string());
                if r.cells.iter().any(|c| row_of(c) == row) {
                    out.push(row);
                }
            }
        }
    }
    out
}

fn floors_of(r: &ExperimentResult, floors: &HashMap<Row, (f64, f64)>) -> Vec<NoiseFloor> {
    let Some(control) = &r.control else {
        return Vec::new();
    };
    rows(r)
        .into_iter()
        .filter_map(|row| {
            let (floor, _) = floors.get(&row).copied()?;
            // The control in the reference settings and form is the headline one.
            let change = r
                .cells
                .iter()
                .find(|c| {
                    &c.variant == control
                        && row_of(c) == row
                        && c.reference
                            .and_then(|i| r.cells.get(i))
                            .is_some_and(|b| b.reference.is_none())
                })
                .and_then(|c| c.change);
            let (query, params, cache) = row;
            Some(NoiseFloor {
                query,
                params,
                cache,
                floor,
                control: change,
            })
        })
        .collect()
}

fn drift_of(r: &ExperimentResult) -> Vec<Drift> {
    let rounds = r
        .cells
        .iter()
        .flat_map(|c| c.samples.iter().map(|s| s.round + 1))
        .max()
        .unwrap_or(0);
    // The drift of the reference cache state (warm): cold rounds are few and slow.
    let first_cache = r.cells.first().map(|c| c.cache.clone()).unwrap_or_default();
    rows(r)
        .into_iter()
        .filter(|(_, _, cache)| *cache == first_cache)
        .filter_map(|(query, params, cache)| {
            let reference = r.cells.iter().find(|c| {
                c.query == query
                    && c.params == params
                    && c.cache == cache
                    && c.variant == r.baseline
                    && c.reference.is_none()
            })?;
            let mut per_round: Vec<Vec<f64>> = vec![Vec::new(); rounds];
            for s in &reference.samples {
                if let Some(values) = per_round.get_mut(s.round) {
                    values.push(s.execution_ms);
                }
            }
            let round_medians = per_round
                .into_iter()
                .map(|mut v| {
                    v.sort_by(f64::total_cmp);
                    (!v.is_empty()).then(|| stats::percentile(&v, 50.0))
                })
                .collect();
            Some(Drift {
                query,
                params,
                round_medians,
            })
        })
        .collect()
}

fn findings_of(r: &ExperimentResult, noisy: bool) -> Vec<Finding> {
    rows(r)
        .into_iter()
        .map(|row| {
            let here: Vec<usize> = r
                .cells
                .iter()
                .enumerate()
                .filter(|(_, c)| row_of(c) == row && Some(&c.variant) != r.control.as_ref())
                .map(|(i, _)| i)
                .collect();
            let reference = here
                .iter()
                .copied()
                .find(|&i| r.cells[i].reference.is_none() && r.cells[i].variant == r.baseline);
            let best = (!noisy)
                .then(|| {
                    here.iter()
                        .copied()
                        .filter(|&i| {
                            r.cells[i]
                                .change
                                .is_some_and(|c| c.verdict == Verdict::Faster)
                        })
                        .min_by(|&a, &b| {
                            let median = |i: usize| {
                                r.cells[i].execution.as_ref().map_or(f64::MAX, |s| s.median)
                            };
                            median(a).total_cmp(&median(b))
                        })
                })
                .flatten();
            let differs = here
                .iter()
                .copied()
                .filter(|&i| r.cells[i].evidence.as_ref().is_some_and(differs))
                .collect();
            let (query, params, cache) = row;
            Finding {
                query,
                params,
                cache,
                reference,
                best,
                differs,
            }
        })
        .collect()
}
