//! `reports/<experiment>.md`, for review in a pull request: header, summary first, one
//! table and chart per query, sizes, then every plan folded away. The layout depends only
//! on the experiment's inputs, so a re-run shows up as a diff of numbers.

use std::fmt::Write;

use super::view::{self, Table};
use super::*;
use crate::experiment::result::ExperimentResult;

pub fn render(r: &ExperimentResult) -> String {
    render_with(r, &[])
}

/// The report, naming where the experiment's reports at `others` scales (file stem and
/// result) differ from this one.
pub fn render_with(r: &ExperimentResult, others: &[(String, ExperimentResult)]) -> String {
    if r.screening.as_ref().is_some_and(|s| s.only) {
        return render_screen_only(r);
    }
    let mut md = String::new();
    header(&mut md, r);
    answer(&mut md, r, others);
    summary(&mut md, r);
    if r.analysis.method.is_some() {
        other_scales(&mut md, r, others);
    }
    screening(&mut md, r);
    settings(&mut md, r);
    queries(&mut md, r);
    sizes(&mut md, r);
    table_stats(&mut md, r);
    loadtest_section(&mut md, r);
    stability(&mut md, r);
    appendix(&mut md, r);
    plans(&mut md, r);
    method(&mut md, r);
    md
}

/// Escape what would break a table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// A view table as a Markdown table.
pub fn draw(table: &Table) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "| {} |", table.header.join(" | "));
    let _ = writeln!(md, "|{}", "---|".repeat(table.header.len()));
    for row in &table.rows {
        let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
        let _ = writeln!(md, "| {} |", cells.join(" | "));
    }
    md
}

fn header(md: &mut String, r: &ExperimentResult) {
    let e = &r.environment;
    let _ = writeln!(md, "# Experiment `{}`\n", r.experiment);
    if r.interrupted {
        let measured: Vec<String> = r.variants.iter().map(|v| format!("`{}`", v.name)).collect();
        let why = match &r.stopped_by {
            Some(why) => format!("stopped before it finished: {}", cell(why)),
            None => "interrupted before it finished".to_string(),
        };
        let _ = writeln!(
            md,
            "> **Partial run:** {why}; measured: {} (the last one possibly incomplete).\n",
            measured.join(", ")
        );
    }
    about_and_dataset(md, r);
    let settings: Vec<String> = e
        .server_settings
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let _ = writeln!(md, "| Server settings | {} |", settings.join(", "));
    let _ = writeln!(md, "| Machine | {} CPUs, {} GiB |", e.cpus, e.memory_gib);
    let busy = r
        .environment
        .load_before
        .iter()
        .chain(r.environment.load_after.iter())
        .any(|l| l[0] > e.cpus as f64);
    let _ = writeln!(
        md,
        "| Load average | {}{} |",
        super::terminal::load_average_text(r).trim_start_matches("load average "),
        if busy && r.analysis.method.is_some() {
            format!(
                " — **above the machine's {} CPUs: the run shared them, and its timings show it**",
                e.cpus
            )
        } else {
            String::new()
        }
    );
    let sched = &r.schedule;
    if !(r.queries.is_empty() && r.analysis.method.is_some()) {
        let _ = writeln!(
            md,
            "| Schedule | {} |",
            cell(&super::method::schedule_row(r))
        );
    }
    if sched.stages.len() > 1 {
        let stages: Vec<String> = sched.stages.iter().map(|s| s.join(", ")).collect();
        let _ = writeln!(
            md,
            "| Stages | the copies did not all fit the disk; measured in {} stages, each with the baseline and the control: {} |",
            sched.stages.len(),
            cell(&stages.join(" / "))
        );
    }
    let _ = writeln!(md, "| A/A floor | {} |", cell(&view::floor_line(r)));
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
    if let Some(wall) = view::wall_line(r) {
        let _ = writeln!(md, "| Wall time | {} |", cell(&wall));
    }
    if let Some(shards) = view::shard_line(r) {
        let _ = writeln!(md, "| Shards | {} |", cell(&shards));
    }
    let _ = writeln!(md, "| Baseline | `{}` |", r.baseline);
    let _ = writeln!(
        md,
        "| Produced by | `pgx experiment {}` · pgx {} · commit `{}` · {} |\n",
        r.experiment, e.pgx_version, e.git_commit, e.date
    );
}

