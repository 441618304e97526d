//! Page-load durations as a mergeable histogram: the report keeps the distribution, not only its
//! percentiles, so the reports of many shards merge into exactly the percentiles one probe over
//! all their loads would have reported (percentiles cannot be averaged).
//!
//! Log-linear buckets, as HDR histograms do: every millisecond below 128 ms has its own bucket;
//! above, each power of two is split into 64 buckets, so a bucket is at most 1/64 (1.6%) of its
//! values wide. A value is reported as its bucket's lower bound; the maximum is kept exactly.

use serde::{Deserialize, Serialize};

/// Values below this are exact.
const LINEAR: u64 = 128;
/// Sub-buckets per power of two above [`LINEAR`].
const SUB_BITS: u32 = 6;

/// Durations in ms: `(bucket lower bound, count)` pairs, ascending, empty buckets left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Histogram {
    /// `[lower bound in ms, count]`, ascending by lower bound.
    pub buckets: Vec<(u64, u64)>,
}

/// The lower bound of `v`'s bucket.
pub fn bucket(v: u64) -> u64 {
    if v < LINEAR {
        return v;
    }
    let shift = (63 - v.leading_zeros()) - SUB_BITS;
    (v >> shift) << shift
}

impl Histogram {
    /// The histogram of `values`.
    pub fn of(values: impl IntoIterator<Item = u64>) -> Histogram {
        let mut counts = std::collections::BTreeMap::new();
        for v in values {
            *counts.entry(bucket(v)).or_insert(0u64) += 1;
        }
        Histogram { buckets: counts.into_iter().collect() }
    }

    /// The sum of two histograms: as if one had counted both sets of values.
    pub fn merge(&self, other: &Histogram) -> Histogram {
        let mut counts: std::collections::BTreeMap<u64, u64> = self.buckets.iter().copied().collect();
        for &(b, n) in &other.buckets {
            *counts.entry(b).or_default() += n;
        }
        Histogram { buckets: counts.into_iter().collect() }
    }

    /// How many values.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|(_, n)| n).sum()
    }

    /// The `p`th percentile (nearest rank), as its bucket's lower bound; 0 when empty.
    pub fn percentile(&self, p: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * total as f64).ceil().clamp(1.0, total as f64) as u64;
        let mut seen = 0;
        for &(b, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                return b;
            }
        }
        self.buckets.last().map_or(0, |(b, _)| *b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nearest_rank(sorted: &[u64], p: f64) -> u64 {
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    #[test]
    fn exact_below_128_ms_and_within_a_sixty_fourth_above() {
        for v in 0..128 {
            assert_eq!(bucket(v), v);
        }
        for v in [128, 129, 200, 1000, 1017, 65_535, 10_000_000] {
            let b = bucket(v);
            assert!(b <= v && (v - b) as f64 <= v as f64 / 64.0, "{v} -> {b}");
        }
    }

    #[test]
    fn percentiles_match_the_sorted_values_bucketed() {
        let mut x: u64 = 7;
        let values: Vec<u64> = (0..5000)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (x >> 33) % 3000
            })
            .collect();
        let mut sorted = values.clone();
        sorted.sort_unstable();
        let h = Histogram::of(values);
        for p in [50.0, 90.0, 99.0, 100.0] {
            assert_eq!(h.percentile(p), bucket(nearest_rank(&sorted, p)), "p{p}");
        }
    }

    #[test]
    fn merging_equals_counting_everything_in_any_order() {
        let parts: Vec<Vec<u64>> = vec![(0..300).collect(), (100..2000).step_by(7).collect(), vec![5, 5, 90_000]];
        let whole = Histogram::of(parts.iter().flatten().copied());
        let forward = parts.iter().fold(Histogram::default(), |acc, p| acc.merge(&Histogram::of(p.iter().copied())));
        let backward = parts.iter().rev().fold(Histogram::default(), |acc, p| acc.merge(&Histogram::of(p.iter().copied())));
        assert_eq!(forward, whole);
        assert_eq!(backward, whole);
        assert_eq!(whole.count(), parts.iter().map(Vec::len).sum::<usize>() as u64);
    }
}
