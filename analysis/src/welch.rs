//! Two-sample t-tests on sample summaries: Welch's unequal-variances test, as Tveit et al.
//! (2025) use it to compare the grok epochs of two optimizers, and Student's pooled-variance
//! test, which the paper may have meant (it does not say which).

use crate::student_t;

/// What the test needs of a sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleSummary {
    pub n: usize,
    pub mean: f64,
    /// The unbiased sample variance (denominator n - 1).
    pub variance: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WelchTest {
    /// (mean a - mean b) / standard error: negative when sample a is smaller.
    pub t: f64,
    /// Welch–Satterthwaite degrees of freedom (Student's test: n_a + n_b − 2).
    pub df: f64,
    pub p_two_sided: f64,
}

/// Student's two-sample t-test with pooled variance: t = (mean a − mean b) /
/// √(s²·(1/n_a + 1/n_b)), s² = ((n_a − 1)·var a + (n_b − 1)·var b) / (n_a + n_b − 2). None when
/// a sample has fewer than two values or the pooled variance is zero.
pub fn student_t_test(a: &SampleSummary, b: &SampleSummary) -> Option<WelchTest> {
    if a.n < 2 || b.n < 2 {
        return None;
    }
    let (na, nb) = (a.n as f64, b.n as f64);
    let df = na + nb - 2.0;
    let pooled = ((na - 1.0) * a.variance + (nb - 1.0) * b.variance) / df;
    let squared_error = pooled * (1.0 / na + 1.0 / nb);
    if squared_error <= 0.0 || !squared_error.is_finite() {
        return None;
    }
    let t = (a.mean - b.mean) / squared_error.sqrt();
    Some(WelchTest { t, df, p_two_sided: student_t::two_sided_p(t, df) })
}

/// None when either sample has fewer than two values or both have zero
/// variance: the statistic is then undefined.
pub fn welch_t_test(a: &SampleSummary, b: &SampleSummary) -> Option<WelchTest> {
    if a.n < 2 || b.n < 2 {
        return None;
    }
    let share_a = a.variance / a.n as f64;
    let share_b = b.variance / b.n as f64;
    let squared_error = share_a + share_b;
    if squared_error <= 0.0 || !squared_error.is_finite() {
        return None;
    }
    let t = (a.mean - b.mean) / squared_error.sqrt();
    let df =
        squared_error * squared_error / (share_a * share_a / (a.n - 1) as f64 + share_b * share_b / (b.n - 1) as f64);
    Some(WelchTest { t, df, p_two_sided: student_t::two_sided_p(t, df) })
}

#[cfg(test)]
mod tests {
    // Welch's t-test and the Student-t distribution against independently
    // computed values. Source of every expected value: SciPy 1.17.1
    // (scipy.stats.ttest_ind(a, b, equal_var=False), scipy.stats.t.cdf / .sf,
    // scipy.special.betainc), run with Python 3.11 in a throwaway venv.

    use super::{student_t_test, welch_t_test, SampleSummary};
    use crate::student_t::{regularized_incomplete_beta, two_sided_p};

    fn summary(sample: &[f64]) -> SampleSummary {
        let n = sample.len();
        let mean = sample.iter().sum::<f64>() / n as f64;
        let variance = sample.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        SampleSummary { n, mean, variance }
    }

    fn close(actual: f64, expected: f64, tolerance: f64) {
        assert!((actual - expected).abs() <= tolerance, "got {actual}, expected {expected} ± {tolerance}");
    }

    #[test]
    fn unequal_sizes_and_variances() {
        let a = [19.8, 20.4, 19.6, 17.8, 18.5, 18.9, 18.3, 18.9, 19.5, 22.0];
        let b = [
            28.2, 26.6, 20.1, 23.3, 25.2, 22.1, 17.7, 27.6, 20.6, 13.7, 23.2, 17.5, 20.6, 18.0, 23.9, 21.6, 24.3, 20.4,
            23.9, 13.3,
        ];
        let test = welch_t_test(&summary(&a), &summary(&b)).unwrap();
        close(test.t, -2.225512039969852, 1e-10);
        close(test.df, 24.524634944257343, 1e-9);
        close(test.p_two_sided, 0.035484530830010394, 1e-10);
    }

