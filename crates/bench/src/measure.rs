//! Timing: how many operations a piece of work did and how long it took, for work of a
//! known size and for work repeated until a deadline; and percentiles of latencies.

use std::time::{Duration, Instant};

use anyhow::Result;

/// Operations done in a measured interval (or several, added up).
#[derive(Debug, Clone, Copy, Default)]
pub struct Run {
    pub ops: u64,
    pub elapsed: Duration,
}

impl Run {
    /// Adds the operations and the time of `other`: the rate over both intervals.
    pub fn add(&mut self, other: Run) {
        self.ops += other.ops;
        self.elapsed += other.elapsed;
    }

    /// Operations per second.
    pub fn per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

/// A measured read pass and the checksum of the value bytes it read.
#[derive(Debug, Clone, Copy)]
pub struct Reads {
    pub run: Run,
    pub checksum: u64,
}

/// Times `work`, which returns how many operations it did.
pub fn time_ops(work: impl FnOnce() -> Result<u64>) -> Result<Run> {
    let start = Instant::now();
    let ops = work()?;
    Ok(Run {
        ops,
        elapsed: start.elapsed(),
    })
}

/// Times `work`, which returns how many values it read and their checksum.
pub fn time_reads(work: impl FnOnce() -> Result<(u64, u64)>) -> Result<Reads> {
    let start = Instant::now();
    let (ops, checksum) = work()?;
    Ok(Reads {
        run: Run {
            ops,
            elapsed: start.elapsed(),
        },
        checksum,
    })
}

/// Calls `step` (which returns how many operations it did) until `duration` has passed.
pub fn repeat_for(duration: Duration, mut step: impl FnMut() -> Result<u64>) -> Result<Run> {
    let start = Instant::now();
    let mut ops = 0;
    while start.elapsed() < duration {
        ops += step()?;
    }
    Ok(Run {
        ops,
        elapsed: start.elapsed(),
    })
}

/// The `percent`-th percentile (1 to 100) of `sorted` (ascending) by nearest rank: the
/// smallest sample that at least `percent`% of the samples do not exceed; `None` when
/// there are no samples.
pub fn percentile(sorted: &[Duration], percent: u64) -> Option<Duration> {
    let rank = (percent * sorted.len() as u64).div_ceil(100);
    let index = usize::try_from(rank.max(1) - 1).ok()?;
    sorted.get(index).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(values: impl IntoIterator<Item = u64>) -> Vec<Duration> {
        values.into_iter().map(Duration::from_micros).collect()
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let samples = micros(1..=100);
        assert_eq!(percentile(&samples, 50), Some(Duration::from_micros(50)));
        assert_eq!(percentile(&samples, 99), Some(Duration::from_micros(99)));
        assert_eq!(percentile(&samples, 100), Some(Duration::from_micros(100)));
        assert_eq!(percentile(&samples, 1), Some(Duration::from_micros(1)));
    }

    #[test]
    fn percentiles_of_few_samples_round_up() {
        let samples = micros([10, 20, 30, 40]);
        assert_eq!(percentile(&samples, 50), Some(Duration::from_micros(20)));
        assert_eq!(percentile(&samples, 51), Some(Duration::from_micros(30)));
        assert_eq!(percentile(&samples, 99), Some(Duration::from_micros(40)));
        let one = micros([7]);
        assert_eq!(percentile(&one, 1), Some(Duration::from_micros(7)));
        assert_eq!(percentile(&one, 99), Some(Duration::from_micros(7)));
    }

    #[test]
    fn no_percentile_without_samples() {
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn added_runs_give_the_rate_over_both() {
        let mut run = Run::default();
        run.add(Run {
            ops: 300,
            elapsed: Duration::from_millis(100),
        });
        run.add(Run {
            ops: 100,
            elapsed: Duration::from_millis(300),
        });
        assert_eq!(run.per_second(), 1000.0);
    }

    #[test]
    fn rate_is_ops_over_seconds() {
        let run = Run {
            ops: 500,
            elapsed: Duration::from_millis(250),
        };
        assert_eq!(run.per_second(), 2000.0);
    }
}
