//! Where every variant's cells run, and the databases behind them: copy only what
//! changes.
//!
//! - The **shared group** — the baseline, every candidate that only adds indexes or
//!   statistics (or nothing), and the A/A control when every candidate is in the group —
//!   runs on one database: the base with every member's objects (the *shared copy*, a
//!   cache entry), each cell hiding what its variant lacks (`crate::experiment::sharing`).
//! - A candidate that rewrites a table runs on its own build (its cache entry).
//! - When candidates of their own exist, the A/A control runs on another physical copy
//!   of the base, so its difference from the baseline includes what separate copies add
//!   (byte-identical copies differed by 6.8% here): the floor those candidates need.
//! - A baseline whose own statements rewrite a table shares nothing: every variant runs
//!   on a build of its own, the control on a second build of the baseline's statements.
//!
//! Every database measured on is a throw-away copy, so the cache and the base stay as
//! built, and other pgx runs can copy them meanwhile. When those copies do not fit the
//! disk and no cell writes (no rolled-back DML, no load, workload or maintenance), each
//! database is measured as it is — the base, a cache entry — with no copy at all (a
//! concurrent run that must copy one of them then waits). Before anything is created,
//! the run adds up the disk it needs and refuses (or splits the candidates of their own
//! into stages) when it does not fit.

use std::collections::HashMap;

use anyhow::Result;
use postgres::Client;

use super::build::{self, Object, Partitions};
use crate::error::fail;
use crate::experiment::databases::{self, Copy, LockSession, Peak};
use crate::experiment::matrix::{Role, VariantId};
use crate::experiment::plan::Plan;
use crate::experiment::result::{RelationSize, Timing};
use crate::experiment::sharing::Sharing;
use crate::experiment::variants;
use crate::target::{Target, connect};

/// Which database a variant's cells run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// The shared copy (or the base, when no member adds anything).
    Shared,
    /// A build of its own.
    Own,
    /// The A/A control beside candidates of their own: another copy of the base.
    Apart,
    /// The baseline, or its control, building statements that rewrite a table: a build
    /// of its own, kept for the whole run.
    Alone,
}

/// The group of every variant of the plan (same positions).
pub fn arrange(plan: &Plan) -> Vec<Group> {
    // A load, workload or maintenance changes each variant's database for good: the
    // control never shares one then.
    let own_candidates = plan
        .variants
        .iter()
        .zip(&plan.builds)
        .any(|(v, b)| v.role == Role::Candidate && matches!(b, Sharing::Own(_)))
        || plan.load.is_some()
        || plan.workload.is_some()
        || plan.maintenance;
    let baseline_rewrites = matches!(plan.builds.first(), Some(Sharing::Own(_)));
    plan.variants
        .iter()
        .zip(&plan.builds)
        .map(|(v, b)| match (v.role, b) {
            (Role::Baseline | Role::Control, _) if baseline_rewrites => Group::Alone,
            (Role::Candidate, _) if baseline_rewrites => Group::Own,
            (Role::Control, _) if own_candidates => Group::Apart,
            (Role::Candidate, Sharing::Own(_)) => Group::Own,
            _ => Group::Shared,
        })
        .collect()
}

/// Where one variant's cells run.
#[derive(Clone)]
pub struct Place {
    pub database: String,
    pub config: postgres::Config,
    /// Run first in every measuring transaction: drops what this variant lacks on the
    /// shared copy (empty elsewhere).
    pub hide: String,
    /// The variant's tables and indexes, as its cells see them.
    pub relations: Vec<RelationSize>,
    pub partitions: Partitions,
    pub statements: Vec<Timing>,
    /// Its statements ran in an earlier run (the variant cache); their times are from then.
    pub cached: bool,
}

/// A database measured on, held for as long as variants run on it.
pub enum Held {
    /// A throw-away copy: dropped with this value.
    Copy(Box<Copy>),
    /// Measured as it is (a cache entry, the base): the lock session that keeps it in use.
    Direct(Option<Box<LockSession>>),
}

/// Every database a run measures on, and what runs where.
#[derive(Default)]
pub struct Databases {
    held: HashMap<String, Held>,
    places: HashMap<VariantId, Place>,
}

impl Databases {
    pub fn place(&self, v: VariantId) -> Option<&Place> {
        self.places.get(&v)
    }

    pub fn has(&self, v: VariantId) -> bool {
        self.places.contains_key(&v)
    }

