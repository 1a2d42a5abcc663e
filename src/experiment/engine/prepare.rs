//! Preparing the databases a run measures on (see `copies` for which goes where): the
//! shared group on the shared copy, the A/A control apart when it must be, each variant
//! of its own on its build; then the workload and table statistics around each.

use std::time::Instant;

use anyhow::Result;

use super::Engine;
use super::build;
use super::copies::{self, Group, Opening};
use crate::experiment::matrix::{Role, VariantId};
use crate::experiment::result::TableStatsChange;
use crate::experiment::sharing::Sharing;
use crate::experiment::{tables, variants};
use crate::target::connect;

/// What names a variant's copy database: its name, or `aa_control` for the control.
fn copy_tag(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

impl Engine<'_> {
    /// The shared group's database (the shared copy, or the base when no member adds
    /// anything), every member settled on it behind what it must hide; and the control
    /// apart when candidates of their own need it.
    pub(super) fn build_shared(
        &mut self,
        entry: Option<&str>,
        creates: &[copies::Creates],
    ) -> Result<()> {
        let plan = self.plan;
        let base = self.base.info.database.clone();
        self.clock.builds_left = self.groups_of.len();
        self.update_progress();
        let started = Instant::now();
        let (template, members, cached, locks) = match entry {
            Some(name) => {
                self.progress.message(&format!(
                    "shared copy: {} variant{} on one copy of the base",
                    creates.len(),
                    if creates.len() == 1 { "" } else { "s" }
                ));
                let list: Vec<(String, Vec<(usize, String)>)> = creates
                    .iter()
                    .map(|c| (c.name.clone(), c.statements.clone()))
                    .collect();
                let progress = &mut *self.progress;
                let shared = build::shared(
                    self.target,
                    &mut self.admin,
                    &base,
                    &plan.name,
                    name,
                    &list,
                    plan.rebuild,
                    &mut |v| progress.message(&format!("shared copy: building {v}")),
                )?;
                (
                    shared.template,
                    shared.members,
                    shared.cached,
                    Some(shared.locks),
                )
            }
            None => (base.clone(), Vec::new(), false, None),
        };
        if !cached {
            self.clock.wall.statements += members
                .iter()
                .flat_map(|m| &m.statements)
                .map(|t| t.seconds)
                .sum::<f64>();
        }
        let mut opening = Opening {
            target: self.target,
            admin: &mut self.admin,
            experiment: &plan.name,
            copy: !self.in_place,
        };
        let database = self.dbs.open(&mut opening, &template, "shared", locks)?;
        let shared: Vec<VariantId> = (0..self.groups_of.len())
            .filter(|&i| self.groups_of[i] == Group::Shared)
            .map(VariantId)
            .collect();
        let baseline = self.matrix.variants[0].name.clone();
        for v in shared {
            // The control is the baseline's twin: it sees what the baseline sees.
            let name = if self.matrix.variant(v).role == Role::Control {
                baseline.clone()
            } else {
                self.matrix.variant(v).name.clone()
            };
            let member = members.iter().find(|m| m.variant == name);
            if let Some(error) = member.and_then(|m| m.error.clone()) {
                self.variant_failed(v, anyhow::anyhow!("{error}"))?;
                continue;
            }
            let drops = match &plan.builds[v.0] {
                Sharing::Shared { drops, .. } => drops.clone(),
                _ => Vec::new(),
            };
            let hide = copies::hide_sql(&members, &name, &drops);
            let statements = member.map(|m| m.statements.clone()).unwrap_or_default();
            let settled = self
                .dbs
                .settle(self.target, v, &database, hide, statements, cached);
            self.settled(v, settled)?;
        }
        if let Some(c) = (0..self.groups_of.len()).find(|&i| self.groups_of[i] == Group::Apart) {
            let v = VariantId(c);
            self.progress
                .message("A/A control: a copy of the base of its own");
            // Another physical copy of the base than the baseline's: the base itself when
            // nothing writes and the baseline is on the shared copy, else a copy.
            let mut opening = Opening {
                target: self.target,
                admin: &mut self.admin,
                experiment: &plan.name,
                copy: !self.in_place || database == base,
            };
            let opened = self.dbs.open(&mut opening, &base, "aa_control", None);
            let settled = opened.and_then(|db| {
                self.dbs
                    .settle(self.target, v, &db, String::new(), Vec::new(), false)
            });
            self.settled(v, settled)?;
        }
        self.clock.built(started.elapsed().as_secs_f64());
        // A baseline that rewrites tables, and its control: builds of their own.
        for v in 0..self.groups_of.len() {
            if self.groups_of[v] == Group::Alone {
                self.build_own(VariantId(v))?;
            }
        }
        for v in 0..self.groups_of.len() {
            if matches!(self.groups_of[v], Group::Shared | Group::Apart)
                && self.dbs.has(VariantId(v))
            {
                self.workload(VariantId(v))?;
            }
        }
        Ok(())
    }

    /// A variant of its own: its build (from the cache, or its statements now), measured
    /// as it is or on a copy.
    pub(super) fn build_own(&mut self, v: VariantId) -> Result<()> {
        let plan = self.plan;
        let variant = self.matrix.variant(v).clone();
        self.update_progress();
        self.progress
            .message(&format!("{}: building its copy", variant.name));
        let started = Instant::now();
        let request = variants::Request {
            target: self.target,
            base: &self.base.info.database,
            experiment: &plan.name,
            variant: &variant,
            rebuild: plan.rebuild,
        };
        let prepared = variants::prepare(&mut self.admin, &request, &mut |client| {
            build::run_statements(client, &variant.sql, true)
        });
        let outcome = prepared.and_then(|prepared| {
            if !prepared.cached {
                self.clock.wall.statements +=
                    prepared.statements.iter().map(|t| t.seconds).sum::<f64>();
            }
            let mut opening = Opening {
                target: self.target,
                admin: &mut self.admin,
                experiment: &plan.name,
                copy: !self.in_place,
            };
            let db = self.dbs.open(
                &mut opening,
                &prepared.template,
                &copy_tag(&variant.name),
                prepared.locks,
            )?;
            self.dbs.settle(
                self.target,
                v,
                &db,
                String::new(),
                prepared.statements,
                prepared.cached,
            )
        });
        self.clock.built(started.elapsed().as_secs_f64());
        self.settled(v, outcome)?;
        if self.dbs.has(v) {
            self.workload(v)?;
        }
        Ok(())
    }

    /// A variant settled on its database (its results take its statements and
    /// relations), or failed.
    fn settled(&mut self, v: VariantId, outcome: Result<()>) -> Result<()> {
        match outcome {
            Ok(()) => {
                let placement = match self.groups_of[v.0] {
                    Group::Shared => "shared",
                    Group::Own | Group::Alone => "own",
                    Group::Apart => "apart",
                };
                if let Some(place) = self.dbs.place(v) {
                    let result = &mut self.variants[v.0];
                    result.statements = place.statements.clone();
                    result.cached = place.cached;
                    result.relations = place.relations.clone();
                    result.placement = Some(placement.to_string());
                }
                Ok(())
            }
            Err(err) => self.variant_failed(v, err),
        }
    }

    /// The experiment's write workload on a variant's database, with the table
    /// statistics before and after it. A failure is the variant's.
    fn workload(&mut self, v: VariantId) -> Result<()> {
        let plan = self.plan;
        if plan.workload.is_none() && plan.table_stats.is_empty() {
            return Ok(());
        }
        // The control measures the EXPLAIN cells' noise: no workload.
        if self.matrix.variant(v).role == Role::Control && plan.workload.is_some() {
            return Ok(());
        }
        let Some(place) = self.dbs.place(v) else {
            return Ok(());
        };
        let config = place.config.clone();
        let started = Instant::now();
        let outcome = (|| -> Result<()> {
            let mut client = connect(&config)?;
            let pgstattuple =
                !plan.table_stats.is_empty() && tables::enable_pgstattuple(&mut client);
            let before = tables::snapshot(&mut client, &plan.table_stats, pgstattuple)?;
            if let Some(workload) = &plan.workload {
                self.progress
                    .message(&format!("{}: workload", self.matrix.variant(v).name));
                self.variants[v.0].workload = Some(tables::run_workload(
                    &mut client,
                    workload.batches,
                    workload.seed,
                    &workload.sql,
                )?);
            }
            let after = tables::snapshot(&mut client, &plan.table_stats, pgstattuple)?;
            self.variants[v.0].table_stats = before
                .into_iter()
                .zip(after)
                .map(|((table, before), (_, after))| TableStatsChange {
                    table,
                    before,
                    after,
                })
                .collect();
            Ok(())
        })();
        self.clock.wall.builds += started.elapsed().as_secs_f64();
        match outcome {
            Ok(()) => Ok(()),
            Err(err) => self.variant_failed(v, err),
        }
    }

    /// A variant's last phases, after every EXPLAIN on it: the load (whose write
    /// scripts commit, changing the copy for good), then VACUUM / VACUUM FULL; then its
    /// sessions and database go.
    pub(super) fn finish(&mut self, v: VariantId) -> Result<()> {
        // Every measuring backend goes, not only this copy's: the load may open as many
        // connections as the server allows (a later stage opens, and warms, its own).
        self.sessions.clear();
        let Some(place) = self.dbs.place(v).cloned() else {
            return Ok(());
        };
        let name = self.matrix.variant(v).name.clone();
        // The control is there for the EXPLAIN cells' noise floor: no load, no VACUUM.
        let control = self.matrix.variant(v).role == Role::Control;
        let outcome = (|| -> Result<()> {
            if control {
                return Ok(());
            }
            if let Some(load) = &self.plan.load {
                self.progress.message(&format!("{name}: load"));
                let progress = &mut *self.progress;
                self.variants[v.0].load = Some(crate::load::run(
                    &place.config,
                    load,
                    &self.plan.vars,
                    &mut |m| progress.message(&format!("{name}: load {m}")),
                )?);
            }
            if self.plan.maintenance && !self.plan.table_stats.is_empty() {
                self.progress
                    .message(&format!("{name}: VACUUM / VACUUM FULL"));
                let mut client = connect(&place.config)?;
                self.variants[v.0].maintenance =
                    tables::maintenance(&mut client, &self.plan.table_stats)?;
            }
            Ok(())
        })();
        self.dbs.release(v);
        match outcome {
            Ok(()) => {
                self.progress.line(&format!("variant {name}: done"));
                Ok(())
            }
            Err(err) => self.variant_failed(v, err),
        }
    }
}
