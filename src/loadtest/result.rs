//! What a load run produced: one [`LoadPoint`] per script mix and client count, each
//! summarising its repeated runs. Latencies live in HDR histograms (microseconds, 3
//! significant digits) while measuring; only percentiles are kept.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct LoadResult {
    pub points: Vec<LoadPoint>,
    /// The injected client-side delay per round trip, as configured.
    pub rtt_ms: Option<f64>,
    /// What the injected delay actually lasted on average (timer granularity adds to it).
    #[serde(default)]
    pub rtt_actual_ms: Option<f64>,
    /// "unix socket", "tcp loopback" or "tcp", and how a delay travelled over it.
    pub transport: String,
    /// How `rtt` was applied: "netem", "relay" or "client" (None without rtt).
    #[serde(default)]
    pub rtt_mode: Option<String>,
    /// Why a better delay mode was not used (e.g. no netem in this kernel).
    #[serde(default)]
    pub rtt_note: Option<String>,
    /// Mean round trip of `SELECT 1` measured through the delay before the runs.
    #[serde(default)]
    pub rtt_probe_ms: Option<f64>,
    /// The per-statement timeout (a statement cut off there counts as a timeout).
    #[serde(default)]
    pub timeout_ms: Option<f64>,
    /// The experiment's targets (`load.targets`), for the summary to judge.
    #[serde(default)]
    pub targets: Vec<LoadTarget>,
    /// `load.counters`: their names, and which way is better, for the summary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counters: Vec<CounterInfo>,
    /// How many databases' loads took turns with this one, repeat by repeat (each
    /// variant of an experiment in a rotating order); None: its repeats ran back to back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternated: Option<usize>,
    /// How the runs started (`load.start`, `load.on_start`); None: warm, nothing run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartInfo>,
}

/// A `load.counters` entry as the report needs it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CounterInfo {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub better: Option<Better>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub about: String,
}

/// Which way a counter's rate is better.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
}

/// A number a seed is judged by, e.g. "5.1k TPS at 64 clients" or "p50 37 ms / p99 53 ms
/// for the pipelined 30-table lookup". Every bound given must hold.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoadTarget {
    /// Where the number comes from ("seed 000").
    #[serde(default)]
    pub about: String,
    /// The script (or weighted mix label) it applies to; every one when absent.
    #[serde(default)]
    pub script: Option<String>,
    /// The client count it applies to; every one when absent.
    #[serde(default)]
    pub clients: Option<usize>,
    /// At least this median TPS.
    #[serde(default)]
    pub tps: Option<f64>,
    /// At most this p50 latency.
    #[serde(default)]
    pub p50_ms: Option<f64>,
    /// At most this p99 latency.
    #[serde(default)]
    pub p99_ms: Option<f64>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct LoadPoint {
    /// The script's name (mix: each, or a single script), else the weighted mix, e.g.
    /// "read×9 + write×1".
    pub script_mix: String,
    pub clients: usize,
    pub runs: Vec<RunStats>,
    pub tps_median: f64,
    pub tps_min: f64,
    pub tps_max: f64,
    /// From the merged histogram of all runs.
    pub latency_ms: Percentiles,
    /// Measured (committed inside the window), summed over runs.
    pub transactions: u64,
    pub errors: u64,
    pub timeouts: u64,
    /// The first few distinct error messages.
    pub error_samples: Vec<String>,
    /// Round trips per measured transaction (with the injected delay, each costs one rtt).
    #[serde(default)]
    pub round_trips_per_tx: f64,
    /// The client group this point is (`load.groups`), which ran beside the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The group's target rate (transactions per second), when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Lock waits of this point's sessions during the measured windows, summed over runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_waits: Option<LockWaits>,
    /// Transactions that failed with a deadlock (SQLSTATE 40P01) or a serialization
    /// failure (40001): the errors a client would retry.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deadlocks: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub serialization_failures: u64,
    /// Per script of a group or mix of several, its own latency percentiles (one
    /// histogram over the runs): what a request sees beside the writes its session also
    /// runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_script: Vec<ScriptLatency>,
    /// The private memory of this point's backends during the measured windows (a server
    /// on this machine only), the largest over the runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<BackendMemory>,
    /// `load.first`: the first N committed transactions of each run (in the order they
    /// started, warmup included), one histogram over the runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<FirstRequests>,
}

