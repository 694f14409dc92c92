//! File-system work of backups and restores: walking a directory, copying a file while
//! hashing it (with the checksum a manifest version names: `Checksum`), fsync of files and directories, free space, renames that never replace
//! (and an atomic exchange), UTC stamps for names, and `ClaimedDir`, a scratch directory
//! (`DST.partial`, `DIR.restoring`) held with a lock so that a leftover of a killed run
//! is recognised and reused while a live run is left alone.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, renameat_with, FlockOperation, RenameFlags, CWD};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::direct::DirectWriter;
use super::progress::Tracker;
use crate::error::{Result, StoreError};

/// Size of the buffer of every copy and hash.
pub(crate) const CHUNK: usize = 1 << 20;

/// Deepest directory nesting a walk follows (symbolic links may loop).
const MAX_DEPTH: usize = 32;

/// The raw OS error numbers that mean "no room on the device".
const NO_SPACE_ERRNOS: [i32; 2] = [28 /* ENOSPC */, 122 /* EDQUOT */];

/// An I/O error while writing `path`: a full file system becomes `StorageFull`.
pub(crate) fn write_error(path: &Path, error: std::io::Error) -> StoreError {
    if error
        .raw_os_error()
        .is_some_and(|e| NO_SPACE_ERRNOS.contains(&e))
    {
        StoreError::StorageFull {
            reason: format!(
                "the file system is full while writing {} ({error}): free some space or choose another target",
                path.display()
            ),
        }
    } else {
        StoreError::io(format!("writing {}", path.display()), error)
    }
}

/// A file found by `walk`: its path relative to the root (with `/`), where it is, and
/// its permission bits.
#[derive(Debug, Clone)]
pub(crate) struct WalkedFile {
    pub rel: String,
    pub path: PathBuf,
    pub size: u64,
    pub mode: u32,
}

/// Every regular file under `root`, sorted by relative path, following symbolic links.
/// `skip` is asked about every relative path (files and directories) and leaves out
/// what it returns true for; sockets, fifos and devices are left out with a warning.
pub(crate) fn walk(root: &Path, skip: &dyn Fn(&str) -> bool) -> Result<Vec<WalkedFile>> {
    let mut out = Vec::new();
    walk_into(root, "", 0, skip, &mut out)?;
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

fn walk_into(
    dir: &Path,
    prefix: &str,
    depth: usize,
    skip: &dyn Fn(&str) -> bool,
    out: &mut Vec<WalkedFile>,
) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(StoreError::InvalidArgument {
            reason: format!(
                "{} is nested more than {MAX_DEPTH} deep: remove the symbolic link loop",
                dir.display()
            ),
        });
    }
    let entries =
        fs::read_dir(dir).map_err(|e| StoreError::io(format!("listing {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(format!("listing {}", dir.display()), e))?;
        let path = entry.path();
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(StoreError::InvalidArgument {
                reason: format!("{}: the name is not UTF-8: rename it", path.display()),
            });
        };
        let rel = format!("{prefix}{name}");
        if skip(&rel) {
            continue;
        }
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            // Gone since the listing (a socket closed, a scratch file removed).
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::io(format!("reading {}", path.display()), e)),
        };
        if meta.is_dir() {
            walk_into(&path, &format!("{rel}/"), depth + 1, skip, out)?;
        } else if meta.is_file() {
            out.push(WalkedFile {
                rel,
                path,
                size: meta.len(),
                mode: meta.permissions().mode() & 0o7777,
            });
        } else {
            tracing::warn!(path = %path.display(), "not a regular file or directory: skipped");
        }
    }
    Ok(())
}

/// The checksum of a backup's files: manifest version 1 uses SHA-256, version 2 BLAKE3
/// (several times faster, hashing with SIMD, and as collision-resistant). Written in a
/// manifest as `sha256` or `blake3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Checksum {
    Sha256,
    Blake3,
}

impl Checksum {
    /// What new backups use.
    pub const CURRENT: Checksum = Checksum::Blake3;

