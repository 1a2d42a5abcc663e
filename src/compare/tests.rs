//! `compare` on synthetic runs whose truth is known: what it must call and what it must
//! not. (The tests in `tests/it/compare.rs` do the same on real runs of PostgreSQL.)

use serde_json::json;

use super::*;
use crate::experiment::result::ExperimentResult;

/// One cell of a synthetic run: execution times around `center` (ms), ±3% noise.
#[derive(Clone)]
struct Spec {
    variant: &'static str,
    query: &'static str,
    center: f64,
    signature: &'static str,
    blocks: u64,
}

fn cell(variant: &'static str, query: &'static str, center: f64) -> Spec {
    Spec {
        variant,
        query,
        center,
        signature: "Seq Scan",
        blocks: 100,
    }
}

/// A run of experiment "x": 20 rounds, one run per cell per round, noise from `seed`.
fn run(specs: &[Spec], seed: u64) -> ExperimentResult {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut queries: Vec<&str> = specs.iter().map(|s| s.query).collect();
    queries.dedup();
    let mut variants: Vec<&str> = specs.iter().map(|s| s.variant).collect();
    variants.sort_unstable();
    variants.dedup();
    let cells: Vec<serde_json::Value> = specs
        .iter()
        .map(|s| {
            let samples: Vec<serde_json::Value> = (0..20)
                .map(|round| {
                    let noise = 1.0 + 0.06 * (rng.f64() - 0.5);
                    json!({
                        "round": round,
                        "planning_ms": 0.01,
                        "execution_ms": s.center * noise,
                        "buffers": {"shared_hit": s.blocks, "shared_read": 0, "shared_dirtied": 0,
                                    "shared_written": 0, "temp_read": 0, "temp_written": 0},
                        "heap_fetches": 0,
                        "signature": 0
                    })
                })
                .collect();
            json!({
                "variant": s.variant, "settings": "default", "cache": "warm", "query": s.query, "form": "sql",
                "params": "p1", "reference": null, "samples": samples,
                "plan": null, "timed_plan": null, "signatures": [s.signature], "error": null,
                "execution": null, "planning": null, "change": null, "planning_change": null,
                "evidence": null
            })
        })
        .collect();
    let value = json!({
        "schema_version": 2,
        "experiment": "x", "about": "", "seed": "",
        "environment": {
            "postgres_version": "PostgreSQL 15.18", "pgx_version": "0.1.0", "git_commit": "abc",
            "date": format!("2026-01-01 00:{:02} UTC", seed % 60), "server": "embedded (pgx-managed)",
            "cpus": 2, "memory_gib": 23.5, "server_settings": [["shared_buffers", "3GB"]]
        },
        "scale": 0.01,
        "runs": {"warmup": 1, "repeat": 20, "timeout_ms": 1000},
        "dataset": {"key": "k", "database": "pgx_base_x", "reused": true, "build_seconds": 1.0,
                    "steps": [], "row_counts": []},
        "baseline": "base",
        "control": null,
        "schedule": {"seed": seed, "rounds": 20, "block": 1, "warmup": 1, "stages": [], "rounds_run": []},
        "settings": [{"name": "default", "values": []}],
        "queries": queries.iter().map(|q| json!({
            "name": q, "about": "", "forms": [["sql", format!("SELECT {q}")]],
            "params": [{"label": "p1", "values": []}], "rollback": false, "equivalence": []
        })).collect::<Vec<_>>(),
        "variants": variants.iter().map(|v| json!({
            "name": v, "about": "", "statements": [], "relations": [], "error": null
        })).collect::<Vec<_>>(),
        "cells": cells,
        "analysis": {"floors": [], "noisy": null, "drift": [], "findings": []}
    });
    let mut r: ExperimentResult = serde_json::from_value(value).expect("a valid synthetic run");
    crate::experiment::analysis::summarize_cells(&mut r);
    r
}

/// Three variants × three queries, every cell its own speed.
fn matrix() -> Vec<Spec> {
    let mut specs = Vec::new();
    for (i, variant) in ["base", "a", "b"].into_iter().enumerate() {
        for (j, query) in ["q1", "q2", "q3"].into_iter().enumerate() {
            specs.push(cell(variant, query, 1.0 + i as f64 + 10.0 * j as f64));
        }
    }
    specs
}

fn compared(old: ExperimentResult, new: ExperimentResult) -> Comparison {
    compare(
        old,
        new,
        "old.json",
        "new.json",
        &Options {
            gate_timings: false,
        },
    )
    .expect("comparable")
}

const ALL: [Gate; 3] = [Gate::Regression, Gate::PlanChange, Gate::Buffers];

fn verdicts(c: &Comparison) -> Vec<(String, Verdict)> {
    c.rows
        .iter()
        .filter_map(|r| {
            let t = r.timing?;
            (t.change.verdict != Verdict::NoChange).then(|| {
                (
                    format!("{}/{}", r.key.variant, r.key.query),
                    t.change.verdict,
                )
            })
        })
        .collect()
}

