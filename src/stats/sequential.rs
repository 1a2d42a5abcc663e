//! Paired comparisons decided as soon as their answer is known.
//!
//! A comparison is a cell against its reference, measured in the same interleaved rounds:
//! each round gives one ratio, the cell's median over the reference's median in that
//! round, so drift between rounds cancels. The comparison works on the logs of those
//! ratios, `d_i`, and asks where their mean lies against a band of ±`threshold` (5%, or
//! the run's A/A floor when wider):
//!
//! - **slower** when the whole interval lies above `ln(1 + threshold)`, **faster** when it
//!   lies below `-ln(1 + threshold)`;
//! - **within the band** when the whole interval lies inside it: the comparison is decided
//!   too, as "no change larger than the threshold";
//! - **open** otherwise: more rounds are needed, or, at the last look, the answer is `~`.
//!
//! The interval is Student's t interval of the mean of `d`, which uses the size of every
//! round's difference: a 2× effect whose rounds agree is decided in a few rounds, where
//! a sign test (which counts only which side each round falls on) needs 11–12 rounds
//! for any call once 50 comparisons are corrected together, whatever the effect.
//!
//! **Many comparisons, many looks.** Comparisons are judged after a fixed set of rounds
//! (the [`Design`]'s looks: 3, 5, 8, 12 and 20 rounds, or fewer when the run has fewer),
//! and each decided comparison stops. Every interval is built at level
//! `1 - α / (family × looks)` (Bonferroni over the comparisons timed and the looks): with
//! probability at least 1 - α every interval of every comparison at every look covers
//! its true mean at once, so the chance that *any* decision of the run is wrong — a
//! change called where there is none, or a real one declared within the band — is at
//! most α, however many times the comparisons are looked at and whenever they stop.
//!
//! **Timer resolution.** EXPLAIN reports execution time in whole microseconds: a 4 µs
//! query's rounds read 4 or 5 µs, 25% apart. The quantisation's variance
//! (`resolution² / 6` for the two sides' uniform rounding) is added to the rounds' own,
//! and a change smaller than one quantum is never called.

use serde::{Deserialize, Serialize};

use super::{ALPHA, Change, Verdict, student};

/// Rounds after which every open comparison is judged (those below the run's rounds; the
/// run's last round is always a look).
pub const LOOKS: [usize; 5] = [3, 5, 8, 12, 20];

/// When comparisons are judged and how many are judged together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Design {
    /// Rounds after which open comparisons are judged, ascending; the last one is the
    /// most rounds any cell gets.
    pub looks: Vec<usize>,
    /// Comparisons judged together (the family the error rate is controlled over).
    pub family: usize,
    /// The family-wise error rate.
    pub alpha: f64,
}

impl Design {
    /// Looks at [`LOOKS`] below `rounds`, and at `rounds`.
    pub fn new(rounds: usize, family: usize) -> Design {
        let rounds = rounds.max(1);
        let mut looks: Vec<usize> = LOOKS.iter().copied().filter(|&l| l < rounds).collect();
        looks.push(rounds);
        Design {
            looks,
            family: family.max(1),
            alpha: ALPHA,
        }
    }

    /// How many intervals the error rate is split over.
    pub fn intervals(&self) -> usize {
        self.family.max(1) * self.looks.len().max(1)
    }

    /// The error rate of each interval.
    pub fn alpha_each(&self) -> f64 {
        self.alpha / self.intervals() as f64
    }

    /// Is `rounds` a round after which comparisons are judged?
    pub fn is_look(&self, rounds: usize) -> bool {
        self.looks.contains(&rounds)
    }

    /// The most rounds any cell gets.
    pub fn last(&self) -> usize {
        self.looks.last().copied().unwrap_or(1)
    }
}

