//! From measurements to conclusions, once, between the engine and the reporters:
//! [`analyze`] turns the engine's [`Measurements`] into the [`ExperimentResult`] every
//! reporter reads, every field filled:
//!
//! - per cell: execution and planning time summaries;
//! - the A/A control against the baseline, round by round: this run's noise floor per
//!   query, and whether the run is *noisy* (the control itself differed);
//! - per cell against its reference: the deterministic evidence (plan, buffers, rows),
//!   and, for a timed cell, the paired change of execution time (and, on its own, of
//!   planning time), judged as the engine judged it when it stopped (`judge`): an
//!   interval of the mean log ratio at the level of the cell's group design, against
//!   max(5%, the floor);
//! - the reference cells' per-round medians (drift), and the summary's findings.

pub mod answer;
pub mod gate;
pub mod judge;
pub mod screening;

use std::collections::{HashMap, HashSet};

use super::measured::{MeasuredCell, Measurements, TimedGroup};
use super::result::{
    Analysis, Cell, Drift, Evidence, ExperimentResult, Finding, Method, NoiseFloor, SCHEMA_VERSION,
};
use crate::stats::sequential::Design;
use crate::stats::{self, ALPHA, Change, Verdict};

/// Which series of a cell a comparison is on.
#[derive(Clone, Copy)]
enum Time {
    Execution,
    Planning,
}

fn series(cell: &MeasuredCell, time: Time) -> Vec<(usize, f64)> {
    cell.samples
        .iter()
        .map(|s| match time {
            Time::Execution => (s.round, s.execution_ms),
            Time::Planning => (s.round, s.planning_ms),
        })
        .collect()
}

/// A row of the summary: query, parameter set, cache state.
type Row = (String, String, String);

fn row_of(query: &str, params: &str, cache: &str) -> Row {
    (query.to_string(), params.to_string(), cache.to_string())
}

