//! `reports/<experiment>.md`, for review in a pull request: header, summary first, one
//! table and chart per query, sizes, then every plan folded away. The layout depends only
//! on the experiment's inputs, so a re-run shows up as a diff of numbers.

use std::fmt::Write;

use super::*;
use crate::experiment::result::{ExperimentResult, RelationKind};

pub fn render(r: &ExperimentResult) -> String {
    let mut md = String::new();
    header(&mut md, r);
    summary(&mut md, r);
    settings(&mut md, r);
    queries(&mut md, r);
    sizes(&mut md, r);
    table_stats(&mut md, r);
    load(&mut md, r);
    plans(&mut md, r);
    method(&mut md, r);
    md
}

/// Escape what would break a table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn header(md: &mut String, r: &ExperimentResult) {
    let e = &r.environment;
    let _ = writeln!(md, "# Experiment `{}`\n", r.experiment);
    if r.interrupted {
        let measured: Vec<String> = r.variants.iter().map(|v| format!("`{}`", v.name)).collect();
        let _ = writeln!(
            md,
            "> **Partial run:** interrupted before it finished; measured: {} (the last one possibly incomplete).\n",
            measured.join(", ")
        );
    }
    if !r.about.is_empty() {
        let _ = writeln!(md, "{}\n", r.about);
    }
    let rows: Vec<String> = r
        .dataset
        .row_counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(t, n)| format!("`{t}` {}", fmt_count(*n)))
        .collect();
    let _ = writeln!(md, "| | |\n|---|---|");
    if !r.seed.is_empty() {
        let _ = writeln!(md, "| Seed | {} |", cell(&r.seed));
    }
    let _ = writeln!(
        md,
        "| Scale | **{}** (1 = the seed's production size) |",
        r.scale
    );
    let _ = writeln!(md, "| Rows | {} |", rows.join(" · "));
    let _ = writeln!(
        md,
        "| Server | {} · {} |",
        e.postgres_version,
        cell(&e.server)
    );
    let settings: Vec<String> = e
        .server_settings
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let _ = writeln!(md, "| Server settings | {} |", settings.join(", "));
    let _ = writeln!(md, "| Machine | {} CPUs, {} GiB |", e.cpus, e.memory_gib);
    let _ = writeln!(
        md,
        "| Runs | {} warmup + {} measured per cell, timeout {} ms |",
        r.runs.warmup, r.runs.repeat, r.runs.timeout_ms
    );
    let _ = writeln!(
        md,
        "| Dataset | built in {:.1} s ({}) |",
        r.dataset.build_seconds,
        r.dataset
            .steps
            .iter()
            .map(|s| format!("{} {:.1} s", s.label, s.seconds))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(md, "| Baseline | `{}` |", r.baseline);
    let _ = writeln!(
        md,
        "| Produced by | `pgx experiment {}` · pgx {} · commit `{}` · {} |\n",
        r.experiment, e.pgx_version, e.git_commit, e.date
    );
}

