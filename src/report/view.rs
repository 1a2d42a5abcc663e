//! The tables a report shows, built once from the result and drawn by both the terminal
//! (comfy-table) and the Markdown renderer: one model, two drawings.

use std::fmt::Write;

use super::*;
use crate::experiment::analysis::differs;
use crate::experiment::analysis::screening;
use crate::experiment::result::{RelationKind, ScreenedCell, TableStats};

/// A table as text cells; renderers only draw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// Cells of one query and parameter set that a reader compares, in report order.
pub fn cells_for<'a>(r: &'a ExperimentResult, query: &str, params: &str) -> Vec<&'a Cell> {
    r.compared_cells()
        .filter(|c| c.query == query && c.params == params)
        .collect()
}

/// The per-query table: one row per variant (× settings × form).
pub fn query_table(r: &ExperimentResult, query: &str, params: &str) -> Table {
    let mut t = Table::new(&[
        "variant",
        "plan",
        "execution (median [95% CI])",
        "fastest–slowest",
        "vs reference [95% CI]",
        "evidence",
        "planning",
        "shared hit",
        "read",
        "heap fetches",
        "rows removed",
        "rows",
        "n",
    ]);
    let cells = cells_for(r, query, params);
    // Read time only where some run read from disk with track_io_timing on (cold cells).
    let io = cells
        .iter()
        .any(|c| c.plan.as_ref().is_some_and(|p| p.io_read_ms > 0.0));
    if io {
        t.header.insert(9, "I/O read".into());
    }
    for c in cells {
        let plan = c.plan.as_ref();
        let num = |f: &dyn Fn(&crate::explain::PlanSummary) -> u64| {
            plan.map(|p| fmt_count(f(p) as i64)).unwrap_or_default()
        };
        let mut time = fmt_time(c);
        if let Some(err) = &c.error
            && c.execution.is_some()
        {
            time.push_str(&format!(" (then: {})", err.lines().next().unwrap_or("")));
        }
        t.rows.push(vec![
            row_label(r, c),
            fmt_plan(c),
            time,
            fmt_spread(c.execution.as_ref()),
            if c.reference.is_none() {
                "reference".into()
            } else {
                fmt_change(c.change.as_ref())
            },
            fmt_evidence(c),
            fmt_planning(c),
            num(&|p| p.buffers.shared_hit),
            num(&|p| p.buffers.shared_read),
            num(&|p| p.heap_fetches),
            plan.map(|_| fmt_count(rows_removed(c) as i64))
                .unwrap_or_default(),
            plan.map(|p| fmt_count(p.rows as i64)).unwrap_or_default(),
            c.samples.len().to_string(),
        ]);
        if io && let Some(row) = t.rows.last_mut() {
            row.insert(9, plan.map(|p| fmt_ms(p.io_read_ms)).unwrap_or_default());
        }
    }
    t
}

/// What the cold cells of a table could not evict, once per distinct shortfall.
pub fn eviction_notes(r: &ExperimentResult, query: &str, params: &str) -> Vec<String> {
    let mut notes: Vec<String> = Vec::new();
    for c in cells_for(r, query, params) {
        if let Some(note) = &c.eviction
            && !notes.contains(note)
        {
            notes.push(note.clone());
        }
    }
    notes
}

/// The deterministic findings first: cells whose plan or buffers differ from their
/// reference's. Exact counts, no statistics needed.
pub fn evidence_table(r: &ExperimentResult) -> Table {
    let mut t = Table::new(&[
        "query",
        "params",
        "variant",
        "plan",
        "reference plan",
        "blocks (hit + read)",
        "vs reference",
    ]);
    for f in &r.analysis.findings {
        let reference = f.reference.and_then(|i| r.cells.get(i));
        for c in f.differs.iter().filter_map(|&i| r.cells.get(i)) {
            let Some(e) = &c.evidence else { continue };
            t.rows.push(vec![
                f.query.clone(),
                params_label(&f.params, &f.cache),
                row_label(r, c),
                fmt_plan(c),
                reference.map(fmt_plan).unwrap_or_default(),
                format!(
                    "{} vs {}",
                    fmt_count(e.blocks as i64),
                    fmt_count(e.reference_blocks as i64)
                ),
                e.blocks_change()
                    .map(|x| format!("{:+.1}%", x * 100.0))
                    .unwrap_or_default(),
            ]);
        }
    }
    t
}

