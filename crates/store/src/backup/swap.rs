//! The live restore's swap of a working directory's environment directory (`DIR/store`)
//! for the one of a staged restore, and the way back. A service restores while it runs:
//! it stages the backup beside its directory (`stage_restore`), closes its store, then
//! `swap_environment` renames `DIR/store` aside (the service keeps it in its scratch,
//! `DIR/tmp/store.replaced-STAMP`), renames `STAGED/store` into its place and fsyncs both
//! directories. When that fails part way, or when the restored environment does not
//! open, `SwappedEnvironment::roll_back` puts the old environment back. Only the
//! environment moves: the directory's other files (configuration, certificates, runtime
//! entries) stay where they are. Closing, opening and everything else a restore does
//! stay with the caller.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use super::fs::{parent, rename_new, sync_dir};
use crate::error::{Result, StoreError};
use crate::store::STORE_DIR;

/// Name, inside the working directory, that a restored environment takes for a moment
/// while `SwappedEnvironment::roll_back` removes it.
const FAILED_RESTORE_DIR: &str = "store.failed-restore";

/// A working directory whose environment `swap_environment` moved aside: where it is
/// kept, and the way back.
#[derive(Debug)]
pub struct SwappedEnvironment {
    /// The working directory.
    dir: PathBuf,
    /// Where its old environment directory is kept.
    replaced: PathBuf,
}

/// A `swap_environment` that failed: what went wrong, and the way back when the old
/// environment is still aside.
#[derive(Debug)]
pub struct SwapFailed {
    pub error: StoreError,
    /// `Some` when the old environment is still at `replaced`: `roll_back` it before
    /// the directory is opened again. `None`: the old environment is in place, as it was.
    pub moved: Option<SwappedEnvironment>,
}

