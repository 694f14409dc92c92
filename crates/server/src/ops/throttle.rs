//! Slows password guessing. Failed logins are counted per user and per address over a
//! window; from the sixth failure within it on, every attempt for that user or from that
//! address first waits a delay that doubles with each further failure, up to a cap.
//! Nothing locks a user out: once the delay has passed, the right password gets in, and
//! a success clears the counts of its user and address. The counts live in memory (a
//! restart clears them) and are bounded in number.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::storage::now_ms;

/// Failures allowed within the window before attempts are slowed.
pub const FREE_FAILURES: u32 = 5;
/// How long failures are remembered after the last one.
const WINDOW: Duration = Duration::from_secs(15 * 60);
/// The delay of the first slowed attempt; each further failure doubles it...
const FIRST_DELAY: Duration = Duration::from_millis(500);
/// ... up to this.
const MAX_DELAY: Duration = Duration::from_secs(30);
/// Most users and addresses tracked at once.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    User(String),
    Address(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    last_ms: u64,
}

/// What is known of a user's failed logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FailedLogins {
    pub count: u32,
    pub last_ms: Option<u64>,
    /// How long the user's next attempt will wait.
    pub delay: Duration,
}

/// The failed logins of every user and address.
#[derive(Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<Subject, Failures>>,
}

fn subjects(user: &str, address: Option<IpAddr>) -> impl Iterator<Item = Subject> {
    std::iter::once(Subject::User(user.to_string())).chain(address.map(Subject::Address))
}

/// The delay owed after `count` failures within the window.
fn delay_after(count: u32) -> Duration {
    match count.checked_sub(FREE_FAILURES) {
        None | Some(0) => Duration::ZERO,
        Some(excess) => FIRST_DELAY
            .saturating_mul(1 << (excess - 1).min(16))
            .min(MAX_DELAY),
    }
}

impl LoginThrottle {
    /// How long an attempt for `user` from `address` must wait first.
    pub fn delay(&self, user: &str, address: Option<IpAddr>) -> Duration {
        let failures = self.failures.lock().expect("throttle lock");
        subjects(user, address)
            .filter_map(|s| failures.get(&s))
            .filter(|f| f.last.elapsed() < WINDOW)
            .map(|f| delay_after(f.count))
            .max()
            .unwrap_or_default()
    }

    /// Counts a failed attempt; logs when it starts slowing the user or address down.
    pub fn failed(&self, user: &str, address: Option<IpAddr>) {
        let mut failures = self.failures.lock().expect("throttle lock");
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, f| f.last.elapsed() < WINDOW);
            if failures.len() >= MAX_TRACKED {
                failures.clear();
            }
        }
        for subject in subjects(user, address) {
            let entry = failures.entry(subject.clone()).or_insert(Failures {
                count: 0,
                last: Instant::now(),
                last_ms: 0,
            });
            if entry.last.elapsed() >= WINDOW {
                entry.count = 0;
            }
            entry.count = entry.count.saturating_add(1);
            entry.last = Instant::now();
            entry.last_ms = now_ms();
            if entry.count == FREE_FAILURES + 1 {
                tracing::warn!(
                    ?subject,
                    failures = entry.count,
                    "logins slowed down after repeated failures"
                );
            }
        }
    }

    /// A success: the user's and the address's failures are forgotten.
    pub fn succeeded(&self, user: &str, address: Option<IpAddr>) {
        let mut failures = self.failures.lock().expect("throttle lock");
        for subject in subjects(user, address) {
            failures.remove(&subject);
        }
    }

    /// What is known of `user`'s failed logins within the window.
    pub fn of_user(&self, user: &str) -> FailedLogins {
        let failures = self.failures.lock().expect("throttle lock");
        match failures.get(&Subject::User(user.to_string())) {
            Some(f) if f.last.elapsed() < WINDOW => FailedLogins {
                count: f.count,
                last_ms: Some(f.last_ms),
                delay: delay_after(f.count),
            },
            _ => FailedLogins::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_start_after_five_failures_double_and_stop_at_the_cap() {
        let delays: Vec<Duration> = (0..12).map(delay_after).collect();
        let expected: Vec<Duration> = [0, 0, 0, 0, 0, 0, 500, 1000, 2000, 4000, 8000, 16000]
            .into_iter()
            .map(Duration::from_millis)
            .collect();
        assert_eq!(delays, expected);
        assert_eq!(delay_after(40), MAX_DELAY);
        assert_eq!(delay_after(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn users_and_addresses_are_slowed_and_a_success_clears_them() {
        let throttle = LoginThrottle::default();
        let address: IpAddr = "10.0.0.7".parse().unwrap();
        for _ in 0..=FREE_FAILURES {
            throttle.failed("alice", Some(address));
        }
        assert_eq!(throttle.delay("alice", None), FIRST_DELAY);
        // The address is slowed for another user too; another address is not.
        assert_eq!(throttle.delay("bob", Some(address)), FIRST_DELAY);
        assert_eq!(
            throttle.delay("bob", "10.0.0.8".parse().ok()),
            Duration::ZERO
        );
        assert_eq!(throttle.of_user("alice").count, FREE_FAILURES + 1);
        throttle.succeeded("alice", Some(address));
        assert_eq!(throttle.delay("alice", Some(address)), Duration::ZERO);
        assert_eq!(throttle.of_user("alice"), FailedLogins::default());
    }
}
