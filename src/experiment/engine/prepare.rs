//! Preparing the databases a run measures on (see `copies` for which goes where): the
//! cache entries built (or found) at once, as many as the machine has cores; then the
//! shared group on the shared copy, the A/A control apart when it must be, each variant
//! of its own on its build; then the workload and table statistics around each.

use std::sync::{Mutex, mpsc};
use std::time::Instant;

use anyhow::Result;

use super::Engine;
use super::build;
use super::copies::{self, Group, Held, Opening};
use crate::experiment::matrix::{Role, Variant, VariantId};
use crate::experiment::result::TableStatsChange;
use crate::experiment::sharing::Sharing;
use crate::experiment::{tables, variants};
use crate::target::{Target, connect};

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

/// A database to prepare on a thread of its own: a cache entry built (or found) and
/// opened for measuring, or the base opened for the A/A control apart.
enum Job {
    Shared {
        name: String,
        list: Vec<(String, Vec<(usize, String)>)>,
    },
    Own(Variant),
    /// A copy of the base: the shared group's when no member adds anything, or the A/A
    /// control's beside candidates of their own (named after `tag`); measured on a copy
    /// unless `copy` is false (in place, when nothing writes and copies do not fit).
    Base {
        tag: &'static str,
        copy: bool,
    },
}

/// What a job built, and the database opened on it.
struct Prepared {
    entry: Entry,
    database: String,
    held: Held,
}

enum Entry {
    Shared(build::Shared),
    Own(variants::Prepared),
    Base,
}

/// What every preparing thread needs, borrowed from the engine.
struct Builder<'b> {
    target: &'b Target,
    base: &'b str,
    experiment: &'b str,
    rebuild: bool,
    /// Measure on copies (else in place).
    copy: bool,
}

impl Builder<'_> {
    /// One job on a connection of its own, its copy made as soon as its entry is built
    /// (copying one entry overlaps another's build); `say` reports progress.
    fn run(&self, job: &Job, say: &dyn Fn(String)) -> Result<Prepared> {
        let mut admin = connect(&self.target.admin_config())?;
        let (entry, template, tag, locks, copy) = match job {
            Job::Shared { name, list } => {
                let mut shared = build::shared(
                    self.target,
                    &mut admin,
                    self.base,
                    self.experiment,
                    name,
                    list,
                    self.rebuild,
                    &mut |v| say(format!("shared copy: building {v}")),
                )?;
                let template = shared.template.clone();
                let locks = shared.locks.take();
                (
                    Entry::Shared(shared),
                    template,
                    "shared".to_string(),
                    locks,
                    self.copy,
                )
            }
            Job::Own(variant) => {
                say(format!("{}: building its copy", variant.name));
                let request = variants::Request {
                    target: self.target,
                    base: self.base,
                    experiment: self.experiment,
                    variant,
                    rebuild: self.rebuild,
                };
                let mut prepared = variants::prepare(&mut admin, &request, &mut |client| {
                    build::run_statements(client, &variant.sql, true)
                })?;
                let template = prepared.template.clone();
                let locks = prepared.locks.take();
                (
                    Entry::Own(prepared),
                    template,
                    copy_tag(&variant.name),
                    locks,
                    self.copy,
                )
            }
            // The base itself serves the control when nothing is copied and the shared
            // group is on a build of its own; otherwise a copy of it.
            Job::Base { tag, copy } => (
                Entry::Base,
                self.base.to_string(),
                tag.to_string(),
                None,
                *copy,
            ),
        };
        say(format!("copying {template}"));
        let mut opening = Opening {
            target: self.target,
            admin: &mut admin,
            experiment: self.experiment,
            copy,
        };
        let (database, held) = copies::open(&mut opening, &template, &tag, locks)?;
        Ok(Prepared {
            entry,
            database,
            held,
        })
    }
}