#[test]
fn a_run_against_itself_is_no_change_and_passes_every_gate() {
    let r = run(&matrix(), 1);
    let c = compared(r.clone(), r);
    assert_eq!(c.matched().count(), 9);
    assert!(verdicts(&c).is_empty());
    assert!(c.rows.iter().all(|r| !r.plan_changed && !r.buffers_changed));
    assert!(c.gate(&ALL).is_empty());
    assert!(c.timings_trusted);
    assert!(
        render::summary(&c).ends_with("No change."),
        "{}",
        render::summary(&c)
    );
}

#[test]
fn identical_code_measured_twice_is_no_change() {
    for seed in 2..12 {
        let c = compared(run(&matrix(), 1), run(&matrix(), seed));
        assert!(verdicts(&c).is_empty(), "seed {seed}: {:?}", verdicts(&c));
        assert!(c.gate(&ALL).is_empty());
    }
}

#[test]
fn a_machine_slower_as_a_whole_is_drift_not_a_regression() {
    let slower: Vec<Spec> = matrix()
        .into_iter()
        .map(|mut s| {
            s.center *= 1.3;
            s
        })
        .collect();
    let c = compared(run(&matrix(), 1), run(&slower, 2));
    assert!(verdicts(&c).is_empty(), "{:?}", verdicts(&c));
    let row = c.rows.iter().find(|r| r.key.variant == "a").unwrap();
    let drift = row.timing.unwrap().drift.unwrap();
    assert!((drift.ratio - 1.3).abs() < 0.05, "{drift:?}");
    assert!(drift.same_query && drift.peers == 2);
}

#[test]
fn one_cell_slower_with_the_same_plan_is_a_regression() {
    let mut new = matrix();
    new[4].center *= 1.5; // a/q2
    let c = compared(run(&matrix(), 1), run(&new, 2));
    assert_eq!(verdicts(&c), [("a/q2".to_string(), Verdict::Slower)]);
    let failed = c.gate(&[Gate::Regression]);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].contains("q2 · p1 · a slower"), "{failed:?}");
    assert!(c.gate(&[Gate::PlanChange, Gate::Buffers]).is_empty());
    let mut faster = matrix();
    faster[4].center /= 1.5;
    let c = compared(run(&matrix(), 1), run(&faster, 2));
    assert_eq!(verdicts(&c), [("a/q2".to_string(), Verdict::Faster)]);
    assert!(c.gate(&ALL).is_empty(), "faster is not a regression");
}

#[test]
fn a_query_slower_everywhere_is_called_when_its_sql_changed() {
    let mut new = matrix();
    for s in new.iter_mut().filter(|s| s.query == "q2") {
        s.center *= 1.5;
    }
    // Same SQL: every cell of the query moved alike, which is what drift looks like.
    let c = compared(run(&matrix(), 1), run(&new, 2));
    assert!(verdicts(&c).is_empty(), "{:?}", verdicts(&c));
    // The pull request changed q2's SQL: its cells are no one's drift, the run's other
    // queries are, and they did not move.
    let mut changed = run(&new, 2);
    changed.queries[1].forms[0].1 = "SELECT q2, an expensive expression".into();
    let c = compared(run(&matrix(), 1), changed);
    let mut called = verdicts(&c);
    called.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        called,
        [
            ("a/q2".to_string(), Verdict::Slower),
            ("b/q2".to_string(), Verdict::Slower),
            ("base/q2".to_string(), Verdict::Slower)
        ]
    );
    assert!(render::evidence_text(&c.rows[1]).contains("SQL changed"));
}

#[test]
fn plan_and_buffer_changes_are_exact_and_gate() {
    let mut new = matrix();
    new[3].signature = "Index Only Scan[t_cover]"; // a/q1
    new[3].blocks = 4;
    new[6].blocks = 101; // b/q1: one block more is a catalog lookup, not a change
    new[5].blocks = 150; // a/q3: more blocks, same plan
    let c = compared(run(&matrix(), 1), run(&new, 2));
    let a_q1 = c
        .rows
        .iter()
        .find(|r| r.key.variant == "a" && r.key.query == "q1")
        .unwrap();
    assert!(a_q1.plan_changed && a_q1.buffers_changed);
    let b_q1 = c
        .rows
        .iter()
        .find(|r| r.key.variant == "b" && r.key.query == "q1")
        .unwrap();
    assert!(!b_q1.buffers_changed);
    let plan = c.gate(&[Gate::PlanChange]);
    assert_eq!(plan, ["plan-change: q1 · p1 · a"]);
    let buffers = c.gate(&[Gate::Buffers]);
    assert_eq!(buffers, ["buffers: q3 · p1 · a: 100 → 150 blocks"]);
    let diffs = render::plan_diffs(&c);
    assert_eq!(diffs.len(), 1);
    assert_eq!(diffs[0].1, "- Seq Scan\n+ Index Only Scan[t_cover]\n");
    let md = render::markdown(&c);
    assert!(md.contains("### Plans and buffers (exact)"), "{md}");
    assert!(md.contains("| q1 · p1 · a |"), "{md}");
}

