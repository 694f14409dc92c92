//! The manifest of a backup, `MANIFEST.json` at its top: what made it and when, the
//! store's format version and service id, every file with its size, SHA-256 and
//! permission bits, and every database's last seq and document count at the instant of
//! the copy. The manifest carries its own checksum (`manifest_sha256`: the SHA-256 of the
//! file with that field's digits replaced by zeros), so that any changed byte in it is
//! found too. FORMAT.md documents the fields.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::fs::HashingFile;
use crate::error::{Result, StoreError};

/// File name of the manifest at the top of a backup directory.
pub const MANIFEST_FILE: &str = "MANIFEST.json";

/// Version of the manifest's own layout.
pub const MANIFEST_VERSION: u32 = 1;

/// What `manifest_sha256` holds while the checksum is computed.
const PLACEHOLDER: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The manifest of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version of this manifest (`MANIFEST_VERSION`).
    pub manifest_version: u32,
    /// On-disk format version of the copied environment.
    pub format_version: u32,
    /// The service id of the copied store (32 hex digits).
    pub service_id: String,
    /// When the copy began (ms since the Unix epoch).
    pub created_ms: u64,
    /// What made the backup, e.g. `cairn-backup 0.1.0` or `cairn-service 0.1.0`.
    pub tool: String,
    /// The working directory that was copied.
    pub source: String,
    /// Every file of the backup except the manifest, sorted by path.
    pub files: Vec<FileEntry>,
    /// Every database of the copied store, in name order.
    pub databases: Vec<DatabaseEntry>,
    /// SHA-256 of this file with these 64 hex digits replaced by `0`s.
    pub manifest_sha256: String,
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the backup's top, `/`-separated, e.g. `store/data.mdb`.
    pub path: String,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
    /// Permission bits, restored with the file (private keys stay 0600).
    pub mode: u32,
}

/// One database of the copied store, as of the copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseEntry {
    pub name: String,
    /// Seq of its newest change: a follower resumes after it.
    pub last_seq: u64,
    /// Seq of the oldest change still in its log.
    pub oldest_seq: u64,
    pub doc_count: u64,
}

impl Manifest {
    /// Total bytes of the backup's files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The entry of the file at `path`, if the backup has one.
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == path)
    }

    /// Serialises the manifest with its checksum filled in (and sets it).
    pub(crate) fn seal(&mut self) -> Result<Vec<u8>> {
        self.manifest_sha256 = PLACEHOLDER.to_string();
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| StoreError::Corrupt {
            table: "MANIFEST.json",
            reason: e.to_string(),
        })?;
        bytes.push(b'\n');
        let digest = hex::encode(Sha256::digest(&bytes));
        let at = placeholder_at(&bytes, PLACEHOLDER).expect("the placeholder was just written");
        bytes[at..at + PLACEHOLDER.len()].copy_from_slice(digest.as_bytes());
        self.manifest_sha256 = digest;
        Ok(bytes)
    }

    /// Parses a manifest and checks its checksum; the error says what is wrong.
    pub(crate) fn from_bytes(bytes: &[u8]) -> std::result::Result<Manifest, String> {
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| format!("unreadable: {e}"))?;
        if manifest.manifest_version != MANIFEST_VERSION {
            return Err(format!(
                "manifest version {} is not {MANIFEST_VERSION}: verify it with the cairn-backup that made it",
                manifest.manifest_version
            ));
        }
        let recorded = &manifest.manifest_sha256;
        let at = (recorded.len() == PLACEHOLDER.len())
            .then(|| placeholder_at(bytes, recorded))
            .flatten()
            .ok_or("its manifest_sha256 field is damaged")?;
        let mut zeroed = bytes.to_vec();
        zeroed[at..at + PLACEHOLDER.len()].copy_from_slice(PLACEHOLDER.as_bytes());
        if hex::encode(Sha256::digest(&zeroed)) != *recorded {
            return Err("its checksum does not match its contents: it was changed".to_string());
        }
        if let Some(file) = manifest.files.iter().find(|f| !is_backup_path(&f.path)) {
            return Err(format!(
                "it lists {:?}, which is not a file a backup may hold",
                file.path
            ));
        }
        Ok(manifest)
    }
}

