//! Statistics for two runs that were *not* interleaved with each other.
//!
//! Within a run pgx pairs a cell with its reference round by round, so drift cancels.
//! Two runs (main and a pull request) ran at different times, often on different
//! machines: there are no shared rounds to pair on. What is left is the unpaired
//! comparison benchstat makes (Mann-Whitney U on the two sets of observations), made
//! honest for pgx's data in three ways:
//!
//! - the observations are the per-round medians, not the raw runs: the runs of one block
//!   follow each other back to back and are not independent; rounds are the unit of the
//!   schedule;
//! - the change is the Hodges-Lehmann estimate of the shift on a log scale (the median
//!   of every pairwise ratio new/old) with its distribution-free 95% interval, the
//!   estimate that goes with the Mann-Whitney test;
//! - the test is of a *band*, not of "equal": a cell is called slower only when its new
//!   observations lie beyond `old × upper` more often than chance allows (one-sided
//!   Mann-Whitney), faster only below `old × lower`. The band is set by the caller from
//!   the runs' own A/A floors and the drift between the runs (see `super::analyze`).

use crate::stats::{self, ALPHA, Change, Verdict};

pub use crate::stats::round_medians;

/// Hodges-Lehmann estimate of `new / old` (the median of every pairwise ratio) and the
/// 95% interval from the order statistics of those ratios at the Mann-Whitney critical
/// value (normal approximation; None when the samples are too small for one).
pub fn hodges_lehmann(old: &[f64], new: &[f64]) -> Option<(f64, Option<(f64, f64)>)> {
    let mut logs: Vec<f64> = new
        .iter()
        .flat_map(|n| old.iter().map(move |o| (n / o).ln()))
        .filter(|x| x.is_finite())
        .collect();
    if logs.is_empty() {
        return None;
    }
    logs.sort_by(f64::total_cmp);
    let estimate = stats::percentile(&logs, 50.0).exp();
    let (m, n) = (old.len() as f64, new.len() as f64);
    let mn = logs.len();
    // C = mn/2 - z * sqrt(mn (m + n + 1) / 12): the interval is (D_(C+1), D_(mn-C)).
    let c = (m * n / 2.0 - 1.959964 * (m * n * (m + n + 1.0) / 12.0).sqrt()).floor();
    let interval = (c >= 1.0 && (c as usize) < mn / 2).then(|| {
        let c = c as usize;
        (logs[c].exp(), logs[mn - 1 - c].exp())
    });
    Some((estimate, interval))
}

/// One-sided Mann-Whitney p-value that `a` tends to lie above `b`.
fn p_above(a: &[f64], b: &[f64]) -> f64 {
    let test = stats::mann_whitney_u(a, b);
    let half = a.len() as f64 * b.len() as f64 / 2.0;
    if test.u > half {
        test.p_value / 2.0
    } else {
        1.0 - test.p_value / 2.0
    }
}

/// The new observations against the old ones and a band `[lower, upper]` of ratios that
/// count as "no change" (lower <= 1 <= upper). `threshold` is recorded for the report.
/// None when either side has no observation.
pub fn compare_unpaired(
    old: &[f64],
    new: &[f64],
    lower: f64,
    upper: f64,
    threshold: f64,
) -> Option<Change> {
    let (estimate, interval) = hodges_lehmann(old, new)?;
    let scaled = |factor: f64| old.iter().map(|x| x * factor).collect::<Vec<f64>>();
    let p_slower = p_above(new, &scaled(upper));
    let p_faster = p_above(&scaled(lower), new);
    let p_value = (2.0 * p_slower.min(p_faster)).min(1.0);
    let direction = if p_slower < p_faster {
        Verdict::Slower
    } else if p_faster < p_slower {
        Verdict::Faster
    } else {
        Verdict::NoChange
    };
    Some(Change {
        ratio: estimate - 1.0,
        ci: interval.map(|(lo, hi)| (lo - 1.0, hi - 1.0)),
        rounds: old.len().min(new.len()),
        threshold,
        p_value,
        p_adjusted: p_value,
        direction,
        verdict: stats::verdict(direction, p_value, ALPHA),
        rounds_needed: None,
        within: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spread(center: f64, n: usize, width: f64) -> Vec<f64> {
        // Deterministic, symmetric around `center` on a log scale.
        (0..n)
            .map(|i| center * (width * ((i as f64 + 0.5) / n as f64 - 0.5)).exp())
            .collect()
    }

    #[test]
    fn identical_samples_are_no_change_with_an_interval_around_zero() {
        let old = spread(3.0, 20, 0.2);
        let c = compare_unpaired(&old, &old, 1.0 / 1.05, 1.05, 0.05).unwrap();
        assert_eq!(c.verdict, Verdict::NoChange);
        assert!(c.ratio.abs() < 1e-12, "{c:?}");
        let (lo, hi) = c.ci.unwrap();
        assert!(lo < 0.0 && hi > 0.0);
        assert!(c.p_value > 0.9, "{c:?}");
    }

    #[test]
    fn a_shift_beyond_the_band_is_called_and_one_inside_is_not() {
        let old = spread(3.0, 20, 0.1);
        let slower = spread(3.0 * 1.5, 20, 0.1);
        let c = compare_unpaired(&old, &slower, 1.0 / 1.05, 1.05, 0.05).unwrap();
        assert_eq!(c.verdict, Verdict::Slower);
        assert!((c.ratio - 0.5).abs() < 1e-9, "{c:?}");
        let (lo, hi) = c.ci.unwrap();
        assert!(lo <= c.ratio && c.ratio <= hi);
        let faster = spread(3.0 / 1.5, 20, 0.1);
        let c = compare_unpaired(&old, &faster, 1.0 / 1.05, 1.05, 0.05).unwrap();
        assert_eq!(c.verdict, Verdict::Faster);
        // A steady 3% is real but inside a 5% band: not called, though the test of
        // "equal" alone would call it (the samples barely overlap).
        let three = spread(3.0 * 1.03, 20, 0.01);
        let tight = spread(3.0, 20, 0.01);
        assert!(stats::mann_whitney_u(&tight, &three).p_value < 0.001);
        let c = compare_unpaired(&tight, &three, 1.0 / 1.05, 1.05, 0.05).unwrap();
        assert_eq!(c.verdict, Verdict::NoChange, "{c:?}");
        // A band widened for drift to [1, 1.6] swallows the 50%.
        let c = compare_unpaired(&old, &slower, 1.0 / 1.05, 1.6, 0.05).unwrap();
        assert_eq!(c.verdict, Verdict::NoChange, "{c:?}");
    }

    #[test]
    fn too_few_rounds_give_no_interval_and_no_call() {
        let c = compare_unpaired(&[1.0, 1.1], &[5.0, 5.5], 0.95, 1.05, 0.05).unwrap();
        assert_eq!(c.ci, None);
        assert_eq!(c.verdict, Verdict::NoChange, "n = 2 cannot reach alpha");
        assert_eq!(c.direction, Verdict::Slower);
        assert!(compare_unpaired(&[], &[1.0], 0.95, 1.05, 0.05).is_none());
    }

    #[test]
    fn hodges_lehmann_is_the_median_pairwise_ratio() {
        let (estimate, _) = hodges_lehmann(&[1.0, 2.0], &[2.0, 4.0]).unwrap();
        // Ratios 2, 1, 4, 2: median 2.
        assert!((estimate - 2.0).abs() < 1e-12);
    }
}
