//! `pgx merge`: the shards of one experiment (`pgx experiment NAME --shard K/N`, each on
//! its own machine) put back together into one report.
//!
//! A shard is sound on its own: it measured the baseline, its own A/A control and its
//! slice of the candidates in one interleaved run, so each of its comparisons has the
//! floor and the verdict of that run. Merging keeps them as they are — no timing of one
//! machine is ever compared with another's — and only checks that the shards measured
//! the same thing: the same experiment, scale, dataset, pgx and report format, every
//! shard of the split exactly once, none interrupted, and the baseline's deterministic
//! evidence (plan, blocks, rows) identical in every shard. The run-wide conclusions (the
//! summary, the answer) are drawn again over all the cells.

use std::collections::HashMap;

use anyhow::Result;

use super::result::{Cell, ExperimentResult, Key, NoiseFloor, ShardRun};
use crate::error::fail;
use crate::stats::Verdict;

/// `shards`: (where it came from, the shard's result), in any order.
pub fn merge(shards: Vec<(String, ExperimentResult)>) -> Result<ExperimentResult> {
    let hint_same = "merge the shards of one `pgx experiment NAME --shard K/N` run: the same \
                     experiment file, scale and pgx on every runner";
    let mut shards: Vec<(String, ExperimentResult, super::plan::Shard)> = shards
        .into_iter()
        .map(|(label, r)| match r.shard {
            Some(s) => Ok((label, r, s)),
            None => Err(fail(
                format!("{label} is not a shard: it was not run with --shard K/N"),
                hint_same,
            )),
        })
        .collect::<Result<_>>()?;
    if shards.is_empty() {
        return Err(fail("nothing to merge", hint_same));
    }
    for (label, r, s) in &shards {
        if r.interrupted || r.stopped_by.is_some() {
            return Err(fail(
                format!(
                    "{label} (shard {s}) did not finish: {}",
                    r.stopped_by.as_deref().unwrap_or("it was interrupted")
                ),
                "run that shard again; a partial shard would leave comparisons out unseen",
            ));
        }
    }
    let (first_label, first, first_shard) = &shards[0];
    let first_label = first_label.clone();
    let n = first_shard.n;
    for (label, r, s) in &shards[1..] {
        let mut differs = Vec::new();
        if r.experiment != first.experiment {
            differs.push(format!(
                "experiment {} against {}",
                r.experiment, first.experiment
            ));
        }
        if r.scale != first.scale {
            differs.push(format!("scale {} against {}", r.scale, first.scale));
        }
        if r.dataset.key != first.dataset.key {
            differs.push(format!(
                "dataset {} against {} (another dataset, migrations or server version)",
                r.dataset.key, first.dataset.key
            ));
        }
        if r.environment.pgx_version != first.environment.pgx_version
            || r.schema_version != first.schema_version
        {
            differs.push(format!(
                "pgx {} (report format {}) against {} ({})",
                r.environment.pgx_version,
                r.schema_version,
                first.environment.pgx_version,
                first.schema_version
            ));
        }
        if s.n != n {
            differs.push(format!("split into {} shards against {n}", s.n));
        }
        if r.baseline != first.baseline {
            differs.push(format!(
                "baseline {} against {}",
                r.baseline, first.baseline
            ));
        }
        if !differs.is_empty() {
            return Err(fail(
                format!(
                    "{label} did not measure what {first_label} did: {}",
                    differs.join("; ")
                ),
                hint_same,
            ));
        }
    }
    shards.sort_by_key(|(_, _, s)| s.k);
    for pair in shards.windows(2) {
        if pair[0].2.k == pair[1].2.k {
            return Err(fail(
                format!(
                    "shard {} is given twice: {} and {}",
                    pair[0].2, pair[0].0, pair[1].0
                ),
                "give each shard's report once",
            ));
        }
    }
    let missing: Vec<String> = (1..=n)
        .filter(|k| !shards.iter().any(|(_, _, s)| s.k == *k))
        .map(|k| format!("{k}/{n}"))
        .collect();
    if !missing.is_empty() {
        return Err(fail(
            format!("shard {} missing", missing.join(", ")),
            "give every shard's report (a merged report without one would lose its variants)",
        ));
    }

    // The baseline's evidence must be the same everywhere: the shards built one dataset.
    let baseline_of = |r: &ExperimentResult| -> HashMap<Key, usize> {
        r.cells
            .iter()
            .enumerate()
            .filter(|(_, c)| c.variant == r.baseline)
            .map(|(i, c)| (Key::of(c), i))
            .collect()
    };
    let reference = baseline_of(&shards[0].1);
    for (label, r, s) in &shards[1..] {
        for (k, &i) in &baseline_of(r) {
            let theirs = &r.cells[i];
            let Some(ours) = reference.get(k).map(|&j| &shards[0].1.cells[j]) else {
                return Err(fail(
                    format!(
                        "{label} (shard {s}) measured a baseline cell shard 1 did not: {} {}",
                        theirs.query, theirs.params
                    ),
                    hint_same,
                ));
            };
            let rows = |c: &Cell| c.plan.as_ref().map(|p| p.rows);
            let what = if ours.signatures != theirs.signatures {
                Some("its plan".to_string())
            } else if let (Some(a), Some(b)) = (ours.blocks(), theirs.blocks())
                && crate::explain::counts_differ(a, b)
            {
                Some(format!("its blocks ({a} against {b})"))
            } else if rows(ours) != rows(theirs) {
                Some(format!(
                    "its rows ({} against {})",
                    rows(ours).unwrap_or(0.0),
                    rows(theirs).unwrap_or(0.0)
                ))
            } else {
                None
            };
            if let Some(what) = what {
                return Err(fail(
                    format!(
                        "the baseline differs between shard {} and shard {s} on {} {}: {what}",
                        shards[0].2, ours.query, ours.params
                    ),
                    "the shards did not measure the same thing (another server version, \
                     settings or dataset): run them on runners built alike, then merge",
                ));
            }
        }
    }

    // Shard 1 as it is, then every other shard's candidates with their references
    // pointed at shard 1's baseline cells.
    let runs: Vec<ShardRun> = shards
        .iter()
        .map(|(_, r, s)| ShardRun {
            shard: *s,
            variants: r
                .compared_variants()
                .filter(|v| v.name != r.baseline)
                .map(|v| v.name.clone())
                .collect(),
            environment: r.environment.clone(),
            floors: r.analysis.floors.clone(),
            noisy: r.analysis.noisy.clone(),
            seed: r.schedule.seed,
        })
        .collect();
    let mut rest = shards.into_iter().map(|(_, r, _)| r);
    let mut merged = rest
        .next()
        .ok_or_else(|| fail("nothing to merge", hint_same))?;
    for r in rest {
        let mut position: HashMap<usize, usize> = HashMap::new();
        let is_ours = |c: &Cell| c.variant == r.baseline || Some(&c.variant) == r.control.as_ref();
        for (i, c) in r.cells.iter().enumerate() {
            if c.variant == r.baseline
                && let Some(&j) = reference.get(&Key::of(c))
            {
                position.insert(i, j);
            }
        }
        for (i, c) in r.cells.iter().enumerate() {
            if is_ours(c) {
                continue;
            }
            position.insert(i, merged.cells.len());
            let mut cell = c.clone();
            cell.reference = c.reference.and_then(|r| position.get(&r).copied());
            merged.cells.push(cell);
        }
        let control_at = merged
            .variants
            .iter()
            .position(|v| v.control)
            .unwrap_or(merged.variants.len());
        let added: Vec<_> = r
            .variants
            .iter()
            .filter(|v| !v.control && v.name != r.baseline)
            .cloned()
            .collect();
        for (offset, v) in added.into_iter().enumerate() {
            merged.variants.insert(control_at + offset, v);
        }
    }
    merged.analysis.floors = widest_floors(&runs);
    let noisy: Vec<String> = runs
        .iter()
        .filter_map(|s| s.noisy.as_ref().map(|n| format!("shard {}: {n}", s.shard)))
        .collect();
    merged.analysis.noisy = (!noisy.is_empty()).then(|| noisy.join("; "));
    merged.shard = None;
    merged.shards = runs;
    merged.wall = None;
    super::analysis::conclude_merged(&mut merged);
    Ok(merged)
}

/// Per row, the widest floor of any shard (each comparison's own threshold is in its
/// change; this is what the report's floor table shows).
fn widest_floors(runs: &[ShardRun]) -> Vec<NoiseFloor> {
    let mut out: Vec<NoiseFloor> = Vec::new();
    for floor in runs.iter().flat_map(|s| &s.floors) {
        match out
            .iter_mut()
            .find(|f| f.query == floor.query && f.params == floor.params && f.cache == floor.cache)
        {
            Some(f) if floor.floor > f.floor => *f = floor.clone(),
            Some(f) => {
                if floor
                    .control
                    .is_some_and(|c| c.verdict != Verdict::NoChange)
                {
                    f.control = floor.control;
                }
            }
            None => out.push(floor.clone()),
        }
    }
    out
}