pub fn analyze(m: Measurements) -> ExperimentResult {
    let control = m.control.clone();
    let is_control = |c: &MeasuredCell| Some(&c.variant) == control.as_ref();
    let reference_of = |c: &MeasuredCell| c.reference.and_then(|r| m.cells.get(r));
    // Per row: the (control cell, its baseline cell) positions.
    let mut control_pairs: HashMap<Row, Vec<(usize, usize)>> = HashMap::new();
    for (i, cell) in m.cells.iter().enumerate() {
        if is_control(cell)
            && let Some(r) = cell.reference
        {
            control_pairs
                .entry(row_of(&cell.query, &cell.params, &cell.cache))
                .or_default()
                .push((i, r));
        }
    }
    let rounds_of = |group: Option<usize>| -> Option<HashSet<usize>> {
        group
            .and_then(|g| m.groups.get(g))
            .map(|g| g.rounds.iter().copied().collect())
    };
    let judged = |cell: &MeasuredCell, time: Time, design: &Design, controls: bool| {
        let reference = reference_of(cell)?;
        let rounds = rounds_of(cell.group);
        let pairs: Vec<judge::ControlPair> = if controls {
            control_pairs
                .get(&row_of(&cell.query, &cell.params, &cell.cache))
                .into_iter()
                .flatten()
                .map(|&(c, b)| judge::ControlPair {
                    control: series(&m.cells[c], time),
                    baseline: series(&m.cells[b], time),
                })
                .collect()
        } else {
            Vec::new()
        };
        judge::judge(
            &series(cell, time),
            &series(reference, time),
            &pairs,
            rounds.as_ref(),
            design,
        )
    };

    // The control against the baseline: is the run steady?
    let mut noisy = Vec::new();
    let mut built_differently = 0;
    let mut control_change: HashMap<usize, Change> = HashMap::new();
    for (i, cell) in m.cells.iter().enumerate() {
        let Some(group) = cell.group.and_then(|g| m.groups.get(g)) else {
            continue;
        };
        if !is_control(cell) {
            continue;
        }
        let design = control_design(group);
        let Some(change) = judged(cell, Time::Execution, &design, false) else {
            continue;
        };
        if change.verdict != Verdict::NoChange {
            let evidence = reference_of(cell)
                .and_then(|r| evidence_of(cell, r))
                .filter(differs);
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
            noisy.push((
                row_of(&cell.query, &cell.params, &cell.cache),
                format!(
                    "{} {} ({:+.1}%{blocks})",
                    cell.query,
                    cell.params,
                    change.ratio * 100.0
                ),
            ));
        }
        control_change.insert(i, change);
    }
    let noisy_builds = !noisy.is_empty() && built_differently == noisy.len();
    let noisy_rows: HashSet<Row> = noisy.iter().map(|(row, _)| row.clone()).collect();

    let cells: Vec<Cell> = m
        .cells
        .iter()
        .enumerate()
        .map(|(i, cell)| {
            let reference = reference_of(cell);
            let design = cell
                .group
                .and_then(|g| m.groups.get(g))
                .map(|g| g.design.clone());
            let (change, planning_change) = match (&design, is_control(cell)) {
                (_, true) => (control_change.get(&i).copied(), None),
                (Some(design), false) if cell.untimed.is_none() => (
                    judged(cell, Time::Execution, design, true),
                    judged(cell, Time::Planning, design, true),
                ),
                _ => (None, None),
            };
            let execution: Vec<f64> = cell.samples.iter().map(|s| s.execution_ms).collect();
            let planning: Vec<f64> = cell.samples.iter().map(|s| s.planning_ms).collect();
            Cell {
                variant: cell.variant.clone(),
                settings: cell.settings.clone(),
                cache: cell.cache.clone(),
                query: cell.query.clone(),
                form: cell.form.clone(),
                params: cell.params.clone(),
                reference: cell.reference,
                samples: cell.samples.clone(),
                plan: cell.plan.clone(),
                timed_plan: cell.timed_plan.clone(),
                signatures: cell.signatures.clone(),
                error: cell.error.clone(),
                partitions_total: cell.partitions_total,
                eviction: cell.eviction.clone(),
                execution: stats::summarize(&execution),
                planning: stats::summarize(&planning),
                change,
                planning_change,
                evidence: if is_control(cell) {
                    None
                } else {
                    reference.and_then(|r| evidence_of(cell, r))
                },
                untimed: cell.untimed.clone(),
            }
        })
        .collect();
    let noisy_text = (!noisy.is_empty()).then(|| {
        let list: Vec<String> = noisy.iter().map(|(_, text)| text.clone()).collect();
        if noisy_builds {
            format!(
                "the A/A control, a second build of the baseline's statements, differed from it \
                 beyond the 5% noise band on {}: its plan or blocks differ as well, so the same \
                 SQL built a different copy (GiST builds, for one, break ties at random), and a \
                 variant's difference of that size may be its build rather than its design",
                list.join(", ")
            )
        } else {
            format!(
                "the A/A control, an identical copy of the baseline, differed from it beyond the 5% noise band on {}",
                list.join(", ")
            )
        }
    });
    let mut r = ExperimentResult {
        schema_version: SCHEMA_VERSION,
        experiment: m.experiment,
        about: m.about,
        seed: m.seed,
        environment: m.environment,
        scale: m.scale,
        runs: m.runs,
        dataset: m.dataset,
        baseline: m.baseline,
        control: m.control,
        schedule: m.schedule,
        settings: m.settings,
        queries: m.queries,
        variants: m.variants,
        cells,
        analysis: Analysis::default(),
        interrupted: m.interrupted,
        stopped_by: m.stopped_by,
        screening: m.screening,
        wall: m.wall,
        shard: m.shard,
        shards: Vec::new(),
    };
    r.analysis = Analysis {
        floors: floors_of(&r),
        drift: drift_of(&r),
        findings: findings_of(&r, &noisy_rows),
        noisy: noisy_text,
        noisy_builds,
        method: Some(Method { groups: m.groups }),
        answers: Vec::new(),
    };
    r.analysis.answers = answer::answers(&r, &|c| noisy_rows.contains(&cell_row(c)));
    r
}