    #[test]
    fn wikipedia_example_one() {
        // Welch's t-test article, example 1 (t ≈ −2.46, df ≈ 25.0, p ≈ 0.021).
        let a = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4];
        let b = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4];
        let test = welch_t_test(&summary(&a), &summary(&b)).unwrap();
        close(test.t, -2.455356398286006, 1e-10);
        close(test.df, 24.988529290231416, 1e-9);
        close(test.p_two_sided, 0.021378001462866992, 1e-10);
        // Swapping the samples flips the sign only.
        let swapped = welch_t_test(&summary(&b), &summary(&a)).unwrap();
        close(swapped.t, -test.t, 1e-12);
        close(swapped.p_two_sided, test.p_two_sided, 1e-14);
    }

    #[test]
    fn student_t_distribution() {
        close(two_sided_p(2.0, 5.0), 0.10193947882985835, 1e-12);
        // 2·scipy.stats.t.cdf(−|t|, df), from t.cdf(-1.5, 3.7) = 0.10679908460100675,
        // t.cdf(0.3, 100) = 0.6176000598498482, t.cdf(-2, 1) = 0.14758361765043326 and
        // t.cdf(-40, 2.5) = 7.09781714524669e-05.
        close(two_sided_p(-1.5, 3.7), 0.2135981692020135, 1e-12);
        close(two_sided_p(0.3, 100.0), 0.7647998803003035, 1e-12);
        close(two_sided_p(-2.0, 1.0), 0.2951672353008665, 1e-12);
        close(two_sided_p(-40.0, 2.5), 1.419563429049338e-4, 2e-15);
        close(two_sided_p(0.0, 7.0), 1.0, 1e-15);
        close(two_sided_p(1.5, 3.7), two_sided_p(-1.5, 3.7), 0.0);
    }

    #[test]
    fn incomplete_beta() {
        close(regularized_incomplete_beta(0.3, 2.5, 0.5), 0.018927124071945658, 1e-13);
        close(regularized_incomplete_beta(0.9, 10.0, 3.0), 0.889130022255, 1e-11);
        close(regularized_incomplete_beta(0.5, 0.5, 0.5), 0.5, 1e-13);
        assert_eq!(regularized_incomplete_beta(0.0, 2.0, 3.0), 0.0);
        assert_eq!(regularized_incomplete_beta(1.0, 2.0, 3.0), 1.0);
    }

    #[test]
    fn degenerate_samples_have_no_test() {
        let one = SampleSummary { n: 1, mean: 3.0, variance: 0.0 };
        let constant = SampleSummary { n: 4, mean: 3.0, variance: 0.0 };
        assert!(welch_t_test(&one, &summary(&[1.0, 2.0, 3.0])).is_none());
        assert!(welch_t_test(&constant, &constant).is_none());
    }

    /// Student's pooled-variance test and Welch's on the same samples. Expected values: SciPy
    /// 1.17.1, scipy.stats.ttest_ind(a, b, equal_var=True) and (..., equal_var=False).
    #[test]
    fn student_and_welch_on_grok_epoch_like_samples() {
        let a = [120.0, 95.0, 143.0, 160.0, 101.0, 133.0, 150.0, 88.0];
        let b = [80.0, 102.0, 77.0, 95.0, 110.0, 69.0, 90.0];
        let student = student_t_test(&summary(&a), &summary(&b)).unwrap();
        close(student.t, 3.0338240670967616, 1e-10);
        close(student.df, 13.0, 0.0);
        close(student.p_two_sided, 0.00959396970252059, 1e-10);
        let welch = welch_t_test(&summary(&a), &summary(&b)).unwrap();
        close(welch.t, 3.1554839092154823, 1e-10);
        close(welch.df, 11.012004720325889, 1e-9);
        close(welch.p_two_sided, 0.009140767869650929, 1e-10);
        assert!(student_t_test(&summary(&a[..1]), &summary(&b)).is_none(), "one value has no variance");
    }

    /// The smallest two-sided p that |t| = 5.0175 allows (the normal limit, df → ∞), which the
    /// study report quotes against the paper's p ≈ 6.33e-8. SciPy: 2·scipy.stats.norm.sf(5.0175).
    #[test]
    fn the_papers_t_allows_no_p_below_its_normal_limit() {
        // The incomplete beta function's series is good to about 1e-4 relative at df = 1e12.
        close(two_sided_p(5.0175, 1e12), 5.23482015871521e-07, 1e-10);
        for df in [10.0, 100.0, 1000.0] {
            assert!(two_sided_p(5.0175, df) > 5.23482015871521e-07, "df {df}");
        }
    }
}
