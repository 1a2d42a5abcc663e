//! Reporters: each renders the same `ExperimentResult` (terminal, Markdown, JSON).

pub mod json;
pub mod load;
pub mod markdown;
pub mod terminal;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::experiment::result::{Cell, ExperimentResult};
use crate::explain::Access;
use crate::stats::Verdict;

/// Write `<out>/<stem>.md` and `<out>/<stem>.json`; returns their paths.
pub fn write_reports(result: &ExperimentResult, out: &Path, stem: &str) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let md = out.join(format!("{stem}.md"));
    let json = out.join(format!("{stem}.json"));
    std::fs::write(&md, markdown::render(result))
        .with_context(|| format!("cannot write {}", md.display()))?;
    std::fs::write(&json, json::render(result)?)
        .with_context(|| format!("cannot write {}", json.display()))?;
    Ok(vec![md, json])
}

pub fn fmt_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.3} ms")
    }
}

pub fn fmt_bytes(bytes: i64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / 1024.0 / 1024.0 / 1024.0)
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1024.0 / 1024.0)
    } else if b >= 1024.0 {
        format!("{:.0} KiB", b / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

/// 1234567 -> "1,234,567"
pub fn fmt_count(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// "0.84 ms [0.81, 0.90]": median and its 95% confidence interval.
pub fn fmt_time(cell: &Cell) -> String {
    if let Some(err) = &cell.error {
        return format!("error: {}", err.lines().next().unwrap_or(""));
    }
    match &cell.time {
        Some(s) => match s.median_ci {
            Some((lo, hi)) => format!("{} [{}, {}]", fmt_ms(s.median), fmt_ms(lo), fmt_ms(hi)),
            None => fmt_ms(s.median),
        },
        None => "-".into(),
    }
}

/// "-42.1%" when significant, "~" when not, "" for the reference itself.
pub fn fmt_change(cell: &Cell) -> String {
    match &cell.change {
        Some(c) => crate::stats::format_change(c),
        None => String::new(),
    }
}

pub fn verdict_word(cell: &Cell) -> &'static str {
    match cell.change.map(|c| c.verdict) {
        Some(Verdict::Faster) => "faster",
        Some(Verdict::Slower) => "slower",
        Some(Verdict::NoChange) => "no significant change",
        None => "",
    }
}

/// Compact plan: access method, indexes, partitions ("Index Only Scan covering ×16").
pub fn fmt_plan(cell: &Cell) -> String {
    let Some(plan) = &cell.plan else {
        return "-".into();
    };
    let access = match plan.access {
        Access::IndexOnlyScan => "Index Only Scan",
        Access::IndexScan => "Index Scan",
        Access::BitmapScan => "Bitmap Scan",
        Access::SeqScan => "Seq Scan",
        Access::Mixed => "Mixed",
        Access::None => "no scan",
    };
    let mut out = access.to_string();
    if !plan.index_names.is_empty() {
        out.push(' ');
        out.push_str(&plan.index_names.join(", "));
    }
    if plan.index_ordered {
        out.push_str(" (ordered by index)");
    }
    if cell.partitions_total > 0 {
        out.push_str(&format!(
            " ({}/{} partitions)",
            plan.partitions_scanned, cell.partitions_total
        ));
    } else if plan.partitions_scanned > 1 {
        out.push_str(&format!(" ({} partitions)", plan.partitions_scanned));
    }
    if cell.plan_changed() {
        out.push_str(" [plan changed between runs]");
    }
    out
}

/// Rows the plan read and threw away: filter plus index recheck.
pub fn rows_removed(cell: &Cell) -> u64 {
    cell.plan
        .as_ref()
        .map(|p| p.rows_removed_by_filter + p.rows_removed_by_recheck)
        .unwrap_or(0)
}

/// Label of a cell's row in a per-query table: variant, plus settings and form when
/// those axes have more than one value.
pub fn row_label(result: &ExperimentResult, cell: &Cell) -> String {
    let mut label = cell.variant.clone();
    if result.settings.len() > 1 {
        label.push_str(&format!(" · {}", cell.settings));
    }
    let forms = result
        .queries
        .iter()
        .find(|q| q.name == cell.query)
        .map_or(1, |q| q.forms.len());
    if forms > 1 {
        label.push_str(&format!(" · {}", cell.form));
    }
    label
}

/// Cells of one query and parameter set, in matrix order.
pub fn cells_for<'a>(result: &'a ExperimentResult, query: &str, params: &str) -> Vec<&'a Cell> {
    result
        .cells
        .iter()
        .filter(|c| c.query == query && c.params == params)
        .collect()
}

