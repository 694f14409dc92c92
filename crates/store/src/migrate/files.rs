//! What a migration writes outside the environment: `migration/started` (first of all,
//! so that a destination killed before its store's first commit is still known for
//! one), the other files of the source directory (`cairn.toml`, `certs/`, …, copied
//! with their permission bits, fsync'd), `migration/offsets.json` (where the source's
//! change logs stood: a follower starts there), and the dump of refused documents (JSON
//! lines, cut back to its length at the last commit when a migration resumes, so that
//! it lists each refusal once).

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use serde::Serialize;

use super::source::SourceMeta;
use super::Refusal;
use crate::backup::{
    copy_file, create_dir, create_parents, never_copied, sync_dir, walk, BackupControl, Checksum,
    Tracker, MANIFEST_FILE,
};
use crate::error::{Result, StoreError};
use crate::store::{now_ms, STORE_DIR};

/// Where the offsets go, inside the destination.
pub const OFFSETS_FILE: &str = "migration/offsets.json";

/// The directory of `OFFSETS_FILE` and `STARTED_FILE`, inside the destination.
pub(super) const MIGRATION_DIR: &str = "migration";

/// The mark of a migration started in a directory: the source directory's absolute
/// path and a newline, written before the destination's environment, and kept.
pub const STARTED_FILE: &str = "migration/started";

/// Writes `STARTED_FILE` into `dest` unless it is there (durably, before anything else
/// of the migration is written there): a directory that holds it but no store yet is
/// refused by every open as an unfinished migration, never taken for an empty
/// directory. Written in place, not renamed into place: the mark counts from the moment
/// the file exists (its text only names the source in messages).
pub(super) fn mark_started(dest: &Path, source_dir: &Path) -> Result<()> {
    let path = dest.join(STARTED_FILE);
    if path.exists() {
        return Ok(());
    }
    let dir = dest.join(MIGRATION_DIR);
    if !dir.is_dir() {
        create_dir(&dir, 0o700)?;
    }
    let written = (|| -> std::io::Result<()> {
        let mut file = File::create(&path)?;
        file.write_all(format!("{}\n", source_dir.display()).as_bytes())?;
        file.sync_all()
    })();
    written.map_err(|e| StoreError::io(format!("writing {}", path.display()), e))?;
    sync_dir(&dir)?;
    sync_dir(dest)
}

/// The source directory of the migration started in `dir`, when `dir` holds its mark
/// (see `mark_started`; empty when the mark cannot be read, lossy when it is not
/// UTF-8: the mark is the file, the text only names the source).
pub(crate) fn started_from(dir: &Path) -> Option<String> {
    let path = dir.join(STARTED_FILE);
    std::fs::symlink_metadata(&path).ok()?;
    let text = std::fs::read(&path).unwrap_or_default();
    Some(
        String::from_utf8_lossy(&text)
            .trim_end_matches('\n')
            .to_string(),
    )
}

/// True for what of a source directory is not copied as a file: its environment (the
/// migration moves it), a backup's manifest (it describes the old environment), what
/// no backup holds either (runtime entries), and an earlier migration's `migration/`
/// (its offsets and mark).
pub(super) fn skipped(rel: &str) -> bool {
    let top = rel.split('/').next().unwrap_or(rel);
    top == STORE_DIR || top == MIGRATION_DIR || rel == MANIFEST_FILE || never_copied(rel)
}

/// Copies the source's files into the destination (replacing what an interrupted run
/// copied); returns how many.
pub(super) fn copy_files(src: &Path, dest: &Path) -> Result<u64> {
    let control = BackupControl::default();
    let mut tracker = Tracker::new(&control);
    let files = walk(src, &skipped)?;
    let mut created = Vec::new();
    for file in &files {
        let target = dest.join(&file.rel);
        match std::fs::remove_file(&target) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(StoreError::io(format!("replacing {}", target.display()), e))
            }
            _ => {}
        }
        create_parents(src, dest, &file.rel, &mut created)?;
        copy_file(
            &file.path,
            &target,
            file.mode,
            Checksum::CURRENT,
            &mut tracker,
        )?;
    }
    for dir in created.iter().rev() {
        sync_dir(dir)?;
    }
    sync_dir(dest)?;
    Ok(files.len() as u64)
}

