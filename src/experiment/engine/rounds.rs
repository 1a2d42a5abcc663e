//! Timed rounds of warm cells: every round visits every cell still needed once, in a
//! seeded random order, on a fresh backend warmed by one unrecorded run, for its block
//! of recorded runs; so machine drift falls on all variants alike, and each cell is
//! compared with its reference round by round. After the rounds of the design's looks
//! the decided comparisons let go (`stopping`). Also the pieces every round shares: a
//! cell's statement and session, server-wide settings, recording a run.

use anyhow::Result;

use super::measure::{self, Run, Session, Statement};
use super::sessions::Opening;
use super::{Engine, Phase};
use crate::experiment::matrix::{CacheState, SettingsId};
use crate::experiment::result::{RoundRun, Sample};
use crate::experiment::settings::{self, ServerWide};
use crate::explain::PlanSummary;
use crate::target::connect;

/// A cell's statement, owned.
pub(super) struct CellStatement {
    sql: String,
    params: Vec<crate::db::TextParam>,
    rollback: bool,
    hide: String,
    /// Its prepared statement's name, one per cell.
    prepared: Option<String>,
}

impl CellStatement {
    pub(super) fn borrowed(&self) -> Statement<'_> {
        Statement {
            sql: &self.sql,
            params: &self.params,
            rollback: self.rollback,
            hide: &self.hide,
            prepared: self.prepared.as_deref(),
        }
    }
}