/// Timings: per query and parameter set, the fastest cell called faster, or why none is.
pub fn timing_table(r: &ExperimentResult) -> Table {
    let mut t = Table::new(&[
        "query",
        "params",
        "fastest beyond noise",
        "execution",
        "reference",
        "change [95% CI]",
        "threshold",
        "evidence",
    ]);
    for f in &r.analysis.findings {
        let reference = f.reference.and_then(|i| r.cells.get(i));
        // With an answer decided, the cell it adopts (never one doing other work, or
        // gaining less than anyone would notice).
        let best = match r
            .analysis
            .answers
            .iter()
            .find(|a| a.query == f.query && a.params == f.params && a.cache == f.cache)
        {
            Some(a) => a.adopt,
            None => f.best,
        }
        .and_then(|i| r.cells.get(i));
        let (label, shown) = match (best, reference) {
            (Some(b), _) => (row_label(r, b), Some(b)),
            (None, Some(_)) if r.analysis.noisy.is_some() => {
                ("none named: the run is noisy".to_string(), None)
            }
            (None, Some(reference)) => (
                format!(
                    "{} (reference; nothing faster beyond noise)",
                    row_label(r, reference)
                ),
                None,
            ),
            (None, None) => ("(no successful reference cell)".into(), None),
        };
        let median = |c: Option<&Cell>| {
            c.and_then(|c| c.execution.as_ref())
                .map(|s| fmt_ms(s.median))
                .unwrap_or_default()
        };
        let threshold = shown
            .and_then(|c| c.change)
            .or_else(|| {
                f.reference.and_then(|_| {
                    cells_for(r, &f.query, &f.params)
                        .iter()
                        .filter(|c| c.cache == f.cache)
                        .find_map(|c| c.change)
                })
            })
            .map(|c| format!("{:.1}%", c.threshold * 100.0))
            .unwrap_or_default();
        t.rows.push(vec![
            f.query.clone(),
            params_label(&f.params, &f.cache),
            label,
            median(shown.or(reference)),
            median(reference),
            shown
                .map(|c| fmt_change(c.change.as_ref()))
                .unwrap_or_else(|| "~".into()),
            threshold,
            shown.map(fmt_evidence).unwrap_or_default(),
        ]);
    }
    t
}

/// The A/A control per query: how far an identical copy strayed, and the threshold it sets.
pub fn floor_table(r: &ExperimentResult) -> Table {
    let mut t = Table::new(&[
        "query",
        "params",
        "A/A control vs baseline [95% CI]",
        "floor",
        "threshold",
    ]);
    for f in &r.analysis.floors {
        let floor = if f.at_resolution() {
            format!(
                "{:.1}% (timer resolution: 1 µs is {:.1}%)",
                f.floor * 100.0,
                f.resolution.unwrap_or(0.0) * 100.0
            )
        } else {
            format!("{:.1}%", f.floor * 100.0)
        };
        let threshold = f
            .resolution
            .unwrap_or(0.0)
            .max(crate::stats::NOISE.max(f.floor));
        t.rows.push(vec![
            f.query.clone(),
            params_label(&f.params, &f.cache),
            fmt_change(f.control.as_ref()),
            floor,
            format!("{:.1}%", threshold * 100.0),
        ]);
    }
    t
}