    /// The name people know it by: `SHA-256`, `BLAKE3`.
    pub fn name(self) -> &'static str {
        match self {
            Checksum::Sha256 => "SHA-256",
            Checksum::Blake3 => "BLAKE3",
        }
    }

    /// A hasher of this checksum.
    pub fn hasher(self) -> FileHasher {
        match self {
            Checksum::Sha256 => FileHasher::Sha256(Sha256::new()),
            Checksum::Blake3 => FileHasher::Blake3(Box::new(blake3::Hasher::new())),
        }
    }

    /// The lower-case hex digest of `bytes`.
    pub fn digest(self, bytes: &[u8]) -> String {
        let mut hasher = self.hasher();
        hasher.update(bytes);
        hasher.finish()
    }
}

/// A checksum being computed (see `Checksum`).
pub enum FileHasher {
    Sha256(Sha256),
    Blake3(Box<blake3::Hasher>),
}

impl FileHasher {
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            FileHasher::Sha256(hasher) => hasher.update(bytes),
            FileHasher::Blake3(hasher) => {
                hasher.update(bytes);
            }
        }
    }

    /// The lower-case hex digest (64 digits for both).
    pub fn finish(self) -> String {
        match self {
            FileHasher::Sha256(hasher) => hex::encode(hasher.finalize()),
            FileHasher::Blake3(hasher) => hasher.finalize().to_hex().to_string(),
        }
    }
}

/// Writes what it is given to a file while hashing and counting it.
pub struct HashingFile {
    file: File,
    path: PathBuf,
    hasher: FileHasher,
    bytes: u64,
    /// Set when the file was opened with `O_DIRECT`.
    direct: Option<DirectWriter>,
}

impl HashingFile {
    /// Creates `path`, which must not exist, with permission bits `mode`, hashed with
    /// `checksum`.
    pub fn create(path: &Path, mode: u32, checksum: Checksum) -> Result<HashingFile> {
        let file = open_new(path, mode, 0).map_err(|e| write_error(path, e))?;
        Ok(HashingFile {
            file,
            path: path.to_path_buf(),
            hasher: checksum.hasher(),
            bytes: 0,
            direct: None,
        })
    }

    /// As `create`, writing around the page cache (`O_DIRECT`, as `mdb_copy` does) where
    /// the file system allows it: a large copy neither waits for the cache to be flushed
    /// nor pushes the service's pages out of it.
    pub fn create_uncached(path: &Path, mode: u32, checksum: Checksum) -> Result<HashingFile> {
        let direct_flag =
            i32::try_from(rustix::fs::OFlags::DIRECT.bits()).expect("O_DIRECT is a small flag");
        match open_new(path, mode, direct_flag) {
            Ok(file) => {
                let direct = DirectWriter::start(&file).map_err(|e| write_error(path, e))?;
                Ok(HashingFile {
                    file,
                    path: path.to_path_buf(),
                    hasher: checksum.hasher(),
                    bytes: 0,
                    direct: Some(direct),
                })
            }
            // tmpfs and some others refuse O_DIRECT: write through the cache there.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                HashingFile::create(path, mode, checksum)
            }
            Err(e) => Err(write_error(path, e)),
        }
    }

    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
        let written = match &mut self.direct {
            Some(direct) => direct.write(data),
            None => self.file.write_all(data),
        };
        written.map_err(|e| write_error(&self.path, e))
    }

    /// Flushes the file to disk, drops it from the page cache (so that reading it back
    /// reads the disk, and a backup does not push the service's pages out), and returns
    /// its size and checksum.
    pub fn finish(mut self) -> Result<(u64, String)> {
        if let Some(direct) = self.direct.take() {
            direct
                .finish(&mut self.file)
                .map_err(|e| write_error(&self.path, e))?;
        }
        self.file
            .sync_all()
            .map_err(|e| write_error(&self.path, e))?;
        let _ = rustix::fs::fadvise(&self.file, 0, None, rustix::fs::Advice::DontNeed);
        Ok((self.bytes, self.hasher.finish()))
    }
}

/// Creates `path`, which must not exist, for writing with the open flags `flags` and
/// exactly the permission bits `mode`.
fn open_new(path: &Path, mode: u32, flags: i32) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(flags)
        .open(path)?;
    // The umask may have taken bits away: set them exactly.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(file)
}

