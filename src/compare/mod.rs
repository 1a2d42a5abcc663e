//! `pgx compare OLD.json NEW.json`: two runs of the same experiment side by side (main
//! and a pull request, yesterday and today), in the spirit of benchstat.
//!
//! What is exact is reported first and gated on by default: a cell's plan signature and
//! the blocks it touches are the same in every run of the same code on the same data, so
//! a change there is never noise. Timings are compared with the unpaired statistics of
//! [`stats`] against a band built from each run's own A/A floor and the drift between
//! the runs, and only trusted for a gate when both runs come from the same environment
//! and neither was noisy.
//!
//! The flow: [`compare`] (match cells, evidence, timings, Holm) → [`Comparison`] → the
//! renderers in [`render`] (one table model, terminal and Markdown) → [`Comparison::gate`]
//! for the exit code.

pub mod plan_diff;
pub mod render;
pub mod timing;

use std::collections::HashMap;

use crate::experiment::analysis::differs;
use crate::experiment::result::{Cell, Evidence, ExperimentResult};
use crate::stats::{Change, NOISE, Verdict, holm_correct};

pub use crate::experiment::result::Key;

/// One cell of either run, or both.
#[derive(Debug, Clone)]
pub struct Row {
    pub key: Key,
    /// Positions in `old.cells` / `new.cells`.
    pub old: Option<usize>,
    pub new: Option<usize>,
    /// The sets of plan signatures differ (a cell whose plan flipped between runs in
    /// both runs alike has not changed).
    pub plan_changed: bool,
    /// Median blocks touched (shared hit + read), old and new, when both have runs.
    pub blocks: Option<(u64, u64)>,
    /// Blocks differ beyond a block or two (the tolerance the experiment report uses).
    pub buffers_changed: bool,
    /// Rows returned by the top node, old and new, when they differ.
    pub rows_changed: Option<(f64, f64)>,
    /// The parameter values behind the label differ between the runs.
    pub params_changed: bool,
    /// The query form's SQL, its parameter values or the variant's statements differ
    /// between the runs: the code under test changed here.
    pub sql_changed: bool,
    pub timing: Option<Timing>,
    /// The new run failed where the old one measured (an error or a timeout).
    pub now_fails: Option<String>,
}

impl Row {
    pub fn matched(&self) -> bool {
        self.old.is_some() && self.new.is_some()
    }
    /// Plan and buffers alike: any timing change is not explained by the plan.
    pub fn same_evidence(&self) -> bool {
        self.matched() && !self.plan_changed && !self.buffers_changed && self.blocks.is_some()
    }
}

/// The execution-time comparison of one matched cell.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Hodges-Lehmann change new/old with its interval; `threshold` is max(5%, floors);
    /// verdict after Holm.
    pub change: Change,
    /// The band of new/old ratios that counts as no change: the threshold around 1 and
    /// around the drift.
    pub lower: f64,
    pub upper: f64,
    /// How much the other cells of the same query (or, lacking those, of the run) moved
    /// between the runs with the same plan and buffers: the machine, not the code.
    pub drift: Option<Drift>,
}

#[derive(Debug, Clone, Copy)]
pub struct Drift {
    /// Median new/old ratio of the peers.
    pub ratio: f64,
    pub peers: usize,
    /// Peers were the query's own cells (else the whole run's).
    pub same_query: bool,
}

/// One line of the environments that differ.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub what: String,
    pub old: String,
    pub new: String,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Gate on timings even when the runs come from different environments or a run is
    /// noisy.
    pub gate_timings: bool,
}

pub use crate::experiment::analysis::gate::Gate;

pub struct Comparison {
    pub old: ExperimentResult,
    pub new: ExperimentResult,
    /// Labels of the two runs as given on the command line.
    pub old_label: String,
    pub new_label: String,
    /// Matched cells in the new run's order, then the cells only the old run has.
    pub rows: Vec<Row>,
    /// Server, machine or settings that differ: timings are then not comparable.
    pub environment: Vec<Difference>,
    /// Other things worth knowing (dataset changed, schedule differs, noisy runs).
    pub notes: Vec<String>,
    /// Timings may gate: same environment, neither run noisy (or `--gate-timings`).
    pub timings_trusted: bool,
    /// Why timings are not trusted, when they are not.
    pub untrusted_because: Vec<String>,
}

