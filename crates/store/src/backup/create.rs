//! Making a backup: `create_backup` checks that the target has room, copies the
//! environment with LMDB's compacting copy (one read transaction: consistent, and
//! writers never wait) and the directory's other files beside it (`cairn.toml`,
//! `certs/`; never `backups/`, `tmp/`, `sock` or `service.lock`) into `DST.partial`,
//! writes `MANIFEST.json`, fsyncs, verifies the copy, and only then renames it to `DST`.
//! Any failure or a cancel removes everything it wrote.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::env::{content_bytes, copy_env, copy_facts, estimate_env_bytes};
use super::fs::{
    absolute, copy_file, create_dir, create_parents, free_bytes, parent, rename_new, sibling,
    sync_dir, walk, ClaimedDir,
};
use super::manifest::{write_manifest, FileEntry, Manifest, MANIFEST_FILE, MANIFEST_VERSION};
use super::progress::{BackupControl, Tracker};
use super::verify::{verify_dir, Problem};
use super::{never_copied, ENV_FILE, PARTIAL_SUFFIX};
use crate::error::{Result, StoreError};
use crate::store::{now_ms, Store, STORE_DIR};

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
fn write_backup(
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
        tool: tracker.tool().to_string(),
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
