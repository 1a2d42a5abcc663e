//! The run's measurements, assembled once everything is done (or interrupted): the
//! databases dropped first, then every cell of the variants that built, with what it
//! measured.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use anyhow::Result;

use super::Engine;
use crate::experiment::measured::{MeasuredCell, Measurements};
use crate::experiment::result::{
    ParamSet, QueryInfo, RoundRun, RunsUsed, ScheduleInfo, SettingsSet,
};

impl Engine<'_> {
    pub(super) fn assemble(
        mut self,
        interrupted: bool,
        started: Instant,
        screen_only: bool,
    ) -> Result<Measurements> {
        // Dropping the copies before reading the environment: nothing left behind.
        let dropping = Instant::now();
        self.sessions.clear();
        self.dbs.clear();
        self.clock.wall.finish += dropping.elapsed().as_secs_f64();
        let m = &self.matrix;
        let failed: HashSet<usize> = self
            .variants
            .iter()
            .enumerate()
            .filter(|(_, v)| v.error.is_some())
            .map(|(i, _)| i)
            .collect();
        // Cells of variants that did not build are left out: they have no numbers; a
        // screening-only run measures no cell.
        let kept: Vec<usize> = (0..m.cells.len())
            .filter(|i| !screen_only && !failed.contains(&m.cells[*i].variant.0))
            .collect();
        let position: HashMap<usize, usize> = kept
            .iter()
            .enumerate()
            .map(|(new, old)| (*old, new))
            .collect();
        let mut states: Vec<Option<super::CellState>> = std::mem::take(&mut self.cells)
            .into_iter()
            .map(Some)
            .collect();
        let cells = kept
            .iter()
            .map(|&i| {
                let key = m.cells[i];
                let state = states[i].take().unwrap_or_default();
                MeasuredCell {
                    variant: m.variant(key.variant).name.clone(),
                    settings: m.settings[key.settings.0].name.clone(),
                    cache: m.cache(&key).name().to_string(),
                    query: m.query(key.query).name.clone(),
                    form: m.form(&key).name.clone(),
                    params: m.params(&key).label.clone(),
                    reference: m
                        .reference_of(&key)
                        .and_then(|r| m.position(&r))
                        .and_then(|r| position.get(&r).copied()),
                    samples: state.samples,
                    plan: state.plan,
                    timed_plan: state.timed_plan,
                    signatures: if state.signatures.is_empty() {
                        state
                            .evidence
                            .map(|e| vec![e.signature])
                            .unwrap_or_default()
                    } else {
                        state.signatures
                    },
                    error: state.error,
                    partitions_total: state.partitions_total,
                    eviction: state.eviction,
                    untimed: state.untimed,
                    group: state.group,
                }
            })
            .collect();
        let rounds_run = self
            .rounds_run
            .iter()
            .map(|r| RoundRun {
                round: r.round,
                phase: r.phase.clone(),
                cells: r
                    .cells
                    .iter()
                    .filter_map(|c| position.get(c).copied())
                    .collect(),
            })
            .collect();
        let stages = self
            .stages
            .iter()
            .map(|own| {
                (0..m.variants.len())
                    .filter(|&v| {
                        self.groups_of[v] != super::copies::Group::Own
                            || own.contains(&crate::experiment::matrix::VariantId(v))
                    })
                    .map(|v| m.variants[v].name.clone())
                    .collect()
            })
            .collect();
        let queries = m
            .queries
            .iter()
            .zip(std::mem::take(&mut self.equivalence))
            .map(|(q, equivalence)| QueryInfo {
                name: q.name.clone(),
                about: q.about.clone(),
                forms: q
                    .forms
                    .iter()
                    .map(|f| (f.name.clone(), f.sql.clone()))
                    .collect(),
                params: q
                    .params
                    .iter()
                    .map(|p| ParamSet {
                        label: p.label.clone(),
                        values: p.values.iter().map(|v| v.0.clone()).collect(),
                    })
                    .collect(),
                rollback: q.rollback,
                equivalence,
                target_ms: q.target_ms,
            })
            .collect();
        let settings = m
            .settings
            .iter()
            .zip(&self.settings)
            .map(|(s, c)| SettingsSet {
                name: s.name.clone(),
                values: s.values.clone(),
                not_applicable: c.not_applicable.clone(),
                applied_server_wide: c.server.iter().map(|(k, _)| k.clone()).collect(),
            })
            .collect();
        let plan = self.plan;
        let limits = &plan.limits;
        let groups = std::mem::take(&mut self.timed_groups);
        let mut wall = self.clock.wall.clone();
        wall.total = started.elapsed().as_secs_f64() + wall.dataset;
        Ok(Measurements {
            experiment: plan.name.clone(),
            about: plan.about.clone(),
            seed: plan.seed.clone(),
            scale: plan.scale,
            environment: crate::experiment::environment::collect(self.target, &mut self.admin)?,
            runs: RunsUsed {
                warmup: limits.warmup,
                repeat: limits.repeat,
                timeout_ms: limits.timeout_ms,
                budget_ms: limits.budget_ms,
                min: limits.min_rounds,
                min_in_rounds: true,
            },
            dataset: self.base.info.clone(),
            baseline: m
                .variants
                .first()
                .map(|v| v.name.clone())
                .unwrap_or_default(),
            control: m.control().map(|c| m.variant(c).name.clone()),
            schedule: ScheduleInfo {
                seed: plan.schedule.seed,
                rounds: plan.schedule.rounds,
                block: plan.schedule.block,
                warmup: plan.schedule.warmup,
                stages,
                rounds_run,
            },
            settings,
            queries,
            variants: std::mem::take(&mut self.variants),
            cells,
            groups,
            interrupted,
            stopped_by: self.lost.take(),
            screening: self.screening.take(),
            wall: (!screen_only).then_some(wall),
            shard: plan.shard,
        })
    }
}