/// Refuse what cannot be compared, with what to do instead.
pub fn check_comparable(old: &ExperimentResult, new: &ExperimentResult) -> anyhow::Result<()> {
    if old.experiment != new.experiment {
        return Err(crate::error::fail(
            format!(
                "the runs are of different experiments: {} and {}",
                old.experiment, new.experiment
            ),
            "compare two runs of the same experiment, e.g. main's reports/<experiment>.json and the pull request's",
        ));
    }
    if old.scale != new.scale {
        return Err(crate::error::fail(
            format!(
                "the runs are at different scales: {} and {} (every number depends on the size of the data)",
                old.scale, new.scale
            ),
            format!(
                "run both at the same --scale (e.g. `pgx experiment {} --scale {}`)",
                old.experiment, old.scale
            ),
        ));
    }
    Ok(())
}

pub fn compare(
    old: ExperimentResult,
    new: ExperimentResult,
    old_label: &str,
    new_label: &str,
    options: &Options,
) -> anyhow::Result<Comparison> {
    check_comparable(&old, &new)?;
    let mut rows = match_cells(&old, &new);
    for row in &mut rows {
        evidence(&old, &new, row);
    }
    timings(&old, &new, &mut rows);
    // The control is measured for its floor and its drift, not shown as a variant.
    let control = |r: &ExperimentResult, key: &Key| r.control.as_deref() == Some(&key.variant);
    rows.retain(|row| !control(&old, &row.key) && !control(&new, &row.key));
    let mut changes: Vec<Option<Change>> =
        rows.iter().map(|r| r.timing.map(|t| t.change)).collect();
    holm_correct(&mut changes);
    for (row, change) in rows.iter_mut().zip(changes) {
        if let (Some(timing), Some(change)) = (row.timing.as_mut(), change) {
            timing.change = change;
        }
    }

    let environment = environment_differences(&old, &new);
    let mut untrusted_because = Vec::new();
    if !environment.is_empty() {
        untrusted_because
            .push("the runs come from different environments (see Environment)".to_string());
    }
    for (label, r) in [("old", &old), ("new", &new)] {
        if r.analysis.noisy.is_some() {
            untrusted_because.push(format!(
                "the {label} run is noisy (its own A/A control differed from its baseline)"
            ));
        }
        if r.interrupted {
            untrusted_because.push(format!("the {label} run was interrupted (partial)"));
        }
        if let Some(load) = saturated(r) {
            untrusted_because.push(format!(
                "the {label} run shared a saturated machine (load average {load:.2} on {} CPUs)",
                r.environment.cpus
            ));
        }
    }
    let notes = notes(&old, &new);
    Ok(Comparison {
        timings_trusted: untrusted_because.is_empty() || options.gate_timings,
        untrusted_because,
        old,
        new,
        old_label: old_label.to_string(),
        new_label: new_label.to_string(),
        rows,
        environment,
        notes,
    })
}

fn match_cells(old: &ExperimentResult, new: &ExperimentResult) -> Vec<Row> {
    let old_at: HashMap<Key, usize> = old
        .cells
        .iter()
        .enumerate()
        .map(|(i, c)| (Key::of(c), i))
        .collect();
    let new_keys: std::collections::HashSet<Key> = new.cells.iter().map(Key::of).collect();
    let row = |key: Key, old: Option<usize>, new: Option<usize>| Row {
        key,
        old,
        new,
        plan_changed: false,
        blocks: None,
        buffers_changed: false,
        rows_changed: None,
        params_changed: false,
        sql_changed: false,
        timing: None,
        now_fails: None,
    };
    let mut rows: Vec<Row> = new
        .cells
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let key = Key::of(c);
            let o = old_at.get(&key).copied();
            row(key, o, Some(i))
        })
        .collect();
    rows.extend(
        old.cells
            .iter()
            .enumerate()
            .filter(|(_, c)| !new_keys.contains(&Key::of(c)))
            .map(|(i, c)| row(Key::of(c), Some(i), None)),
    );
    rows
}