#[test]
fn another_environment_gates_on_buffers_not_timings() {
    let mut new_specs = matrix();
    new_specs[4].center *= 1.5;
    new_specs[5].blocks = 150;
    let mut new = run(&new_specs, 2);
    new.environment.postgres_version = "PostgreSQL 16.4".into();
    new.environment.cpus = 8;
    let c = compared(run(&matrix(), 1), new.clone());
    assert!(!c.timings_trusted);
    assert_eq!(c.environment.len(), 2, "{:?}", c.environment);
    assert_eq!(verdicts(&c).len(), 1, "still shown");
    let failed = c.gate(&[Gate::Regression]);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].contains("touches more blocks"), "{failed:?}");
    assert!(render::trust_sentence(&c).contains("do not gate"));
    let c = compare(
        run(&matrix(), 1),
        new,
        "old",
        "new",
        &Options { gate_timings: true },
    )
    .unwrap();
    let failed = c.gate(&[Gate::Regression]);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].contains("slower"), "--gate-timings: {failed:?}");
}

#[test]
fn new_and_vanished_cells_are_listed() {
    let mut new = matrix();
    new.retain(|s| s.variant != "b");
    new.push(cell("c", "q1", 3.0));
    let c = compared(run(&matrix(), 1), run(&new, 2));
    let only_new: Vec<&str> = c
        .rows
        .iter()
        .filter(|r| r.old.is_none())
        .map(|r| r.key.variant.as_str())
        .collect();
    assert_eq!(only_new, ["c"]);
    assert_eq!(c.rows.iter().filter(|r| r.new.is_none()).count(), 3);
    assert_eq!(render::presence_table(&c, false).rows.len(), 3);
    assert!(
        c.gate(&ALL).is_empty(),
        "a vanished cell is no gate by itself"
    );
}

#[test]
fn a_cold_cell_is_its_own_cell() {
    let mut old = run(&matrix(), 1);
    let mut cold = old.cells[0].clone();
    cold.cache = "cold".into();
    for s in &mut cold.samples {
        s.execution_ms *= 10.0; // read from disk
    }
    old.cells.push(cold);
    crate::experiment::analysis::summarize_cells(&mut old);
    let c = compared(old.clone(), old);
    assert_eq!(c.matched().count(), 10, "warm and cold matched apart");
    assert!(verdicts(&c).is_empty());
    let labels: Vec<String> = c.rows.iter().map(|r| render::cell_label(&c, r)).collect();
    assert!(
        labels.contains(&"q1 · p1 · base · cold".to_string()),
        "{labels:?}"
    );
    assert!(
        labels.contains(&"q1 · p1 · base · warm".to_string()),
        "{labels:?}"
    );
}

#[test]
fn runs_of_different_experiments_or_scales_are_refused() {
    let old = run(&matrix(), 1);
    let mut other = run(&matrix(), 2);
    other.experiment = "y".into();
    let err = compare(
        old.clone(),
        other,
        "a",
        "b",
        &Options {
            gate_timings: false,
        },
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("different experiments"), "{err}");
    let mut scaled = run(&matrix(), 2);
    scaled.scale = 1.0;
    let err = compare(
        old,
        scaled,
        "a",
        "b",
        &Options {
            gate_timings: false,
        },
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("different scales"), "{err}");
    assert!(crate::error::hint_of(&err).unwrap().contains("--scale"));
}

#[test]
fn a_few_microseconds_between_runs_are_below_resolution() {
    // A 5 µs lookup at 12 µs in the next run, same plan and buffers, while the other
    // cells stay put: what separate runs of identical code showed on a loaded machine.
    let fast = |center| {
        let mut specs = matrix();
        specs[4].center = center; // a/q2
        specs
    };
    let c = compared(run(&fast(0.005), 1), run(&fast(0.012), 2));
    assert!(verdicts(&c).is_empty(), "{:?}", verdicts(&c));
    // The same ratio on a cell long enough to resolve it is called.
    let c = compared(run(&fast(0.5), 1), run(&fast(1.2), 2));
    assert_eq!(verdicts(&c), [("a/q2".to_string(), Verdict::Slower)]);
}

#[test]
fn a_run_on_a_saturated_machine_does_not_gate_on_timings() {
    let mut new = matrix();
    new[4].center *= 1.5;
    let mut busy = run(&new, 2);
    busy.environment.load_before = Some([2.31, 2.67, 2.0]);
    busy.environment.load_after = Some([2.21, 2.64, 2.0]);
    let c = compared(run(&matrix(), 1), busy);
    assert!(!c.timings_trusted);
    assert!(
        c.untrusted_because
            .iter()
            .any(|w| w.contains("saturated machine (load average 2.31 on 2 CPUs)")),
        "{:?}",
        c.untrusted_because
    );
    // Still shown as a verdict, not gated.
    assert_eq!(verdicts(&c), [("a/q2".to_string(), Verdict::Slower)]);
    assert!(c.gate(&[Gate::Regression]).is_empty());
}
