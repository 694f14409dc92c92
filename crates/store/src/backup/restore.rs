//! Restoring a backup into a working directory without ever leaving a half-restored one.
//! `stage_restore` verifies the backup, then copies it into `DIR.restoring` beside the
//! directory (checking every file's checksum again as it copies) and fsyncs it.
//! `swap_in` moves the directory's runtime entries (`backups/`, `tmp/`, `sock`,
//! `service.lock`, which no backup holds) into the staged copy, swaps the two in one
//! step (`renameat2(RENAME_EXCHANGE)`, or two renames where the file system cannot),
//! keeps the replaced directory as `DIR.replaced-TIMESTAMP` or removes it, and fsyncs
//! the parent. `restore_backup` is the offline whole: it takes the directory's lock
//! first, so it refuses while a service runs there, and draws a new change-log epoch in
//! the staged copy before the swap.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::create::check_free_space;
use super::fs::{
    absolute, copy_file, create_parents, exchange, parent, rename_new, sibling, sync_dir,
    utc_stamp, ClaimedDir,
};
use super::manifest::{read_manifest, Manifest};
use super::progress::{BackupControl, Tracker};
use super::verify::verify_held;
use super::RUNTIME_ENTRIES;
use crate::error::{Result, StoreError};
use crate::format::FORMAT_VERSION;
use crate::lock::DirLock;
use crate::store::{now_ms, Store, StoreOptions, STORE_DIR};
use crate::writer::Write;

/// Suffix of the directory a restore is staged in, beside the restored directory.
pub const STAGING_SUFFIX: &str = ".restoring";

/// What a finished restore did.
#[derive(Debug, Clone)]
pub struct RestoreSummary {
    /// The restored working directory.
    pub dir: PathBuf,
    /// Where the directory it replaced was kept, if it was.
    pub replaced: Option<PathBuf>,
    /// Bytes of the restored files.
    pub bytes: u64,
    pub files: usize,
    pub databases: usize,
    pub elapsed: Duration,
    /// The manifest of the restored backup.
    pub manifest: Manifest,
}

/// The directory `dir` as restores name it: absolute, with symbolic links resolved
/// when it exists (the data goes where the link points).
fn resolve(dir: &Path) -> Result<PathBuf> {
    match fs::canonicalize(dir) {
        Ok(path) => Ok(path),
        Err(e) if e.kind() == ErrorKind::NotFound => absolute(dir),
        Err(e) => Err(StoreError::io(format!("resolving {}", dir.display()), e)),
    }
}

/// Verifies `backup`, then writes it into a new directory beside `dir` (see the module
/// doc) and returns that directory. Nothing of `dir` is touched. The caller holds
/// `dir`'s lock (the service, or `restore_backup`).
pub fn stage_restore(backup: &Path, dir: &Path) -> Result<PathBuf> {
    stage_restore_with(backup, dir, &BackupControl::default())
}

/// `stage_restore` with progress reports and a cancel flag.
pub fn stage_restore_with(backup: &Path, dir: &Path, control: &BackupControl) -> Result<PathBuf> {
    let mut tracker = Tracker::new(control);
    let (staged, _) = stage(backup, &resolve(dir)?, &mut tracker)?;
    tracker.finish("staged");
    Ok(staged)
}

fn stage(backup: &Path, dir: &Path, tracker: &mut Tracker) -> Result<(PathBuf, Manifest)> {
    // A backup of another format is refused before anything is read or written, with
    // what to do (migrate it first).
    if let Ok(manifest) = read_manifest(backup) {
        if manifest.format_version != FORMAT_VERSION {
            return Err(StoreError::FormatMismatch {
                dir: backup.to_path_buf(),
                found: manifest.format_version,
                expected: FORMAT_VERSION,
            });
        }
    }
    let manifest = verify_held(backup, tracker)?.into_manifest()?;
    let target = parent(dir);
    fs::create_dir_all(target)
        .map_err(|e| StoreError::io(format!("creating {}", target.display()), e))?;
    check_free_space(target, manifest.bytes(), "the restore")?;
    let staged = ClaimedDir::claim(&sibling(dir, STAGING_SUFFIX))?;
    match fill(backup, staged.path(), &manifest, tracker) {
        Ok(()) => Ok((staged.path().to_path_buf(), manifest)),
        Err(error) => {
            staged.remove();
            Err(error)
        }
    }
}