impl Engine<'_> {
    /// Prepare every job's database, as many at once as the machine has cores:
    /// independent builds overlap (an index build's sort beside another variant's
    /// re-load, a copy beside a build). In the jobs' order.
    fn prepare_all(&mut self, jobs: Vec<Job>, copy: bool) -> Vec<Result<Prepared>> {
        let workers = crate::host::cores().clamp(1, jobs.len().max(1));
        let builder = Builder {
            target: self.target,
            base: &self.base.info.database,
            experiment: &self.plan.name,
            rebuild: self.plan.rebuild,
            copy,
        };
        let next = Mutex::new(0usize);
        let results: Mutex<Vec<Option<Result<Prepared>>>> =
            Mutex::new(jobs.iter().map(|_| None).collect());
        let (tx, rx) = mpsc::channel::<String>();
        let progress = &mut *self.progress;
        std::thread::scope(|scope| {
            for _ in 0..workers {
                let tx = tx.clone();
                let (jobs, next, results, builder) = (&jobs, &next, &results, &builder);
                scope.spawn(move || {
                    loop {
                        let i = {
                            let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
                            let i = *n;
                            *n += 1;
                            i
                        };
                        let Some(job) = jobs.get(i) else { break };
                        let say = |m: String| {
                            let _ = tx.send(m);
                        };
                        let outcome = builder.run(job, &say);
                        let failed = outcome.is_err();
                        results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(outcome);
                        // An interruption stops the other builds too (each checks it).
                        if failed && crate::interrupt::is_interrupted() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            for message in rx {
                progress.message(&message);
            }
        });
        results
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(anyhow::Error::new(crate::error::Interrupted))))
            .collect()
    }

    /// The databases of the whole run (the shared group's, the control apart, a
    /// rewriting baseline's and its control's) and of the first stage's candidates of
    /// their own, prepared at once.
    pub(super) fn prepare_first(
        &mut self,
        entry: Option<&str>,
        creates: &[copies::Creates],
    ) -> Result<()> {
        self.clock.builds_left = self.groups_of.len();
        self.update_progress();
        let started = Instant::now();
        let copy = !self.in_place;
        let shared_job = match entry {
            Some(name) => Job::Shared {
                name: name.to_string(),
                list: creates
                    .iter()
                    .map(|c| (c.name.clone(), c.statements.clone()))
                    .collect(),
            },
            // No member adds anything: the shared group runs on the base (a copy of it).
            None => Job::Base {
                tag: "shared",
                copy,
            },
        };
        let apart = (0..self.groups_of.len()).find(|&i| self.groups_of[i] == Group::Apart);
        // A rewriting baseline's control copies the baseline's build (or, with
        // --rebuild, builds it again): after the baseline's job, never beside it.
        let is_control = |v: usize| self.matrix.variants[v].role == Role::Control;
        let first_own: Vec<VariantId> = (0..self.groups_of.len())
            .filter(|&v| {
                (self.groups_of[v] == Group::Alone && !is_control(v))
                    || self
                        .stages
                        .first()
                        .is_some_and(|s| s.contains(&VariantId(v)))
            })
            .map(VariantId)
            .collect();
        let control_alone: Vec<VariantId> = (0..self.groups_of.len())
            .filter(|&v| self.groups_of[v] == Group::Alone && is_control(v))
            .map(VariantId)
            .collect();
        let any_shared = self.groups_of.contains(&Group::Shared);
        let mut jobs = Vec::new();
        if any_shared {
            jobs.push(shared_job);
        }
        // The control apart needs another physical copy of the base than the baseline's:
        // the base itself when nothing is copied and the baseline is on the shared copy.
        let control_in_place = !copy && entry.is_some();
        if apart.is_some() && !control_in_place {
            // Always a copy: in place, the base is the shared group's already.
            jobs.push(Job::Base {
                tag: "aa_control",
                copy: true,
            });
        }
        jobs.extend(
            first_own
                .iter()
                .map(|&v| Job::Own(self.matrix.variant(v).clone())),
        );
        let mut prepared = self.prepare_all(jobs, copy).into_iter();
        let elapsed = started.elapsed().as_secs_f64();
        self.clock.wall.builds += elapsed;
        self.clock.built(0.0);
        if any_shared {
            let shared = prepared
                .next()
                .unwrap_or_else(|| Err(anyhow::Error::new(crate::error::Interrupted)))?;
            self.place_shared(shared)?;
        }
        if let Some(c) = apart {
            let control = if control_in_place {
                let base = self.base.info.database.clone();
                Ok(Prepared {
                    entry: Entry::Base,
                    held: Held::Direct(None),
                    database: base,
                })
            } else {
                prepared
                    .next()
                    .unwrap_or_else(|| Err(anyhow::Error::new(crate::error::Interrupted)))
            };
            let settled = control.and_then(|p| {
                self.dbs.hold(&p.database, p.held);
                self.dbs.settle(
                    self.target,
                    VariantId(c),
                    &p.database,
                    String::new(),
                    Vec::new(),
                    false,
                )
            });
            self.settled(VariantId(c), settled)?;
        }
        for (v, outcome) in first_own.into_iter().zip(prepared) {
            self.place_own(v, outcome)?;
        }
        if !control_alone.is_empty() {
            let started = Instant::now();
            let jobs = control_alone
                .iter()
                .map(|&v| Job::Own(self.matrix.variant(v).clone()))
                .collect();
            let prepared = self.prepare_all(jobs, copy);
            self.clock.wall.builds += started.elapsed().as_secs_f64();
            for (v, outcome) in control_alone.into_iter().zip(prepared) {
                self.place_own(v, outcome)?;
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

    /// Before a later stage: the stages were planned as if each stage's builds left with
    /// it, but a build this run made stays in the variant cache. When the free disk (a
    /// tenth kept spare) is short of what `stage` needs, drop the finished stages' builds
    /// this run made, largest first, until it fits (a build found in the cache was there
    /// when the stages were planned, and stays). Its next run rebuilds it.
    pub(super) fn make_room(&mut self, stage: usize) -> Result<()> {
        let need: u64 = self.stages[stage]
            .iter()
            .map(|v| self.own_bytes.get(v).copied().unwrap_or(0))
            .sum();
        let Some(free) = crate::experiment::databases::free_disk(&mut self.admin) else {
            return Ok(());
        };
        let mut usable = free - free / 10;
        if need <= usable {
            return Ok(());
        }
        let finished: Vec<VariantId> = self.stages[..stage].iter().flatten().copied().collect();
        let mut builds: Vec<(VariantId, String, u64)> = Vec::new();
        for &v in self.built_here.iter().filter(|v| finished.contains(v)) {
            let name = variants::entry_name(&self.base.info.database, self.matrix.variant(v));
            let bytes = copies::size_of(&mut self.admin, &name)?;
            if bytes > 0 {
                builds.push((v, name, bytes));
            }
        }
        builds.sort_by_key(|(_, _, bytes)| std::cmp::Reverse(*bytes));
        let mut locks = crate::experiment::databases::LockSession::open(self.target)?;
        for (v, name, bytes) in builds {
            if need <= usable {
                break;
            }
            if crate::experiment::databases::drop_if_unused(&mut self.admin, &mut locks, &name)? {
                usable += bytes - bytes / 10;
                self.built_here.retain(|b| *b != v);
                self.progress.line(&format!(
                    "stage {} of {} needs about {}: dropped the cached build of {} ({}), measured in stage {}; its next run rebuilds it",
                    stage + 1,
                    self.stages.len(),
                    copies::gib(need),
                    self.matrix.variant(v).name,
                    copies::gib(bytes),
                    self.stages.iter().position(|s| s.contains(&v)).map_or(0, |s| s + 1),
                ));
            }
        }
        Ok(())
    }

    /// A later stage's candidates of their own, prepared at once.
    pub(super) fn prepare_stage(&mut self, stage: usize) -> Result<()> {
        let own = self.stages[stage].clone();
        let started = Instant::now();
        let jobs = own
            .iter()
            .map(|&v| Job::Own(self.matrix.variant(v).clone()))
            .collect();
        let prepared = self.prepare_all(jobs, !self.in_place);
        self.clock.wall.builds += started.elapsed().as_secs_f64();
        for (v, outcome) in own.into_iter().zip(prepared) {
            self.place_own(v, outcome)?;
        }
        Ok(())
    }

    /// The shared group on its database, every member settled behind what it must
    /// hide.
    fn place_shared(&mut self, prepared: Prepared) -> Result<()> {
        let plan = self.plan;
        let (members, cached) = match &prepared.entry {
            Entry::Shared(shared) => (shared.members.clone(), shared.cached),
            _ => (Vec::new(), false),
        };
        if !cached {
            self.clock.wall.statements += members
                .iter()
                .flat_map(|m| &m.statements)
                .map(|t| t.seconds)
                .sum::<f64>();
        }
        let database = prepared.database.clone();
        self.dbs.hold(&database, prepared.held);
        // The shared entry's in-use lock (when measured in place, the hold has it).
        drop(prepared.entry);
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
        Ok(())
    }

    /// A variant of its own on its build (from the cache, or its statements now),
    /// measured as it is or on a copy; its workload.
    fn place_own(&mut self, v: VariantId, prepared: Result<Prepared>) -> Result<()> {
        let outcome = prepared.and_then(|p| {
            let Entry::Own(built) = p.entry else {
                anyhow::bail!("internal: not a variant's own build");
            };
            if !built.cached {
                self.clock.wall.statements +=
                    built.statements.iter().map(|t| t.seconds).sum::<f64>();
                if self.groups_of[v.0] == Group::Own {
                    self.built_here.push(v);
                }
            }
            self.dbs.hold(&p.database, p.held);
            self.dbs.settle(
                self.target,
                v,
                &p.database,
                String::new(),
                built.statements,
                built.cached,
            )
        });
        self.settled(v, outcome)?;
        if self.dbs.has(v) {
            self.workload(v)?;
        }
        Ok(())
    }

    /// After the builds and copies, before anything is measured: a checkpoint, so the
    /// gigabytes they dirtied are not written out by one in the middle of the rounds (a
    /// round that ran during one took 27 ms where its neighbours took 16). Needs a
    /// superuser or pg_checkpoint; without, the rounds take their chance.
    pub(super) fn settle_server(&mut self) {
        let started = Instant::now();
        let _ = self.admin.batch_execute("CHECKPOINT");
        self.clock.wall.builds += started.elapsed().as_secs_f64();
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
}