/// `migration/offsets.json`.
#[derive(Serialize)]
struct Offsets<'a> {
    source_dir: String,
    source_service_id: &'a str,
    source_epoch: u64,
    /// When the source's positions were read.
    read_ms: u64,
    /// Each database's last seq in the source.
    databases: std::collections::BTreeMap<&'a str, u64>,
    /// When the source created each database (a database dropped and created again
    /// has another time).
    created_ms: std::collections::BTreeMap<&'a str, u64>,
}

/// Writes `migration/offsets.json` (under a temporary name first, fsync'd, renamed).
pub(super) fn write_offsets(
    dest: &Path,
    meta: &SourceMeta,
    source_dir: &Path,
    positions: &[(String, u64, u64)],
) -> Result<()> {
    let offsets = Offsets {
        source_dir: source_dir.display().to_string(),
        source_service_id: &meta.service_id,
        source_epoch: meta.epoch,
        read_ms: now_ms(),
        databases: positions.iter().map(|(n, s, _)| (n.as_str(), *s)).collect(),
        created_ms: positions.iter().map(|(n, _, c)| (n.as_str(), *c)).collect(),
    };
    let path = dest.join(OFFSETS_FILE);
    let dir = path.parent().expect("a file in a directory");
    if !dir.is_dir() {
        create_dir(dir, 0o700)?;
    }
    let mut text = serde_json::to_string_pretty(&offsets).expect("offsets always encode");
    text.push('\n');
    let temporary = path.with_extension("json.tmp");
    let written = (|| -> std::io::Result<()> {
        let mut file = File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)
    })();
    written.map_err(|e| StoreError::io(format!("writing {}", path.display()), e))?;
    sync_dir(dir)
}

/// The dump of refused documents.
pub(super) struct Dump {
    file: File,
    path: std::path::PathBuf,
}

/// One line of the dump.
#[derive(Serialize)]
struct DumpLine<'a> {
    db: &'a str,
    /// The key, lossily decoded when it is not UTF-8; `key_hex` has its bytes.
    key: &'a str,
    key_hex: String,
    rev: u64,
    error: &'a str,
    /// The stored value (format 1: the rev, then the msgpack value) as it is.
    stored_hex: String,
}

impl Dump {
    /// Opens the dump at `path`, cut back to `length` (what the last commit covered).
    pub(super) fn open(path: &Path, length: u64) -> Result<Dump> {
        let fail = |e| StoreError::io(format!("opening the dump {}", path.display()), e);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(fail)?;
        file.set_len(length).map_err(fail)?;
        file.seek(SeekFrom::End(0)).map_err(fail)?;
        Ok(Dump {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Adds one refused document.
    pub(super) fn write(
        &mut self,
        db: &str,
        key: &[u8],
        stored: &[u8],
        refusal: &Refusal,
    ) -> Result<()> {
        let line = DumpLine {
            db,
            key: &refusal.key,
            key_hex: hex::encode(key),
            rev: refusal.rev,
            error: &refusal.error,
            stored_hex: hex::encode(stored),
        };
        let mut text = serde_json::to_string(&line).expect("a dump line always encodes");
        text.push('\n');
        self.file
            .write_all(text.as_bytes())
            .map_err(|e| StoreError::io(format!("writing the dump {}", self.path.display()), e))
    }

    /// Makes what was written durable; returns the dump's length.
    pub(super) fn sync(&mut self) -> Result<u64> {
        let fail = |e| StoreError::io(format!("writing the dump {}", self.path.display()), e);
        self.file.sync_data().map_err(fail)?;
        self.file.stream_position().map_err(fail)
    }
}
