//! Load results (TPS and latency under concurrency) for the terminal and for Markdown.
//!
//! What a renderer calls, with every variant's result as `(variant name, LoadResult)`
//! pairs (see `super::view::load_results`):
//! - [`markdown`] (= [`section`]): the whole Markdown "## Load" section, heading
//!   included: the round-trip note (once), the load summary, the table of every run, the
//!   charts, the error messages. [`body`] is the same without the heading.
//! - [`summary_markdown`]: the summary alone (best variant per script and client count,
//!   hangs, targets), e.g. for the report's own "## Summary" of a load-only experiment.
//! - [`summary`]: the same as data ([`Summary`]), for a view model of one's own.
//! - [`terminal`]: "load", the table, the round-trip note and the summary as plain text.

use std::fmt::Write;

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};

use super::{fmt_bytes, fmt_count, fmt_ms};
use crate::loadtest::{LoadPoint, LoadResult, LoadTarget};

const HEADER: [&str; 11] = [
    "variant",
    "script",
    "clients",
    "TPS median [min–max]",
    "p50",
    "p95",
    "p99",
    "max",
    "errors",
    "timeouts",
    "round trips/tx",
];

/// The Markdown section with its heading (empty without results).
pub fn markdown(results: &[(String, LoadResult)]) -> String {
    if results.is_empty() {
        return String::new();
    }
    format!("## Load\n\n{}", body(results))
}

/// Another name for [`markdown`].
pub fn section(results: &[(String, LoadResult)]) -> String {
    markdown(results)
}

/// The section's body (no heading): round-trip note, summary, table, charts, errors.
pub fn body(results: &[(String, LoadResult)]) -> String {
    body_with(results, true)
}

/// [`body`], with or without the summary (a report that shows it elsewhere).
pub fn body_with(results: &[(String, LoadResult)], with_summary: bool) -> String {
    let mut md = String::new();
    if let Some(note) = round_trip_note(results) {
        let _ = writeln!(md, "{note}\n");
    }
    let summary = summary(results);
    if with_summary && !summary.rows.is_empty() {
        let _ = writeln!(md, "### Load summary\n");
        md.push_str(&render_summary(&summary));
        md.push('\n');
        let _ = writeln!(md, "### Every run\n");
    }
    let _ = writeln!(md, "| {} |", HEADER.join(" | "));
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (variant, result) in results {
        for point in &result.points {
            let mut cells = row(variant, point);
            cells[0] = format!("`{}`", cells[0]);
            let cells: Vec<String> = cells.iter().map(|c| escape(c)).collect();
            let _ = writeln!(md, "| {} |", cells.join(" | "));
        }
    }
    let _ = writeln!(
        md,
        "\nTPS counts transactions committed inside the measured window (warmup discarded), \
         median of the runs with the slowest and fastest in brackets; latencies are per \
         transaction, from one HDR histogram of all runs; errors include failed connection \
         attempts."
    );
    for side in side_tables(results) {
        let _ = writeln!(md, "\n### {}\n", side.title);
        let _ = writeln!(md, "| {} |", side.header.join(" | "));
        let _ = writeln!(md, "{}", side.align);
        for mut cells in side.rows {
            cells[0] = format!("`{}`", cells[0]);
            let cells: Vec<String> = cells.iter().map(|c| escape(c)).collect();
            let _ = writeln!(md, "| {} |", cells.join(" | "));
        }
        let _ = writeln!(md, "\n{}", side.note);
    }
    for mix in script_mixes(results) {
        chart(&mut md, results, &mix, "TPS", |p| p.tps_median);
        chart(&mut md, results, &mix, "p99 latency (ms)", |p| {
            if p.transactions == 0 {
                0.0
            } else {
                p.latency_ms.p99
            }
        });
    }
    if results.len() > 1 {
        let lines: Vec<String> = results
            .iter()
            .enumerate()
            .map(|(i, (v, _))| format!("{} = `{v}`", i + 1))
            .collect();
        let _ = writeln!(
            md,
            "\nLines in every chart, in order (mermaid draws no legend): {}.",
            lines.join(", ")
        );
    }
    errors(&mut md, results);
    md
}

/// The summary alone, in Markdown (empty when there is no load result).
pub fn summary_markdown(results: &[(String, LoadResult)]) -> String {
    let summary = summary(results);
    if summary.rows.is_empty() {
        return String::new();
    }
    render_summary(&summary)
}

/// Plain text for the terminal: a "load" title, the table, the round-trip note, the
/// summary, the errors.
pub fn terminal(results: &[(String, LoadResult)]) -> String {
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(HEADER.to_vec());
    for (variant, result) in results {
        for point in &result.points {
            table.add_row(row(variant, point));
        }
    }
    let mut out = format!("\nload\n{table}\n");
    for side in side_tables(results) {
        let mut table = Table::new();
        table
            .load_style(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header(side.header.to_vec());
        for cells in side.rows {
            table.add_row(cells);
        }
        out.push_str(&format!("{}\n{table}\n", side.title.to_lowercase()));
    }
    if let Some(note) = round_trip_note(results) {
        out.push_str(&note.replace('`', ""));
        out.push('\n');
    }
    let summary = summary(results);
    for line in summary_lines(&summary) {
        out.push_str(&line.replace(['`', '*'], ""));
        out.push('\n');
    }
    for row in &summary.counters {
        let ranked: Vec<String> = row.ranked.iter().map(ranked_text).collect();
        out.push_str(
            &format!(
                "{} per second · {} · {}: {}\n",
                row.counter,
                row.script,
                clients_text(row.clients),
                ranked.join("; ")
            )
            .replace('`', ""),
        );
    }
    for (variant, result) in results {
        for point in result.points.iter().filter(|p| !p.error_samples.is_empty()) {
            for message in &point.error_samples {
                let first = message.lines().next().unwrap_or("");
                out.push_str(&format!(
                    "{variant} · {} · {} clients: {first}\n",
                    point.script_mix, point.clients
                ));
            }
        }
    }
    out
}

/// A table beside the runs, drawn alike by the terminal and Markdown.
struct SideTable {
    title: &'static str,
    header: &'static [&'static str],
    /// Markdown's alignment row.
    align: &'static str,
    note: &'static str,
    rows: Vec<Vec<String>>,
}

/// The tables beside the runs that these results have: locks and writes, latency per
/// script, the backends' memory.
fn side_tables(results: &[(String, LoadResult)]) -> Vec<SideTable> {
    let mut tables = Vec::new();
    if let Some(rows) = concurrency(results) {
        tables.push(SideTable {
            title: "Locks and writes under concurrency",
            header: &CONCURRENCY,
            align: "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|",
            note: CONCURRENCY_NOTE,
            rows,
        });
    }
    if let Some(rows) = per_script(results) {
        tables.push(SideTable {
            title: "Latency per script",
            header: &PER_SCRIPT,
            align: "|---|---|---:|---|---:|---:|---:|---:|---:|",
            note: PER_SCRIPT_NOTE,
            rows,
        });
    }
    if let Some(rows) = first_requests(results) {
        tables.push(SideTable {
            title: "First requests of each run",
            header: &FIRST,
            align: "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
            note: FIRST_NOTE,
            rows,
        });
    }
    if let Some(rows) = memory(results) {
        tables.push(SideTable {
            title: "Memory of the load's backends",
            header: &MEMORY,
            align: "|---|---|---:|---:|---:|---:|---:|",
            note: MEMORY_NOTE,
            rows,
        });
    }
    tables
}

const PER_SCRIPT_NOTE: &str = "A point that runs several scripts (a weighted mix, or a group \
    whose sessions run more than one) has one latency histogram per script beside the \
    point's own: what a request sees when the same sessions also run the others.";

const CONCURRENCY: [&str; 15] = [
    "variant",
    "group · script",
    "clients",
    "rate target",
    "lock waits",
    "waited (est.)",
    "longest wait",
    "waiting on",
    "deadlocks",
    "serialization failures",
    "dead tuples added",
    "autovacuums",
    "WAL per transaction",
    "buffer hits (database)",
    "counters per second",
];

const CONCURRENCY_NOTE: &str = "Lock waits are sampled from `pg_stat_activity` and the \
    ungranted `pg_locks` during the measured windows (every `load.lock_sampling`): a \
    session seen waiting in consecutive samples is one wait; waited = samples seen waiting \
    × the interval; the longest is the waiting statement's running time when last seen \
    waiting. Deadlocks and serialization failures are transactions that failed with them \
    (a client would retry). Dead tuples and autovacuum runs are the database's, over every \
    group of the run together, summed over the runs; WAL per transaction is the server's \
    WAL over the runs divided by every group's committed transactions (warmup included); \
    buffer hits are the database's shared-buffer hits over hits + reads during each run, \
    median of the runs (PostgreSQL 15 counts them per database, not per session, so every \
    group of a run shares one figure); counters (`load.counters`) are read at the start and end of each measured window: their \
    change per second, median of the runs [slowest–fastest].";

const MEMORY: [&str; 7] = [
    "variant",
    "group · script",
    "clients",
    "backends",
    "median backend peak",
    "largest backend peak",
    "all together at most",
];

const MEMORY_NOTE: &str = "Private memory (`RssAnon` in `/proc/<pid>/status`: palloc \
    contexts, sorts, hash tables, caches; not the shared buffers a backend touched) of each \
    point's backends, sampled every 200 ms during the measured windows, on a server on this \
    machine only: a sort or hash that lives between two samples goes unseen. A backend's \
    peak is the most it held in one sample; all together is the point's backends at the \
    sample where they held the most; the largest over the runs.";

