//! The arithmetic of a `bench failover` run, pure: where each message lies
//! in the steady stream, and from the times of acknowledgements and
//! deliveries, the samples of each second and the longest stretches
//! without any. Times are µs since the load started.

use std::ops::Range;

const SECOND_US: i64 = 1_000_000;

/// An acknowledgement or a delivery: when it happened, and how long after
/// its message was offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub at_us: i64,
    pub latency_us: i64,
}

/// A stretch of time without a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quiet {
    pub from_us: i64,
    pub to_us: i64,
}

impl Quiet {
    pub fn length_us(&self) -> i64 {
        self.to_us - self.from_us
    }
}

/// When message `n` of a stream of `rate` messages a second is offered
/// (rounded up to the µs, so that [`offered_by`] counts it from then on).
pub fn offered_us(n: u64, rate: u32) -> i64 {
    let at = (u128::from(n) * SECOND_US as u128).div_ceil(u128::from(rate));
    i64::try_from(at).unwrap_or(i64::MAX)
}

/// How many messages of the stream are offered at or before `at_us`.
pub fn offered_by(at_us: i64, rate: u32) -> u64 {
    let elapsed = u128::try_from(at_us).unwrap_or(0);
    let due = elapsed * u128::from(rate) / SECOND_US as u128 + 1;
    u64::try_from(due).unwrap_or(u64::MAX)
}

/// The latencies of the samples of each second [k, k + 1), for every
/// second from 0 to the last sample's, and at least `seconds` of them.
pub fn per_second(samples: &[Sample], seconds: u64) -> Vec<Vec<i64>> {
    let second_of = |sample: &Sample| usize::try_from(sample.at_us / SECOND_US).unwrap_or(0);
    let last = samples.iter().map(|s| second_of(s) + 1).max().unwrap_or(0);
    let mut rows = vec![Vec::new(); last.max(usize::try_from(seconds).unwrap_or(0))];
    for sample in samples {
        rows[second_of(sample)].push(sample.latency_us);
    }
    rows
}

/// The longest stretch without any of the sorted `times` that overlaps
/// `window`, counting from the load's start (0) to `end_us` (or the last
/// time, if later): the stretch before the first time and after the last
/// count too. Of stretches equally long, the first.
pub fn longest_quiet(times: &[i64], end_us: i64, window: Range<i64>) -> Quiet {
    let last = times.last().copied().unwrap_or(0).max(end_us);
    let bounds: Vec<i64> = std::iter::once(0)
        .chain(times.iter().copied())
        .chain(std::iter::once(last))
        .collect();
    bounds
        .windows(2)
        .map(|pair| Quiet {
            from_us: pair[0],
            to_us: pair[1],
        })
        .filter(|quiet| quiet.to_us > window.start && quiet.from_us < window.end)
        // The first of the longest: the one a fault began.
        .reduce(|longest, quiet| {
            if quiet.length_us() > longest.length_us() {
                quiet
            } else {
                longest
            }
        })
        .unwrap_or(Quiet {
            from_us: window.start,
            to_us: window.start,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_offers_rate_messages_a_second() {
        assert_eq!(offered_us(0, 500), 0);
        assert_eq!(offered_us(1, 500), 2_000);
        assert_eq!(offered_us(500, 500), SECOND_US);
        assert_eq!(offered_us(1, 3), 333_334);
        assert_eq!(offered_by(0, 500), 1);
        assert_eq!(offered_by(1_999, 500), 1);
        assert_eq!(offered_by(2_000, 500), 2);
        assert_eq!(offered_by(SECOND_US, 500), 501);
        for n in [0, 1, 7, 499, 12_345] {
            assert_eq!(offered_by(offered_us(n, 3), 3), n + 1, "{n}");
        }
    }

    #[test]
    fn samples_fall_in_the_second_they_happened() {
        let sample = |at_us, latency_us| Sample { at_us, latency_us };
        let samples = [sample(10, 1), sample(999_999, 2), sample(2_500_000, 3)];
        assert_eq!(per_second(&samples, 2), [vec![1, 2], vec![], vec![3]]);
        assert_eq!(per_second(&samples[..1], 3), [vec![1], vec![], vec![]]);
        assert!(per_second(&[], 0).is_empty());
    }

    #[test]
    fn the_longest_quiet_stretch_counts_from_the_start_to_the_end() {
        let times = [100, 200, 900, 1000];
        let all = 0..i64::MAX;
        let quiet = |from_us, to_us| Quiet { from_us, to_us };
        assert_eq!(longest_quiet(&times, 1000, all.clone()), quiet(200, 900));
        assert_eq!(longest_quiet(&times, 5000, all.clone()), quiet(1000, 5000));
        assert_eq!(longest_quiet(&[], 300, all), quiet(0, 300));
    }

    #[test]
    fn a_quiet_stretch_counts_for_every_window_it_overlaps() {
        let times = [100, 200, 900, 1000, 1100];
        let quiet = |from_us, to_us| Quiet { from_us, to_us };
        // The stretch 200..900 began before the window.
        assert_eq!(longest_quiet(&times, 1100, 500..1050), quiet(200, 900));
        assert_eq!(longest_quiet(&times, 1100, 950..2000), quiet(900, 1000));
        assert_eq!(longest_quiet(&times, 1100, 0..150), quiet(0, 100));
        assert_eq!(longest_quiet(&times, 1100, 5000..6000), quiet(5000, 5000));
    }
}