impl Engine<'_> {
    /// Timed rounds of `cells` (warm, all of one phase), judged as group `group`.
    pub(super) fn rounds(&mut self, cells: &[usize], group: usize, phase: Phase) -> Result<()> {
        let design = self.timed_groups[group].design.clone();
        for &c in cells {
            let runs = (design.last() * (self.cells[c].block.max(1) + 1)) as u64;
            self.clock.expect(c, runs);
        }
        let mut active = cells.to_vec();
        for r in 1..=design.last() {
            let round = self.next_round;
            self.next_round += 1;
            self.timed_groups[group].rounds.push(round);
            let salt = ((round as u64) << 1) | (phase == Phase::Writes) as u64;
            let order = self.plan.schedule.order(salt, &self.server_groups(&active));
            self.rounds_run.push(RoundRun {
                round,
                phase: phase.name().to_string(),
                cells: order.concat(),
            });
            // Fresh backends every round (see `sessions`).
            self.sessions.clear();
            for members in &order {
                let Some(&first) = members.first() else {
                    continue;
                };
                let guard = self.server_settings(self.key(first).settings)?;
                for &cell in members {
                    let runs = self.cells[cell].block.max(1);
                    self.visit(cell, runs, round)?;
                }
                if let Some(guard) = guard {
                    self.sessions.last_reload = guard.undo()?;
                }
            }
            active = self.still_needed(&active, group, r);
            if active.is_empty() {
                break;
            }
        }
        self.sessions.clear();
        let started = std::time::Instant::now();
        self.per_node_plans(cells)?;
        self.clock.wall.plans += started.elapsed().as_secs_f64();
        for &c in cells {
            self.clock.forget(c);
        }
        self.sessions.clear();
        Ok(())
    }

    /// One TIMING ON run of each timed cell after its rounds, on a fresh backend warmed
    /// by one run, for the per-node times the report draws (the evidence run's tree has
    /// rows and buffers only).
    fn per_node_plans(&mut self, cells: &[usize]) -> Result<()> {
        for &cell in cells {
            if self.cells[cell].error.is_some() {
                continue;
            }
            let key = self.key(cell);
            let guard = self.server_settings(key.settings)?;
            self.update_progress();
            let label = format!("per-node plan of {}", self.cell_label(&key));
            self.progress.message(&label);
            let owned = self.statement_of(cell);
            let statement = owned.borrowed();
            let run = match self.warm_backend(cell, &statement)? {
                Some(_) => None,
                None => Some(measure::explain(self.session(cell)?, &statement, true)?),
            };
            if let Some(guard) = guard {
                self.sessions.last_reload = guard.undo()?;
            }
            if let Some(Run::Plan(explained)) = run {
                self.cells[cell].timed_plan = Some(explained.tree);
            }
        }
        Ok(())
    }

    /// One round's visit of a timed cell: a fresh backend's unrecorded first run (a warm
    /// cell's), then `runs` recorded ones. The first failure ends the cell.
    pub(super) fn visit(&mut self, cell: usize, runs: usize, round: usize) -> Result<()> {
        if self.cells[cell].error.is_some() {
            return Ok(());
        }
        let key = self.key(cell);
        self.update_progress();
        let label = self.cell_label(&key);
        self.progress.message(&label);
        let owned = self.statement_of(cell);
        let statement = owned.borrowed();
        let warm = self.matrix.cache(&key) == CacheState::Warm;
        if warm && !self.sessions.is_open(&key) {
            // The fresh backend's unrecorded first run is part of what the round costs
            // the cell: it counts against the budget. (Opening it is counted apart.)
            self.session(cell)?;
            let started = std::time::Instant::now();
            let failed = self.warm_backend(cell, &statement)?;
            let seconds = started.elapsed().as_secs_f64();
            self.cells[cell].spent += seconds;
            self.clock.wall.warm += seconds;
            if let Some(message) = failed {
                self.fail(cell, message);
                return Ok(());
            }
        }
        for _ in 0..runs {
            crate::interrupt::check()?;
            // Opened (and caught up with a reload) before the clock starts.
            self.session(cell)?;
            let started = std::time::Instant::now();
            let run = measure::explain(self.session(cell)?, &statement, false)?;
            let seconds = started.elapsed().as_secs_f64();
            self.clock.ran(cell, seconds);
            match run {
                Run::Plan(explained) => {
                    self.cells[cell].spent += seconds;
                    self.clock.wall.measured += seconds;
                    self.record(cell, round, explained.summary);
                }
                Run::Failed(message) => {
                    self.fail(cell, message);
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// A backend opened in a measured round has no history: the cell runs once first,
    /// not recorded. That fills its catalog caches and maps the shared buffers the
    /// statement touches into its page tables: a fresh backend's first touch of a buffer
    /// is a page fault, and a 9,432-buffer scan took 17-20 ms on a fresh backend against
    /// 12 ms on one that had run it. A prepared statement is planned (plain EXPLAIN) four
    /// times before, so that with that run its plan cache has built its five custom
    /// plans and chosen. The failure's message if the statement fails.
    pub(super) fn warm_backend(
        &mut self,
        cell: usize,
        statement: &Statement,
    ) -> Result<Option<String>> {
        if let Some(message) = self.prime(cell, statement)? {
            return Ok(Some(message));
        }
        crate::interrupt::check()?;
        Ok(
            match measure::explain(self.session(cell)?, statement, false)? {
                Run::Failed(message) => Some(message),
                Run::Plan(_) => None,
            },
        )
    }

    /// A prepared statement planned until its plan cache has chosen (see
    /// [`Engine::warm_backend`]); nothing for a plain one.
    pub(super) fn prime(&mut self, cell: usize, statement: &Statement) -> Result<Option<String>> {
        let plans = if statement.prepared.is_some() {
            measure::CUSTOM_PLANS_BEFORE_GENERIC - 1
        } else {
            0
        };
        for _ in 0..plans {
            crate::interrupt::check()?;
            if let Some(message) = measure::prime(self.session(cell)?, statement)? {
                return Ok(Some(message));
            }
        }
        Ok(None)
    }

    /// Keep a recorded run.
    pub(super) fn record(&mut self, cell: usize, round: usize, mut summary: PlanSummary) {
        let key = self.key(cell);
        let partitions = self
            .dbs
            .place(key.variant)
            .map(|p| p.partitions.attribute(&mut summary, &p.relations));
        let state = &mut self.cells[cell];
        let signature = match state
            .signatures
            .iter()
            .position(|s| *s == summary.signature)
        {
            Some(i) => i,
            None => {
                state.signatures.push(summary.signature.clone());
                state.signatures.len() - 1
            }
        };
        state.samples.push(Sample {
            round,
            planning_ms: summary.planning_ms,
            execution_ms: summary.execution_ms,
            buffers: summary.buffers.clone(),
            heap_fetches: summary.heap_fetches,
            signature,
        });
        if let Some(total) = partitions {
            state.partitions_total = total;
        }
        state.untimed = None;
        state.plan = Some(summary);
    }

    /// What a cell runs, owned: the matrix stays free while a session is borrowed.
    pub(super) fn statement_of(&self, cell: usize) -> CellStatement {
        let key = self.key(cell);
        let query = self.matrix.query(key.query);
        CellStatement {
            sql: self.matrix.form(&key).sql.clone(),
            params: self.matrix.params(&key).values.clone(),
            rollback: query.rollback,
            hide: self
                .dbs
                .place(key.variant)
                .map(|p| p.hide.clone())
                .unwrap_or_default(),
            prepared: query.prepared.then(|| format!("pgx_c{cell}")),
        }
    }

    /// The cell's session on its variant's database.
    pub(super) fn session(&mut self, cell: usize) -> Result<&mut Session> {
        let key = self.key(cell);
        let Some(place) = self.dbs.place(key.variant) else {
            anyhow::bail!(
                "internal: variant {} has no database",
                self.matrix.variant(key.variant).name
            );
        };
        let setup = settings::session_sql(
            self.plan.limits.timeout_ms,
            &self.settings[key.settings.0].session,
        );
        let opening = Opening {
            config: &place.config,
            setup: &setup,
        };
        self.sessions
            .get(&key, opening, &mut self.clock.wall.connect)
    }

    /// Cells grouped by the server-wide settings they need: one group for everything
    /// set per session, one per settings set with server-wide values.
    pub(super) fn server_groups(&self, cells: &[usize]) -> Vec<Vec<usize>> {
        let mut groups: Vec<Vec<usize>> = vec![Vec::new(); self.settings.len() + 1];
        for &c in cells {
            let s = self.key(c).settings.0;
            let group = if self.settings[s].server.is_empty() {
                0
            } else {
                s + 1
            };
            groups[group].push(c);
        }
        groups
    }

    /// A settings set's server-wide values, applied until the returned guard is undone
    /// or dropped; None for a set of session settings only.
    pub(super) fn server_settings(&mut self, settings: SettingsId) -> Result<Option<ServerWide>> {
        let server = self.settings[settings.0].server.clone();
        if server.is_empty() {
            return Ok(None);
        }
        let admin = connect(&self.target.admin_config())?;
        let (guard, since) = ServerWide::apply(admin, &server)?;
        self.sessions.last_reload = since;
        Ok(Some(guard))
    }

    pub(super) fn update_progress(&mut self) {
        let (done, left) = self.clock.estimate();
        self.progress.estimate(done, left);
    }
}