/// The floors that measure the machine (not the timer), and how many are at the timer's
/// resolution; for reports that record the resolution.
fn measurable_floors(r: &ExperimentResult) -> (Vec<f64>, usize) {
    let mut floors: Vec<f64> = r
        .analysis
        .floors
        .iter()
        .filter(|f| !f.at_resolution())
        .map(|f| f.floor)
        .collect();
    floors.sort_by(f64::total_cmp);
    let at_resolution = r
        .analysis
        .floors
        .iter()
        .filter(|f| f.at_resolution())
        .count();
    (floors, at_resolution)
}

/// The reference cells' per-round medians, relative to their overall median: a steady
/// machine stays near 1.00.
pub fn drift_table(r: &ExperimentResult) -> Table {
    let mut t = Table::new(&[
        "query",
        "params",
        "reference median",
        "per-round medians / median: lowest–highest",
        "rounds",
    ]);
    for d in &r.analysis.drift {
        let values: Vec<f64> = d.round_medians.iter().flatten().copied().collect();
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let median = crate::stats::percentile(&sorted, 50.0);
        let (Some(lo), Some(hi)) = (sorted.first(), sorted.last()) else {
            continue;
        };
        t.rows.push(vec![
            d.query.clone(),
            d.params.clone(),
            fmt_ms(median),
            if median > 0.0 {
                format!("{:.2}–{:.2}", lo / median, hi / median)
            } else {
                "-".into()
            },
            values.len().to_string(),
        ]);
    }
    t
}

/// A variant's relations a reader cares about: tables the dataset left empty (a schema
/// the experiment's migrations bring along but never fills, e.g. another seed's tables)
/// and their indexes are left out.
pub fn shown_relations<'a>(
    r: &ExperimentResult,
    v: &'a crate::experiment::result::VariantResult,
) -> Vec<&'a crate::experiment::result::RelationSize> {
    let empty: Vec<&str> = r
        .dataset
        .row_counts
        .iter()
        .filter(|(_, n)| *n == 0)
        .map(|(t, _)| t.as_str())
        .collect();
    v.relations
        .iter()
        .filter(|rel| !empty.contains(&rel.table.as_str()))
        .collect()
}

pub fn sizes_table(r: &ExperimentResult, full_errors: bool) -> Table {
    let mut t = Table::new(&[
        "variant",
        "tables",
        "indexes",
        "total",
        "build time",
        "status",
    ]);
    for v in r.compared_variants() {
        let (mut tables, mut indexes) = (0, 0);
        for rel in shown_relations(r, v) {
            match rel.kind {
                RelationKind::Table => tables += rel.bytes,
                RelationKind::Index => indexes += rel.bytes,
            }
        }
        t.rows.push(vec![
            v.name.clone(),
            fmt_bytes(tables),
            fmt_bytes(indexes),
            fmt_bytes(tables + indexes),
            if v.cached {
                format!("{:.2} s (cached build)", v.build_seconds())
            } else {
                format!("{:.2} s", v.build_seconds())
            },
            v.error
                .as_ref()
                .map(|e| {
                    let e = if full_errors {
                        e.as_str()
                    } else {
                        e.lines().next().unwrap_or("")
                    };
                    format!("FAILED: {e}")
                })
                .unwrap_or_else(|| "ok".into()),
        ]);
    }
    t
}

/// The relations of one variant's copy (see [`shown_relations`]).
pub fn relations_table(
    r: &ExperimentResult,
    v: &crate::experiment::result::VariantResult,
) -> Table {
    let mut t = Table::new(&["relation", "kind", "on", "size", "partitions"]);
    for rel in shown_relations(r, v) {
        let kind = match rel.kind {
            RelationKind::Table => "table".to_string(),
            RelationKind::Index => format!("index ({})", rel.method),
        };
        t.rows.push(vec![
            rel.name.clone(),
            kind,
            rel.table.clone(),
            fmt_bytes(rel.bytes),
            rel.partitions.to_string(),
        ]);
    }
    t
}

