//! When and how long to wait before trying a request again: a bounded budget per request
//! (at most `MAX_RETRIES` retries, none once `RETRY_TIMEOUT` has passed since the first
//! try) and exponential backoff with decorrelated jitter (from `FIRST_BACKOFF`, at most
//! `MAX_BACKOFF`), as AWS advises. Which failures are worth a retry is `http`'s call.

use std::time::{Duration, Instant};

/// Retries after the first try.
const MAX_RETRIES: u32 = 3;
/// No retry starts later than this after the first try.
const RETRY_TIMEOUT: Duration = Duration::from_secs(60);
/// The wait before the first retry.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(15);
/// How much longer each wait may be than the one before.
const BACKOFF_BASE: f64 = 2.0;

/// The retries one request has left.
#[derive(Debug)]
pub(crate) struct Retries {
    started: Instant,
    done: u32,
    next_wait: Duration,
}

impl Retries {
    pub(crate) fn new() -> Retries {
        Retries {
            started: Instant::now(),
            done: 0,
            next_wait: FIRST_BACKOFF,
        }
    }

    /// The wait before the next retry, or `None` when the budget is spent.
    pub(crate) fn next_wait(&mut self) -> Option<Duration> {
        if self.done >= MAX_RETRIES || self.started.elapsed() > RETRY_TIMEOUT {
            return None;
        }
        self.done += 1;
        let wait = self.next_wait;
        let high = wait.as_secs_f64() * BACKOFF_BASE;
        let low = FIRST_BACKOFF.as_secs_f64();
        let next = low + (high - low) * random_fraction();
        self.next_wait = Duration::from_secs_f64(next).min(MAX_BACKOFF);
        Some(wait)
    }

    /// Retries taken so far.
    pub(crate) fn done(&self) -> u32 {
        self.done
    }
}

/// A number in [0, 1); 0.5 if the system has no randomness to give.
fn random_fraction() -> f64 {
    let mut bytes = [0u8; 4];
    match getrandom::fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_few_and_waits_grow_within_bounds() {
        let mut retries = Retries::new();
        let waits: Vec<Duration> = std::iter::from_fn(|| retries.next_wait()).collect();
        assert_eq!(waits.len(), MAX_RETRIES as usize);
        assert_eq!(retries.done(), MAX_RETRIES);
        assert_eq!(waits[0], FIRST_BACKOFF, "the first wait is the shortest");
        for pair in waits.windows(2) {
            assert!(
                pair[1] >= FIRST_BACKOFF && pair[1] <= pair[0] * 2,
                "{waits:?}"
            );
        }

        let mut late = Retries::new();
        late.started -= RETRY_TIMEOUT + Duration::from_secs(1);
        assert_eq!(late.next_wait(), None, "none once the time is up");
    }
}