fn summary(md: &mut String, r: &ExperimentResult) {
    let _ = writeln!(md, "## Summary\n");
    let _ = writeln!(
        md,
        "The best cell per query is the fastest one that is *significantly* faster than the reference (Mann-Whitney, Holm-corrected, beyond the 5% noise threshold); when none is, the reference stands.\n"
    );
    let _ = writeln!(
        md,
        "| query | params | best | median | reference median | change | plan of the best |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for q in &r.queries {
        for p in &q.params {
            let cells = cells_for(r, &q.name, &p.label);
            let reference = cells
                .iter()
                .find(|c| c.change.is_none() && c.error.is_none() && c.variant == r.baseline);
            let winner = best_significant(&cells);
            let (label, shown, change) = match (winner, reference) {
                (Some(w), _) => (
                    format!("**{}**", cell(&row_label(r, w))),
                    Some(w),
                    format!("{} {}", fmt_change(w), verdict_word(w)),
                ),
                (None, Some(reference)) => (
                    format!(
                        "{} (reference; nothing significantly faster)",
                        cell(&row_label(r, reference))
                    ),
                    Some(*reference),
                    "~".to_string(),
                ),
                (None, None) => (
                    "(no successful reference cell)".to_string(),
                    None,
                    String::new(),
                ),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                q.name,
                p.label,
                label,
                shown
                    .and_then(|c| c.time.as_ref())
                    .map(|t| fmt_ms(t.median))
                    .unwrap_or_default(),
                reference
                    .and_then(|c| c.time.as_ref())
                    .map(|t| fmt_ms(t.median))
                    .unwrap_or_default(),
                change,
                shown.map(|c| cell(&fmt_plan(c))).unwrap_or_default(),
            );
        }
    }
    let failed: Vec<String> = r
        .variants
        .iter()
        .filter(|v| v.error.is_some())
        .map(|v| format!("`{}`", v.name))
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(md, "\nFailed variants (see Sizes): {}", failed.join(", "));
    }
    md.push('\n');
}

