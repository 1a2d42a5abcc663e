//! Judging one comparison on the rounds it ran — the one function the engine's stopping
//! rule and the final analysis both call, so a comparison the engine let go as decided
//! is reported with exactly that decision.

use std::collections::{BTreeMap, HashSet};

use crate::stats::sequential::{self, Design};
use crate::stats::{self, Change, NOISE};

/// Samples as (round, milliseconds).
pub type Series = [(usize, f64)];

/// The A/A control's cell and its baseline cell in one row, as series.
pub struct ControlPair {
    pub control: Vec<(usize, f64)>,
    pub baseline: Vec<(usize, f64)>,
}

/// EXPLAIN prints execution and planning times in whole microseconds.
pub const TIMER_RESOLUTION_MS: f64 = 0.001;

/// Per round in which both sides ran (and, with `rounds`, only those): (cell's median,
/// reference's median).
fn paired(
    cell: &Series,
    reference: &Series,
    rounds: Option<&HashSet<usize>>,
) -> BTreeMap<usize, (f64, f64)> {
    let medians = |samples: &Series| -> BTreeMap<usize, f64> {
        let mut by: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        for &(round, ms) in samples {
            if ms.is_finite() && ms >= 0.0 && rounds.is_none_or(|r| r.contains(&round)) {
                by.entry(round).or_default().push(ms);
            }
        }
        by.into_iter()
            .map(|(round, mut v)| {
                v.sort_by(f64::total_cmp);
                (round, stats::percentile(&v, 50.0))
            })
            .collect()
    };
    let (c, r) = (medians(cell), medians(reference));
    c.into_iter()
        .filter_map(|(round, cm)| r.get(&round).map(|rm| (round, (cm, *rm))))
        .collect()
}

/// Ratios of the pairs whose reference is not zero.
fn ratios(pairs: &BTreeMap<usize, (f64, f64)>) -> Vec<f64> {
    pairs
        .values()
        .filter(|(_, r)| *r > 0.0)
        .map(|(c, r)| c / r)
        .collect()
}

/// The far end of the A/A control's interval over `rounds`, the largest over the
/// row's control pairs (control cell, its baseline cell); 0 without any.
pub fn floor(controls: &[ControlPair], rounds: Option<&HashSet<usize>>) -> f64 {
    controls
        .iter()
        .map(|p| sequential::floor(&ratios(&paired(&p.control, &p.baseline, rounds))))
        .fold(0.0, f64::max)
}

/// The cell against its reference, on the rounds both ran (within `rounds` when
/// given), against a band of max(5%, the control's floor over those same rounds), at
/// the design's level. None without a paired round.
pub fn judge(
    cell: &Series,
    reference: &Series,
    controls: &[ControlPair],
    rounds: Option<&HashSet<usize>>,
    design: &Design,
) -> Option<Change> {
    let pairs = paired(cell, reference, rounds);
    if pairs.is_empty() {
        return None;
    }
    let theirs: HashSet<usize> = pairs.keys().copied().collect();
    let threshold = NOISE.max(floor(controls, Some(&theirs)));
    // One timer quantum relative to the faster side's typical round.
    let median_of = |side: fn(&(f64, f64)) -> f64| {
        let mut v: Vec<f64> = pairs.values().map(side).collect();
        v.sort_by(f64::total_cmp);
        stats::percentile(&v, 50.0)
    };
    let faster = median_of(|p| p.0).min(median_of(|p| p.1));
    let resolution = if faster > 0.0 {
        TIMER_RESOLUTION_MS / faster
    } else {
        1.0
    };
    sequential::judge(&ratios(&pairs), threshold, resolution, design)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Verdict;

    fn series(values: &[f64]) -> Vec<(usize, f64)> {
        values.iter().copied().enumerate().collect()
    }

    #[test]
    fn the_control_widens_the_band_over_the_same_rounds_only() {
        let design = Design::new(20, 1);
        let reference = series(&[10.0; 8]);
        let cell = series(&[11.5, 11.4, 11.6, 11.5, 11.5, 11.6, 11.4, 11.5]);
        // No control: +15% is beyond 5%.
        let c = judge(&cell, &reference, &[], None, &design).expect("pairs");
        assert_eq!(c.verdict, Verdict::Slower, "{c:?}");
        // A control that strayed ±30% in these rounds: the band widens to the far end of
        // its interval (26%), and +15% is decided within it.
        let control = series(&[13.0, 7.7, 13.0, 7.7, 13.0, 7.7, 13.0, 7.7]);
        let pair = |control: &[(usize, f64)]| ControlPair {
            control: control.to_vec(),
            baseline: reference.clone(),
        };
        let c = judge(&cell, &reference, &[pair(&control)], None, &design).expect("pairs");
        assert_eq!(c.verdict, Verdict::NoChange, "{c:?}");
        assert!(c.threshold > 0.25 && c.within, "{c:?}");
        // Restricted to rounds the control was steady in, it no longer widens the band.
        let mut steady = control.clone();
        for (round, ms) in steady.iter_mut() {
            if *round < 5 {
                *ms = 10.0;
            }
        }
        let rounds: HashSet<usize> = (0..5).collect();
        let c = judge(&cell, &reference, &[pair(&steady)], Some(&rounds), &design).expect("pairs");
        assert_eq!(c.rounds, 5);
        assert!((c.threshold - NOISE).abs() < 1e-12, "{c:?}");
    }

    #[test]
    fn rounds_are_paired_on_their_medians() {
        let pairs = paired(
            &[(0, 2.0), (0, 4.0), (1, 5.0), (3, 1.0)],
            &[(0, 1.0), (1, 10.0), (1, 10.0), (2, 7.0), (3, 0.0)],
            None,
        );
        assert_eq!(ratios(&pairs), vec![3.0, 0.5]);
        assert_eq!(
            pairs.len(),
            3,
            "round 3 pairs, its zero reference gives no ratio"
        );
    }
}