pub fn statements_table(v: &crate::experiment::result::VariantResult) -> Table {
    let mut t = Table::new(&["statement", "time"]);
    for s in &v.statements {
        t.rows
            .push(vec![s.label.clone(), format!("{:.2} s", s.seconds)]);
    }
    t
}

pub fn settings_table(r: &ExperimentResult) -> Table {
    let mut t = Table::new(&["set", "values", "applied"]);
    for s in &r.settings {
        let values: Vec<String> = s.values.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let applied = match (&s.not_applicable, s.applied_server_wide.is_empty()) {
            (Some(reason), _) => format!("not applicable: {reason}"),
            (None, false) => format!(
                "server-wide (ALTER SYSTEM + reload): {}",
                s.applied_server_wide.join(", ")
            ),
            (None, true) => "per session (SET)".into(),
        };
        t.rows
            .push(vec![s.name.clone(), values.join(", "), applied]);
    }
    t
}

pub fn table_stats_table(r: &ExperimentResult) -> Table {
    let mut t = Table::new(&[
        "variant",
        "table",
        "workload",
        "updates",
        "HOT",
        "dead tuples",
        "dead / free (pgstattuple)",
        "table size",
        "index size",
        "autovacuums",
    ]);
    let pgstattuple = |x: &TableStats| match (x.dead_tuple_percent, x.free_percent) {
        (Some(d), Some(f)) => format!("{d:.1}% / {f:.1}%"),
        _ => "absent".into(),
    };
    for v in r.compared_variants() {
        for s in &v.table_stats {
            let (b, a) = (&s.before, &s.after);
            t.rows.push(vec![
                v.name.clone(),
                s.table.clone(),
                v.workload
                    .as_ref()
                    .map(|w| format!("{} batches in {:.1} s", w.batches, w.seconds))
                    .unwrap_or_else(|| "-".into()),
                fmt_count(a.updated - b.updated),
                fmt_pct(s.hot_percent()),
                fmt_count(a.dead_tuples),
                format!("{} → {}", pgstattuple(b), pgstattuple(a)),
                format!(
                    "{} → {}",
                    fmt_bytes(b.table_bytes),
                    fmt_bytes(a.table_bytes)
                ),
                format!(
                    "{} → {}",
                    fmt_bytes(b.index_bytes),
                    fmt_bytes(a.index_bytes)
                ),
                fmt_count(a.autovacuums - b.autovacuums),
            ]);
        }
    }
    t
}

pub fn maintenance_table(r: &ExperimentResult) -> Table {
    let mut t = Table::new(&[
        "variant",
        "table",
        "size before",
        "VACUUM",
        "reclaimed",
        "VACUUM FULL",
        "reclaimed",
        "size after",
    ]);
    for v in r.compared_variants() {
        for m in &v.maintenance {
            t.rows.push(vec![
                v.name.clone(),
                m.table.clone(),
                fmt_bytes(m.bytes_before),
                format!("{:.2} s", m.vacuum_seconds),
                fmt_bytes(m.bytes_before - m.bytes_after_vacuum),
                format!("{:.2} s", m.vacuum_full_seconds),
                fmt_bytes(m.bytes_after_vacuum - m.bytes_after_vacuum_full),
                fmt_bytes(m.bytes_after_vacuum_full),
            ]);
        }
    }
    t
}

