//! The comparison as tables (`report::view::Table`, the model the experiment reports
//! use), drawn for the terminal (comfy-table) and as Markdown ready to paste into a pull
//! request comment. Deterministic evidence first, then timings, then what is new or gone.

use std::fmt::Write as _;

use super::{Comparison, Row};
use crate::experiment::result::{Cell, ExperimentResult};
use crate::report::view::Table;
use crate::report::{fmt_change, fmt_count, fmt_ms, fmt_plan, markdown, terminal};
use crate::stats::{NOISE, Verdict};

fn table(header: &[&str]) -> Table {
    Table {
        header: header.iter().map(|h| h.to_string()).collect(),
        rows: Vec::new(),
    }
}

fn pct(x: f64) -> String {
    format!("{:+.1}%", x * 100.0)
}

/// "lookup · p1 · covering", with settings and form when those axes have several values.
pub fn cell_label(c: &Comparison, row: &Row) -> String {
    let k = &row.key;
    let mut label = format!("{} · {} · {}", k.query, k.params, k.variant);
    let several_settings = c.old.settings.len() > 1 || c.new.settings.len() > 1;
    if several_settings {
        label.push_str(&format!(" · {}", k.settings));
    }
    let several_caches = |r: &ExperimentResult| r.cells.iter().any(|cell| cell.cache != "warm");
    if several_caches(&c.old) || several_caches(&c.new) {
        label.push_str(&format!(" · {}", k.cache));
    }
    let forms = |r: &ExperimentResult| {
        r.queries
            .iter()
            .find(|q| q.name == k.query)
            .map_or(1, |q| q.forms.len())
    };
    if forms(&c.old) > 1 || forms(&c.new) > 1 {
        label.push_str(&format!(" · {}", k.form));
    }
    label
}

fn median(cell: Option<&Cell>) -> String {
    match cell {
        Some(c) => match (&c.execution, &c.error) {
            (Some(s), _) => fmt_ms(s.median),
            (None, Some(e)) => format!("error: {}", e.lines().next().unwrap_or("")),
            (None, None) => "-".into(),
        },
        None => String::new(),
    }
}

fn blocks_text(row: &Row) -> String {
    let Some((o, n)) = row.blocks else {
        return String::new();
    };
    if !row.buffers_changed {
        return format!("same ({})", fmt_count(o as i64));
    }
    let change = if o > 0 {
        format!(" ({})", pct(n as f64 / o as f64 - 1.0))
    } else {
        String::new()
    };
    format!("{} → {}{change}", fmt_count(o as i64), fmt_count(n as i64))
}

pub fn evidence_text(row: &Row) -> String {
    let mut parts = Vec::new();
    parts.push(if row.plan_changed {
        "plan changed".to_string()
    } else {
        "same plan".to_string()
    });
    parts.push(match row.blocks {
        Some((o, n)) if row.buffers_changed && o > 0 => {
            format!("buffers {}", pct(n as f64 / o as f64 - 1.0))
        }
        Some(_) if row.buffers_changed => "buffers differ".into(),
        Some(_) => "same buffers".into(),
        None => "buffers unknown".into(),
    });
    if let Some((o, n)) = row.rows_changed {
        parts.push(format!(
            "rows {} → {}",
            fmt_count(o as i64),
            fmt_count(n as i64)
        ));
    }
    if row.params_changed {
        parts.push("parameter values differ".into());
    } else if row.sql_changed {
        parts.push("SQL changed".into());
    }
    parts.join(", ")
}

fn band_text(row: &Row) -> String {
    let Some(t) = &row.timing else {
        return String::new();
    };
    if t.lower * (1.0 + t.change.threshold) >= 0.999_999
        && t.upper / (1.0 + t.change.threshold) <= 1.000_001
    {
        return format!("±{:.1}%", t.change.threshold * 100.0);
    }
    format!("{} … {}", pct(t.lower - 1.0), pct(t.upper - 1.0))
}

