//! The objects of a remote backup `NAME`: the archive `NAME.tar.zst` and the manifest
//! object `NAME.manifest.json` (`RemoteManifest`: the backup's `MANIFEST.json` with the
//! archive's size and SHA-256), and what a complete backup is as a listing shows it
//! (`RemoteBackup`).

use cairn_store::backup::Manifest;
use serde::{Deserialize, Serialize};

/// Suffix of a backup's archive object.
pub(crate) const ARCHIVE_SUFFIX: &str = ".tar.zst";
/// Suffix of a backup's manifest object.
pub(crate) const MANIFEST_SUFFIX: &str = ".manifest.json";
/// Layout version of a manifest object.
const REMOTE_MANIFEST_VERSION: u32 = 1;
/// How the archive is made, as the manifest object names it.
const ARCHIVE_FORMAT: &str = "tar+zstd";

/// The archive object's name of the backup `name`.
pub fn archive_object(name: &str) -> String {
    format!("{name}{ARCHIVE_SUFFIX}")
}

/// The manifest object's name of the backup `name`.
pub(crate) fn manifest_object(name: &str) -> String {
    format!("{name}{MANIFEST_SUFFIX}")
}

/// What a manifest object (`NAME.manifest.json`) holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RemoteManifest {
    /// `REMOTE_MANIFEST_VERSION`.
    pub remote_manifest_version: u32,
    /// The backup's name.
    pub name: String,
    pub archive: ArchiveInfo,
    /// The backup's `MANIFEST.json`, as it is inside the archive.
    pub manifest: Manifest,
}

/// The archive object of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ArchiveInfo {
    /// Its object name beside the manifest object, `NAME.tar.zst`.
    pub object: String,
    /// `tar+zstd`.
    pub format: String,
    pub size: u64,
    /// Lower-case hex SHA-256 of the object's bytes.
    pub sha256: String,
}

impl RemoteManifest {
    /// The manifest object of the backup `name` whose archive is `size` bytes with the
    /// SHA-256 `sha256`.
    pub(crate) fn new(name: &str, size: u64, sha256: String, manifest: Manifest) -> RemoteManifest {
        RemoteManifest {
            remote_manifest_version: REMOTE_MANIFEST_VERSION,
            name: name.to_string(),
            archive: ArchiveInfo {
                object: archive_object(name),
                format: ARCHIVE_FORMAT.to_string(),
                size,
                sha256,
            },
            manifest,
        }
    }

    /// `Err` with the reason when this is not the manifest object of backup `name` in a
    /// layout this version reads.
    pub(crate) fn check(&self, name: &str) -> Result<(), String> {
        if self.remote_manifest_version != REMOTE_MANIFEST_VERSION
            || self.name != name
            || self.archive.object != archive_object(name)
            || self.archive.format != ARCHIVE_FORMAT
        {
            return Err(format!(
                "version {}, name {:?}, archive {:?} ({}): not a manifest of backup {name:?} this version reads",
                self.remote_manifest_version, self.name, self.archive.object, self.archive.format
            ));
        }
        Ok(())
    }
}

/// A complete backup in the bucket (one with a manifest object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteBackup {
    pub name: String,
    /// `s3://BUCKET/PREFIX/NAME.tar.zst`.
    pub archive_url: String,
    /// The backup's `MANIFEST.json`.
    pub manifest: Manifest,
}
