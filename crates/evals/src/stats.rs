//! Pass rates with confidence intervals, and the lift of one configuration over another.

use serde::{Deserialize, Serialize};

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// A pass rate with its 95% Wilson score interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// Passed cases.
    pub passed: usize,
    /// Graded cases.
    pub total: usize,
    /// passed / total (0 when there are none).
    pub rate: f64,
    /// Lower bound of the 95% interval.
    pub low: f64,
    /// Upper bound of the 95% interval.
    pub high: f64,
}

impl Rate {
    /// The Wilson interval: unlike the normal approximation it stays inside [0, 1] and is
    /// honest for the small suites skills have (10-100 cases) and for rates near 0 or 1.
    pub fn wilson(passed: usize, total: usize) -> Rate {
        if total == 0 {
            return Rate { passed, total, rate: 0.0, low: 0.0, high: 1.0 };
        }
        let n = total as f64;
        let p = passed as f64 / n;
        let z2 = Z95 * Z95;
        let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
        let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
        Rate { passed, total, rate: p, low: stored((centre - half).max(0.0)), high: stored((centre + half).min(1.0)) }
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1}% ({}/{}, 95% CI {:.1}–{:.1}%)",
            self.rate * 100.0,
            self.passed,
            self.total,
            self.low * 100.0,
            self.high * 100.0
        )
    }
}

/// The four cells of a paired comparison: how many cases each configuration passed alone
/// or together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct PairedCounts {
    /// Passed by both.
    pub both: usize,
    /// Passed with the skill only.
    pub gained: usize,
    /// Passed by the baseline only.
    pub lost: usize,
    /// Failed by both.
    pub neither: usize,
}

impl PairedCounts {
    /// Counts the cells of two runs over the same cases (the shorter length counts).
    pub fn of(with: &[bool], baseline: &[bool]) -> PairedCounts {
        let mut counts = PairedCounts::default();
        for (w, b) in with.iter().zip(baseline) {
            match (*w, *b) {
                (true, true) => counts.both += 1,
                (true, false) => counts.gained += 1,
                (false, true) => counts.lost += 1,
                (false, false) => counts.neither += 1,
            }
        }
        counts
    }

    /// Paired cases.
    pub fn total(&self) -> usize {
        self.both + self.gained + self.lost + self.neither
    }
}

impl std::ops::Add for PairedCounts {
    type Output = PairedCounts;
    fn add(self, o: PairedCounts) -> PairedCounts {
        PairedCounts {
            both: self.both + o.both,
            gained: self.gained + o.gained,
            lost: self.lost + o.lost,
            neither: self.neither + o.neither,
        }
    }
}

/// Difference between two pass rates on the same cases, with a 95% interval and the exact
/// McNemar test of "no difference".
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Lift {
    /// with - baseline, in rate units (0.05 = 5 points).
    pub delta: f64,
    /// Lower bound of the 95% interval.
    pub low: f64,
    /// Upper bound of the 95% interval.
    pub high: f64,
    /// Cases only the skill passed.
    pub gained: usize,
    /// Cases only the baseline passed.
    pub lost: usize,
    /// Cases both passed (absent from reports written before it was kept).
    #[serde(default)]
    pub both: usize,
    /// Cases both failed (absent from reports written before it was kept).
    #[serde(default)]
    pub neither: usize,
    /// Two-sided exact McNemar P value: the chance of a split of the discordant cases at
    /// least this uneven if neither configuration were better.
    #[serde(default = "no_evidence")]
    pub p_value: f64,
}

fn no_evidence() -> f64 {
    1.0
}

/// The P value below which a lift counts as evidence ([`Lift::is_significant`]).
pub const SIGNIFICANCE: f64 = 0.05;

impl Lift {
    /// Paired lift: both configurations ran the same cases.
    pub fn paired(with: &[bool], baseline: &[bool]) -> Lift {
        Lift::from_counts(PairedCounts::of(with, baseline))
    }

