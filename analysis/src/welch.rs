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
    let df = squared_error * squared_error
        / (share_a * share_a / (a.n - 1) as f64 + share_b * share_b / (b.n - 1) as f64);
    Some(WelchTest {
        t,
        df,
        p_two_sided: student_t::two_sided_p(t, df),
    })
}
