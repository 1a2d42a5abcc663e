//! Loading a base's dataset: the steps of the experiment file, then what makes the data
//! ready to copy (indexes, foreign keys, visibility map, statistics).
//!
//! Two paths, the same rows:
//!
//! - **plain** (`dataset.bulk: false`): the steps run as written in one session with the
//!   migrations' indexes and foreign keys in place, then `VACUUM ANALYZE`.
//! - **bulk** (the default): the indexes and foreign keys of the migrations' tables are
//!   recorded and dropped (`catalog`), the steps run (a parallel step streams its chunks
//!   through COPY, `parallel`; a plain step runs in a transaction that first truncates
//!   the still-empty tables, so with `wal_level = minimal` its rows skip WAL), and then,
//!   over several connections (`jobs`): VACUUM where the visibility map is not set yet,
//!   the index builds, the constraints and attachments, the foreign keys, ANALYZE.

pub mod catalog;
pub mod jobs;
pub mod parallel;

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use anyhow::{Context, Result};
use postgres::Client;
use postgres::error::SqlState;

use super::result::{LoadInfo, Timing};
use super::spec::{RangeBound, Spec, StepSpec, substitute};
use crate::error::{Interrupted, fail};
use crate::target::Target;
use catalog::Snapshot;
use jobs::{Job, Kind, Lock, Pool};

/// Overrides of what pgx would choose (tests, benchmarks).
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Connections for parallel steps and maintenance (default: the machine's CPUs).
    pub connections: Option<usize>,
}

/// Where the steps go and how they are reported.
pub struct Loader<'a> {
    pub target: &'a Target,
    pub dbname: &'a str,
    pub spec: &'a Spec,
    pub vars: Vec<(String, String)>,
    pub options: &'a LoadOptions,
}

/// Times each phase and tells the caller.
pub struct Phases<'a> {
    pub on_step: &'a mut dyn FnMut(&str, Option<f64>),
    pub timings: Vec<Timing>,
}

impl Phases<'_> {
    pub fn run<T>(&mut self, label: &str, work: impl FnOnce() -> Result<T>) -> Result<T> {
        crate::interrupt::check()?;
        (self.on_step)(label, None);
        let started = Instant::now();
        let out = work()?;
        let seconds = started.elapsed().as_secs_f64();
        self.timings.push(Timing {
            label: label.to_string(),
            seconds,
        });
        (self.on_step)(label, Some(seconds));
        Ok(out)
    }
}

use crate::host::cores;

