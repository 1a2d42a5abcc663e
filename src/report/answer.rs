//! The report's first section: what to do, what it buys, what it costs, what it breaks,
//! and whether the seed's target is met — in sentences, from the answers the analysis
//! decided (`crate::experiment::analysis::answer`). Also the summary's tables of
//! regressions and costs. Drawn by both the terminal and the Markdown report.

use super::view::Table;
use super::*;
use crate::experiment::analysis::answer::{Answer, work};
use crate::experiment::result::{Key, RelationKind, VariantResult};

fn median(c: &Cell) -> Option<f64> {
    c.execution.as_ref().map(|s| s.median)
}

fn row_name(a: &Answer) -> String {
    format!("{} · {}", a.query, params_label(&a.params, &a.cache))
}

/// "0.577 s → 18.8 ms (-96.7%)".
fn before_after(reference: &Cell, cell: &Cell) -> String {
    match (median(reference), median(cell), cell.change) {
        (Some(a), Some(b), Some(c)) => format!("{} → {} ({})", fmt_ms(a), fmt_ms(b), pct(c.ratio)),
        _ => String::new(),
    }
}

/// Bytes of the variant's tables and indexes (what a reader sees in its sizes).
fn sizes(r: &ExperimentResult, v: &VariantResult) -> (i64, i64) {
    let (mut tables, mut indexes) = (0, 0);
    for rel in view::shown_relations(r, v) {
        match rel.kind {
            RelationKind::Table => tables += rel.bytes,
            RelationKind::Index => indexes += rel.bytes,
        }
    }
    (tables, indexes)
}

fn signed_bytes(bytes: i64) -> String {
    if bytes >= 0 {
        format!("+{}", fmt_bytes(bytes))
    } else {
        format!("-{}", fmt_bytes(-bytes))
    }
}

/// What a variant costs against the baseline: "+1.1 GiB of indexes, 14.2 s to build".
pub fn cost(r: &ExperimentResult, variant: &str) -> String {
    let find = |name: &str| r.variants.iter().find(|v| v.name == name);
    let (Some(v), Some(base)) = (find(variant), find(&r.baseline)) else {
        return String::new();
    };
    let ((t, i), (bt, bi)) = (sizes(r, v), sizes(r, base));
    let mut parts = Vec::new();
    if i != bi {
        parts.push(format!("{} of indexes", signed_bytes(i - bi)));
    }
    if t != bt {
        parts.push(format!("{} of tables", signed_bytes(t - bt)));
    }
    if v.build_seconds() > 0.0 {
        parts.push(format!(
            "{:.1} s to build{}",
            v.build_seconds(),
            if v.cached { " (cached build)" } else { "" }
        ));
    }
    if parts.is_empty() {
        "no extra size or build".into()
    } else {
        parts.join(", ")
    }
}

/// The worst slowdown among the slower cells `counts` accepts: "delete-by-parent · p2
/// +6.1%".
fn worst_regression(
    r: &ExperimentResult,
    counts: impl Fn(&Answer, &Cell) -> bool,
) -> Option<String> {
    r.analysis
        .answers
        .iter()
        .flat_map(|a| a.slower.iter().map(move |&i| (a, i)))
        .filter(|(a, i)| counts(a, &r.cells[*i]))
        .max_by(|(_, x), (_, y)| {
            let ratio = |i: usize| r.cells[i].change.map_or(0.0, |c| c.ratio);
            ratio(*x).total_cmp(&ratio(*y))
        })
        .map(|(a, i)| {
            let c = &r.cells[i];
            format!(
                "{} {}",
                row_name(a),
                c.change.map(|ch| pct(ch.ratio)).unwrap_or_default()
            )
        })
}

/// One sentence per row of the summary, then what the cache states cost the baseline.
pub fn lines(r: &ExperimentResult) -> Vec<String> {
    let mut lines = row_lines(r);
    lines.extend(cache_lines(r));
    lines
}

