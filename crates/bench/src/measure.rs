//! Timing: how many operations a piece of work did and how long it took, for work of a
//! known size and for work repeated until a deadline.

use std::time::{Duration, Instant};

use anyhow::Result;

/// Operations done in a measured interval.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub ops: u64,
    pub elapsed: Duration,
}

impl Run {
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