const PER_SCRIPT: [&str; 9] = [
    "variant",
    "group · script",
    "clients",
    "script",
    "transactions",
    "p50",
    "p95",
    "p99",
    "max",
];

/// The rows of the per-script table: one per script of each point that ran several.
fn per_script(results: &[(String, LoadResult)]) -> Option<Vec<Vec<String>>> {
    let rows: Vec<Vec<String>> = results
        .iter()
        .flat_map(|(variant, result)| {
            result.points.iter().flat_map(move |p| {
                p.by_script.iter().map(move |s| {
                    vec![
                        variant.clone(),
                        p.script_mix.clone(),
                        p.clients.to_string(),
                        s.script.clone(),
                        fmt_count(s.transactions as i64),
                        fmt_ms(s.latency_ms.p50),
                        fmt_ms(s.latency_ms.p95),
                        fmt_ms(s.latency_ms.p99),
                        fmt_ms(s.latency_ms.max),
                    ]
                })
            })
        })
        .collect();
    (!rows.is_empty()).then_some(rows)
}

const FIRST: [&str; 11] = [
    "variant",
    "group · script",
    "clients",
    "start",
    "first N per run",
    "p50",
    "p99",
    "max",
    "steady p50",
    "steady p99",
    "on_start",
];

const FIRST_NOTE: &str = "`load.first`: each run's first N committed transactions across \
    its clients, in the order they started (warmup included), one histogram over the runs, \
    beside the measured window's (steady) percentiles. A cold start is a restart of pgx's \
    server (shared buffers empty) with the database's files dropped from the OS page \
    cache; on_start is `load.on_start` (the warming before the clients), median over the runs.";

/// How a load's runs started: "cold", "cold + on_start", "warm + on_start" or "warm".
fn start_text(result: &LoadResult) -> &'static str {
    match &result.start {
        Some(s) if s.cold && s.on_start.is_some() => "cold + on_start",
        Some(s) if s.cold => "cold",
        Some(s) if s.on_start.is_some() => "warm + on_start",
        _ => "warm",
    }
}

/// The rows of the first-requests table: one per point that kept its first requests.
fn first_requests(results: &[(String, LoadResult)]) -> Option<Vec<Vec<String>>> {
    let rows: Vec<Vec<String>> = results
        .iter()
        .flat_map(|(variant, result)| {
            result.points.iter().filter_map(move |p| {
                let f = p.first.as_ref()?;
                Some(vec![
                    variant.clone(),
                    p.script_mix.clone(),
                    p.clients.to_string(),
                    start_text(result).to_string(),
                    f.per_run.to_string(),
                    fmt_ms(f.latency_ms.p50),
                    fmt_ms(f.latency_ms.p99),
                    fmt_ms(f.latency_ms.max),
                    fmt_ms(p.latency_ms.p50),
                    fmt_ms(p.latency_ms.p99),
                    f.on_start_ms.map_or("-".into(), fmt_ms),
                ])
            })
        })
        .collect();
    (!rows.is_empty()).then_some(rows)
}

/// The p50s of a point's runs' first requests, sorted.
fn first_p50s(p: &LoadPoint) -> Vec<f64> {
    let mut p50s: Vec<f64> = p
        .runs
        .iter()
        .filter_map(|run| run.first_ms.map(|f| f.p50))
        .collect();
    p50s.sort_by(f64::total_cmp);
    p50s
}

/// Whose first requests are faster beyond the runs' spread: the lowest median p50 whose
/// slowest run is faster than the runner-up's fastest, by at least 5%, and by more than
/// the A/A control's first requests differ from the baseline's.
fn first_call(
    results: &[(String, LoadResult)],
    control: Option<&LoadResult>,
    mix: &str,
    clients: usize,
) -> Option<String> {
    let mut each: Vec<(&str, Vec<f64>)> = results
        .iter()
        .filter_map(|(v, r)| Some((v.as_str(), first_p50s(point_at(r, mix, clients)?))))
        .filter(|(_, p50s)| p50s.len() > 1)
        .collect();
    if each.len() < 2 {
        return None;
    }
    let median = |p50s: &[f64]| crate::stats::percentile(p50s, 50.0);
    each.sort_by(|a, b| median(&a.1).total_cmp(&median(&b.1)));
    let (best, next) = (&each[0], &each[1]);
    let (b_med, n_med) = (median(&best.1), median(&next.1));
    let drift = control_points(results, control, mix, clients)
        .and_then(|(_, base, ctl)| {
            let (base, ctl) = (first_p50s(base), first_p50s(ctl));
            (!base.is_empty() && !ctl.is_empty())
                .then(|| (median(&ctl) / median(&base) - 1.0).abs())
        })
        .unwrap_or(0.0);
    let gain = 1.0 - b_med / n_med;
    let beyond = best.1.last() < next.1.first() && gain >= crate::stats::NOISE && gain > drift;
    Some(if beyond {
        format!(
            "first requests faster beyond the runs' spread: `{}` (the runs' median p50 {} against `{}` {}, {:.0}% less{})",
            best.0,
            fmt_ms(b_med),
            next.0,
            fmt_ms(n_med),
            gain * 100.0,
            if control.is_some() {
                format!("; the A/A control's differ by {:.0}%", drift * 100.0)
            } else {
                String::new()
            }
        )
    } else {
        format!(
            "no variant's first requests are faster beyond the runs' spread (best `{}`, the runs' median p50 {} against `{}` {})",
            best.0,
            fmt_ms(b_med),
            next.0,
            fmt_ms(n_med)
        )
    })
}

/// Per point with first requests: each variant's first N against its steady state, and
/// whose are faster beyond the runs' spread.
fn first_answer(results: &[(String, LoadResult)], control: Option<&LoadResult>) -> Vec<String> {
    let mut lines = Vec::new();
    for mix in script_mixes(results) {
        for clients in client_counts(results, &mix) {
            let each: Vec<String> = results
                .iter()
                .filter_map(|(variant, r)| {
                    let p = point_at(r, &mix, clients)?;
                    let f = p.first.as_ref()?;
                    let warming = f
                        .on_start_ms
                        .map(|ms| format!(", after an on_start of {}", fmt_ms(ms)))
                        .unwrap_or_default();
                    // Each run's own p50 of its first requests: how much they vary.
                    let p50s = first_p50s(p);
                    let spread = match (p50s.first(), p50s.last()) {
                        (Some(lo), Some(hi)) if p50s.len() > 1 => {
                            format!(" [runs {}–{}]", fmt_ms(*lo), fmt_ms(*hi))
                        }
                        _ => String::new(),
                    };
                    Some(format!(
                        "`{variant}` ({}{warming}) p50 {}{spread} / p99 {} / max {} against {} / {} steady",
                        start_text(r),
                        fmt_ms(f.latency_ms.p50),
                        fmt_ms(f.latency_ms.p99),
                        fmt_ms(f.latency_ms.max),
                        fmt_ms(p.latency_ms.p50),
                        fmt_ms(p.latency_ms.p99)
                    ))
                })
                .collect();
            let per_run = results
                .iter()
                .find_map(|(_, r)| point_at(r, &mix, clients)?.first.as_ref())
                .map(|f| f.per_run);
            if let Some(n) = per_run {
                let call = first_call(results, control, &mix, clients)
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default();
                lines.push(format!(
                    "First {n} requests of each run · {mix} · {}: {}{call}",
                    clients_text(clients),
                    each.join("; ")
                ));
            }
        }
    }
    if let Some(shortfall) = results
        .iter()
        .find_map(|(_, r)| r.start.as_ref()?.shortfall.as_ref())
    {
        lines.push(format!("The cold starts were not fully cold: {shortfall}."));
    }
    lines
}

/// The rows of the memory table: one per point whose backends' memory was sampled.
fn memory(results: &[(String, LoadResult)]) -> Option<Vec<Vec<String>>> {
    let kb = |kb: u64| fmt_bytes(kb as i64 * 1024);
    let rows: Vec<Vec<String>> = results
        .iter()
        .flat_map(|(variant, result)| {
            result.points.iter().filter_map(move |p| {
                let m = p.memory.as_ref()?;
                Some(vec![
                    variant.clone(),
                    p.script_mix.clone(),
                    p.clients.to_string(),
                    m.backends.to_string(),
                    kb(m.median_kb),
                    kb(m.max_kb),
                    kb(m.total_kb),
                ])
            })
        })
        .collect();
    (!rows.is_empty()).then_some(rows)
}

/// A counter's rate per second over a point's runs: median, slowest, fastest (None when
/// no run read it).
fn counter_rates(p: &LoadPoint, name: &str) -> Option<(f64, f64, f64)> {
    let mut rates: Vec<f64> = p
        .runs
        .iter()
        .filter_map(|r| r.counters.get(name).copied())
        .collect();
    rates.sort_by(f64::total_cmp);
    let (lo, hi) = (*rates.first()?, *rates.last()?);
    Some((crate::stats::percentile(&rates, 50.0), lo, hi))
}

/// `load.counters` of a point: each counter's median rate over the runs, with the
/// slowest and fastest run; in the file's order (`order`), others by name (a run's map
/// read back from JSON need not keep the order it was written in).
fn counters_text(p: &LoadPoint, order: &[crate::loadtest::result::CounterInfo]) -> String {
    let mut names: Vec<&String> = order
        .iter()
        .map(|info| &info.name)
        .filter(|name| p.runs.iter().any(|r| r.counters.contains_key(*name)))
        .collect();
    let mut others: Vec<&String> = p
        .runs
        .iter()
        .flat_map(|r| r.counters.keys())
        .filter(|name| !names.contains(name))
        .collect();
    others.sort();
    others.dedup();
    names.extend(others);
    let texts: Vec<String> = names
        .into_iter()
        .filter_map(|name| {
            let (median, lo, hi) = counter_rates(p, name)?;
            Some(if p.runs.len() > 1 {
                format!("{name} {} [{}–{}]", rate(median), rate(lo), rate(hi))
            } else {
                format!("{name} {}", rate(median))
            })
        })
        .collect();
    if texts.is_empty() {
        "-".into()
    } else {
        texts.join(", ")
    }
}