fn signature_set(cell: &Cell) -> Vec<&str> {
    let mut s: Vec<&str> = cell.signatures.iter().map(String::as_str).collect();
    s.sort_unstable();
    s.dedup();
    s
}

fn param_values<'a>(r: &'a ExperimentResult, key: &Key) -> Option<&'a Vec<Option<String>>> {
    r.queries
        .iter()
        .find(|q| q.name == key.query)?
        .params
        .iter()
        .find(|p| p.label == key.params)
        .map(|p| &p.values)
}

fn form_sql<'a>(r: &'a ExperimentResult, key: &Key) -> Option<&'a str> {
    r.queries
        .iter()
        .find(|q| q.name == key.query)?
        .forms
        .iter()
        .find(|(form, _)| *form == key.form)
        .map(|(_, sql)| sql.trim())
}

/// The variant's statements as it ran them (the control runs the baseline's).
fn variant_statements<'a>(r: &'a ExperimentResult, key: &Key) -> Option<Vec<&'a str>> {
    let variant = r.variants.iter().find(|v| v.name == key.variant)?;
    Some(variant.statements.iter().map(|s| s.label.trim()).collect())
}

/// Plans, buffers, rows: the exact part.
fn evidence(old: &ExperimentResult, new: &ExperimentResult, row: &mut Row) {
    let (Some(o), Some(n)) = (row.old, row.new) else {
        return;
    };
    let (o, n) = (&old.cells[o], &new.cells[n]);
    let (so, sn) = (signature_set(o), signature_set(n));
    row.plan_changed = !so.is_empty() && !sn.is_empty() && so != sn;
    if let (Some(bo), Some(bn)) = (o.blocks(), n.blocks()) {
        row.blocks = Some((bo, bn));
        row.buffers_changed = differs(&Evidence {
            same_plan: true,
            blocks: bn,
            reference_blocks: bo,
            rows: 0.0,
            reference_rows: 0.0,
        });
    }
    if let (Some(po), Some(pn)) = (&o.plan, &n.plan)
        && po.rows != pn.rows
    {
        row.rows_changed = Some((po.rows, pn.rows));
    }
    row.params_changed = param_values(old, &row.key) != param_values(new, &row.key);
    row.sql_changed = row.params_changed
        || form_sql(old, &row.key) != form_sql(new, &row.key)
        || variant_statements(old, &row.key) != variant_statements(new, &row.key);
    if o.execution.is_some() && n.execution.is_none() {
        row.now_fails = Some(
            n.error
                .as_deref()
                .and_then(|e| e.lines().next())
                .unwrap_or("no measured run")
                .to_string(),
        );
    }
}

fn median_ratio(old: &Cell, new: &Cell) -> Option<f64> {
    let (o, n) = (old.execution.as_ref()?, new.execution.as_ref()?);
    (o.median > 0.0 && n.median > 0.0).then(|| n.median / o.median)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    crate::stats::percentile(&values, 50.0)
}

/// The runs' own A/A floor for a query, parameter set and cache state (0 without a
/// control).
fn floor(r: &ExperimentResult, key: &Key) -> f64 {
    r.analysis
        .floors
        .iter()
        .find(|f| f.query == key.query && f.params == key.params && f.cache == key.cache)
        .map_or(0.0, |f| f.floor)
}

/// Between two runs, a change in a cell's median execution time smaller than this is
/// below what separate runs resolve, whatever the ratio: a 5 µs lookup measured 5 µs in
/// one run and 12 µs in the next (identical code, same plan and buffers) while its run's
/// A/A floor was 1.5% (scheduler, CPU caches and the other tenants of the machine differ
/// per run). Within a run, pairing in rounds removes those effects; across runs nothing
/// can.
pub const RESOLUTION_MS: f64 = 0.01;

