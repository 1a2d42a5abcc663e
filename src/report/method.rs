//! What a report says about how its run was measured, generated from what the run
//! recorded: a run that timed only what could differ and stopped each comparison when
//! it was decided (`analysis.method` present) is described as such; a report of the
//! earlier sign-test engine keeps the words it was written with, so it re-renders byte
//! for byte.

use std::fmt::Write;

use super::fmt_ms;
use crate::experiment::result::ExperimentResult;

/// The sequential design's looks over every group, ascending: "3, 5, 8, 12 and 20".
fn looks(r: &ExperimentResult) -> Option<String> {
    let method = r.analysis.method.as_ref()?;
    let mut looks: Vec<usize> = method
        .groups
        .iter()
        .flat_map(|g| g.design.looks.iter().copied())
        .collect();
    looks.sort_unstable();
    looks.dedup();
    let words: Vec<String> = looks.iter().map(usize::to_string).collect();
    Some(match words.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => "none".into(),
    })
}

/// The header's Schedule row.
pub fn schedule_row(r: &ExperimentResult) -> String {
    let sched = &r.schedule;
    let Some(looks) = looks(r) else {
        let budget = r
            .runs
            .budget_ms
            .map(|b| {
                if r.runs.min_in_rounds {
                    format!(
                        "; budget {} per cell, its fresh backends' unrecorded first runs included (at least {} rounds, by default the fewest in which the sign test can call a change over this matrix; a cell leaves the rounds once spent, or once the median of its round medians is tight to ±2%)",
                        fmt_ms(b as f64),
                        r.runs.min
                    )
                } else {
                    format!(
                        "; budget {} per cell (at least {} runs; a cell leaves the rounds once spent, or once its median is tight to ±2%)",
                        fmt_ms(b as f64),
                        r.runs.min
                    )
                }
            })
            .unwrap_or_default();
        return format!(
            "{} warmup, then {} rounds × {} run(s) per cell (cells under 1 ms: a block of up to 10, compared by the block's median), every round in its own random order (seed {}){budget}; timeout {} ms",
            sched.warmup, sched.rounds, sched.block, sched.seed, r.runs.timeout_ms
        );
    };
    let budget = r
        .runs
        .budget_ms
        .map(|b| {
            format!(
                "; budget {} per cell, its fresh backends' unrecorded first runs included (past it a comparison stops, decided or not, after at least {} rounds)",
                fmt_ms(b as f64),
                r.runs.min
            )
        })
        .unwrap_or_default();
    format!(
        "{} warmup run(s) per cell on a fresh backend, the last the cell's evidence; then the cells whose plan, blocks or rows differ from their reference's, with their references and the A/A control, in rounds of {} run(s) per cell (cells under 1 ms: a block of up to 10, compared by the block's median), each cell on a fresh backend warmed by one unrecorded run, every round in its own random order (seed {}); every open comparison judged after {looks} rounds, and stopped once decided{budget}; timeout {} ms",
        sched.warmup.max(1),
        sched.block,
        sched.seed,
        r.runs.timeout_ms
    )
}

/// The paragraph above the summary's timing table.
pub fn timings_intro(r: &ExperimentResult) -> &'static str {
    if r.analysis.method.is_none() {
        return "The fastest cell per query that is called faster than the reference: its per-round ratios lie beyond the threshold (max of 5% and the query's A/A floor) in a sign test, Holm-corrected across the matrix. `~` otherwise; the measured change and its 95% interval are shown either way.";
    }
    "The fastest cell per query called faster than the reference: the interval of its change (Student's t on the per-round log ratios, at a level that holds for every comparison timed and every look at once, α = 0.05) lies wholly beyond the threshold, max(5%, the query's A/A floor). `~` otherwise, with the measured change and that interval; *within* when the interval lies wholly inside the threshold (decided: no change that large). Cells that do the same work as their reference (same plan, blocks and rows) were not timed."
}