/// The per-round ratios of a comparison judged against a band of ±`threshold`, with
/// `resolution` the timer's quantum relative to the faster side's median (0 when it
/// does not matter). None without any usable ratio.
pub fn judge(ratios: &[f64], threshold: f64, resolution: f64, design: &Design) -> Option<Change> {
    let logs: Vec<f64> = ratios
        .iter()
        .copied()
        .filter(|r| r.is_finite() && *r > 0.0)
        .map(f64::ln)
        .collect();
    let n = logs.len();
    if n == 0 {
        return None;
    }
    let threshold = threshold.max(resolution);
    let band = threshold.ln_1p();
    let mean = logs.iter().sum::<f64>() / n as f64;
    let open = |p: f64| Change {
        ratio: mean.exp() - 1.0,
        ci: None,
        rounds: n,
        threshold,
        p_value: p,
        p_adjusted: p,
        direction: direction_of(mean, band),
        verdict: Verdict::NoChange,
        rounds_needed: None,
        within: false,
    };
    if n < 2 {
        return Some(open(1.0));
    }
    let df = (n - 1) as f64;
    let variance =
        logs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / df + resolution * resolution / 6.0;
    let se = (variance / n as f64).sqrt();
    if se <= 0.0 || !se.is_finite() {
        return Some(open(1.0));
    }
    let alpha_each = design.alpha_each();
    let q = student::upper_quantile(alpha_each / 2.0, df);
    let (lo, hi) = (mean - q * se, mean + q * se);
    let p_slower = student::upper_tail((mean - band) / se, df);
    let p_faster = student::upper_tail((-mean - band) / se, df);
    let p_value = (2.0 * p_slower.min(p_faster)).min(1.0);
    let verdict = if lo > band {
        Verdict::Slower
    } else if hi < -band {
        Verdict::Faster
    } else {
        Verdict::NoChange
    };
    Some(Change {
        ratio: mean.exp() - 1.0,
        ci: Some((lo.exp() - 1.0, hi.exp() - 1.0)),
        rounds: n,
        threshold,
        p_value,
        p_adjusted: (p_value * design.intervals() as f64).min(1.0),
        direction: direction_of(mean, band),
        verdict,
        rounds_needed: None,
        within: lo > -band && hi < band,
    })
}

fn direction_of(mean: f64, band: f64) -> Verdict {
    if mean > band {
        Verdict::Slower
    } else if mean < -band {
        Verdict::Faster
    } else {
        Verdict::NoChange
    }
}

/// Is the comparison decided (called either way, or within the band)?
pub fn decided(change: &Change) -> bool {
    change.verdict != Verdict::NoChange || change.within
}

