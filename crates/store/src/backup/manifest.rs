//! The manifest of a backup, `MANIFEST.json` at its top: what made it and when, the
//! store's format version and service id, the checksum its files are hashed with
//! (BLAKE3 since version 2; version 1, still read, used SHA-256), every file with its
//! size, checksum and permission bits, and every database's last seq and document count
//! at the instant of the copy. The manifest carries its own checksum (the same
//! algorithm's digest of the file with that field's digits replaced by zeros), so that
//! any changed byte in it is found too. FORMAT.md documents the fields.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::fs::{Checksum, HashingFile};
use crate::error::{Result, StoreError};

/// File name of the manifest at the top of a backup directory.
pub const MANIFEST_FILE: &str = "MANIFEST.json";

/// Version of the manifest's own layout that new backups get: 2, BLAKE3 checksums.
pub const MANIFEST_VERSION: u32 = 2;

/// The earlier version still read: SHA-256 checksums, `sha256` and `manifest_sha256`
/// fields, no `checksum` field.
const SHA256_MANIFEST_VERSION: u32 = 1;

/// What the manifest's own checksum field holds while the checksum is computed.
const PLACEHOLDER: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A version-1 manifest names no checksum: it is SHA-256.
fn version_1_checksum() -> Checksum {
    Checksum::Sha256
}

/// The manifest of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version of this manifest (`MANIFEST_VERSION`, or 1).
    pub manifest_version: u32,
    /// The checksum of every file and of the manifest itself.
    #[serde(default = "version_1_checksum")]
    pub checksum: Checksum,
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
    /// The checksum of this file with these 64 hex digits replaced by `0`s
    /// (`manifest_sha256` in version 1).
    #[serde(alias = "manifest_sha256")]
    pub manifest_checksum: String,
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the backup's top, `/`-separated, e.g. `store/data.mdb`.
    pub path: String,
    pub size: u64,
    /// Lower-case hex digest of the manifest's `checksum` (`sha256` in version 1).
    #[serde(alias = "sha256")]
    pub checksum: String,
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

    /// A new manifest's version and checksum, with nothing else filled in yet.
    pub fn current() -> Manifest {
        Manifest {
            manifest_version: MANIFEST_VERSION,
            checksum: Checksum::CURRENT,
            format_version: 0,
            service_id: String::new(),
            created_ms: 0,
            tool: String::new(),
            source: String::new(),
            files: Vec::new(),
            databases: Vec::new(),
            manifest_checksum: String::new(),
        }
    }

    /// Serialises the manifest with its checksum filled in (and sets it).
    pub(crate) fn seal(&mut self) -> Result<Vec<u8>> {
        self.manifest_checksum = PLACEHOLDER.to_string();
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| StoreError::Corrupt {
            table: "MANIFEST.json",
            reason: e.to_string(),
        })?;
        bytes.push(b'\n');
        let digest = self.checksum.digest(&bytes);
        let at = placeholder_at(&bytes, self.manifest_version, PLACEHOLDER)
            .expect("the placeholder was just written");
        bytes[at..at + PLACEHOLDER.len()].copy_from_slice(digest.as_bytes());
        self.manifest_checksum = digest;
        Ok(bytes)
    }

    /// Parses a manifest and checks its checksum; the error says what is wrong.
    pub(crate) fn from_bytes(bytes: &[u8]) -> std::result::Result<Manifest, String> {
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| format!("unreadable: {e}"))?;
        let version = manifest.manifest_version;
        let known = match version {
            SHA256_MANIFEST_VERSION => manifest.checksum == Checksum::Sha256,
            MANIFEST_VERSION => true,
            _ => false,
        };
        if !known {
            return Err(format!(
                "manifest version {version} is not {SHA256_MANIFEST_VERSION} or {MANIFEST_VERSION}: verify it with the cairn-backup that made it"
            ));
        }
        let recorded = &manifest.manifest_checksum;
        let at = (recorded.len() == PLACEHOLDER.len())
            .then(|| placeholder_at(bytes, version, recorded))
            .flatten()
            .ok_or_else(|| format!("its {} field is damaged", checksum_field(version)))?;
        let mut zeroed = bytes.to_vec();
        zeroed[at..at + PLACEHOLDER.len()].copy_from_slice(PLACEHOLDER.as_bytes());
        if manifest.checksum.digest(&zeroed) != *recorded {
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

/// The name of the manifest's own checksum field in `version`.
fn checksum_field(version: u32) -> &'static str {
    if version == SHA256_MANIFEST_VERSION {
        "manifest_sha256"
    } else {
        "manifest_checksum"
    }
}