/// The paragraph under "## Plans".
pub fn plans_intro(r: &ExperimentResult) -> &'static str {
    if r.analysis.method.is_none() {
        return "One `EXPLAIN (ANALYZE, BUFFERS, TIMING ON)` run per cell, after the measured runs.";
    }
    "A timed cell's plan with per-node times: one `EXPLAIN (ANALYZE, BUFFERS, TIMING ON)` run after its rounds; a cell not timed shows its evidence run (`TIMING OFF`: rows and buffers per node, no times)."
}

/// The terminal's last line.
pub fn legend(r: &ExperimentResult) -> &'static str {
    if r.analysis.method.is_none() {
        return "~ = no change beyond noise (paired rounds, sign test against max(5%, A/A floor), Holm, α=0.05)";
    }
    "~ = not called (paired rounds; t interval of the mean log ratio, family-wise α=0.05 over comparisons and looks, against max(5%, A/A floor)); not timed = same plan, blocks and rows as the reference"
}

/// Which variants ran where, in words: None for a report made before copies were shared.
fn copies_sentence(r: &ExperimentResult) -> Option<String> {
    let names = |placement: &str| -> Vec<String> {
        r.variants
            .iter()
            .filter(|v| v.placement.as_deref() == Some(placement))
            .map(|v| format!("`{}`", v.name))
            .collect()
    };
    let (shared, own, apart) = (names("shared"), names("own"), names("apart"));
    if shared.is_empty() && own.is_empty() && apart.is_empty() {
        return None;
    }
    let mut text = format!(
        "{} ran on one shared copy of the dataset: every variant's new indexes built there once (their `DROP INDEX`es left out), and each run inside a transaction that first dropped what its variant lacks (the other variants' indexes, those it drops itself) and was rolled back; new indexes alone need no `ANALYZE`, so all of them are planned on the base's statistics (tables with new expression indexes or statistics objects are analyzed).",
        shared.join(", ")
    );
    if !own.is_empty() {
        let _ = write!(
            text,
            " {} rewrite tables and ran on copies of their own, built by their statements and then `ANALYZE`d.",
            own.join(", ")
        );
    }
    if !apart.is_empty() {
        text.push_str(" The A/A control ran on another copy of the base than the baseline's, so its floor includes what separate copies differ by.");
    }
    text.push_str(" When no cell writes, each database is measured as it is (the base, a cached build); otherwise on a throw-away copy (`CREATE DATABASE ... TEMPLATE`). JIT off.");
    Some(text)
}

