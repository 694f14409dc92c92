//! How a caller steers a backup, verification or restore (`BackupControl`: the name
//! written into manifests, a cancel flag, a progress callback) and the `Tracker` every
//! long step counts its work with: it reports progress now and then and turns a cancel
//! into `StoreError::Canceled`.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Result, StoreError};

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(&BackupProgress) + Send + Sync>;

/// Where a backup, verification or restore is, reported now and then (a few times a
/// second at most, and at each new step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupProgress {
    /// Work done, in bytes: copied, then read back to verify.
    pub bytes_done: u64,
    /// Work expected in all (an estimate that may grow while it runs).
    pub bytes_total: u64,
    /// The current step, e.g. "copying the environment".
    pub message: String,
}

/// How a caller steers a backup, verification or restore: the name written into the
/// manifest, a cancel flag, and a progress callback.
#[derive(Clone)]
pub struct BackupControl {
    /// What the manifest names as the maker, e.g. `cairn-backup 0.1.0`.
    pub tool: String,
    /// Set it to stop the work soon (within about 100 ms); the call then removes what
    /// it wrote and returns `StoreError::Canceled`.
    pub cancel: Arc<AtomicBool>,
    pub progress: Option<ProgressFn>,
}

impl BackupControl {
    /// A control whose manifests name `tool`, not canceled, without progress reports.
    pub fn new(tool: impl Into<String>) -> BackupControl {
        BackupControl {
            tool: tool.into(),
            cancel: Arc::new(AtomicBool::new(false)),
            progress: None,
        }
    }

    /// The same control, calling `report` with progress.
    pub fn with_progress(
        mut self,
        report: impl Fn(&BackupProgress) + Send + Sync + 'static,
    ) -> BackupControl {
        self.progress = Some(Arc::new(report));
        self
    }

    /// Asks the work to stop.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    pub fn is_canceled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }
}

impl Default for BackupControl {
    fn default() -> BackupControl {
        BackupControl::new(format!("cairn-store {}", env!("CARGO_PKG_VERSION")))
    }
}

impl fmt::Debug for BackupControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackupControl")
            .field("tool", &self.tool)
            .field("canceled", &self.is_canceled())
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// Counts work, reports progress now and then, and turns a cancel into an error.
pub(crate) struct Tracker<'c> {
    control: &'c BackupControl,
    done: u64,
    total: u64,
    message: String,
    last_report: Option<Instant>,
}

/// Least time between two progress reports within a step.
const REPORT_EVERY: Duration = Duration::from_millis(200);

impl<'c> Tracker<'c> {
    pub(crate) fn new(control: &'c BackupControl) -> Tracker<'c> {
        Tracker {
            control,
            done: 0,
            total: 0,
            message: String::new(),
            last_report: None,
        }
    }

    /// What the manifest names as the maker (`BackupControl::tool`).
    pub(crate) fn tool(&self) -> &str {
        &self.control.tool
    }

    /// The control this tracker reports to.
    pub(crate) fn control(&self) -> &BackupControl {
        self.control
    }

    /// Makes sure at least `bytes` of work are expected beyond what is done: a step
    /// that a caller already counted in (a backup counts its verification in up front)
    /// does not grow the total again.
    pub(crate) fn need(&mut self, bytes: u64) {
        self.total = self.total.max(self.done + bytes);
    }

    /// `Canceled` once the cancel flag is set.
    pub(crate) fn check(&self) -> Result<()> {
        if self.control.is_canceled() {
            Err(StoreError::Canceled)
        } else {
            Ok(())
        }
    }

    /// Begins a step: reports it at once.
    pub(crate) fn phase(&mut self, message: &str) -> Result<()> {
        self.check()?;
        self.message = message.to_string();
        self.report();
        Ok(())
    }

    /// Counts `bytes` of work done.
    pub(crate) fn advance(&mut self, bytes: u64) -> Result<()> {
        self.check()?;
        self.done += bytes;
        self.total = self.total.max(self.done);
        if self
            .last_report
            .is_none_or(|last| last.elapsed() >= REPORT_EVERY)
        {
            self.report();
        }
        Ok(())
    }

    /// The work is done: a last report at 100%.
    pub(crate) fn finish(&mut self, message: &str) {
        self.done = self.total;
        self.message = message.to_string();
        self.report();
    }

    fn report(&mut self) {
        self.last_report = Some(Instant::now());
        if let Some(progress) = &self.control.progress {
            progress(&BackupProgress {
                bytes_done: self.done,
                bytes_total: self.total,
                message: self.message.clone(),
            });
        }
    }
}