/// Copies `from` to the new file `to` with permission bits `mode`, fsync'd; returns the
/// size and `checksum` of what was written.
pub(crate) fn copy_file(
    from: &Path,
    to: &Path,
    mode: u32,
    checksum: Checksum,
    tracker: &mut Tracker,
) -> Result<(u64, String)> {
    let mut source =
        File::open(from).map_err(|e| StoreError::io(format!("opening {}", from.display()), e))?;
    let mut target = HashingFile::create(to, mode, checksum)?;
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = read_some(&mut source, &mut buffer, from)?;
        if n == 0 {
            break;
        }
        target.write(&buffer[..n])?;
        tracker.advance(n as u64)?;
    }
    target.finish()
}

/// The size and `checksum` of a file.
pub(crate) fn hash_file(
    path: &Path,
    checksum: Checksum,
    tracker: &mut Tracker,
) -> Result<(u64, String)> {
    let mut file =
        File::open(path).map_err(|e| StoreError::io(format!("opening {}", path.display()), e))?;
    let mut hasher = checksum.hasher();
    let mut bytes = 0u64;
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = read_some(&mut file, &mut buffer, path)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        bytes += n as u64;
        tracker.advance(n as u64)?;
    }
    Ok((bytes, hasher.finish()))
}

fn read_some(file: &mut File, buffer: &mut [u8], path: &Path) -> Result<usize> {
    loop {
        match file.read(buffer) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(StoreError::io(format!("reading {}", path.display()), e)),
        }
    }
}

/// Creates the directory `path` (its parent exists) with permission bits `mode`.
pub(crate) fn create_dir(path: &Path, mode: u32) -> Result<()> {
    fs::DirBuilder::new()
        .mode(mode)
        .create(path)
        .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(mode)))
        .map_err(|e| write_error(path, e))
}

/// Creates the missing parent directories of `rel` under `target_root`, each with the
/// permission bits of the same directory under `source_root` (0700 when there is none;
/// the owner always keeps rwx), and records each one created in `created`.
pub(crate) fn create_parents(
    source_root: &Path,
    target_root: &Path,
    rel: &str,
    created: &mut Vec<PathBuf>,
) -> Result<()> {
    let mut sub = PathBuf::new();
    let mut parts: Vec<&str> = rel.split('/').collect();
    parts.pop();
    for part in parts {
        sub.push(part);
        let target = target_root.join(&sub);
        if target.is_dir() {
            continue;
        }
        let mode = fs::metadata(source_root.join(&sub))
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o700);
        create_dir(&target, mode | 0o700)?;
        created.push(target);
    }
    Ok(())
}

/// Makes a directory's entries (names, renames) durable.
pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| StoreError::io(format!("syncing directory {}", path.display()), e))
}

/// Bytes available to an unprivileged writer on the file system of `path`.
pub(crate) fn free_bytes(path: &Path) -> Result<u64> {
    Ok(crate::usage::file_system_space(path)?.available_bytes)
}

/// Renames `from` to `to`, failing with `AlreadyExists` rather than replacing `to`.
pub(crate) fn rename_new(from: &Path, to: &Path) -> std::io::Result<()> {
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        // A file system without RENAME_NOREPLACE: check, then rename.
        Err(rustix::io::Errno::INVAL) => {
            if fs::symlink_metadata(to).is_ok() {
                return Err(ErrorKind::AlreadyExists.into());
            }
            fs::rename(from, to)
        }
        Err(e) => Err(e.into()),
    }
}

/// Swaps two paths in one step. `Ok(false)` when the file system cannot do that.
pub(crate) fn exchange(a: &Path, b: &Path) -> std::io::Result<bool> {
    match renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::INVAL) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// `path` made absolute, with a last component that names it (not `.` or `..`).
pub(crate) fn absolute(path: &Path) -> Result<PathBuf> {
    let absolute = std::path::absolute(path)
        .map_err(|e| StoreError::io(format!("resolving {}", path.display()), e))?;
    if absolute.file_name().is_some() && !absolute.ends_with("..") {
        return Ok(absolute);
    }
    fs::canonicalize(&absolute)
        .map_err(|e| StoreError::io(format!("resolving {}", path.display()), e))
}

/// The path beside `path` whose name is `path`'s name followed by `suffix`.
pub(crate) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// The parent directory of an absolute path.
pub(crate) fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("/"))
}

/// `ms` since the epoch as a UTC stamp for file names: `20261121T205800Z`.
pub fn utc_stamp(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).expect("u64::MAX ms are some 2e11 days");
    let rest = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// A scratch directory this process holds (an exclusive `flock` on the directory
