//! The terminal: the same tables as the Markdown report (`view`), drawn with comfy-table.

use comfy_table::{ContentArrangement, presets::UTF8_FULL_CONDENSED};

use super::view::{self, Table};
use super::*;
use crate::experiment::result::ExperimentResult;

/// A view table as comfy-table draws it.
pub fn draw(table: &Table) -> String {
    let mut t = comfy_table::Table::new();
    t.load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(table.header.clone());
    for row in &table.rows {
        t.add_row(row.clone());
    }
    t.to_string()
}

pub fn render(result: &ExperimentResult) -> String {
    let mut out = String::new();
    if result.screening.as_ref().is_some_and(|s| s.only) {
        screening(&mut out, result);
        return out;
    }
    for query in &result.queries {
        for params in &query.params {
            out.push_str(&format!(
                "\n{} · {} ({})\n{}\n",
                query.name,
                params.label,
                fmt_values(&params.values),
                draw(&view::query_table(result, &query.name, &params.label))
            ));
            for note in view::eviction_notes(result, &query.name, &params.label) {
                out.push_str(&format!("cold cells were not fully cold: {note}\n"));
            }
            for eq in query.equivalence.iter().filter(|e| !e.equivalent) {
                out.push_str(&format!(
                    "WARNING: forms of {} differ on {} / {} / {}: {:?}\n",
                    query.name, eq.variant, eq.settings, eq.params, eq.fingerprints
                ));
            }
        }
    }
    let sections = [
        ("sizes and build times", view::sizes_table(result, false)),
        (
            "table statistics around the workload",
            view::table_stats_table(result),
        ),
        ("VACUUM vs VACUUM FULL", view::maintenance_table(result)),
        (
            "plans and buffers that differ from the reference (exact)",
            view::evidence_table(result),
        ),
        ("timings (paired rounds)", view::timing_table(result)),
        ("noise floor (A/A control)", view::floor_table(result)),
    ];
    for (title, table) in sections {
        if !table.is_empty() {
            out.push_str(&format!("\n{title}\n{}\n", draw(&table)));
        }
    }
    screening(&mut out, result);
    let load = view::load_results(result);
    if !load.is_empty() {
        out.push_str(&super::loadtest::terminal(&load));
    }
    for set in result
        .settings
        .iter()
        .filter(|s| s.not_applicable.is_some())
    {
        out.push_str(&format!(
            "settings {}: not applicable: {}\n",
            set.name,
            set.not_applicable.as_deref().unwrap_or("")
        ));
    }
    let s = &result.schedule;
    out.push_str(&format!(
        "\n{}\n{} at scale {} on {}; dataset {} ({:.1}s); {} rounds × {} run(s) per cell after {} warmup, seed {}; {}\n",
        view::noise_sentence(result),
        result.experiment,
        result.scale,
        result.environment.postgres_version,
        if result.dataset.reused { "reused from cache" } else { "built" },
        result.dataset.build_seconds,
        s.rounds,
        s.block,
        s.warmup,
        s.seed,
        load_average_text(result),
    ));
    if let Some(wall) = view::wall_line(result) {
        out.push_str(&format!("wall time {wall}\n"));
    }
    if let Some(shards) = view::shard_line(result) {
        out.push_str(&format!("{shards}\n"));
    }
    for line in super::answer::lines(result)
        .into_iter()
        .chain(super::loadtest::answer_lines_with(
            &view::load_results(result),
            view::control_load(result),
        ))
    {
        out.push_str(&format!("answer: {}\n", line.replace(['`', '*'], "")));
    }
    out.push_str(super::method::legend(result));
    out.push('\n');
    out
}

/// "load average 0.52 → 1.10 (1 min)".
pub fn load_average_text(r: &ExperimentResult) -> String {
    match (r.environment.load_before, r.environment.load_after) {
        (Some(b), Some(a)) => format!(
            "load average {:.2} → {:.2} (1 min; 5 min {:.2} → {:.2})",
            b[0], a[0], b[1], a[1]
        ),
        _ => "load average unknown".into(),
    }
}

/// The screening's sentence and tables, when the run screened.
fn screening(out: &mut String, result: &ExperimentResult) {
    if result.screening.is_none() {
        return;
    }
    out.push_str("\nscreening (what-if, HypoPG)\n");
    if let Some(sentence) = view::screening_sentence(result) {
        out.push_str(&format!("{sentence}\n"));
    }
    for table in [
        view::screening_variants_table(result),
        view::screening_cells_table(result),
    ] {
        if !table.is_empty() {
            out.push_str(&format!("{}\n", draw(&table)));
        }
    }
}
