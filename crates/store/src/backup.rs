//! Backups of a working directory. `create_backup` copies the environment with LMDB's
//! compacting copy (one read transaction: consistent, and writers never wait) and the
//! directory's other files beside it (`cairn.toml`, `certs/`; never `backups/`, `tmp/`,
//! `sock` or `service.lock`), writes `MANIFEST.json` (see FORMAT.md), fsyncs, verifies
//! the copy, and only then renames `DST.partial` to `DST`. A backup directory is itself a
//! working directory. `verify_backup` re-checks any backup; `restore_backup` (offline) or
//! `stage_restore` + `swap_in` (the service, with its environment closed) restore one.
//! Every long call reports progress and stops soon after a cancel, leaving nothing.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::backup_fs::utc_stamp;
pub use crate::backup_manifest::{
    read_manifest, DatabaseEntry, FileEntry, Manifest, MANIFEST_FILE, MANIFEST_VERSION,
};
pub use crate::backup_restore::{
    restore_backup, restore_backup_with, stage_restore, stage_restore_with, swap_in,
    RestoreSummary, STAGING_SUFFIX,
};
pub use crate::backup_verify::{verify_backup, verify_backup_with, Problem, VerifyReport};

use crate::backup_env::{content_bytes, copy_env, copy_facts, estimate_env_bytes};
use crate::backup_fs::{
    absolute, copy_file, create_dir, create_parents, free_bytes, parent, rename_new, sibling,
    sync_dir, walk, ClaimedDir,
};
use crate::backup_manifest::write_manifest;
use crate::backup_verify::verify_dir;
use crate::error::{Result, StoreError};
use crate::lock::LOCK_FILE;
use crate::store::{now_ms, Store, STORE_DIR};

/// Entries at the top of a working directory that a backup never holds: the service's
/// backups, its scratch, its socket and its lock.
pub const RUNTIME_ENTRIES: [&str; 4] = ["backups", "tmp", "sock", LOCK_FILE];

/// The environment's file inside a backup (and a working directory).
pub const ENV_FILE: &str = "store/data.mdb";

/// Suffix of the directory a backup is written in before it is renamed into place.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// True for a relative path that no backup holds: a runtime entry or something under
/// one, or LMDB's lock file.
pub(crate) fn never_copied(rel: &str) -> bool {
    let top = rel.split('/').next().unwrap_or(rel);
    RUNTIME_ENTRIES.contains(&top) || rel == "store/lock.mdb"
}

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

/// What a finished backup is.
#[derive(Debug, Clone)]
pub struct BackupSummary {
    /// The backup directory (DST).
    pub path: PathBuf,
    pub manifest: Manifest,
    /// Bytes of its files.
    pub bytes: u64,
    pub files: usize,
    pub databases: usize,
    pub elapsed: Duration,
    /// Always true: a backup that does not verify is not renamed into place.
    pub verified: bool,
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

/// Bytes a backup of `source` (working directory `src_dir`) needs: the pages in use of
/// its environment plus the other files that are copied.
pub fn estimate_backup_bytes(source: &Store, src_dir: &Path) -> Result<u64> {
    let files: u64 = walk(src_dir, &|rel| skipped_in_source(rel, None))?
        .iter()
        .map(|f| f.size)
        .sum();
    Ok(estimate_env_bytes(source)? + files)
}

/// `StorageFull` when the file system of the existing directory `target` has fewer than
/// `needed` bytes available, saying how many are needed and available.
pub fn check_free_space(target: &Path, needed: u64, what: &str) -> Result<()> {
    let available = free_bytes(target)?;
    if available >= needed {
        return Ok(());
    }
    Err(StoreError::StorageFull {
        reason: format!(
            "{what} needs {} in {} but only {} are available there: free some space or choose another place",
            human_bytes(needed),
            target.display(),
            human_bytes(available)
        ),
    })
}

/// `1234567 bytes (1.2 MiB)`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = "";
    for next in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    if unit.is_empty() {
        format!("{bytes} bytes")
    } else {
        format!("{bytes} bytes ({value:.1} {unit})")
    }
}

/// What of a working directory is not copied as a plain file: the environment (copied
/// by LMDB), an old manifest, what `never_copied` names, and the backup being written
/// when it lies inside the source.
fn skipped_in_source(rel: &str, partial: Option<&str>) -> bool {
    let top = rel.split('/').next().unwrap_or(rel);
    top == STORE_DIR || rel == MANIFEST_FILE || never_copied(rel) || Some(rel) == partial
}

