//! A rehearsal, rendered: a terminal summary and a Markdown report for the pull request.

use std::fmt::Write as _;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

use super::{MigrationRun, Rehearsal, Window};

/// One sentence per migration: what clients felt.
pub fn verdict(run: &MigrationRun) -> String {
    if let Some(error) = &run.error {
        return format!("{} FAILED after {:.2} s: {error}", run.label, run.seconds);
    }
    let by_migration: Vec<&super::WaitGroup> = run
        .waits
        .iter()
        .filter(|w| w.who == "load client" && w.blocked_by_migration)
        .collect();
    if by_migration.is_empty() {
        return format!(
            "{} took {:.2} s; no load client was seen waiting on its locks ({} samples)",
            run.label, run.seconds, run.samples
        );
    }
    let what: Vec<String> = by_migration
        .iter()
        .map(|w| format!("{} on {}", w.mode, w.on))
        .collect();
    format!(
        "{} took {:.2} s and BLOCKED load clients: {} distinct, up to {} at once, waiting for {} (seen in {} of {} samples)",
        run.label,
        run.seconds,
        run.clients_blocked,
        run.max_clients_blocked,
        what.join(", "),
        by_migration.iter().map(|w| w.samples).max().unwrap_or(0),
        run.samples
    )
}

fn phase_row(w: &Window, waits: Option<&(usize, usize)>) -> Vec<String> {
    let mut row = vec![
        w.name.clone(),
        format!("{:.1}", w.seconds),
        format!("{:.0}", w.tps),
        format!("{:.2}", w.latency_ms.p50),
        format!("{:.2}", w.latency_ms.p99),
        format!("{:.2}", w.latency_ms.max),
        w.errors.to_string(),
        w.timeouts.to_string(),
    ];
    if let Some((most, distinct)) = waits {
        row.push(format!("{most} ({distinct})"));
    }
    row
}

const PHASE_HEADER: [&str; 9] = [
    "phase",
    "s",
    "TPS",
    "p50 ms",
    "p99 ms",
    "max ms",
    "errors",
    "timeouts",
    "clients waiting on locks: max (distinct)",
];

pub fn terminal(r: &Rehearsal) -> String {
    let mut out = format!(
        "rehearsal of {} on a copy of {} (scale {}), {} load clients ({}), PostgreSQL {}\n",
        r.plan.experiment, r.base, r.plan.scale, r.plan.clients, r.script_mix, r.server_version
    );
    for run in &r.migrations {
        let _ = writeln!(out, "  {}", verdict(run));
    }
    let mut migrations = Table::new();
    migrations.load_style(UTF8_FULL_CONDENSED).set_header(vec![
        "migration",
        "s",
        "TPS",
        "p99 ms",
        "errors",
        "timeouts",
        "clients blocked",
        "lock waits seen",
    ]);
    for run in &r.migrations {
        migrations.add_row(vec![
            run.label.clone(),
            format!("{:.2}", run.seconds),
            format!("{:.0}", run.load.tps),
            format!("{:.2}", run.load.latency_ms.p99),
            run.load.errors.to_string(),
            run.load.timeouts.to_string(),
            format!(
                "{} (max {} at once)",
                run.clients_blocked, run.max_clients_blocked
            ),
            waits_text(run),
        ]);
    }
    let _ = writeln!(out, "{migrations}");
    let mut phases = Table::new();
    phases
        .load_style(UTF8_FULL_CONDENSED)
        .set_header(PHASE_HEADER.to_vec());
    for (w, waits) in r.phases.iter().zip(&r.phase_waits) {
        phases.add_row(phase_row(w, Some(waits)));
    }
    let _ = writeln!(out, "{phases}");
    for problem in &r.problems {
        let _ = writeln!(out, "problem: {problem}");
    }
    for message in &r.error_samples {
        let _ = writeln!(out, "client error seen: {message}");
    }
    if !r.lint.is_empty() {
        let _ = writeln!(
            out,
            "lint: {} finding(s) in the rehearsed migrations (`pgx lint` shows them)",
            r.lint.len()
        );
    }
    out
}