/// With a cache axis, per query and parameter set: the baseline's execution and planning
/// time in every cache state, warm first. Comparisons stay within a cache state (a cold
/// cell is compared with the baseline's cold cell); this says what a cold start costs.
fn cache_lines(r: &ExperimentResult) -> Vec<String> {
    let reference_settings = r.cells.first().map(|c| c.settings.clone());
    let baseline: Vec<&Cell> = r
        .cells
        .iter()
        .filter(|c| c.variant == r.baseline && Some(&c.settings) == reference_settings.as_ref())
        .collect();
    let mut states: Vec<&str> = Vec::new();
    for c in &baseline {
        if !states.contains(&c.cache.as_str()) {
            states.push(&c.cache);
        }
    }
    if states.len() < 2 {
        return Vec::new();
    }
    let mut rows: Vec<(&str, &str, &str)> = Vec::new();
    for c in &baseline {
        let key = (c.query.as_str(), c.form.as_str(), c.params.as_str());
        if !rows.contains(&key) {
            rows.push(key);
        }
    }
    rows.into_iter()
        .filter_map(|(query, form, params)| {
            let each: Vec<String> = states
                .iter()
                .filter_map(|state| {
                    let c = baseline.iter().find(|c| {
                        c.query == query
                            && c.form == form
                            && c.params == params
                            && c.cache == *state
                    })?;
                    let exec = median(c)?;
                    Some(match c.planning.as_ref() {
                        Some(p) => {
                            format!("{state} {} + {} planning", fmt_ms(exec), fmt_ms(p.median))
                        }
                        None => format!("{state} {}", fmt_ms(exec)),
                    })
                })
                .collect();
            (each.len() > 1).then(|| {
                let form = if form.is_empty() || form == "sql" || form == "default" {
                    String::new()
                } else {
                    format!(" · {form}")
                };
                format!(
                    "**{query} · {params}** by cache state (`{}`{form}, median): {}",
                    r.baseline,
                    each.join("; ")
                )
            })
        })
        .collect()
}

fn row_lines(r: &ExperimentResult) -> Vec<String> {
    r.analysis
        .answers
        .iter()
        .map(|a| {
            let reference = a.reference.and_then(|i| r.cells.get(i));
            let mut text = format!("**{}**: ", row_name(a));
            match (a.adopt.and_then(|i| r.cells.get(i)), reference) {
                (Some(best), Some(reference)) => {
                    text.push_str(&format!(
                        "adopt `{}`: {}",
                        row_label(r, best),
                        before_after(reference, best)
                    ));
                    if let Some(e) = &best.evidence {
                        text.push_str(&format!(
                            ", blocks {} → {}",
                            fmt_count(e.reference_blocks as i64),
                            fmt_count(e.blocks as i64)
                        ));
                    }
                    text.push_str(&format!("; costs {}", cost(r, &best.variant)));
                    // Adopting a variant with a form brings that form and the variant:
                    // a slower cell counts when it is that variant's with that form or
                    // with its row's reference form (the query as written, under the
                    // variant), not with another form of the same variant.
                    let adopted = |a: &Answer, c: &Cell| {
                        let reference_form =
                            a.reference.and_then(|j| r.cells.get(j)).map(|x| &x.form);
                        c.variant == best.variant
                            && (c.form == best.form || reference_form == Some(&c.form))
                    };
                    if let Some(worst) = worst_regression(r, adopted) {
                        text.push_str(&format!("; slower elsewhere: {worst}"));
                    }
                }
                _ => {
                    text.push_str("keep the baseline");
                    text.push_str(&keep_reason(r, a));
                }
            }
            let mut slower: Vec<&Cell> = a.slower.iter().filter_map(|&i| r.cells.get(i)).collect();
            slower.sort_by(|x, y| {
                let ratio = |c: &Cell| c.change.map_or(0.0, |ch| ch.ratio);
                ratio(y).total_cmp(&ratio(x))
            });
            if let (false, Some(reference)) = (slower.is_empty(), reference) {
                let named: Vec<String> = slower
                    .iter()
                    .take(3)
                    .map(|c| format!("`{}` {}", row_label(r, c), before_after(reference, c)))
                    .collect();
                let more = slower.len().saturating_sub(3);
                text.push_str(&format!(
                    ". Slower: {}{}",
                    named.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                ));
            }
            if let Some(t) = &a.target {
                text.push_str(&format!(". {}", target_text(r, t)));
            }
            text.push('.');
            text
        })
        .collect()
}

