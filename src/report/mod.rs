//! Reporters: each renders the same `ExperimentResult` (terminal, Markdown, JSON). The
//! tables both the terminal and the Markdown report show are built once, in `view`.

pub mod answer;
pub mod json;
pub mod loadtest;
pub mod markdown;
pub mod method;
pub mod plan_tree;
pub mod terminal;
pub mod view;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::experiment::result::{Cell, ExperimentResult};
use crate::explain::Access;
use crate::stats::{Change, Verdict};
pub use crate::units::{fmt_bytes, fmt_count, fmt_ms};

/// Write `<out>/<stem>.md` and `<out>/<stem>.json`; returns their paths. The Markdown
/// names where the experiment's reports at other scales in `out` differ from this one.
pub fn write_reports(result: &ExperimentResult, out: &Path, stem: &str) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let md = out.join(format!("{stem}.md"));
    let json = out.join(format!("{stem}.json"));
    let others = other_scales(out, result);
    std::fs::write(&md, markdown::render_with(result, &others))
        .with_context(|| format!("cannot write {}", md.display()))?;
    std::fs::write(&json, json::render(result)?)
        .with_context(|| format!("cannot write {}", json.display()))?;
    Ok(vec![md, json])
}

/// The same experiment's reports at other scales in `dir` (file stem and result), in
/// file name order; unreadable files are passed over.
pub fn other_scales(dir: &Path, result: &ExperimentResult) -> Vec<(String, ExperimentResult)> {
    let mut found: Vec<(String, ExperimentResult)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            let stem = path.file_stem()?.to_str()?.to_string();
            if path.extension()? != "json"
                || !(stem == result.experiment
                    || stem.starts_with(&format!("{}-scale", result.experiment)))
            {
                return None;
            }
            let other = json::parse(&std::fs::read_to_string(&path).ok()?).ok()?;
            (other.experiment == result.experiment && other.scale != result.scale)
                .then_some((stem, other))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// "0.84 ms [0.81, 0.90]": median execution time and its 95% confidence interval.
pub fn fmt_time(cell: &Cell) -> String {
    if let Some(err) = &cell.error
        && cell.execution.is_none()
    {
        return format!("error: {}", err.lines().next().unwrap_or(""));
    }
    if cell.untimed.is_some() && cell.execution.is_none() {
        return "not timed".into();
    }
    fmt_summary(cell.execution.as_ref())
}

pub fn fmt_summary(summary: Option<&crate::stats::Summary>) -> String {
    match summary {
        Some(s) => match s.median_ci {
            Some((lo, hi)) => format!("{} [{}, {}]", fmt_ms(s.median), fmt_ms(lo), fmt_ms(hi)),
            None => fmt_ms(s.median),
        },
        None => "-".into(),
    }
}

/// "0.80–1.20 ms": the fastest and slowest run seen.
pub fn fmt_spread(summary: Option<&crate::stats::Summary>) -> String {
    summary.map_or_else(String::new, |s| {
        format!("{}–{}", fmt_ms(s.min), fmt_ms(s.max))
    })
}

fn pct(x: f64) -> String {
    format!("{:+.1}%", x * 100.0)
}

/// "-42.1% [-44.0, -40.2]" when called; "~ (+2.1% [-3.0, +6.2])" when not: the
/// measured change and its interval, which stays inside the noise band or is too wide;
/// "~ (+80.0%; 3 rounds, too few to call: 12 needed)" when no call was possible.
pub fn fmt_change(change: Option<&Change>) -> String {
    let Some(c) = change else {
        return String::new();
    };
    let interval =
        c.ci.map(|(lo, hi)| format!(" [{}, {}]", pct(lo), pct(hi)))
            .unwrap_or_default();
    match (c.verdict, c.rounds_needed) {
        (Verdict::NoChange, Some(needed)) => format!(
            "~ ({}{interval}; {} round{}, too few to call: {needed} needed)",
            pct(c.ratio),
            c.rounds,
            if c.rounds == 1 { "" } else { "s" }
        ),
        (Verdict::NoChange, None) if c.within => format!(
            "~ ({}{interval}; within ±{:.1}%)",
            pct(c.ratio),
            c.threshold * 100.0
        ),
        (Verdict::NoChange, None) => format!("~ ({}{interval})", pct(c.ratio)),
        _ => format!("{}{interval}", pct(c.ratio)),
    }
}

pub fn verdict_word(change: Option<&Change>) -> &'static str {
    match change.map(|c| c.verdict) {
        Some(Verdict::Faster) => "faster",
        Some(Verdict::Slower) => "slower",
        Some(Verdict::NoChange) => "no change beyond noise",
        None => "",
    }
}

/// "same plan, same buffers", "plan differs, buffers -96%": what cannot be noise.
pub fn fmt_evidence(cell: &Cell) -> String {
    let Some(e) = &cell.evidence else {
        return String::new();
    };
    // A function call's plan is a bare Result: its statements' plans and most of their
    // work are out of EXPLAIN's sight, so there is no exact evidence to show.
    if cell.plan.as_ref().is_some_and(|p| p.access == Access::None) {
        return "no table scan in the plan (a function's statements are out of EXPLAIN's sight)"
            .into();
    }
    let plan = if e.same_plan {
        "same plan"
    } else {
        "plan differs"
    };
    let buffers = match e.blocks_change() {
        _ if e.same_buffers() => "same buffers".to_string(),
        Some(change) => format!("buffers {}", pct(change)),
        None => format!("{} blocks (reference 0)", fmt_count(e.blocks as i64)),
    };
    let mut out = format!("{plan}, {buffers}");
    if e.rows != e.reference_rows {
        out.push_str(&format!(
            ", rows {} vs {}",
            fmt_count(e.rows as i64),
            fmt_count(e.reference_rows as i64)
        ));
    }
    out
}

/// The planning time median, with its change when called.
pub fn fmt_planning(cell: &Cell) -> String {
    let Some(s) = &cell.planning else {
        return String::new();
    };
    match &cell.planning_change {
        Some(c) if c.verdict != Verdict::NoChange => {
            format!("{} ({})", fmt_ms(s.median), pct(c.ratio))
        }
        _ => fmt_ms(s.median),
    }
}

/// How a plan reaches table rows, in EXPLAIN's words.
pub fn fmt_access(access: Access) -> &'static str {
    match access {
        Access::IndexOnlyScan => "Index Only Scan",
        Access::IndexScan => "Index Scan",
        Access::BitmapScan => "Bitmap Scan",
        Access::SeqScan => "Seq Scan",
        Access::Mixed => "Mixed",
        Access::None => "no scan",
    }
}

/// Compact plan: access method, indexes, partitions ("Index Only Scan covering ×16").
pub fn fmt_plan(cell: &Cell) -> String {
    let Some(plan) = &cell.plan else {
        return "-".into();
    };
    let mut out = fmt_access(plan.access).to_string();
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
    if result.cells.iter().any(|c| c.cache != cell.cache) {
        label.push_str(&format!(" · {}", cell.cache));
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

/// "p1", or "p1 · cold" for a row of another cache state than warm.
pub fn params_label(params: &str, cache: &str) -> String {
    if cache == "warm" {
        params.to_string()
    } else {
        format!("{params} · {cache}")
    }
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