/// The fastest cell of a query/params group that is significantly faster than its
/// reference; None when nothing beats the reference beyond noise.
pub fn best_significant<'a>(cells: &[&'a Cell]) -> Option<&'a Cell> {
    cells
        .iter()
        .filter(|c| c.time.is_some() && c.change.is_some_and(|ch| ch.verdict == Verdict::Faster))
        .min_by(|a, b| {
            let (x, y) = (
                a.time.as_ref().map_or(f64::MAX, |t| t.median),
                b.time.as_ref().map_or(f64::MAX, |t| t.median),
            );
            x.total_cmp(&y)
        })
        .copied()
}

/// Parameter values as a reader would write them: `5, 12345, NULL`; long arrays are cut
/// to their first elements and a count (the JSON report keeps them whole).
pub fn fmt_values(values: &[Option<String>]) -> String {
    values
        .iter()
        .map(|v| match v {
            None => "NULL".to_string(),
            Some(text) if text.chars().count() > 80 => {
                let head: String = text.chars().take(60).collect();
                let elements = if text.starts_with('{') {
                    text.matches(',').count() + 1
                } else {
                    0
                };
                if elements > 1 {
                    format!("{head}… ({elements} elements)")
                } else {
                    format!("{head}… ({} characters)", text.chars().count())
                }
            }
            Some(text) => text.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// "12.3" or "-" for an absent percentage.
pub fn fmt_pct(value: Option<f64>) -> String {
    value
        .map(|v| format!("{v:.1}%"))
        .unwrap_or_else(|| "-".into())
}

/// Rows of the table-statistics table: one per variant and table.
pub fn table_stats_rows(result: &ExperimentResult) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for v in &result.variants {
        for t in &v.table_stats {
            let (b, a) = (&t.before, &t.after);
            let pgstattuple = |x: &crate::experiment::result::TableStats| match (
                x.dead_tuple_percent,
                x.free_percent,
            ) {
                (Some(d), Some(f)) => format!("{d:.1}% / {f:.1}%"),
                _ => "absent".into(),
            };
            rows.push(vec![
                v.name.clone(),
                t.table.clone(),
                v.workload
                    .as_ref()
                    .map(|w| format!("{} batches in {:.1} s", w.batches, w.seconds))
                    .unwrap_or_else(|| "-".into()),
                fmt_count(a.updated - b.updated),
                fmt_pct(t.hot_percent()),
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
    rows
}

pub const TABLE_STATS_HEADER: [&str; 10] = [
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
];

pub fn maintenance_rows(result: &ExperimentResult) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for v in &result.variants {
        for m in &v.maintenance {
            rows.push(vec![
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
    rows
}

pub const MAINTENANCE_HEADER: [&str; 8] = [
    "variant",
    "table",
    "size before",
    "VACUUM",
    "reclaimed",
    "VACUUM FULL",
    "reclaimed",
    "size after",
];

/// Each variant's load result, for the load reporters (which take name/result pairs).
pub fn load_results(result: &ExperimentResult) -> Vec<(String, crate::load::LoadResult)> {
    result
        .variants
        .iter()
        .filter_map(|v| v.load.clone().map(|l| (v.name.clone(), l)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_parameter_arrays_are_cut_with_a_count() {
        let array = format!(
            "{{{}}}",
            (1..=4000)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        let shown = fmt_values(&[Some("5".into()), Some(array), None]);
        assert!(shown.starts_with("5, {1,2,3,"), "{shown}");
        assert!(shown.ends_with("… (4000 elements), NULL"), "{shown}");
        assert!(shown.len() < 120);
        assert_eq!(fmt_count(1234567), "1,234,567");
    }
}
