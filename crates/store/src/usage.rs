//! Storage usage, for operators (`cairn usage`): how the pages of the one LMDB
//! environment are used (`Store::usage`: pages that hold data, pages free for reuse that
//! a compacted backup leaves out, the map size, the file's size) with each database's
//! counters, and what a directory takes on disk and how much room its file system has
//! left (`disk_usage`, `file_system_space`). Free pages are counted as the pages of the
//! file that no B-tree of the current snapshot uses: the B-tree statistics of every
//! table and of the main tree, plus the two meta pages, against the last page in use.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use heed::{Env, WithoutTls};

use crate::error::{Result, StoreError};
use crate::journal::TableId;
use crate::store::{Snapshot, Store};

/// LMDB's two meta pages, at the start of every environment.
const META_PAGES: u64 = 2;

/// How many times `Store::usage` reads again when a commit lands while it reads.
const READ_TRIES: usize = 5;

/// Deepest directory nesting `disk_usage` walks.
const MAX_DEPTH: usize = 64;

/// How the pages of the environment are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvUsage {
    /// Length of `store/data.mdb`.
    pub file_bytes: u64,
    /// The map size: the most the environment may ever hold.
    pub map_size: u64,
    pub page_size: u64,
    /// Pages LMDB has handed out so far: the last page number in use, plus one.
    pub total_pages: u64,
    /// Pages that hold data: the meta pages and every B-tree's branch, leaf and overflow
    /// pages (what a compacted copy writes).
    pub used_pages: u64,
    /// The other pages: free for reuse by later writes (LMDB's free list, and pages only
    /// older snapshots still read). A compacted backup leaves them out.
    pub free_pages: u64,
}

impl EnvUsage {
    /// Bytes of the pages that hold data: about the size of a compacted copy.
    pub fn used_bytes(&self) -> u64 {
        self.used_pages * self.page_size
    }

    /// Bytes of the free pages: what a compacted copy reclaims.
    pub fn free_bytes(&self) -> u64 {
        self.free_pages * self.page_size
    }
}

/// The counters of one database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseUsage {
    pub name: String,
    pub doc_count: u64,
    /// Bytes of its documents (keys and values).
    pub doc_bytes: u64,
    /// Bytes of its change log (keys and records).
    pub log_bytes: u64,
    /// Entries of its change log: its last seq less what retention removed.
    pub log_entries: u64,
}

/// `Store::usage`'s answer: the environment and every database, in name order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUsage {
    pub env: EnvUsage,
    pub journal: JournalUsage,
    pub databases: Vec<DatabaseUsage>,
}

/// What the journal keeps for mirrors (`[store] journal_retain_mib`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JournalUsage {
    /// Its oldest and newest entries' seqs (0 and 0 when it is empty).
    pub first_seq: u64,
    pub last_seq: u64,
    /// Bytes of the entries it keeps.
    pub bytes: u64,
}

/// Pages in use as of `snapshot` (meta pages, the main tree and every table) and the
/// page size. The main tree's statistics are the environment's latest, so the count is
/// exact only when nothing committed since `snapshot` began.
pub(crate) fn used_pages(snapshot: &Snapshot, env: &Env<WithoutTls>) -> Result<(u64, u64)> {
    let (txn, tables) = (&snapshot.txn, snapshot.tables);
    let mut stats = Vec::with_capacity(TableId::ALL.len() + 1);
    for table in TableId::ALL {
        stats.push(tables.raw(table).stat(txn)?);
    }
    stats.push(env.unnamed_database_stat());
    let pages: u64 = stats
        .iter()
        .map(|s| (s.branch_pages + s.leaf_pages + s.overflow_pages) as u64)
        .sum();
    Ok((pages + META_PAGES, u64::from(stats[0].page_size)))
}

