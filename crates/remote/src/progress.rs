//! Progress of one remote operation (an upload, a download): `Meter` counts its bytes
//! step by step and reports them through the store's progress callback, at each new
//! step and at most every `REPORT_EVERY` within one.

use std::time::{Duration, Instant};

use cairn_store::backup::{BackupProgress, ProgressFn};

/// Least time between two progress reports.
const REPORT_EVERY: Duration = Duration::from_millis(200);

/// Counts bytes of one remote operation and reports them now and then.
pub(crate) struct Meter {
    report: ProgressFn,
    done: u64,
    total: u64,
    message: String,
    last: Instant,
}

impl Meter {
    pub(crate) fn new(report: &ProgressFn) -> Meter {
        Meter {
            report: report.clone(),
            done: 0,
            total: 0,
            message: String::new(),
            last: Instant::now(),
        }
    }

    /// Begins a step of `bytes` more work: reports at once.
    pub(crate) fn step(&mut self, message: String, bytes: u64) {
        self.message = message;
        self.total = self.done + bytes;
        self.send();
    }

    pub(crate) fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        self.total = self.total.max(self.done);
        if self.last.elapsed() >= REPORT_EVERY {
            self.send();
        }
    }

    fn send(&mut self) {
        self.last = Instant::now();
        (self.report)(&BackupProgress {
            bytes_done: self.done,
            bytes_total: self.total,
            message: self.message.clone(),
        });
    }
}