/// How far identical copies drifted apart in this run: the far end of the 95% t interval
/// of the A/A control's mean log ratio, as a relative change (log-symmetric: a 0.8 ratio
/// counts as 25%). With one round, that round's ratio; 0 without any.
pub fn floor(control_ratios: &[f64]) -> f64 {
    let logs: Vec<f64> = control_ratios
        .iter()
        .copied()
        .filter(|r| r.is_finite() && *r > 0.0)
        .map(f64::ln)
        .collect();
    let n = logs.len();
    let far = match n {
        0 => 0.0,
        1 => logs[0].abs(),
        _ => {
            let mean = logs.iter().sum::<f64>() / n as f64;
            let df = (n - 1) as f64;
            let sd = (logs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / df).sqrt();
            let half = student::upper_quantile(0.025, df) * sd / (n as f64).sqrt();
            mean.abs() + half
        }
    };
    far.exp() - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_stop_at_the_runs_rounds_and_split_alpha() {
        let d = Design::new(20, 10);
        assert_eq!(d.looks, vec![3, 5, 8, 12, 20]);
        assert_eq!(d.intervals(), 50);
        assert!((d.alpha_each() - 0.001).abs() < 1e-15);
        assert_eq!(Design::new(10, 1).looks, vec![3, 5, 8, 10]);
        assert_eq!(Design::new(2, 1).looks, vec![2]);
        assert_eq!(Design::new(40, 1).looks, vec![3, 5, 8, 12, 20, 40]);
        assert!(d.is_look(8) && !d.is_look(9));
    }

    #[test]
    fn a_two_fold_effect_whose_rounds_agree_is_called_within_five_rounds() {
        // 56 comparisons (index-strategies' matrix), five looks: every interval at
        // 1 - 0.05 / 280.
        let design = Design::new(20, 56);
        let rounds = [2.0, 1.93, 2.08, 1.97, 2.05];
        let at3 = judge(&rounds[..3], 0.05, 0.0, &design).expect("ratios");
        let at5 = judge(&rounds, 0.05, 0.0, &design).expect("ratios");
        assert_eq!(at5.verdict, Verdict::Slower, "{at5:?}");
        assert!(decided(&at5));
        assert!((at5.ratio - 1.0).abs() < 0.02, "{at5:?}");
        let (lo, hi) = at5.ci.expect("interval");
        assert!(lo > 0.05 && lo <= at5.ratio && at5.ratio <= hi, "{at5:?}");
        assert!(at5.p_adjusted < ALPHA);
        // The same in the other direction.
        let faster: Vec<f64> = rounds.iter().map(|r| 1.0 / r).collect();
        let c = judge(&faster, 0.05, 0.0, &design).expect("ratios");
        assert_eq!(c.verdict, Verdict::Faster);
        // Three rounds this spread are not yet enough (q = 70 at 2 degrees of freedom).
        assert_eq!(at3.verdict, Verdict::NoChange, "{at3:?}");
    }

    #[test]
    fn symmetric_noise_is_never_called_and_a_tight_nothing_is_decided_within() {
        let design = Design::new(20, 1);
        let noise: Vec<f64> = (0..20)
            .map(|i| if i % 2 == 0 { 1.3 } else { 1.0 / 1.3 })
            .collect();
        let c = judge(&noise, 0.05, 0.0, &design).expect("ratios");
        assert_eq!(c.verdict, Verdict::NoChange);
        assert!(
            !c.within && !decided(&c),
            "±30% noise cannot show a ±5% band"
        );
        // Twelve rounds within ±0.5%: decided, within the band.
        let tight: Vec<f64> = (0..12)
            .map(|i| 1.0 + 0.005 * ((i % 3) as f64 - 1.0))
            .collect();
        let c = judge(&tight, 0.05, 0.0, &design).expect("ratios");
        assert!(c.within && decided(&c), "{c:?}");
        assert_eq!(c.verdict, Verdict::NoChange);
        // A steady 3% is real but inside the band: within, not called.
        let c = judge(&[1.03, 1.031, 1.029, 1.03, 1.03], 0.05, 0.0, &design).expect("ratios");
        assert_eq!(c.verdict, Verdict::NoChange);
        // One ratio: no interval, nothing decided.
        let c = judge(&[3.0], 0.05, 0.0, &design).expect("ratio");
        assert!(c.ci.is_none() && !decided(&c));
        assert_eq!(judge(&[], 0.05, 0.0, &design), None);
        assert_eq!(judge(&[f64::NAN, 0.0, -1.0], 0.05, 0.0, &design), None);
    }

    #[test]
    fn p_values_agree_with_scipy_and_with_the_interval() {
        // d = ln(ratios); scipy: stats.t.sf((mean - ln 1.05) / (sd / sqrt(5)), 4).
        let ratios = [1.2, 1.15, 1.3, 1.1, 1.25];
        let design = Design::new(20, 1);
        let c = judge(&ratios, 0.05, 0.0, &design).expect("ratios");
        let logs: Vec<f64> = ratios.iter().map(|r: &f64| r.ln()).collect();
        let mean = logs.iter().sum::<f64>() / 5.0;
        let sd = (logs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / 4.0).sqrt();
        let t = (mean - 1.05f64.ln()) / (sd / 5f64.sqrt());
        assert!((c.p_value - 2.0 * student::upper_tail(t, 4.0)).abs() < 1e-12);
        // scipy: t = 4.462924538133597, 2 * stats.t.sf(t, 4) = 0.011135175389739193.
        assert!((t - 4.462924538133597).abs() < 1e-12);
        assert!(
            (c.p_value - 0.011135175389739193).abs() < 1e-12,
            "{}",
            c.p_value
        );
        // Called iff the adjusted p-value is below alpha iff the interval clears the band.
        let called = c.verdict != Verdict::NoChange;
        assert_eq!(called, c.p_adjusted < ALPHA);
        assert_eq!(called, c.ci.expect("ci").0 > 0.05);
    }

    #[test]
    fn a_change_inside_one_timer_quantum_is_never_called() {
        // A 4 µs query read as 4 µs on one side and 5 µs on the other, every round.
        let design = Design::new(20, 1);
        let ratios = vec![5.0 / 4.0; 20];
        let c = judge(&ratios, 0.05, 0.001 / 0.004, &design).expect("ratios");
        assert_eq!(c.verdict, Verdict::NoChange, "{c:?}");
        assert!((c.threshold - 0.25).abs() < 1e-12);
        // Without the resolution, rounds that never vary give no interval at all.
        let c = judge(&ratios, 0.05, 0.0, &design).expect("ratios");
        assert_eq!(c.verdict, Verdict::NoChange, "zero spread: no interval");
        assert!(c.ci.is_none());
    }

    #[test]
    fn the_floor_is_the_far_end_of_the_controls_interval() {
        assert_eq!(floor(&[]), 0.0);
        assert_eq!(floor(&[1.0; 10]), 0.0);
        assert!((floor(&[0.8]) - 0.25).abs() < 1e-12);
        // Five ratios: mean of logs ± t(0.975, 4) × sd / sqrt(5).
        let ratios = [1.02, 0.99, 1.01, 1.03, 0.98];
        let logs: Vec<f64> = ratios.iter().map(|r: &f64| r.ln()).collect();
        let mean = logs.iter().sum::<f64>() / 5.0;
        let sd = (logs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / 4.0).sqrt();
        let want = (mean.abs() + 2.7764451051977934 * sd / 5f64.sqrt()).exp() - 1.0;
        assert!((floor(&ratios) - want).abs() < 1e-9);
    }
}
