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
        Rate { passed, total, rate: p, low: (centre - half).max(0.0), high: (centre + half).min(1.0) }
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

/// Difference between two pass rates on the same cases, with a 95% interval.
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
}

impl Lift {
    /// Paired lift: both configurations ran the same cases, so the interval comes from the
    /// per-case differences (Wald interval of the mean difference, with a continuity-free
    /// variance that is exact for the {-1, 0, 1} outcomes; clamped to [-1, 1]).
    pub fn paired(with: &[bool], baseline: &[bool]) -> Lift {
        let n = with.len().min(baseline.len());
        let pairs = || with.iter().zip(baseline).take(n);
        let gained = pairs().filter(|(a, b)| **a && !**b).count();
        let lost = pairs().filter(|(a, b)| !**a && **b).count();
        Lift::from_counts(gained, lost, n)
    }

    /// The paired lift from its counts: `gained` and `lost` of `n` paired cases, the rest
    /// tied. The differences are +1, -1 and 0, so the counts determine the mean and the
    /// variance; it also pools the paired cases of several suites.
    pub fn from_counts(gained: usize, lost: usize, n: usize) -> Lift {
        debug_assert!(gained + lost <= n, "{gained} gained + {lost} lost > {n} cases");
        if n == 0 {
            return Lift { delta: 0.0, low: -1.0, high: 1.0, gained, lost };
        }
        let nf = n as f64;
        let mean = (gained as f64 - lost as f64) / nf;
        // Sum of squared deviations: sum(d^2) - n * mean^2, with sum(d^2) = gained + lost.
        let var = ((gained + lost) as f64 - nf * mean * mean).max(0.0) / (nf - 1.0).max(1.0);
        let half = Z95 * (var / nf).sqrt();
        Lift { delta: mean, low: (mean - half).max(-1.0), high: (mean + half).min(1.0), gained, lost }
    }
}

impl std::fmt::Display for Lift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:+.1} points (95% CI {:+.1} to {:+.1}; {} gained, {} lost)",
            self.delta * 100.0,
            self.low * 100.0,
            self.high * 100.0,
            self.gained,
            self.lost
        )
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

    #[test]
    fn the_paired_lift_is_the_mean_difference_with_its_sample_variance() {
        // Against the textbook definition, computed here case by case.
        let cases: [(&[bool], &[bool]); 3] = [
            (&[true, true, false, true, false, false, true], &[false, true, true, true, false, false, false]),
            (&[true, true, false, false, true], &[false, true, false, true, false]),
            (&[false, false, true], &[true, true, true]),
        ];
        for (with, base) in cases {
            let diffs: Vec<f64> =
                with.iter().zip(base).map(|(a, b)| f64::from(u8::from(*a)) - f64::from(u8::from(*b))).collect();
            let n = diffs.len() as f64;
            let mean = diffs.iter().sum::<f64>() / n;
            let var = diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1.0);
            let half = Z95 * (var / n).sqrt();
            let lift = Lift::paired(with, base);
            assert!((lift.delta - mean).abs() < 1e-12);
            assert!((lift.low - (mean - half).max(-1.0)).abs() < 1e-12, "{lift:?}");
            assert!((lift.high - (mean + half).min(1.0)).abs() < 1e-12, "{lift:?}");
            assert_eq!(lift, Lift::from_counts(lift.gained, lift.lost, with.len()));
        }
        assert_eq!(Lift::from_counts(0, 0, 0), Lift::paired(&[], &[]));
    }

    #[test]
    fn paired_lift_counts_gains_and_losses() {
        let with = [true, true, true, false, true];
        let base = [false, true, false, false, true];
        let lift = Lift::paired(&with, &base);
        assert!((lift.delta - 0.4).abs() < 1e-9);
        assert_eq!((lift.gained, lift.lost), (2, 0));
        assert!(lift.low < lift.delta && lift.high > lift.delta);
        let same = Lift::paired(&with, &with);
        assert_eq!((same.delta, same.low, same.high), (0.0, 0.0, 0.0));
    }
}
