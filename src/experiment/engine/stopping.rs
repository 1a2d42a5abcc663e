//! When measuring stops. After the rounds of the design's looks every open comparison
//! is judged (`crate::experiment::analysis::judge`, as the final analysis judges it):
//! one whose interval lies wholly beyond the band, or wholly inside it, is decided and
//! lets go. With a budget (`runs.budget`), a comparison also lets go once its cell or its
//! reference has spent the budget, after `runs.min` rounds. A cell stays while any open
//! comparison needs it — as the cell compared, as its reference, or as the A/A control of
//! the row under the settings of either — so every run of a cell has its reference's run in the same round; the
//! rounds nobody needs are not run.

use std::collections::HashSet;

use super::Engine;
use crate::experiment::analysis::{self, judge};
use crate::experiment::matrix::Role;
use crate::stats::sequential;

impl Engine<'_> {
    /// The cells of `active` still needed after `rounds` rounds of `group`.
    pub(super) fn still_needed(
        &mut self,
        active: &[usize],
        group: usize,
        rounds: usize,
    ) -> Vec<usize> {
        let design = self.timed_groups[group].design.clone();
        let look = design.is_look(rounds);
        let budget = self.plan.limits.budget_ms.map(|ms| ms as f64 / 1000.0);
        let spent = |engine: &Engine, c: usize| {
            budget.is_some_and(|b| {
                engine.cells[c].spent >= b && rounds >= engine.plan.limits.min_rounds
            })
        };
        let group_rounds: HashSet<usize> =
            self.timed_groups[group].rounds.iter().copied().collect();
        let open: Vec<usize> = active
            .iter()
            .copied()
            .filter(|&c| self.is_open(c, group, rounds))
            .collect();
        for c in open {
            let Some(r) = self.reference_position(c) else {
                self.cells[c].closed = true;
                continue;
            };
            if self.cells[c].error.is_some() || self.cells[r].error.is_some() {
                self.cells[c].closed = true;
                continue;
            }
            if spent(self, c) || spent(self, r) {
                self.cells[c].closed = true;
                continue;
            }
            if !look {
                continue;
            }
            // The control (built differently, or timed because everything is) is judged
            // as the analysis judges it.
            let control = self.matrix.variant(self.key(c).variant).role == Role::Control;
            let (controls, design) = if control {
                (
                    Vec::new(),
                    analysis::control_design(&self.timed_groups[group]),
                )
            } else {
                (self.control_series(c, active), design.clone())
            };
            let decided = judge::judge(
                &self.series(c),
                &self.series(r),
                &controls,
                Some(&group_rounds),
                &design,
            )
            .is_some_and(|change| sequential::decided(&change));
            if decided {
                self.cells[c].closed = true;
            }
        }
        // What the comparisons still open need: the cell, its reference, and the
        // control of the row under the settings of either (its noise, on both sides; the
        // controls of other settings sets run other plans, often far slower ones).
        let mut needed: HashSet<usize> = HashSet::new();
        let mut rows = HashSet::new();
        for &c in active {
            if self.is_open(c, group, rounds) {
                needed.insert(c);
                rows.insert((self.row(c), self.key(c).settings));
                if let Some(r) = self.reference_position(c) {
                    needed.insert(r);
                    rows.insert((self.row(c), self.key(r).settings));
                }
            }
        }
        for &c in active {
            if self.matrix.variant(self.key(c).variant).role == Role::Control
                && rows.contains(&(self.row(c), self.key(c).settings))
            {
                needed.insert(c);
                if let Some(r) = self.reference_position(c) {
                    needed.insert(r);
                }
            }
        }
        for &c in active {
            if !needed.contains(&c) {
                self.clock.forget(c);
            }
        }
        active
            .iter()
            .copied()
            .filter(|c| needed.contains(c))
            .collect()
    }

    /// Is the cell's comparison judged in `group` still open after `rounds` rounds? (The
    /// control's cells are in the group for the floor; they are not comparisons that keep
    /// rounds going. A control built differently — its plan or blocks are not the
    /// baseline's — is timed so the report can say by how much: far apart (another plan,
    /// or a tenth of the blocks) it is judged until decided; a few percent apart it gets
    /// the rounds up to the first look, and more only while its row is measured anyway.
    /// Held open until decided, a DML control whose blocks differ by a few percent kept a
    /// 460 ms row running for 20 rounds to prove it was within ±5%.)
    fn is_open(&self, cell: usize, group: usize, rounds: usize) -> bool {
        let first_look = self.timed_groups[group]
            .design
            .looks
            .first()
            .copied()
            .unwrap_or(1);
        self.cells[cell].group == Some(group)
            && !self.cells[cell].closed
            && (self.matrix.variant(self.key(cell).variant).role != Role::Control
                || self.cells[cell].built_far_apart
                || (self.cells[cell].built_differently && rounds < first_look)
                || self.plan.limits.time_identical)
    }

    /// The cell's recorded execution times as (round, ms).
    pub(super) fn series(&self, cell: usize) -> Vec<(usize, f64)> {
        self.cells[cell]
            .samples
            .iter()
            .map(|s| (s.round, s.execution_ms))
            .collect()
    }

    pub(super) fn reference_position(&self, cell: usize) -> Option<usize> {
        self.matrix
            .reference_of(&self.key(cell))
            .and_then(|r| self.matrix.position(&r))
    }

    /// A cell's row: query, parameter set, cache state.
    fn row(&self, cell: usize) -> (usize, usize, usize) {
        let key = self.key(cell);
        (key.query.0, key.params.0, key.cache.0)
    }

    /// The (control, its baseline cell) series of the cell's row, among `active`.
    fn control_series(&self, cell: usize, active: &[usize]) -> Vec<judge::ControlPair> {
        let row = self.row(cell);
        active
            .iter()
            .copied()
            .filter(|&c| {
                self.matrix.variant(self.key(c).variant).role == Role::Control && self.row(c) == row
            })
            .filter_map(|c| {
                let r = self.reference_position(c)?;
                Some(judge::ControlPair {
                    control: self.series(c),
                    baseline: self.series(r),
                })
            })
            .collect()
    }
}