impl fmt::Display for SwapFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for SwapFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Renames `DIR/store` to `replaced` (a path that does not exist yet, in an existing
/// directory of the same file system) and the environment of the staged restore
/// `staged` (`STAGED/store`, see `stage_restore`) to `DIR/store`, then fsyncs `DIR` and
/// the directory that holds `replaced`. The store of `dir` must be closed. Renames never
/// replace anything. When the second rename fails, the first is undone at once.
pub fn swap_environment(
    dir: &Path,
    staged: &Path,
    replaced: &Path,
) -> std::result::Result<SwappedEnvironment, Box<SwapFailed>> {
    let live = dir.join(STORE_DIR);
    let failure = |error, moved| Box::new(SwapFailed { error, moved });
    move_dir(&live, replaced).map_err(|error| failure(error, None))?;
    let swapped = SwappedEnvironment {
        dir: dir.to_path_buf(),
        replaced: replaced.to_path_buf(),
    };
    if let Err(error) = move_dir(&staged.join(STORE_DIR), &live) {
        return Err(match move_dir(replaced, &live) {
            Ok(()) => failure(error, None),
            Err(error) => failure(error, Some(swapped)),
        });
    }
    match sync_dir(dir).and_then(|()| sync_dir(parent(replaced))) {
        Ok(()) => Ok(swapped),
        Err(error) => Err(failure(error, Some(swapped))),
    }
}

impl SwappedEnvironment {
    /// Where the old environment directory is kept.
    pub fn replaced(&self) -> &Path {
        &self.replaced
    }

    /// Puts the old environment back (the restored one failed to open, or the swap
    /// failed part way): whatever is at `DIR/store` is removed (renamed to
    /// `DIR/store.failed-restore` first, so that its name is free at once even if
    /// removing it fails), the old one is renamed back to `DIR/store` and `DIR` is
    /// fsync'd. Does nothing when the old environment is no longer at `replaced`.
    pub fn roll_back(self) -> Result<()> {
        if !self.replaced.exists() {
            return Ok(());
        }
        let live = self.dir.join(STORE_DIR);
        if live.exists() {
            let failed = self.dir.join(FAILED_RESTORE_DIR);
            let _ = fs::remove_dir_all(&failed);
            move_dir(&live, &failed)?;
            let _ = fs::remove_dir_all(&failed);
        }
        move_dir(&self.replaced, &live)?;
        sync_dir(&self.dir)
    }
}

/// Renames the directory `from` to `to`, which must not exist.
fn move_dir(from: &Path, to: &Path) -> Result<()> {
    rename_new(from, to).map_err(|e| {
        StoreError::io(
            format!("renaming {} to {}", from.display(), to.display()),
            e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, StoreOptions};

    /// A working directory under `root` whose store holds database "db" with one
    /// document, `key` = `value` (a msgpack positive fixint); returns it and the
    /// store's service id.
    fn working_dir(root: &Path, name: &str, key: &str, value: u8) -> (PathBuf, String) {
        let dir = root.join(name);
        let store = Store::create(&dir, StoreOptions::default()).unwrap();
        store.create_database("db").unwrap();
        store.put("db", key, &[value], None).unwrap();
        fs::create_dir(dir.join("tmp")).unwrap();
        (dir, store.meta().service_id.clone())
    }

    /// The service id of the store of `dir` and the document keys of "db".
    fn contents(dir: &Path) -> (String, Vec<String>) {
        let store = Store::open(dir, StoreOptions::default()).unwrap();
        let keys = store
            .scan("db", &crate::store::Scan::all(10))
            .unwrap()
            .docs
            .into_iter()
            .map(|doc| doc.key)
            .collect();
        (store.meta().service_id.clone(), keys)
    }

    #[test]
    fn a_swap_puts_the_staged_environment_in_place_and_a_roll_back_the_old_one() {
        let scratch = tempfile::tempdir().unwrap();
        let (dir, old_id) = working_dir(scratch.path(), "data", "old", 1);
        let (staged, new_id) = working_dir(scratch.path(), "data.restoring", "new", 2);
        fs::write(dir.join("cairn.toml"), "listen = []\n").unwrap();
        let replaced = dir.join("tmp/store.replaced-1");

        let swapped = swap_environment(&dir, &staged, &replaced).unwrap();
        assert_eq!(swapped.replaced(), replaced);
        assert!(
            !staged.join(STORE_DIR).exists(),
            "the staged environment moved"
        );
        assert!(replaced.join("data.mdb").is_file());
        assert!(dir.join("cairn.toml").is_file(), "other files stay");
        assert_eq!(contents(&dir), (new_id, vec!["new".to_string()]));

        swapped.roll_back().unwrap();
        assert!(!replaced.exists());
        assert!(!dir.join(FAILED_RESTORE_DIR).exists());
        assert!(dir.join("cairn.toml").is_file());
        assert_eq!(contents(&dir), (old_id, vec!["old".to_string()]));
    }

    #[test]
    fn a_failed_swap_leaves_the_old_environment_in_place() {
        let scratch = tempfile::tempdir().unwrap();
        let (dir, old_id) = working_dir(scratch.path(), "data", "old", 1);
        let expected = (old_id, vec!["old".to_string()]);

        // The staged restore holds no environment: the second rename fails and the
        // first is undone.
        let empty = scratch.path().join("empty.restoring");
        fs::create_dir(&empty).unwrap();
        let replaced = dir.join("tmp/store.replaced-1");
        let failed = swap_environment(&dir, &empty, &replaced).unwrap_err();
        assert!(failed.error.to_string().contains("renaming"), "{failed}");
        assert!(failed.moved.is_none());
        assert!(!replaced.exists());
        assert_eq!(contents(&dir), expected);

        // The place for the old environment is taken: nothing moves, and what is
        // there is left alone.
        let (staged, _) = working_dir(scratch.path(), "data.restoring", "new", 2);
        let taken = dir.join("tmp/taken");
        fs::create_dir(&taken).unwrap();
        let failed = swap_environment(&dir, &staged, &taken).unwrap_err();
        assert!(failed.moved.is_none());
        assert!(taken.is_dir());
        assert!(staged.join(STORE_DIR).join("data.mdb").is_file());
        assert_eq!(contents(&dir), expected);
    }

    #[test]
    fn a_roll_back_after_a_partial_swap_puts_the_old_environment_back() {
        let scratch = tempfile::tempdir().unwrap();
        let (dir, old_id) = working_dir(scratch.path(), "data", "old", 1);
        // As a swap that failed between its renames leaves it: the old environment
        // aside, none in its place.
        let replaced = dir.join("tmp/store.replaced-1");
        fs::rename(dir.join(STORE_DIR), &replaced).unwrap();
        let swapped = SwappedEnvironment {
            dir: dir.clone(),
            replaced: replaced.clone(),
        };
        swapped.roll_back().unwrap();
        assert!(!replaced.exists());
        assert_eq!(contents(&dir), (old_id, vec!["old".to_string()]));
    }
}
