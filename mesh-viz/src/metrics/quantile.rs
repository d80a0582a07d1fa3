//! Quantiles from histogram buckets, computed as Prometheus's `histogram_quantile` does.

/// The `q`-quantile of a histogram given as cumulative `(upper bound, count)` buckets (any
/// order; the last bound must be `+Inf`), interpolating linearly inside the bucket the rank
/// falls in, as Prometheus does:
///
/// - no `+Inf` bucket, fewer than two buckets, or no observations: `None`;
/// - a rank in the `+Inf` bucket: the highest finite bound;
/// - a rank in the first bucket: interpolated from 0 (if the bound is positive);
/// - counts that decrease with the bound (a scrape racing an observation) are first made
///   monotonic.
///
/// ```
/// use mesh_viz::metrics::histogram_quantile;
///
/// // 10 observations up to 1 ms, 10 more up to 2 ms.
/// let buckets = [(1.0, 10.0), (2.0, 20.0), (f64::INFINITY, 20.0)];
/// assert_eq!(histogram_quantile(0.5, &buckets), Some(1.0));
/// assert_eq!(histogram_quantile(0.75, &buckets), Some(1.5));
/// ```
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    if q.is_nan() {
        return None;
    }
    if q < 0.0 {
        return Some(f64::NEG_INFINITY);
    }
    if q > 1.0 {
        return Some(f64::INFINITY);
    }
    let mut b: Vec<(f64, f64)> = buckets
        .iter()
        .copied()
        .filter(|(le, c)| !le.is_nan() && c.is_finite())
        .collect();
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    // Buckets with the same bound (from several series) add up.
    b.dedup_by(|later, earlier| {
        if later.0 == earlier.0 {
            earlier.1 += later.1;
            true
        } else {
            false
        }
    });
    if b.len() < 2 || b.last().is_none_or(|(le, _)| *le != f64::INFINITY) {
        return None;
    }
    for i in 1..b.len() {
        if b[i].1 < b[i - 1].1 {
            b[i].1 = b[i - 1].1;
        }
    }
    let observations = b[b.len() - 1].1;
    if observations <= 0.0 {
        return None;
    }
    let mut rank = q * observations;
    let i = b
        .iter()
        .position(|(_, c)| *c >= rank)
        .unwrap_or(b.len() - 1);
    if i == b.len() - 1 {
        return Some(b[b.len() - 2].0);
    }
    if i == 0 && b[0].0 <= 0.0 {
        return Some(b[0].0);
    }
    let (mut start, end, mut count) = (0.0, b[i].0, b[i].1);
    if i > 0 {
        start = b[i - 1].0;
        count -= b[i - 1].1;
        rank -= b[i - 1].1;
    }
    if count <= 0.0 {
        return Some(end);
    }
    Some(start + (end - start) * (rank / count))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INF: f64 = f64::INFINITY;

    #[test]
    fn interpolates_like_prometheus() {
        // Linkerd's first buckets; 4 observations <= 1 ms, 4 in (1, 2], 2 in (5, 10].
        let b = [
            (1.0, 4.0),
            (2.0, 8.0),
            (5.0, 8.0),
            (10.0, 10.0),
            (INF, 10.0),
        ];
        assert_eq!(histogram_quantile(0.2, &b), Some(0.5));
        assert_eq!(histogram_quantile(0.5, &b), Some(1.25));
        assert_eq!(histogram_quantile(0.8, &b), Some(2.0));
        assert_eq!(histogram_quantile(0.95, &b), Some(8.75));
        assert_eq!(histogram_quantile(0.99, &b), Some(9.75));
        assert_eq!(histogram_quantile(1.0, &b), Some(10.0));
        assert_eq!(histogram_quantile(0.0, &b), Some(0.0));
    }

    #[test]
    fn edge_cases() {
        // Rank in +Inf: the highest finite bound.
        assert_eq!(
            histogram_quantile(0.99, &[(1.0, 1.0), (INF, 10.0)]),
            Some(1.0)
        );
        // No observations, no +Inf, too few buckets.
        assert_eq!(histogram_quantile(0.5, &[(1.0, 0.0), (INF, 0.0)]), None);
        assert_eq!(histogram_quantile(0.5, &[(1.0, 1.0), (2.0, 2.0)]), None);
        assert_eq!(histogram_quantile(0.5, &[(INF, 2.0)]), None);
        assert_eq!(histogram_quantile(0.5, &[]), None);
        assert_eq!(
            histogram_quantile(f64::NAN, &[(1.0, 1.0), (INF, 1.0)]),
            None
        );
        assert_eq!(
            histogram_quantile(1.5, &[(1.0, 1.0), (INF, 1.0)]),
            Some(INF)
        );
        // Unsorted input, duplicate bounds from several series, non-monotonic counts.
        let b = [(INF, 4.0), (2.0, 2.0), (1.0, 1.0), (2.0, 2.0), (1.0, 1.0)];
        assert_eq!(histogram_quantile(0.5, &b), Some(1.0));
        assert_eq!(histogram_quantile(0.75, &b), Some(1.5));
        let b = [(1.0, 5.0), (2.0, 4.0), (INF, 10.0)];
        assert_eq!(histogram_quantile(0.5, &b), Some(1.0));
    }
}
