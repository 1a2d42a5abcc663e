//! A stage's leaving variants' last phases, after every EXPLAIN on them: their loads
//! (whose write scripts commit, changing each copy for good), then VACUUM / VACUUM FULL;
//! then their sessions and databases go.
//!
//! The loads take turns: repeat by repeat, every variant runs its repeat before any runs
//! the next, in an order rotated by one each time, so that what drifts over the run (the
//! server's caches and checkpoints, the machine) spreads over every variant alike and the
//! A/A control's load measures what is left of it. A variant's `server_settings` are in
//! force for each of its repeats and undone after it.

use anyhow::Result;

use super::copies::Place;
use super::{Engine, evict};
use crate::experiment::matrix::{Role, VariantId};
use crate::experiment::tables;
use crate::loadtest::spec::Start;
use crate::loadtest::{Hooks, LoadSpec, Sweep};
use crate::target::connect;

impl Engine<'_> {
    /// The leaving variants' loads, taking turns, then each one's maintenance; their
    /// databases are released.
    pub(super) fn finish(&mut self, leaving: &[VariantId]) -> Result<()> {
        // Every measuring backend goes, not only these copies': the load may open as many
        // connections as the server allows (a later stage opens, and warms, its own).
        self.sessions.clear();
        let placed: Vec<(VariantId, Place)> = leaving
            .iter()
            .filter_map(|&v| self.dbs.place(v).cloned().map(|p| (v, p)))
            .collect();
        if let Some(load) = &self.plan.load {
            self.loads(load, &placed)?;
        }
        for (v, place) in placed {
            // A variant whose load failed is gone already.
            if !self.dbs.has(v) {
                continue;
            }
            let name = self.matrix.variant(v).name.clone();
            // The control is there for the noise floor (of the EXPLAIN cells and of the
            // loads): no VACUUM.
            let control = self.matrix.variant(v).role == Role::Control;
            let outcome = (|| -> Result<()> {
                if !control && self.plan.maintenance && !self.plan.table_stats.is_empty() {
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
                Ok(()) => self.progress.line(&format!("variant {name}: done")),
                Err(err) => self.variant_failed(v, err)?,
            }
        }
        Ok(())
    }

    /// Every placed variant's load, repeat by repeat in turns. A variant whose load fails
    /// fails alone; on Ctrl-C or a server that ended every session, what was measured is
    /// kept before the error goes up.
    fn loads(&mut self, spec: &LoadSpec, placed: &[(VariantId, Place)]) -> Result<()> {
        let vars = &self.plan.vars;
        let mut sweeps: Vec<(VariantId, &Place, Sweep)> = Vec::new();
        for (v, place) in placed {
            let name = self.matrix.variant(*v).name.clone();
            let progress = &mut *self.progress;
            let opened = Sweep::open(&place.config, spec, vars, &Hooks::default(), &mut |m| {
                progress.message(&format!("{name}: {m}"))
            });
            match opened {
                Ok(sweep) => sweeps.push((*v, place, sweep)),
                Err(err) => self.variant_failed(*v, err)?,
            }
        }
        let n = sweeps.len();
        let blocks = sweeps.first().map_or(0, |(_, _, s)| s.blocks());
        let mut failed = vec![false; n];
        // What the cold starts could not empty, per sweep (the first said).
        let mut shortfalls: Vec<Option<String>> = vec![None; n];
        let mut turn = 0usize;
        let mut outcome = Ok(());
        'all: for b in 0..blocks {
            for r in 0..spec.repeat {
                for i in 0..n {
                    let k = (i + turn) % n;
                    if failed[k] {
                        continue;
                    }
                    let (v, place, sweep) = &mut sweeps[k];
                    let name = self.matrix.variant(*v).name.clone();
                    let ran = self.load_repeat(*v, place, sweep, (b, r), &name);
                    let ran = ran.map(|shortfall| {
                        if shortfalls[k].is_none() {
                            shortfalls[k] = shortfall;
                        }
                    });
                    if n > 1 {
                        sweep.pause();
                    }
                    if let Err(err) = ran {
                        if crate::error::server_terminated(&err)
                            || err.downcast_ref::<crate::error::Interrupted>().is_some()
                        {
                            outcome = Err(err);
                            break 'all;
                        }
                        failed[k] = true;
                        let v = *v;
                        if let Err(err) = self.variant_failed(v, err) {
                            outcome = Err(err);
                            break 'all;
                        }
                    }
                }
                turn += 1;
            }
        }
        // What was measured is kept, whatever stopped the run.
        for (((v, _, sweep), failed), shortfall) in sweeps.into_iter().zip(failed).zip(shortfalls) {
            if !failed {
                self.variants[v.0].load = Some(sweep.finish(n, shortfall));
            }
        }
        outcome
    }

    /// One repeat of block `b` of variant `v`'s load, under its server settings, each run
    /// after a cold start when the load asks for one; what the cold starts could not
    /// empty.
    fn load_repeat(
        &mut self,
        v: VariantId,
        place: &Place,
        sweep: &mut Sweep,
        (b, r): (usize, usize),
        name: &str,
    ) -> Result<Option<String>> {
        self.progress.message(&format!("{name}: load"));
        let applied = self.apply_server_settings(v, &place.config)?;
        let ran = self.load_runs(place, sweep, (b, r), name);
        // Undone whatever the load's outcome: the next variant's load must not run under
        // these settings.
        self.undo_server_settings(&place.config, applied)?;
        let shortfall = ran?;
        for line in sweep.last() {
            self.progress.line(&format!("{name}: {line}"));
        }
        Ok(shortfall)
    }

    fn load_runs(
        &mut self,
        place: &Place,
        sweep: &mut Sweep,
        (b, r): (usize, usize),
        name: &str,
    ) -> Result<Option<String>> {
        let cold = self
            .plan
            .load
            .as_ref()
            .is_some_and(|l| l.start == Start::Cold);
        let mut shortfall = None;
        for i in 0..sweep.runs(b) {
            if cold {
                self.progress
                    .message(&format!("{name}: load: cold start (restarting the server)"));
                self.sessions.clear();
                let started = std::time::Instant::now();
                let evicted = evict::evict(
                    self.target,
                    &mut self.admin,
                    std::slice::from_ref(&place.database),
                )?;
                if evicted.shared_buffers {
                    self.after_restart()?;
                }
                self.clock.wall.evictions += started.elapsed().as_secs_f64();
                shortfall = shortfall.or(evicted.shortfall());
            }
            let progress = &mut *self.progress;
            sweep.run(b, r, i, &mut |m| progress.message(&format!("{name}: {m}")))?;
        }
        Ok(shortfall)
    }

    /// Variant `v`'s `server_settings` (checked at the run's start), in force from here:
    /// ALTER SYSTEM, then a reload (waited for on a fresh session of `config`), or a
    /// restart of pgx's cluster when one needs it (every session is gone then, and the
    /// run's locks are taken again).
    fn apply_server_settings(
        &mut self,
        v: VariantId,
        config: &postgres::Config,
    ) -> Result<Option<Applied>> {
        use crate::experiment::settings;
        let variant = self.matrix.variant(v);
        if variant.server_settings.is_empty() {
            return Ok(None);
        }
        let restart = variant.server_settings_restart;
        let values = variant.server_settings.clone();
        let values = values.as_slice();
        let mut admin = connect(&self.target.admin_config())?;
        if !restart {
            let (guard, since) = settings::ServerWide::apply(admin, values)?;
            settings::wait_for_reload(&mut connect(config)?, since)?;
            return Ok(Some(Applied::Reloaded(Box::new(guard))));
        }
        let cluster = self.target.cluster().cloned().ok_or_else(|| {
            anyhow::anyhow!("server_settings that need a restart need pgx's own cluster")
        })?;
        let names = settings::alter_system(&mut admin, values)?;
        drop(admin);
        self.progress
            .message("restarting the server for the variant's server_settings");
        self.sessions.clear();
        let restarted = cluster.restart().and_then(|()| self.after_restart());
        if let Err(err) = restarted {
            let _ = self.undo_server_settings(config, Some(Applied::Restarted(names)));
            return Err(err);
        }
        Ok(Some(Applied::Restarted(names)))
    }

    fn undo_server_settings(
        &mut self,
        config: &postgres::Config,
        applied: Option<Applied>,
    ) -> Result<()> {
        use crate::experiment::settings;
        match applied {
            None => Ok(()),
            Some(Applied::Reloaded(guard)) => {
                let since = guard.undo()?;
                settings::wait_for_reload(&mut connect(config)?, since)?;
                self.sessions.last_reload = since;
                Ok(())
            }
            Some(Applied::Restarted(names)) => {
                let mut admin = connect(&self.target.admin_config())?;
                settings::alter_system_reset(&mut admin, &names)?;
                drop(admin);
                self.sessions.clear();
                if let Some(cluster) = self.target.cluster().cloned() {
                    self.progress
                        .message("restarting the server with its own settings");
                    cluster.restart()?;
                    self.after_restart()?;
                }
                Ok(())
            }
        }
    }
}

/// A variant's server settings in force, to be undone.
enum Applied {
    /// Read on reload: the guard resets them.
    Reloaded(Box<crate::experiment::settings::ServerWide>),
    /// Read at start: these names are reset, then the server restarted.
    Restarted(Vec<String>),
}
