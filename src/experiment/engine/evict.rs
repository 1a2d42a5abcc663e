//! Making a cell cold: nothing of its database in shared buffers, nor in the operating
//! system's page cache. PostgreSQL 15 cannot evict shared buffers short of a restart
//! (`pg_buffercache_evict` is PG 17), which pgx does only on its own embedded server;
//! the page cache is dropped per file with `posix_fadvise(POSIX_FADV_DONTNEED)` where the
//! data directory is on this machine. What could not be done is said, per cell.

use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::Result;
use postgres::Client;

use crate::target::Target;

/// What one eviction achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evicted {
    /// Shared buffers emptied (the embedded server restarted).
    pub shared_buffers: bool,
    /// Files whose page cache was dropped; None when the files are out of reach.
    pub files: Option<usize>,
}

impl Evicted {
    /// For the report: None when the cell was fully cold, else what was not possible.
    pub fn shortfall(&self) -> Option<String> {
        let mut missing = Vec::new();
        if !self.shared_buffers {
            missing.push(
                "shared buffers were not evicted (PostgreSQL 15 empties them only by a restart, which pgx does only on its embedded server)",
            );
        }
        if self.files.is_none() {
            missing.push(
                "the OS page cache was not dropped (the data directory is not readable from here)",
            );
        }
        (!missing.is_empty()).then(|| missing.join("; "))
    }
}

/// Where the databases' files are: the embedded cluster's data directory, or the one
/// the server reports when it is readable here.
pub fn data_directory(target: &Target, admin: &mut Client) -> Option<PathBuf> {
    if let Some(cluster) = target.cluster() {
        return Some(cluster.data_dir());
    }
    let dir: Option<String> = admin
        .query_one("SELECT current_setting('data_directory', true)", &[])
        .ok()?
        .get(0);
    dir.map(PathBuf::from).filter(|d| d.join("base").is_dir())
}

/// Empty shared buffers (a restart, embedded only) and drop the page cache of every file
/// of `databases`. The caller must reconnect afterwards when `shared_buffers` is true:
/// every connection was cut.
pub fn evict(target: &Target, admin: &mut Client, databases: &[String]) -> Result<Evicted> {
    let dir = data_directory(target, admin);
    let mut oids = Vec::new();
    for name in databases {
        let oid: Option<u32> = admin
            .query_opt("SELECT oid FROM pg_database WHERE datname = $1", &[name])?
            .map(|r| r.get(0));
        oids.extend(oid);
    }
    let shared_buffers = match target.cluster() {
        Some(cluster) => {
            cluster.restart()?;
            true
        }
        None => false,
    };
    let files = dir.map(|dir| {
        oids.iter()
            .map(|oid| drop_page_cache(&dir.join("base").join(oid.to_string())))
            .sum()
    });
    Ok(Evicted {
        shared_buffers,
        files,
    })
}

/// posix_fadvise(DONTNEED) on every file of one database directory; the count done.
fn drop_page_cache(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut done = 0;
    for entry in entries.flatten() {
        let Ok(file) = std::fs::File::open(entry.path()) else {
            continue;
        };
        // SAFETY: a valid open descriptor; offset 0 and length 0 mean the whole file.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if rc == 0 {
            done += 1;
        }
    }
    done
}