fn summary(md: &mut String, r: &ExperimentResult) {
    let _ = writeln!(md, "## Summary\n");
    let load = view::load_results(r);
    if !load.is_empty() {
        let _ = writeln!(md, "{}", super::loadtest::summary_markdown(&load));
    }
    if r.analysis.findings.is_empty() {
        failed_variants(md, r);
        return;
    }
    let _ = writeln!(md, "{}\n", view::noise_sentence(r));
    let _ = writeln!(md, "### Plans and buffers (exact, not noise)\n");
    let evidence = view::evidence_table(r);
    if evidence.rows.len() > APPENDIX_ROWS && r.analysis.method.is_some() {
        let _ = writeln!(
            md,
            "{} cells differ from their reference in plan or blocks (exact counts): the table is in the appendix, *Plans and buffers that differ*, after the timings.\n",
            evidence.rows.len()
        );
    } else if evidence.is_empty() {
        let _ = writeln!(
            md,
            "No variant changed a plan or the blocks a query touched: any timing difference below is not explained by the plan.\n"
        );
    } else {
        let _ = writeln!(md, "{}", draw(&evidence));
    }
    let _ = writeln!(md, "### Timings (execution time, paired rounds)\n");
    let _ = writeln!(md, "{}\n", super::method::timings_intro(r));
    let _ = writeln!(md, "{}", draw(&view::timing_table(r)));
    if !r.analysis.answers.is_empty() {
        let regressions = super::answer::regressions_table(r);
        let _ = writeln!(md, "### Regressions (every cell called slower)\n");
        if regressions.is_empty() {
            let _ = writeln!(md, "No cell is called slower than its reference.\n");
        } else {
            let _ = writeln!(md, "{}", draw(&regressions));
        }
        let _ = writeln!(md, "### Costs\n");
        let _ = writeln!(md, "{}", draw(&super::answer::costs_table(r)));
    }
    failed_variants(md, r);
}

/// An evidence table longer than this goes to the appendix.
const APPENDIX_ROWS: usize = 30;

/// The long evidence table, after the timings.
fn appendix(md: &mut String, r: &ExperimentResult) {
    let evidence = view::evidence_table(r);
    if evidence.rows.len() > APPENDIX_ROWS && r.analysis.method.is_some() {
        let _ = writeln!(md, "## Appendix: plans and buffers that differ\n");
        let _ = writeln!(md, "{}", draw(&evidence));
    }
}

/// "## Answer": the decision per row, then per variant (runs that decided it), then
/// what scale the answer holds at.
fn answer(md: &mut String, r: &ExperimentResult, others: &[(String, ExperimentResult)]) {
    let load = view::load_results(r);
    if r.analysis.answers.is_empty() && !load.is_empty() && r.analysis.method.is_some() {
        load_answer(md, r, &load);
        return;
    }
    if r.analysis.answers.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Answer\n");
    for line in super::answer::lines(r) {
        let _ = writeln!(md, "- {}", cell(&line));
    }
    md.push('\n');
    let variants = super::answer::variant_lines(r);
    if !variants.is_empty() {
        let _ = writeln!(md, "By variant:\n");
        for line in variants {
            let _ = writeln!(md, "- {}", cell(&line));
        }
        md.push('\n');
    }
    if !load.is_empty() {
        let _ = writeln!(md, "Under load:\n");
        for line in super::loadtest::answer_lines_with(&load, view::control_load(r)) {
            let _ = writeln!(md, "- {}", cell(&line));
        }
        md.push('\n');
    }
    if let Some(line) = super::answer::scale_line(r, others) {
        let _ = writeln!(md, "{line}\n");
    }
}

/// A load experiment's answer: its targets, met or not, and whether the machine is what
/// bounds them.
fn load_answer(
    md: &mut String,
    r: &ExperimentResult,
    load: &[(String, crate::loadtest::LoadResult)],
) {
    let _ = writeln!(md, "## Answer\n");
    for line in super::loadtest::answer_lines_with(load, view::control_load(r)) {
        let _ = writeln!(md, "- {}", cell(&line));
    }
    let lines = super::loadtest::target_lines(load);
    let cpus = r.environment.cpus;
    let busiest = r
        .environment
        .load_before
        .iter()
        .chain(r.environment.load_after.iter())
        .map(|l| l[0])
        .fold(0.0, f64::max);
    if !lines.is_empty() && !super::loadtest::targets_met(load) {
        let bound = if busiest > cpus as f64 {
            format!(
                "What bounds it here is the machine: the load average reached {busiest:.1} on {cpus} CPUs, so clients and server shared them; the same variants on a server with the seed's cores are what the target is about."
            )
        } else {
            format!(
                "The machine's {cpus} CPUs were not saturated (load average up to {busiest:.1}): what bounds it is the workload on this server."
            )
        };
        let _ = writeln!(md, "\n{bound}");
    }
    md.push('\n');
}