fn drift_text(row: &Row) -> String {
    match row.timing.and_then(|t| t.drift) {
        Some(d) => format!(
            "{} ({} {} cells)",
            pct(d.ratio - 1.0),
            d.peers,
            if d.same_query { "query" } else { "run" }
        ),
        None => String::new(),
    }
}

/// Cells whose plan, buffers or rows changed: exact, not noise.
pub fn evidence_table(c: &Comparison) -> Table {
    let mut t = table(&[
        "cell",
        "old plan",
        "new plan",
        "blocks (hit + read)",
        "rows",
    ]);
    for row in c
        .matched()
        .filter(|r| r.plan_changed || r.buffers_changed || r.rows_changed.is_some())
    {
        let (Some(o), Some(n)) = (c.old_cell(row), c.new_cell(row)) else {
            continue;
        };
        t.rows.push(vec![
            cell_label(c, row),
            fmt_plan(o),
            if row.plan_changed {
                fmt_plan(n)
            } else {
                "same".into()
            },
            blocks_text(row),
            row.rows_changed
                .map(|(o, n)| format!("{} → {}", fmt_count(o as i64), fmt_count(n as i64)))
                .unwrap_or_else(|| "same".into()),
        ]);
    }
    t
}

/// Every matched cell's execution time, old and new.
pub fn timing_table(c: &Comparison) -> Table {
    let mut t = table(&[
        "cell",
        "old",
        "new",
        "change [95% CI]",
        "no-change band",
        "drift between runs",
        "evidence",
    ]);
    for row in c.matched() {
        let change = match (&row.timing, &row.now_fails) {
            (_, Some(e)) => format!("now fails: {e}"),
            (Some(t), None) => fmt_change(Some(&t.change)),
            (None, None) => String::new(),
        };
        t.rows.push(vec![
            cell_label(c, row),
            median(c.old_cell(row)),
            median(c.new_cell(row)),
            change,
            band_text(row),
            drift_text(row),
            evidence_text(row),
        ]);
    }
    t
}

/// Cells only one run has.
pub fn presence_table(c: &Comparison, new: bool) -> Table {
    let mut t = table(&["cell", "plan", "execution", "blocks (hit + read)"]);
    for row in c.rows.iter().filter(|r| {
        if new {
            r.old.is_none()
        } else {
            r.new.is_none()
        }
    }) {
        let Some(cell) = (if new {
            c.new_cell(row)
        } else {
            c.old_cell(row)
        }) else {
            continue;
        };
        t.rows.push(vec![
            cell_label(c, row),
            fmt_plan(cell),
            median(Some(cell)),
            cell.blocks()
                .map(|b| fmt_count(b as i64))
                .unwrap_or_default(),
        ]);
    }
    t
}

pub fn environment_table(c: &Comparison) -> Table {
    let mut t = table(&["", "old", "new"]);
    for d in &c.environment {
        t.rows
            .push(vec![d.what.clone(), d.old.clone(), d.new.clone()]);
    }
    t
}

fn floor_text(r: &ExperimentResult) -> String {
    if r.control.is_none() {
        return "no control".into();
    }
    let mut floors: Vec<f64> = r.analysis.floors.iter().map(|f| f.floor).collect();
    floors.sort_by(f64::total_cmp);
    let (Some(first), Some(last)) = (floors.first(), floors.last()) else {
        return "-".into();
    };
    let noisy = if r.analysis.noisy.is_some() {
        " (noisy run)"
    } else {
        ""
    };
    format!(
        "{:.1}%–{:.1}% over the queries{noisy}",
        first * 100.0,
        last * 100.0
    )
}

