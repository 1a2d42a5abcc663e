//! Benchmark statistics in the spirit of hyperfine / benchstat.
//!
//! Timings are skewed and noisy, so everything is centred on medians and order
//! statistics. Comparisons are paired by round of an interleaved schedule (drift between
//! rounds cancels) and judged by a sign test against a noise band; Mann-Whitney U stays
//! for unpaired samples. Everything is `std`-only.

use serde::{Deserialize, Serialize};

pub mod sequential;
pub mod student;

/// Significance level used by [`compare_ratios`] and [`holm_correct`].
pub const ALPHA: f64 = 0.05;
/// Smallest relative change worth calling; the A/A floor can only widen it.
pub const NOISE: f64 = 0.05;

/// Descriptive statistics of one cell's samples (milliseconds, but unit-agnostic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub mean: f64,
    /// Sample standard deviation (n-1 denominator); 0 for n < 2.
    pub stddev: f64,
    pub p95: f64,
    pub min: f64,
    pub max: f64,
    /// 95% confidence interval of the median from order statistics (binomial), None when n < 6.
    pub median_ci: Option<(f64, f64)>,
}

/// Summarise samples; NaNs (e.g. failed runs) are dropped. None when nothing is left.
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    let sorted = sorted_without_nan(samples);
    let (&min, &max) = (sorted.first()?, sorted.last()?);
    let n = sorted.len();
    let mean = sorted.iter().sum::<f64>() / n as f64;
    // Two-pass variance: avoids the cancellation of the sum-of-squares formula.
    let stddev = if n < 2 {
        0.0
    } else {
        let ss: f64 = sorted.iter().map(|x| (x - mean).powi(2)).sum();
        (ss / (n - 1) as f64).sqrt()
    };
    Some(Summary {
        n,
        median: percentile(&sorted, 50.0),
        mean,
        stddev,
        p95: percentile(&sorted, 95.0),
        min,
        max,
        median_ci: median_ci(&sorted, 0.95),
    })
}

/// Percentile with linear interpolation between closest ranks (R type 7, numpy's
/// default) so numbers match what users get from numpy. `p` is clamped to [0, 100];
/// `sorted` must be ascending. Returns NaN for an empty slice instead of panicking.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return f64::NAN;
    };
    let h = last as f64 * p.clamp(0.0, 100.0) / 100.0;
    let lo = (h.floor() as usize).min(last); // NaN p casts to 0: no panic
    let hi = (lo + 1).min(last);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Distribution-free CI of the median: the order statistics x(j), x(n+1-j) cover the
/// true median with probability P(j <= B < n+1-j), B ~ Binomial(n, 1/2). Picks the
/// narrowest symmetric pair reaching `confidence`; None when no pair does
/// (at 95% that is every n < 6). `sorted` must be ascending.
pub fn median_ci(sorted: &[f64], confidence: f64) -> Option<(f64, f64)> {
    let n = sorted.len();
    let ln_half_n = n as f64 * 0.5f64.ln();
    let mut ln_choose = 0.0; // ln C(n, i); log space so large n does not underflow
    let mut lower_tail = 0.0; // P(B <= j-1)
    let mut best = None;
    for j in 1..=n / 2 {
        let i = j - 1;
        lower_tail += (ln_choose + ln_half_n).exp();
        ln_choose += ((n - i) as f64 / (i + 1) as f64).ln();
        // Symmetry of Binomial(n, 1/2): coverage = 1 - 2 P(B <= j-1); shrinks as j grows.
        if 1.0 - 2.0 * lower_tail >= confidence {
            best = Some(j);
        } else {
            break;
        }
    }
    best.map(|j| (sorted[j - 1], sorted[n - j]))
}

/// Result of a two-sided Mann-Whitney U test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MannWhitney {
    /// U for sample `a`: pairs with a > b, ties counting 1/2.
    pub u: f64,
    /// Normal-approximation z (tie + continuity corrected); negative when `a` tends lower.
    pub z: f64,
    pub p_value: f64,
}

