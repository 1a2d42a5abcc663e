//! One migration runner per database at a time.
//!
//! A session advisory lock taken by polling `pg_try_advisory_lock`: a waiter blocked in
//! `pg_advisory_lock` would sit in an open transaction that `CREATE INDEX CONCURRENTLY`
//! (run by the lock holder) waits for, and the two would deadlock.

use std::time::Duration;

use anyhow::Result;
use postgres::Client;

/// Arbitrary but fixed: every pgx process must pick the same key.
pub const LOCK_KEY: i64 = 0x7067_785f_6d69_6772; // "pgx_migr"

pub struct MigrationLock;

impl MigrationLock {
    /// Wait until this session holds the lock; tells the user (once, as soon as the lock
    /// is found taken) that it waits, and for which backend.
    pub fn acquire(client: &mut Client) -> Result<MigrationLock> {
        let mut told = false;
        loop {
            let got: bool = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])?
                .get(0);
            if got {
                return Ok(MigrationLock);
            }
            crate::interrupt::check()?;
            if !told {
                let holder = client
                    .query_opt(
                        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
                         AND ((classid::bigint << 32) | objid::bigint) = $1 LIMIT 1",
                        &[&LOCK_KEY],
                    )?
                    .map(|r| r.get::<_, i32>(0));
                crate::note!(
                    "pgx: waiting for another migration runner (backend pid {}) to finish",
                    holder.map_or("?".to_string(), |p| p.to_string())
                );
                told = true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn release(self, client: &mut Client) -> Result<()> {
        client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])?;
        Ok(())
    }
}