    /// The lift from its four cells; also pools the paired cases of several suites.
    ///
    /// The interval is Newcombe's hybrid score interval for paired proportions (Newcombe 1998,
    /// method 10): Wilson intervals of the two rates combined with their correlation. Unlike
    /// the Wald interval of the mean difference it does not collapse to a point when no case
    /// differs, and it keeps close to 95% coverage on the 20-30 case splits skills have.
    pub fn from_counts(counts: PairedCounts) -> Lift {
        let PairedCounts { both, gained, lost, neither } = counts;
        let p_value = mcnemar_exact(gained, lost);
        let n = counts.total();
        if n == 0 {
            return Lift { delta: 0.0, low: -1.0, high: 1.0, gained, lost, both, neither, p_value };
        }
        let nf = n as f64;
        let with = Rate::wilson(both + gained, n);
        let base = Rate::wilson(both + lost, n);
        let delta = (gained as f64 - lost as f64) / nf;
        // The correlation of the two rates: the 2x2 table's phi coefficient with Newcombe's
        // correction (AD - BC - n/2, and 0 when that is negative or a margin is empty).
        let margins = [both + gained, lost + neither, both + lost, gained + neither].map(|m| m as f64);
        let denominator = margins.iter().product::<f64>().sqrt();
        let concordance = both as f64 * neither as f64 - gained as f64 * lost as f64 - nf / 2.0;
        let phi = if denominator > 0.0 { concordance.max(0.0) / denominator } else { 0.0 };
        let (d1_low, d1_high) = (with.rate - with.low, with.high - with.rate);
        let (d2_low, d2_high) = (base.rate - base.low, base.high - base.rate);
        let below = (d1_low * d1_low - 2.0 * phi * d1_low * d2_high + d2_high * d2_high).max(0.0).sqrt();
        let above = (d1_high * d1_high - 2.0 * phi * d1_high * d2_low + d2_low * d2_low).max(0.0).sqrt();
        Lift {
            delta,
            low: stored((delta - below).max(-1.0)),
            high: stored((delta + above).min(1.0)),
            gained,
            lost,
            both,
            neither,
            p_value,
        }
    }

    /// The four cells this lift was computed from.
    pub fn counts(&self) -> PairedCounts {
        PairedCounts { both: self.both, gained: self.gained, lost: self.lost, neither: self.neither }
    }

    /// Whether the split of gained and lost cases is evidence of a difference (exact McNemar
    /// P below [`SIGNIFICANCE`]); the sign of [`Lift::delta`] says which way.
    pub fn is_significant(&self) -> bool {
        self.p_value < SIGNIFICANCE
    }
}

/// Two-sided exact McNemar test: under "no difference" each of the `gained + lost`
/// discordant cases goes either way with probability 1/2, so the P value is twice the
/// binomial tail of the smaller count (at most 1).
pub fn mcnemar_exact(gained: usize, lost: usize) -> f64 {
    let m = gained + lost;
    if m == 0 {
        return 1.0;
    }
    if m <= 120 {
        // Exact binomial sums (C(120, 60) < 2^127): the P values of suites print and store
        // as the fractions they are.
        let mut term: u128 = 1;
        let mut tail: u128 = 0;
        for k in 0..=gained.min(lost) {
            tail += term;
            term = term * (m - k) as u128 / (k + 1) as u128;
        }
        return stored((2.0 * tail as f64 / 2f64.powi(m as i32)).min(1.0));
    }
    // Terms C(m, k) / 2^m in log space: m can be the pooled count of many suites.
    let mut log_term = -(m as f64) * std::f64::consts::LN_2;
    let mut tail = 0.0;
    for k in 0..=gained.min(lost) {
        tail += log_term.exp();
        log_term += ((m - k) as f64).ln() - ((k + 1) as f64).ln();
    }
    stored((2.0 * tail).min(1.0))
}

/// `x` rounded to 12 decimals. serde_json (without its `float_roundtrip` feature, which would
/// rebuild most of the dependency tree) may read a 17-digit float back one unit in the last
/// place off; a number of at most 12 decimals is read back exactly, so reports that are
/// written and loaded again compare equal.
fn stored(x: f64) -> f64 {
    (x * 1e12).round() / 1e12
}

impl std::fmt::Display for Lift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:+.1} points (95% CI {:+.1} to {:+.1}; {} gained, {} lost; McNemar P {})",
            self.delta * 100.0,
            self.low * 100.0,
            self.high * 100.0,
            self.gained,
            self.lost,
            format_p(self.p_value)
        )
    }
}

