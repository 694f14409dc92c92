//! The one error type of `cairn-store`: every way a storage call can fail, each with its
//! own variant so that the service can map it to a stable wire code.

use std::path::PathBuf;
use std::sync::Arc;

/// Everything that can go wrong in the storage engine.
///
/// The type is `Clone` because the writer answers every caller of a failed group commit
/// with the same error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The document does not exist (delete of a missing key).
    #[error("document {key:?} not found in database {db:?}")]
    NotFound { db: String, key: String },

    /// A conditional write found another rev than the one it expected (0 = absent).
    #[error("rev conflict on {key:?}: expected rev {expected}, current rev is {current}")]
    RevConflict {
        key: String,
        expected: u64,
        current: u64,
    },

    /// A document key is empty, too long or not UTF-8.
    #[error("invalid key: {reason}")]
    InvalidKey { reason: String },

    /// A database name breaks the naming rule.
    #[error("invalid database name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },

    /// A value is not exactly one well-formed msgpack value.
    #[error("invalid value: {reason}")]
    InvalidValue { reason: String },

    /// A value is larger than the configured limit.
    #[error("value too large: {size} bytes, the limit is {limit} bytes")]
    ValueTooLarge { size: usize, limit: usize },

    /// An argument other than a key, name or value is out of range (scan limit, batch size).
    #[error("invalid argument: {reason}")]
    InvalidArgument { reason: String },

    /// `create` of a database that already exists.
    #[error("database {name:?} already exists")]
    DatabaseExists { name: String },

    /// A call names a database that does not exist.
    #[error("database {name:?} does not exist")]
    DatabaseMissing { name: String },

    /// A batch to a database that is offline.
    #[error("database {name:?} is offline")]
    DatabaseOffline { name: String },

    /// A configuration change or a resync of a database that is online.
    #[error("database {name:?} is online: take it offline first (cairn db offline {name})")]
    DatabaseOnline { name: String },

    /// A write would give a unique index's value to a second document.
    #[error("value {value} of unique index {index:?} of database {db:?} is already held by document {existing_key:?} (refused for {key:?})")]
    UniqueViolation {
        db: String,
        index: String,
        /// The value, as display text.
        value: String,
        /// The document being written.
        key: String,
        /// The document that holds the value.
        existing_key: String,
    },

    /// A document's value at an index's field cannot be indexed (map, array, binary,
    /// extension, NaN, string over 500 bytes).
    #[error("document {key:?} cannot be indexed by index {index:?} of database {db:?}: {reason}")]
    IndexValue {
        db: String,
        index: String,
        key: String,
        reason: String,
    },

    /// A query names an index the database does not declare.
    #[error("database {db:?} has no index {index:?}")]
    IndexMissing { db: String, index: String },

    /// A query on an index whose entries are being rebuilt.
    #[error(
        "index {index:?} of database {db:?} is stale: run cairn db resync {db} while it is offline"
    )]
    IndexStale { db: String, index: String },

    /// `user add` of a user that exists.
    #[error("user {name:?} already exists")]
    UserExists { name: String },

    /// A call names a user that does not exist.
    #[error("user {name:?} does not exist")]
    UserMissing { name: String },

    /// A user record would hold more grants than `format::MAX_GRANTS`.
    #[error("user {user:?} would have {grants} grants, more than the {limit} a user may hold: revoke the grants it no longer needs")]
    TooManyGrants {
        user: String,
        grants: usize,
        limit: usize,
    },

    /// The file system is full; nothing of the failed write was kept.
    #[error("storage full: {reason}")]
    StorageFull { reason: String },

    /// The LMDB map is full (the environment reached `map_size`); nothing of the failed
    /// write was kept.
    #[error(
        "storage full: the LMDB map is full: delete data, or raise [store] map_size and restart"
    )]
    MapFull,

    /// The environment was written by another on-disk format version.
    #[error("{}", format_mismatch_message(*found, *expected, dir))]
    FormatMismatch {
        dir: PathBuf,
        found: u32,
        expected: u32,
    },

    /// A change-log reader asked for changes that retention already removed.
    #[error("changes after seq {since} of database {db:?} were compacted; the oldest kept is seq {oldest}: resynchronise from a full read")]
    ChangesCompacted { db: String, since: u64, oldest: u64 },

    /// Another process (or another handle in this one) holds the directory lock.
    #[error("directory {} is in use by {}", dir.display(), holder(*pid))]
    DirectoryInUse { dir: PathBuf, pid: Option<u32> },

    /// `open` of a directory that holds no store.
    #[error("{} holds no cairn store: create one with cairn-service {}", dir.display(), dir.display())]
    NoStore { dir: PathBuf },

    /// `create` of a directory that already holds a store.
    #[error("{} already holds a cairn store: open it instead", dir.display())]
    StoreExists { dir: PathBuf },

    /// A record in the environment does not decode: the file is damaged or foreign.
    #[error("corrupt record in table {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },

    /// The store holds a migration that has not finished: it is never served half-done.
    #[error("{} holds an unfinished migration from {from}: finish it with cairn-migrate --src {from} --dest {} --from-last, or remove it", dir.display(), dir.display())]
    MigrationUnfinished { dir: PathBuf, from: String },

    /// A migration refused to start or go on, with what to do (the message is complete).
    #[error("{reason}")]
    Migration { reason: String },

    /// A stored document or change record fails its checksum: its bytes on disk changed
    /// since they were written (bit rot, a damaged disk). Never served as they are.
    #[error("database {db:?}: {what} fails its checksum: the bytes on disk are damaged; restore the database from a backup")]
    Damaged { db: String, what: String },

    /// A follower sent changes that do not continue a database's sync position (or the
    /// database's log moved on without it): changes would be missing.
    #[error("database {db:?}: seq {expected} comes next, the follower sent seq {got}: changes are missing, so this database's sync stops (see cairn-sync status)")]
    SyncGap { db: String, expected: u64, got: u64 },

    /// A follower's source is not the one a database's sync position names (another
    /// service, another epoch after a restore, a database dropped and created again).
    #[error("database {db:?}: {reason}: its history is not this database's, resynchronise it (migrate a new backup of the source)")]
    SyncLineage { db: String, reason: String },

    /// A client's write to a database that follows another service (migration mode).
    #[error("database {db:?} follows {source_url} during a migration: write to the source until the cutover (or end the sync: cairn-sync abort)")]
    MigrationInProgress { db: String, source_url: String },

    /// A database has no sync position: it follows no source.
    #[error("database {db:?} has no sync position: it was not migrated from the source nor created by the follower")]
    SyncPositionMissing { db: String },

    /// A sync call while migration mode is off.
    #[error("this service follows no source (migration mode is off): attach a follower first (cairn-sync --src URL --dest URL)")]
    NotFollowing,

    /// An attach while another source is followed.
    #[error("this service already follows {source_url} (service {service_id}): end that sync first (cairn-sync abort --dest URL)")]
    FollowConflict {
        source_url: String,
        service_id: String,
    },

    /// A write to a mirror's store other than its leader's journal entries.
    #[error("this service is a mirror: it takes writes from its leader's journal only")]
    MirrorReadOnly,

    /// Journal entries for a store that is not a mirror's.
    #[error("this service is not a mirror: it takes no journal entries")]
    NotAMirror,

    /// Journal entries that do not continue a mirror's journal.
    #[error("journal entry {expected} comes next, got entry {got}: entries are missing")]
    JournalGap { expected: u64, got: u64 },

    /// The writer thread has stopped (the store is closing).
    #[error("the store is closed")]
    Closed,

    /// A write to a store opened with `Store::open_read_only`.
    #[error("{} is open read-only: this program never writes to it", dir.display())]
    ReadOnly { dir: PathBuf },

    /// A backup, a verification or a restore was canceled; it left nothing behind.
    #[error("canceled")]
    Canceled,

    /// A backup does not verify: a file is missing, changed or extra, or a database's
    /// documents and change log disagree with each other or with the manifest.
    #[error("{} does not verify: {}", dir.display(), summarise(problems))]
    BackupInvalid { dir: PathBuf, problems: Vec<String> },

    /// An operating-system error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: Arc<std::io::Error>,
    },

    /// LMDB's `MDB_PANIC`: a meta page failed to reach the disk, and the environment
    /// refuses every transaction until it is closed and opened again.
    #[error("the environment had a fatal I/O error (LMDB panic): it must be opened again")]
    EnvironmentFailed,

    /// Any other LMDB error.
    #[error("lmdb: {0}")]
    Lmdb(String),
}

