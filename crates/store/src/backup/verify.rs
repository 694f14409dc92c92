//! Verification of a backup directory: the manifest's own checksum, every listed file
//! (present, same size, same checksum: BLAKE3, or SHA-256 in a version-1 manifest), no file that the manifest does not list, and then
//! the environment itself, opened read-only without touching the directory (only when
//! `store/data.mdb` matched its checksum: LMDB trusts its pages), whose meta must match
//! the manifest and whose every database must agree with its catalog record, with its
//! change log, and with the manifest. Each problem names the file or database.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

use super::check::{catalog, check_database, orphans};
use super::fs::{hash_file, walk, Checksum};
use super::manifest::{load_manifest, DatabaseEntry, Manifest, MANIFEST_FILE};
use super::progress::{BackupControl, Tracker};
use super::{never_copied, ENV_FILE};
use crate::error::{Result, StoreError};
use crate::format::CatalogRecord;
use crate::lock::LOCK_FILE;
use crate::store::{Snapshot, Store};

/// One thing wrong with a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// `MANIFEST.json` is unreadable or was changed.
    Manifest { reason: String },
    /// A file the manifest lists is not there.
    MissingFile { path: String },
    /// A file is there that the manifest does not list.
    ExtraFile { path: String },
    /// A file has another size than the manifest says.
    SizeMismatch {
        path: String,
        expected: u64,
        found: u64,
    },
    /// A file's checksum differs from the manifest's.
    ChecksumMismatch { path: String, checksum: Checksum },
    /// The environment does not open, or its meta disagrees with the manifest.
    Environment { reason: String },
    /// A database disagrees with its catalog record, its change log or the manifest.
    Database { name: String, reason: String },
}

impl Problem {
    /// What the problem is about: a file's path (`MANIFEST.json`, `store/data.mdb`,
    /// `certs/...`) or `database NAME`.
    pub fn subject(&self) -> String {
        match self {
            Problem::Manifest { .. } => MANIFEST_FILE.to_string(),
            Problem::MissingFile { path }
            | Problem::ExtraFile { path }
            | Problem::SizeMismatch { path, .. }
            | Problem::ChecksumMismatch { path, .. } => path.clone(),
            Problem::Environment { .. } => ENV_FILE.to_string(),
            Problem::Database { name, .. } => format!("database {name}"),
        }
    }

    /// What is wrong with the subject.
    pub fn reason(&self) -> String {
        match self {
            Problem::Manifest { reason }
            | Problem::Environment { reason }
            | Problem::Database { reason, .. } => reason.clone(),
            Problem::MissingFile { .. } => "missing".to_string(),
            Problem::ExtraFile { .. } => "not in the manifest".to_string(),
            Problem::SizeMismatch {
                expected, found, ..
            } => format!("{found} bytes, the manifest says {expected}"),
            Problem::ChecksumMismatch { checksum, .. } => format!(
                "its {} does not match the manifest: the file was changed",
                checksum.name()
            ),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.subject(), self.reason())
    }
}

/// What verifying a backup found. The backup is good when `problems` is empty.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub dir: PathBuf,
    /// The manifest, unless it could not be read.
    pub manifest: Option<Manifest>,
    pub problems: Vec<Problem>,
    /// Files whose checksum was computed.
    pub files: usize,
    /// Bytes of those files.
    pub bytes: u64,
    /// Databases checked in the environment.
    pub databases: usize,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The manifest of a good backup; `BackupInvalid` with every problem otherwise.
    pub fn into_manifest(self) -> Result<Manifest> {
        match self.manifest {
            Some(manifest) if self.problems.is_empty() => Ok(manifest),
            _ => Err(StoreError::BackupInvalid {
                dir: self.dir,
                problems: self.problems.iter().map(Problem::to_string).collect(),
            }),
        }
    }
}

/// Checks the backup `dir` (see the module doc). `Err` only when it cannot be checked
/// at all: not a backup, unreadable, or a service is running on it.
pub fn verify_backup(dir: &Path) -> Result<VerifyReport> {
    verify_backup_with(dir, &BackupControl::default())
}

/// `verify_backup` with progress reports and a cancel flag.
pub fn verify_backup_with(dir: &Path, control: &BackupControl) -> Result<VerifyReport> {
    let mut tracker = Tracker::new(control);
    let report = verify_held(dir, &mut tracker)?;
    tracker.finish("verified");
    Ok(report)
}

/// Verifies `dir` while keeping services from starting on it.
pub(crate) fn verify_held(dir: &Path, tracker: &mut Tracker) -> Result<VerifyReport> {
    let _held = hold_against_services(dir)?;
    verify_dir(dir, tracker)
}