impl Store {
    /// The environment's pages and every database's counters, read in one snapshot. It
    /// reads again (a few times at most) when a commit lands while it reads, so that
    /// the page counts belong together; under a steady stream of commits the last read
    /// may be off by the pages of a commit or two.
    pub fn usage(&self) -> Result<StoreUsage> {
        let env = self.env();
        let mut tries = 0;
        loop {
            tries += 1;
            let snapshot = self.snapshot()?;
            let before = env.info();
            let (used_pages, page_size) = used_pages(&snapshot, env)?;
            let after = env.info();
            let settled =
                before.last_txn_id == snapshot.txn.id() && after.last_txn_id == before.last_txn_id;
            if !settled && tries < READ_TRIES {
                continue;
            }
            let total_pages = after.last_page_number as u64 + 1;
            let file_bytes = env.real_disk_size()?;
            let databases = snapshot
                .list_databases()?
                .into_iter()
                .map(|db| DatabaseUsage {
                    log_entries: db.last_seq + 1 - db.oldest_seq,
                    name: db.name,
                    doc_count: db.doc_count,
                    doc_bytes: db.doc_bytes,
                    log_bytes: db.log_bytes,
                })
                .collect();
            let journal = snapshot.journal_usage()?;
            return Ok(StoreUsage {
                journal,
                env: EnvUsage {
                    file_bytes,
                    map_size: after.map_size as u64,
                    page_size,
                    total_pages,
                    used_pages,
                    free_pages: total_pages.saturating_sub(used_pages),
                },
                databases,
            });
        }
    }
}

/// What a directory tree takes on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiskUsage {
    /// Bytes allocated on disk to its files and directories (as `du` counts them).
    pub bytes: u64,
    /// Regular files in it.
    pub files: u64,
}

/// What the tree under `root` takes on disk, without following symbolic links. A root
/// that does not exist takes nothing; entries removed while it walks are left out.
pub fn disk_usage(root: &Path) -> Result<DiskUsage> {
    let mut usage = DiskUsage::default();
    match fs::symlink_metadata(root) {
        Ok(meta) => add_entry(root, &meta, 0, &mut usage)?,
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io(format!("reading {}", root.display()), e)),
    }
    Ok(usage)
}

fn add_entry(path: &Path, meta: &fs::Metadata, depth: usize, usage: &mut DiskUsage) -> Result<()> {
    // st_blocks counts 512-byte units, whatever the file system's block size.
    usage.bytes += meta.blocks() * 512;
    if meta.is_file() {
        usage.files += 1;
    }
    if !meta.is_dir() {
        return Ok(());
    }
    if depth >= MAX_DEPTH {
        return Err(StoreError::InvalidArgument {
            reason: format!("{} is nested more than {MAX_DEPTH} deep", path.display()),
        });
    }
    let entries = match fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io(format!("listing {}", path.display()), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(format!("listing {}", path.display()), e))?;
        let child = entry.path();
        match fs::symlink_metadata(&child) {
            Ok(meta) => add_entry(&child, &meta, depth + 1, usage)?,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(format!("reading {}", child.display()), e)),
        }
    }
    Ok(())
}

/// The size of a file system and the room it has left for this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsSpace {
    pub total_bytes: u64,
    /// Bytes an unprivileged writer may still use (`f_bavail`).
    pub available_bytes: u64,
}

