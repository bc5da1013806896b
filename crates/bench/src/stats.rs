//! Latency histograms and the percentiles reported from them.

use hdrhistogram::Histogram;

/// Largest latency a histogram records (60 s); longer samples are clamped.
pub const MAX_NS: u64 = 60_000_000_000;

/// A histogram of nanosecond latencies, from 1 ns to [`MAX_NS`] at three
/// significant digits.
pub fn histogram() -> Histogram<u64> {
    // The bounds are valid constants (1 <= low, high >= 2 * low, 3 digits).
    Histogram::new_with_bounds(1, MAX_NS, 3).expect("valid histogram bounds")
}

/// Records one sample in nanoseconds, clamped into the histogram's range.
#[inline]
pub fn record(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record(ns.clamp(1, MAX_NS));
}

/// The summary of one latency distribution, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl Percentiles {
    /// Reads the percentiles of `h` (all zero for an empty histogram). Values are
    /// HdrHistogram's "highest equivalent value" at the given quantile, so they
    /// are exact to three significant digits.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles {
                count: 0,
                p50: 0,
                p90: 0,
                p99: 0,
                p999: 0,
                max: 0,
                mean: 0.0,
            };
        }
        Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// `a / b`, or `None` when `b` is zero.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// Points of a percentile curve: `(nines, latency_ns)` where `nines` is
/// `-log10(1 - q)` (0 = p0, 1 = p90, 2 = p99, 3 = p99.9, ...), from the median up
/// to the highest quantile the samples support, `steps` points per nine.
pub fn curve(h: &Histogram<u64>, steps: u32) -> Vec<(f64, u64)> {
    if h.is_empty() || steps == 0 {
        return Vec::new();
    }
    // Beyond log10(count) nines a quantile is just the maximum.
    let top = (h.len() as f64).log10().max(0.5);
    let first = 0.5f64.log10().abs(); // p50
    let mut out = Vec::new();
    let mut k = 0u32;
    loop {
        let nines = first + f64::from(k) / f64::from(steps);
        if nines >= top {
            break;
        }
        let q = 1.0 - 10f64.powf(-nines);
        out.push((nines, h.value_at_quantile(q).max(1)));
        k += 1;
    }
    out.push((top, h.max().max(1)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = histogram();
        for v in 1..=1000u64 {
            record(&mut h, v);
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 1000);
        assert_eq!(p.p50, 500);
        assert_eq!(p.p90, 900);
        assert_eq!(p.p99, 990);
        assert_eq!(p.p999, 999);
        assert_eq!(p.max, 1000);
        assert!((p.mean - 500.5).abs() < 0.01, "{}", p.mean);
    }

    #[test]
    fn three_significant_digits_and_clamping() {
        let mut h = histogram();
        record(&mut h, 123_456);
        record(&mut h, 0);
        record(&mut h, u64::MAX);
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 3);
        assert_eq!(p.p50, 123_519); // highest value equivalent to 123 456
        assert!(p.max >= MAX_NS && p.max < MAX_NS + MAX_NS / 1000);
        assert_eq!(h.min(), 1);
    }

    #[test]
    fn empty_histogram_is_all_zero() {
        let p = Percentiles::of(&histogram());
        assert_eq!((p.count, p.p50, p.max), (0, 0, 0));
        assert!(curve(&histogram(), 10).is_empty());
    }

    #[test]
    fn ratios() {
        assert_eq!(ratio(3.0, 2.0), Some(1.5));
        assert_eq!(ratio(3.0, 0.0), None);
    }

    #[test]
    fn curve_rises_to_the_max() {
        let mut h = histogram();
        for v in 1..=10_000u64 {
            record(&mut h, v);
        }
        let c = curve(&h, 4);
        assert!(c.len() > 10);
        assert!(c.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        assert_eq!(c.last().unwrap().1, h.max());
        assert!((c[0].0 - std::f64::consts::LOG10_2).abs() < 1e-9);
    }
}