fn queries(md: &mut String, r: &ExperimentResult) {
    let _ = writeln!(md, "## Queries\n");
    for q in &r.queries {
        let _ = writeln!(md, "### `{}`\n", q.name);
        if !q.about.is_empty() {
            let _ = writeln!(md, "{}\n", q.about);
        }
        for (form, sql) in &q.forms {
            if q.forms.len() > 1 {
                let _ = writeln!(md, "Form `{form}`:\n");
            }
            let _ = writeln!(md, "```sql\n{}\n```\n", sql.trim());
        }
        if q.rollback {
            let _ = writeln!(
                md,
                "Runs inside a transaction that is rolled back, so every run sees the same rows.\n"
            );
        }
        for eq in &q.equivalence {
            if !eq.equivalent {
                let _ = writeln!(
                    md,
                    "**Forms are not equivalent** on `{}` / `{}` / `{}`: {}\n",
                    eq.variant,
                    eq.settings,
                    eq.params,
                    eq.fingerprints
                        .iter()
                        .map(|(f, p)| format!("`{f}`: {p}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                );
            }
        }
        if q.forms.len() > 1
            && !q.equivalence.is_empty()
            && q.equivalence.iter().all(|e| e.equivalent)
        {
            let _ = writeln!(
                md,
                "All forms returned the same result in every variant and parameter set ({} checks).\n",
                q.equivalence.len()
            );
        }
        for p in &q.params {
            let _ = writeln!(
                md,
                "#### `{}` · {} `({})`\n",
                q.name,
                p.label,
                cell(&fmt_values(&p.values))
            );
            let cells = cells_for(r, &q.name, &p.label);
            let _ = writeln!(
                md,
                "| variant | plan | time (median [95% CI]) | change | planning | p95 | shared hit | read | dirtied | temp | heap fetches | rows removed | rows |"
            );
            let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
            for c in &cells {
                let plan = c.plan.as_ref();
                let num = |f: &dyn Fn(&crate::explain::PlanSummary) -> u64| {
                    plan.map(|p| fmt_count(f(p) as i64)).unwrap_or_default()
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    cell(&row_label(r, c)),
                    cell(&fmt_plan(c)),
                    cell(&fmt_time(c)),
                    fmt_change(c),
                    c.planning
                        .as_ref()
                        .map(|s| fmt_ms(s.median))
                        .unwrap_or_default(),
                    c.time.as_ref().map(|s| fmt_ms(s.p95)).unwrap_or_default(),
                    num(&|p| p.buffers.shared_hit),
                    num(&|p| p.buffers.shared_read),
                    num(&|p| p.buffers.shared_dirtied),
                    num(&|p| p.buffers.temp_read + p.buffers.temp_written),
                    num(&|p| p.heap_fetches),
                    fmt_count(rows_removed(c) as i64),
                    plan.map(|p| fmt_count(p.rows as i64)).unwrap_or_default(),
                );
            }
            chart(md, r, &cells, &format!("{} · {}", q.name, p.label));
        }
    }
}

/// A mermaid bar chart of median times (GitHub renders it; inline SVG is stripped).
fn chart(
    md: &mut String,
    r: &ExperimentResult,
    cells: &[&crate::experiment::result::Cell],
    title: &str,
) {
    let bars: Vec<(String, f64)> = cells
        .iter()
        .filter_map(|c| c.time.as_ref().map(|t| (row_label(r, c), t.median)))
        .collect();
    if bars.len() < 2 {
        md.push('\n');
        return;
    }
    let labels: Vec<String> = bars
        .iter()
        .map(|(l, _)| format!("\"{}\"", l.replace('"', "'")))
        .collect();
    let values: Vec<String> = bars.iter().map(|(_, v)| format!("{v:.3}")).collect();
    let _ = writeln!(
        md,
        "\n```mermaid\nxychart-beta\n    title \"{title}: median time (ms)\"\n    x-axis [{}]\n    y-axis \"ms\"\n    bar [{}]\n```\n",
        labels.join(", "),
        values.join(", ")
    );
}

fn sizes(md: &mut String, r: &ExperimentResult) {
    let _ = writeln!(md, "## Sizes and build times\n");
    let _ = writeln!(
        md,
        "Sizes are summed over partitions; tables include TOAST, free space and visibility maps (`pg_table_size`), indexes are `pg_relation_size`.\n"
    );
    let _ = writeln!(
        md,
        "| variant | tables | indexes | total | build time | status |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for v in &r.variants {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} | {:.2} s | {} |",
            v.name,
            fmt_bytes(v.table_bytes()),
            fmt_bytes(v.index_bytes()),
            fmt_bytes(v.table_bytes() + v.index_bytes()),
            v.build_seconds(),
            v.error
                .as_ref()
                .map(|e| format!("FAILED: {}", cell(e)))
                .unwrap_or_else(|| "ok".into())
        );
    }
    md.push('\n');
    for v in &r.variants {
        if v.error.is_some() {
            continue;
        }
        let _ = writeln!(
            md,
            "<details><summary><code>{}</code>: {}</summary>\n",
            v.name,
            if v.about.is_empty() {
                "details"
            } else {
                &v.about
            }
        );
        if !v.statements.is_empty() {
            let _ = writeln!(md, "| statement | time |\n|---|---|");
            for s in &v.statements {
                let _ = writeln!(md, "| `{}` | {:.2} s |", cell(&s.label), s.seconds);
            }
            md.push('\n');
        }
        let _ = writeln!(
            md,
            "| relation | kind | on | size | partitions |\n|---|---|---|---|---|"
        );
        for rel in &v.relations {
            let kind = match rel.kind {
                RelationKind::Table => "table".to_string(),
                RelationKind::Index => format!("index ({})", rel.method),
            };
            let _ = writeln!(
                md,
                "| `{}` | {} | `{}` | {} | {} |",
                rel.name,
                kind,
                rel.table,
                fmt_bytes(rel.bytes),
                rel.partitions
            );
        }
        let _ = writeln!(md, "\n</details>\n");
    }
}

fn settings(md: &mut String, r: &ExperimentResult) {
    if r.settings.len() < 2 && r.settings.iter().all(|s| s.values.is_empty()) {
        return;
    }
    let _ = writeln!(md, "## Settings\n");
    let _ = writeln!(
        md,
        "Each set is applied per session on top of `jit=off` and the statement timeout; the first is the reference.\n"
    );
    let _ = writeln!(md, "| set | values | applied |\n|---|---|---|");
    for s in &r.settings {
        let values: Vec<String> = s.values.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let applied = match (&s.not_applicable, s.applied_server_wide.is_empty()) {
            (Some(reason), _) => format!("**not applicable**: {}", cell(reason)),
            (None, false) => format!(
                "server-wide (ALTER SYSTEM + reload): {}",
                s.applied_server_wide.join(", ")
            ),
            (None, true) => "per session (SET)".into(),
        };
        let _ = writeln!(
            md,
            "| `{}` | {} | {} |",
            s.name,
            cell(&values.join(", ")),
            applied
        );
    }
    md.push('\n');
}

/// Rows as a Markdown table under a heading, nothing when there are no rows.
fn simple_table(
    md: &mut String,
    title: &str,
    intro: &str,
    header: &[&str],
    rows: Vec<Vec<String>>,
) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(md, "## {title}\n\n{intro}\n");
    let _ = writeln!(md, "| {} |", header.join(" | "));
    let _ = writeln!(md, "|{}", "---|".repeat(header.len()));
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
        let _ = writeln!(md, "| {} |", cells.join(" | "));
    }
    md.push('\n');
}