/// What a shard measured, or the shards a merged report was made of (machine, load,
/// floor each: every comparison keeps the verdict its own shard's run gave it).
pub fn shard_line(r: &ExperimentResult) -> Option<String> {
    if let Some(shard) = r.shard {
        let variants: Vec<String> = r
            .compared_variants()
            .filter(|v| v.name != r.baseline)
            .map(|v| v.name.clone())
            .collect();
        return Some(format!(
            "shard {shard}: {} with the baseline and this run's own A/A control; `pgx merge` joins the shards",
            variants.join(", ")
        ));
    }
    if r.shards.is_empty() {
        return None;
    }
    let parts: Vec<String> = r
        .shards
        .iter()
        .map(|s| {
            let load = s
                .environment
                .load_before
                .map(|l| format!(", load {:.2}", l[0]))
                .unwrap_or_default();
            let floor = s
                .floors
                .iter()
                .map(|f| f.floor)
                .fold(None, |m: Option<f64>, f| Some(m.map_or(f, |m| m.max(f))));
            format!(
                "{} ({}): {} on {} CPUs{load}, {}{}, {}",
                s.shard,
                s.variants.join(", "),
                s.environment.server,
                s.environment.cpus,
                floor.map_or("no A/A control".into(), |f| format!(
                    "A/A floor up to {:.1}%",
                    f * 100.0
                )),
                if s.noisy.is_some() { ", noisy" } else { "" },
                s.environment.date
            )
        })
        .collect();
    Some(format!(
        "merged from {} shards, each compared within its own run: {}",
        r.shards.len(),
        parts.join("; ")
    ))
}

/// Where the run's wall time went, when the run recorded it: "880.0 s: dataset 42.5 s,
/// builds 150.1 s (statements 61.0 s), recorded runs 203.0 s, …".
pub fn wall_line(r: &ExperimentResult) -> Option<String> {
    let w = r.wall.as_ref().filter(|w| w.total > 0.0)?;
    let parts = [
        ("dataset", w.dataset),
        ("screening", w.screening),
        ("builds", w.builds),
        ("recorded runs", w.measured),
        (
            "unrecorded runs (warmup rounds, each fresh backend's first run)",
            w.warm,
        ),
        ("opening fresh backends", w.connect),
        ("per-node plans and form checks", w.plans),
        ("loads, maintenance, dropping copies", w.finish),
        (
            "emptying the caches for cold cells (server restarts, pg_prewarm)",
            w.evictions,
        ),
        ("other", w.other()),
    ];
    let text: Vec<String> = parts
        .iter()
        .filter(|(_, seconds)| *seconds >= 0.05)
        .map(|(label, seconds)| match *label {
            "builds" => format!(
                "builds {seconds:.1} s (statements {:.1} s; the rest copies, ANALYZE, catalog reads)",
                w.statements
            ),
            _ => format!("{label} {seconds:.1} s"),
        })
        .collect();
    Some(format!("{:.1} s: {}", w.total, text.join(", ")))
}

/// The header's short form of [`noise_sentence`]: "3.1% median, 8.0% highest; steady".
pub fn floor_line(r: &ExperimentResult) -> String {
    if r.queries.is_empty() {
        return "no EXPLAIN cells (a load experiment)".into();
    }
    if r.control.is_none() {
        return "no A/A control measured: the 5% default only".into();
    }
    let (floors, at_resolution) = if r.analysis.method.is_some() {
        measurable_floors(r)
    } else {
        let mut floors: Vec<f64> = r.analysis.floors.iter().map(|f| f.floor).collect();
        floors.sort_by(f64::total_cmp);
        (floors, 0)
    };
    let resolution_note = match at_resolution {
        0 => String::new(),
        n => format!(
            "; {n} quer{} at the timer's resolution (1 µs is most of their time), not counted",
            if n == 1 { "y" } else { "ies" }
        ),
    };
    let (Some(highest), false) = (floors.last().copied(), floors.is_empty()) else {
        if at_resolution > 0 {
            return format!("no measurable floor{resolution_note}");
        }
        return "A/A control measured no cell".into();
    };
    let verdict = match (&r.analysis.noisy, r.analysis.method.is_some()) {
        (Some(_), false) => "**noisy run** (see the summary)",
        (Some(_), true) => "**noisy queries** (see the summary)",
        (None, _) => "steady (the control did not differ from the baseline)",
    };
    format!(
        "{:.1}% median, {:.1}% highest over the queries{resolution_note}; {verdict}",
        crate::stats::percentile(&floors, 50.0) * 100.0,
        highest * 100.0,
    )
}