/// The run shared a saturated machine: its 1-minute load average, at the start or the
/// end, was at least its CPU count (its own work adds about one).
pub fn saturated(r: &ExperimentResult) -> Option<f64> {
    let cpus = r.environment.cpus as f64;
    [r.environment.load_before, r.environment.load_after]
        .into_iter()
        .flatten()
        .map(|l| l[0])
        .filter(|&l| cpus > 0.0 && l >= cpus)
        .max_by(f64::total_cmp)
}

/// Execution time of every matched cell: the band is max(5%, both floors) around no
/// change and around the drift its peers show, and never narrower than
/// [`RESOLUTION_MS`]; the verdict is Holm-corrected later.
fn timings(old: &ExperimentResult, new: &ExperimentResult, rows: &mut [Row]) {
    // Peers: matched cells (the control included) whose plan, buffers and SQL did not
    // change: what moved them is the machine.
    let peers: Vec<(usize, &Key, f64)> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.same_evidence() && !r.sql_changed)
        .filter_map(|(i, r)| {
            let ratio = median_ratio(&old.cells[r.old?], &new.cells[r.new?])?;
            Some((i, &r.key, ratio))
        })
        .collect();
    let drifts: Vec<Option<Drift>> = (0..rows.len())
        .map(|i| {
            let key = &rows[i].key;
            let query: Vec<f64> = peers
                .iter()
                .filter(|(j, k, _)| {
                    *j != i
                        && k.query == key.query
                        && k.params == key.params
                        && k.cache == key.cache
                })
                .map(|(_, _, r)| *r)
                .collect();
            if query.len() >= 2 {
                return Some(Drift {
                    peers: query.len(),
                    ratio: median(query),
                    same_query: true,
                });
            }
            let run: Vec<f64> = peers
                .iter()
                .filter(|(j, _, _)| *j != i)
                .map(|(_, _, r)| *r)
                .collect();
            (run.len() >= 2).then(|| Drift {
                peers: run.len(),
                ratio: median(run),
                same_query: false,
            })
        })
        .collect();
    for (row, drift) in rows.iter_mut().zip(drifts) {
        let (Some(o), Some(n)) = (row.old, row.new) else {
            continue;
        };
        let (o, n) = (&old.cells[o], &new.cells[n]);
        let old_rounds = timing::round_medians(&o.execution_by_round());
        let new_rounds = timing::round_medians(&n.execution_by_round());
        let threshold = NOISE.max(floor(old, &row.key)).max(floor(new, &row.key));
        let d = drift.map_or(1.0, |d| d.ratio);
        let mut lower = d.min(1.0) / (1.0 + threshold);
        let mut upper = d.max(1.0) * (1.0 + threshold);
        if let Some(old_ms) = o.execution.as_ref().map(|e| e.median)
            && old_ms > 0.0
        {
            let resolution = RESOLUTION_MS / old_ms;
            upper = upper.max(1.0 + resolution);
            lower = lower.min(1.0 / (1.0 + resolution));
        }
        row.timing = timing::compare_unpaired(&old_rounds, &new_rounds, lower, upper, threshold)
            .map(|change| Timing {
                change,
                lower,
                upper,
                drift,
            });
    }
}

fn environment_differences(old: &ExperimentResult, new: &ExperimentResult) -> Vec<Difference> {
    let (o, n) = (&old.environment, &new.environment);
    let mut out = Vec::new();
    let mut push = |what: &str, a: String, b: String| {
        if a != b {
            out.push(Difference {
                what: what.to_string(),
                old: a,
                new: b,
            });
        }
    };
    push(
        "PostgreSQL",
        o.postgres_version.clone(),
        n.postgres_version.clone(),
    );
    push("server", o.server.clone(), n.server.clone());
    push("CPUs", o.cpus.to_string(), n.cpus.to_string());
    // /proc/meminfo moves by a few MiB between boots of the same machine.
    if (o.memory_gib - n.memory_gib).abs() > 0.25 {
        push(
            "memory",
            format!("{} GiB", o.memory_gib),
            format!("{} GiB", n.memory_gib),
        );
    }
    let value = |settings: &[(String, String)], name: &str| {
        settings
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| "(not recorded)".into())
    };
    let mut names: Vec<&String> = o
        .server_settings
        .iter()
        .chain(n.server_settings.iter())
        .map(|(k, _)| k)
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        push(
            name,
            value(&o.server_settings, name),
            value(&n.server_settings, name),
        );
    }
    out
}