/// True for a relative path of plain names (no `..`, `.`, empty or absolute parts) that
/// is neither the manifest nor something a backup never holds: a manifest cannot make a
/// restore write outside its directory.
pub(crate) fn is_backup_path(path: &str) -> bool {
    path.split('/')
        .all(|part| !part.is_empty() && part != "." && part != "..")
        && path != MANIFEST_FILE
        && !super::never_copied(path)
}

/// Where the digits of `"manifest_sha256": "<digits>"` begin in `bytes`.
fn placeholder_at(bytes: &[u8], digits: &str) -> Option<usize> {
    let needle = format!("\"manifest_sha256\": \"{digits}\"");
    bytes
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .map(|at| at + needle.len() - digits.len() - 1)
}

/// Writes `MANIFEST.json` into `dir` (fsync'd), filling in its checksum.
pub(crate) fn write_manifest(dir: &Path, manifest: &mut Manifest) -> Result<()> {
    let bytes = manifest.seal()?;
    let mut file = HashingFile::create(&dir.join(MANIFEST_FILE), 0o600)?;
    file.write(&bytes)?;
    file.finish().map(|_| ())
}

/// Reads and checks the manifest of the backup `dir`. A directory without one is not a
/// backup (`InvalidArgument`); a damaged manifest is `BackupInvalid`.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    load_manifest(dir)?.map_err(|problem| StoreError::BackupInvalid {
        dir: dir.to_path_buf(),
        problems: vec![format!("{MANIFEST_FILE}: {problem}")],
    })
}

/// As `read_manifest`, with what is wrong with a damaged manifest as the inner error.
pub(crate) fn load_manifest(dir: &Path) -> Result<std::result::Result<Manifest, String>> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let reason = if dir.is_dir() {
                format!(
                    "{} is not a cairn backup: it has no {MANIFEST_FILE}",
                    dir.display()
                )
            } else {
                format!("there is no backup at {}", dir.display())
            };
            return Err(StoreError::InvalidArgument { reason });
        }
        Err(e) => return Err(StoreError::io(format!("reading {}", path.display()), e)),
    };
    Ok(Manifest::from_bytes(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            manifest_version: MANIFEST_VERSION,
            format_version: 1,
            service_id: "00112233445566778899aabbccddeeff".to_string(),
            created_ms: 1_700_000_000_000,
            tool: "cairn-backup 0.1.0".to_string(),
            source: "/srv/data".to_string(),
            files: vec![FileEntry {
                path: "store/data.mdb".to_string(),
                size: 8192,
                sha256: "ab".repeat(32),
                mode: 0o600,
            }],
            databases: vec![DatabaseEntry {
                name: "db".to_string(),
                last_seq: 7,
                oldest_seq: 1,
                doc_count: 3,
            }],
            manifest_sha256: String::new(),
        }
    }

    #[test]
    fn a_manifest_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest = sample();
        write_manifest(dir.path(), &mut manifest).unwrap();
        assert_eq!(manifest.manifest_sha256.len(), 64);
        assert_eq!(read_manifest(dir.path()).unwrap(), manifest);
        assert_eq!(manifest.bytes(), 8192);
        assert!(manifest.file("store/data.mdb").is_some());
    }

    #[test]
    fn any_changed_byte_of_a_manifest_is_found() {
        let mut manifest = sample();
        let bytes = manifest.seal().unwrap();
        for at in (0..bytes.len()).step_by(7) {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x01;
            assert!(
                Manifest::from_bytes(&damaged).is_err(),
                "a flip at byte {at} went unnoticed"
            );
        }
    }

    #[test]
    fn a_manifest_names_only_files_inside_the_backup() {
        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            "store/../../x",
            "a//b",
            "sock",
            "tmp/x",
        ] {
            let mut manifest = sample();
            manifest.files[0].path = bad.to_string();
            let bytes = manifest.seal().unwrap();
            let error = Manifest::from_bytes(&bytes).unwrap_err();
            assert!(
                error.contains("not a file a backup may hold"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn a_directory_without_a_manifest_is_not_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let message = read_manifest(dir.path()).unwrap_err().to_string();
        assert!(message.contains("is not a cairn backup"), "{message}");
        let message = read_manifest(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("there is no backup at"), "{message}");
    }
}