/// The two runs side by side: where they come from and how steady they were.
pub fn runs_table(c: &Comparison) -> Table {
    let mut t = table(&["", "old", "new"]);
    let (o, n) = (&c.old, &c.new);
    let mut row = |what: &str, f: &dyn Fn(&ExperimentResult) -> String| {
        t.rows.push(vec![what.to_string(), f(o), f(n)]);
    };
    row("commit", &|r| format!("`{}`", r.environment.git_commit));
    row("date", &|r| r.environment.date.clone());
    row("server", &|r| {
        format!(
            "{} · {}",
            r.environment.postgres_version, r.environment.server
        )
    });
    row("machine", &|r| {
        format!(
            "{} CPUs, {} GiB",
            r.environment.cpus, r.environment.memory_gib
        )
    });
    row("load average", &|r| {
        terminal::load_average_text(r)
            .trim_start_matches("load average ")
            .to_string()
    });
    row("schedule", &|r| {
        format!(
            "{} rounds × {} run(s), seed {}",
            r.schedule.rounds, r.schedule.block, r.schedule.seed
        )
    });
    row("A/A floor", &floor_text);
    t.rows.insert(
        0,
        vec![
            "report".into(),
            format!("`{}`", c.old_label),
            format!("`{}`", c.new_label),
        ],
    );
    t
}

/// One paragraph: what changed, in order of certainty.
pub fn summary(c: &Comparison) -> String {
    let matched = c.matched().count();
    let plans = c.rows.iter().filter(|r| r.plan_changed).count();
    let buffers = c.rows.iter().filter(|r| r.buffers_changed).count();
    let slower = c.called(Verdict::Slower).count();
    let faster = c.called(Verdict::Faster).count();
    let failing = c.rows.iter().filter(|r| r.now_fails.is_some()).count();
    let new = c.rows.iter().filter(|r| r.old.is_none()).count();
    let gone = c.rows.iter().filter(|r| r.new.is_none()).count();
    let mut s = format!(
        "{matched} cell(s) in both runs: {plans} with a changed plan, {buffers} with changed buffers (exact); on execution time {slower} slower and {faster} faster beyond noise"
    );
    if failing > 0 {
        let _ = write!(s, "; {failing} failing now");
    }
    let _ = write!(s, ". {new} new cell(s), {gone} vanished.");
    if plans + buffers + slower + faster + failing + new + gone == 0 {
        s.push_str(" No change.");
    }
    s
}

/// Whether timings gate, and why not when they do not.
pub fn trust_sentence(c: &Comparison) -> String {
    if c.untrusted_because.is_empty() {
        return "Same environment and both runs steady: timings are compared and may gate.".into();
    }
    let why = c.untrusted_because.join("; ");
    if c.timings_trusted {
        format!("Timings gate although {why} (--gate-timings).")
    } else {
        format!(
            "Timings are shown but do not gate: {why}. Plans and buffers still do (--gate-timings overrides)."
        )
    }
}

/// The method, for the footer of both renderings.
pub fn method(c: &Comparison) -> String {
    let _ = c;
    format!(
        "Plans (the set of plan signatures a cell showed) and buffers (median shared hit + read blocks; a change of more than one block and 1%) are exact: the same code on the same data gives the same ones, so any change is real. \
Timing: the two runs were not interleaved with each other, so there are no paired rounds; each cell's per-round median execution times in the old run are compared with those in the new run (Mann-Whitney U, one-sided against each edge of a no-change band; Holm across the cells, α = 0.05). \
The change is the Hodges-Lehmann estimate of new/old (the median of all pairwise ratios) with its 95% interval. \
The band is max({:.0}%, the old run's A/A floor, the new run's A/A floor) around 1 and around the drift between runs, the median new/old ratio of the other cells of the same query whose plan, buffers and SQL did not change (the A/A control's included; the whole run's when the query has fewer than two such cells): a machine that is slower as a whole today does not make a regression, and neither does identical code run twice. \
A change every cell of a query shares with the same plans and buffers is indistinguishable from that drift and is not called. \
Between runs, a change of less than {} ms per execution is below resolution and is not called either, and timings do not gate when either run shared a saturated machine (1-minute load average at least its CPU count). `~` = no change beyond the band.",
        NOISE * 100.0,
        super::RESOLUTION_MS
    )
}