/// Two-sided Mann-Whitney U test: rank-based, so robust to the outliers timing data is
/// full of. U is the statistic for sample `a` (pairs where a > b, ties count 1/2). Uses the
/// exact null distribution when both n <= 20 and there are no ties (the normal approximation
/// is poor there), otherwise the normal approximation with tie and continuity correction,
/// as scipy does. NaNs are dropped; an empty side gives p_value 1.0.
pub fn mann_whitney_u(a: &[f64], b: &[f64]) -> MannWhitney {
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|&x| (x, true))
        .chain(b.iter().map(|&x| (x, false)))
        .filter(|(x, _)| !x.is_nan())
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let m = all.iter().filter(|(_, is_a)| *is_a).count();
    let n = all.len() - m;
    if m == 0 || n == 0 {
        return MannWhitney {
            u: 0.0,
            z: 0.0,
            p_value: 1.0,
        };
    }
    // Mid-ranks for tie groups; sum of t^3 - t feeds the variance tie correction.
    let (mut rank_sum_a, mut tie_term, mut start) = (0.0, 0.0, 0);
    while start < all.len() {
        let mut end = start + 1;
        while end < all.len() && all[end].0 == all[start].0 {
            end += 1;
        }
        let mid_rank = (start + 1 + end) as f64 / 2.0;
        rank_sum_a += mid_rank * all[start..end].iter().filter(|v| v.1).count() as f64;
        let t = (end - start) as f64;
        tie_term += t * t * t - t;
        start = end;
    }
    let (mf, nf, total) = (m as f64, n as f64, (m + n) as f64);
    let u = rank_sum_a - mf * (mf + 1.0) / 2.0;
    let dev = u - mf * nf / 2.0;
    let sigma = (mf * nf / 12.0 * ((total + 1.0) - tie_term / (total * (total - 1.0)))).sqrt();
    let z = if sigma > 0.0 {
        dev.signum() * (dev.abs() - 0.5).max(0.0) / sigma
    } else {
        0.0
    };
    let p_value = if m <= 20 && n <= 20 && tie_term == 0.0 {
        exact_p(u.min(mf * nf - u) as usize, m, n)
    } else {
        erfc(z.abs() / std::f64::consts::SQRT_2) // = 2 * (1 - Phi(|z|))
    };
    MannWhitney {
        u,
        z,
        p_value: p_value.min(1.0),
    }
}

/// Exact two-sided p = 2 P(U <= u_min) from the null distribution of U, whose
/// generating function is the Gaussian binomial prod_{i=1..m} (1 - q^(n+i)) / (1 - q^i).
fn exact_p(u_min: usize, m: usize, n: usize) -> f64 {
    let size = m * n + 1;
    let mut c = vec![0i64; size]; // counts fit: C(40, 20) ~ 1.4e11
    c[0] = 1;
    for i in 1..=m {
        for u in (n + i..size).rev() {
            c[u] -= c[u - n - i];
        }
        for u in i..size {
            c[u] += c[u - i];
        }
    }
    let total: i64 = c.iter().sum();
    let tail: i64 = c.iter().take(u_min + 1).sum();
    2.0 * tail as f64 / total as f64
}

/// Complementary error function for the normal tail (relative error < 1e-10 vs libm):
/// positive-term series of erf below 3, Laplace continued fraction above.
fn erfc(x: f64) -> f64 {
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    let inv_sqrt_pi = 1.0 / std::f64::consts::PI.sqrt();
    if x < 3.0 {
        let (mut term, mut sum, mut k) = (x, x, 0.0);
        while term > 1e-17 * sum {
            k += 1.0;
            term *= 2.0 * x * x / (2.0 * k + 1.0);
            sum += term;
        }
        1.0 - 2.0 * inv_sqrt_pi * (-x * x).exp() * sum
    } else {
        let f = (1..=80).rev().fold(x, |f, k| x + (k as f64 / 2.0) / f);
        (-x * x).exp() * inv_sqrt_pi / f
    }
}

