//! Screening beside measurement: each hypothetical index (HypoPG) beside the index the
//! real build made, and each screened cell beside its measured cell, with the places
//! where the estimate and the measurement disagree. Computed here, once, for every
//! reporter; `screen` only gathers the estimates.

use std::collections::HashSet;

use crate::experiment::result::{
    Cell, ExperimentResult, HypotheticalIndex, RelationKind, RelationSize, ScreenedCell,
    ScreenedVariant,
};
use crate::stats::Verdict;

/// An estimated index size is flagged when it is more than this factor away from the
/// real one, either way. HypoPG sizes a btree from the table's row estimate, the average
/// width of the key columns and the fillfactor, so on tables with fresh statistics it
/// lands within tens of percent (1.4× for a bigint btree on 100k rows here); what it
/// cannot know (deduplication, TOASTed or compressed keys, per-page overhead of BRIN)
/// makes it miss by multiples, as in hypopg#46 (164 MB estimated, 1.5 GB real). Within
/// 2× the estimate still ranks candidates and sizes a disk budget; beyond, it does not.
pub const SIZE_FACTOR: f64 = 2.0;

/// A hypothetical index beside the index the real build made.
#[derive(Debug, Clone)]
pub struct IndexEstimate<'a> {
    pub variant: &'a str,
    pub index: &'a HypotheticalIndex,
    /// The real index: the one the statement names, else the variant's new index on the
    /// same table; None before (or without) the real build.
    pub real: Option<&'a RelationSize>,
    /// Estimated / real size.
    pub factor: Option<f64>,
    /// More than [`SIZE_FACTOR`] away from the real size, either way.
    pub off: bool,
}

fn screened_variant<'a>(r: &'a ExperimentResult, name: &str) -> Option<&'a ScreenedVariant> {
    r.screening
        .as_ref()?
        .variants
        .iter()
        .find(|v| v.name == name)
}

/// Every hypothetical index beside its real counterpart (when the real run built it).
pub fn index_estimates(r: &ExperimentResult) -> Vec<IndexEstimate<'_>> {
    let Some(screening) = &r.screening else {
        return Vec::new();
    };
    let baseline: HashSet<&str> = r
        .variants
        .iter()
        .find(|v| v.name == r.baseline)
        .map(|v| v.relations.iter().map(|x| x.name.as_str()).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for sv in &screening.variants {
        let relations: &[RelationSize] = r
            .variants
            .iter()
            .find(|v| v.name == sv.name && v.error.is_none())
            .map(|v| v.relations.as_slice())
            .unwrap_or(&[]);
        let is_baseline = sv.name == r.baseline;
        // Indexes the variant's build added to the base.
        let new: Vec<&RelationSize> = relations
            .iter()
            .filter(|x| {
                x.kind == RelationKind::Index && !is_baseline && !baseline.contains(x.name.as_str())
            })
            .collect();
        let mut taken: HashSet<&str> = HashSet::new();
        for index in &sv.indexes {
            let named = index.declared.as_deref().and_then(|d| {
                relations
                    .iter()
                    .find(|x| x.kind == RelationKind::Index && x.name == d)
            });
            let real = named.or_else(|| {
                new.iter()
                    .copied()
                    .find(|x| x.table == index.table && !taken.contains(x.name.as_str()))
            });
            if let Some(real) = real {
                taken.insert(real.name.as_str());
            }
            let factor = real
                .filter(|x| x.bytes > 0)
                .map(|x| index.estimated_bytes as f64 / x.bytes as f64);
            out.push(IndexEstimate {
                variant: &sv.name,
                index,
                real,
                factor,
                off: factor.is_some_and(|f| !(1.0 / SIZE_FACTOR..=SIZE_FACTOR).contains(&f)),
            });
        }
    }
    out
}

/// An unqualified relation name as plans print it (`public.t_id` -> `t_id`).
pub fn unqualified(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut quoted = false;
    let mut split = None;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b'.' if !quoted => split = Some(i),
            _ => {}
        }
    }
    let tail = split.map_or(name, |i| &name[i + 1..]);
    match tail.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => tail.to_string(),
    }
}

/// One screened cell beside its measured cell.
#[derive(Debug, Clone)]
pub struct SideBySide<'a> {
    pub screened: &'a ScreenedCell,
    /// The same variant, reference settings, cache state, query, form and parameters,
    /// measured.
    pub measured: Option<&'a Cell>,
    /// The real plan uses the real counterpart of one of the variant's hypothetical
    /// indexes; None when not measured, or when no real counterpart is known.
    pub real_uses_index: Option<bool>,
    /// Where estimate and measurement disagree, in words; empty when they agree.
    pub disagreements: Vec<String>,
}

fn direction(change: f64, threshold: f64) -> Verdict {
    let ratio = 1.0 + change;
    if ratio < 1.0 / (1.0 + threshold) {
        Verdict::Faster
    } else if ratio > 1.0 + threshold {
        Verdict::Slower
    } else {
        Verdict::NoChange
    }
}

fn verdict_text(v: Verdict) -> &'static str {
    match v {
        Verdict::Faster => "faster",
        Verdict::Slower => "slower",
        Verdict::NoChange => "no change",
    }
}

