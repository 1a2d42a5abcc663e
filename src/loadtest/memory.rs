//! Memory of the load's backends: each server process's private memory (`RssAnon` of
//! `/proc/<pid>/status`: what its palloc contexts, sorts, hash tables and caches hold, not
//! the shared buffers it touched), sampled while a run lasts by the session sampler
//! (`locks::run`), when the server runs on this machine.

use std::time::Instant;

use postgres::Client;

use super::result::BackendMemory;

/// Every session of the database with the client it serves: a parallel worker counts for
/// its leader's client.
pub const SESSIONS: &str = "\
SELECT a.pid, coalesce(l.application_name, a.application_name, '') \
FROM pg_stat_activity a LEFT JOIN pg_stat_activity l ON l.pid = a.leader_pid \
WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()";

/// The backends' private memory at one moment: (pid, application_name, kB).
#[derive(Debug, Clone)]
pub struct MemorySample {
    pub at: Instant,
    pub backends: Vec<(i32, String, u64)>,
}

/// Whether this machine can read the server's processes: PostgreSQL's backends run in its
/// data directory, so the sampler's own backend's working directory must be the server's
/// `data_directory` (a server elsewhere, or one pgx may not read, is not measured). Err
/// says why not.
pub fn local(client: &mut Client) -> Result<(), String> {
    let row = client
        .query_one(
            "SELECT pg_backend_pid(), current_setting('data_directory', true)",
            &[],
        )
        .map_err(|e| format!("cannot read data_directory: {e}"))?;
    let pid: i32 = row.get(0);
    let Some(data_directory) = row.get::<_, Option<String>>(1) else {
        return Err("the server does not show its data_directory to this role".into());
    };
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))
        .map_err(|_| "the server's processes are not on this machine".to_string())?;
    let same = std::fs::canonicalize(&data_directory).is_ok_and(|d| d == cwd);
    if same {
        Ok(())
    } else {
        Err("the server's processes are not on this machine".into())
    }
}

/// A process's private resident memory in kB (`RssAnon`); None when it is gone.
pub fn private_kb(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("RssAnon:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// One sample: every session of the database and its private memory now.
pub fn sample(
    client: &mut Client,
    statement: &postgres::Statement,
) -> Result<MemorySample, String> {
    let at = Instant::now();
    let rows = client
        .query(statement, &[])
        .map_err(|e| crate::error::describe_pg_error(&e, None))?;
    let backends = rows
        .iter()
        .filter_map(|row| {
            let pid: i32 = row.get(0);
            private_kb(pid).map(|kb| (pid, row.get::<_, String>(1), kb))
        })
        .collect();
    Ok(MemorySample { at, backends })
}

/// The memory of the sessions named `application` in the samples taken inside `window`:
/// None when no sample saw one.
pub fn summarize(
    samples: &[MemorySample],
    window: &(Instant, Instant),
    application: &str,
    every_ms: f64,
) -> Option<BackendMemory> {
    let mut peaks: Vec<(i32, u64)> = Vec::new();
    let mut total_kb = 0u64;
    let mut seen = 0u64;
    for sample in samples
        .iter()
        .filter(|s| s.at >= window.0 && s.at <= window.1)
    {
        let mut together = 0u64;
        for (pid, _, kb) in sample.backends.iter().filter(|b| b.1 == application) {
            together += kb;
            match peaks.iter_mut().find(|(p, _)| p == pid) {
                Some((_, peak)) => *peak = (*peak).max(*kb),
                None => peaks.push((*pid, *kb)),
            }
        }
        total_kb = total_kb.max(together);
        seen += 1;
    }
    if peaks.is_empty() {
        return None;
    }
    let mut each: Vec<u64> = peaks.iter().map(|(_, kb)| *kb).collect();
    each.sort_unstable();
    Some(BackendMemory {
        every_ms,
        samples: seen,
        backends: each.len() as u64,
        median_kb: each[each.len() / 2],
        max_kb: each[each.len() - 1],
        total_kb,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn each_backend_counts_by_its_peak_and_the_group_by_its_fullest_moment() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let s = |ms, b: Vec<(i32, &str, u64)>| MemorySample {
            at: at(ms),
            backends: b
                .into_iter()
                .map(|(p, a, k)| (p, a.to_string(), k))
                .collect(),
        };
        let samples = vec![
            s(0, vec![(1, "pgx load: r", 99_000)]), // before the window
            s(
                100,
                vec![
                    (1, "pgx load: r", 10_000),
                    (2, "pgx load: r", 20_000),
                    (3, "x", 1),
                ],
            ),
            s(
                200,
                vec![(1, "pgx load: r", 30_000), (2, "pgx load: r", 5_000)],
            ),
            s(300, vec![(2, "pgx load: r", 6_000)]),
        ];
        let m = summarize(&samples, &(at(50), at(350)), "pgx load: r", 100.0).unwrap();
        assert_eq!((m.backends, m.samples), (2, 3));
        assert_eq!((m.median_kb, m.max_kb), (30_000, 30_000));
        assert_eq!(m.total_kb, 35_000);
        assert!(summarize(&samples, &(at(50), at(350)), "other", 100.0).is_none());
    }

    #[test]
    fn this_process_private_memory_is_read() {
        let kb = private_kb(std::process::id() as i32).unwrap();
        assert!(kb > 0);
        assert!(private_kb(-1).is_none());
    }
}