fn table_stats(md: &mut String, r: &ExperimentResult) {
    let workload = r
        .variants
        .iter()
        .find_map(|v| v.workload.as_ref())
        .map(|w| {
            format!(
                "The workload ran {} batches on every variant before measurement. ",
                w.batches
            )
        })
        .unwrap_or_default();
    simple_table(
        md,
        "Table statistics",
        &format!(
            "{workload}Counters from `pg_stat_user_tables` summed over partitions (HOT = share of the workload's updates that were heap-only); dead and free space from `pgstattuple`; sizes before → after the workload."
        ),
        &TABLE_STATS_HEADER,
        table_stats_rows(r),
    );
    simple_table(
        md,
        "VACUUM vs VACUUM FULL",
        "After measurement: `VACUUM`, then `VACUUM FULL` (which rewrites the table under an ACCESS EXCLUSIVE lock), timed; sizes include indexes and TOAST.",
        &MAINTENANCE_HEADER,
        maintenance_rows(r),
    );
}

fn load(md: &mut String, r: &ExperimentResult) {
    let results = load_results(r);
    if !results.is_empty() {
        let _ = writeln!(md, "## Load\n\n{}", super::load::markdown(&results));
    }
}

fn plans(md: &mut String, r: &ExperimentResult) {
    let _ = writeln!(md, "## Plans\n");
    let _ = writeln!(
        md,
        "One `EXPLAIN (ANALYZE, BUFFERS, TIMING ON)` run per cell, after the measured runs.\n"
    );
    for c in &r.cells {
        let Some(tree) = &c.timed_plan else { continue };
        let _ = writeln!(
            md,
            "<details><summary>{} · {} · {}</summary>\n\n```text\n{}\n```\n</details>\n",
            cell(&row_label(r, c)),
            c.query,
            c.params,
            tree.trim_end()
        );
    }
}

fn method(md: &mut String, r: &ExperimentResult) {
    let _ = writeln!(md, "## How to read this\n");
    let _ = writeln!(
        md,
        "- **time** is planning + execution as reported by `EXPLAIN (ANALYZE, BUFFERS, TIMING OFF)`: median of {} runs after {} discarded warmups, with the 95% confidence interval of the median (order statistics).\n\
         - **change** compares a cell with its reference (variant `{}`, settings `{}`, first query form, same parameters): the signed change of medians, shown only when a two-sided Mann-Whitney U test is significant at α = 0.05 after Holm correction across the whole matrix *and* the change exceeds 5%; otherwise `~`.\n\
         - **shared hit / read / dirtied / temp** are buffer counts of the last measured run (nearly deterministic); **heap fetches** come from Index Only Scans; **rows removed** by filters and index rechecks.\n\
         - Each variant ran in its own copy of the dataset (`CREATE DATABASE ... TEMPLATE`), built by its statements and then `ANALYZE`d; JIT off.\n\
         - Raw samples: `{}.json` next to this file.",
        r.runs.repeat,
        r.runs.warmup,
        r.baseline,
        r.settings
            .first()
            .map(|s| s.name.as_str())
            .unwrap_or("default"),
        r.experiment
    );
}