/// A shared lock on `DIR/service.lock` when there is one, so that no service starts on
/// the backup while it is checked; `DirectoryInUse` when a service runs on it (it is no
/// longer a backup then). Writes nothing.
pub(crate) fn hold_against_services(dir: &Path) -> Result<Option<File>> {
    let Ok(file) = File::open(dir.join(LOCK_FILE)) else {
        return Ok(None);
    };
    match flock(&file, FlockOperation::NonBlockingLockShared) {
        Ok(()) => Ok(Some(file)),
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let pid = std::fs::read_to_string(dir.join(LOCK_FILE))
                .ok()
                .and_then(|text| text.trim().parse().ok());
            Err(StoreError::DirectoryInUse {
                dir: dir.to_path_buf(),
                pid,
            })
        }
        Err(e) => Err(StoreError::io(
            format!("locking {}", dir.join(LOCK_FILE).display()),
            e.into(),
        )),
    }
}

/// Verifies `dir`, reporting progress to `tracker`.
pub(crate) fn verify_dir(dir: &Path, tracker: &mut Tracker) -> Result<VerifyReport> {
    let mut report = VerifyReport {
        dir: dir.to_path_buf(),
        manifest: None,
        problems: Vec::new(),
        files: 0,
        bytes: 0,
        databases: 0,
    };
    let manifest = match load_manifest(dir)? {
        Ok(manifest) => manifest,
        Err(reason) => {
            report.problems.push(Problem::Manifest { reason });
            return Ok(report);
        }
    };
    tracker.phase("verifying checksums")?;
    check_files(dir, &manifest, tracker, &mut report)?;
    let env_intact = manifest.file(ENV_FILE).is_some()
        && !report.problems.iter().any(|p| p.subject() == ENV_FILE);
    if env_intact {
        tracker.phase("verifying databases")?;
        check_environment(dir, &manifest, tracker, &mut report)?;
    } else if manifest.file(ENV_FILE).is_none() {
        report.problems.push(Problem::Environment {
            reason: "the manifest does not list the environment".to_string(),
        });
    }
    report.manifest = Some(manifest);
    Ok(report)
}

fn check_files(
    dir: &Path,
    manifest: &Manifest,
    tracker: &mut Tracker,
    report: &mut VerifyReport,
) -> Result<()> {
    let on_disk: BTreeMap<String, _> = walk(dir, &|rel| rel == MANIFEST_FILE || never_copied(rel))?
        .into_iter()
        .map(|f| (f.rel.clone(), f))
        .collect();
    tracker.need(manifest.bytes());
    for entry in &manifest.files {
        let Some(found) = on_disk.get(&entry.path) else {
            report.problems.push(Problem::MissingFile {
                path: entry.path.clone(),
            });
            continue;
        };
        if found.size != entry.size {
            report.problems.push(Problem::SizeMismatch {
                path: entry.path.clone(),
                expected: entry.size,
                found: found.size,
            });
            continue;
        }
        let (size, digest) = hash_file(&found.path, manifest.checksum, tracker)?;
        report.files += 1;
        report.bytes += size;
        if size != entry.size {
            report.problems.push(Problem::SizeMismatch {
                path: entry.path.clone(),
                expected: entry.size,
                found: size,
            });
        } else if digest != entry.checksum {
            report.problems.push(Problem::ChecksumMismatch {
                path: entry.path.clone(),
                checksum: manifest.checksum,
            });
        }
    }
    let listed: BTreeSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    for path in on_disk.keys().filter(|p| !listed.contains(p.as_str())) {
        report
            .problems
            .push(Problem::ExtraFile { path: path.clone() });
    }
    Ok(())
}