/// The file system that holds the existing path `path`: its size and free room.
pub fn file_system_space(path: &Path) -> Result<FsSpace> {
    let stats = rustix::fs::statvfs(path).map_err(|e| {
        StoreError::io(
            format!("reading the free space of {}", path.display()),
            e.into(),
        )
    })?;
    Ok(FsSpace {
        total_bytes: stats.f_blocks.saturating_mul(stats.f_frsize),
        available_bytes: stats.f_bavail.saturating_mul(stats.f_frsize),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::{create_backup, BackupControl, ENV_FILE};
    use crate::format::Retention;
    use crate::store::StoreOptions;
    use crate::writer::Op;

    /// A msgpack bin of about 1 KiB whose bytes depend on `i`.
    fn value(i: usize) -> Vec<u8> {
        let mut out = vec![0xc5, 0x04, 0x00];
        out.extend((0..1024).map(|j| u8::try_from((i + j) % 256).expect("below 256")));
        out
    }

    #[test]
    fn free_pages_grow_after_deletes_and_a_compacted_backup_leaves_them_out() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("data");
        // A short journal and a short change log, so that deleted documents leave no
        // copy in either.
        let options = StoreOptions {
            journal_retain_bytes: 64 << 10,
            ..StoreOptions::default()
        };
        let store = Store::create(&dir, options).unwrap();
        let retention = Retention {
            max_changes: Some(100),
            max_age_secs: None,
        };
        store.create_database_with("docs", retention).unwrap();
        let keys: Vec<String> = (0..20_000).map(|i| format!("key{i:06}")).collect();
        for chunk in keys.chunks(1000) {
            let ops = chunk
                .iter()
                .enumerate()
                .map(|(i, key)| Op::Put {
                    key: key.clone(),
                    value: value(i),
                    rev: None,
                })
                .collect();
            store.batch("docs", ops).unwrap();
        }
        let full = store.usage().unwrap();
        assert_eq!(full.databases.len(), 1);
        let db = &full.databases[0];
        assert_eq!((db.name.as_str(), db.doc_count), ("docs", 20_000));
        assert_eq!(db.log_entries, 100, "retention keeps 100 changes");
        assert!(db.doc_bytes > 20_000 * 1024, "{db:?}");
        let env = full.env;
        assert_eq!(env.page_size, 4096);
        assert_eq!(env.map_size, crate::store::DEFAULT_MAP_SIZE as u64);
        assert_eq!(env.used_pages + env.free_pages, env.total_pages);
        assert!(env.used_bytes() > 20_000 * 1024, "{env:?}");
        assert!(env.file_bytes >= env.used_bytes(), "{env:?}");

        // Delete nine documents in ten.
        let doomed: Vec<&String> = keys.iter().filter(|k| !k.ends_with('0')).collect();
        for chunk in doomed.chunks(1000) {
            let ops = chunk
                .iter()
                .map(|key| Op::Delete {
                    key: (*key).clone(),
                    rev: None,
                })
                .collect();
            store.batch("docs", ops).unwrap();
        }
        let thinned = store.usage().unwrap();
        let db = &thinned.databases[0];
        assert_eq!(db.doc_count, 2000);
        assert_eq!(db.log_entries, 100);
        let env = thinned.env;
        assert_eq!(env.used_pages + env.free_pages, env.total_pages);
        assert!(
            env.free_pages > full.env.free_pages + full.env.used_pages / 2,
            "most pages are free after the deletes: before {:?}, after {env:?}",
            full.env
        );
        assert!(env.used_pages < full.env.used_pages / 4, "{env:?}");
        assert!(
            env.file_bytes >= full.env.file_bytes,
            "the file never shrinks"
        );

        // A compacted backup writes the used pages and leaves the free ones out.
        let backup = scratch.path().join("backup");
        create_backup(&store, &dir, &backup, &BackupControl::default()).unwrap();
        let copied = fs::metadata(backup.join(ENV_FILE)).unwrap().len();
        assert_eq!(copied, env.used_bytes(), "the copy is the used pages");
        assert!(
            env.file_bytes - copied >= env.free_bytes(),
            "the copy is smaller by the free pages at least: {copied} bytes, {env:?}"
        );

        let disk = disk_usage(&dir).unwrap();
        assert!(disk.files >= 2, "data.mdb and lock.mdb: {disk:?}");
        assert!(disk.bytes >= env.file_bytes / 2, "{disk:?}, {env:?}");
        let copy = disk_usage(&backup).unwrap();
        assert!(copy.bytes >= copied && copy.bytes < disk.bytes, "{copy:?}");
        assert_eq!(
            disk_usage(&scratch.path().join("none")).unwrap(),
            DiskUsage::default()
        );
        let space = file_system_space(&dir).unwrap();
        assert!(space.total_bytes >= space.available_bytes && space.total_bytes > 0);
    }
}
