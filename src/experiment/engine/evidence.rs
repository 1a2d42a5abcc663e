//! Deterministic evidence first. Every cell runs on a fresh backend for its warmup: the
//! last warmup run's plan, blocks and rows are the cell's evidence (EXPLAIN counts them exactly, whatever the machine's noise). A cell whose
//! evidence equals its reference's (`PlanSummary::same_work`) does the same work and
//! needs no stopwatch; only the cells that can differ enter the timed rounds, with their
//! references and the A/A control. Also the forms' equivalence (the same rows and
//! `verify` result from every form of a query).

use std::collections::{HashMap, HashSet};

use anyhow::Result;

use super::copies::Group;
use super::measure::{self, Run};
use super::{Engine, Phase};
use crate::experiment::matrix::Role;
use crate::experiment::measured::TimedGroup;
use crate::experiment::result::Equivalence;
use crate::stats::sequential::Design;

/// Why a cell with its reference's evidence is not timed.
pub const SAME_WORK: &str = "same plan, same blocks, same rows: not timed";
/// Why a reference (or the control) is not timed: nothing compared with it is.
pub const NOTHING_TO_TIME: &str =
    "nothing compared with it differs in plan, blocks or rows: not timed";

impl Engine<'_> {
    /// The evidence pass over `cells` (warm and cold alike: a plan does not depend on
    /// what is cached), then each query's block size from the warmup times.
    pub(super) fn evidence(&mut self, cells: &[usize]) -> Result<()> {
        self.sessions.clear();
        let runs = self.plan.limits.warmup.max(1);
        for &c in cells {
            self.clock.expect(c, runs as u64);
        }
        let order = self
            .plan
            .schedule
            .order(u64::MAX >> 1, &self.server_groups(cells));
        for members in &order {
            let Some(&first) = members.first() else {
                continue;
            };
            let guard = self.server_settings(self.key(first).settings)?;
            for &cell in members {
                self.evidence_of(cell, runs)?;
            }
            if let Some(guard) = guard {
                self.sessions.last_reload = guard.undo()?;
            }
        }
        self.sessions.clear();
        self.size_blocks(cells);
        Ok(())
    }

    /// `runs` unrecorded runs of one cell on a fresh backend, the last its evidence.
    fn evidence_of(&mut self, cell: usize, runs: usize) -> Result<()> {
        if self.cells[cell].error.is_some() {
            return Ok(());
        }
        let key = self.key(cell);
        self.update_progress();
        let label = format!("evidence: {}", self.cell_label(&key));
        self.progress.message(&label);
        let owned = self.statement_of(cell);
        let statement = owned.borrowed();
        // Opened before the clock starts: opening has a row of its own.
        self.session(cell)?;
        let started = std::time::Instant::now();
        let outcome = self.evidence_runs(cell, &statement, runs);
        self.clock.wall.warm += started.elapsed().as_secs_f64();
        outcome
    }

    fn evidence_runs(
        &mut self,
        cell: usize,
        statement: &super::measure::Statement,
        runs: usize,
    ) -> Result<()> {
        let key = self.key(cell);
        if let Some(message) = self.prime(cell, statement)? {
            self.fail(cell, message);
            return Ok(());
        }
        for i in 0..runs {
            crate::interrupt::check()?;
            let last = i + 1 == runs;
            let started = std::time::Instant::now();
            // TIMING OFF, as the recorded runs: per-node timing can double a scan of
            // millions of rows (one clock read per row and node), and the evidence needs
            // only the counts. Timed cells get a per-node timed run after their rounds.
            let run = measure::explain(self.session(cell)?, statement, false)?;
            self.clock.ran(cell, started.elapsed().as_secs_f64());
            match run {
                Run::Failed(message) => {
                    self.fail(cell, message);
                    return Ok(());
                }
                Run::Plan(explained) => {
                    let mut summary = explained.summary;
                    self.cells[cell].warm_ms = Some(summary.execution_ms);
                    if last {
                        if let Some(place) = self.dbs.place(key.variant) {
                            let total = place.partitions.attribute(&mut summary, &place.relations);
                            self.cells[cell].partitions_total = total;
                        }
                        let state = &mut self.cells[cell];
                        state.timed_plan = Some(explained.tree);
                        if state.plan.is_none() {
                            state.plan = Some(summary.clone());
                        }
                        state.evidence = Some(summary);
                    }
                }
            }
        }
        Ok(())
    }

    /// One block size for all the cells of a query and parameter set (every variant,
    /// settings set, form), so a cell and its reference always run the same number of
    /// runs in a row (later runs of a block are faster than its first: blocks of
    /// different sizes would be a difference of their own). Sized from the group's
    /// median warmup time.
    fn size_blocks(&mut self, cells: &[usize]) {
        let mut groups: std::collections::HashMap<(usize, usize), Vec<usize>> = Default::default();
        for &c in cells {
            let key = self.key(c);
            groups
                .entry((key.query.0, key.params.0))
                .or_default()
                .push(c);
        }
        for members in groups.values() {
            let mut warm: Vec<f64> = members
                .iter()
                .filter_map(|&c| self.cells[c].warm_ms)
                .collect();
            warm.sort_by(f64::total_cmp);
            let median = (!warm.is_empty()).then(|| crate::stats::percentile(&warm, 50.0));
            let block = super::block_for(median, self.plan.schedule.block);
            for &c in members {
                self.cells[c].block = block;
            }
        }
    }

    /// Which of `cells` (one phase, one cache kind) are timed: the comparisons in
    /// `judged` whose evidence differs from their reference's (or that EXPLAIN cannot
    /// see all of, or that run under other settings), their references, and the control
    /// cells of every row with such a comparison; every cell with `time_identical`. The
    /// others are marked as not timed. Returns the group the timed comparisons are
    /// judged in.
    pub(super) fn select_timed(
        &mut self,
        cells: &[usize],
        judged: &[usize],
        stage: usize,
        phase: Phase,
        warm: bool,
    ) -> usize {
        let mut timed: HashSet<usize> = HashSet::new();
        let mut compared = Vec::new();
        for &c in judged {
            let key = self.key(c);
            let Some(r) = self
                .matrix
                .reference_of(&key)
                .and_then(|r| self.matrix.position(&r))
            else {
                continue;
            };
            if self.cells[c].error.is_some() || self.cells[r].error.is_some() {
                continue;
            }
            let same = match (&self.cells[c].evidence, &self.cells[r].evidence) {
                (Some(a), Some(b)) => a.same_work(b),
                _ => false,
            };
            // Settings can change the time of the same plan (a generic plan's run-time
            // pruning, JIT): cells under other settings are timed, unless the settings
            // that differ only steer the planner or show their effect in the evidence.
            let reference_settings = self.key(r).settings;
            let settings_matter = key.settings != reference_settings
                && !crate::experiment::settings::differ_only_in_plan(
                    &self.matrix.settings[key.settings.0].values,
                    &self.matrix.settings[reference_settings.0].values,
                );
            if same && !settings_matter && !self.plan.limits.time_identical {
                continue;
            }
            timed.insert(c);
            timed.insert(r);
            compared.push(c);
        }
        if self.plan.limits.time_identical {
            timed.extend(
                cells
                    .iter()
                    .copied()
                    .filter(|&c| self.cells[c].error.is_none()),
            );
        }
        // A control whose evidence differs from the baseline's was built differently (the
        // same SQL, another copy: GiST builds break ties at random): timed, so the report
        // can say by how much, against the baseline.
        for &c in cells {
            let key = self.key(c);
            if self.matrix.variant(key.variant).role != Role::Control
                || self.cells[c].error.is_some()
            {
                continue;
            }
            if let Some(r) = self
                .matrix
                .reference_of(&key)
                .and_then(|r| self.matrix.position(&r))
                && let (Some(a), Some(b)) = (&self.cells[c].evidence, &self.cells[r].evidence)
                && !a.same_work(b)
                && self.cells[r].error.is_none()
            {
                timed.insert(c);
                timed.insert(r);
                let (x, y) = (a.blocks(), b.blocks());
                let far =
                    a.signature != b.signature || x.abs_diff(y) as f64 > 0.1 * x.max(y) as f64;
                self.cells[c].built_differently = true;
                self.cells[c].built_far_apart = far;
            }
        }
        // The control's cells in every row (query, parameter set) with a timed
        // comparison, where their own reference is timed.
        let rows: HashSet<(usize, usize)> = compared
            .iter()
            .chain(timed.iter())
            .map(|&c| (self.key(c).query.0, self.key(c).params.0))
            .collect();
        let mut controls = 0;
        for &c in cells {
            let key = self.key(c);
            if self.matrix.variant(key.variant).role != Role::Control
                || !rows.contains(&(key.query.0, key.params.0))
            {
                continue;
            }
            if let Some(r) = self
                .matrix
                .reference_of(&key)
                .and_then(|r| self.matrix.position(&r))
                && timed.contains(&r)
                && self.cells[c].error.is_none()
            {
                timed.insert(c);
                controls += 1;
            }
        }
        for &c in cells {
            let state = &mut self.cells[c];
            if timed.contains(&c) || !state.samples.is_empty() || state.error.is_some() {
                continue;
            }
            state.untimed = Some(if judged.contains(&c) {
                SAME_WORK.to_string()
            } else {
                NOTHING_TO_TIME.to_string()
            });
            self.clock.forget(c);
        }
        let stages = self.stages.len();
        let name = format!(
            "{}, {}{}",
            phase.name(),
            if warm { "warm" } else { "cold" },
            if stages > 1 {
                format!(" (stage {} of {stages})", stage + 1)
            } else {
                String::new()
            }
        );
        let rounds = if warm {
            self.plan.schedule.rounds
        } else {
            self.plan.limits.cold_rounds
        };
        let alpha = self
            .alpha_shares
            .get(&(stage, phase, warm))
            .copied()
            .unwrap_or(crate::stats::ALPHA);
        let mut design = Design::new(rounds, compared.len());
        design.alpha = alpha;
        let group = self.timed_groups.len();
        self.timed_groups.push(TimedGroup {
            name,
            design,
            controls,
            rounds: Vec::new(),
        });
        for &c in cells {
            if timed.contains(&c) {
                self.cells[c].untimed = None;
                self.cells[c].closed = false;
            }
        }
        for c in compared {
            self.cells[c].group = Some(group);
        }
        for &c in cells {
            if timed.contains(&c) && self.matrix.variant(self.key(c).variant).role == Role::Control
            {
                self.cells[c].group = Some(group);
            }
        }
        group
    }

    /// The comparisons a stage judges: every one in the first stage; in later stages
    /// only those of the stage's own candidates (the baseline and the control come
    /// back as references and for the floor, not to be judged again).
    pub(super) fn judged_in_stage(&self, cells: &[usize], stage: usize) -> Vec<usize> {
        cells
            .iter()
            .copied()
            .filter(|&c| {
                let key = self.matrix.cells[c];
                self.matrix.reference_of(&key).is_some()
                    && self.matrix.variant(key.variant).role != Role::Control
                    && (stage == 0 || self.stages[stage].contains(&key.variant))
            })
            .collect()
    }

    /// The family-wise α split over the run's groups (stage, phase, cache kind) in
    /// proportion to the comparisons each could time, fixed before any is timed.
    pub(super) fn share_alpha(&mut self) {
        let mut counts: HashMap<(usize, Phase, bool), usize> = HashMap::new();
        for s in 0..self.stages.len() {
            for (c, key) in self.matrix.cells.iter().enumerate() {
                let role = self.matrix.variant(key.variant).role;
                let own = self.groups_of[key.variant.0] == Group::Own;
                let judged = self.matrix.reference_of(key).is_some()
                    && role != Role::Control
                    && if s == 0 {
                        !own || self.stages[0].contains(&key.variant)
                    } else {
                        self.stages[s].contains(&key.variant)
                    };
                if !judged {
                    continue;
                }
                let phase = if self.matrix.query(key.query).rollback {
                    Phase::Writes
                } else {
                    Phase::Reads
                };
                *counts.entry((s, phase, self.is_warm(c))).or_default() += 1;
            }
        }
        let total: usize = counts.values().sum();
        self.alpha_shares = counts
            .into_iter()
            .map(|(k, n)| (k, crate::stats::ALPHA * n as f64 / total.max(1) as f64))
            .collect();
    }

    /// Forms of one query must return the same rows (and leave the same `verify`
    /// result): checked per variant, settings and parameter set.
    pub(super) fn equivalence(&mut self, cells: &[usize]) -> Result<()> {
        type FormsOf = (crate::experiment::matrix::VariantId, usize, usize, usize);
        let mut groups: Vec<(FormsOf, Vec<usize>)> = Vec::new();
        for &cell in cells {
            let key = self.key(cell);
            if self.matrix.query(key.query).forms.len() < 2 || self.cells[cell].error.is_some() {
                continue;
            }
            let id = (key.variant, key.settings.0, key.query.0, key.params.0);
            match groups.iter_mut().find(|(g, _)| *g == id) {
                Some((_, members)) => members.push(cell),
                None => groups.push((id, vec![cell])),
            }
        }
        for (id, members) in groups {
            if members.len() < 2 || !self.checked.insert(id) {
                continue;
            }
            let (variant, settings_id, query, params) = id;
            self.progress.message(&format!(
                "{}: checking the forms of {} return the same rows",
                self.matrix.variant(variant).name,
                self.matrix.queries[query].name
            ));
            let verify = self.matrix.queries[query].verify.clone();
            let mut prints = Vec::new();
            for &cell in &members {
                let key = self.key(cell);
                let sql = self.matrix.form(&key).sql.clone();
                let values = self.matrix.params(&key).values.clone();
                let form = self.matrix.form(&key).name.clone();
                let hide = self.statement_of(cell).borrowed().hide.to_string();
                let session = self.session(cell)?;
                let print = measure::fingerprint(
                    &mut session.client,
                    &hide,
                    &sql,
                    &values,
                    verify.as_deref(),
                )
                .unwrap_or_else(|err| format!("error: {err:#}"));
                prints.push((form, print));
            }
            crate::interrupt::check()?;
            let equivalent = prints.windows(2).all(|w| w[0].1 == w[1].1);
            let query_def = &self.matrix.queries[query];
            self.equivalence[query].push(Equivalence {
                variant: self.matrix.variant(variant).name.clone(),
                settings: self.matrix.settings[settings_id].name.clone(),
                params: query_def.params[params].label.clone(),
                fingerprints: prints,
                equivalent,
            });
        }
        self.sessions.clear();
        Ok(())
    }
}
