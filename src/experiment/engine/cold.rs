//! Cold and prewarmed cells, in rounds of their own (evicting the caches would spoil
//! the warm cells'): every round visits every such cell still needed once, in a seeded
//! random order, one run per visit, right after an eviction. One eviction serves one
//! cell of each database: databases share no buffers or files, but variants on the
//! shared copy do, so a cell there could warm another's pages. Cells under server-wide
//! settings are not measured cold (a restart would have to re-apply them).

use anyhow::Result;

use super::{Engine, Phase, evict};
use crate::experiment::matrix::CacheState;
use crate::experiment::result::RoundRun;

impl Engine<'_> {
    pub(super) fn cold_rounds(
        &mut self,
        cells: &[usize],
        group: usize,
        phase: Phase,
    ) -> Result<()> {
        let mut active: Vec<usize> = Vec::new();
        for &c in cells {
            if self.settings[self.key(c).settings.0].server.is_empty() {
                active.push(c);
            } else {
                self.fail(
                    c,
                    "not measured cold: its settings apply to the whole server, and evicting the caches restarts it".into(),
                );
            }
        }
        let design = self.timed_groups[group].design.clone();
        for &c in &active {
            self.clock.expect(c, design.last() as u64);
        }
        for r in 1..=design.last() {
            let round = self.next_round;
            self.next_round += 1;
            self.timed_groups[group].rounds.push(round);
            let salt = ((round as u64) << 2) | 2 | (phase == Phase::Writes) as u64;
            let order = self
                .plan
                .schedule
                .order(salt, std::slice::from_ref(&active))
                .concat();
            self.rounds_run.push(RoundRun {
                round,
                phase: format!("{} (cold)", phase.name()),
                cells: order.clone(),
            });
            // Batches of at most one cell per database, in the round's order.
            let mut batches: Vec<Vec<usize>> = Vec::new();
            for cell in order {
                let database = self.database_of(cell);
                match batches
                    .iter_mut()
                    .find(|b| b.iter().all(|c| self.database_of(*c) != database))
                {
                    Some(batch) => batch.push(cell),
                    None => batches.push(vec![cell]),
                }
            }
            for batch in batches {
                let batch: Vec<usize> = batch
                    .into_iter()
                    .filter(|c| self.cells[*c].error.is_none())
                    .collect();
                if !batch.is_empty() {
                    self.cold_batch(&batch, round)?;
                }
            }
            active = self.still_needed(&active, group, r);
            if active.is_empty() {
                break;
            }
        }
        for &c in cells {
            self.clock.forget(c);
        }
        Ok(())
    }

    fn database_of(&self, cell: usize) -> Option<String> {
        self.dbs
            .place(self.key(cell).variant)
            .map(|p| p.database.clone())
    }

    /// One eviction, then one run of each cell of the batch (each on its own database).
    fn cold_batch(&mut self, batch: &[usize], round: usize) -> Result<()> {
        crate::interrupt::check()?;
        self.update_progress();
        let mut databases: Vec<String> =
            batch.iter().filter_map(|c| self.database_of(*c)).collect();
        databases.dedup();
        self.progress
            .message("evicting the caches (restarting the server)");
        self.sessions.clear();
        let started = std::time::Instant::now();
        let evicted = evict::evict(self.target, &mut self.admin, &databases)?;
        if evicted.shared_buffers {
            self.after_restart()?;
        }
        self.clock.wall.evictions += started.elapsed().as_secs_f64();
        let shortfall = evicted.shortfall();
        for &cell in batch {
            self.cells[cell].eviction = shortfall.clone();
            let started = std::time::Instant::now();
            let prewarmed = if self.matrix.cache(&self.key(cell)) == CacheState::Prewarmed {
                self.prewarm(cell)
            } else {
                Ok(())
            };
            self.clock.wall.evictions += started.elapsed().as_secs_f64();
            if let Err(err) = prewarmed {
                self.fail(cell, format!("pg_prewarm failed: {err:#}"));
                continue;
            }
            self.visit(cell, 1, round)?;
        }
        Ok(())
    }

    /// Load the experiment's `prewarm:` relations into shared buffers, on the cell's
    /// session, as the variant sees them (what it lacks on the shared copy hidden, so
    /// another variant's index is not loaded).
    fn prewarm(&mut self, cell: usize) -> Result<()> {
        let relations = self.plan.prewarm.clone();
        let hide = self.statement_of(cell).borrowed().hide.to_string();
        let session = self.session(cell)?;
        // In the transaction too: a database measured as it is (a cache entry, the base)
        // is left as it was built.
        let mut tx = session.client.transaction()?;
        tx.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")?;
        tx.batch_execute(&hide)?;
        for relation in &relations {
            // A relation the variant lacks (another's index) is skipped; a partitioned
            // one is prewarmed partition by partition.
            tx.query(
                "WITH r AS (SELECT to_regclass($1) AS rel), \
                 leaves AS (SELECT t.relid FROM r, pg_partition_tree(r.rel) t WHERE t.isleaf \
                            UNION ALL SELECT r.rel FROM r WHERE r.rel IS NOT NULL \
                            AND NOT EXISTS (SELECT 1 FROM pg_partition_tree(r.rel))) \
                 SELECT pg_prewarm(relid) FROM leaves",
                &[relation],
            )
            .map_err(|e| {
                let message = format!("{relation}: {}", crate::error::describe_pg_error(&e, None));
                crate::error::described(message, e)
            })?;
        }
        drop(tx);
        Ok(())
    }

    /// The server restarted: every connection is gone. Connect again and take back what
    /// this run holds: its admin session, the base's in-use lock, each database's locks.
    pub(super) fn after_restart(&mut self) -> Result<()> {
        self.sessions.clear();
        self.admin = crate::target::connect(&self.target.admin_config())?;
        self.admin.execute(
            "SELECT pg_advisory_lock_shared(hashtext($1))",
            &[&crate::experiment::databases::in_use_lock(
                &self.base.info.database,
            )],
        )?;
        self.dbs.reown(self.target)
    }
}