/// A P value with two significant digits (`0.0525`, `0.31`, `1`), or `< 0.0001`.
pub fn format_p(p: f64) -> String {
    if p >= 0.9995 {
        "1".into()
    } else if p < 1e-4 {
        "< 0.0001".into()
    } else {
        let digits = (-p.log10().floor() as usize + 1).max(2);
        format!("{p:.digits$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_known_values() {
        // 8/10: Wilson 95% interval is 0.490 to 0.943.
        let r = Rate::wilson(8, 10);
        assert!((r.low - 0.4902).abs() < 1e-3 && (r.high - 0.9433).abs() < 1e-3, "{r:?}");
        let zero = Rate::wilson(0, 20);
        assert_eq!(zero.low, 0.0);
        assert!(zero.high > 0.1 && zero.high < 0.2, "{zero:?}");
        assert_eq!(Rate::wilson(0, 0).high, 1.0);
    }

    /// The paired worked example of Fagerland, Lydersen and Laake (Statistical Analysis of
    /// Contingency Tables, 2017): complete response before and after consolidation therapy,
    /// 59 / 6 / 16 / 80 of 161 patients; Newcombe's interval and the exact McNemar P there.
    #[test]
    fn the_lift_matches_the_published_paired_example() {
        let lift = Lift::from_counts(PairedCounts { both: 59, gained: 6, lost: 16, neither: 80 });
        assert!((lift.delta - -0.0621).abs() < 5e-5, "{lift:?}");
        assert!((lift.low - -0.1186).abs() < 5e-5, "{lift:?}");
        assert!((lift.high - -0.0046).abs() < 5e-5, "{lift:?}");
        assert!((lift.p_value - 0.0525).abs() < 5e-5, "{lift:?}");
        assert!(!lift.is_significant());
    }

    #[test]
    fn exact_mcnemar_is_twice_the_binomial_tail() {
        // 6 of 6 discordant cases one way: 2 / 2^6.
        assert!((mcnemar_exact(6, 0) - 2.0 / 64.0).abs() < 1e-12);
        assert!((mcnemar_exact(0, 6) - 2.0 / 64.0).abs() < 1e-12);
        // 5 of 5 is not enough at 0.05: 2 / 32.
        assert!((mcnemar_exact(5, 0) - 0.0625).abs() < 1e-12);
        assert_eq!(mcnemar_exact(3, 3), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // The largest exact sum and the first in log space, against Python's math.comb.
        assert!((mcnemar_exact(75, 45) - 0.007_846_593_122).abs() < 1e-11);
        assert!((mcnemar_exact(80, 50) - 0.010_694_055_124).abs() < 1e-11);
        // A pooled count far beyond f64's 2^-1074 stays finite.
        assert_eq!(mcnemar_exact(1500, 500), 0.0);
    }

    #[test]
    fn no_differing_case_still_leaves_an_interval() {
        // `skd eval` on 3 cases, 1 passed by both, 2 by neither: the Wald interval was
        // "+0.0 to +0.0"; three cases cannot rule out a large difference either way.
        let lift = Lift::paired(&[true, false, false], &[true, false, false]);
        assert_eq!((lift.delta, lift.gained, lift.lost, lift.p_value), (0.0, 0, 0, 1.0));
        assert!(lift.low < -0.1 && lift.high > 0.1, "{lift:?}");
        // Every case passed by both: the interval still spans both signs.
        let all = Lift::paired(&[true; 3], &[true; 3]);
        assert!(all.low < -0.3 && all.high > 0.3, "{all:?}");
        assert_eq!(Lift::from_counts(PairedCounts::default()), Lift::paired(&[], &[]));
    }

    #[test]
    fn paired_lift_counts_all_four_cells() {
        let with = [true, true, true, false, true, false];
        let base = [false, true, false, false, true, true];
        let lift = Lift::paired(&with, &base);
        assert!((lift.delta - 1.0 / 6.0).abs() < 1e-12);
        assert_eq!(lift.counts(), PairedCounts { both: 2, gained: 2, lost: 1, neither: 1 });
        assert!(lift.low < lift.delta && lift.high > lift.delta);
    }

    #[test]
    fn p_values_print_with_two_significant_digits() {
        assert_eq!(format_p(0.052_6), "0.053");
        assert_eq!(format_p(0.29), "0.29");
        assert_eq!(format_p(0.001_2), "0.0012");
        assert_eq!(format_p(1.0), "1");
        assert_eq!(format_p(1e-7), "< 0.0001");
    }
}