/// The first requests of every run, apart from the steady state.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct FirstRequests {
    /// N: per run.
    pub per_run: usize,
    /// Transactions in the histogram (N × runs, fewer when a run committed fewer).
    pub transactions: u64,
    pub latency_ms: Percentiles,
    /// What `load.on_start` took before each run's clients, median over the runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_start_ms: Option<f64>,
}

/// How each run started: after a cold start or not, and what a cold start could not do.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct StartInfo {
    pub cold: bool,
    /// What could not be emptied (a server pgx does not run, files out of reach).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shortfall: Option<String>,
    /// `load.on_start`, the warming run before the clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_start: Option<String>,
}

/// One script's measured transactions within a point of several scripts.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ScriptLatency {
    pub script: String,
    pub transactions: u64,
    pub latency_ms: Percentiles,
}

/// The private memory (`RssAnon`) of a group's backends, sampled every `every_ms`: a
/// sort or hash that lives between two samples goes unseen.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct BackendMemory {
    pub every_ms: f64,
    pub samples: u64,
    /// Backends seen.
    pub backends: u64,
    /// The median and the largest of the backends' peaks, in kB.
    pub median_kb: u64,
    pub max_kb: u64,
    /// The group's backends together, at the sample where they held the most, in kB.
    pub total_kb: u64,
}

impl BackendMemory {
    /// Another run's memory beside this one's: the larger of each.
    pub fn add(&mut self, other: &BackendMemory) {
        self.every_ms = other.every_ms;
        self.samples += other.samples;
        self.backends = self.backends.max(other.backends);
        self.median_kb = self.median_kb.max(other.median_kb);
        self.max_kb = self.max_kb.max(other.max_kb);
        self.total_kb = self.total_kb.max(other.total_kb);
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Sessions seen waiting for a heavyweight lock, from samples of `pg_stat_activity` and
/// the ungranted `pg_locks` taken every `every_ms` during the measured window.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct LockWaits {
    pub every_ms: f64,
    pub samples: u64,
    /// Waits seen: one session seen waiting in consecutive samples is one wait.
    pub waits: u64,
    /// Session time spent waiting, estimated as (samples a session was seen waiting) ×
    /// the interval: a wait shorter than the interval may go unseen.
    pub waited_ms: f64,
    /// The longest wait seen: the waiting statement's running time at the last sample
    /// that saw it waiting (a lower bound of that wait's length, plus the statement's
    /// work before it).
    pub longest_ms: f64,
    /// The most frequent things waited for (wait event, and the relation when there is
    /// one), most seen first.
    pub on: Vec<String>,
    /// Why sampling stopped early, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl LockWaits {
    /// Another run's waits added to these.
    pub fn add(&mut self, other: &LockWaits) {
        self.every_ms = other.every_ms;
        self.samples += other.samples;
        self.waits += other.waits;
        self.waited_ms += other.waited_ms;
        self.longest_ms = self.longest_ms.max(other.longest_ms);
        for on in &other.on {
            if !self.on.contains(on) && self.on.len() < 3 {
                self.on.push(on.clone());
            }
        }
        if self.error.is_none() {
            self.error.clone_from(&other.error);
        }
    }
}

/// What the server did during one run (all of its clients together): from
/// `pg_stat_user_tables` and `pg_stat_database` before and after.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ServerActivity {
    /// Change of the dead tuples of the database's tables (negative: vacuumed away).
    pub dead_tuples: i64,
    /// Autovacuum and autoanalyze runs that finished meanwhile.
    pub autovacuums: i64,
    pub autoanalyzes: i64,
    /// Shared-buffer hits / (hits + reads) of the database's backends.
    pub hit_ratio: Option<f64>,
    /// Deadlocks the server detected.
    pub deadlocks: i64,
    /// WAL the server wrote meanwhile (the whole server's: `pg_current_wal_lsn`).
    #[serde(default)]
    pub wal_bytes: i64,
    /// Transactions every group of the run committed (warmup and late ones included).
    #[serde(default)]
    pub transactions: u64,
}