/// Short alias used throughout the crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

fn holder(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "another process".to_string(),
    }
}

/// The first few problems of a backup that does not verify, and how many more.
fn summarise(problems: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = problems
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > SHOWN {
        text.push_str(&format!("; and {} more", problems.len() - SHOWN));
    }
    text
}

fn format_mismatch_message(found: u32, expected: u32, dir: &std::path::Path) -> String {
    let dir = dir.display();
    if found < expected {
        format!(
            "{dir} is format {found}; this release reads format {expected}: run cairn-migrate --src {dir} --dest NEWDIR (for the directory of a running service, migrate a backup of it instead, made with that service's own release: cairn-backup {dir} BACKUP)"
        )
    } else {
        format!(
            "{dir} is format {found}, newer than this release, which reads format {expected}: upgrade cairn to a release that reads format {found}"
        )
    }
}

impl StoreError {
    /// An I/O error with a short description of what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> StoreError {
        StoreError::Io {
            context: context.into(),
            source: Arc::new(source),
        }
    }

    /// True for the errors that say the storage has no room left.
    pub fn is_storage_full(&self) -> bool {
        matches!(self, StoreError::StorageFull { .. } | StoreError::MapFull)
    }
}

/// The raw OS error numbers that mean "no room on the device".
const NO_SPACE_ERRNOS: [i32; 2] = [28 /* ENOSPC */, 122 /* EDQUOT */];

impl From<heed::Error> for StoreError {
    fn from(error: heed::Error) -> Self {
        match error {
            heed::Error::Mdb(heed::MdbError::MapFull) => StoreError::MapFull,
            heed::Error::Mdb(heed::MdbError::Panic) => StoreError::EnvironmentFailed,
            heed::Error::Io(io)
                if io
                    .raw_os_error()
                    .is_some_and(|e| NO_SPACE_ERRNOS.contains(&e)) =>
            {
                StoreError::StorageFull {
                    reason: format!("the file system is full ({io}): free some space"),
                }
            }
            heed::Error::Io(io) => StoreError::io("lmdb", io),
            other => StoreError::Lmdb(other.to_string()),
        }
    }
}