fn notes(old: &ExperimentResult, new: &ExperimentResult) -> Vec<String> {
    let mut notes = Vec::new();
    if old.dataset.key != new.dataset.key {
        notes.push(format!(
            "The dataset definition differs (base {} vs {}): plans, buffers and rows may differ because the data does.",
            old.dataset.database, new.dataset.database
        ));
    }
    if old.environment.pgx_version != new.environment.pgx_version {
        notes.push(format!(
            "Measured by different pgx versions: {} and {}.",
            old.environment.pgx_version, new.environment.pgx_version
        ));
    }
    let schedule = |r: &ExperimentResult| {
        format!(
            "{} rounds × {} run(s) after {} warmup",
            r.schedule.rounds, r.schedule.block, r.schedule.warmup
        )
    };
    if schedule(old) != schedule(new) {
        notes.push(format!(
            "The schedules differ: {} (old) vs {} (new).",
            schedule(old),
            schedule(new)
        ));
    }
    if old.control.is_none() || new.control.is_none() {
        notes.push("A run without its A/A control has no noise floor of its own: its cells are judged against the 5% default.".into());
    }
    if old.environment.date == new.environment.date
        && old.schedule.seed == new.schedule.seed
        && old.cells.len() == new.cells.len()
    {
        notes.push("Both files hold the same run (same date and schedule seed).".into());
    }
    notes
}

impl Comparison {
    pub fn matched(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.matched())
    }

    pub fn old_cell(&self, row: &Row) -> Option<&Cell> {
        row.old.and_then(|i| self.old.cells.get(i))
    }

    pub fn new_cell(&self, row: &Row) -> Option<&Cell> {
        row.new.and_then(|i| self.new.cells.get(i))
    }

    /// Matched cells called slower or faster on timing.
    pub fn called(&self, verdict: Verdict) -> impl Iterator<Item = &Row> {
        self.rows
            .iter()
            .filter(move |r| r.timing.is_some_and(|t| t.change.verdict == verdict))
    }

    /// Matched cells touching more blocks than before.
    pub fn more_blocks(&self) -> impl Iterator<Item = &Row> {
        self.rows
            .iter()
            .filter(|r| r.buffers_changed && r.blocks.is_some_and(|(o, n)| n > o))
    }

    /// What fails the gates asked for, one line each; empty when CI may pass.
    pub fn gate(&self, gates: &[Gate]) -> Vec<String> {
        let mut failed = Vec::new();
        let label = |r: &Row| render::cell_label(self, r);
        for gate in gates {
            match gate {
                Gate::PlanChange => failed.extend(
                    self.rows
                        .iter()
                        .filter(|r| r.plan_changed)
                        .map(|r| format!("plan-change: {}", label(r))),
                ),
                Gate::Buffers => failed.extend(self.more_blocks().map(|r| {
                    let (o, n) = r.blocks.unwrap_or_default();
                    format!("buffers: {}: {o} → {n} blocks", label(r))
                })),
                Gate::Regression => {
                    failed.extend(
                        self.rows
                            .iter()
                            .filter_map(|r| r.now_fails.as_ref().map(|e| (r, e)))
                            .map(|(r, e)| format!("regression: {} now fails: {e}", label(r))),
                    );
                    if self.timings_trusted {
                        failed.extend(self.called(Verdict::Slower).map(|r| {
                            format!(
                                "regression: {} slower: {}",
                                label(r),
                                crate::report::fmt_change(r.timing.as_ref().map(|t| &t.change))
                            )
                        }));
                    } else {
                        failed.extend(self.more_blocks().map(|r| {
                            let (o, n) = r.blocks.unwrap_or_default();
                            format!(
                                "regression: {} touches more blocks: {o} → {n} (timings are not gated: {})",
                                label(r),
                                self.untrusted_because.join("; ")
                            )
                        }));
                    }
                }
            }
        }
        failed.dedup();
        failed
    }
}

#[cfg(test)]
mod tests;