/// Does the measured change contradict the estimated cost change? Both are judged
/// against the measured change's threshold. A called change (faster or slower beyond
/// noise) contradicts an estimate that points elsewhere. An uncalled one contradicts an
/// estimate of faster or slower when its median change does not point that way (it
/// stayed inside the band, or went the other way); an uncalled change whose median
/// agrees is only short of rounds, and an estimate of no change is never contradicted by
/// a change too uncertain to call. Returns what the measurement says, in words.
fn contradicts(cost_change: f64, measured: &crate::stats::Change) -> Option<&'static str> {
    let estimated = direction(cost_change, measured.threshold);
    match measured.verdict {
        Verdict::NoChange if estimated == Verdict::NoChange => None,
        Verdict::NoChange => {
            let median = direction(measured.ratio, measured.threshold);
            (median != estimated).then_some(match median {
                Verdict::NoChange => "no change beyond noise",
                Verdict::Faster => "faster, not called",
                Verdict::Slower => "slower, not called",
            })
        }
        called if called != estimated => Some(verdict_text(called)),
        _ => None,
    }
}

/// Every screened cell beside its measurement, with the disagreements flagged:
/// - **plan**: the estimated plan uses a hypothetical index and the real plan does not
///   use its real counterpart, or the other way round;
/// - **cost vs time**: the estimated cost change and the measured execution change
///   point different ways, each judged against the same band (the measured change's
///   threshold, max(5%, the A/A floor)): the cost says faster while the measurement says
///   slower or no change, and so on (see [`contradicts`]).
///
/// The baseline's own cells are shown, not judged (they are the reference).
pub fn side_by_side(r: &ExperimentResult) -> Vec<SideBySide<'_>> {
    let Some(screening) = &r.screening else {
        return Vec::new();
    };
    let estimates = index_estimates(r);
    let reference_settings = r.settings.first().map(|s| s.name.as_str());
    screening
        .cells
        .iter()
        .map(|s| {
            let measured = r.cells.iter().find(|c| {
                c.variant == s.variant
                    && Some(c.settings.as_str()) == reference_settings
                    && c.cache == s.cache
                    && c.query == s.query
                    && c.form == s.form
                    && c.params == s.params
            });
            let real_names: Vec<String> = estimates
                .iter()
                .filter(|e| e.variant == s.variant)
                .filter_map(|e| e.real.map(|x| unqualified(&x.name)))
                .collect();
            let real_plan = measured.and_then(|c| c.plan.as_ref());
            let real_uses_index = match (real_plan, real_names.is_empty()) {
                (Some(plan), false) => Some(
                    plan.index_names
                        .iter()
                        .any(|n| real_names.iter().any(|r| r == n)),
                ),
                _ => None,
            };
            let mut disagreements = Vec::new();
            if s.variant != r.baseline && s.error.is_none() {
                match real_uses_index {
                    Some(false) if s.uses_hypothetical => disagreements.push(
                        "plan: the estimate uses the hypothetical index, the real plan does not use the real one".to_string(),
                    ),
                    Some(true) if !s.uses_hypothetical => disagreements.push(
                        "plan: the real plan uses the new index, the estimate does not".to_string(),
                    ),
                    _ => {}
                }
                if let (Some(cost), Some(change)) =
                    (s.cost_change, measured.and_then(|c| c.change.as_ref()))
                    && let Some(measured) = contradicts(cost, change)
                {
                    disagreements.push(format!(
                        "cost vs time: the cost says {} ({:+.1}%), the measurement {measured} ({:+.1}%)",
                        verdict_text(direction(cost, change.threshold)),
                        cost * 100.0,
                        change.ratio * 100.0
                    ));
                }
            }
            SideBySide {
                screened: s,
                measured,
                real_uses_index,
                disagreements,
            }
        })
        .collect()
}

/// The name a reader knows a hypothetical index by: the statement's, else HypoPG's
/// without its `<oid>` prefix.
pub fn hypothetical_label(r: &ExperimentResult, variant: &str, name: &str) -> Option<String> {
    let sv = screened_variant(r, variant)?;
    let index = sv.indexes.iter().find(|h| h.name == name)?;
    let short = match &index.declared {
        Some(d) => unqualified(d),
        None => name
            .split_once('>')
            .map_or(name, |(_, rest)| rest)
            .to_string(),
    };
    Some(format!("hypothetical {short}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unqualified_as_plans_print_them() {
        assert_eq!(unqualified("public.t_id"), "t_id");
        assert_eq!(unqualified("\"my.schema\".\"Odd\"\"name\""), "Odd\"name");
        assert_eq!(unqualified("t_id"), "t_id");
    }

    fn change(ratio: f64, verdict: Verdict) -> crate::stats::Change {
        crate::stats::Change {
            ratio,
            ci: None,
            rounds: 6,
            threshold: 0.05,
            p_value: 0.5,
            p_adjusted: 0.5,
            direction: verdict,
            verdict,
            rounds_needed: None,
            within: false,
        }
    }

    #[test]
    fn only_a_measurement_that_points_elsewhere_contradicts_the_cost() {
        use Verdict::*;
        // Called the same way, or uncalled with its median the same way: agreement.
        assert_eq!(contradicts(-0.9, &change(-0.8, Faster)), None);
        assert_eq!(contradicts(-0.9, &change(-0.8, NoChange)), None);
        assert_eq!(
            contradicts(0.0, &change(0.3, NoChange)),
            None,
            "too noisy to call"
        );
        // The cost says faster; the measurement stayed put, or went the other way.
        assert_eq!(
            contradicts(-0.5, &change(-0.01, NoChange)),
            Some("no change beyond noise")
        );
        assert_eq!(contradicts(-0.5, &change(0.2, Slower)), Some("slower"));
        assert_eq!(contradicts(0.0, &change(-0.4, Faster)), Some("faster"));
    }

    #[test]
    fn directions_use_the_measured_band() {
        assert_eq!(direction(-0.5, 0.05), Verdict::Faster);
        assert_eq!(direction(-0.03, 0.05), Verdict::NoChange);
        assert_eq!(direction(0.2, 0.05), Verdict::Slower);
    }
}