    /// The variant is done (or failed): its database goes when no variant runs on it.
    pub fn release(&mut self, v: VariantId) {
        if let Some(place) = self.places.remove(&v)
            && !self.places.values().any(|p| p.database == place.database)
        {
            self.held.remove(&place.database);
        }
    }

    /// Drop everything (the copies are dropped by their guards).
    pub fn clear(&mut self) {
        self.places.clear();
        self.held.clear();
    }

    /// The server restarted: take back each copy's owner lock and each entry's in-use
    /// lock.
    pub fn reown(&mut self, target: &Target) -> Result<()> {
        for (name, held) in &mut self.held {
            match held {
                Held::Copy(copy) => copy.reown(target)?,
                Held::Direct(locks) => {
                    if locks.is_some() {
                        let mut fresh = LockSession::open(target)?;
                        fresh.lock_shared(&databases::in_use_lock(name))?;
                        *locks = Some(Box::new(fresh));
                    }
                }
            }
        }
        Ok(())
    }
}

/// What the disk must hold, in bytes, and for what.
#[derive(Debug, Clone, Default)]
pub struct Need {
    /// The shared group and the control, for the whole run.
    pub kept: u64,
    /// Each candidate of its own (its cache entry, and its copy when cells write).
    pub own: Vec<(VariantId, u64)>,
    /// What each part is, for the message.
    pub parts: Vec<(String, u64)>,
}

/// A database's size in bytes (0 when it does not exist).
pub(super) fn size_of(admin: &mut Client, name: &str) -> Result<u64> {
    let size: Option<i64> = admin
        .query_opt(
            "SELECT pg_database_size(oid) FROM pg_database WHERE datname = $1",
            &[&name],
        )?
        .map(|row| row.get(0));
    Ok(u64::try_from(size.unwrap_or(0)).unwrap_or(0))
}

/// The disk the run needs, measuring on copies or (`copy` false) in place: a build not
/// yet cached at its peak (`databases::Peak`: the shared copy at the base's size and a
/// half, a build of its own at twice it), a cached one at its size; copies as big as
/// what they copy (a build not yet cached: the base's size and a half).
pub fn need(
    admin: &mut Client,
    plan: &Plan,
    groups: &[Group],
    base: &str,
    shared_entry: Option<&str>,
    copy: bool,
) -> Result<Need> {
    let base_bytes = size_of(admin, base)?;
    // A copy is as big as what it copies; a build not cached yet, at its final size: the
    // base and its new objects.
    let estimate = |cached: u64| {
        if cached > 0 {
            cached
        } else {
            Peak::AddsObjects.of(base_bytes)
        }
    };
    let writes = copy;
    let mut need = Need::default();
    if let Some(entry) = shared_entry {
        let cached = size_of(admin, entry)?;
        let bytes = if cached > 0 {
            0
        } else {
            Peak::AddsObjects.of(base_bytes)
        };
        let copy = if writes { estimate(cached) } else { 0 };
        need.parts.push(("the shared copy".into(), bytes + copy));
        need.kept += bytes + copy;
    } else if writes {
        need.parts.push(("the baseline's copy".into(), base_bytes));
        need.kept += base_bytes;
    }
    if groups.contains(&Group::Apart) && (writes || shared_entry.is_none()) {
        need.parts
            .push(("the A/A control's copy".into(), base_bytes));
        need.kept += base_bytes;
    }
    for (i, (variant, group)) in plan.variants.iter().zip(groups).enumerate() {
        if !matches!(group, Group::Own | Group::Alone) {
            continue;
        }
        let entry = variants::entry_name(base, variant);
        let cached = size_of(admin, &entry)?;
        let bytes = if cached > 0 && !plan.rebuild {
            0
        } else {
            Peak::Rewrites.of(base_bytes)
        };
        let copy = if writes { estimate(cached) } else { 0 };
        need.parts
            .push((format!("variant {}", variant.name), bytes + copy));
        if *group == Group::Alone {
            need.kept += bytes + copy;
        } else {
            need.own.push((VariantId(i), bytes + copy));
        }
    }
    Ok(need)
}