pub fn terminal(c: &Comparison) -> String {
    let mut out = format!(
        "pgx compare: {} ({} → {})\n",
        c.new.experiment, c.old_label, c.new_label
    );
    out.push_str(&terminal::draw(&runs_table(c)));
    out.push('\n');
    out.push_str(&format!("{}\n{}\n", summary(c), trust_sentence(c)));
    for note in &c.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    let environment = environment_table(c);
    if !environment.is_empty() {
        out.push_str(&format!(
            "\nenvironment differs\n{}\n",
            terminal::draw(&environment)
        ));
    }
    let evidence = evidence_table(c);
    if !evidence.is_empty() {
        out.push_str(&format!(
            "\nplans and buffers that changed (exact)\n{}\n",
            terminal::draw(&evidence)
        ));
        for (label, diff) in plan_diffs(c) {
            out.push_str(&format!("\n{label}: old → new plan\n{diff}"));
        }
    }
    let timings = timing_table(c);
    if !timings.is_empty() {
        out.push_str(&format!(
            "\nexecution time (unpaired: per-round medians, old vs new)\n{}\n",
            terminal::draw(&timings)
        ));
    }
    for (title, new) in [("new cells", true), ("vanished cells", false)] {
        let t = presence_table(c, new);
        if !t.is_empty() {
            out.push_str(&format!("\n{title}\n{}\n", terminal::draw(&t)));
        }
    }
    out.push_str("\n~ = no change beyond the band (max(5%, both A/A floors) around 1 and the drift between runs; Mann-Whitney on per-round medians, Holm, α=0.05)\n");
    out
}

/// (cell label, node-by-node diff) for every cell whose plan changed.
pub fn plan_diffs(c: &Comparison) -> Vec<(String, String)> {
    c.rows
        .iter()
        .filter(|r| r.plan_changed)
        .filter_map(|row| {
            let (o, n) = (c.old_cell(row)?, c.new_cell(row)?);
            let diff = match (&o.timed_plan, &n.timed_plan) {
                (Some(a), Some(b)) => super::plan_diff::diff(a, b),
                _ => String::new(),
            };
            let diff = if diff.is_empty() {
                // No timed trees (or the same shape): the signatures say what changed.
                format!(
                    "- {}\n+ {}\n",
                    o.signatures.join(" | "),
                    n.signatures.join(" | ")
                )
            } else {
                diff
            };
            Some((cell_label(c, row), diff))
        })
        .collect()
}

pub fn markdown(c: &Comparison) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "## pgx compare: `{}`\n", c.new.experiment);
    let _ = writeln!(md, "{}\n", summary(c));
    let _ = writeln!(md, "{}\n", trust_sentence(c));
    for note in &c.notes {
        let _ = writeln!(md, "> {note}\n");
    }
    let _ = writeln!(md, "{}", markdown::draw(&runs_table(c)));
    let environment = environment_table(c);
    if !environment.is_empty() {
        let _ = writeln!(md, "### Environment differs\n");
        let _ = writeln!(md, "{}", markdown::draw(&environment));
    }
    let _ = writeln!(md, "### Plans and buffers (exact)\n");
    let evidence = evidence_table(c);
    if evidence.is_empty() {
        let _ = writeln!(
            md,
            "No cell changed its plan, the blocks it touches or the rows it returns.\n"
        );
    } else {
        let _ = writeln!(md, "{}", markdown::draw(&evidence));
        for (label, diff) in plan_diffs(c) {
            let _ = writeln!(
                md,
                "<details><summary>{}: old → new plan</summary>\n\n```diff\n{}```\n</details>\n",
                label.replace('<', "&lt;"),
                diff
            );
        }
    }
    let _ = writeln!(md, "### Execution time\n");
    let timings = timing_table(c);
    if timings.is_empty() {
        let _ = writeln!(md, "No cell was measured in both runs.\n");
    } else {
        let _ = writeln!(md, "{}", markdown::draw(&timings));
    }
    for (title, new) in [("New cells", true), ("Vanished cells", false)] {
        let t = presence_table(c, new);
        if !t.is_empty() {
            let _ = writeln!(md, "### {title}\n");
            let _ = writeln!(md, "{}", markdown::draw(&t));
        }
    }
    let _ = writeln!(
        md,
        "<details><summary>How to read this</summary>\n\n{}\n</details>",
        method(c)
    );
    md
}