fn waits_text(run: &MigrationRun) -> String {
    if run.waits.is_empty() {
        return "none".into();
    }
    run.waits
        .iter()
        .map(|w| {
            format!(
                "{} ×{} {} on {}{}",
                w.who,
                w.sessions,
                w.mode,
                w.on,
                if w.blocked_by_migration {
                    " (by the migration)"
                } else {
                    ""
                }
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn md_row(cells: &[String]) -> String {
    let escaped: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
    format!("| {} |\n", escaped.join(" | "))
}

fn md_header(cells: &[&str]) -> String {
    let mut out = md_row(&cells.iter().map(|c| c.to_string()).collect::<Vec<_>>());
    out.push_str(&format!("|{}\n", "---|".repeat(cells.len())));
    out
}

pub fn markdown(r: &Rehearsal) -> String {
    let mut md = format!("# Migration rehearsal: `{}`\n\n", r.plan.experiment);
    let _ = writeln!(
        md,
        "The migrations above version {} applied to a copy of the experiment's dataset \
         (`{}`, scale {}) while its load ran with {} clients ({}). PostgreSQL {}, git {}, {}. \
         Lock waits sampled from `pg_stat_activity` + `pg_locks` every {} ms ({} samples).\n",
        r.plan.from,
        r.base,
        r.plan.scale,
        r.plan.clients,
        r.script_mix,
        r.server_version,
        r.git_commit,
        r.date,
        r.plan.sample_every.as_millis(),
        r.samples
    );
    if r.failed() {
        md.push_str("**The rehearsal did not complete cleanly** (see below).\n\n");
    }
    md.push_str("## Summary\n\n");
    for run in &r.migrations {
        let _ = writeln!(md, "- {}", verdict(run));
    }
    md.push_str("\n## Migrations\n\n");
    md.push_str(&md_header(&[
        "migration",
        "runs",
        "duration s",
        "TPS while it ran",
        "p99 ms",
        "errors",
        "timeouts",
        "load clients blocked (max at once)",
    ]));
    for run in &r.migrations {
        md.push_str(&md_row(&[
            format!("`{}`", run.label),
            if run.no_transaction {
                "statement by statement".into()
            } else {
                "in a transaction".into()
            },
            format!("{:.2}", run.seconds),
            format!("{:.0}", run.load.tps),
            format!("{:.2}", run.load.latency_ms.p99),
            run.load.errors.to_string(),
            run.load.timeouts.to_string(),
            format!("{} ({})", run.clients_blocked, run.max_clients_blocked),
        ]));
    }
    md.push_str("\n### Lock waits observed\n\n");
    let any_waits = r.migrations.iter().any(|m| !m.waits.is_empty());
    if !any_waits {
        md.push_str("No session was seen waiting for a lock while the migrations ran.\n");
    } else {
        md.push_str(&md_header(&[
            "migration",
            "who waited",
            "on",
            "mode asked for",
            "blocked by the migration",
            "sessions",
            "max at once",
            "samples",
            "longest statement ms",
            "example",
        ]));
        for run in &r.migrations {
            for w in &run.waits {
                md.push_str(&md_row(&[
                    format!("`{}`", run.label),
                    w.who.clone(),
                    format!("`{}`", w.on),
                    w.mode.clone(),
                    if w.blocked_by_migration { "yes" } else { "no" }.into(),
                    w.sessions.to_string(),
                    w.max_at_once.to_string(),
                    w.samples.to_string(),
                    format!("{:.0}", w.longest_ms),
                    format!("`{}`", w.example_query.replace('\n', " ")),
                ]));
            }
        }
    }
    md.push_str("\n## Load before, during and after\n\n");
    md.push_str(&md_header(&PHASE_HEADER));
    for (w, waits) in r.phases.iter().zip(&r.phase_waits) {
        md.push_str(&md_row(&phase_row(w, Some(waits))));
    }
    md.push_str(
        "\nTPS counts the transactions committed inside the phase; latency, errors and \
         timeouts belong to the phase a transaction *started* in, so a client that waited \
         through a migration shows its wait under `during`.\n\n",
    );
    md.push_str("### Per script\n\n");
    md.push_str(&md_header(&[
        "script", "phase", "s", "TPS", "p50 ms", "p99 ms", "max ms", "errors", "timeouts",
    ]));
    for (script, windows) in &r.scripts {
        for w in windows {
            let mut row = vec![script.clone()];
            row.extend(phase_row(w, None));
            md.push_str(&md_row(&row));
        }
    }
    if !r.timeline.is_empty() {
        md.push_str("\n### Timeline\n\n```mermaid\nxychart-beta\n");
        let _ = writeln!(md, "    title \"TPS over time (s)\"");
        let labels: Vec<String> = r
            .timeline
            .iter()
            .map(|b| format!("\"{:.1}\"", b.start))
            .collect();
        let _ = writeln!(md, "    x-axis [{}]", labels.join(", "));
        let _ = writeln!(md, "    y-axis \"TPS\"");
        let values: Vec<String> = r.timeline.iter().map(|b| format!("{:.0}", b.tps)).collect();
        let _ = writeln!(md, "    line [{}]", values.join(", "));
        md.push_str("```\n\n<details><summary>Timeline table</summary>\n\n");
        md.push_str(&md_header(&[
            "from s",
            "phase",
            "TPS",
            "failed",
            "load clients waiting (max)",
        ]));
        for b in &r.timeline {
            md.push_str(&md_row(&[
                format!("{:.1}", b.start),
                b.phase.into(),
                format!("{:.0}", b.tps),
                b.failed.to_string(),
                b.waiting.to_string(),
            ]));
        }
        md.push_str("\n</details>\n");
    }
    let failed: Vec<&MigrationRun> = r.migrations.iter().filter(|m| m.error.is_some()).collect();
    if !failed.is_empty() || !r.problems.is_empty() || !r.error_samples.is_empty() {
        md.push_str("\n## Errors\n\n");
        for run in failed {
            let _ = writeln!(
                md,
                "- `{}`: {}",
                run.label,
                run.error.as_deref().unwrap_or("")
            );
        }
        for problem in &r.problems {
            let _ = writeln!(md, "- {problem}");
        }
        for message in &r.error_samples {
            let _ = writeln!(md, "- a load client saw: `{message}`");
        }
    }
    md.push_str("\n## Lint\n\n");
    if r.lint.is_empty() {
        md.push_str("`pgx lint` finds nothing in the rehearsed migrations.\n");
    } else {
        md.push_str("```\n");
        for d in &r.lint {
            let _ = writeln!(md, "{}\n", d.render("warning"));
        }
        md.push_str("```\n");
    }
    md
}