fn rate(per_second: f64) -> String {
    if per_second.abs() >= 100.0 {
        fmt_count(per_second.round() as i64)
    } else {
        format!("{per_second:.1}")
    }
}

/// The rows of the concurrency table: one per point, when any point ran in a group or
/// was sampled for lock waits (older results have neither, and no table).
fn concurrency(results: &[(String, LoadResult)]) -> Option<Vec<Vec<String>>> {
    let any = results
        .iter()
        .flat_map(|(_, r)| &r.points)
        .any(|p| p.group.is_some() || p.lock_waits.is_some());
    if !any {
        return None;
    }
    let mut rows = Vec::new();
    for (variant, result) in results {
        for p in &result.points {
            let waits = p.lock_waits.as_ref();
            let activity: Vec<_> = p.runs.iter().filter_map(|r| r.server.as_ref()).collect();
            let sum = |f: fn(&crate::loadtest::ServerActivity) -> i64| -> String {
                if activity.is_empty() {
                    "-".into()
                } else {
                    fmt_count(activity.iter().map(|a| f(a)).sum())
                }
            };
            rows.push(vec![
                variant.clone(),
                p.script_mix.clone(),
                p.clients.to_string(),
                p.rate.map_or("-".into(), |r| format!("{r:.0} TPS")),
                waits.map_or("-".into(), |w| fmt_count(w.waits as i64)),
                waits.map_or("-".into(), |w| fmt_ms(w.waited_ms)),
                waits.map_or("-".into(), |w| {
                    if w.waits == 0 {
                        "-".into()
                    } else {
                        fmt_ms(w.longest_ms)
                    }
                }),
                waits.map_or("-".into(), |w| {
                    let mut on = w.on.join(", ");
                    if let Some(e) = &w.error {
                        on = format!("{on} (sampling stopped: {e})");
                    }
                    on
                }),
                fmt_count(p.deadlocks as i64),
                fmt_count(p.serialization_failures as i64),
                sum(|a| a.dead_tuples),
                sum(|a| a.autovacuums),
                {
                    // Every group's transactions wrote the run's WAL: per transaction of all.
                    let wal: i64 = activity.iter().map(|a| a.wal_bytes).sum();
                    let all: u64 = activity.iter().map(|a| a.transactions).sum();
                    if all == 0 {
                        "-".into()
                    } else {
                        fmt_bytes(wal.max(0) / all as i64)
                    }
                },
                {
                    // PostgreSQL 15 counts buffer hits per database, not per session: the
                    // share of every group of the run together, median over the runs.
                    let mut ratios: Vec<f64> =
                        activity.iter().filter_map(|a| a.hit_ratio).collect();
                    ratios.sort_by(f64::total_cmp);
                    if ratios.is_empty() {
                        "-".into()
                    } else {
                        format!("{:.2}%", crate::stats::percentile(&ratios, 50.0) * 100.0)
                    }
                },
                counters_text(p, &result.counters),
            ]);
        }
    }
    Some(rows)
}

/// The load summary as data.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// One per script mix and client count, in the order the results have them.
    pub rows: Vec<SummaryRow>,
    /// Points where the server did not keep up at all.
    pub hangs: Vec<Hang>,
    pub targets: Vec<TargetVerdict>,
    /// Per counter with a direction (`better:`), script and client count: every variant
    /// ranked by its median rate, best first.
    pub counters: Vec<CounterRow>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CounterRow {
    pub counter: String,
    pub about: String,
    pub better: crate::loadtest::result::Better,
    pub script: String,
    pub clients: usize,
    /// (variant, median, slowest, fastest) per second, best first.
    pub ranked: Vec<(String, f64, f64, f64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    pub script: String,
    pub clients: usize,
    pub best: Entry,
    pub runner_up: Option<Entry>,
    pub lead: Lead,
}

/// One variant's numbers at a point.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub variant: String,
    pub tps_median: f64,
    pub tps_min: f64,
    pub tps_max: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub runs: usize,
}

/// Whether the best variant's lead over the runner-up is beyond the run-to-run spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lead {
    /// The only variant measured.
    Alone,
    /// The [min–max] TPS ranges of the repeats do not overlap.
    BeyondSpread,
    /// They overlap: no winner can be called.
    WithinSpread,
    /// A single run each: there is no spread to judge by.
    OneRun,
}

/// A point where (nearly) nothing committed because statements timed out or failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Hang {
    pub variant: String,
    pub script: String,
    pub clients: usize,
    pub tps_median: f64,
    pub transactions: u64,
    pub timeouts: u64,
    pub errors: u64,
    pub timeout_ms: Option<f64>,
    pub first_error: Option<String>,
}

/// How every variant fares against one target.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetVerdict {
    pub target: LoadTarget,
    /// Per variant and point the target covers: the variant, the point's script mix,
    /// clients, TPS, p50, p99, and whether every bound holds.
    pub checks: Vec<TargetCheck>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TargetCheck {
    pub variant: String,
    pub script: String,
    pub clients: usize,
    pub tps_median: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub met: bool,
}

/// A point hangs when nothing committed although statements were attempted, or when
/// more statements timed out than transactions committed: seed 000's "0.0 TPS".
pub fn hangs(p: &LoadPoint) -> bool {
    (p.transactions == 0 && p.timeouts + p.errors > 0)
        || (p.timeouts > 0 && p.timeouts >= p.transactions)
}

/// `a` beats `b` beyond the run-to-run spread (its slowest run faster than `b`'s
/// fastest) and by more than the 5% no timing comparison calls below: a +0.3% lead
/// whose ranges happen not to overlap is no winner.
fn beyond_spread(a: &Entry, b: &Entry) -> bool {
    a.tps_min > b.tps_max && a.tps_median >= b.tps_median * (1.0 + crate::stats::NOISE)
}

/// A result's point for a script mix and client count.
fn point_at<'a>(r: &'a LoadResult, mix: &str, clients: usize) -> Option<&'a LoadPoint> {
    r.points
        .iter()
        .find(|p| p.script_mix == mix && p.clients == clients)
}