/// Why no cell is adopted in a row.
fn keep_reason(r: &ExperimentResult, a: &Answer) -> String {
    let reference = a.reference.and_then(|i| r.cells.get(i));
    if let (Some(&i), Some(reference)) = (a.unequal.first(), reference) {
        let c = &r.cells[i];
        let per = |cell: &Cell| match (median(cell), work(cell)) {
            (Some(ms), Some(w)) if w > 0.0 => fmt_ms(ms / w),
            _ => "-".into(),
        };
        return format!(
            ": `{}` is called {} but does other work ({} rows against {}): per row {} against {}, not compared as a win",
            row_label(r, c),
            c.change.map(|ch| pct(ch.ratio)).unwrap_or_default(),
            fmt_count(work(c).unwrap_or(0.0) as i64),
            fmt_count(work(reference).unwrap_or(0.0) as i64),
            per(c),
            per(reference)
        );
    }
    if let (Some(&i), Some(reference)) = (a.negligible.first(), reference) {
        let c = &r.cells[i];
        let gain = median(reference).zip(median(c)).map_or(0.0, |(x, y)| x - y);
        return format!(
            ": `{}` is faster by only {:.1} µs ({})",
            row_label(r, c),
            gain * 1000.0,
            c.change.map(|ch| pct(ch.ratio)).unwrap_or_default()
        );
    }
    let cells = r
        .cells
        .iter()
        .filter(|c| {
            c.query == a.query
                && c.params == a.params
                && c.cache == a.cache
                && c.reference.is_some()
                && Some(&c.variant) != r.control.as_ref()
        })
        .count();
    if cells > 0 && a.untimed == cells {
        return ": no variant changes its plan, blocks or rows (none needed timing)".into();
    }
    ": no variant is faster beyond the threshold".into()
}

fn target_text(
    r: &ExperimentResult,
    t: &crate::experiment::analysis::answer::TargetCheck,
) -> String {
    let best = t.best_ms.map(fmt_ms).unwrap_or_else(|| "-".into());
    match t.met {
        Some(true) => format!("Target under {}: **met** ({best})", fmt_ms(t.under_ms)),
        Some(false) => format!(
            "Target under {}: **not met** (best {best})",
            fmt_ms(t.under_ms)
        ),
        None => format!(
            "Target under {}: not evaluated at scale {} (the seed's target holds at scale 1; here {best})",
            fmt_ms(t.under_ms),
            r.scale
        ),
    }
}

/// One sentence per candidate variant: where it is adopted, where it is slower, what it
/// costs.
pub fn variant_lines(r: &ExperimentResult) -> Vec<String> {
    r.compared_variants()
        .filter(|v| v.name != r.baseline)
        .map(|v| {
            if let Some(err) = &v.error {
                return format!("`{}`: failed: {}", v.name, err.lines().next().unwrap_or(""));
            }
            let adopted = r
                .analysis
                .answers
                .iter()
                .filter(|a| a.adopt.is_some_and(|i| r.cells[i].variant == v.name))
                .count();
            let slower = r
                .analysis
                .answers
                .iter()
                .flat_map(|a| a.slower.iter())
                .filter(|&&i| r.cells[i].variant == v.name)
                .count();
            let mut text = format!(
                "`{}`: adopted on {adopted} of {} rows, slower on {slower}",
                v.name,
                r.analysis.answers.len()
            );
            if let Some(worst) = worst_regression(r, |_, c| c.variant == v.name) {
                text.push_str(&format!(" (worst: {worst})"));
            }
            text.push_str(&format!("; {}.", cost(r, &v.name)));
            text
        })
        .collect()
}