/// The candidates of their own measured together: all of them when they fit the free
/// disk (a tenth of it kept spare) beside what the whole run keeps, else as many per
/// stage as fit; an error, before anything is created, when not even one does.
pub fn stages(need: &Need, free: Option<u64>) -> Result<Vec<Vec<VariantId>>> {
    let all: Vec<VariantId> = need.own.iter().map(|(v, _)| *v).collect();
    let Some(free) = free else {
        return Ok(vec![all]);
    };
    let usable = free - free / 10;
    let total: u64 = need.kept + need.own.iter().map(|(_, b)| *b).sum::<u64>();
    if total <= usable {
        return Ok(vec![all]);
    }
    let largest = need.own.iter().map(|(_, b)| *b).max().unwrap_or(0);
    if need.kept.saturating_add(largest) > usable {
        let parts: Vec<String> = need
            .parts
            .iter()
            .filter(|(_, b)| *b > 0)
            .map(|(what, b)| format!("{what} {}", gib(*b)))
            .collect();
        return Err(fail(
            format!(
                "not enough free disk for this run: it needs {} ({}{}), and {} are free (a tenth kept spare)",
                gib(need.kept.saturating_add(largest)),
                parts.join(", "),
                if need.own.len() > 1 {
                    "; candidates of their own one at a time"
                } else {
                    ""
                },
                gib(free)
            ),
            "free disk space (`pgx gc --bases` drops cached datasets no run uses), run at a smaller --scale, or fewer variants with --only",
        ));
    }
    let mut stages: Vec<Vec<VariantId>> = Vec::new();
    let mut room = 0u64;
    for (v, bytes) in &need.own {
        match stages.last_mut() {
            Some(stage) if *bytes <= room => {
                stage.push(*v);
                room -= bytes;
            }
            _ => {
                stages.push(vec![*v]);
                room = usable - need.kept - bytes;
            }
        }
    }
    Ok(stages)
}

impl Need {
    pub fn total(&self) -> u64 {
        self.kept + self.own.iter().map(|(_, b)| *b).sum::<u64>()
    }
}

pub fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// A member of the shared group that adds objects: what it runs on the shared copy.
pub struct Creates {
    pub variant: VariantId,
    pub name: String,
    /// Its statements, each with its line in the variant's SQL.
    pub statements: Vec<(usize, String)>,
}

/// The statements each member of the shared group runs on the shared copy.
pub fn shared_creates(plan: &Plan, groups: &[Group]) -> Vec<Creates> {
    plan.variants
        .iter()
        .zip(&plan.builds)
        .zip(groups)
        .enumerate()
        .filter_map(|(i, ((v, b), g))| match (g, b) {
            // The control on the shared copy is the baseline's twin: it has the
            // baseline's objects, built once.
            (Group::Shared, Sharing::Shared { creates, .. })
                if !creates.is_empty() && v.role != Role::Control =>
            {
                Some(Creates {
                    variant: VariantId(i),
                    name: v.name.clone(),
                    statements: creates.clone(),
                })
            }
            _ => None,
        })
        .collect()
}

/// The name the shared copy's cache entry gets (None when no member adds anything).
pub fn shared_entry_name(base: &str, creates: &[Creates]) -> Option<String> {
    (!creates.is_empty()).then(|| {
        let key: String = creates
            .iter()
            .map(|c| {
                let statements: Vec<&str> = c.statements.iter().map(|(_, s)| s.as_str()).collect();
                format!("{}\0{}", c.name, statements.join("\0"))
            })
            .collect::<Vec<_>>()
            .join("\0\0");
        variants::name_of(base, &format!("shared\0{key}"))
    })
}

/// What opening a database for measuring needs.
pub struct Opening<'a> {
    pub target: &'a Target,
    pub admin: &'a mut Client,
    pub experiment: &'a str,
    /// Copy it (some cell writes) or measure it as it is.
    pub copy: bool,
}

/// `template` opened for measuring: a copy of it (named after `tag`), or (`copy`
/// false) the database itself. The name measured on, and what holds it.
pub fn open(
    how: &mut Opening,
    template: &str,
    tag: &str,
    locks: Option<LockSession>,
) -> Result<(String, Held)> {
    if how.copy {
        let copy = Copy::create(how.target, how.admin, template, how.experiment, tag)?;
        // The template's in-use lock is needed only while copying; the copy is ours.
        drop(locks);
        Ok((copy.name.clone(), Held::Copy(Box::new(copy))))
    } else {
        Ok((template.to_string(), Held::Direct(locks.map(Box::new))))
    }
}

impl Databases {
    /// Keep `database` (and what holds it) for as long as variants run on it.
    pub fn hold(&mut self, database: &str, held: Held) {
        self.held.insert(database.to_string(), held);
    }