/// "## How to read this".
pub fn how_to_read(r: &ExperimentResult) -> String {
    let s = &r.schedule;
    let baseline = &r.baseline;
    let settings = r
        .settings
        .first()
        .map(|s| s.name.as_str())
        .unwrap_or("default");
    let experiment = &r.experiment;
    let Some(looks) = looks(r) else {
        return format!(
            "- **execution** is the server's execution time from `EXPLAIN (ANALYZE, BUFFERS, TIMING OFF)`: median of every measured run, with the 95% confidence interval of the median (order statistics) and the fastest and slowest run. **planning** is reported beside it and compared on its own.\n\
             - **Schedule**: every variant's copy was built first; then {warmup} warmup run(s) per cell, then {rounds} rounds, each visiting every cell once ({block} run(s); a cell under 1 ms runs a block of up to 10, whose median stands for the round) in its own seeded random order, on a connection per variant and settings set kept open all along. Reads were measured in rounds on every copy before any rolled-back DML (which clears visibility-map bits).\n\
             - **vs reference** compares a cell with its reference (variant `{baseline}`, settings `{settings}`, first query form, same parameters) round by round: in every round the ratio of the two medians, so drift between rounds cancels. The change is the median ratio, with its 95% interval. It is called (faster or slower) only when a sign test finds the ratios beyond the threshold, max(5%, the query's A/A floor), more often than chance, at α = 0.05 after Holm correction across the matrix; `~` otherwise.\n\
             - **A/A control**: a second copy of the baseline, built and measured exactly like a variant. The far end of the 95% interval of its median ratio to the baseline is the query's noise floor. When the control itself differs beyond 5%, the run is *noisy* and names no winner on timing.\n\
             - **evidence**, **shared hit / read**, **heap fetches**, **rows removed** (filters and index rechecks) and **rows** are exact counts (buffers: median of the runs; others: the last run). *Same plan, same buffers* beside a timing change means the plan does not explain it.\n\
             - Each variant ran in its own copy of the dataset (`CREATE DATABASE ... TEMPLATE`), built by its statements and then `ANALYZE`d (a variant without statements keeps the base's statistics); JIT off.\n\
             - Raw samples, with the round of each, and every round's order: `{experiment}.json` next to this file.",
            warmup = s.warmup,
            rounds = s.rounds,
            block = s.block,
        );
    };
    let mut text = String::new();
    if r.queries.is_empty() {
        let _ = write!(
            text,
            "- **Load**: each variant's database under the experiment's `load:` section: for every client count, `repeat` runs of the measured window after a warmup, each client on a connection of its own. TPS counts the transactions committed per second of the window; latencies are those of every transaction (p50 / p95 / p99). The summary sets each variant beside the baseline and judges the targets the file names.\n\
             - A load average above the machine's CPUs means the clients and the server shared them: what bounds a high client count may be the machine, not the index.\n\
             - Raw results of every run: `{experiment}.json` next to this file."
        );
        return text;
    }
    let _ = writeln!(
        text,
        "- **execution** is the server's execution time from `EXPLAIN (ANALYZE, BUFFERS, TIMING OFF)`: median of every recorded run, with the 95% confidence interval of the median (order statistics) and the fastest and slowest run. **planning** is reported beside it and compared on its own."
    );
    let _ = writeln!(
        text,
        "- **Evidence first**: every cell ran {warmup} warmup run(s) on a fresh backend; the last one's plan, blocks (hit + read), rows, heap fetches, temporary and bitmap blocks, rows removed and partitions scanned are the cell's *evidence*, exact counts whatever the machine's noise. A cell whose evidence equals its reference's (counts within 1% or one block) does the same work and was **not timed**. Cells under other settings than their reference's, and cells whose runs call triggers or scan no table (work EXPLAIN does not count), are always timed; `runs.time_identical: true` (`--time-identical`) times every cell.",
        warmup = s.warmup.max(1)
    );
    let _ = writeln!(
        text,
        "- **Rounds**: the timed cells ran in rounds, each visiting every cell still needed once in its own seeded random order, each cell on a backend opened for the round and warmed by one unrecorded run, for {block} recorded run(s) (a cell under 1 ms runs a block of up to 10, whose median stands for the round). Reads were measured on every database before any rolled-back DML (which clears visibility-map bits).",
        block = s.block
    );
    let _ = writeln!(
        text,
        "- **vs reference** compares a cell with its reference (variant `{baseline}`, settings `{settings}`, first query form, same parameters) round by round: in every round the ratio of the two medians, so drift between rounds cancels. The change is the geometric mean of those ratios; its interval is Student's t interval of the mean log ratio at level 1 − 0.05 / (comparisons timed × looks), Bonferroni over every comparison and every look, so the chance that any call of the run is wrong is at most 5%. After {looks} rounds every open comparison is judged: **faster** or **slower** when the interval lies wholly beyond the threshold, max(5%, the query's A/A floor over the same rounds), *within* when it lies wholly inside it; either way it stops, and a cell no open comparison needs leaves the rounds. `~` is a comparison still open at its last round. A change of less than one timer quantum (1 µs) is never called."
    );
    let _ = writeln!(
        text,
        "- **A/A control**: a second copy of the baseline, measured like a variant in every query with a timed comparison. The far end of the 95% interval of its mean log ratio to the baseline is the query's noise floor. Where the control itself differs beyond 5%, that query names no winner on timing, unless the winner's plan or blocks differ too."
    );
    let _ = writeln!(
        text,
        "- **evidence**, **shared hit / read**, **heap fetches**, **rows removed** (filters and index rechecks) and **rows** are exact counts (buffers: median of the recorded runs, or the evidence run's; others: the last run). *Same plan, same buffers* beside a timing change means the plan does not explain it."
    );
    if let Some(copies) = copies_sentence(r) {
        let _ = writeln!(text, "- **Copies**: {copies}");
    }
    let _ = write!(
        text,
        "- Raw samples, with the round of each, every round's order and the design of every group of comparisons: `{experiment}.json` next to this file."
    );
    text
}