/// Every cell called slower than its reference.
pub fn regressions_table(r: &ExperimentResult) -> Table {
    let mut t = Table::new(&[
        "query",
        "params",
        "variant",
        "change [CI]",
        "before → after",
        "evidence",
    ]);
    for a in &r.analysis.answers {
        let Some(reference) = a.reference.and_then(|i| r.cells.get(i)) else {
            continue;
        };
        for &i in &a.slower {
            let c = &r.cells[i];
            t.rows.push(vec![
                a.query.clone(),
                params_label(&a.params, &a.cache),
                row_label(r, c),
                fmt_change(c.change.as_ref()),
                before_after(reference, c),
                fmt_evidence(c),
            ]);
        }
    }
    t
}

/// Every variant's cost against the baseline.
pub fn costs_table(r: &ExperimentResult) -> Table {
    let mut t = Table::new(&["variant", "on", "tables", "indexes", "build time"]);
    let find = |name: &str| r.variants.iter().find(|v| v.name == name);
    let base = find(&r.baseline).map(|b| sizes(r, b)).unwrap_or((0, 0));
    for v in r.compared_variants().filter(|v| v.error.is_none()) {
        let (tables, indexes) = sizes(r, v);
        let delta = |now: i64, then: i64| {
            if v.name == r.baseline || now == then {
                fmt_bytes(now)
            } else {
                format!("{} ({})", fmt_bytes(now), signed_bytes(now - then))
            }
        };
        t.rows.push(vec![
            v.name.clone(),
            match v.placement.as_deref() {
                Some("shared") => "shared copy".into(),
                Some("own") => "own copy".into(),
                Some(other) => other.to_string(),
                None => String::new(),
            },
            delta(tables, base.0),
            delta(indexes, base.1),
            format!(
                "{:.1} s{}",
                v.build_seconds(),
                if v.cached { " (cached)" } else { "" }
            ),
        ]);
    }
    t
}

/// Where the answer holds: a run below the seeds' scale says so, and names the report
/// at scale 1 when there is one.
pub fn scale_line(r: &ExperimentResult, others: &[(String, ExperimentResult)]) -> Option<String> {
    if r.scale == 1.0 {
        return None;
    }
    let at_one = others.iter().find(|(_, o)| o.scale == 1.0);
    Some(match at_one {
        Some((stem, other)) => format!(
            "Scale: this run is at scale {}; the seeds' questions are about scale 1 (production size). `{stem}.md` answers at scale 1; {} cell(s) differ from this run in plan or verdict (see *At scale 1* below).",
            r.scale,
            scale_differences(r, other).rows.len()
        ),
        None => format!(
            "Scale: this run is at scale {}; the seeds' questions are about scale 1 (production size), and no scale-1 report of this experiment sits beside this one: answers can change with size (`pgx experiment {} --scale 1`).",
            r.scale, r.experiment
        ),
    })
}