/// Holm-Bonferroni step-down adjusted p-values, in the input order, monotone, capped at 1.0.
/// Controls the family-wise error rate across a benchmark matrix without assuming
/// independence, and is uniformly more powerful than plain Bonferroni. NaN counts as 1.0.
pub fn holm_adjust(p_values: &[f64]) -> Vec<f64> {
    let p: Vec<f64> = p_values
        .iter()
        .map(|&x| if x.is_nan() { 1.0 } else { x })
        .collect();
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&i, &j| p[i].total_cmp(&p[j]));
    let mut adjusted = vec![0.0; p.len()];
    let mut running_max: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        running_max = running_max.max(((p.len() - rank) as f64 * p[i]).min(1.0));
        adjusted[i] = running_max;
    }
    adjusted
}

/// Direction of a change relative to the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    Faster,
    Slower,
    NoChange,
}

/// A cell against its reference, on rounds measured in the same interleaved schedule.
///
/// Each round gives one ratio: the cell's median in that round over the reference's
/// median in the same round, so drift of the machine between rounds cancels out. The
/// change is the median of those ratios; it is called only when a sign test says the
/// ratios lie beyond the noise band `[1/(1+threshold), 1+threshold]` more often than
/// chance allows, after Holm correction across the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// median over rounds of (cell / reference) - 1, signed (-0.42 = 42% faster).
    pub ratio: f64,
    /// 95% confidence interval of that median (order statistics), as changes; None
    /// with fewer than 6 paired rounds.
    pub ci: Option<(f64, f64)>,
    /// Rounds in which both the cell and its reference were measured.
    pub rounds: usize,
    /// The band a change has to leave: max(NOISE, the run's A/A floor), relative.
    pub threshold: f64,
    /// Two-sided sign test of "the median ratio lies inside the band".
    pub p_value: f64,
    /// After Holm across the matrix; equals `p_value` until [`holm_correct`] runs.
    pub p_adjusted: f64,
    /// The side the ratios lean to (`NoChange` when they do not lean).
    pub direction: Verdict,
    pub verdict: Verdict,
    /// Set by [`mark_too_few_rounds`] when `rounds` are too few for any call: even if every
    /// round lay on one side, the corrected p-value could not fall below [`ALPHA`]. The
    /// rounds a call would need, over the matrix's comparisons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounds_needed: Option<usize>,
    /// Decided as no change: the whole interval lies inside ±`threshold` (see
    /// [`sequential::judge`]; the sign test of earlier reports never set it).
    #[serde(default, skip_serializing_if = "is_false")]
    pub within: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The fewest paired rounds in which the sign test can call a change at all among `m`
/// comparisons Holm-corrected at [`ALPHA`]: with every round on one side the p-value is
/// 2·2⁻ⁿ, and Holm multiplies the smallest by `m`. 6 for one comparison, 12 for 56.
pub fn rounds_to_call(m: usize) -> usize {
    let m = m.max(1) as f64;
    let mut n: i32 = 1;
    while 2.0 * 0.5f64.powi(n) * m >= ALPHA && n < 64 {
        n += 1;
    }
    n as usize
}

/// The median of every round's samples (round, value), in round order; values that are
/// not finite and positive are left out.
pub fn round_medians(samples: &[(usize, f64)]) -> Vec<f64> {
    let mut rounds: std::collections::BTreeMap<usize, Vec<f64>> = Default::default();
    for &(round, value) in samples {
        if value.is_finite() && value > 0.0 {
            rounds.entry(round).or_default().push(value);
        }
    }
    rounds
        .into_values()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            percentile(&v, 50.0)
        })
        .collect()
}