/// One line on how steady the run was: the noise floor and whether the control differed.
pub fn noise_sentence(r: &ExperimentResult) -> String {
    if r.queries.is_empty() {
        return "No EXPLAIN cells (a load experiment): the load summary judges differences by the spread of repeated runs.".into();
    }
    let Some(control) = &r.control else {
        return "No A/A control was measured (runs.control: false or --no-control): changes are judged against the 5% default only.".into();
    };
    let floors: Vec<f64> = r.analysis.floors.iter().map(|f| f.floor).collect();
    let highest = floors.iter().copied().fold(0.0, f64::max);
    let mut sorted = floors.clone();
    sorted.sort_by(f64::total_cmp);
    let median = crate::stats::percentile(&sorted, 50.0);
    let new_method = r.analysis.method.is_some();
    let steady = match &r.analysis.noisy {
        Some(why) if new_method && r.analysis.noisy_builds => format!(
            "Builds differ: {why}. Those queries name no winner on timing unless its plan or blocks differ too; plans and buffers still hold. A quieter machine would not change this: compare such variants by their plans and blocks, or by changes well beyond the control's."
        ),
        Some(why) if new_method => format!(
            "Noisy queries: {why}. Those queries name no winner on timing unless its plan or blocks differ too; plans and buffers still hold. Run again on a quieter machine, or with more rounds (`--rounds`)."
        ),
        Some(why) if r.analysis.noisy_builds => format!(
            "Builds differ: {why}. No winner is named on timing; plans and buffers still hold. A quieter machine would not change this: compare such variants by their plans and blocks, or by changes well beyond the control's."
        ),
        Some(why) => format!(
            "Noisy run: {why}. No winner is named on timing; plans and buffers still hold. Run again on a quieter machine, or with more rounds (`--rounds`)."
        ),
        None => {
            "The control did not differ from the baseline beyond noise: the run is steady.".into()
        }
    };
    if floors.is_empty() {
        return format!("A/A control (`{control}`): no cell measured. {steady}");
    }
    format!(
        "A/A control (`{control}`, a second copy of the baseline measured like every variant): noise floor {:.1}% median, {:.1}% highest over the queries. {steady}",
        median * 100.0,
        highest * 100.0
    )
}

/// Do any cells differ on plans or buffers (for the summary's wording)?
pub fn any_deterministic_difference(r: &ExperimentResult) -> bool {
    r.compared_cells()
        .any(|c| c.evidence.as_ref().is_some_and(differs))
}

/// Each compared variant's load result, for the load reporters (name/result pairs).
pub fn load_results(r: &ExperimentResult) -> Vec<(String, crate::loadtest::LoadResult)> {
    r.compared_variants()
        .filter_map(|v| v.load.clone().map(|l| (v.name.clone(), l)))
        .collect()
}

/// The A/A control's load, when it ran one.
pub fn control_load(r: &ExperimentResult) -> Option<&crate::loadtest::LoadResult> {
    r.variants
        .iter()
        .find(|v| v.control)
        .and_then(|v| v.load.as_ref())
}

/// A screened cell's estimated plan as `fmt_plan` draws a measured one, hypothetical
/// indexes named as such ("Index Scan hypothetical t_id").
pub fn fmt_estimated_plan(r: &ExperimentResult, cell: &ScreenedCell) -> String {
    let Some(plan) = &cell.plan else {
        return match &cell.error {
            Some(e) => format!("error: {}", e.lines().next().unwrap_or("")),
            None => "-".into(),
        };
    };
    let mut out = fmt_access(plan.access).to_string();
    if !plan.index_names.is_empty() {
        let names: Vec<String> = plan
            .index_names
            .iter()
            .map(|n| {
                screening::hypothetical_label(r, &cell.variant, n).unwrap_or_else(|| n.clone())
            })
            .collect();
        out.push(' ');
        out.push_str(&names.join(", "));
    }
    if plan.index_ordered {
        out.push_str(" (ordered by index)");
    }
    out
}