/// "## At other scales": the cells whose plan or verdict differs in the experiment's
/// reports at other scales.
fn other_scales(md: &mut String, r: &ExperimentResult, others: &[(String, ExperimentResult)]) {
    for (stem, other) in others {
        let table = super::answer::scale_differences(r, other);
        let _ = writeln!(md, "## At scale {} (`{stem}.md`)\n", other.scale);
        if table.is_empty() {
            let _ = writeln!(
                md,
                "Every cell both reports measured has the same plan and the same verdict there.\n"
            );
            continue;
        }
        let _ = writeln!(
            md,
            "{} cell(s) whose plan or verdict differs between scale {} (here) and scale {} (made {}):\n",
            table.rows.len(),
            r.scale,
            other.scale,
            other.environment.date
        );
        let _ = writeln!(md, "{}", draw(&table));
    }
}

fn failed_variants(md: &mut String, r: &ExperimentResult) {
    let failed: Vec<String> = r
        .compared_variants()
        .filter(|v| v.error.is_some())
        .map(|v| format!("`{}`", v.name))
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(md, "Failed variants (see Sizes): {}\n", failed.join(", "));
    }
}

fn queries(md: &mut String, r: &ExperimentResult) {
    // A load experiment has no EXPLAIN queries: no empty section.
    if r.queries.is_empty() && r.analysis.method.is_some() {
        return;
    }
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
            if let Some(f) = r
                .analysis
                .floors
                .iter()
                .find(|f| f.query == q.name && f.params == p.label)
            {
                if f.at_resolution() {
                    let _ = writeln!(
                        md,
                        "A/A floor {:.1}%, at the timer's resolution (1 µs is {:.1}% of this query): changes are called beyond {:.1}%.\n",
                        f.floor * 100.0,
                        f.resolution.unwrap_or(0.0) * 100.0,
                        f.resolution
                            .unwrap_or(0.0)
                            .max(crate::stats::NOISE.max(f.floor))
                            * 100.0
                    );
                } else {
                    let _ = writeln!(
                        md,
                        "A/A floor {:.1}%: changes are called beyond {:.1}%.\n",
                        f.floor * 100.0,
                        crate::stats::NOISE.max(f.floor) * 100.0
                    );
                }
            }
            let _ = write!(md, "{}", draw(&view::query_table(r, &q.name, &p.label)));
            for note in view::eviction_notes(r, &q.name, &p.label) {
                let _ = writeln!(md, "\nCold cells were not fully cold: {note}.");
            }
            let cells = view::cells_for(r, &q.name, &p.label);
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
        .filter_map(|c| c.execution.as_ref().map(|t| (row_label(r, c), t.median)))
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
        "\n```mermaid\nxychart-beta\n    title \"{title}: median execution (ms)\"\n    x-axis [{}]\n    y-axis \"ms\"\n    bar [{}]\n```\n",
        labels.join(", "),
        values.join(", ")
    );
}

fn sizes(md: &mut String, r: &ExperimentResult) {
    let _ = writeln!(md, "## Sizes and build times\n");
    let _ = writeln!(
        md,
        "Sizes are summed over partitions; tables include TOAST, free space and visibility maps (`pg_table_size`), indexes are `pg_relation_size`. Tables the dataset leaves empty (schemas the migrations bring along for other experiments) are left out.\n"
    );
    let _ = writeln!(md, "{}", draw(&view::sizes_table(r, true)));
    for v in r.compared_variants().filter(|v| v.error.is_none()) {
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
            let _ = writeln!(md, "{}", draw(&view::statements_table(v)));
        }
        let _ = writeln!(md, "{}", draw(&view::relations_table(r, v)));
        let _ = writeln!(md, "</details>\n");
    }
}