/// Copies every file of the manifest from `backup` into `staged`, checking each one.
fn fill(backup: &Path, staged: &Path, manifest: &Manifest, tracker: &mut Tracker) -> Result<()> {
    tracker.need(manifest.bytes());
    tracker.phase("copying the backup")?;
    let mut dirs = vec![staged.to_path_buf()];
    for entry in &manifest.files {
        create_parents(backup, staged, &entry.path, &mut dirs)?;
        let (size, digest) = copy_file(
            &backup.join(&entry.path),
            &staged.join(&entry.path),
            entry.mode,
            manifest.checksum,
            tracker,
        )?;
        if size != entry.size || digest != entry.checksum {
            return Err(StoreError::BackupInvalid {
                dir: backup.to_path_buf(),
                problems: vec![format!(
                    "{}: changed while it was being restored",
                    entry.path
                )],
            });
        }
    }
    for dir in dirs.iter().rev() {
        sync_dir(dir)?;
    }
    sync_dir(parent(staged))
}

/// Puts the staged directory `staged` in the place of `dir` in one step (see the module
/// doc). Returns where the replaced directory was kept: `None` when there was none, or
/// when `keep_replaced` is false and it was removed. The caller holds `dir`'s lock, and
/// a service has closed its environment first; the lock file moves with the runtime
/// entries, so the lock stays held on the new directory.
pub fn swap_in(staged: &Path, dir: &Path, keep_replaced: bool) -> Result<Option<PathBuf>> {
    let dir = resolve(dir)?;
    let parent_dir = parent(&dir);
    if fs::symlink_metadata(&dir).is_err() {
        rename_new(staged, &dir)
            .map_err(|e| StoreError::io(format!("renaming into {}", dir.display()), e))?;
        sync_dir(parent_dir)?;
        return Ok(None);
    }
    let (moved, stayed) = carry_runtime_entries(&dir, staged);
    let replaced = free_name(&dir);
    let swapped = match exchange(staged, &dir) {
        // `staged` now names the old directory.
        Ok(true) => rename_new(staged, &replaced).map_err(|e| (e, true)),
        Ok(false) => rename_new(&dir, &replaced)
            .map_err(|e| (e, false))
            .and_then(|()| {
                rename_new(staged, &dir).map_err(|e| {
                    let _ = rename_new(&replaced, &dir);
                    (e, false)
                })
            }),
        Err(e) => Err((e, false)),
    };
    let replaced = match swapped {
        Ok(()) => replaced,
        // Restored; only the old directory kept the staging name.
        Err((error, true)) => {
            tracing::warn!(%error, kept = %staged.display(), "the replaced directory keeps the staging name");
            staged.to_path_buf()
        }
        Err((error, false)) => {
            for name in moved {
                let _ = rename_new(&staged.join(name), &dir.join(name));
            }
            return Err(StoreError::io(
                format!("swapping {} into {}", staged.display(), dir.display()),
                error,
            ));
        }
    };
    sync_dir(parent_dir)?;
    if keep_replaced || !stayed.is_empty() {
        if !stayed.is_empty() {
            tracing::warn!(kept = %replaced.display(), entries = ?stayed, "entries that could not move stay in the replaced directory, which is kept");
        }
        return Ok(Some(replaced));
    }
    match fs::remove_dir_all(&replaced) {
        Ok(()) => Ok(None),
        Err(error) => {
            tracing::warn!(%error, kept = %replaced.display(), "cannot remove the replaced directory");
            Ok(Some(replaced))
        }
    }
}