/// A report put together from shards (`crate::experiment::merge`): every cell keeps the
/// evidence, change and threshold its own shard's run gave it; the run-wide conclusions
/// (drift, the summary's findings, the answer) are drawn again over all the cells, a row
/// being noisy where any shard's control differed.
pub fn conclude_merged(r: &mut ExperimentResult) {
    let noisy_rows: HashSet<Row> = r
        .shards
        .iter()
        .flat_map(|s| &s.floors)
        .filter(|f| f.control.is_some_and(|c| c.verdict != Verdict::NoChange))
        .map(|f| row_of(&f.query, &f.params, &f.cache))
        .collect();
    r.analysis.drift = drift_of(r);
    r.analysis.findings = findings_of(r, &noisy_rows);
    r.analysis.answers = answer::answers(r, &|c| noisy_rows.contains(&cell_row(c)));
}

/// The design the control's comparisons are judged with: the group's looks, the
/// group's control comparisons as the family, the whole α (a question of its own: is
/// the run steady?).
pub fn control_design(group: &TimedGroup) -> Design {
    Design {
        looks: group.design.looks.clone(),
        family: group.controls.max(1),
        alpha: ALPHA,
    }
}

fn evidence_of(cell: &MeasuredCell, reference: &MeasuredCell) -> Option<Evidence> {
    let (blocks, reference_blocks) = (blocks(cell)?, blocks(reference)?);
    Some(Evidence {
        same_plan: cell.signatures.len() == 1 && cell.signatures == reference.signatures,
        blocks,
        reference_blocks,
        rows: cell.plan.as_ref().map_or(0.0, |p| p.rows),
        reference_rows: reference.plan.as_ref().map_or(0.0, |p| p.rows),
    })
}

/// Median shared hit + read blocks over the recorded runs; the evidence run's when
/// none was recorded.
fn blocks(cell: &MeasuredCell) -> Option<u64> {
    let mut blocks: Vec<u64> = cell
        .samples
        .iter()
        .map(|s| s.buffers.shared_hit + s.buffers.shared_read)
        .collect();
    if blocks.is_empty() {
        return cell.plan.as_ref().map(|p| p.blocks());
    }
    blocks.sort_unstable();
    blocks.get(blocks.len() / 2).copied()
}

/// Plan or buffers differ beyond a block or two: evidence that is not timing.
pub fn differs(evidence: &Evidence) -> bool {
    !evidence.same_plan || crate::explain::counts_differ(evidence.blocks, evidence.reference_blocks)
}

fn cell_row(cell: &Cell) -> Row {
    row_of(&cell.query, &cell.params, &cell.cache)
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
    let present: HashSet<Row> = r.cells.iter().map(cell_row).collect();
    let mut out = Vec::new();
    for q in &r.queries {
        for p in &q.params {
            for cache in &caches {
                let row = row_of(&q.name, &p.label, cache);
                if present.contains(&row) {
                    out.push(row);
                }
            }
        }
    }
    out
}