/// Best variant per script mix and client count, hangs, targets.
pub fn summary(results: &[(String, LoadResult)]) -> Summary {
    let mut rows = Vec::new();
    for mix in script_mixes(results) {
        for c in client_counts(results, &mix) {
            let mut entries: Vec<(Entry, bool)> = results
                .iter()
                .filter_map(|(variant, r)| {
                    let p = point_at(r, &mix, c)?;
                    Some((entry(variant, p), hangs(p)))
                })
                .collect();
            // Highest median TPS first; a hung point never leads.
            entries.sort_by(|a, b| {
                a.1.cmp(&b.1)
                    .then(b.0.tps_median.total_cmp(&a.0.tps_median))
            });
            let mut entries = entries.into_iter().map(|(e, _)| e);
            let Some(best) = entries.next() else {
                continue;
            };
            let runner_up = entries.next();
            let lead = match &runner_up {
                None => Lead::Alone,
                Some(r) if best.runs < 2 || r.runs < 2 => Lead::OneRun,
                Some(r) if beyond_spread(&best, r) => Lead::BeyondSpread,
                Some(_) => Lead::WithinSpread,
            };
            rows.push(SummaryRow {
                script: mix.clone(),
                clients: c,
                best,
                runner_up,
                lead,
            });
        }
    }
    let mut hung = Vec::new();
    for (variant, r) in results {
        for p in r.points.iter().filter(|p| hangs(p)) {
            hung.push(Hang {
                variant: variant.clone(),
                script: p.script_mix.clone(),
                clients: p.clients,
                tps_median: p.tps_median,
                transactions: p.transactions,
                timeouts: p.timeouts,
                errors: p.errors,
                timeout_ms: r.timeout_ms,
                first_error: p
                    .error_samples
                    .first()
                    .map(|m| m.lines().next().unwrap_or("").to_string()),
            });
        }
    }
    let mut targets: Vec<LoadTarget> = Vec::new();
    for (_, r) in results {
        for t in &r.targets {
            if !targets.contains(t) {
                targets.push(t.clone());
            }
        }
    }
    let targets = targets
        .into_iter()
        .map(|target| {
            let checks = results
                .iter()
                .flat_map(|(variant, r)| {
                    r.points
                        .iter()
                        .filter(|p| {
                            target.script.as_ref().is_none_or(|s| *s == p.script_mix)
                                && target.clients.is_none_or(|c| c == p.clients)
                        })
                        .map(|p| TargetCheck {
                            variant: variant.clone(),
                            script: p.script_mix.clone(),
                            clients: p.clients,
                            tps_median: p.tps_median,
                            p50_ms: p.latency_ms.p50,
                            p99_ms: p.latency_ms.p99,
                            met: meets(&target, p),
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            TargetVerdict { target, checks }
        })
        .collect();
    Summary {
        rows,
        hangs: hung,
        targets,
        counters: counter_rows(results),
    }
}

/// The counters with a direction, ranked per script and client count.
fn counter_rows(results: &[(String, LoadResult)]) -> Vec<CounterRow> {
    use crate::loadtest::result::Better;
    let mut infos: Vec<crate::loadtest::result::CounterInfo> = Vec::new();
    for (_, r) in results {
        for info in &r.counters {
            if info.better.is_some() && !infos.iter().any(|i| i.name == info.name) {
                infos.push(info.clone());
            }
        }
    }
    // Counters are the run's, whatever group: with client groups they are shown once,
    // beside the group whose clients vary (or the first group).
    let grouped = results
        .iter()
        .flat_map(|(_, r)| &r.points)
        .any(|p| p.group.is_some());
    let mut mixes = script_mixes(results);
    if grouped
        && let Some(widest) = mixes
            .iter()
            .max_by_key(|mix| client_counts(results, mix).len())
            .cloned()
    {
        let first_widest = mixes
            .iter()
            .find(|mix| client_counts(results, mix).len() == client_counts(results, &widest).len())
            .cloned()
            .unwrap_or(widest);
        mixes = vec![first_widest];
    }
    let mut rows = Vec::new();
    for info in infos {
        let Some(better) = info.better else { continue };
        for mix in mixes.clone() {
            for c in client_counts(results, &mix) {
                let mut ranked: Vec<(String, f64, f64, f64)> = results
                    .iter()
                    .filter_map(|(variant, r)| {
                        let p = point_at(r, &mix, c)?;
                        let (median, lo, hi) = counter_rates(p, &info.name)?;
                        Some((variant.clone(), median, lo, hi))
                    })
                    .collect();
                if ranked.is_empty() {
                    continue;
                }
                ranked.sort_by(|a, b| match better {
                    Better::Higher => b.1.total_cmp(&a.1),
                    Better::Lower => a.1.total_cmp(&b.1),
                });
                rows.push(CounterRow {
                    counter: info.name.clone(),
                    about: info.about.clone(),
                    better,
                    script: mix.clone(),
                    clients: c,
                    ranked,
                });
            }
        }
    }
    rows
}

fn ranked_text(rank: &(String, f64, f64, f64)) -> String {
    if (rank.3 - rank.2).abs() < f64::EPSILON {
        format!("`{}` {}", rank.0, rate(rank.1))
    } else {
        format!(
            "`{}` {} [{}–{}]",
            rank.0,
            rate(rank.1),
            rate(rank.2),
            rate(rank.3)
        )
    }
}

fn render_counters(rows: &[CounterRow]) -> String {
    let mut md = String::new();
    if rows.is_empty() {
        return md;
    }
    let mut names: Vec<(&str, &str, crate::loadtest::result::Better)> = Vec::new();
    for row in rows {
        if !names.iter().any(|(n, _, _)| *n == row.counter) {
            names.push((&row.counter, &row.about, row.better));
        }
    }
    let said: Vec<String> = names
        .iter()
        .map(|(name, about, better)| {
            let way = match better {
                crate::loadtest::result::Better::Higher => "higher is better",
                crate::loadtest::result::Better::Lower => "lower is better",
            };
            if about.is_empty() {
                format!("`{name}` ({way})")
            } else {
                format!("`{name}`: {about} ({way})")
            }
        })
        .collect();
    let _ = writeln!(
        md,
        "\nCounters, per second over each run's measured window, median [slowest–fastest] of \
         the runs, every variant best first: {}.\n",
        said.join("; ")
    );
    let _ = writeln!(md, "| counter | script | clients | variants, best first |");
    let _ = writeln!(md, "|---|---|---:|---|");
    for row in rows {
        let ranked: Vec<String> = row.ranked.iter().map(ranked_text).collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            escape(&row.counter),
            escape(&row.script),
            row.clients,
            escape(&ranked.join("; "))
        );
    }
    md
}

fn meets(t: &LoadTarget, p: &LoadPoint) -> bool {
    p.transactions > 0
        && !hangs(p)
        && t.tps.is_none_or(|tps| p.tps_median >= tps)
        && t.p50_ms.is_none_or(|ms| p.latency_ms.p50 <= ms)
        && t.p99_ms.is_none_or(|ms| p.latency_ms.p99 <= ms)
}

fn entry(variant: &str, p: &LoadPoint) -> Entry {
    Entry {
        variant: variant.to_string(),
        tps_median: p.tps_median,
        tps_min: p.tps_min,
        tps_max: p.tps_max,
        p50_ms: p.latency_ms.p50,
        p99_ms: p.latency_ms.p99,
        runs: p.runs.len(),
    }
}

fn tps(t: f64) -> String {
    if t > 0.0 && t < 10.0 {
        format!("{t:.1}")
    } else {
        fmt_count(t.round() as i64)
    }
}

fn tps_range(e: &Entry) -> String {
    if e.runs > 1 {
        format!(
            "{} [{}–{}]",
            tps(e.tps_median),
            tps(e.tps_min),
            tps(e.tps_max)
        )
    } else {
        tps(e.tps_median)
    }
}

fn lead_text(row: &SummaryRow) -> String {
    let Some(r) = &row.runner_up else {
        return "only variant".into();
    };
    let ratio = if r.tps_median > 0.0 {
        format!(
            "{:+.0}%",
            (row.best.tps_median / r.tps_median - 1.0) * 100.0
        )
    } else {
        "runner-up 0 TPS".into()
    };
    match row.lead {
        Lead::Alone => "only variant".into(),
        Lead::BeyondSpread => format!("{ratio}, beyond the spread"),
        Lead::WithinSpread => format!("{ratio}, within the spread: no winner"),
        Lead::OneRun => format!("{ratio}, one run each: spread unknown"),
    }
}

fn render_summary(s: &Summary) -> String {
    let mut md = String::new();
    let runs = s.rows.iter().map(|r| r.best.runs).max().unwrap_or(0);
    let _ = writeln!(
        md,
        "Best variant per script and client count by median TPS ({runs} run(s) each, \
         [min–max] over the runs); a lead is called only when the best variant's slowest run \
         beats the runner-up's fastest (the ranges do not overlap).\n"
    );
    let _ = writeln!(
        md,
        "| script | clients | best | TPS [min–max] | p50 | p99 | runner-up | TPS [min–max] | lead |"
    );
    let _ = writeln!(md, "|---|---:|---|---:|---:|---:|---|---:|---|");
    for row in &s.rows {
        let (runner, runner_tps) = match &row.runner_up {
            Some(r) => (format!("`{}`", r.variant), tps_range(r)),
            None => ("–".into(), "–".into()),
        };
        // Bold only a leader: a row without a winner names the highest, plainly.
        let best = match row.lead {
            Lead::BeyondSpread | Lead::Alone => format!("**`{}`**", row.best.variant),
            _ => format!("`{}`", row.best.variant),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {best} | {} | {} | {} | {} | {} | {} |",
            escape(&row.script),
            row.clients,
            tps_range(&row.best),
            fmt_ms(row.best.p50_ms),
            fmt_ms(row.best.p99_ms),
            runner,
            runner_tps,
            lead_text(row)
        );
    }
    let lines = summary_lines(s);
    let extra: Vec<&String> = lines.iter().skip(s.rows.len()).collect();
    if !extra.is_empty() {
        md.push('\n');
        for line in extra {
            let _ = writeln!(md, "- {line}");
        }
    }
    md.push_str(&render_counters(&s.counters));
    md
}

/// One line per summary row, then per hang and per target.
fn summary_lines(s: &Summary) -> Vec<String> {
    let mut lines: Vec<String> = s
        .rows
        .iter()
        .map(|row| {
            format!(
                "{} · {}: best `{}` {} TPS, p99 {} ({})",
                row.script,
                clients_text(row.clients),
                row.best.variant,
                tps_range(&row.best),
                fmt_ms(row.best.p99_ms),
                lead_text(row)
            )
        })
        .collect();
    for h in &s.hangs {
        let cut = h
            .timeout_ms
            .map(|ms| format!(" (statements cut off at the {} timeout)", fmt_ms(ms)))
            .unwrap_or_default();
        let what = if h.transactions == 0 {
            "0 TPS".to_string()
        } else {
            format!("{} TPS", tps(h.tps_median))
        };
        lines.push(format!(
            "**Hangs**: `{}` · {} · {}: {what}, {} committed, {} timeouts{cut}, {} errors{}",
            h.variant,
            h.script,
            clients_text(h.clients),
            fmt_count(h.transactions as i64),
            fmt_count(h.timeouts as i64),
            fmt_count(h.errors as i64),
            h.first_error
                .as_ref()
                .map(|e| format!("; first: {}", e.replace('`', "'")))
                .unwrap_or_default()
        ));
    }
    for v in &s.targets {
        lines.push(target_line(v));
    }
    lines
}

fn clients_text(n: usize) -> String {
    if n == 1 {
        "1 client".into()
    } else {
        format!("{n} clients")
    }
}

/// A rate group kept its rate when it committed at least this share of it.
const KEPT_RATE: f64 = 0.9;

/// The load's answer, as sentences: per script (or group) and client count, who leads
/// beyond the run-to-run spread, or that nobody does; for a group held to a rate, who
/// kept it and at what p99; per counter with a direction, who leads by the same rule;
/// the hangs; the targets; the backends' memory.
pub fn answer_lines(results: &[(String, LoadResult)]) -> Vec<String> {
    answer_lines_with(results, None)
}

/// [`answer_lines`] with the A/A control's load (a second copy of the baseline, the first
/// of `results`, loaded in turns with the variants, or after them in reports made before
/// loads took turns): its difference from the baseline is the drift between windows, and
/// no lead or fall within it is called.
pub fn answer_lines_with(
    results: &[(String, LoadResult)],
    control: Option<&LoadResult>,
) -> Vec<String> {
    let s = summary(results);
    let mut lines = Vec::new();
    // Whether the variants' loads took turns, repeat by repeat (reports made before that
    // ran them one after another).
    let alternated = results.len() > 1 && results.iter().all(|(_, r)| r.alternated.is_some());
    let loaded = if alternated {
        "loaded in turns with it"
    } else {
        "loaded later in the run"
    };
    // With targets the targets are the question: of the other points only the leads.
    let targeted = !s.targets.is_empty();
    let mut quiet = 0usize;
    for row in &s.rows {
        if targeted && row.lead != Lead::BeyondSpread {
            quiet += 1;
            continue;
        }
        let at = |variant: &str| {
            results
                .iter()
                .find(|(v, _)| v == variant)
                .and_then(|(_, r)| point_at(r, &row.script, row.clients))
        };
        let head = format!("{} · {}", row.script, clients_text(row.clients));
        let scripts = script_p99s(results, row);
        if let Some(rate) = at(&row.best.variant).and_then(|p| p.rate) {
            // A rate group is judged by its latency: the A/A control's p99 difference from
            // the baseline's is how far two identical databases' p99s differ here.
            let p99_drift = control_points(results, control, &row.script, row.clients);
            lines.push(rate_line(
                results,
                row,
                &head,
                rate,
                p99_drift.map(|(_, b, c)| p99_gap(b.latency_ms.p99, c.latency_ms.p99)),
            ));
            lines.extend(scripts);
            if let Some((name, base, ctl)) = p99_drift {
                lines.push(control_p99_line(&head, name, base, ctl, loaded));
            }
            continue;
        }
        let best = format!("`{}` {} TPS", row.best.variant, tps_range(&row.best));
        // The A/A control's difference from the baseline at this point: the drift.
        let drift = control_points(results, control, &row.script, row.clients).and_then(
            |(name, base, ctl)| {
                (base.tps_median > 0.0).then(|| {
                    let ratio = ctl.tps_median / base.tps_median - 1.0;
                    let (b, c) = (entry(name, base), entry("A/A control", ctl));
                    (ratio, b, c)
                })
            },
        );
        let within_drift = |ratio: f64| drift.as_ref().is_some_and(|(d, _, _)| ratio <= d.abs());
        let lead_ratio = row
            .runner_up
            .as_ref()
            .filter(|r| r.tps_median > 0.0)
            .map_or(f64::INFINITY, |r| row.best.tps_median / r.tps_median - 1.0);
        let lead = if row.lead == Lead::BeyondSpread && within_drift(lead_ratio) {
            Lead::WithinSpread
        } else {
            row.lead
        };
        lines.push(match (&row.runner_up, lead) {
            (None, _) | (_, Lead::Alone) => {
                format!("{head}: {best}, p99 {}", fmt_ms(row.best.p99_ms))
            }
            (Some(r), Lead::BeyondSpread) => format!(
                "{head}: `{}` leads, {} TPS against `{}` {} ({})",
                row.best.variant,
                tps_range(&row.best),
                r.variant,
                tps_range(r),
                lead_text(row)
            ),
            (Some(r), _) => format!(
                "{head}: no variant leads: {best} and `{}` {} TPS ({})",
                r.variant,
                tps_range(r),
                if row.lead == Lead::BeyondSpread {
                    // Beyond the runs' spread, but not beyond the A/A control's difference.
                    format!(
                        "{:+.0}%, beyond the spread but within the A/A control's {:.0}% difference: no winner",
                        lead_ratio * 100.0,
                        drift.as_ref().map_or(0.0, |(d, _, _)| d.abs()) * 100.0
                    )
                } else {
                    lead_text(row)
                }
            ),
        });
        let drift_ratio = drift.as_ref().map_or(0.0, |(d, _, _)| d.abs());
        if let Some(behind) = behind_line(results, row, drift_ratio) {
            lines.push(behind);
        }
        if let Some((ratio, b, c)) = &drift {
            lines.push(format!(
                "A/A control · {head}: the baseline `{}` {} TPS, its second copy, {loaded}, {} TPS ({:+.0}%): a lead or a fall within that is not called",
                b.variant,
                tps_range(b),
                tps_range(c),
                ratio * 100.0
            ));
        }
        lines.extend(scripts);
    }
    if quiet > 0 {
        // (the per-script lines of the quiet points are left out with them)
        lines.push(format!(
            "No variant leads beyond the run-to-run spread at {}{} (script and client count).",
            if quiet == s.rows.len() {
                "any of the "
            } else {
                "the other "
            },
            match quiet {
                1 => "point".to_string(),
                n => format!("{n} points"),
            }
        ));
    }
    for row in &s.counters {
        lines.push(counter_answer(row));
    }
    let summary_lines = summary_lines(&s);
    lines.extend(summary_lines.into_iter().skip(s.rows.len()));
    lines.extend(memory_answer(results));
    lines.extend(first_answer(results, control));
    if results.len() > 1 && !s.rows.is_empty() {
        let order = if alternated {
            "the variants' loads took turns, repeat by repeat in a rotating order, so what \
             drifts over the run spreads over all of them"
        } else {
            "each variant's load runs after the previous one's, not interleaved"
        };
        let control = if control.is_some() && alternated {
            "; the A/A control (a second copy of the baseline, loaded in the same turns) \
             measures how far two identical databases' windows differ, and no lead or fall \
             within that is called"
        } else if control.is_some() {
            "; the A/A control (a second copy of the baseline, loaded later in the run) \
             measures how far that drifts, and no lead or fall within its difference is called"
        } else {
            ", and loads have no A/A control; a lead is beyond the spread of one variant's \
             repeated runs, not beyond what drifts between two variants' windows, which this \
             run does not measure"
        };
        lines.push(format!(
            "How far to trust a lead: {order}{control}. What the server counts (WAL per \
             transaction, checkpoints, lock waits, rows) is no stopwatch and compares as it is."
        ));
    }
    lines
}

/// The variants that fall behind the best beyond the spread (their fastest run slower
/// than its slowest, by at least 5%), beyond the runner-up the row already names.
fn behind_line(results: &[(String, LoadResult)], row: &SummaryRow, drift: f64) -> Option<String> {
    let runner = row.runner_up.as_ref().map(|r| r.variant.as_str());
    let mut behind: Vec<Entry> = results
        .iter()
        .filter(|(v, _)| *v != row.best.variant && Some(v.as_str()) != runner)
        .filter_map(|(v, r)| {
            let p = point_at(r, &row.script, row.clients)?;
            Some(entry(v, p))
        })
        .filter(|e| {
            e.runs > 1
                && row.best.runs > 1
                && beyond_spread(&row.best, e)
                && row.best.tps_median / e.tps_median - 1.0 > drift
        })
        .collect();
    if behind.is_empty() {
        return None;
    }
    behind.sort_by(|a, b| b.tps_median.total_cmp(&a.tps_median));
    let list: Vec<String> = behind
        .iter()
        .map(|e| {
            format!(
                "`{}` {} TPS ({:+.0}%)",
                e.variant,
                tps_range(e),
                (e.tps_median / row.best.tps_median - 1.0) * 100.0
            )
        })
        .collect();
    Some(format!(
        "{} · {}: behind `{}` beyond the spread: {}",
        row.script,
        clients_text(row.clients),
        row.best.variant,
        list.join(", ")
    ))
}

/// For a point that runs several scripts: per script, every variant's p99, lowest first
/// (one histogram over the runs: no spread to call a winner by).
fn script_p99s(results: &[(String, LoadResult)], row: &SummaryRow) -> Vec<String> {
    let points: Vec<(&String, &LoadPoint)> = results
        .iter()
        .filter_map(|(v, r)| {
            let p = point_at(r, &row.script, row.clients)?;
            Some((v, p))
        })
        .collect();
    // Every script once, in the order the points list them.
    let mut names: Vec<&String> = Vec::new();
    for s in points.iter().flat_map(|(_, p)| &p.by_script) {
        if !names.contains(&&s.script) {
            names.push(&s.script);
        }
    }
    names
        .into_iter()
        .map(|name| {
            let mut each: Vec<(&String, f64)> = points
                .iter()
                .filter_map(|(v, p)| {
                    let s = p.by_script.iter().find(|s| &s.script == name)?;
                    (s.transactions > 0).then_some((*v, s.latency_ms.p99))
                })
                .collect();
            each.sort_by(|a, b| a.1.total_cmp(&b.1));
            let list: Vec<String> = each
                .iter()
                .map(|(v, p99)| format!("`{v}` {}", fmt_ms(*p99)))
                .collect();
            format!(
                "{} · {} · script `{name}` alone, p99: {}",
                row.script,
                clients_text(row.clients),
                list.join(", ")
            )
        })
        .collect()
}

/// The baseline's point (the first of `results`, with its name) and the A/A control's at
/// the same script and client count: what every drift between identical databases is
/// measured from.
fn control_points<'a>(
    results: &'a [(String, LoadResult)],
    control: Option<&'a LoadResult>,
    script: &str,
    clients: usize,
) -> Option<(&'a str, &'a LoadPoint, &'a LoadPoint)> {
    let (name, base) = results.first()?;
    Some((
        name.as_str(),
        point_at(base, script, clients)?,
        point_at(control?, script, clients)?,
    ))
}

/// How far apart two p99s are: the higher over the lower, minus one (0 when either is 0).
fn p99_gap(a: f64, b: f64) -> f64 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    if lo > 0.0 { hi / lo - 1.0 } else { 0.0 }
}

/// The A/A control at a rate group's point: the baseline's p99 and its second copy's,
/// whole and per script, so a reader sees what p99 differences identical databases show.
fn control_p99_line(
    head: &str,
    name: &str,
    base: &LoadPoint,
    ctl: &LoadPoint,
    loaded: &str,
) -> String {
    let mut text = format!(
        "A/A control · {head}: the baseline `{name}` p99 {}, its second copy, {loaded}, p99 {} ({:.0}% apart)",
        fmt_ms(base.latency_ms.p99),
        fmt_ms(ctl.latency_ms.p99),
        p99_gap(base.latency_ms.p99, ctl.latency_ms.p99) * 100.0
    );
    for b in &base.by_script {
        if let Some(c) = ctl
            .by_script
            .iter()
            .find(|c| c.script == b.script && c.transactions > 0 && b.transactions > 0)
        {
            text.push_str(&format!(
                "; script `{}` {} against {}",
                b.script,
                fmt_ms(b.latency_ms.p99),
                fmt_ms(c.latency_ms.p99)
            ));
        }
    }
    text.push_str(": a p99 difference within that is not called");
    text
}

/// A group held to `rate`: who kept it (at least [`KEPT_RATE`] of it) and their p99,
/// lowest first; who fell behind. With the A/A control's p99 gap (`drift`), whether the
/// lowest p99 is lower than the next beyond it.
fn rate_line(
    results: &[(String, LoadResult)],
    row: &SummaryRow,
    head: &str,
    rate: f64,
    drift: Option<f64>,
) -> String {
    let mut kept = Vec::new();
    let mut behind = Vec::new();
    for (variant, r) in results {
        let Some(p) = point_at(r, &row.script, row.clients) else {
            continue;
        };
        let e = entry(variant, p);
        if e.tps_median >= rate * KEPT_RATE && !hangs(p) {
            kept.push(e);
        } else {
            behind.push(e);
        }
    }
    kept.sort_by(|a, b| a.p99_ms.total_cmp(&b.p99_ms));
    behind.sort_by(|a, b| b.tps_median.total_cmp(&a.tps_median));
    let list = |entries: &[Entry]| {
        entries
            .iter()
            .map(|e| {
                format!(
                    "`{}` {} TPS, p99 {}",
                    e.variant,
                    tps_range(e),
                    fmt_ms(e.p99_ms)
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let mut text = format!("{head} at {} TPS: ", tps(rate));
    if !kept.is_empty() {
        text.push_str(&format!("kept the rate: {}", list(&kept)));
        if let (Some(drift), [best, next, ..]) = (drift, kept.as_slice()) {
            let gap = p99_gap(best.p99_ms, next.p99_ms);
            text.push_str(&if gap <= drift {
                format!(
                    " (the lowest two p99s are {:.0}% apart, within the A/A control's {:.0}%: no p99 winner)",
                    gap * 100.0,
                    drift * 100.0
                )
            } else if gap < crate::stats::NOISE {
                format!(
                    " (the lowest two p99s are {:.0}% apart, under {:.0}%: no p99 winner)",
                    gap * 100.0,
                    crate::stats::NOISE * 100.0
                )
            } else {
                format!(
                    " (`{}`'s p99 {:.0}% below `{}`'s, beyond the A/A control's {:.0}%)",
                    best.variant,
                    (1.0 - best.p99_ms / next.p99_ms) * 100.0,
                    next.variant,
                    drift * 100.0
                )
            });
        }
    }
    if !behind.is_empty() {
        if !kept.is_empty() {
            text.push_str(". ");
        }
        text.push_str(&format!(
            "{} behind: {}",
            if kept.is_empty() { "fell" } else { "Fell" },
            list(&behind)
        ));
    }
    text
}

/// Whether the best of a counter's ranking leads beyond the spread: its slowest run
/// beats the runner-up's fastest, by at least the 5% no comparison calls below.
fn counter_leads(row: &CounterRow) -> Option<bool> {
    use crate::loadtest::result::Better;
    let (best, second) = (row.ranked.first()?, row.ranked.get(1)?);
    Some(match row.better {
        Better::Higher => best.2 > second.3 && best.1 >= second.1 * (1.0 + crate::stats::NOISE),
        Better::Lower => best.3 < second.2 && best.1 <= second.1 * (1.0 - crate::stats::NOISE),
    })
}

fn counter_answer(row: &CounterRow) -> String {
    let head = format!(
        "{} per second ({} is better) · {} · {}",
        row.counter,
        match row.better {
            crate::loadtest::result::Better::Higher => "higher",
            crate::loadtest::result::Better::Lower => "lower",
        },
        row.script,
        clients_text(row.clients)
    );
    let ranked: Vec<String> = row.ranked.iter().map(ranked_text).collect();
    match counter_leads(row) {
        None => format!("{head}: {}", ranked.join("; ")),
        Some(true) => format!(
            "{head}: `{}` leads beyond the spread: {}",
            row.ranked[0].0,
            ranked.join("; ")
        ),
        Some(false) => format!(
            "{head}: no variant leads (the best two overlap or differ by under 5%): {}",
            ranked.join("; ")
        ),
    }
}

/// At the point with the most clients whose backends' memory was sampled: each variant's
/// largest backend and all of them together.
fn memory_answer(results: &[(String, LoadResult)]) -> Vec<String> {
    let mut lines = Vec::new();
    let sampled = |mix: &String, c: usize| {
        results.iter().any(|(_, r)| {
            r.points
                .iter()
                .any(|p| &p.script_mix == mix && p.clients == c && p.memory.is_some())
        })
    };
    let widest = script_mixes(results)
        .into_iter()
        .flat_map(|mix| {
            client_counts(results, &mix)
                .into_iter()
                .map(move |c| (mix.clone(), c))
        })
        .filter(|(mix, c)| sampled(mix, *c))
        .max_by_key(|(_, c)| *c);
    if let Some((mix, clients)) = widest {
        let each: Vec<String> = results
            .iter()
            .filter_map(|(variant, r)| {
                let p = point_at(r, &mix, clients)?;
                let m = p.memory.as_ref()?;
                Some(format!(
                    "`{variant}` {} per backend at most (median {}), {} together",
                    fmt_bytes(m.max_kb as i64 * 1024),
                    fmt_bytes(m.median_kb as i64 * 1024),
                    fmt_bytes(m.total_kb as i64 * 1024)
                ))
            })
            .collect();
        if !each.is_empty() {
            lines.push(format!(
                "Backends' private memory · {mix} · {}: {}",
                clients_text(clients),
                each.join("; ")
            ));
        }
    }
    lines
}

/// The targets' verdicts as sentences (the report's answer for a load experiment).
pub fn target_lines(results: &[(String, LoadResult)]) -> Vec<String> {
    summary(results).targets.iter().map(target_line).collect()
}

/// Was every target met?
pub fn targets_met(results: &[(String, LoadResult)]) -> bool {
    summary(results)
        .targets
        .iter()
        .all(|v| v.checks.iter().any(|c| c.met))
}

fn target_line(v: &TargetVerdict) -> String {
    let t = &v.target;
    let mut bounds = Vec::new();
    if let Some(x) = t.tps {
        bounds.push(format!("≥ {} TPS", tps(x)));
    }
    if let Some(x) = t.p50_ms {
        bounds.push(format!("p50 ≤ {}", fmt_ms(x)));
    }
    if let Some(x) = t.p99_ms {
        bounds.push(format!("p99 ≤ {}", fmt_ms(x)));
    }
    let mut scope = Vec::new();
    if let Some(s) = &t.script {
        scope.push(s.clone());
    }
    if let Some(c) = t.clients {
        scope.push(clients_text(c));
    }
    let head = format!(
        "**Target** {}{}{}",
        bounds.join(", "),
        if scope.is_empty() {
            String::new()
        } else {
            format!(" ({})", scope.join(", "))
        },
        if t.about.is_empty() {
            String::new()
        } else {
            format!(", {}", t.about)
        }
    );
    let met: Vec<&TargetCheck> = v.checks.iter().filter(|c| c.met).collect();
    let show = |c: &TargetCheck| {
        let mut parts = vec![format!("`{}`", c.variant)];
        if t.script.is_none() {
            parts.push(c.script.clone());
        }
        if t.clients.is_none() {
            parts.push(clients_text(c.clients));
        }
        let mut numbers = Vec::new();
        if t.tps.is_some() {
            numbers.push(format!("{} TPS", tps(c.tps_median)));
        }
        if t.p50_ms.is_some() || t.p99_ms.is_some() {
            numbers.push(format!(
                "p50 {} / p99 {}",
                fmt_ms(c.p50_ms),
                fmt_ms(c.p99_ms)
            ));
        }
        format!("{} {}", parts.join(" · "), numbers.join(", "))
    };
    if v.checks.is_empty() {
        return format!("{head}: no measured point matches it.");
    }
    if met.is_empty() {
        let best = v
            .checks
            .iter()
            .max_by(|a, b| {
                a.tps_median
                    .total_cmp(&b.tps_median)
                    .then(b.p99_ms.total_cmp(&a.p99_ms))
            })
            .map(show)
            .unwrap_or_default();
        format!("{head}: reached by no variant; closest {best}.")
    } else {
        let list: Vec<String> = met.iter().map(|c| show(c)).collect();
        let missed = v.checks.len() - met.len();
        format!(
            "{head}: reached by {}{}.",
            list.join("; "),
            if missed > 0 {
                format!(" (missed by the other {missed})")
            } else {
                String::new()
            }
        )
    }
}

fn row(variant: &str, p: &LoadPoint) -> Vec<String> {
    let latency = |ms: f64| {
        if p.transactions == 0 {
            "-".to_string()
        } else {
            fmt_ms(ms)
        }
    };
    let e = entry(variant, p);
    vec![
        variant.to_string(),
        p.script_mix.clone(),
        p.clients.to_string(),
        tps_range(&e),
        latency(p.latency_ms.p50),
        latency(p.latency_ms.p95),
        latency(p.latency_ms.p99),
        latency(p.latency_ms.max),
        fmt_count(p.errors as i64),
        fmt_count(p.timeouts as i64),
        format!("{:.1}", p.round_trips_per_tx),
    ]
}

/// How round trips were made, once for the whole section: the configuration every
/// variant shares, and the measured round trip as one value or a range over variants.
pub fn round_trip_note(results: &[(String, LoadResult)]) -> Option<String> {
    let first = &results.first()?.1;
    // (rtt, mode, transport, note) per distinct set-up.
    type Setup<'a> = (Option<f64>, Option<&'a str>, &'a str, Option<&'a str>);
    let mut setups: Vec<Setup> = Vec::new();
    for (_, r) in results {
        let setup = (
            r.rtt_ms,
            r.rtt_mode.as_deref(),
            r.transport.as_str(),
            r.rtt_note.as_deref(),
        );
        if !setups.contains(&setup) {
            setups.push(setup);
        }
    }
    let range = |values: Vec<f64>| -> Option<String> {
        let lo = values.iter().copied().reduce(f64::min)?;
        let hi = values.iter().copied().reduce(f64::max)?;
        Some(if (hi - lo).abs() < 0.0005 {
            fmt_ms(lo)
        } else {
            format!("{}–{}", fmt_ms(lo), fmt_ms(hi))
        })
    };
    let probes = range(results.iter().filter_map(|(_, r)| r.rtt_probe_ms).collect());
    let sleeps = range(
        results
            .iter()
            .filter_map(|(_, r)| r.rtt_actual_ms)
            .collect(),
    );
    let per_variant = if results.len() > 1 {
        ", lowest to highest variant"
    } else {
        ""
    };
    let mut note = match (first.rtt_ms, first.rtt_mode.as_deref()) {
        (None, _) => format!(
            "Round trips: the raw {} with no delay, so a round trip costs microseconds and \
             savings from pipelining or batching look smaller than over a network (set \
             `load.rtt` to model one).",
            first.transport
        ),
        (Some(rtt), Some("netem")) => format!(
            "Round trips: a real network delay of {} per round trip, {}: the kernel holds \
             every packet, so a pipelined batch pays one round trip because its answers travel \
             together.",
            fmt_ms(rtt),
            first.transport
        ),
        (Some(rtt), Some("relay")) => format!(
            "Round trips: {} per round trip, added by pgx's relay between the clients and \
             the server ({}): it holds every chunk of bytes {} in each direction (µs timer), \
             so a pipelined batch pays one round trip because its answers travel together, \
             not because pgx counts it so.",
            fmt_ms(rtt),
            first.transport,
            fmt_ms(rtt / 2.0)
        ),
        (Some(rtt), _) => format!(
            "Round trips: every request waited an injected client-side delay of {} (µs timer) \
             before going over the {}, standing in for a network round trip; round trips are \
             counted, not measured{}.",
            fmt_ms(rtt),
            first.transport,
            sleeps
                .map(|s| format!("; the delay measured {s} on average{per_variant}"))
                .unwrap_or_default()
        ),
    };
    if let Some(p) = probes {
        let _ = write!(
            note,
            " Measured before the runs: `SELECT 1` took {p} per round trip through it (trimmed mean of 40{per_variant})."
        );
    }
    if let Some(why) = first.rtt_note.as_deref() {
        let _ = write!(
            note,
            " Mode `{}`: {why}.",
            first.rtt_mode.as_deref().unwrap_or("?")
        );
    }
    if setups.len() > 1 {
        note.push_str(" Not every variant ran with the same round trip: see each variant's JSON.");
    }
    Some(note)
}

fn script_mixes(results: &[(String, LoadResult)]) -> Vec<String> {
    let mut mixes: Vec<String> = Vec::new();
    for (_, r) in results {
        for p in &r.points {
            if !mixes.contains(&p.script_mix) {
                mixes.push(p.script_mix.clone());
            }
        }
    }
    mixes
}

/// The client counts measured for one script mix, ascending.
fn client_counts(results: &[(String, LoadResult)], mix: &str) -> Vec<usize> {
    let mut clients: Vec<usize> = results
        .iter()
        .flat_map(|(_, r)| &r.points)
        .filter(|p| p.script_mix == mix)
        .map(|p| p.clients)
        .collect();
    clients.sort_unstable();
    clients.dedup();
    clients
}

/// A line chart of `value` against clients for one script mix, a line per variant.
fn chart(
    md: &mut String,
    results: &[(String, LoadResult)],
    mix: &str,
    what: &str,
    value: fn(&LoadPoint) -> f64,
) {
    let clients = client_counts(results, mix);
    if clients.is_empty() {
        return;
    }
    let axis: Vec<String> = clients.iter().map(|c| c.to_string()).collect();
    let _ = writeln!(
        md,
        "\n```mermaid\nxychart-beta\n    title \"{what} by clients · {}\"\n    x-axis \"clients\" [{}]\n    y-axis \"{what}\"",
        mix.replace('"', "'"),
        axis.join(", ")
    );
    for (_, r) in results {
        let values: Vec<String> = clients
            .iter()
            .map(|&c| {
                let v = point_at(r, mix, c).map_or(0.0, value);
                format!("{v:.2}")
            })
            .collect();
        let _ = writeln!(md, "    line [{}]", values.join(", "));
    }
    let _ = writeln!(md, "```");
}

fn errors(md: &mut String, results: &[(String, LoadResult)]) {
    let failing: Vec<(&str, &LoadPoint)> = results
        .iter()
        .flat_map(|(v, r)| r.points.iter().map(move |p| (v.as_str(), p)))
        .filter(|(_, p)| !p.error_samples.is_empty())
        .collect();
    if failing.is_empty() {
        return;
    }
    let _ = writeln!(md, "\n### Errors and timeouts\n");
    for (variant, p) in failing {
        let _ = writeln!(
            md,
            "- `{variant}` · {} · {} clients ({} errors, {} timeouts):",
            p.script_mix, p.clients, p.errors, p.timeouts
        );
        for message in &p.error_samples {
            let _ = writeln!(
                md,
                "  - `{}`",
                message.lines().next().unwrap_or("").replace('`', "'")
            );
        }
    }
    md.push('\n');
}

fn escape(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadtest::{Percentiles, RunStats};

    fn point(mix: &str, clients: usize, tps: [f64; 3], errors: u64) -> LoadPoint {
        let runs = tps
            .iter()
            .map(|&t| RunStats {
                tps: t,
                transactions: t as u64,
                seconds: 1.0,
                ..Default::default()
            })
            .collect::<Vec<_>>();
        LoadPoint {
            script_mix: mix.into(),
            clients,
            tps_median: tps[1],
            tps_min: tps[0],
            tps_max: tps[2],
            latency_ms: Percentiles {
                p50: 0.5,
                p95: 1.5,
                p99: 3.25,
                max: 12.0,
            },
            transactions: tps.iter().sum::<f64>() as u64,
            errors,
            timeouts: 0,
            error_samples: if errors > 0 {
                vec!["connect: refused\n  detail: x".into()]
            } else {
                vec![]
            },
            round_trips_per_tx: 1.0,
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

    fn result(points: Vec<LoadPoint>, probe: Option<f64>) -> LoadResult {
        LoadResult {
            points,
            rtt_ms: probe.map(|_| 20.0),
            rtt_actual_ms: None,
            transport: "unix socket through pgx's delay relay".into(),
            rtt_mode: probe.map(|_| "relay".into()),
            rtt_note: probe.map(|_| "kernel netem not used: no sch_netem".into()),
            rtt_probe_ms: probe,
            timeout_ms: Some(5000.0),
            targets: vec![LoadTarget {
                about: "seed 000".into(),
                clients: Some(8),
                tps: Some(6000.0),
                ..Default::default()
            }],
            counters: Vec::new(),
            alternated: None,
            start: None,
        }
    }

    fn results() -> Vec<(String, LoadResult)> {
        let scaled = |k: f64, errors| {
            vec![
                point("read", 1, [900.0 * k, 1000.0 * k, 1100.0 * k], 0),
                point("read", 8, [5000.0 * k, 5100.0 * k, 5200.0 * k], errors),
            ]
        };
        let mut hung = point("read", 8, [0.0, 0.0, 0.0], 0);
        hung.timeouts = 12;
        hung.transactions = 0;
        hung.error_samples =
            vec!["script read: ERROR: canceling statement due to statement timeout".into()];
        vec![
            ("current".into(), result(scaled(1.0, 2), Some(20.1))),
            ("covering".into(), result(scaled(1.05, 0), Some(20.3))),
            (
                "fast".into(),
                result(
                    vec![point("read", 1, [2500.0, 2600.0, 2700.0], 0)],
                    Some(20.2),
                ),
            ),
            ("broken".into(), result(vec![hung], Some(20.2))),
        ]
    }

    #[test]
    fn one_load_heading_one_round_trip_note() {
        let md = section(&results());
        assert_eq!(md.matches("## Load\n").count(), 1, "{md}");
        assert_eq!(md.matches("Round trips:").count(), 1, "{md}");
        assert!(
            md.contains("`SELECT 1` took 20.1 ms–20.3 ms per round trip"),
            "{md}"
        );
        assert!(md.contains("Mode `relay`: kernel netem not used"), "{md}");
        assert!(!md.contains("\n\n\n"), "no double blank lines:\n{md}");
        assert!(
            md.contains("| `current` | read | 8 | 5,100 [5,000–5,200] | 0.500 ms |"),
            "{md}"
        );
        assert!(md.contains("x-axis \"clients\" [1, 8]"));
        assert!(md.contains("line [1000.00, 5100.00]"));
        assert!(md.contains("1 = `current`, 2 = `covering`"));
        assert!(body(&results()).starts_with("Round trips:"));
        assert_eq!(markdown(&results()), md);
        assert_eq!(section(&[]), "");
    }

    #[test]
    fn summary_calls_a_lead_only_beyond_the_spread() {
        let s = summary(&results());
        assert_eq!(s.rows.len(), 2);
        // 1 client: fast 2,600 [2,500–2,700] vs covering 1,050 [945–1,155]: no overlap.
        assert_eq!(s.rows[0].best.variant, "fast");
        assert_eq!(s.rows[0].lead, Lead::BeyondSpread);
        // 8 clients: covering 5,355 [5,250–5,460] vs current 5,100 [5,000–5,200]: beyond.
        // The hung variant never leads even when sorted.
        assert_eq!(s.rows[1].best.variant, "covering");
        assert_eq!(s.rows[1].runner_up.as_ref().unwrap().variant, "current");
        assert_eq!(s.rows[1].lead, Lead::BeyondSpread);
        let md = summary_markdown(&results());
        assert!(
            md.contains("| read | 1 | **`fast`** | 2,600 [2,500–2,700] |"),
            "{md}"
        );
        assert!(md.contains("+148%, beyond the spread"), "{md}");
        assert!(
            md.contains("**Hangs**: `broken` · read · 8 clients: 0 TPS, 0 committed, 12 timeouts (statements cut off at the 5.00 s timeout)"),
            "{md}"
        );
        assert!(
            md.contains("**Target** ≥ 6,000 TPS (8 clients), seed 000: reached by no variant; closest `covering` · read 5,355 TPS."),
            "{md}"
        );
        // Overlapping ranges: no winner.
        let mut close = results();
        close[1].1.points[1] = point("read", 8, [5100.0, 5150.0, 5300.0], 0);
        let s = summary(&close);
        assert_eq!(s.rows[1].lead, Lead::WithinSpread);
        assert!(summary_markdown(&close).contains("within the spread: no winner"));
    }

    #[test]
    fn terminal_has_a_row_per_point_and_the_summary() {
        let text = terminal(&results());
        assert!(text.contains("5,355 [5,250–5,460]"), "{text}");
        assert!(text.contains("read · 1 client: best fast"), "{text}");
        assert!(text.contains("Hangs: broken"), "{text}");
        assert_eq!(text.matches("Round trips:").count(), 1);
    }

    #[test]
    fn old_json_without_the_new_fields_still_reads() {
        let old = r#"{"points": [], "rtt_ms": 2.0, "transport": "unix socket"}"#;
        let r: LoadResult = serde_json::from_str(old).unwrap();
        assert!(r.rtt_mode.is_none() && r.targets.is_empty() && r.timeout_ms.is_none());
        let note = round_trip_note(&[("v".into(), r)]).unwrap();
        assert!(note.contains("client-side delay of 2.000 ms"), "{note}");
    }

    /// The load's answer: a rate group says who kept its rate, a counter names a leader
    /// only beyond the spread, and two identical variants (A/A) get no leader anywhere.
    #[test]
    fn the_load_answer_calls_leads_only_beyond_the_spread() {
        use crate::loadtest::result::{Better, CounterInfo};
        let with = |tps: [f64; 3], rate: Option<f64>, counter: [f64; 3]| {
            let mut p = point("readers (read)", 50, tps, 0);
            p.group = Some("readers".into());
            p.rate = rate;
            for (run, c) in p.runs.iter_mut().zip(counter) {
                run.counters.insert("done".into(), c);
            }
            let mut r = result(vec![p], None);
            r.targets.clear();
            r.counters = vec![CounterInfo {
                name: "done".into(),
                better: Some(Better::Higher),
                about: String::new(),
            }];
            r
        };
        let kept = with([990.0, 995.0, 999.0], Some(1000.0), [100.0, 101.0, 102.0]);
        let behind = with([590.0, 598.0, 610.0], Some(1000.0), [50.0, 51.0, 52.0]);
        let lines = answer_lines(&[("a".into(), kept.clone()), ("b".into(), behind)]);
        assert!(
            lines[0].contains("at 1,000 TPS: kept the rate: `a`")
                && lines[0].contains("Fell behind: `b` 598"),
            "{lines:?}"
        );
        assert!(
            lines[1].contains("`a` leads beyond the spread"),
            "{lines:?}"
        );
        // A/A: the same numbers twice, no rate: no leader, by TPS or by counter.
        let same = with([990.0, 995.0, 999.0], None, [100.0, 101.0, 102.0]);
        let lines = answer_lines(&[("a".into(), same.clone()), ("a2".into(), same)]);
        assert!(lines[0].contains("no variant leads"), "{lines:?}");
        assert!(lines[1].contains("no variant leads"), "{lines:?}");
        assert!(
            !lines
                .iter()
                .any(|l| l.contains(" leads beyond") || l.contains("` leads,"))
        );
    }

    /// A rate group is judged by its p99: the A/A control's p99 is shown beside it, and
    /// the lowest p99 is called only when it is lower than the next by more than the
    /// control's differs from the baseline's (the A/A question: identical databases' p99s
    /// differ too).
    #[test]
    fn a_rate_groups_lowest_p99_is_called_only_beyond_the_controls_p99_gap() {
        let at = |p99: f64| {
            let mut p = point("readers (read)", 50, [990.0, 995.0, 999.0], 0);
            p.group = Some("readers".into());
            p.rate = Some(1000.0);
            p.latency_ms.p99 = p99;
            let mut r = result(vec![p], None);
            r.targets.clear();
            r
        };
        let results = vec![
            ("shared".to_string(), at(8.0)),
            ("separate".to_string(), at(4.0)),
        ];
        // A steady control (8.0 against 8.4 ms, 5% apart): the 50% lower p99 is called.
        let lines = answer_lines_with(&results, Some(&at(8.4)));
        assert!(
            lines[0].contains("`separate`'s p99 50% below `shared`'s, beyond the A/A control's 5%"),
            "{lines:?}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with(
                "A/A control · readers (read) · 50 clients: the baseline `shared` p99 8.000 ms"
            ) && l.contains("p99 8.400 ms (5% apart)")),
            "{lines:?}"
        );
        // The control's p99 twice the baseline's: the same gap is within it, not called.
        let lines = answer_lines_with(&results, Some(&at(16.0)));
        assert!(
            lines[0].contains("within the A/A control's 100%: no p99 winner"),
            "{lines:?}"
        );
        // No control (reports made before it): the p99s are listed, nothing is called.
        let lines = answer_lines_with(&results, None);
        assert!(
            !lines[0].contains("p99 winner") && !lines[0].contains("below"),
            "{lines:?}"
        );
    }

    /// The A/A control's load is the drift between windows: a lead smaller than the
    /// control's difference from the baseline is not called, a larger one is.
    #[test]
    fn first_requests_are_called_faster_only_beyond_the_runs_spread_and_the_controls() {
        let at = |p50s: [f64; 3]| {
            let mut p = point("w", 10, [100.0, 100.0, 100.0], 0);
            for (run, p50) in p.runs.iter_mut().zip(p50s) {
                run.first_ms = Some(Percentiles {
                    p50,
                    ..Default::default()
                });
            }
            p.first = Some(crate::loadtest::result::FirstRequests {
                per_run: 100,
                transactions: 300,
                latency_ms: Percentiles {
                    p50: p50s[1],
                    ..Default::default()
                },
                on_start_ms: None,
            });
            let mut r = result(vec![p], None);
            r.targets.clear();
            r
        };
        let cold = at([7.0, 7.6, 8.7]);
        let results = vec![
            ("cold".to_string(), cold.clone()),
            ("prewarmed".to_string(), at([4.3, 4.9, 5.4])),
        ];
        let first = |lines: Vec<String>| {
            lines
                .into_iter()
                .find(|l| l.starts_with("First 100 requests"))
                .expect("a first-requests line")
        };
        let line = first(answer_lines_with(&results, Some(&cold)));
        assert!(
            line.contains("first requests faster beyond the runs' spread: `prewarmed`"),
            "{line}"
        );
        // Identical variants: overlapping runs, no call (the A/A question).
        let same = vec![
            ("cold".to_string(), cold.clone()),
            ("again".to_string(), at([7.1, 7.5, 8.6])),
        ];
        assert!(first(answer_lines(&same)).contains("no variant's first requests are faster"));
        // A control whose first requests differ more than the gain: not called.
        let line = first(answer_lines_with(&results, Some(&at([3.0, 3.2, 3.4]))));
        assert!(
            line.contains("no variant's first requests are faster"),
            "{line}"
        );
    }

    #[test]
    fn a_lead_within_the_controls_drift_is_not_called() {
        let at = |tps: [f64; 3]| {
            let mut r = result(vec![point("w", 8, tps, 0)], None);
            r.targets.clear();
            r
        };
        let baseline = at([100.0, 101.0, 102.0]);
        let faster = at([118.0, 120.0, 121.0]);
        let results = vec![("base".to_string(), baseline), ("new".to_string(), faster)];
        let steady = at([99.0, 100.0, 101.0]);
        let lines = answer_lines_with(&results, Some(&steady));
        assert!(lines[0].contains("`new` leads"), "{lines:?}");
        assert!(
            lines.iter().any(|l| l.starts_with("A/A control · w")),
            "{lines:?}"
        );
        let drifting = at([124.0, 125.0, 126.0]);
        let lines = answer_lines_with(&results, Some(&drifting));
        assert!(
            lines[0].contains("no variant leads")
                && lines[0].contains("within the A/A control's 24% difference: no winner"),
            "{lines:?}"
        );
    }
}