fn check_environment(
    dir: &Path,
    manifest: &Manifest,
    tracker: &mut Tracker,
    report: &mut VerifyReport,
) -> Result<()> {
    let environment = |reason: String| Problem::Environment { reason };
    let store = match Store::open_unshared(dir) {
        Ok(store) => store,
        Err(error) => {
            report
                .problems
                .push(environment(format!("does not open: {error}")));
            return Ok(());
        }
    };
    let meta = store.meta();
    if meta.format_version != manifest.format_version {
        report.problems.push(environment(format!(
            "format version {}, the manifest says {}",
            meta.format_version, manifest.format_version
        )));
    }
    if meta.service_id != manifest.service_id {
        report.problems.push(environment(format!(
            "service id {}, the manifest says {}",
            meta.service_id, manifest.service_id
        )));
    }
    let snapshot = store.snapshot()?;
    let records = match catalog(&snapshot) {
        Ok(records) => records,
        Err(error) => {
            report
                .problems
                .push(environment(format!("unreadable catalog: {error}")));
            return Ok(());
        }
    };
    let mut listed: BTreeMap<&str, &DatabaseEntry> = manifest
        .databases
        .iter()
        .map(|d| (d.name.as_str(), d))
        .collect();
    for (name, record) in &records {
        let problem = |reason: String| Problem::Database {
            name: name.clone(),
            reason,
        };
        match listed.remove(name.as_str()) {
            None => report.problems.push(problem(
                "in the environment, not in the manifest".to_string(),
            )),
            Some(entry) => {
                let facts = [
                    ("last_seq", entry.last_seq, record.last_seq),
                    ("oldest_seq", entry.oldest_seq, record.trimmed_through + 1),
                    ("doc_count", entry.doc_count, record.doc_count),
                ];
                for (field, expected, found) in facts {
                    if expected != found {
                        report.problems.push(problem(format!(
                            "{field} is {found} in the environment, the manifest says {expected}"
                        )));
                    }
                }
            }
        }
    }
    for name in listed.keys() {
        report.problems.push(Problem::Database {
            name: name.to_string(),
            reason: "in the manifest, not in the environment".to_string(),
        });
    }
    let checked = check_databases(&snapshot, &records, tracker)?;
    report.databases += checked.databases;
    report.problems.extend(checked.problems);
    Ok(())
}

/// What `check_databases` found.
pub(crate) struct DatabasesChecked {
    pub databases: usize,
    pub problems: Vec<Problem>,
}