/// One line on the screening: what HypoPG could do, how long it took against the real
/// builds, and how many estimates the measurement contradicts.
pub fn screening_sentence(r: &ExperimentResult) -> Option<String> {
    let s = r.screening.as_ref()?;
    if let Some(why) = &s.unavailable {
        return Some(format!("Screening was not possible: {why}."));
    }
    let screenable = s.variants.iter().filter(|v| v.screenable).count();
    let mut text = format!(
        "HypoPG {}: {screenable} of {} variants screenable; {} estimated plans under settings `{}` in {:.2} s, the copy of the base included",
        s.hypopg_version.as_deref().unwrap_or("?"),
        s.variants.len(),
        s.cells.len(),
        s.settings,
        s.seconds
    );
    if s.only {
        text.push_str(" (`--screen-only`: nothing was built or measured).");
        return Some(text);
    }
    let built: f64 = r
        .compared_variants()
        .filter(|v| {
            s.variants
                .iter()
                .any(|sv| sv.screenable && sv.name == v.name)
        })
        .map(|v| v.build_seconds())
        .sum();
    let _ = write!(
        text,
        "; building the screenable variants for real took {built:.2} s"
    );
    let cells = screening::side_by_side(r)
        .iter()
        .filter(|c| !c.disagreements.is_empty())
        .count();
    let sizes = screening::index_estimates(r)
        .iter()
        .filter(|e| e.off)
        .count();
    let _ = write!(
        text,
        ". Estimate and measurement disagree on {cells} cell{} and {sizes} index size{}.",
        if cells == 1 { "" } else { "s" },
        if sizes == 1 { "" } else { "s" }
    );
    Some(text)
}

/// Screening per variant: screenable or why not; each hypothetical index's estimated
/// size, beside the real index's once it was built.
pub fn screening_variants_table(r: &ExperimentResult) -> Table {
    let Some(s) = &r.screening else {
        return Table::new(&[]);
    };
    let measured = !s.only;
    let mut header = vec![
        "variant",
        "screenable",
        "hypothetical index",
        "estimated size",
    ];
    if measured {
        header.extend(["real index", "real size", "estimate / real", "real build"]);
    }
    let mut t = Table::new(&header);
    let estimates = screening::index_estimates(r);
    for sv in &s.variants {
        let build = r
            .variants
            .iter()
            .find(|v| v.name == sv.name)
            .map(|v| match &v.error {
                Some(_) => "failed".to_string(),
                None if v.cached => format!("{:.2} s (cached build)", v.build_seconds()),
                None => format!("{:.2} s", v.build_seconds()),
            })
            .unwrap_or_default();
        let mine: Vec<&screening::IndexEstimate> =
            estimates.iter().filter(|e| e.variant == sv.name).collect();
        if !sv.screenable || mine.is_empty() {
            let status = match (&sv.reason, sv.name == r.baseline) {
                (Some(reason), true) => format!(
                    "no: {reason}; the reference estimates are the base's, without the baseline's statements"
                ),
                (Some(reason), false) => format!("no: {reason}"),
                (None, true) => "yes (the reference: no hypothetical index)".into(),
                (None, false) if s.unavailable.is_some() => "yes (not screened)".into(),
                (None, false) => "yes (no index: plans as the base)".into(),
            };
            let mut row = vec![sv.name.clone(), status, "-".into(), "-".into()];
            if measured {
                row.extend(["-".into(), "-".into(), "-".into(), build.clone()]);
            }
            t.rows.push(row);
            continue;
        }
        for e in mine {
            let label = format!(
                "{} ({} on {})",
                screening::hypothetical_label(r, &sv.name, &e.index.name)
                    .unwrap_or_else(|| e.index.name.clone()),
                e.index.method,
                e.index.table
            );
            let estimated = match e.index.partitions {
                0 => fmt_bytes(e.index.estimated_bytes),
                n => format!(
                    "{} (sum over {n} partitions)",
                    fmt_bytes(e.index.estimated_bytes)
                ),
            };
            let mut row = vec![sv.name.clone(), "yes".into(), label, estimated];
            if measured {
                row.push(e.real.map_or_else(
                    || "not found".to_string(),
                    |x| screening::unqualified(&x.name),
                ));
                row.push(e.real.map_or_else(|| "-".into(), |x| fmt_bytes(x.bytes)));
                row.push(match e.factor {
                    Some(f) if e.off => format!(
                        "{f:.2}× DISAGREE: off by more than {}×",
                        screening::SIZE_FACTOR
                    ),
                    Some(f) => format!("{f:.2}×"),
                    None => "-".into(),
                });
                row.push(build.clone());
            }
            t.rows.push(row);
        }
    }
    t
}

