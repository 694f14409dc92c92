//! `cairn-store`: the storage engine of Cairn. One LMDB environment per working
//! directory holds every piece of state: named databases of msgpack documents, each with
//! a change log, and the service's own tables. Reads use short read transactions on any
//! thread; every write goes through one writer thread that group-commits with fsync.
//! `backup` makes, verifies and restores consistent copies of a working directory;
//! `Store::usage` and `disk_usage` tell how much room the data and a directory take.
//! Each database has a configuration (the offline flag, secondary indexes kept by every
//! write and queried with `DatabaseView::find`, rebuilt by resync steps).
//! Synchronous on purpose: no tokio, no networking. The byte layout is in `FORMAT.md`.

pub mod backup;
pub mod checksum;
mod error;
pub mod format;
mod index;
mod jobs;
pub mod journal;
mod lock;
pub mod migrate;
mod status;
mod store;
mod usage;
mod validate;
mod writer;

pub use error::{Result, StoreError};
pub use format::{
    Access, ChangeOp, ChangeRecordRef, DatabaseConfig, FollowRecord, IndexDef, Retention,
    SessionRecord, SyncPosition, SyncStop, UserRecord, FORMAT_VERSION, MAX_GRANTS,
};
pub use index::{
    validate_index_defs, FoundPage, IndexKey, IndexQuery, MAX_INDEXES, MAX_INDEX_STRING_BYTES,
};
pub use jobs::{JobKind, JobRecord, JobStatus};
pub use lock::{DirLock, LOCK_FILE};
pub use status::{ServiceMode, ServiceStatus, MAX_STATUS_MESSAGE_CHARS};
pub use store::{
    now_ms, Change, DatabaseInfo, DatabaseView, DocRef, Document, Scan, ScanPage, ScanRange,
    Snapshot, StateVersion, Store, StoreMeta, StoreOptions, DEFAULT_JOURNAL_RETAIN_BYTES,
    DEFAULT_MAP_SIZE, DEFAULT_MAX_VALUE_BYTES, MAX_CHANGES_LIMIT, MAX_SCAN_LIMIT, STORE_DIR,
};
pub use usage::{
    disk_usage, file_system_space, DatabaseUsage, DiskUsage, EnvUsage, FsSpace, JournalUsage,
    StoreUsage,
};
pub use validate::{
    validate_database_name, validate_key, validate_key_bytes, validate_value, MAX_KEY_BYTES,
};
pub use writer::{
    CommitHook, DatabaseCommit, GroupHook, GroupStats, IndexEntry, JournalEntry, JournalHook, Op,
    Reply, ResyncChunk, SyncLineage, Write, Written, MAX_BATCH_OPS,
};