/// Per row: the largest floor over its control pairs (all their rounds), and the
/// control's change against the baseline in the reference settings and form.
fn floors_of(r: &ExperimentResult) -> Vec<NoiseFloor> {
    let Some(control) = &r.control else {
        return Vec::new();
    };
    let mut floors: HashMap<Row, f64> = HashMap::new();
    let mut headline: HashMap<Row, Change> = HashMap::new();
    let mut quantum: HashMap<Row, f64> = HashMap::new();
    for cell in r.cells.iter().filter(|c| &c.variant == control) {
        let Some(baseline) = cell.reference.and_then(|i| r.cells.get(i)) else {
            continue;
        };
        if cell.samples.is_empty() {
            continue;
        }
        let pair = judge::ControlPair {
            control: cell.execution_by_round(),
            baseline: baseline.execution_by_round(),
        };
        let floor = judge::floor(&[pair], None);
        let entry = floors.entry(cell_row(cell)).or_insert(0.0);
        *entry = entry.max(floor);
        if let Some(ms) = baseline
            .execution
            .as_ref()
            .map(|s| s.median)
            .filter(|m| *m > 0.0)
        {
            quantum.insert(cell_row(cell), judge::TIMER_RESOLUTION_MS / ms);
        }
        // The control in the reference settings and form is the headline one.
        if baseline.reference.is_none()
            && let Some(change) = cell.change
        {
            headline.insert(cell_row(cell), change);
        }
    }
    rows(r)
        .into_iter()
        .filter_map(|row| {
            let floor = floors.get(&row).copied()?;
            let control = headline.get(&row).copied();
            let resolution = quantum.get(&row).copied();
            let (query, params, cache) = row;
            Some(NoiseFloor {
                query,
                params,
                cache,
                floor,
                control,
                resolution,
            })
        })
        .collect()
}

fn drift_of(r: &ExperimentResult) -> Vec<Drift> {
    // The drift of the reference cache state (warm): cold rounds are few and slow.
    let first_cache = r.cells.first().map(|c| c.cache.clone()).unwrap_or_default();
    let mut rounds: Vec<usize> = r
        .cells
        .iter()
        .filter(|c| c.cache == first_cache)
        .flat_map(|c| c.samples.iter().map(|s| s.round))
        .collect();
    rounds.sort_unstable();
    rounds.dedup();
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
            if reference.samples.is_empty() {
                return None;
            }
            let mut per_round: HashMap<usize, Vec<f64>> = HashMap::new();
            for s in &reference.samples {
                per_round.entry(s.round).or_default().push(s.execution_ms);
            }
            let round_medians = rounds
                .iter()
                .map(|round| {
                    per_round.get(round).map(|v| {
                        let mut v = v.clone();
                        v.sort_by(f64::total_cmp);
                        stats::percentile(&v, 50.0)
                    })
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

/// The summary, one finding per row: the fastest cell called faster (none in a row the
/// control was noisy in, unless its plan or blocks differ too: evidence noise cannot
/// make), and every cell whose evidence differs.
fn findings_of(r: &ExperimentResult, noisy_rows: &HashSet<Row>) -> Vec<Finding> {
    let mut by_row: HashMap<Row, Vec<usize>> = HashMap::new();
    for (i, c) in r.cells.iter().enumerate() {
        if Some(&c.variant) != r.control.as_ref() {
            by_row.entry(cell_row(c)).or_default().push(i);
        }
    }
    rows(r)
        .into_iter()
        .map(|row| {
            let here = by_row.get(&row).cloned().unwrap_or_default();
            let noisy = noisy_rows.contains(&row);
            let reference = here
                .iter()
                .copied()
                .find(|&i| r.cells[i].reference.is_none() && r.cells[i].variant == r.baseline);
            let best = here
                .iter()
                .copied()
                .filter(|&i| {
                    let c = &r.cells[i];
                    c.change.is_some_and(|ch| ch.verdict == Verdict::Faster)
                        && (!noisy || c.evidence.as_ref().is_some_and(differs))
                })
                .min_by(|&a, &b| {
                    let median =
                        |i: usize| r.cells[i].execution.as_ref().map_or(f64::MAX, |s| s.median);
                    median(a).total_cmp(&median(b))
                });
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

/// Per-cell summaries of a result made by hand (tests of readers of results).
#[cfg(test)]
pub fn summarize_cells(r: &mut ExperimentResult) {
    for cell in &mut r.cells {
        let execution: Vec<f64> = cell.samples.iter().map(|s| s.execution_ms).collect();
        let planning: Vec<f64> = cell.samples.iter().map(|s| s.planning_ms).collect();
        cell.execution = stats::summarize(&execution);
        cell.planning = stats::summarize(&planning);
    }
}
