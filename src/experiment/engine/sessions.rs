//! The backends cells run on: one per cell (variant, settings set, query, form and
//! parameter set), so that a backend's history is that cell's statement and nothing
//! else, opened fresh every round. A backend's history changes its speed: on
//! index-strategies, a session that had run one 10,000-block sequential scan answered
//! the 16-partition lookup-by-referenced in 57 µs ever after, one that had not in 28 µs
//! (same database, plan and buffers); and a backend settles into a speed of its own (the
//! heap its allocator grew, the huge pages it got), so one session per cell for the whole
//! run would pair one draw of the baseline's with one of the variant's.

use std::collections::HashMap;

use anyhow::{Result, bail};

use super::measure::Session;
use crate::experiment::matrix::{CellKey, FormId, ParamsId, QueryId, SettingsId, VariantId};
use crate::experiment::settings;

pub type SessionKey = (VariantId, SettingsId, QueryId, FormId, ParamsId);

/// Sessions kept open at once; past it the least recently used is closed (and primed
/// again when next used). Well under PostgreSQL's default `max_connections` of 100.
pub const MAX_SESSIONS: usize = 48;

#[derive(Default)]
pub struct Sessions {
    open: HashMap<SessionKey, Session>,
    /// Counts uses: each session's `last_used` is a reading of it.
    clock: u64,
    /// Server-clock time of the last server-wide reload pgx caused: a session opened
    /// before it waits until its backend has seen it.
    pub last_reload: f64,
}

/// How to open a cell's session when it has none.
pub struct Opening<'a> {
    pub config: &'a postgres::Config,
    /// `SET`s of pgx's defaults and the cell's settings set.
    pub setup: &'a str,
}

impl Sessions {
    pub fn key(cell: &CellKey) -> SessionKey {
        (
            cell.variant,
            cell.settings,
            cell.query,
            cell.form,
            cell.params,
        )
    }

    /// Close every session: the next use of any cell opens a fresh backend.
    pub fn clear(&mut self) {
        self.open.clear();
    }

    /// Close the sessions of one variant (it failed, or its copy goes).
    pub fn close_variant(&mut self, variant: VariantId) {
        self.open.retain(|key, _| key.0 != variant);
    }

    pub fn is_open(&self, cell: &CellKey) -> bool {
        self.open.contains_key(&Self::key(cell))
    }

    /// The cell's session, opened when it has none (`connect` counts the seconds spent
    /// opening it), and caught up with the last server-wide reload.
    pub fn get(
        &mut self,
        cell: &CellKey,
        opening: Opening,
        connect: &mut f64,
    ) -> Result<&mut Session> {
        let id = Self::key(cell);
        self.clock = self.clock.saturating_add(1);
        if !self.open.contains_key(&id) {
            if self.open.len() >= MAX_SESSIONS {
                let oldest = self
                    .open
                    .iter()
                    .min_by_key(|(_, s)| s.last_used)
                    .map(|(k, _)| *k);
                if let Some(oldest) = oldest {
                    self.open.remove(&oldest);
                }
            }
            let started = std::time::Instant::now();
            let session = Session::open(opening.config, opening.setup)?;
            *connect += started.elapsed().as_secs_f64();
            self.open.insert(id, session);
        }
        let last_reload = self.last_reload;
        let Some(session) = self.open.get_mut(&id) else {
            bail!("internal: session vanished");
        };
        session.last_used = self.clock;
        if session.seen_reload < last_reload {
            settings::wait_for_reload(&mut session.client, last_reload)?;
            session.seen_reload = last_reload;
        }
        Ok(session)
    }
}