/// Checks every database of `snapshot` (whose catalog is `records`) against its record
/// and its change log, and that no document or change belongs to no database (see
/// `check.rs`). `Err` only for a cancel or a snapshot that cannot be read at all.
pub(crate) fn check_databases(
    snapshot: &Snapshot,
    records: &[(String, CatalogRecord)],
    tracker: &mut Tracker,
) -> Result<DatabasesChecked> {
    tracker.need(records.iter().map(|(_, r)| r.doc_bytes + r.log_bytes).sum());
    let mut problems = Vec::new();
    let (mut docs, mut changes) = (0u64, 0u64);
    for (name, record) in records {
        let problem = |reason: String| Problem::Database {
            name: name.clone(),
            reason,
        };
        match check_database(snapshot, name, record, tracker) {
            Ok(checked) => {
                docs += checked.docs;
                changes += checked.changes;
                problems.extend(checked.findings.into_lines().into_iter().map(problem));
            }
            Err(StoreError::Canceled) => return Err(StoreError::Canceled),
            Err(error) => problems.push(problem(format!("unreadable: {error}"))),
        }
    }
    let environment = |reason: String| Problem::Environment { reason };
    match orphans(snapshot, docs, changes) {
        Ok(found) => problems.extend(found.into_iter().map(environment)),
        Err(error) => problems.push(environment(error.to_string())),
    }
    Ok(DatabasesChecked {
        databases: records.len(),
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::create_backup;
    use crate::backup::fs::hash_file;
    use crate::backup::manifest::write_manifest;
    use crate::format::{change_key, doc_key, doc_value};
    use crate::store::StoreOptions;

    /// A backup of a store with database `alpha` (id 1, ten puts) and `beta` (id 2).
    fn backup(root: &Path) -> PathBuf {
        let dir = root.join("data");
        let store = Store::create(&dir, StoreOptions::default()).unwrap();
        store.create_database("alpha").unwrap();
        store.create_database("beta").unwrap();
        for i in 0..10u8 {
            store.put("alpha", &format!("k{i}"), &[i], None).unwrap();
        }
        store.put("beta", "b", &[1], None).unwrap();
        let dst = root.join("backup");
        create_backup(&store, &dir, &dst, &BackupControl::default()).unwrap();
        dst
    }

    /// Changes the backup's environment behind the store's back with `damage`, then
    /// writes a manifest whose checksums match again, so that only the deep check of
    /// the databases can find what changed.
    fn tamper(dst: &Path, damage: impl FnOnce(&Store, &mut heed::RwTxn)) {
        {
            let store = Store::open(dst, StoreOptions::default()).unwrap();
            let mut wtxn = store.env().write_txn().unwrap();
            damage(&store, &mut wtxn);
            wtxn.commit().unwrap();
        }
        std::fs::remove_file(dst.join("store/lock.mdb")).unwrap();
        let mut manifest = crate::backup::read_manifest(dst).unwrap();
        let control = BackupControl::default();
        let (size, digest) = hash_file(
            &dst.join(ENV_FILE),
            manifest.checksum,
            &mut Tracker::new(&control),
        )
        .unwrap();
        let entry = manifest
            .files
            .iter_mut()
            .find(|f| f.path == ENV_FILE)
            .unwrap();
        (entry.size, entry.checksum) = (size, digest);
        std::fs::remove_file(dst.join(MANIFEST_FILE)).unwrap();
        write_manifest(dst, &mut manifest).unwrap();
    }

    fn reasons(dst: &Path) -> Vec<String> {
        let report = verify_backup(dst).unwrap();
        report.problems.iter().map(Problem::to_string).collect()
    }

    #[test]
    fn a_gap_in_a_change_log_is_found() {
        let scratch = tempfile::tempdir().unwrap();
        let dst = backup(scratch.path());
        tamper(&dst, |store, wtxn| {
            let tables = store.shared.tables;
            tables.changes.delete(wtxn, &change_key(1, 4)).unwrap();
        });
        let found = reasons(&dst);
        assert!(
            found.contains(&"database alpha: the change log is missing seqs 4..=4".to_string()),
            "{found:?}"
        );
        assert!(
            found.iter().all(|p| p.starts_with("database alpha: ")),
            "{found:?}"
        );
    }

    #[test]
    fn a_document_that_disagrees_with_its_log_is_found() {
        let scratch = tempfile::tempdir().unwrap();
        let dst = backup(scratch.path());
        tamper(&dst, |store, wtxn| {
            let tables = store.shared.tables;
            tables
                .docs
                .put(wtxn, &doc_key(1, "k3"), &doc_value(1, "k3", 4, &[99]))
                .unwrap();
            tables.docs.delete(wtxn, &doc_key(1, "k5")).unwrap();
            tables
                .docs
                .put(
                    wtxn,
                    &doc_key(9, "orphan"),
                    &doc_value(9, "orphan", 1, &[1]),
                )
                .unwrap();
        });
        let found = reasons(&dst);
        for expected in [
            "database alpha: document \"k3\" (rev 4) does not match change 4 of the log",
            "database alpha: 9 documents, its catalog says 10",
            "database alpha: document \"k5\" is missing though change 6 put it",
            "store/data.mdb: 1 documents belong to no database",
        ] {
            assert!(
                found.contains(&expected.to_string()),
                "{expected}: {found:?}"
            );
        }
    }

    #[test]
    fn damaged_documents_and_changes_are_found_by_their_checksums() {
        let scratch = tempfile::tempdir().unwrap();
        let dst = backup(scratch.path());
        tamper(&dst, |store, wtxn| {
            let tables = store.shared.tables;
            // Flip one bit of a document's value and one of a change record's, in place.
            let mut doc = tables
                .docs
                .get(wtxn, &doc_key(1, "k2"))
                .unwrap()
                .unwrap()
                .to_vec();
            *doc.last_mut().unwrap() ^= 0x04;
            tables.docs.put(wtxn, &doc_key(1, "k2"), &doc).unwrap();
            let mut change = tables
                .changes
                .get(wtxn, &change_key(1, 5))
                .unwrap()
                .unwrap()
                .to_vec();
            *change.last_mut().unwrap() ^= 0x80;
            tables
                .changes
                .put(wtxn, &change_key(1, 5), &change)
                .unwrap();
        });
        let found = reasons(&dst);
        for expected in [
            "database alpha: document \"k2\" fails its checksum: the bytes on disk are damaged",
            "database alpha: change 5 fails its checksum: the bytes on disk are damaged",
        ] {
            assert!(
                found.contains(&expected.to_string()),
                "{expected}: {found:?}"
            );
        }
    }

    #[test]
    fn a_manifest_that_disagrees_with_the_environment_is_found() {
        let scratch = tempfile::tempdir().unwrap();
        let dst = backup(scratch.path());
        let mut manifest = crate::backup::read_manifest(&dst).unwrap();
        manifest.databases[1].last_seq = 7;
        manifest.databases.remove(0);
        manifest.service_id = "ff".repeat(16);
        std::fs::remove_file(dst.join(MANIFEST_FILE)).unwrap();
        write_manifest(&dst, &mut manifest).unwrap();
        let found = reasons(&dst);
        for expected in [
            "database beta: last_seq is 1 in the environment, the manifest says 7",
            "database alpha: in the environment, not in the manifest",
        ] {
            assert!(
                found.contains(&expected.to_string()),
                "{expected}: {found:?}"
            );
        }
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("store/data.mdb: service id")),
            "{found:?}"
        );
    }
}
