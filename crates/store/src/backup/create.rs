//! Making a backup: `create_backup` checks that the target has room, copies the
//! environment with LMDB's compacting copy (one read transaction: consistent, and
//! writers never wait) and the directory's other files beside it (`cairn.toml`,
//! `certs/`; never `backups/`, `tmp/`, `sock` or `service.lock`) into `DST.partial`,
//! hashing every file as it is written, writes `MANIFEST.json` and fsyncs. Meanwhile,
//! on another thread, every database of a snapshot of the source is checked as
//! `--verify` checks a copy's (records against their checksums, documents against the
//! catalog and the change log): bit rot in the source fails the backup instead of
//! being copied. The copy is then opened to take its facts for the manifest, and only
//! then renamed to `DST`. Any failure or a cancel removes everything it wrote.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::check::catalog;
use super::env::{content_bytes, copy_env, copy_facts, estimate_env_bytes};
use super::fs::{
    absolute, copy_file, create_dir, create_parents, free_bytes, parent, rename_new, sibling,
    sync_dir, walk, ClaimedDir,
};
use super::manifest::{write_manifest, FileEntry, Manifest, MANIFEST_FILE};
use super::progress::{BackupControl, Tracker};
use super::verify::{check_databases, Problem};
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
    /// Always true: a backup whose source fails its checks is not renamed into place.
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
    tracker.need(estimate_env_bytes(source)?);
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

/// How often the wait for the checks looks at the caller's cancel flag.
const CHECK_POLL: Duration = Duration::from_millis(50);

/// Writes the whole backup into `partial` while the source's databases are checked on
/// another thread; returns its manifest.
fn fill(source: &Store, src_dir: &Path, partial: &Path, tracker: &mut Tracker) -> Result<Manifest> {
    // The checks have a cancel flag of their own: a failed copy stops them too.
    let checks = BackupControl {
        cancel: Arc::new(AtomicBool::new(false)),
        progress: None,
        ..tracker.control().clone()
    };
    let snapshot_bytes = content_bytes(source)?;
    std::thread::scope(|scope| {
        let (done, checking) = mpsc::channel();
        std::thread::Builder::new()
            .name("cairn-backup-check".to_string())
            .spawn_scoped(scope, {
                let checks = &checks;
                move || {
                    let _ = done.send(check_source(source, checks));
                }
            })
            .map_err(|e| StoreError::io("starting the checks of the databases", e))?;
        let copied = copy_all(source, src_dir, partial, tracker);
        if copied.is_err() {
            checks.cancel();
        }
        tracker.need(snapshot_bytes);
        let checked = wait_for_checks(checking, &checks, tracker);
        let mut manifest = copied?;
        let problems = checked?;
        if !problems.is_empty() {
            return Err(StoreError::BackupInvalid {
                dir: partial.to_path_buf(),
                problems: problems.iter().map(Problem::to_string).collect(),
            });
        }
        tracker.advance(snapshot_bytes)?;
        write_manifest(partial, &mut manifest)?;
        sync_dir(partial)?;
        Ok(manifest)
    })
}

/// The problems of every database of a snapshot of `source` (none when it is sound).
fn check_source(source: &Store, control: &BackupControl) -> Result<Vec<Problem>> {
    let snapshot = source.snapshot()?;
    let records = catalog(&snapshot)?;
    let checked = check_databases(&snapshot, &records, &mut Tracker::new(control))?;
    Ok(checked.problems)
}

/// Waits for the checks to end (waking as soon as they do), passing the caller's cancel
/// on to them.
fn wait_for_checks(
    checking: mpsc::Receiver<Result<Vec<Problem>>>,
    checks: &BackupControl,
    tracker: &mut Tracker,
) -> Result<Vec<Problem>> {
    let waited = tracker.phase("checking databases");
    let checked = loop {
        match checking.recv_timeout(CHECK_POLL) {
            Ok(checked) => break checked,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if tracker.check().is_err() {
                    checks.cancel();
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(StoreError::Lmdb(
                    "the checks of the databases panicked".to_string(),
                ))
            }
        }
    };
    waited?;
    tracker.check()?;
    checked
}

/// Copies the environment and the directory's other files into `partial`, hashing
/// each, and fsyncs them; returns the manifest, sealed by the caller.
fn copy_all(
    source: &Store,
    src_dir: &Path,
    partial: &Path,
    tracker: &mut Tracker,
) -> Result<Manifest> {
    let mut manifest = Manifest {
        created_ms: now_ms(),
        tool: tracker.tool().to_string(),
        source: src_dir.display().to_string(),
        ..Manifest::current()
    };
    let checksum = manifest.checksum;
    let mut dirs = vec![partial.to_path_buf()];

    tracker.phase("copying the environment")?;
    let store_dir = partial.join(STORE_DIR);
    create_dir(&store_dir, 0o700)?;
    dirs.push(store_dir);
    let (size, digest) = copy_env(source, &partial.join(ENV_FILE), checksum, tracker)?;
    manifest.files.push(FileEntry {
        path: ENV_FILE.to_string(),
        size,
        checksum: digest,
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
        let target = partial.join(&file.rel);
        let (size, digest) = copy_file(&file.path, &target, file.mode, checksum, tracker)?;
        manifest.files.push(FileEntry {
            path: file.rel,
            size,
            checksum: digest,
            mode: file.mode,
        });
    }
    manifest.files.sort_by(|a, b| a.path.cmp(&b.path));
    for dir in dirs.iter().rev() {
        sync_dir(dir)?;
    }

    let (meta, databases) = copy_facts(partial)?;
    manifest.format_version = meta.format_version;
    manifest.service_id = meta.service_id;
    manifest.databases = databases;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::doc_key;
    use crate::store::StoreOptions;

    #[test]
    fn a_damaged_source_fails_its_backup_and_leaves_nothing() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("data");
        let store = Store::create(&dir, StoreOptions::default()).unwrap();
        store.create_database("alpha").unwrap();
        store.create_database("beta").unwrap();
        for i in 0..20u8 {
            store.put("alpha", &format!("k{i}"), &[i], None).unwrap();
            store.put("beta", &format!("k{i}"), &[i], None).unwrap();
        }
        // One bit of one stored value of `alpha` rots behind the store's back.
        {
            let tables = store.shared.tables;
            let mut wtxn = store.env().write_txn().unwrap();
            let key = doc_key(1, "k7");
            let mut stored = tables.docs.get(&wtxn, &key).unwrap().unwrap().to_vec();
            *stored.last_mut().unwrap() ^= 0x01;
            tables.docs.put(&mut wtxn, &key, &stored).unwrap();
            wtxn.commit().unwrap();
        }
        let dst = scratch.path().join("backup");
        let error = create_backup(&store, &dir, &dst, &BackupControl::default()).unwrap_err();
        let StoreError::BackupInvalid { problems, .. } = &error else {
            panic!("expected BackupInvalid, got {error:?}");
        };
        assert!(
            !problems.is_empty() && problems.iter().all(|p| p.starts_with("database alpha: ")),
            "{problems:?}"
        );
        assert!(problems.iter().any(|p| p.contains("k7")), "{problems:?}");
        assert!(!dst.exists());
        assert!(!scratch.path().join("backup.partial").exists());
    }
}