impl Loader<'_> {
    fn connections(&self) -> usize {
        self.options.connections.unwrap_or_else(cores).max(1)
    }

    fn config(&self) -> postgres::Config {
        self.target.config_for(self.dbname)
    }

    /// Run every step and finish the data; `client` is the loading session, migrated.
    pub fn build(&self, client: &mut Client, phases: &mut Phases) -> Result<LoadInfo> {
        // Deterministic random() for steps that use it.
        client.batch_execute("SELECT setseed(0.42); SET jit = off; SET statement_timeout = 0")?;
        let bulk = self.spec.dataset.bulk;
        let mut info = LoadInfo {
            path: if bulk { "bulk" } else { "plain" }.into(),
            connections: self.connections(),
            ..LoadInfo::default()
        };
        let snapshot = if bulk {
            let snapshot = Snapshot::read(client, crate::migrate::HISTORY_TABLE)?;
            info.indexes = snapshot.index_count();
            info.foreign_keys = snapshot.foreign_key_count();
            let label = format!(
                "bulk load: drop {} indexes and {} foreign keys",
                info.indexes, info.foreign_keys
            );
            phases.run(&label, || snapshot.drop_all(client))?;
            Some(snapshot)
        } else {
            None
        };
        // Leaves loaded by COPY FREEZE and not touched since: no VACUUM needed.
        let mut frozen: HashSet<u32> = HashSet::new();
        for step in &self.spec.dataset.steps {
            match step.parallel() {
                None => phases.run(&step.name, || {
                    self.sequential(client, step, snapshot.as_ref(), &mut frozen)
                })?,
                Some(options) => phases.run(&step.name, || {
                    let range = match &options.range {
                        Some([lo, hi]) => {
                            Some((self.bound(client, step, lo)?, self.bound(client, step, hi)?))
                        }
                        None => None,
                    };
                    let chunks = parallel::chunks(
                        &step.name,
                        range,
                        options.chunks.unwrap_or(parallel::DEFAULT_CHUNKS),
                    )?;
                    match &snapshot {
                        Some(_) => {
                            let (rows, leaves, froze) = self.relay(client, step, &chunks)?;
                            info.streamed_rows += rows;
                            for leaf in leaves {
                                if froze {
                                    frozen.insert(leaf);
                                } else {
                                    frozen.remove(&leaf);
                                }
                            }
                        }
                        None => {
                            self.chunks_in_session(client, step, &chunks)?;
                            frozen.clear();
                        }
                    }
                    // The steps after this one draw the same random() values on both paths.
                    client
                        .execute(
                            "SELECT setseed($1)",
                            &[&parallel::seed(&format!("after\0{}", step.name))],
                        )
                        .map(|_| ())
                        .map_err(anyhow::Error::from)
                })?,
            }
        }
        match snapshot {
            Some(snapshot) => {
                let label = format!(
                    "bulk load: VACUUM, {} indexes, {} foreign keys, ANALYZE ({} connections)",
                    info.indexes,
                    info.foreign_keys,
                    self.connections()
                );
                info.work = phases.run(&label, || self.finish(client, &snapshot, &frozen, true))?;
            }
            None => phases.run("VACUUM ANALYZE", || {
                flush_commits(client)?;
                let _cancel = crate::interrupt::CancelOnInterrupt::new(client);
                client
                    .batch_execute("VACUUM ANALYZE")
                    .map_err(|e| server_error(&e, "VACUUM ANALYZE", None))
            })?,
        }
        Ok(info)
    }

    /// A bound of `parallel.range`: a number, or a text with `{{vars}}` that is a number
    /// or an SQL expression (`{{a}} + {{b}} - 1`), evaluated by the server.
    fn bound(&self, client: &mut Client, step: &StepSpec, bound: &RangeBound) -> Result<i64> {
        let text = match bound {
            RangeBound::Number(n) => return Ok(*n),
            RangeBound::Text(text) => text,
        };
        let what = format!("dataset step {} parallel.range", step.name);
        let value = substitute(text, &self.vars, &what)?;
        if let Ok(n) = value.trim().parse() {
            return Ok(n);
        }
        let row = client
            .query_one(&format!("SELECT ({value})::bigint"), &[])
            .map_err(|e| {
                fail(
                    format!(
                        "{}: {what}: {text:?} ({value}) is not a whole number: {}",
                        self.spec.path.display(),
                        crate::error::describe_pg_error(&e, None)
                    ),
                    "give the range's bounds as numbers, {{vars}} or SQL arithmetic on them",
                )
            })?;
        row.get::<_, Option<i64>>(0).ok_or_else(|| {
            fail(
                format!("{}: {what}: {text:?} is NULL", self.spec.path.display()),
                "give the range's bounds as numbers, {{vars}} or SQL arithmetic on them",
            )
        })
    }

    fn step_failed(&self, step: &StepSpec, what: &str, message: String) -> anyhow::Error {
        fail(
            format!(
                "{}: dataset step {:?}{what} failed:\n  {message}",
                self.spec.path.display(),
                step.name
            ),
            "fix the step's SQL in the experiment file (line numbers are within the step)",
        )
    }

    /// Run SQL in the loading session, cancelled by Ctrl-C, with the step's error. On the
    /// bulk path (`snapshot`), a step that fails on an object the bulk path dropped is told
    /// so (it was written for the plain path).
    fn execute(
        &self,
        client: &mut Client,
        step: &StepSpec,
        what: &str,
        sql: &str,
        snapshot: Option<&Snapshot>,
    ) -> Result<()> {
        let _cancel = crate::interrupt::CancelOnInterrupt::new(client);
        client.batch_execute(sql).map_err(|e| {
            if crate::interrupt::is_interrupted() {
                return anyhow::Error::new(Interrupted);
            }
            let described = crate::error::describe_pg_error(&e, Some(sql));
            if let Some(err) =
                snapshot.and_then(|s| self.dropped_by_bulk(s, step, sql, &e, &described))
            {
                return err;
            }
            with_disk_full_hint(&e, self.step_failed(step, what, described))
        })
    }

    /// The step failed on an index, key or foreign key the bulk path dropped before the
    /// steps (a step written for the plain path: it drops a foreign key itself, or re-adds
    /// one whose referenced key is not there yet): say so, naming them.
    fn dropped_by_bulk(
        &self,
        snapshot: &Snapshot,
        step: &StepSpec,
        sql: &str,
        e: &postgres::Error,
        described: &str,
    ) -> Option<anyhow::Error> {
        let db = e.as_db_error()?;
        let code = db.code();
        let missing_object = *code == SqlState::UNDEFINED_OBJECT
            || *code == SqlState::UNDEFINED_TABLE
            || *code == SqlState::INVALID_FOREIGN_KEY;
        if !missing_object {
            return None;
        }
        let names =
            snapshot.dropped_named(sql, db.message(), *code == SqlState::INVALID_FOREIGN_KEY);
        let first = names.first()?;
        let among = if names.len() == 1 {
            format!("{first} among them")
        } else {
            format!("{} among them", names.join(", "))
        };
        Some(fail(
            format!(
                "{}: dataset step {:?} failed:\n  {described}\n  the bulk-load path (dataset.bulk, default true) dropped the migrations' indexes, keys and foreign keys before the steps ({}, {}) — {among} — and rebuilds them after",
                self.spec.path.display(),
                step.name,
                plural(snapshot.index_count(), "index", "indexes"),
                plural(snapshot.foreign_key_count(), "foreign key", "foreign keys"),
            ),
            format!(
                "remove the steps that drop or re-add them (pgx does both now), or set `dataset.bulk: false` in {} to run the steps with the migrations' indexes and keys in place",
                self.spec.path.display()
            ),
        ))
    }

    /// A plain step. On the bulk path, inside a transaction that first truncates the
    /// migrations' still-empty tables (their rows then skip WAL), unless the step holds
    /// something that cannot run in a transaction block.
    /// `frozen` loses the tables the step wrote to (all of them when that is not known).
    fn sequential(
        &self,
        client: &mut Client,
        step: &StepSpec,
        snapshot: Option<&Snapshot>,
        frozen: &mut HashSet<u32>,
    ) -> Result<()> {
        let sql = substitute(
            &step.sql,
            &self.vars,
            &format!("dataset step {}", step.name),
        )?;
        let Some(snapshot) = snapshot.filter(|_| transaction_safe(&sql)) else {
            frozen.clear();
            return self.execute(client, step, "", &sql, snapshot);
        };
        let leaves: Vec<u32> = snapshot.leaves().map(|t| t.oid).collect();
        let empty: Vec<String> = client
            .query(
                "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.oid = ANY($1) AND pg_relation_size(c.oid) = 0 \
                   AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.confrelid = c.oid) \
                 ORDER BY c.oid",
                &[&leaves],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        client.batch_execute("BEGIN")?;
        let work = (|| {
            if !empty.is_empty() {
                client.batch_execute(&format!("TRUNCATE {}", empty.join(", ")))?;
            }
            // Which frozen tables the step writes to: the backend's pending statistics,
            // which do not move inside a transaction block but through its own writes.
            let tables: Vec<u32> = frozen.iter().copied().collect();
            let writes = |client: &mut Client| -> Result<HashMap<u32, i64>> {
                Ok(client
                    .query(
                        "SELECT t, pg_stat_get_xact_tuples_inserted(t) + pg_stat_get_xact_tuples_updated(t) \
                                + pg_stat_get_xact_tuples_deleted(t) FROM unnest($1::oid[]) AS t",
                        &[&tables],
                    )?
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect())
            };
            let before = writes(client)?;
            self.execute(client, step, "", &sql, Some(snapshot))?;
            for (table, after) in writes(client)? {
                if before.get(&table) != Some(&after) {
                    frozen.remove(&table);
                }
            }
            Ok(client.batch_execute("COMMIT")?)
        })();
        if work.is_err() {
            let _ = client.batch_execute("ROLLBACK");
        }
        work
    }

    /// A parallel step on the plain path: its chunks one after another.
    fn chunks_in_session(
        &self,
        client: &mut Client,
        step: &StepSpec,
        chunks: &[parallel::Chunk],
    ) -> Result<()> {
        for chunk in chunks {
            let vars: Vec<(String, String)> =
                self.vars.iter().cloned().chain(chunk.vars()).collect();
            let sql = substitute(&step.sql, &vars, &format!("dataset step {}", step.name))?;
            client.execute("SELECT setseed($1)", &[&chunk.seed])?;
            self.execute(
                client,
                step,
                &format!(" ({})", chunk.describe()),
                &sql,
                None,
            )?;
        }
        Ok(())
    }

    /// A parallel step on the bulk path: generators over N connections, one COPY.
    /// Returns the rows, the target's leaves, and whether they were loaded frozen.
    fn relay(
        &self,
        client: &mut Client,
        step: &StepSpec,
        chunks: &[parallel::Chunk],
    ) -> Result<(u64, Vec<u32>, bool)> {
        let chunk_sql = |chunk: &parallel::Chunk| {
            let vars: Vec<(String, String)> =
                self.vars.iter().cloned().chain(chunk.vars()).collect();
            substitute(&step.sql, &vars, &format!("dataset step {}", step.name))
        };
        let shape_error = |message: String| {
            fail(
                format!(
                    "{}: dataset step {:?}: {message}",
                    self.spec.path.display(),
                    step.name
                ),
                "make it one INSERT ... SELECT, remove `parallel`, or set `dataset.bulk: false`",
            )
        };
        let first = chunks.first().context("a parallel step without chunks")?;
        let first_sql = chunk_sql(first)?;
        let parts = parallel::parse_insert(&first_sql).map_err(shape_error)?;
        let target = client
            .query_one(
                "SELECT c.oid, c.relkind::text, format('%I.%I', n.nspname, c.relname) \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::text::regclass",
                &[&parts.table],
            )
            .map_err(|e| shape_error(format!("its target {}: {}", parts.table, crate::error::describe_pg_error(&e, None))))?;
        let (oid, kind, table): (u32, String, String) =
            (target.get(0), target.get(1), target.get(2));
        let columns: Vec<(String, String)> = client
            .query(
                "SELECT quote_ident(attname), format_type(atttypid, atttypmod), attname::text FROM pg_attribute \
                 WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
                &[&oid],
            )?
            .iter()
            .map(|r| (r.get::<_, String>(2), format!("{}\u{0}{}", r.get::<_, String>(0), r.get::<_, String>(1))))
            .collect();
        let with = parts.with.as_deref().unwrap_or("");
        let source = format!("{with}\n{}", parts.source);
        let map = parallel::PositionMap {
            pieces: vec![
                (0, with.chars().count(), parts.with_at),
                (
                    with.chars().count() + 1,
                    parts.source.chars().count(),
                    parts.source_at,
                ),
            ],
        };
        let produced = client
            .prepare(&source)
            .map_err(|e| {
                self.step_failed(
                    step,
                    &format!(" ({})", first.describe()),
                    describe_mapped(&e, &first_sql, &map),
                )
            })?
            .columns()
            .len();
        let targets: Vec<(String, String)> = match &parts.columns {
            Some(names) => {
                if names.len() != produced {
                    return Err(shape_error(format!(
                        "its INSERT names {} columns and its SELECT produces {produced}",
                        names.len()
                    )));
                }
                names
                    .iter()
                    .map(|name| {
                        let folded = parallel::fold_ident(name);
                        columns
                            .iter()
                            .find(|(attname, _)| *attname == folded)
                            .map(|(_, both)| split_pair(both))
                            .ok_or_else(|| {
                                shape_error(format!(
                                    "{table} has no column {name} (or it is generated)"
                                ))
                            })
                    })
                    .collect::<Result<_>>()?
            }
            None => {
                if produced > columns.len() {
                    return Err(shape_error(format!(
                        "its SELECT produces {produced} columns and {table} has {}",
                        columns.len()
                    )));
                }
                columns
                    .iter()
                    .take(produced)
                    .map(|(_, both)| split_pair(both))
                    .collect()
            }
        };
        // The target's tree, whether it is empty and free to truncate, and whether the
        // step reads it (then the COPY must not lock it away from the generators).
        // pg_partition_tree() lists a partitioned table's tree, itself included, and
        // nothing for a plain table (or a single partition): that is its own tree.
        let tree_sql = "SELECT t.relid::oid, t.isleaf FROM pg_partition_tree($1::oid::regclass) AS t \
                        UNION SELECT $1::oid, true WHERE NOT EXISTS (SELECT 1 FROM pg_partition_tree($1::oid::regclass))";
        let members: Vec<(u32, bool)> = client
            .query(tree_sql, &[&oid])?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let leaves: Vec<u32> = members.iter().filter(|m| m.1).map(|m| m.0).collect();
        let all: Vec<u32> = members.iter().map(|m| m.0).collect();
        let tree: Vec<(String, String)> = client
            .query(
                "SELECT n.nspname::text, c.relname::text FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY($1)",
                &[&all],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        // Truncated (WAL skipped, FREEZE possible) only when every leaf is empty and no
        // foreign key points at the tree (TRUNCATE would refuse).
        let truncatable: bool = client
            .query_one(
                "SELECT bool_and(pg_relation_size(t) = 0) \
                        AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.confrelid = ANY($2)) \
                 FROM unnest($1::oid[]) AS t",
                &[&leaves, &all],
            )?
            .get::<_, Option<bool>>(0)
            .unwrap_or(false);
        let reads_target = reads_any(client, &source, &tree)?;
        let truncate = (truncatable && !reads_target).then(|| format!("TRUNCATE {table}"));
        let freeze = truncate.is_some() && kind == "r";
        let copy_in = format!(
            "COPY {table} ({}) FROM STDIN (FORMAT binary{})",
            targets
                .iter()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            if freeze { ", FREEZE" } else { "" }
        );
        let types: Vec<String> = targets.iter().map(|(_, t)| t.clone()).collect();
        let mut generators = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            let sql = chunk_sql(chunk)?;
            let parts = parallel::parse_insert(&sql).map_err(shape_error)?;
            let (generated, map) = parallel::generator_sql(&parts, &types);
            generators.push(parallel::Generator {
                sql: generated,
                seed: chunk.seed,
                what: format!(
                    "{}: dataset step {:?} ({}) failed",
                    self.spec.path.display(),
                    step.name,
                    chunk.describe()
                ),
                step_sql: sql,
                map,
            });
        }
        let relay = parallel::Relay {
            copy_in,
            truncate,
            generators,
            settings: parts.settings.clone(),
            connections: self.connections().min(chunks.len()),
            config: self.config(),
        };
        let rows = parallel::run(&relay, client)?;
        Ok((rows, leaves, freeze))
    }

    /// After the steps of the bulk path: VACUUM (only where rows were not frozen), the
    /// indexes and constraints, the foreign keys (unless `foreign_keys` is false: the
    /// benchmark's bulk-load limit has none), ANALYZE, over several connections.
    /// Returns the work summed per kind.
    pub fn finish(
        &self,
        client: &mut Client,
        snapshot: &Snapshot,
        frozen: &HashSet<u32>,
        foreign_keys: bool,
    ) -> Result<Vec<Timing>> {
        flush_commits(client)?;
        let leaves: Vec<u32> = snapshot.leaves().map(|t| t.oid).collect();
        let sizes: HashMap<u32, i64> = client
            .query(
                "SELECT c.oid, pg_relation_size(c.oid) FROM pg_class c WHERE c.oid = ANY($1)",
                &[&leaves],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        for shell in snapshot.shells()? {
            client.batch_execute(&shell).map_err(|e| {
                server_error(
                    &e,
                    "bulk load: recreating a partitioned index",
                    Some(&shell),
                )
            })?;
        }
        let mut jobs = Vec::new();
        snapshot.rebuild_jobs(&sizes, &mut jobs, foreign_keys)?;
        let builds = jobs.len();
        let mut by_size: Vec<&catalog::Table> = snapshot
            .leaves()
            .filter(|t| sizes.get(&t.oid).copied().unwrap_or(0) > 0 && !frozen.contains(&t.oid))
            .collect();
        let vacuumed: Vec<u32> = by_size.iter().map(|t| t.oid).collect();
        by_size.sort_by_key(|t| std::cmp::Reverse(sizes.get(&t.oid).copied().unwrap_or(0)));
        for table in by_size {
            // After the table's index builds, not before: VACUUM can mark a page
            // all-visible only once PostgreSQL may set its rows' hint bits, which waits
            // for the WAL of the commits in their clog group (32 transaction ids, other
            // sessions' included) to be flushed; with asynchronous commit that is up to
            // 200 ms after the last of them. The index builds give it that time; VACUUM
            // with no dead rows does not scan the indexes.
            // FREEZE, not plain VACUUM: the rows end up as COPY FREEZE leaves them
            // (frozen, all-visible), and a page pinned by someone else (the checkpointer
            // writing it out) is waited for instead of passed over unmarked. ~50% more
            // VACUUM time (0.39 s against 0.24 s for the 5M references at scale 0.25).
            let after: Vec<usize> = (0..builds)
                .filter(|&j| jobs[j].kind == Kind::Index)
                .filter(|&j| jobs[j].tables.iter().any(|(t, _)| *t == table.oid))
                .collect();
            jobs.push(Job {
                kind: Kind::Vacuum,
                label: format!("VACUUM {}", table.name),
                sql: FLUSH_COMMITS
                    .iter()
                    .map(|s| s.to_string())
                    .chain(std::iter::once(format!("VACUUM (FREEZE) {}", table.name)))
                    .collect(),
                tables: vec![(table.oid, Lock::Exclusive)],
                after,
                maintenance: false,
                weight: sizes.get(&table.oid).copied().unwrap_or(0),
            });
        }
        // ANALYZE per tree (a partitioned table's ANALYZE covers its partitions), after its
        // VACUUM and its indexes (ANALYZE samples expression indexes too), but not after
        // the foreign keys that lock it: those wait for other tables' builds, and a long
        // ANALYZE (jsonb columns) would otherwise be the last job, alone on one core.
        let rebuilt = jobs.len();
        for (root, tree_leaves) in snapshot.trees() {
            let mut keys: Vec<u32> = tree_leaves.clone();
            keys.push(root.oid);
            let after: Vec<usize> = (0..rebuilt)
                .filter(|&j| jobs[j].kind != Kind::ForeignKey)
                .filter(|&j| jobs[j].tables.iter().any(|(t, _)| keys.contains(t)))
                .collect();
            let weight = tree_leaves
                .iter()
                .map(|t| sizes.get(t).copied().unwrap_or(0))
                .sum();
            jobs.push(Job {
                kind: Kind::Analyze,
                label: format!("ANALYZE {}", root.name),
                sql: vec![format!("ANALYZE {}", root.name)],
                tables: keys.into_iter().map(|t| (t, Lock::Exclusive)).collect(),
                after,
                maintenance: false,
                weight,
            });
        }
        // Tables the steps created (not the migrations'): analysed too, as the plain
        // path's database-wide VACUUM ANALYZE does.
        let known: Vec<u32> = snapshot.tables.iter().map(|t| t.oid).collect();
        let others: Vec<String> = client
            .query(
                "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p' AND NOT c.relispartition \
                   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' \
                   AND c.oid <> ALL($1) AND c.relname <> $2",
                &[&known, &crate::migrate::HISTORY_TABLE],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for name in others {
            jobs.push(Job {
                kind: Kind::VacuumAnalyze,
                label: format!("VACUUM ANALYZE {name}"),
                sql: vec![format!("VACUUM ANALYZE {name}")],
                tables: Vec::new(),
                after: Vec::new(),
                maintenance: false,
                weight: 0,
            });
        }
        let pool = Pool {
            config: self.config(),
            connections: self.connections(),
            cores: cores(),
            setup: self.session_setup(client)?,
        };
        let mut timings = jobs::run(&pool, &jobs)?;
        let started = std::time::Instant::now();
        if revacuum(client, &vacuumed)? {
            timings.push((Kind::Vacuum, String::new(), started.elapsed().as_secs_f64()));
        }
        let mut sums: Vec<Timing> = Vec::new();
        for (kind, _, seconds) in timings {
            let kind = kind.describe();
            match sums.iter_mut().find(|t| t.label == kind) {
                Some(t) => t.seconds += seconds,
                None => sums.push(Timing {
                    label: kind.to_string(),
                    seconds,
                }),
            }
        }
        Ok(sums)
    }

    /// Settings of the maintenance connections: no timeouts; on the embedded cluster,
    /// `maintenance_work_mem` raised to share an eighth of the machine's memory (on
    /// another server its own setting is kept: pgx does not know its memory).
    pub fn session_setup(&self, client: &mut Client) -> Result<Vec<String>> {
        let mut setup = vec![
            "SET statement_timeout = 0; SET lock_timeout = 0; SET application_name = 'pgx dataset'"
                .to_string(),
        ];
        if self.target.is_embedded() {
            let current: i64 = client
                .query_one(
                    "SELECT setting::bigint * 1024 FROM pg_settings WHERE name = 'maintenance_work_mem'",
                    &[],
                )?
                .get(0);
            let share = memory_bytes() / 8 / self.connections() as u64;
            let bytes = (share.min(4 << 30) as i64).max(current);
            // work_mem stays as it is: a large one makes the foreign keys' validation pick
            // a serial hash join over a parallel one (1.9 s against 1.1 s for the
            // 5M references at scale 0.25).
            setup.push(format!("SET maintenance_work_mem = '{}MB'", bytes >> 20));
        }
        Ok(setup)
    }
}

/// VACUUM again, after a flush, the vacuumed tables whose visibility map is not fully
/// set (`relallvisible < relpages`, which VACUUM just updated): a commit of *another*
/// session whose transaction id shares the rows' clog group (32 ids, any database of the
/// server) can leave their hint bits unsettable until its own WAL is flushed, and then
/// VACUUM leaves those pages unmarked and Index Only Scans visit the heap. At most three
/// tries; true when any was needed.
fn revacuum(client: &mut Client, tables: &[u32]) -> Result<bool> {
    let mut retried = false;
    for _ in 0..3 {
        let pending: Vec<String> = client
            .query(
                "SELECT c.oid::regclass::text FROM pg_class c \
                 WHERE c.oid = ANY($1) AND c.relpages > 0 AND c.relallvisible < c.relpages",
                &[&tables],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if pending.is_empty() {
            break;
        }
        retried = true;
        std::thread::sleep(std::time::Duration::from_millis(250));
        flush_commits(client)?;
        for table in &pending {
            let sql = format!("VACUUM (FREEZE) {table}");
            client
                .batch_execute(&sql)
                .map_err(|e| server_error(&e, "bulk load: VACUUM again", Some(&sql)))?;
        }
    }
    Ok(retried)
}

/// Make every commit so far durable before VACUUM. With `synchronous_commit = off` (the
/// embedded cluster's setting) a commit's WAL is flushed up to 200 ms later, and until it
/// is, PostgreSQL sets no hint bits for its rows and VACUUM marks no page of them
/// all-visible: an Index Only Scan on a base vacuumed right after its last step would
/// still visit the heap. One synchronous commit flushes the WAL of all the others, but
/// only a commit that wrote WAL itself flushes (a bare `SELECT txid_current()` does not):
/// hence a schema created and dropped in one transaction, which any owner of the
/// database may do.
/// (Each VACUUM job runs it again just before its VACUUM, on its own connection: the
/// schema is named after the backend so that two connections never collide.)
const FLUSH_COMMITS: [&str; 5] = [
    "SET synchronous_commit = on",
    "BEGIN",
    "DO $flush$ BEGIN \
       EXECUTE format('CREATE SCHEMA %I', 'pgx_flush_' || pg_backend_pid()); \
       EXECUTE format('DROP SCHEMA %I', 'pgx_flush_' || pg_backend_pid()); \
     END $flush$",
    "COMMIT",
    "RESET synchronous_commit",
];

fn flush_commits(client: &mut Client) -> Result<()> {
    for sql in FLUSH_COMMITS {
        client.batch_execute(sql).map_err(|e| {
            let _ = client.batch_execute("ROLLBACK");
            server_error(&e, "flushing the load's commits", None)
        })?;
    }
    Ok(())
}

fn split_pair(both: &str) -> (String, String) {
    match both.split_once('\u{0}') {
        Some((a, b)) => (a.to_string(), b.to_string()),
        None => (both.to_string(), String::new()),
    }
}

/// Does `sql` (a query) read any of `relations` (schema, name)? Read from its plan.
fn reads_any(client: &mut Client, sql: &str, relations: &[(String, String)]) -> Result<bool> {
    let plan: serde_json::Value = {
        let row = client.query_one(&format!("EXPLAIN (COSTS OFF, FORMAT JSON) {sql}"), &[])?;
        let text: crate::db::RawText = row.get(0);
        serde_json::from_str(&text.0).unwrap_or(serde_json::Value::Null)
    };
    fn walk(v: &serde_json::Value, relations: &[(String, String)]) -> bool {
        match v {
            serde_json::Value::Object(map) => {
                let hit = match (map.get("Schema"), map.get("Relation Name")) {
                    (Some(serde_json::Value::String(s)), Some(serde_json::Value::String(r))) => {
                        relations.iter().any(|(ns, name)| ns == s && name == r)
                    }
                    _ => false,
                };
                hit || map.values().any(|v| walk(v, relations))
            }
            serde_json::Value::Array(items) => items.iter().any(|v| walk(v, relations)),
            _ => false,
        }
    }
    Ok(walk(&plan, relations))
}

/// Can the step run inside `BEGIN ... COMMIT`? No when it holds (or may hold, even in a
/// DO block) anything PostgreSQL refuses in a transaction block, or transaction control.
pub(crate) fn transaction_safe(sql: &str) -> bool {
    let upper = sql.to_ascii_uppercase();
    let words: Vec<&str> = upper
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    let refused = [
        "COMMIT",
        "ROLLBACK",
        "VACUUM",
        "CONCURRENTLY",
        "DATABASE",
        "TABLESPACE",
        "CHECKPOINT",
        "CALL",
    ];
    if words.iter().any(|w| refused.contains(w)) {
        return false;
    }
    if words.windows(2).any(|w| w == ["ALTER", "SYSTEM"]) {
        return false;
    }
    crate::sqlsplit::split(sql).iter().all(|statement| {
        let first = statement
            .sql
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        !matches!(
            first.as_str(),
            "BEGIN" | "START" | "END" | "ABORT" | "REINDEX" | "DISCARD"
        )
    })
}

/// `1 index`, `3 indexes`.
fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn memory_bytes() -> u64 {
    crate::host::memory_bytes().unwrap_or(4 << 30)
}

/// The server ran out of disk space: say so, where (the embedded cluster in use, by its
/// `--data-dir`), and what to do.
pub fn with_disk_full_hint(e: &postgres::Error, err: anyhow::Error) -> anyhow::Error {
    if e.code() == Some(&SqlState::DISK_FULL) {
        let hint = match crate::cluster::in_use().first() {
            Some(cluster) => format!(
                "free disk space on the file system of {} (the embedded cluster's data directory, --data-dir / PGX_DATA_DIR), \
                 drop bases you no longer need (`pgx gc --bases`; `pgx cluster destroy` deletes them all), or build a smaller dataset with --scale",
                cluster.root.display()
            ),
            None => "free disk space on the server, where its data_directory is (SHOW data_directory), \
                     drop bases you no longer need (`pgx gc --bases`), or build a smaller dataset with --scale"
                .to_string(),
        };
        return fail(
            format!("the server ran out of disk space while building the dataset:\n  {err:#}"),
            hint,
        );
    }
    err
}

/// A server error during the load, with its statement's position when it has one.
pub fn server_error(e: &postgres::Error, what: &str, sql: Option<&str>) -> anyhow::Error {
    if crate::interrupt::is_interrupted() {
        return anyhow::Error::new(Interrupted);
    }
    with_disk_full_hint(
        e,
        anyhow::anyhow!("{what}: {}", crate::error::describe_pg_error(e, sql)),
    )
}

/// Describe a generator's error with its position placed in the step's own SQL.
pub fn describe_mapped(e: &postgres::Error, step_sql: &str, map: &parallel::PositionMap) -> String {
    crate::error::describe_at(e, |pos| map.to_step(pos).map(|at| (step_sql, at)))
}