/// One run: fresh connections, warmup, measured window.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct RunStats {
    pub tps: f64,
    /// Committed with their end inside the measured window.
    pub transactions: u64,
    /// Length of the measured window.
    pub seconds: f64,
    /// Failed transactions (and failed connection attempts), warmup included.
    pub errors: u64,
    /// Statements the server cancelled for `statement_timeout`, or that pgx gave up on.
    pub timeouts: u64,
    /// Committed during the warmup (discarded from TPS and latency).
    pub warmup_transactions: u64,
    /// Committed after the window closed: in flight when it ended (not counted in TPS).
    pub late_transactions: u64,
    /// Connections opened (one per client, plus reconnects after failures).
    pub connections: u64,
    pub latency_ms: Percentiles,
    /// The server during this run (every group's clients together).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerActivity>,
    /// `load.counters`: each counter's change per second over the measured window.
    #[serde(default, skip_serializing_if = "indexmap::IndexMap::is_empty")]
    pub counters: indexmap::IndexMap<String, f64>,
    /// `load.first`: the run's first N committed transactions' latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_ms: Option<Percentiles>,
    /// What `load.on_start` took before this run's clients started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_start_ms: Option<f64>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// Latency histogram: 1 µs to 1 hour at 3 significant digits (values above saturate).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant, valid histogram bounds")
}

/// Percentile `p` (0..=100) in microseconds with the nearest-rank definition of
/// [`crate::stats::nearest_rank`]. hdrhistogram computes the rank as ceil(q × n) in
/// floating point, where 0.99 × 1000 = 990.0000000000001 picks rank 991; asking for the
/// middle of the intended rank avoids that.
pub fn percentile_us(histogram: &Histogram<u64>, p: f64) -> u64 {
    let n = histogram.len();
    if n == 0 {
        return 0;
    }
    let rank = ((p.clamp(0.0, 100.0) * n as f64 / 100.0).ceil() as u64).clamp(1, n);
    histogram.value_at_quantile((rank as f64 - 0.5) / n as f64)
}

/// p50/p95/p99/max in milliseconds; zeros for an empty histogram.
pub fn percentiles(histogram: &Histogram<u64>) -> Percentiles {
    let ms = |us: u64| us as f64 / 1000.0;
    Percentiles {
        p50: ms(percentile_us(histogram, 50.0)),
        p95: ms(percentile_us(histogram, 95.0)),
        p99: ms(percentile_us(histogram, 99.0)),
        max: ms(if histogram.is_empty() {
            0
        } else {
            histogram.max()
        }),
    }
}

impl LoadPoint {
    /// Summarise runs whose latencies were merged into `merged`.
    pub fn new(
        script_mix: String,
        clients: usize,
        runs: Vec<RunStats>,
        merged: &Histogram<u64>,
        round_trips: u64,
        error_samples: Vec<String>,
    ) -> LoadPoint {
        let mut tps: Vec<f64> = runs.iter().map(|r| r.tps).collect();
        tps.sort_by(f64::total_cmp);
        let transactions = runs.iter().map(|r| r.transactions).sum();
        LoadPoint {
            script_mix,
            clients,
            tps_median: if tps.is_empty() {
                0.0
            } else {
                crate::stats::percentile(&tps, 50.0)
            },
            tps_min: tps.first().copied().unwrap_or(0.0),
            tps_max: tps.last().copied().unwrap_or(0.0),
            latency_ms: percentiles(merged),
            transactions,
            errors: runs.iter().map(|r| r.errors).sum(),
            timeouts: runs.iter().map(|r| r.timeouts).sum(),
            error_samples,
            round_trips_per_tx: if transactions == 0 {
                0.0
            } else {
                round_trips as f64 / transactions as f64
            },
            runs,
            group: None,
            rate: None,
            lock_waits: None,
            deadlocks: 0,
            serialization_failures: 0,
            by_script: Vec::new(),
            memory: None,
            first: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_match_nearest_rank_exactly_for_small_values() {
        // Below 2048 µs every value has its own bucket, so equality must be exact.
        let sample: Vec<u64> = (1..=1000).map(|i| (i * 7919) % 2000 + 1).collect();
        let mut h = new_histogram();
        for v in &sample {
            h.record(*v).unwrap();
        }
        let mut sorted = sample.clone();
        sorted.sort_unstable();
        for p in [0.0, 1.0, 50.0, 95.0, 99.0, 99.9, 100.0] {
            assert_eq!(
                percentile_us(&h, p),
                crate::stats::nearest_rank(&sorted, p),
                "p{p}"
            );
        }
        assert_eq!(percentiles(&new_histogram()), Percentiles::default());
    }
}