/// Where the digits of `"<checksum field>": "<digits>"` begin in `bytes`.
fn placeholder_at(bytes: &[u8], version: u32, digits: &str) -> Option<usize> {
    let needle = format!("\"{}\": \"{digits}\"", checksum_field(version));
    bytes
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .map(|at| at + needle.len() - digits.len() - 1)
}

/// Writes `MANIFEST.json` into `dir` (fsync'd), filling in its checksum.
pub(crate) fn write_manifest(dir: &Path, manifest: &mut Manifest) -> Result<()> {
    let bytes = manifest.seal()?;
    let mut file = HashingFile::create(&dir.join(MANIFEST_FILE), 0o600, manifest.checksum)?;
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
            format_version: 1,
            service_id: "00112233445566778899aabbccddeeff".to_string(),
            created_ms: 1_700_000_000_000,
            tool: "cairn-backup 0.1.0".to_string(),
            source: "/srv/data".to_string(),
            files: vec![FileEntry {
                path: "store/data.mdb".to_string(),
                size: 8192,
                checksum: "ab".repeat(32),
                mode: 0o600,
            }],
            databases: vec![DatabaseEntry {
                name: "db".to_string(),
                last_seq: 7,
                oldest_seq: 1,
                doc_count: 3,
            }],
            ..Manifest::current()
        }
    }

    #[test]
    fn a_manifest_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest = sample();
        write_manifest(dir.path(), &mut manifest).unwrap();
        assert_eq!(manifest.manifest_checksum.len(), 64);
        assert_eq!(manifest.checksum, Checksum::Blake3);
        let text = fs::read_to_string(dir.path().join(MANIFEST_FILE)).unwrap();
        assert!(
            text.contains("\"checksum\": \"blake3\"") && text.contains("\"manifest_checksum\""),
            "{text}"
        );
        assert_eq!(read_manifest(dir.path()).unwrap(), manifest);
        assert_eq!(manifest.bytes(), 8192);
        assert!(manifest.file("store/data.mdb").is_some());
    }

    /// A version-1 manifest as cairn-backup wrote it before BLAKE3 (SHA-256 fields, no
    /// `checksum` field), sealed by hand as that release did.
    fn version_1_bytes() -> Vec<u8> {
        let mut text = serde_json::to_string_pretty(&sample())
            .unwrap()
            .replace("\"manifest_version\": 2", "\"manifest_version\": 1")
            .replace("  \"checksum\": \"blake3\",\n", "")
            .replace("\"checksum\": \"abab", "\"sha256\": \"abab")
            .replace(
                "\"manifest_checksum\": \"\"",
                &format!("\"manifest_sha256\": \"{PLACEHOLDER}\""),
            );
        text.push('\n');
        let digest = Checksum::Sha256.digest(text.as_bytes());
        text.replace(PLACEHOLDER, &digest).into_bytes()
    }

    #[test]
    fn a_version_1_manifest_is_read_with_sha256() {
        let bytes = version_1_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains("\"sha256\": \"abab") && !text.contains("blake3"),
            "{text}"
        );
        let manifest = Manifest::from_bytes(&bytes).unwrap();
        assert_eq!(manifest.manifest_version, 1);
        assert_eq!(manifest.checksum, Checksum::Sha256);
        assert_eq!(manifest.files[0].checksum, "ab".repeat(32));
        let mut damaged = bytes.clone();
        let at = text.find("/srv/data").unwrap();
        damaged[at] = b'X';
        assert!(Manifest::from_bytes(&damaged)
            .unwrap_err()
            .contains("does not match"));
        // Version 1 with another checksum than SHA-256, or an unknown version.
        let blake = text.replace(
            "\"manifest_version\": 1,",
            "\"manifest_version\": 1,\n  \"checksum\": \"blake3\",",
        );
        assert!(Manifest::from_bytes(blake.as_bytes())
            .unwrap_err()
            .contains("manifest version 1 is not"));
        let future = text.replace("\"manifest_version\": 1", "\"manifest_version\": 9");
        assert!(Manifest::from_bytes(future.as_bytes())
            .unwrap_err()
            .contains("manifest version 9 is not 1 or 2"));
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