/// Per-round ratios of a cell's medians to its reference's: samples are (round, value);
/// rounds where either side has no sample, or the reference's median is not positive,
/// are left out. In round order.
pub fn paired_ratios(cell: &[(usize, f64)], reference: &[(usize, f64)]) -> Vec<f64> {
    let by_round = |samples: &[(usize, f64)]| {
        let mut rounds: std::collections::BTreeMap<usize, Vec<f64>> = Default::default();
        for &(round, value) in samples {
            if !value.is_nan() {
                rounds.entry(round).or_default().push(value);
            }
        }
        rounds
            .into_iter()
            .map(|(round, mut values)| {
                values.sort_by(f64::total_cmp);
                (round, percentile(&values, 50.0))
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let (cell, reference) = (by_round(cell), by_round(reference));
    cell.iter()
        .filter_map(|(round, c)| {
            let r = reference.get(round)?;
            (*r > 0.0).then(|| c / r)
        })
        .collect()
}

/// P(B >= k) for B ~ Binomial(n, 1/2), exactly (in log space, so large n is fine).
pub fn binomial_upper_tail(n: usize, k: usize) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    let ln_half_n = n as f64 * 0.5f64.ln();
    // ln C(n, i) built up from i = k.
    let mut ln_choose: f64 = (0..k).map(|i| ((n - i) as f64 / (i + 1) as f64).ln()).sum();
    let mut tail = 0.0;
    for i in k..=n {
        tail += (ln_choose + ln_half_n).exp();
        ln_choose += ((n - i) as f64 / (i + 1) as f64).ln();
    }
    tail.min(1.0)
}

/// The paired comparison of ratios (see [`Change`]) against a band of `threshold`.
/// None without any ratio.
pub fn compare_ratios(ratios: &[f64], threshold: f64) -> Option<Change> {
    let mut sorted: Vec<f64> = ratios
        .iter()
        .copied()
        .filter(|r| r.is_finite() && *r > 0.0)
        .collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let upper = 1.0 + threshold;
    let slower = sorted.iter().filter(|r| **r > upper).count();
    let faster = sorted.iter().filter(|r| **r < 1.0 / upper).count();
    let (p_slower, p_faster) = (
        binomial_upper_tail(n, slower),
        binomial_upper_tail(n, faster),
    );
    let p_value = (2.0 * p_slower.min(p_faster)).min(1.0);
    let direction = match faster.cmp(&slower) {
        std::cmp::Ordering::Greater => Verdict::Faster,
        std::cmp::Ordering::Less => Verdict::Slower,
        std::cmp::Ordering::Equal => Verdict::NoChange,
    };
    Some(Change {
        ratio: percentile(&sorted, 50.0) - 1.0,
        ci: median_ci(&sorted, 0.95).map(|(lo, hi)| (lo - 1.0, hi - 1.0)),
        rounds: n,
        threshold,
        p_value,
        p_adjusted: p_value,
        direction,
        verdict: verdict(direction, p_value, ALPHA),
        rounds_needed: None,
        within: false,
    })
}

/// Called only when significant after correction; the direction decides which way.
pub fn verdict(direction: Verdict, p_adjusted: f64, alpha: f64) -> Verdict {
    if p_adjusted < alpha {
        direction
    } else {
        Verdict::NoChange
    }
}

/// How far identical copies drifted apart in this run: the far end of the 95% interval
/// of the A/A control's median ratio, as a relative change (log-symmetric: a 0.8 ratio
/// counts as 25%). With fewer than 6 rounds there is no interval; the largest ratio seen
/// stands in. 0 without ratios.
pub fn noise_floor(control_ratios: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = control_ratios
        .iter()
        .copied()
        .filter(|r| r.is_finite() && *r > 0.0)
        .collect();
    sorted.sort_by(f64::total_cmp);
    let (Some(&first), Some(&last)) = (sorted.first(), sorted.last()) else {
        return 0.0;
    };
    let (lo, hi) = median_ci(&sorted, 0.95).unwrap_or((first, last));
    let far = hi.ln().max(-lo.ln()).max(0.0);
    far.exp() - 1.0
}

/// Apply Holm across many changes in place and recompute verdicts.
/// `None` cells (missing data) are not counted as hypotheses.
pub fn holm_correct(changes: &mut [Option<Change>]) {
    let raw: Vec<f64> = changes.iter().flatten().map(|c| c.p_value).collect();
    for (c, p) in changes.iter_mut().flatten().zip(holm_adjust(&raw)) {
        c.p_adjusted = p;
        c.verdict = verdict(c.direction, p, ALPHA);
    }
}

/// Sign-test changes Holm-corrected together: mark those whose rounds are too few for
/// any call ([`rounds_to_call`] over all of them), so a report does not read their `~`
/// as "no change".
pub fn mark_too_few_rounds(changes: &mut [Option<Change>]) {
    let needed = rounds_to_call(changes.iter().flatten().count());
    for c in changes.iter_mut().flatten() {
        c.rounds_needed = (c.rounds < needed).then_some(needed);
    }
}

/// Format a signed change like benchstat: "-42.1%", "+3.0%", or "~" when NoChange.
pub fn format_change(c: &Change) -> String {
    match c.verdict {
        Verdict::NoChange => "~".to_string(),
        _ => format!("{:+.1}%", c.ratio * 100.0),
    }
}

/// Percentile p (0..=100) of integer latencies (microseconds) by nearest rank, the
/// definition HdrHistogram's value_at_quantile approximates; used to check histogram
/// output against a direct computation. Rank = ceil(p/100 * n) clamped to [1, n];
/// `sorted` ascending; 0 for an empty slice.
pub fn nearest_rank(sorted: &[u64], p: f64) -> u64 {
    let n = sorted.len();
    // Multiply before dividing so integral p gives an exact rank (0.07 * 100 != 7).
    let rank = (p.clamp(0.0, 100.0) * n as f64 / 100.0).ceil() as usize;
    sorted
        .get(rank.clamp(1, n.max(1)) - 1)
        .copied()
        .unwrap_or(0)
}

fn sorted_without_nan(samples: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| !x.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values: numpy 2.x (percentile), scipy 1.17.1 (stats.mannwhitneyu, two-sided,
    // stats.binom), statsmodels 0.15.0 (multipletests method='holm'), Python math.erfc.
    fn assert_close(got: &[f64], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= tol, "got {got:?}, want {want:?}");
        }
    }

    fn one_to(n: u32) -> Vec<f64> {
        (1..=n).map(f64::from).collect()
    }

    #[test]
    fn percentile_matches_numpy() {
        let v = one_to(10);
        let got = [95.0, 50.0, 25.0, 0.0, 100.0].map(|p| percentile(&v, p));
        assert_close(&got, &[9.55, 5.5, 3.25, 1.0, 10.0], 1e-12);
        assert!(percentile(&[], 50.0).is_nan());
        assert_eq!(percentile(&[7.0], 95.0), 7.0);
    }

    #[test]
    fn summarize_basics() {
        assert_eq!(summarize(&[]), None);
        assert_eq!(summarize(&[f64::NAN]), None);
        let s = summarize(&[4.0, f64::NAN, 2.0, 8.0, 6.0]).expect("non-empty");
        assert_eq!((s.n, s.median_ci), (4, None));
        let got = [s.min, s.max, s.median, s.mean, s.stddev, s.p95];
        let want = [2.0, 8.0, 5.0, 5.0, (20.0f64 / 3.0).sqrt(), 7.7];
        assert_close(&got, &want, 1e-12);
        assert_eq!(summarize(&[3.0]).map(|s| s.stddev), Some(0.0));
    }

    /// Exact coverage P(j <= B <= n-j) with integer binomial coefficients.
    fn exact_coverage(n: u32, j: u32) -> f64 {
        let choose = |k: u32| (0..k).fold(1u128, |c, i| c * u128::from(n - i) / u128::from(i + 1));
        (j..=n - j).map(choose).sum::<u128>() as f64 / 2f64.powi(n as i32)
    }

    #[test]
    fn median_ci_order_statistics() {
        assert_eq!(median_ci(&one_to(20), 0.95), Some((6.0, 15.0)));
        // 1 - 2 * binom.cdf(5, 20, 0.5); the next pair (7, 14) falls short of 95%.
        assert_close(&[exact_coverage(20, 6)], &[0.9586105346679688], 1e-15);
        assert!(exact_coverage(20, 7) < 0.95);
        assert_eq!(median_ci(&one_to(5), 0.95), None);
        assert_eq!(median_ci(&one_to(6), 0.95), Some((1.0, 6.0))); // coverage 62/64
        assert_eq!(median_ci(&[], 0.95), None);
        // Large n must not underflow 2^-n: the interval tightens around the middle.
        let (lo, hi) = median_ci(&one_to(10_000), 0.95).expect("large n");
        assert!(lo > 4_850.0 && hi < 5_150.0 && lo + hi == 10_001.0);
    }

    #[test]
    fn erfc_matches_libm() {
        let cases = [
            (0.0, 1.0),
            (0.5, 0.4795001221869535),
            (1.0, 0.15729920705028513),
            (2.0, 0.004677734981047265),
            (2.9, 4.109787809945886e-05),
            (3.0, 2.2090496998585438e-05), // switch from series to continued fraction
            (4.0, 1.541725790028002e-08),
            (6.0, 2.1519736712498916e-17),
        ];
        for (x, want) in cases {
            assert!((erfc(x) - want).abs() <= 1e-10 * want, "erfc({x})");
        }
    }

    #[test]
    fn mann_whitney_exact_textbook() {
        let (a, b) = (one_to(5), one_to(10).split_off(5));
        let r = mann_whitney_u(&a, &b);
        assert_eq!((r.u, mann_whitney_u(&b, &a).u), (0.0, 25.0));
        assert!(r.z < 0.0);
        assert_close(&[r.p_value], &[2.0 / 252.0], 1e-12);
        // Overlapping, no ties; scipy method="exact" (asymptotic would give 0.07414553).
        let r = mann_whitney_u(
            &[1.1, 2.3, 3.8, 4.0, 6.5, 7.2],
            &[3.1, 5.0, 5.9, 8.4, 9.7, 10.2, 11.5],
        );
        assert_close(&[r.u, r.p_value], &[8.0, 0.07342657342657342], 1e-4);
    }

    #[test]
    fn mann_whitney_asymptotic_matches_scipy() {
        // Ties force the normal approximation; scipy method="asymptotic", use_continuity=True.
        let a = [1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0, 5.0];
        let r = mann_whitney_u(&a, &[3.0, 4.0, 4.0, 5.0, 5.0, 6.0, 7.0]);
        assert_close(&[r.u, r.p_value], &[7.5, 0.018530522991017574], 1e-4);
        // n > 20 without ties is asymptotic too.
        let b: Vec<f64> = one_to(22).iter().map(|x| x + 7.5).collect();
        let r = mann_whitney_u(&one_to(25), &b);
        assert_close(&[r.u, r.p_value], &[153.0, 0.009586761541013657], 1e-4);
    }

    #[test]
    fn mann_whitney_degenerate() {
        assert_eq!(mann_whitney_u(&[], &[1.0]).p_value, 1.0);
        assert_eq!(mann_whitney_u(&[1.0, f64::NAN], &[f64::NAN]).p_value, 1.0);
        let r = mann_whitney_u(&[2.0; 30], &[2.0; 30]); // all tied: zero variance
        assert_eq!((r.u, r.z, r.p_value), (450.0, 0.0, 1.0));
    }

    #[test]
    fn holm_matches_statsmodels() {
        let got = holm_adjust(&[0.01, 0.04, 0.03, 0.005]);
        assert_close(&got, &[0.03, 0.06, 0.06, 0.02], 1e-12);
        let got = holm_adjust(&[0.2, 0.5, 0.01, 0.9, 0.04]);
        assert_close(&got, &[0.6, 1.0, 0.05, 1.0, 0.16], 1e-12);
        assert!(holm_adjust(&[]).is_empty());
    }

    #[test]
    fn binomial_tails_match_exact_fractions() {
        // Python: sum(comb(n, i) for i in range(k, n + 1)) / 2**n, as Fractions.
        let cases = [
            (20, 15, 0.020694732666015625),
            (20, 17, 0.0012884140014648438),
            (20, 20, 9.5367431640625e-07),
            (10, 9, 0.0107421875),
            (20, 10, 0.5880985260009766),
            (30, 21, 0.02138697262853384),
        ];
        for (n, k, want) in cases {
            let got = binomial_upper_tail(n, k);
            assert!(
                (got - want).abs() <= 1e-12 * want.max(1e-300),
                "n={n} k={k}: {got}"
            );
        }
        assert_eq!(binomial_upper_tail(5, 0), 1.0);
        assert_eq!(binomial_upper_tail(5, 6), 0.0);
        assert!(binomial_upper_tail(2000, 1500) < 1e-100);
    }

    #[test]
    fn round_medians_take_each_rounds_median_in_round_order() {
        let samples = [(2, 5.0), (0, 1.0), (0, 3.0), (1, 9.0), (2, f64::NAN)];
        assert_eq!(round_medians(&samples), vec![2.0, 9.0, 5.0]);
        assert!(round_medians(&[]).is_empty());
    }

    #[test]
    fn paired_ratios_pair_rounds_and_take_medians() {
        let cell = [(0, 2.0), (0, 4.0), (1, 5.0), (3, 1.0)];
        let reference = [(0, 1.0), (1, 10.0), (1, 10.0), (2, 7.0), (3, 0.0)];
        // round 0: median 3 / 1; round 1: 5 / 10; round 2: no cell; round 3: ref 0.
        assert_eq!(paired_ratios(&cell, &reference), vec![3.0, 0.5]);
    }

    #[test]
    fn identical_sides_are_no_change_and_real_effects_are_called() {
        // Symmetric noise around 1: leans neither way.
        let noise: Vec<f64> = (0..20)
            .map(|i| if i % 2 == 0 { 1.3 } else { 1.0 / 1.3 })
            .collect();
        let c = compare_ratios(&noise, NOISE).expect("ratios");
        assert_eq!((c.verdict, c.rounds), (Verdict::NoChange, 20));
        assert!(c.p_value > 0.5, "{c:?}");
        // 18 of 20 rounds at half the time, 2 slower: faster, p = 2 P(B >= 18).
        let mut half = vec![0.5; 18];
        half.extend([1.2, 1.2]);
        let c = compare_ratios(&half, NOISE).expect("ratios");
        assert_eq!(c.verdict, Verdict::Faster);
        assert!((c.p_value - 2.0 * binomial_upper_tail(20, 18)).abs() < 1e-15);
        assert!((c.ratio + 0.5).abs() < 1e-12);
        let (lo, hi) = c.ci.expect("n = 20 has an interval");
        assert!(lo <= c.ratio && c.ratio <= hi);
        // A steady 3% change is real but inside the 5% band: not called.
        let c = compare_ratios(&[1.03; 20], NOISE).expect("ratios");
        assert_eq!(
            (c.verdict, c.direction),
            (Verdict::NoChange, Verdict::NoChange)
        );
        // The same 3% leaves a 2% band.
        let c = compare_ratios(&[1.03; 20], 0.02).expect("ratios");
        assert_eq!(c.verdict, Verdict::Slower);
        // Five rounds can never reach alpha: 2 / 2^5 = 0.0625.
        let c = compare_ratios(&[0.1; 5], NOISE).expect("ratios");
        assert_eq!(
            (c.verdict, c.direction, c.ci),
            (Verdict::NoChange, Verdict::Faster, None)
        );
        assert_eq!(compare_ratios(&[], NOISE), None);
        assert_eq!(compare_ratios(&[f64::NAN, 0.0], NOISE), None);
    }

    #[test]
    fn noise_floor_is_the_far_end_of_the_control_interval() {
        // 20 ratios 0.90, 0.91 ... 1.09: the interval of the median is (x6, x15).
        let ratios: Vec<f64> = (0..20).map(|i| 0.90 + 0.01 * i as f64).collect();
        let floor = noise_floor(&ratios);
        let far = (1.04f64.ln()).max(-(0.95f64.ln()));
        assert!((floor - (far.exp() - 1.0)).abs() < 1e-12, "{floor}");
        // Identical sides: no floor.
        assert_eq!(noise_floor(&[1.0; 10]), 0.0);
        // Too few rounds: the widest ratio stands in (0.5 is as far as 2).
        assert!((noise_floor(&[0.5, 1.0, 1.1]) - 1.0).abs() < 1e-12);
        assert_eq!(noise_floor(&[]), 0.0);
    }

    fn mk(direction: Verdict, p: f64) -> Change {
        Change {
            ratio: -0.5,
            ci: None,
            rounds: 20,
            threshold: NOISE,
            p_value: p,
            p_adjusted: p,
            direction,
            verdict: verdict(direction, p, ALPHA),
            rounds_needed: None,
            within: false,
        }
    }

    #[test]
    fn a_comparison_with_too_few_rounds_for_any_call_is_marked_as_such() {
        // One comparison: 2·2⁻⁵ = 0.0625 cannot be called, 2·2⁻⁶ = 0.031 can.
        assert_eq!(rounds_to_call(1), 6);
        // index-strategies: 56 comparisons; 56·2·2⁻¹¹ = 0.055, 56·2·2⁻¹² = 0.027.
        assert_eq!(rounds_to_call(56), 12);
        // 3 rounds, every one 150× slower: unanimous, and still no call among 56.
        let slow = compare_ratios(&[150.0, 148.0, 151.0], NOISE).expect("ratios");
        let mut changes = vec![Some(slow); 56];
        changes[0] = compare_ratios(&[0.5; 20], NOISE);
        holm_correct(&mut changes);
        mark_too_few_rounds(&mut changes);
        let (few, enough) = (changes[1].expect("some"), changes[0].expect("some"));
        assert_eq!(few.verdict, Verdict::NoChange);
        assert_eq!(few.rounds_needed, Some(12));
        assert_eq!(
            crate::report::fmt_change(Some(&few)),
            "~ (+14900.0%; 3 rounds, too few to call: 12 needed)"
        );
        assert_eq!(
            (enough.verdict, enough.rounds_needed),
            (Verdict::Faster, None)
        );
    }

    #[test]
    fn format_shows_called_changes_only() {
        let mut c = mk(Verdict::Faster, 0.001);
        c.ratio = -0.4737;
        assert_eq!(format_change(&c), "-47.4%");
        assert_eq!(format_change(&mk(Verdict::Faster, 0.2)), "~");
    }

    #[test]
    fn holm_correct_recomputes_verdicts() {
        let mut cs = [0.01, 0.04, 0.03, 0.005]
            .map(|p| Some(mk(Verdict::Faster, p)))
            .to_vec();
        cs.insert(1, None); // missing cells are not hypotheses
        holm_correct(&mut cs);
        let adj: Vec<f64> = cs.iter().flatten().map(|c| c.p_adjusted).collect();
        assert_close(&adj, &[0.03, 0.06, 0.06, 0.02], 1e-12);
        let verdicts: Vec<Verdict> = cs.iter().flatten().map(|c| c.verdict).collect();
        use Verdict::{Faster, NoChange};
        assert_eq!(verdicts, [Faster, NoChange, NoChange, Faster]);
        assert!(cs[1].is_none());
    }

    #[test]
    fn nearest_rank_definition() {
        let v: Vec<u64> = (1..=100).collect();
        let got = [99.0, 50.0, 100.0, 7.0, 0.0, 99.9].map(|p| nearest_rank(&v, p));
        assert_eq!(got, [99, 50, 100, 7, 1, 100]);
        assert_eq!(nearest_rank(&[], 50.0), 0);
        assert_eq!(nearest_rank(&[5, 9], 50.0), 5);
    }
}
