//! Tables for the terminal (comfy-table): one per query and parameter set, then sizes.

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};

use super::*;
use crate::experiment::result::ExperimentResult;

pub fn render(result: &ExperimentResult) -> String {
    let mut out = String::new();
    for query in &result.queries {
        for params in &query.params {
            let cells = cells_for(result, &query.name, &params.label);
            let mut table = Table::new();
            table
                .load_style(UTF8_FULL_CONDENSED)
                .set_content_arrangement(ContentArrangement::Dynamic)
                .set_header(vec![
                    "variant",
                    "plan",
                    "time (median [95% CI])",
                    "vs baseline",
                    "planning",
                    "shared hit",
                    "read",
                    "heap fetches",
                    "rows removed",
                ]);
            for cell in &cells {
                let plan = cell.plan.as_ref();
                table.add_row(vec![
                    row_label(result, cell),
                    fmt_plan(cell),
                    fmt_time(cell),
                    fmt_change(cell),
                    cell.planning
                        .as_ref()
                        .map(|s| fmt_ms(s.median))
                        .unwrap_or_default(),
                    plan.map(|p| fmt_count(p.buffers.shared_hit as i64))
                        .unwrap_or_default(),
                    plan.map(|p| fmt_count(p.buffers.shared_read as i64))
                        .unwrap_or_default(),
                    plan.map(|p| fmt_count(p.heap_fetches as i64))
                        .unwrap_or_default(),
                    fmt_count(rows_removed(cell) as i64),
                ]);
            }
            out.push_str(&format!(
                "\n{} · {} ({})\n{table}\n",
                query.name,
                params.label,
                fmt_values(&params.values)
            ));
            for eq in query.equivalence.iter().filter(|e| !e.equivalent) {
                out.push_str(&format!(
                    "WARNING: forms of {} differ on {} / {} / {}: {:?}\n",
                    query.name, eq.variant, eq.settings, eq.params, eq.fingerprints
                ));
            }
        }
    }
    let mut sizes = Table::new();
    sizes
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(vec![
            "variant",
            "tables",
            "indexes",
            "total",
            "build time",
            "status",
        ]);
    for v in &result.variants {
        sizes.add_row(vec![
            v.name.clone(),
            fmt_bytes(v.table_bytes()),
            fmt_bytes(v.index_bytes()),
            fmt_bytes(v.table_bytes() + v.index_bytes()),
            format!("{:.2} s", v.build_seconds()),
            v.error
                .as_ref()
                .map(|e| format!("FAILED: {}", e.lines().next().unwrap_or("")))
                .unwrap_or_else(|| "ok".into()),
        ]);
    }
    out.push_str(&format!("\nsizes and build times\n{sizes}\n"));
    for (title, header, rows) in [
        (
            "table statistics around the workload",
            &TABLE_STATS_HEADER[..],
            table_stats_rows(result),
        ),
        (
            "VACUUM vs VACUUM FULL",
            &MAINTENANCE_HEADER[..],
            maintenance_rows(result),
        ),
    ] {
        if rows.is_empty() {
            continue;
        }
        let mut table = Table::new();
        table
            .load_style(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header(header.to_vec());
        for row in rows {
            table.add_row(row);
        }
        out.push_str(&format!("\n{title}\n{table}\n"));
    }
    let load = load_results(result);
    if !load.is_empty() {
        out.push_str(&format!("\nload\n{}\n", super::load::terminal(&load)));
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
    out.push_str(&format!(
        "\n{} at scale {} on {}; dataset {} ({:.1}s); ~ = no significant change (Mann-Whitney, Holm, α=0.05, noise 5%)\n",
        result.experiment,
        result.scale,
        result.environment.postgres_version,
        if result.dataset.reused { "reused from cache" } else { "built" },
        result.dataset.build_seconds
    ));
    out
}
