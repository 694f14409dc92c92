//! Backups of a working directory: making them (`create_backup`), checking them
//! (`verify_backup`) and restoring them (`restore_backup` offline; `stage_restore` then
//! `swap_environment` for a service, which swaps its environment directory while its
//! store is closed). A backup directory is itself a working directory, with
//! `MANIFEST.json` on top (see FORMAT.md). Every long call reports progress and stops
//! soon after a cancel, leaving nothing. The files of this folder:
//!
//! - `create.rs`: `create_backup`, the copy of a working directory into `DST.partial`,
//!   verified, then renamed to `DST`; the free-space check before it.
//! - `env.rs`: LMDB's compacting copy of the environment, streamed into the backup.
//! - `manifest.rs`: `MANIFEST.json`, its fields and its own checksum.
//! - `verify.rs` and `check.rs`: verification of the files, then of every database.
//! - `restore.rs`: staging a backup beside a directory and swapping it in.
//! - `swap.rs`: the live restore's swap of the environment directory, and the way back.
//! - `progress.rs`: `BackupControl` (name, cancel, progress callback) and its tracker.
//! - `direct.rs`: writing the environment's copy around the page cache, double-buffered.
//! - `fs.rs`: the file-system work under all of them (walks, hashed copies, fsync,
//!   renames that never replace, scratch directories).

mod check;
mod create;
mod direct;
mod env;
mod fs;
mod manifest;
mod progress;
mod restore;
mod swap;
mod verify;

pub use create::{check_free_space, create_backup, estimate_backup_bytes, BackupSummary};
pub use env::stream_env_copy;
pub(crate) use fs::{absolute, copy_file, create_dir, create_parents, parent, sync_dir, walk};
pub use fs::{utc_stamp, Checksum, FileHasher, HashingFile};
pub use manifest::{
    read_manifest, DatabaseEntry, FileEntry, Manifest, MANIFEST_FILE, MANIFEST_VERSION,
};
pub(crate) use progress::Tracker;
pub use progress::{BackupControl, BackupProgress, ProgressFn};
pub use restore::{
    restore_backup, restore_backup_with, stage_restore, stage_restore_with, swap_in,
    RestoreSummary, STAGING_SUFFIX,
};
pub use swap::{swap_environment, SwapFailed, SwappedEnvironment};
pub(crate) use verify::hold_against_services;
pub use verify::{verify_backup, verify_backup_with, Problem, VerifyReport};

use crate::lock::LOCK_FILE;

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
