//! `Store`: the open LMDB environment of a working directory, shared by every thread of
//! a process. Opening and creating it is in `open.rs`; reads run in short read
//! transactions (`Snapshot`, `snapshot.rs`) that any thread may open, with one database
//! at a time seen through a `DatabaseView` (`view.rs`, with the key ranges of scans in
//! `bounds.rs`; `prefetch.rs` reads each leaf page a scan enters in at once). Writes go
//! to the writer thread (see `crate::writer`) through `Store::submit` or the blocking
//! helpers built on it.

mod bounds;
mod open;
mod prefetch;
mod snapshot;
mod view;

use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use heed::{Env, WithoutTls};

pub use snapshot::{DatabaseInfo, Snapshot, StateVersion};
pub use view::{Change, DatabaseView, DocRef, Document, Scan, ScanPage, ScanRange};

pub(crate) use bounds::{as_slice_bound, bounds_empty, extend, max_low, min_high};
pub(crate) use open::{
    close_env, initialise_with, load, open_env, random_epoch, EnvAccess, Tables, Unfinished,
};
pub(crate) use snapshot::{read_catalog, read_config};
pub(crate) use view::Budget;

use crate::error::Result;
use crate::format::DatabaseConfig;
use crate::index::{FoundPage, IndexQuery};
use crate::writer::{self, WriterMessage};

/// Sub-directory of a working directory that holds the LMDB environment.
pub const STORE_DIR: &str = "store";

/// Default map size: 1 TiB of address space (it costs no memory or disk until used).
pub const DEFAULT_MAP_SIZE: usize = 1 << 40;

/// Default largest value: 16 MiB.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 16 << 20;

/// Largest number of documents one scan call may ask for.
pub const MAX_SCAN_LIMIT: usize = 100_000;

/// Largest number of changes one `changes` call may ask for.
pub const MAX_CHANGES_LIMIT: usize = 100_000;

/// Settings of an open store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// LMDB map size in bytes: the most the environment may ever hold.
    pub map_size: usize,
    /// Largest accepted value in bytes.
    pub max_value_bytes: usize,
    /// Most write requests the writer folds into one commit.
    pub max_group_requests: usize,
    /// How many bytes of entries the journal keeps for mirrors (always at least the
    /// newest entry).
    pub journal_retain_bytes: u64,
}

/// Default journal retention: 256 MiB of entries.
pub const DEFAULT_JOURNAL_RETAIN_BYTES: u64 = 256 << 20;

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            map_size: DEFAULT_MAP_SIZE,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            max_group_requests: 4096,
            journal_retain_bytes: DEFAULT_JOURNAL_RETAIN_BYTES,
        }
    }
}

/// Facts recorded when the store was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreMeta {
    pub format_version: u32,
    /// 32 hex digits, fixed for the life of the store (and carried by its copies).
    pub service_id: String,
    pub created_ms: u64,
}

/// What every handle of one open store shares; dropping the last one stops the
/// writer and closes the environment.
pub(crate) struct Shared {
    pub env: Option<Env<WithoutTls>>,
    pub tables: Tables,
    pub options: StoreOptions,
    pub meta: StoreMeta,
    pub dir: PathBuf,
    pub sender: Option<Sender<WriterMessage>>,
    pub writer_thread: Mutex<Option<JoinHandle<()>>>,
    pub commit_hook: writer::HookSlot,
    /// Which opening of an environment this is, in this process (`next_instance`): an
    /// environment put in another's place (a mirror's new copy of its leader) may
    /// number its commits from the same start.
    pub instance: u64,
}

/// A number no other store opened in this process has.
pub(crate) fn next_instance() -> u64 {
    static OPENED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    OPENED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what it has, then stop.
        self.sender.take();
        if let Some(thread) = self.writer_thread.get_mut().ok().and_then(Option::take) {
            let _ = thread.join();
        }
        // Wait until LMDB really closed the environment, so that the same directory can
        // be opened again at once in this process.
        if let Some(env) = self.env.take() {
            let closing = env.prepare_for_closing();
            closing.wait();
        }
    }
}

/// An open store: cheap to clone, shared by every thread of a process.
#[derive(Clone)]
pub struct Store {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.shared.dir)
            .field("meta", &self.shared.meta)
            .finish()
    }
}

/// Milliseconds since the Unix epoch, the clock of every stored time.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        // Saturates some 584 million years from now.
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Store {
    /// Format version, service id and creation time.
    pub fn meta(&self) -> &StoreMeta {
        &self.shared.meta
    }

    /// The working directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The settings the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.shared.options
    }

    pub(crate) fn env(&self) -> &Env<WithoutTls> {
        self.shared
            .env
            .as_ref()
            .expect("the env lives until Shared drops")
    }

    /// How many handles (clones, snapshots) of this store are alive, this one included.
    /// A restore waits for this to drop to one before it closes the environment.
    pub fn handles(&self) -> usize {
        Arc::strong_count(&self.shared)
    }

    /// Opens a read transaction: a consistent view of everything at this instant. Keep
    /// it short; a long-lived snapshot keeps old pages from being reused.
    pub fn snapshot(&self) -> Result<Snapshot> {
        Snapshot::begin(self)
    }

    /// Every database, in name order.
    pub fn list_databases(&self) -> Result<Vec<DatabaseInfo>> {
        self.snapshot()?.list_databases()
    }

    /// Counters of one database.
    pub fn database_info(&self, db: &str) -> Result<DatabaseInfo> {
        self.snapshot()?.database(db)?.info()
    }

    /// One document, or `None` when absent.
    pub fn get(&self, db: &str, key: &str) -> Result<Option<Document>> {
        self.snapshot()?.database(db)?.get(key)
    }

    /// One page of documents.
    pub fn scan(&self, db: &str, scan: &Scan) -> Result<ScanPage> {
        self.snapshot()?.database(db)?.scan(scan)
    }

    /// The changes with a seq greater than `since`, oldest first, at most `limit`.
    pub fn changes(&self, db: &str, since: u64, limit: usize) -> Result<Vec<Change>> {
        self.snapshot()?.database(db)?.changes(since, limit)
    }

    /// The configuration of one database.
    pub fn database_config(&self, db: &str) -> Result<DatabaseConfig> {
        self.snapshot()?.database_config(db)
    }

    /// One page of the documents found through an index (see `DatabaseView::find`).
    pub fn find(&self, db: &str, query: &IndexQuery) -> Result<FoundPage> {
        self.snapshot()?.database(db)?.find(query)
    }
}