/// Makes a verified backup of `source`, the open store of the working directory
/// `src_dir`, in the new directory `dst` (see the module doc). `dst` must not exist and
/// its parent must. Fails before writing anything with `StorageFull` when the target
/// lacks room, and removes everything it wrote on any failure or a cancel.
pub fn create_backup(
    source: &Store,
    src_dir: &Path,
    dst: &Path,
    control: &BackupControl,
) -> Result<BackupSummary> {
    let src_dir = absolute(src_dir)?;
    let dst = absolute(dst)?;
    refuse_existing(&dst)?;
    let target = parent(&dst);
    if !target.is_dir() {
        return Err(StoreError::InvalidArgument {
            reason: format!("{} does not exist: create it first", target.display()),
        });
    }
    check_free_space(
        target,
        estimate_backup_bytes(source, &src_dir)?,
        "the backup",
    )?;
    write_backup(source, &src_dir, &dst, control)
}

fn refuse_existing(dst: &Path) -> Result<()> {
    if std::fs::symlink_metadata(dst).is_ok() {
        return Err(StoreError::InvalidArgument {
            reason: format!(
                "{} already exists: name a new directory for the backup",
                dst.display()
            ),
        });
    }
    Ok(())
}

/// `create_backup` after its checks: writes, verifies and renames into place.
pub(crate) fn write_backup(
    source: &Store,
    src_dir: &Path,
    dst: &Path,
    control: &BackupControl,
) -> Result<BackupSummary> {
    let started = Instant::now();
    let mut tracker = Tracker::new(control);
    let estimate = estimate_env_bytes(source)?;
    // Copying, re-reading every file, and checking every database.
    tracker.need(2 * estimate + content_bytes(source)?);
    let partial = ClaimedDir::claim(&sibling(dst, PARTIAL_SUFFIX))?;
    let written = fill(source, src_dir, partial.path(), &mut tracker).and_then(|manifest| {
        refuse_existing(dst)?;
        rename_new(partial.path(), dst)
            .map_err(|e| StoreError::io(format!("renaming into {}", dst.display()), e))?;
        Ok(manifest)
    });
    let manifest = match written {
        Ok(manifest) => manifest,
        Err(error) => {
            partial.remove();
            return Err(error);
        }
    };
    drop(partial);
    sync_dir(parent(dst))?;
    tracker.finish("done");
    tracing::info!(dst = %dst.display(), bytes = manifest.bytes(), "backup written and verified");
    Ok(BackupSummary {
        path: dst.to_path_buf(),
        bytes: manifest.bytes(),
        files: manifest.files.len(),
        databases: manifest.databases.len(),
        elapsed: started.elapsed(),
        verified: true,
        manifest,
    })
}

/// Writes the whole backup into `partial` and verifies it; returns its manifest.
fn fill(source: &Store, src_dir: &Path, partial: &Path, tracker: &mut Tracker) -> Result<Manifest> {
    let created_ms = now_ms();
    let mut files = Vec::new();
    let mut dirs = vec![partial.to_path_buf()];

    tracker.phase("copying the environment")?;
    let store_dir = partial.join(STORE_DIR);
    create_dir(&store_dir, 0o700)?;
    dirs.push(store_dir);
    let (size, sha256) = copy_env(source, &partial.join(ENV_FILE), tracker)?;
    files.push(FileEntry {
        path: ENV_FILE.to_string(),
        size,
        sha256,
        mode: 0o600,
    });

    tracker.phase("copying files")?;
    let partial_rel = partial
        .strip_prefix(src_dir)
        .ok()
        .and_then(Path::to_str)
        .map(str::to_string);
    for file in walk(src_dir, &|rel| {
        skipped_in_source(rel, partial_rel.as_deref())
    })? {
        create_parents(src_dir, partial, &file.rel, &mut dirs)?;
        let (size, sha256) = copy_file(&file.path, &partial.join(&file.rel), file.mode, tracker)?;
        files.push(FileEntry {
            path: file.rel,
            size,
            sha256,
            mode: file.mode,
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));

    let (meta, databases) = copy_facts(partial)?;
    let mut manifest = Manifest {
        manifest_version: MANIFEST_VERSION,
        format_version: meta.format_version,
        service_id: meta.service_id,
        created_ms,
        tool: tracker.control.tool.clone(),
        source: src_dir.display().to_string(),
        files,
        databases,
        manifest_sha256: String::new(),
    };
    write_manifest(partial, &mut manifest)?;
    for dir in dirs.iter().rev() {
        sync_dir(dir)?;
    }

    let report = verify_dir(partial, tracker)?;
    if !report.is_ok() {
        return Err(StoreError::BackupInvalid {
            dir: partial.to_path_buf(),
            problems: report.problems.iter().map(Problem::to_string).collect(),
        });
    }
    Ok(manifest)
}