/// Moves `dir`'s runtime entries into `staged`; returns those moved and those that
/// could not move (a mount point, say).
fn carry_runtime_entries(dir: &Path, staged: &Path) -> (Vec<&'static str>, Vec<&'static str>) {
    let (mut moved, mut stayed) = (Vec::new(), Vec::new());
    for name in RUNTIME_ENTRIES {
        if fs::symlink_metadata(dir.join(name)).is_err() {
            continue;
        }
        match rename_new(&dir.join(name), &staged.join(name)) {
            Ok(()) => moved.push(name),
            Err(error) => {
                tracing::warn!(%error, entry = name, "cannot move into the restored directory");
                stayed.push(name);
            }
        }
    }
    (moved, stayed)
}

/// `DIR.replaced-TIMESTAMP`, with `-2`, `-3`, ... when that is taken.
fn free_name(dir: &Path) -> PathBuf {
    let base = format!(".replaced-{}", utc_stamp(now_ms()));
    let mut candidate = sibling(dir, &base);
    let mut n = 2;
    while fs::symlink_metadata(&candidate).is_ok() {
        candidate = sibling(dir, &format!("{base}-{n}"));
        n += 1;
    }
    candidate
}

/// True when `dir` holds a store, or nothing at all.
fn replaceable(dir: &Path) -> Result<bool> {
    if dir.join(STORE_DIR).join("data.mdb").is_file() {
        return Ok(true);
    }
    let mut entries =
        fs::read_dir(dir).map_err(|e| StoreError::io(format!("listing {}", dir.display()), e))?;
    Ok(entries.next().is_none())
}

/// Restores `backup` into the working directory `dir` offline: takes `dir`'s lock
/// (`DirectoryInUse` while a service holds it), stages and swaps in (see the module
/// doc). A missing or damaged backup fails before `dir` is touched. `dir` may be
/// missing or empty; a non-empty directory that holds no store is refused.
pub fn restore_backup(backup: &Path, dir: &Path, keep_replaced: bool) -> Result<RestoreSummary> {
    restore_backup_with(backup, dir, keep_replaced, &BackupControl::default())
}

/// `restore_backup` with progress reports and a cancel flag.
pub fn restore_backup_with(
    backup: &Path,
    dir: &Path,
    keep_replaced: bool,
    control: &BackupControl,
) -> Result<RestoreSummary> {
    let started = Instant::now();
    let dir = resolve(dir)?;
    let _lock = match fs::metadata(&dir) {
        Ok(meta) if !meta.is_dir() => {
            return Err(StoreError::InvalidArgument {
                reason: format!("{} is not a directory", dir.display()),
            })
        }
        Ok(_) if !replaceable(&dir)? => {
            return Err(StoreError::InvalidArgument {
                reason: format!(
                    "{} holds files but no cairn store: refusing to replace it; restore into a new or empty directory",
                    dir.display()
                ),
            })
        }
        Ok(_) => Some(DirLock::acquire(&dir)?),
        Err(_) => None,
    };
    let mut tracker = Tracker::new(control);
    let (staged, manifest) = stage(backup, &dir, &mut tracker)?;
    // As a service's restore does: a new change-log epoch, so that followers' cursors
    // into the replaced data are refused rather than taken for cursors into this one.
    Store::open(&staged, StoreOptions::default())
        .and_then(|store| store.write(Write::NewEpoch))
        .inspect_err(|_| {
            let _ = fs::remove_dir_all(&staged);
        })?;
    let replaced = swap_in(&staged, &dir, keep_replaced).inspect_err(|_| {
        if dir.exists() {
            let _ = fs::remove_dir_all(&staged);
        }
    })?;
    tracker.finish("restored");
    tracing::info!(dir = %dir.display(), backup = %backup.display(), "backup restored");
    Ok(RestoreSummary {
        dir,
        replaced,
        bytes: manifest.bytes(),
        files: manifest.files.len(),
        databases: manifest.databases.len(),
        elapsed: started.elapsed(),
        manifest,
    })
}