fn settings(md: &mut String, r: &ExperimentResult) {
    if r.settings.len() < 2 && r.settings.iter().all(|s| s.values.is_empty()) {
        return;
    }
    let _ = writeln!(md, "## Settings\n");
    let _ = writeln!(
        md,
        "Each set is applied on top of `jit=off` and the statement timeout; the first is the reference. Session settings are set once on the connection that measures the set; server-wide ones are applied for each visit of their group in every round and undone after it.\n"
    );
    let _ = writeln!(md, "{}", draw(&view::settings_table(r)));
}

/// A table under a heading, nothing when it has no rows.
fn section(md: &mut String, title: &str, intro: &str, table: Table) {
    if table.is_empty() {
        return;
    }
    let _ = writeln!(md, "## {title}\n\n{intro}\n");
    let _ = writeln!(md, "{}", draw(&table));
}

fn table_stats(md: &mut String, r: &ExperimentResult) {
    let workload = r
        .compared_variants()
        .find_map(|v| v.workload.as_ref())
        .map(|w| {
            format!(
                "The workload ran {} batches on every variant before measurement. ",
                w.batches
            )
        })
        .unwrap_or_default();
    section(
        md,
        "Table statistics",
        &format!(
            "{workload}Counters from `pg_stat_user_tables` summed over partitions (HOT = share of the workload's updates that were heap-only); dead and free space from `pgstattuple`; sizes before → after the workload."
        ),
        view::table_stats_table(r),
    );
    section(
        md,
        "VACUUM vs VACUUM FULL",
        "After measurement: `VACUUM`, then `VACUUM FULL` (which rewrites the table under an ACCESS EXCLUSIVE lock), timed; sizes include indexes and TOAST.",
        view::maintenance_table(r),
    );
}

fn loadtest_section(md: &mut String, r: &ExperimentResult) {
    let results = view::load_results(r);
    if results.is_empty() {
        return;
    }
    if r.analysis.method.is_some() {
        // The summary already shows the load summary: every run here, once.
        let _ = writeln!(
            md,
            "## Load\n\n{}",
            super::loadtest::body_with(&results, false)
        );
    } else {
        // The load renderer writes its own "## Load" heading.
        let _ = writeln!(md, "{}", super::loadtest::markdown(&results));
    }
}

fn plans(md: &mut String, r: &ExperimentResult) {
    if r.analysis.method.is_some() && r.compared_cells().all(|c| c.timed_plan.is_none()) {
        return;
    }
    let _ = writeln!(md, "## Plans\n");
    let _ = writeln!(md, "{}\n", super::method::plans_intro(r));
    for c in r.compared_cells() {
        let Some(tree) = &c.timed_plan else { continue };
        let _ = writeln!(
            md,
            "<details><summary>{} · {} · {}</summary>\n\n```text\n{}\n```\n</details>\n",
            cell(&row_label(r, c)),
            c.query,
            c.params,
            super::plan_tree::draw(tree).trim_end()
        );
    }
}

/// Was the machine steady? The reference cells' per-round medians, as a table and a
/// line chart (one line per query and parameter set, relative to its median).
fn stability(md: &mut String, r: &ExperimentResult) {
    let table = view::drift_table(r);
    if table.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Stability\n");
    let _ = writeln!(
        md,
        "{}. The reference cells' median execution time in every round, relative to their overall median: a steady machine stays near 1.00; drift shows as a trend, and falls on every variant alike because every round visits every cell.\n",
        super::terminal::load_average_text(r)
    );
    let _ = writeln!(md, "{}", draw(&table));
    let lines: Vec<(String, Vec<f64>)> = r
        .analysis
        .drift
        .iter()
        .filter_map(|d| {
            let mut sorted: Vec<f64> = d.round_medians.iter().flatten().copied().collect();
            sorted.sort_by(f64::total_cmp);
            let median = crate::stats::percentile(&sorted, 50.0);
            (median > 0.0 && d.round_medians.iter().all(Option::is_some)).then(|| {
                (
                    format!("{} · {}", d.query, d.params),
                    d.round_medians
                        .iter()
                        .flatten()
                        .map(|v| v / median)
                        .collect(),
                )
            })
        })
        .take(10)
        .collect();
    let Some(rounds) = lines.first().map(|(_, v)| v.len()).filter(|n| *n > 1) else {
        return;
    };
    let _ = writeln!(
        md,
        "```mermaid\nxychart-beta\n    title \"reference cells per round, relative to their median\"\n    x-axis \"round\" 1 --> {rounds}\n    y-axis \"× median\""
    );
    for (_, values) in &lines {
        let values: Vec<String> = values.iter().map(|v| format!("{v:.3}")).collect();
        let _ = writeln!(md, "    line [{}]", values.join(", "));
    }
    let _ = writeln!(md, "```\n");
    let names: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(i, (name, _))| format!("{} = {name}", i + 1))
        .collect();
    let _ = writeln!(
        md,
        "Lines, in order (mermaid draws no legend): {}.\n",
        names.join(", ")
    );
}