    /// Put variant `v` on `database`, behind `hide`: checked once (every hidden object
    /// exists and may be dropped), with the relations its cells see.
    #[allow(clippy::too_many_arguments)]
    pub fn settle(
        &mut self,
        target: &Target,
        v: VariantId,
        database: &str,
        hide: String,
        statements: Vec<Timing>,
        cached: bool,
    ) -> Result<()> {
        let config = target.config_for(database);
        let mut client = connect(&config)?;
        let mut tx = client.transaction()?;
        tx.batch_execute(&hide).map_err(|e| {
            let message = format!(
                "on the shared copy, hiding what the variant lacks failed: {}",
                crate::error::describe_pg_error(&e, Some(&hide))
            );
            crate::error::described(message, e)
        })?;
        let relations = build::relation_sizes(&mut tx)?;
        let partitions = Partitions::read(&mut tx)?;
        drop(tx);
        self.places.insert(
            v,
            Place {
                database: database.to_string(),
                config,
                hide,
                relations,
                partitions,
                statements,
                cached,
            },
        );
        Ok(())
    }
}

/// The SQL that hides, on the shared copy, what variant `name` lacks: every other
/// member's objects, and the indexes it drops itself.
pub fn hide_sql(members: &[build::Member], name: &str, own_drops: &[String]) -> String {
    let others: Vec<Object> = members
        .iter()
        .filter(|m| m.variant != name)
        .flat_map(|m| m.objects.iter().cloned())
        .collect();
    let mut sql = build::drop_sql(&others);
    if !own_drops.is_empty() {
        sql.push_str(&format!("DROP INDEX {};", own_drops.join(", ")));
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(kept: u64, own: &[u64]) -> Need {
        Need {
            kept,
            own: own
                .iter()
                .enumerate()
                .map(|(i, b)| (VariantId(i + 1), *b))
                .collect(),
            parts: vec![("the shared copy".into(), kept)],
        }
    }

    #[test]
    fn a_build_is_planned_at_its_peak_not_its_final_size() {
        // Seed 003's partitioned junction filled the disk after taking 34 GB for a build
        // of its 16 GB base, planned at 24: the old and the new rows, and their WAL.
        let base = 16u64 << 30;
        assert_eq!(Peak::Rewrites.of(base), 32 << 30);
        assert_eq!(Peak::AddsObjects.of(base), 24 << 30);
        assert_eq!(Peak::Copy.of(base), base);
    }

    #[test]
    fn stages_fit_the_disk_and_refuse_before_creating_anything() {
        let gib = 1u64 << 30;
        let all = vec![vec![VariantId(1), VariantId(2), VariantId(3)]];
        assert_eq!(stages(&need(4 * gib, &[2 * gib; 3]), None).unwrap(), all);
        assert_eq!(
            stages(&need(4 * gib, &[2 * gib; 3]), Some(100 * gib)).unwrap(),
            all
        );
        // 10 GiB free, 9 usable: 4 kept, then 2 + 2 fit beside it, the third alone.
        assert_eq!(
            stages(&need(4 * gib, &[2 * gib; 3]), Some(10 * gib)).unwrap(),
            vec![vec![VariantId(1), VariantId(2)], vec![VariantId(3)]]
        );
        let err = stages(&need(8 * gib, &[2 * gib; 3]), Some(10 * gib))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not enough free disk"), "{err}");
        assert!(err.contains("needs 10.0 GiB"), "{err}");
        assert!(err.contains("10.0 GiB are free"), "{err}");
        assert!(err.contains("the shared copy 8.0 GiB"), "{err}");
    }

    #[test]
    fn a_member_hides_the_others_objects_and_its_own_drops() {
        let member = |name: &str, index: &str| build::Member {
            variant: name.into(),
            objects: vec![Object {
                kind: "index".into(),
                name: index.into(),
            }],
            ..Default::default()
        };
        let members = [member("a", "public.ia"), member("b", "public.ib")];
        assert_eq!(hide_sql(&members, "a", &[]), "DROP INDEX public.ib;");
        assert_eq!(
            hide_sql(&members, "b", &["public.old".into()]),
            "DROP INDEX public.ia;DROP INDEX public.old;"
        );
        assert_eq!(
            hide_sql(&members, "baseline", &[]),
            "DROP INDEX public.ia, public.ib;"
        );
    }
}