/// Screening per cell, in the per-query tables' order: the estimated plan and cost
/// change; after a real run, the real plan and measured change beside them, and where
/// the two disagree.
pub fn screening_cells_table(r: &ExperimentResult) -> Table {
    let Some(s) = &r.screening else {
        return Table::new(&[]);
    };
    let measured = !s.only;
    let mut header = vec![
        "query",
        "params",
        "variant",
        "estimated plan",
        "est. cost",
        "est. cost vs reference",
    ];
    if measured {
        header.extend([
            "real plan",
            "measured vs reference",
            "new index used (est. / real)",
            "agreement",
        ]);
    }
    let mut t = Table::new(&header);
    let order = |c: &ScreenedCell| {
        let q = r.queries.iter().position(|q| q.name == c.query);
        let p = q.and_then(|q| r.queries[q].params.iter().position(|p| p.label == c.params));
        let v = s.variants.iter().position(|v| v.name == c.variant);
        (q, p, v)
    };
    let mut rows = screening::side_by_side(r);
    rows.sort_by_key(|x| order(x.screened));
    for x in rows {
        let c = x.screened;
        let mut variant = c.variant.clone();
        if r.queries
            .iter()
            .find(|q| q.name == c.query)
            .is_some_and(|q| q.forms.len() > 1)
        {
            variant.push_str(&format!(" · {}", c.form));
        }
        let is_baseline = c.variant == r.baseline;
        let mut row = vec![
            c.query.clone(),
            c.params.clone(),
            variant,
            fmt_estimated_plan(r, c),
            c.cost.map(|x| format!("{x:.2}")).unwrap_or_default(),
            match (c.reference, c.cost_change) {
                (None, _) => "reference".into(),
                (Some(_), Some(change)) => format!("{:+.1}%", change * 100.0),
                (Some(_), None) => "-".into(),
            },
        ];
        if measured {
            row.push(x.measured.map(fmt_plan).unwrap_or_else(|| "-".into()));
            row.push(match x.measured {
                Some(m) if m.reference.is_none() => "reference".into(),
                Some(m) => fmt_change(m.change.as_ref()),
                None => "-".into(),
            });
            row.push(if is_baseline {
                "-".into()
            } else {
                format!(
                    "{} / {}",
                    if c.uses_hypothetical { "yes" } else { "no" },
                    match x.real_uses_index {
                        Some(true) => "yes",
                        Some(false) => "no",
                        None => "-",
                    }
                )
            });
            row.push(if is_baseline {
                "reference".into()
            } else if x.measured.is_none() {
                "not measured".into()
            } else if x.disagreements.is_empty() {
                match x.measured.and_then(|m| m.change.as_ref()) {
                    Some(m)
                        if m.verdict == crate::stats::Verdict::NoChange
                            && c.cost_change.is_some_and(|e| e.abs() > m.threshold) =>
                    {
                        "agree (the measured change is not called at this n)".into()
                    }
                    _ => "agree".into(),
                }
            } else {
                format!("DISAGREE: {}", x.disagreements.join("; "))
            });
        }
        t.rows.push(row);
    }
    t
}