/// The cells both runs measured whose plan signature or verdict differs.
pub fn scale_differences(r: &ExperimentResult, other: &ExperimentResult) -> Table {
    let mut t = Table::new(&[
        "query · params · cache",
        "cell",
        &format!("plan at {}", r.scale),
        &format!("plan at {}", other.scale),
        &format!("verdict at {}", r.scale),
        &format!("verdict at {}", other.scale),
    ]);
    let theirs: std::collections::HashMap<Key, &Cell> =
        other.compared_cells().map(|c| (Key::of(c), c)).collect();
    let verdict = |c: &Cell| match (&c.untimed, c.reference, &c.change) {
        (Some(_), _, _) => "not timed".to_string(),
        (_, None, _) => "reference".to_string(),
        (_, _, Some(ch)) if ch.verdict != crate::stats::Verdict::NoChange => pct(ch.ratio),
        _ => "~".to_string(),
    };
    for c in r.compared_cells() {
        let Some(o) = theirs.get(&Key::of(c)) else {
            continue;
        };
        // The plan as the report shows it (access, indexes, partitions).
        let plan = |x: &Cell| fmt_plan(x);
        let called = |x: &Cell| {
            x.change
                .map(|ch| ch.verdict)
                .unwrap_or(crate::stats::Verdict::NoChange)
        };
        let plan_differs = plan(c) != plan(o);
        // A verdict differs when one run calls a direction the other does not.
        let verdict_differs = called(c) != called(o);
        if !(plan_differs || verdict_differs) {
            continue;
        }
        t.rows.push(vec![
            format!("{} · {} · {}", c.query, c.params, c.cache),
            row_label(r, c),
            fmt_plan(c),
            fmt_plan(o),
            verdict(c),
            verdict(o),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::measured::{MeasuredCell, Measurements, TimedGroup};
    use crate::experiment::result::{
        Environment, Equivalence, ParamSet, QueryInfo, RelationSize, RunsUsed, Sample,
        ScheduleInfo, SettingsSet, VariantResult,
    };
    use crate::explain::{Access, PlanSummary};
    use crate::stats::sequential::Design;

    const ROUNDS: usize = 12;

    fn plan(signature: &str, blocks: u64, rows: f64) -> PlanSummary {
        let mut p: PlanSummary = serde_json::from_value(serde_json::json!({
            "planning_ms": 0.1, "execution_ms": 1.0, "signature": signature,
            "access": "SeqScan", "index_names": [], "rows": rows, "heap_fetches": 0,
            "rows_removed_by_filter": 0, "rows_removed_by_recheck": 0,
            "exact_heap_blocks": 0, "lossy_heap_blocks": 0,
            "buffers": {"shared_hit": blocks, "shared_read": 0, "shared_dirtied": 0,
                        "shared_written": 0, "temp_read": 0, "temp_written": 0},
            "planning_buffers": {"shared_hit": 0, "shared_read": 0, "shared_dirtied": 0,
                        "shared_written": 0, "temp_read": 0, "temp_written": 0},
            "partitions_scanned": 0, "subplans_removed": 0, "never_executed": 0,
            "workers_planned": 0, "workers_launched": 0, "jit": false, "settings": []
        }))
        .expect("a plan summary");
        p.access = Access::SeqScan;
        p
    }

    /// A cell whose every round took `ms` × (1 ± a per-round wobble of `wobble`).
    fn cell(
        variant: &str,
        query: &str,
        form: &str,
        reference: Option<usize>,
        ms: f64,
        wobble: f64,
        plan: PlanSummary,
    ) -> MeasuredCell {
        let samples = (0..ROUNDS)
            .map(|round| Sample {
                round,
                planning_ms: 0.1,
                execution_ms: ms * (1.0 + wobble * if round % 2 == 0 { 1.0 } else { -1.0 }),
                buffers: plan.buffers.clone(),
                heap_fetches: 0,
                signature: 0,
            })
            .collect();
        MeasuredCell {
            variant: variant.into(),
            settings: "default".into(),
            cache: "warm".into(),
            query: query.into(),
            form: form.into(),
            params: "p1".into(),
            reference,
            samples,
            signatures: vec![plan.signature.clone()],
            plan: Some(plan),
            timed_plan: None,
            error: None,
            partitions_total: 0,
            eviction: None,
            untimed: None,
            group: Some(0),
        }
    }

    fn variant(name: &str, control: bool, index_bytes: i64) -> VariantResult {
        VariantResult {
            name: name.into(),
            about: String::new(),
            control,
            statements: if index_bytes > 0 {
                vec![crate::experiment::result::Timing {
                    label: "CREATE INDEX".into(),
                    seconds: 2.5,
                }]
            } else {
                Vec::new()
            },
            cached: false,
            relations: vec![RelationSize {
                kind: RelationKind::Index,
                name: "public.t_i".into(),
                table: "public.t".into(),
                method: "btree".into(),
                bytes: 1000 + index_bytes,
                partitions: 0,
            }],
            error: None,
            workload: None,
            table_stats: Vec::new(),
            maintenance: Vec::new(),
            load: None,
            placement: Some("shared".into()),
        }
    }

    fn query(name: &str, forms: &[&str], equivalent: bool) -> QueryInfo {
        QueryInfo {
            name: name.into(),
            about: String::new(),
            forms: forms
                .iter()
                .map(|f| (f.to_string(), "SELECT 1".to_string()))
                .collect(),
            params: vec![ParamSet {
                label: "p1".into(),
                values: Vec::new(),
            }],
            rollback: false,
            equivalence: if forms.len() > 1 {
                vec![Equivalence {
                    variant: "base".into(),
                    settings: "default".into(),
                    params: "p1".into(),
                    fingerprints: Vec::new(),
                    equivalent,
                }]
            } else {
                Vec::new()
            },
            target_ms: None,
        }
    }

    /// A run with, in `fast-slow`, a variant 2× faster (the answer adopts it) and one 2×
    /// slower (a regression); in `forms`, a form 5× faster that returns a tenth of the
    /// rows (other work: flagged, per row, never a win); in `tiny`, a 4 µs query whose
    /// control reads 5 µs (a floor at the timer's resolution); in `noisy`, a control 30%
    /// off the baseline in every round, beside a variant 2× faster on the same plan and
    /// blocks (called, but withheld as a win) — while the other queries' calls stand.
    fn measured() -> Measurements {
        let same = plan("Seq Scan", 100, 10.0);
        let mut cells = Vec::new();
        let mut push = |c: MeasuredCell| {
            cells.push(c);
            cells.len() - 1
        };
        // fast-slow
        let base = push(cell(
            "base",
            "fast-slow",
            "sql",
            None,
            10.0,
            0.01,
            same.clone(),
        ));
        push(cell(
            "fast",
            "fast-slow",
            "sql",
            Some(base),
            5.0,
            0.01,
            plan("Index Scan", 10, 10.0),
        ));
        push(cell(
            "slow",
            "fast-slow",
            "sql",
            Some(base),
            20.0,
            0.01,
            plan("Bitmap Scan", 300, 10.0),
        ));
        push(cell(
            "control",
            "fast-slow",
            "sql",
            Some(base),
            10.0,
            0.012,
            same.clone(),
        ));
        // forms
        let forms = push(cell(
            "base",
            "forms",
            "all",
            None,
            10.0,
            0.01,
            plan("Seq Scan", 100, 100.0),
        ));
        push(cell(
            "base",
            "forms",
            "some",
            Some(forms),
            2.0,
            0.01,
            plan("Limit > Seq Scan", 20, 10.0),
        ));
        push(cell(
            "control",
            "forms",
            "all",
            Some(forms),
            10.0,
            0.012,
            plan("Seq Scan", 100, 100.0),
        ));
        // tiny
        let tiny = push(cell("base", "tiny", "sql", None, 0.004, 0.0, same.clone()));
        push(cell(
            "fast",
            "tiny",
            "sql",
            Some(tiny),
            0.004,
            0.0,
            plan("Index Scan", 3, 10.0),
        ));
        push(cell(
            "control",
            "tiny",
            "sql",
            Some(tiny),
            0.005,
            0.0,
            same.clone(),
        ));
        // noisy
        let noisy = push(cell("base", "noisy", "sql", None, 10.0, 0.01, same.clone()));
        push(cell(
            "fast",
            "noisy",
            "sql",
            Some(noisy),
            5.0,
            0.01,
            same.clone(),
        ));
        push(cell(
            "control",
            "noisy",
            "sql",
            Some(noisy),
            13.0,
            0.01,
            same.clone(),
        ));
        let compared = cells
            .iter()
            .filter(|c| c.reference.is_some() && c.variant != "control")
            .count();
        let controls = cells.iter().filter(|c| c.variant == "control").count();
        Measurements {
            experiment: "answers".into(),
            about: String::new(),
            seed: String::new(),
            scale: 1.0,
            environment: Environment {
                postgres_version: "PostgreSQL 15".into(),
                pgx_version: "0".into(),
                git_commit: "x".into(),
                date: "2026-12-06 00:00 UTC".into(),
                server: "embedded".into(),
                cpus: 2,
                memory_gib: 24.0,
                server_settings: Vec::new(),
                load_before: None,
                load_after: None,
            },
            runs: RunsUsed {
                warmup: 1,
                repeat: ROUNDS,
                timeout_ms: 1000,
                budget_ms: None,
                min: 3,
                min_in_rounds: true,
            },
            dataset: serde_json::from_value(serde_json::json!({
                "key": "k", "database": "d", "reused": true, "build_seconds": 0.0,
                "steps": [], "row_counts": []
            }))
            .expect("dataset info"),
            baseline: "base".into(),
            control: Some("control".into()),
            schedule: ScheduleInfo::default(),
            settings: vec![SettingsSet {
                name: "default".into(),
                values: Vec::new(),
                not_applicable: None,
                applied_server_wide: Vec::new(),
            }],
            queries: vec![
                query("fast-slow", &["sql"], true),
                query("forms", &["all", "some"], true),
                query("tiny", &["sql"], true),
                query("noisy", &["sql"], true),
            ],
            variants: vec![
                variant("base", false, 0),
                variant("fast", false, 4096),
                variant("slow", false, 0),
                variant("control", true, 0),
            ],
            cells,
            groups: vec![TimedGroup {
                name: "reads, warm".into(),
                design: Design::new(20, compared),
                controls,
                rounds: (0..ROUNDS).collect(),
            }],
            interrupted: false,
            stopped_by: None,
            screening: None,
            wall: None,
            shard: None,
        }
    }

    #[test]
    fn the_answer_adopts_what_wins_names_regressions_costs_and_unequal_work() {
        let r = crate::experiment::analysis::analyze(measured());
        let md = crate::report::markdown::render(&r);
        let answer = md
            .split("## Answer")
            .nth(1)
            .and_then(|rest| rest.split("## Summary").next())
            .unwrap_or_else(|| panic!("an Answer section first: {md}"));
        // The winner, with before → after, its cost, and the regression.
        assert!(
            answer.contains("**fast-slow · p1**: adopt `fast`: 10.0 ms → 5.000 ms"),
            "{answer}"
        );
        assert!(
            answer.contains("+4 KiB of indexes, 2.5 s to build"),
            "{answer}"
        );
        assert!(
            answer.contains("Slower: `slow` 10.0 ms → 20.0 ms"),
            "{answer}"
        );
        // Other work: flagged, per row, not a win.
        assert!(
            answer.contains("**forms · p1**: keep the baseline: `base · some` is called -80.0% but does other work (10 rows against 100): per row 0.200 ms against 0.100 ms"),
            "{answer}"
        );
        // The noisy query names no timing winner; the other queries keep theirs.
        assert!(
            answer.contains(
                "**noisy · p1**: keep the baseline: no variant is faster beyond the threshold"
            ),
            "{answer}"
        );
        let noisy = r
            .analysis
            .noisy
            .as_deref()
            .expect("the control differed on noisy");
        assert!(
            noisy.contains("noisy p1") && !noisy.contains("fast-slow"),
            "{noisy}"
        );
        let called = |query: &str| {
            r.cells
                .iter()
                .find(|c| c.variant == "fast" && c.query == query)
                .and_then(|c| c.change)
                .map(|ch| ch.verdict)
        };
        assert_eq!(
            called("noisy"),
            Some(crate::stats::Verdict::Faster),
            "called, not adopted"
        );
        assert_eq!(called("fast-slow"), Some(crate::stats::Verdict::Faster));
        // By variant: where it wins, where it is slower, its cost.
        assert!(
            answer.contains(
                "`slow`: adopted on 0 of 4 rows, slower on 1 (worst: fast-slow · p1 +100.0%)"
            ),
            "{answer}"
        );
        // The summary's regression and cost tables.
        let summary = md.split("## Summary").nth(1).unwrap_or_default();
        assert!(
            summary.contains("### Regressions (every cell called slower)"),
            "{summary}"
        );
        assert!(
            summary.contains("| fast-slow | p1 | slow | +100.0%"),
            "{summary}"
        );
        assert!(summary.contains("| fast | shared copy |"), "{summary}");
        // The 4 µs query's floor is the timer's resolution, not noise.
        let tiny = r
            .analysis
            .floors
            .iter()
            .find(|f| f.query == "tiny")
            .expect("a floor");
        assert!(tiny.at_resolution(), "{tiny:?}");
        assert!(
            md.contains("at the timer's resolution (1 µs is 25.0% of this query)"),
            "{md}"
        );
        assert!(
            md.contains("at the timer's resolution"),
            "the header says so"
        );
    }
}