fn method(md: &mut String, r: &ExperimentResult) {
    let _ = writeln!(md, "## How to read this\n");
    let _ = writeln!(md, "{}", super::method::how_to_read(r));
}

/// `--screen-only`: the header's facts about the dataset and server, then the screening;
/// nothing was built or measured.
/// The experiment's description, then the header table's first rows: seed, scale, the
/// dataset's non-empty tables, the server. Shared by the full and the screening report.
fn about_and_dataset(md: &mut String, r: &ExperimentResult) {
    let e = &r.environment;
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
}

fn render_screen_only(r: &ExperimentResult) -> String {
    let mut md = String::new();
    let e = &r.environment;
    let _ = writeln!(md, "# Experiment `{}`: screening only\n", r.experiment);
    about_and_dataset(&mut md, r);
    let _ = writeln!(md, "| Baseline | `{}` |", r.baseline);
    let _ = writeln!(
        md,
        "| Produced by | `pgx experiment {} --screen-only` · pgx {} · commit `{}` · {} |\n",
        r.experiment, e.pgx_version, e.git_commit, e.date
    );
    let _ = writeln!(
        md,
        "Estimates only: no variant was built and nothing was measured. `pgx experiment {}` (with `--screen`) builds and measures them, and puts these estimates beside the measurements.\n",
        r.experiment
    );
    screening(&mut md, r);
    md
}

/// "## Screening (what-if, HypoPG)": per variant screenable or why not, the estimated
/// index sizes, and per cell the estimated plan and cost; beside the measurements after
/// a real run, disagreements flagged.
fn screening(md: &mut String, r: &ExperimentResult) {
    let Some(s) = &r.screening else { return };
    let _ = writeln!(md, "## Screening (what-if, HypoPG)\n");
    if let Some(sentence) = view::screening_sentence(r) {
        let _ = writeln!(md, "{}\n", cell(&sentence));
    }
    if s.unavailable.is_some() {
        let _ = writeln!(
            md,
            "Which variants HypoPG could screen, read from their statements (nothing was estimated):\n"
        );
        let _ = writeln!(md, "{}", draw(&view::screening_variants_table(r)));
        return;
    }
    let _ = writeln!(
        md,
        "Before anything was built, every variant whose statements only create btree, BRIN or hash indexes had them created as HypoPG hypothetical indexes, in one session on a copy of the base; every query form and parameter set was then planned with plain `EXPLAIN` (no execution) under the reference settings `{}`, and the baseline's plans in the same session with no hypothetical index. **est. cost vs reference** is the estimated total cost against the baseline's estimate for the same query and parameters (the cell the measurement compares with); **estimated size** is `hypopg_relation_size`. Variants HypoPG cannot express (GIN and GiST, `DROP INDEX`, changes of tables, data or layout) are not screenable, with the statement and the reason.\n",
        s.settings
    );
    if !s.only {
        let _ = writeln!(
            md,
            "After the real run, **DISAGREE** marks where the estimate and the measurement part: the plan choice (the estimate uses the hypothetical index and the real plan does not use the real one, or the reverse); cost against time (the estimated cost change and the measured execution change point different ways, both judged against the measured change's threshold, max(5%, the A/A floor)); and sizes more than {}× off the real index's, either way (HypoPG sizes an index from row estimates and average widths; hypopg#46 saw 164 MB estimated for 1.5 GB real).\n",
            crate::experiment::analysis::screening::SIZE_FACTOR
        );
    }
    let _ = writeln!(md, "{}", draw(&view::screening_variants_table(r)));
    let cells = view::screening_cells_table(r);
    if !cells.is_empty() {
        let _ = writeln!(md, "### Estimated plans\n");
        let _ = writeln!(md, "{}", draw(&cells));
    }
}
