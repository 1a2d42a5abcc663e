//! Databases pgx left behind: copies whose run died without cleaning up (kill -9, a
//! lost machine), bases whose build died half-way, and cached bases no run needs now.
//! Only databases pgx created (marked by their comment) are ever listed or dropped.

use anyhow::Result;
use postgres::Client;

use super::databases::{
    self, BASE_BUILDING, BASE_COMPLETE, COPY_MARK, base_unused, build_lock_free, copy_owned,
};
use super::variants;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A variant's copy a run measures on.
    Copy,
    /// A cached base or built variant, not complete yet.
    Building,
    /// A cached dataset base.
    Base,
    /// A cached built variant.
    Variant,
}

/// The comment prefix of each kind of database pgx creates.
const MARKS: [(&str, Kind); 5] = [
    (COPY_MARK, Kind::Copy),
    (BASE_BUILDING, Kind::Building),
    (BASE_COMPLETE, Kind::Base),
    (variants::BUILDING, Kind::Building),
    (variants::COMPLETE, Kind::Variant),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// A running pgx holds it.
    InUse,
    /// Nobody holds it and nobody will: its owner or builder is gone.
    Orphan,
    /// A cached base no run is using now (kept: the next run reuses it).
    Cached,
}

#[derive(Debug, Clone)]
pub struct Found {
    pub name: String,
    pub kind: Kind,
    pub state: State,
    pub bytes: i64,
}

/// Every database pgx created on this server, with what holds it (`bases`: also the
/// complete ones, which only `pgx gc` lists).
pub fn survey(admin: &mut Client, bases: bool) -> Result<Vec<Found>> {
    let rows = admin.query(
        "SELECT datname::text, coalesce(shobj_description(oid, 'pg_database'), ''), \
                pg_database_size(oid) FROM pg_database WHERE datallowconn ORDER BY 1",
        &[],
    )?;
    let mut found = Vec::new();
    for row in rows {
        // A database dropped meanwhile has no size: skip it.
        let (Ok(name), Ok(comment), Ok(Some(bytes))) = (
            row.try_get::<_, String>(0),
            row.try_get::<_, String>(1),
            row.try_get::<_, Option<i64>>(2),
        ) else {
            continue;
        };
        let Some(kind) = MARKS
            .iter()
            .find_map(|(mark, kind)| comment.starts_with(mark).then_some(*kind))
        else {
            continue;
        };
        if matches!(kind, Kind::Base | Kind::Variant) && !bases {
            continue;
        }
        let state = match kind {
            Kind::Copy => {
                if copy_owned(admin, &name)? {
                    State::InUse
                } else {
                    State::Orphan
                }
            }
            Kind::Building => {
                if build_lock_free(admin, &name)? {
                    State::Orphan
                } else {
                    State::InUse
                }
            }
            Kind::Base | Kind::Variant => {
                if base_unused(admin, &name)? {
                    State::Cached
                } else {
                    State::InUse
                }
            }
        };
        found.push(Found {
            name,
            kind,
            state,
            bytes,
        });
    }
    Ok(found)
}

/// Drop what `survey` found orphaned (and, with `bases`, the cached bases no run uses).
/// Returns what was dropped.
pub fn collect(admin: &mut Client, bases: bool) -> Result<Vec<Found>> {
    let mut dropped = Vec::new();
    for found in survey(admin, bases)? {
        let drop = match found.state {
            State::Orphan => true,
            State::Cached => bases,
            State::InUse => false,
        };
        if drop {
            databases::drop_owned_database(admin, &found.name)?;
            dropped.push(found);
        }
    }
    Ok(dropped)
}

/// Before a run: drop copies and half-built bases whose pgx is gone. Cached bases stay.
pub fn drop_orphans(admin: &mut Client) -> Result<Vec<String>> {
    Ok(collect(admin, false)?.into_iter().map(|f| f.name).collect())
}