/// itself) until it is dropped, renamed into place or removed.
#[derive(Debug)]
pub(crate) struct ClaimedDir {
    path: PathBuf,
    _lock: File,
}

impl ClaimedDir {
    /// Creates the directory `path` (mode 0700). A directory already there that no live
    /// process holds is the leftover of a killed run: it is emptied and reused. One that
    /// is held fails with `DirectoryInUse`.
    pub(crate) fn claim(path: &Path) -> Result<ClaimedDir> {
        match fs::DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(write_error(path, e)),
        }
        let lock = File::open(path)
            .map_err(|e| StoreError::io(format!("opening {}", path.display()), e))?;
        let in_use = || StoreError::DirectoryInUse {
            dir: path.to_path_buf(),
            pid: None,
        };
        match flock(&lock, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Err(in_use()),
            Err(e) => {
                return Err(StoreError::io(
                    format!("locking {}", path.display()),
                    e.into(),
                ))
            }
        }
        // The run that held it may have finished and renamed it away meanwhile.
        let held = lock
            .metadata()
            .map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?;
        match fs::symlink_metadata(path) {
            Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() && now.is_dir() => {}
            _ => return Err(in_use()),
        }
        let entries = fs::read_dir(path)
            .map_err(|e| StoreError::io(format!("listing {}", path.display()), e))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| StoreError::io(format!("listing {}", path.display()), e))?;
            let leftover = entry.path();
            let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                fs::remove_dir_all(&leftover)
            } else {
                fs::remove_file(&leftover)
            };
            removed.map_err(|e| {
                StoreError::io(format!("removing the leftover {}", leftover.display()), e)
            })?;
        }
        Ok(ClaimedDir {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the directory and everything in it (after a failure or a cancel).
    pub(crate) fn remove(self) {
        if let Err(error) = fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), %error, "cannot remove a scratch directory");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps_are_civil_dates() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400_000), "20000229T000000Z");
        assert_eq!(utc_stamp(1_795_294_680_000), "20261121T205800Z");
    }

    #[test]
    fn an_uncached_file_holds_every_byte_written_whatever_the_sizes() {
        let scratch = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3 * CHUNK + 12_345)
            .map(|i| u8::try_from(i * 7 % 251).expect("below 251"))
            .collect();
        // Whole chunks, an unaligned tail, block-sized and odd writes.
        for (case, sizes) in [
            vec![CHUNK, CHUNK],
            vec![1, 4095, 4096, 70_000],
            vec![CHUNK + 5, 3, CHUNK - 8],
            vec![3 * CHUNK + 12_345],
            vec![],
        ]
        .into_iter()
        .enumerate()
        {
            let path = scratch.path().join(format!("copy{case}"));
            let mut file = HashingFile::create_uncached(&path, 0o600, Checksum::Blake3).unwrap();
            let mut at = 0;
            for size in sizes {
                file.write(&data[at..at + size]).unwrap();
                at += size;
            }
            let (bytes, digest) = file.finish().unwrap();
            assert_eq!(bytes, at as u64, "case {case}");
            assert_eq!(fs::read(&path).unwrap(), &data[..at], "case {case}");
            assert_eq!(digest, Checksum::Blake3.digest(&data[..at]), "case {case}");
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn a_claimed_directory_is_held_and_a_leftover_is_emptied() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("x.partial");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("old"), b"from a killed run").unwrap();
        let claimed = ClaimedDir::claim(&path).unwrap();
        assert_eq!(fs::read_dir(&path).unwrap().count(), 0);
        assert!(matches!(
            ClaimedDir::claim(&path),
            Err(StoreError::DirectoryInUse { .. })
        ));
        claimed.remove();
        assert!(!path.exists());
    }

    #[test]
    fn renames_never_replace() {
        let scratch = tempfile::tempdir().unwrap();
        let (a, b) = (scratch.path().join("a"), scratch.path().join("b"));
        fs::create_dir(&a).unwrap();
        fs::create_dir(&b).unwrap();
        let error = rename_new(&a, &b).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::AlreadyExists);
        fs::write(a.join("in-a"), b"").unwrap();
        assert!(exchange(&a, &b).unwrap());
        assert!(b.join("in-a").exists() && !a.join("in-a").exists());
    }
}
