//! `Store`: opening and creating the one LMDB environment of a working directory, and
//! every read. Reads run in short read transactions (`Snapshot`) that any thread may
//! open; writes go to the writer thread (see `writer.rs`) through `Store::submit` or the
//! blocking helpers built on it.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use heed::types::{Bytes, Str};
use heed::{
    CommitOrAbort, Database, DatabaseFlags, Env, EnvFlags, EnvOpenOptions, RoTxn, WithoutTls,
};

use crate::error::{Result, StoreError};
use crate::format::{
    self, change_key, database_bounds, decode_change_record, doc_key, doc_key_name, meta_key,
    split_doc_value, split_index_key, table, CatalogRecord, ChangeOp, DatabaseConfig, Retention,
    SessionRecord, UserRecord, FORMAT_VERSION,
};
use crate::index::{FoundPage, IndexKey, IndexQuery};
use crate::jobs::JobRecord;
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
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            map_size: DEFAULT_MAP_SIZE,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            max_group_requests: 4096,
        }
    }
}

/// The LMDB tables of the environment, as opened handles.
#[derive(Clone, Copy)]
pub(crate) struct Tables {
    pub meta: Database<'static, Str, Bytes>,
    pub catalog: Database<'static, Str, Bytes>,
    pub docs: Database<'static, Bytes, Bytes>,
    pub changes: Database<'static, Bytes, Bytes>,
    pub users: Database<'static, Str, Bytes>,
    pub sessions: Database<'static, Bytes, Bytes>,
    pub jobs: Database<'static, Bytes, Bytes>,
    /// `None` only in a read-only store opened on a directory made before the table
    /// was added: it reads as empty.
    pub configs: Option<Database<'static, Str, Bytes>>,
    /// DUP_SORT; `None` as `configs`.
    pub indexes: Option<Database<'static, Bytes, Bytes>>,
}

impl Tables {
    /// The `configs` table, which a writable store always has.
    pub fn configs(&self) -> Result<Database<'static, Str, Bytes>> {
        self.configs.ok_or_else(|| missing_table(table::CONFIGS))
    }

    /// The `indexes` table, which a writable store always has.
    pub fn indexes(&self) -> Result<Database<'static, Bytes, Bytes>> {
        self.indexes.ok_or_else(|| missing_table(table::INDEXES))
    }
}

fn missing_table(name: &'static str) -> StoreError {
    StoreError::Corrupt {
        table: name,
        reason: "missing".to_string(),
    }
}

/// A document borrowed from a snapshot (see `DatabaseView::visit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocRef<'a> {
    pub key: &'a str,
    pub rev: u64,
    pub value: &'a [u8],
}

/// A scan page reserves room for at most this many documents up front.
const MAX_PREALLOCATED_DOCS: usize = 16_384;

/// A document as read: its key, its rev (seq of its last change) and its msgpack value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub key: String,
    pub rev: u64,
    pub value: Vec<u8>,
}

/// One entry of a change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub seq: u64,
    pub op: ChangeOp,
    pub key: String,
    /// The new value of a put; `None` for a delete (tombstone).
    pub value: Option<Vec<u8>>,
    pub time_ms: u64,
}

/// What `database_info` and `list_databases` report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseInfo {
    pub name: String,
    pub created_ms: u64,
    pub doc_count: u64,
    /// Seq of the newest change; 0 before the first.
    pub last_seq: u64,
    /// Seq of the oldest change still in the log.
    pub oldest_seq: u64,
    /// Bytes of stored documents (keys and values).
    pub doc_bytes: u64,
    /// Bytes of the change log (keys and records).
    pub log_bytes: u64,
    pub retention: Retention,
    /// The configuration's offline flag: batches are refused while it is set.
    pub offline: bool,
}

impl DatabaseInfo {
    fn from_record(name: &str, record: &CatalogRecord, offline: bool) -> DatabaseInfo {
        DatabaseInfo {
            name: name.to_string(),
            created_ms: record.created_ms,
            doc_count: record.doc_count,
            last_seq: record.last_seq,
            oldest_seq: record.trimmed_through + 1,
            doc_bytes: record.doc_bytes,
            log_bytes: record.log_bytes,
            retention: record.retention,
            offline,
        }
    }

    /// Bytes used by the database: documents and change log.
    pub fn bytes_used(&self) -> u64 {
        self.doc_bytes + self.log_bytes
    }
}

/// Which documents a scan visits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanRange {
    /// Every document of the database.
    All,
    /// Documents whose key starts with this prefix.
    Prefix(String),
    /// Documents whose key lies between the bounds.
    Keys {
        start: Bound<String>,
        end: Bound<String>,
    },
}

/// A scan request: range, page size, direction and cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub range: ScanRange,
    /// Most documents returned (1 to `MAX_SCAN_LIMIT`).
    pub limit: usize,
    /// Descending key order.
    pub reverse: bool,
    /// Resume after this key (the last key of the previous page).
    pub after: Option<String>,
}

impl Scan {
    /// A forward scan of the whole database.
    pub fn all(limit: usize) -> Scan {
        Scan {
            range: ScanRange::All,
            limit,
            reverse: false,
            after: None,
        }
    }
}

/// One page of scan results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPage {
    pub docs: Vec<Document>,
    /// True when more documents lie in the range after this page; resume with
    /// `after` = the last key of `docs`.
    pub more: bool,
}

/// Facts recorded when the store was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreMeta {
    pub format_version: u32,
    /// 32 hex digits, fixed for the life of the store (and carried by its copies).
    pub service_id: String,
    pub created_ms: u64,
}

pub(crate) struct Shared {
    pub env: Option<Env<WithoutTls>>,
    pub tables: Tables,
    pub options: StoreOptions,
    pub meta: StoreMeta,
    pub dir: PathBuf,
    pub sender: Option<Sender<WriterMessage>>,
    pub writer_thread: Mutex<Option<JoinHandle<()>>>,
    pub commit_hook: writer::HookSlot,
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
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn store_path(dir: &Path) -> PathBuf {
    dir.join(STORE_DIR)
}

fn environment_exists(dir: &Path) -> bool {
    store_path(dir).join("data.mdb").exists()
}

/// How `open_env` opens an environment: writable, or read-only in one of two ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EnvAccess {
    /// Read and write; the store directory is created when missing.
    Writable,
    /// `MDB_RDONLY`: data.mdb is opened read-only; readers still register in lock.mdb,
    /// so a service writing to the same environment from another process is safe.
    Shared,
    /// `MDB_RDONLY | MDB_NOLOCK`: nothing in the directory is written, not even
    /// lock.mdb. Only for an environment no other process uses (a backup being checked).
    Unshared,
}

fn open_env(dir: &Path, options: &StoreOptions, access: EnvAccess) -> Result<Env<WithoutTls>> {
    let path = store_path(dir);
    let mut env_options = EnvOpenOptions::new().read_txn_without_tls();
    env_options
        .map_size(options.map_size)
        .max_dbs(16)
        .max_readers(1024);
    match access {
        EnvAccess::Writable => std::fs::create_dir_all(&path)
            .map_err(|e| StoreError::io(format!("creating {}", path.display()), e))?,
        // SAFETY: read-only flags; NO_LOCK only where no other process uses the files.
        EnvAccess::Shared => unsafe {
            env_options.flags(EnvFlags::READ_ONLY);
        },
        EnvAccess::Unshared => unsafe {
            env_options.flags(EnvFlags::READ_ONLY | EnvFlags::NO_LOCK);
        },
    }
    // SAFETY: the environment is opened once per process (heed refuses a second open of
    // the same path) and its files are not truncated or rewritten behind LMDB's back.
    unsafe { env_options.open(&path) }.map_err(|e| match e {
        heed::Error::EnvAlreadyOpened => StoreError::DirectoryInUse {
            dir: dir.to_path_buf(),
            pid: Some(std::process::id()),
        },
        other => other.into(),
    })
}

fn read_u32(bytes: &[u8], what: &str) -> Result<u32> {
    bytes
        .try_into()
        .map(u32::from_be_bytes)
        .map_err(|_| StoreError::Corrupt {
            table: table::META,
            reason: format!("{what} is {} bytes, expected 4", bytes.len()),
        })
}

fn read_u64(bytes: &[u8], what: &str) -> Result<u64> {
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt {
            table: table::META,
            reason: format!("{what} is {} bytes, expected 8", bytes.len()),
        })
}

/// A random non-zero epoch.
pub(crate) fn random_epoch() -> Result<u64> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)
        .map_err(|e| StoreError::io("drawing an epoch", std::io::Error::other(e.to_string())))?;
    Ok(u64::from_be_bytes(bytes).max(1))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Closes an environment that will not be used, and waits until LMDB has let it go.
fn close_env(env: Env<WithoutTls>) {
    env.prepare_for_closing().wait();
}

/// Writes the tables and the meta of a new store in one commit. A crash before that
/// commit leaves an environment without a `meta` table, which `create` and
/// `open_or_create` take for an empty one and initialise again.
fn initialise(env: &Env<WithoutTls>) -> Result<(Tables, StoreMeta)> {
    let mut service_id = [0u8; 16];
    getrandom::fill(&mut service_id).map_err(|e| {
        StoreError::io("drawing a service id", std::io::Error::other(e.to_string()))
    })?;
    let created_ms = now_ms();
    let wtxn = env.write_txn()?;
    let (meta, catalog, docs, changes, users, sessions, jobs, configs, indexes) = env
        .create_databases_and_commit(wtxn, |opener, wtxn| -> Result<_> {
            let meta: Database<Str, Bytes> = opener.create_database(wtxn, Some(table::META))?;
            let catalog = opener.create_database(wtxn, Some(table::CATALOG))?;
            let docs = opener.create_database(wtxn, Some(table::DOCS))?;
            let changes = opener.create_database(wtxn, Some(table::CHANGES))?;
            let users = opener.create_database(wtxn, Some(table::USERS))?;
            let sessions = opener.create_database(wtxn, Some(table::SESSIONS))?;
            let jobs = opener.create_database(wtxn, Some(table::JOBS))?;
            let configs = opener.create_database(wtxn, Some(table::CONFIGS))?;
            let indexes = opener
                .database_options()
                .types::<Bytes, Bytes>()
                .name(table::INDEXES)
                .flags(DatabaseFlags::DUP_SORT)
                .create(wtxn)?;
            meta.put(
                wtxn,
                meta_key::FORMAT_VERSION,
                &FORMAT_VERSION.to_be_bytes(),
            )?;
            meta.put(wtxn, meta_key::SERVICE_ID, &service_id)?;
            meta.put(wtxn, meta_key::CREATED_MS, &created_ms.to_be_bytes())?;
            meta.put(wtxn, meta_key::NEXT_DATABASE_ID, &1u32.to_be_bytes())?;
            meta.put(wtxn, meta_key::EPOCH, &random_epoch()?.to_be_bytes())?;
            Ok(CommitOrAbort::<_, ()>::Commit((
                meta, catalog, docs, changes, users, sessions, jobs, configs, indexes,
            )))
        })?
        .unwrap_commit();
    let tables = Tables {
        meta,
        catalog,
        docs,
        changes,
        users,
        sessions,
        jobs,
        configs: Some(configs),
        indexes: Some(indexes),
    };
    let meta = StoreMeta {
        format_version: FORMAT_VERSION,
        service_id: hex(&service_id),
        created_ms,
    };
    Ok((tables, meta))
}

/// Opens the tables of an existing store. `Ok(None)` when the environment holds no
/// store (no `meta` table, or no format version in it: creation never committed).
fn load(env: &Env<WithoutTls>, dir: &Path) -> Result<Option<(Tables, StoreMeta)>> {
    let rtxn = env.read_txn()?;
    let opened = env.open_databases_and_commit(rtxn, |opener, rtxn| -> Result<_> {
        let Some(meta) = opener.open_database::<Str, Bytes>(rtxn, Some(table::META))? else {
            return Ok(CommitOrAbort::Abort(()));
        };
        let Some(version) = meta.get(rtxn, meta_key::FORMAT_VERSION)? else {
            return Ok(CommitOrAbort::Abort(()));
        };
        let version = read_u32(version, "format_version")?;
        if version != FORMAT_VERSION {
            return Err(StoreError::FormatMismatch {
                dir: dir.to_path_buf(),
                found: version,
                expected: FORMAT_VERSION,
            });
        }
        let missing = |name: &'static str| StoreError::Corrupt {
            table: name,
            reason: "missing".to_string(),
        };
        let catalog = opener
            .open_database(rtxn, Some(table::CATALOG))?
            .ok_or_else(|| missing(table::CATALOG))?;
        let docs = opener
            .open_database(rtxn, Some(table::DOCS))?
            .ok_or_else(|| missing(table::DOCS))?;
        let changes = opener
            .open_database(rtxn, Some(table::CHANGES))?
            .ok_or_else(|| missing(table::CHANGES))?;
        let users = opener
            .open_database(rtxn, Some(table::USERS))?
            .ok_or_else(|| missing(table::USERS))?;
        let sessions = opener
            .open_database(rtxn, Some(table::SESSIONS))?
            .ok_or_else(|| missing(table::SESSIONS))?;
        let jobs = opener
            .open_database(rtxn, Some(table::JOBS))?
            .ok_or_else(|| missing(table::JOBS))?;
        // Added to format 1 later: a directory made before has neither (see
        // `add_missing_tables`).
        let configs = opener.open_database::<Str, Bytes>(rtxn, Some(table::CONFIGS))?;
        let indexes = opener
            .database_options()
            .types::<Bytes, Bytes>()
            .name(table::INDEXES)
            .flags(DatabaseFlags::DUP_SORT)
            .open(rtxn)?;
        let service_id = meta
            .get(rtxn, meta_key::SERVICE_ID)?
            .map(hex)
            .ok_or_else(|| missing("meta.service_id"))?;
        let created_ms = meta
            .get(rtxn, meta_key::CREATED_MS)?
            .map(|b| read_u64(b, "created_ms"))
            .transpose()?
            .ok_or_else(|| missing("meta.created_ms"))?;
        let store_meta = StoreMeta {
            format_version: version,
            service_id,
            created_ms,
        };
        Ok(CommitOrAbort::Commit((
            (meta, catalog, docs, changes, users, sessions, jobs),
            (configs, indexes),
            OwnedMeta(store_meta),
        )))
    })?;
    Ok(match opened {
        CommitOrAbort::Commit((
            (meta, catalog, docs, changes, users, sessions, jobs),
            (configs, indexes),
            OwnedMeta(store_meta),
        )) => {
            let tables = Tables {
                meta,
                catalog,
                docs,
                changes,
                users,
                sessions,
                jobs,
                configs,
                indexes,
            };
            Some((tables, store_meta))
        }
        CommitOrAbort::Abort(()) => None,
    })
}

/// Creates the tables that format 1 gained after its first release (`configs`,
/// `indexes`) in a writable environment made before they existed. Both start empty,
/// which is what their absence meant.
fn add_missing_tables(env: &Env<WithoutTls>, tables: &mut Tables) -> Result<()> {
    if tables.configs.is_some() && tables.indexes.is_some() {
        return Ok(());
    }
    let wtxn = env.write_txn()?;
    let (configs, indexes) = env
        .create_databases_and_commit(wtxn, |opener, wtxn| -> Result<_> {
            let configs = opener.create_database::<Str, Bytes>(wtxn, Some(table::CONFIGS))?;
            let indexes = opener
                .database_options()
                .types::<Bytes, Bytes>()
                .name(table::INDEXES)
                .flags(DatabaseFlags::DUP_SORT)
                .create(wtxn)?;
            Ok(CommitOrAbort::<_, ()>::Commit((configs, indexes)))
        })?
        .unwrap_commit();
    tables.configs = Some(configs);
    tables.indexes = Some(indexes);
    tracing::info!("added the configs and indexes tables");
    Ok(())
}

/// What `Store::open_with` may do with the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenMode {
    MustExist,
    MustBeNew,
    Either,
}

impl Store {
    /// Creates a new store in the working directory `dir` (created if missing). Fails
    /// with `StoreExists` if `dir` already holds one.
    pub fn create(dir: &Path, options: StoreOptions) -> Result<Store> {
        Store::open_with(dir, options, OpenMode::MustBeNew)
    }

    /// Opens the store of the working directory `dir`. Fails with `NoStore` when there is
    /// none and with `FormatMismatch` when it was written by another format version.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Store> {
        Store::open_with(dir, options, OpenMode::MustExist)
    }

    /// Opens the store of `dir`, creating it first when there is none.
    pub fn open_or_create(dir: &Path, options: StoreOptions) -> Result<Store> {
        Store::open_with(dir, options, OpenMode::Either)
    }

    fn open_with(dir: &Path, options: StoreOptions, mode: OpenMode) -> Result<Store> {
        if mode == OpenMode::MustExist && !environment_exists(dir) {
            return Err(StoreError::NoStore {
                dir: dir.to_path_buf(),
            });
        }
        let env = open_env(dir, &options, EnvAccess::Writable)?;
        let outcome = match (load(&env, dir), mode) {
            (Ok(Some(_)), OpenMode::MustBeNew) => Err(StoreError::StoreExists {
                dir: dir.to_path_buf(),
            }),
            (Ok(Some((mut tables, meta))), _) => {
                add_missing_tables(&env, &mut tables).map(|()| (tables, meta))
            }
            (Ok(None), OpenMode::MustExist) => Err(StoreError::NoStore {
                dir: dir.to_path_buf(),
            }),
            (Ok(None), _) => {
                let created = initialise(&env);
                if created.is_ok() {
                    tracing::info!(dir = %dir.display(), "created a new store");
                }
                created
            }
            (Err(error), _) => Err(error),
        };
        match outcome {
            Ok((tables, meta)) => {
                Store::start(env, tables, options, meta, dir, EnvAccess::Writable)
            }
            Err(error) => {
                close_env(env);
                Err(error)
            }
        }
    }

    /// Opens the store of `dir` for reading only, beside any service that may be
    /// running on it in another process: data.mdb is opened read-only and nothing in
    /// the directory is written but LMDB's reader table in `store/lock.mdb` (which is
    /// how a reader keeps a writer from reusing the pages it reads; reader slots left by
    /// dead processes are cleared). Every write is refused with `ReadOnly`. Fails with
    /// `NoStore` when `dir` holds no store.
    pub fn open_read_only(dir: &Path, options: StoreOptions) -> Result<Store> {
        let store = Store::open_reader(dir, options, EnvAccess::Shared)?;
        store.env().clear_stale_readers()?;
        Ok(store)
    }

    /// Opens a read-only store that no other process uses, writing nothing at all in
    /// `dir` (no lock.mdb): for checking a backup.
    pub(crate) fn open_unshared(dir: &Path) -> Result<Store> {
        Store::open_reader(dir, StoreOptions::default(), EnvAccess::Unshared)
    }

    fn open_reader(dir: &Path, options: StoreOptions, access: EnvAccess) -> Result<Store> {
        if !environment_exists(dir) {
            return Err(StoreError::NoStore {
                dir: dir.to_path_buf(),
            });
        }
        let env = open_env(dir, &options, access)?;
        let loaded = match load(&env, dir) {
            Ok(Some(loaded)) => loaded,
            Ok(None) => {
                close_env(env);
                return Err(StoreError::NoStore {
                    dir: dir.to_path_buf(),
                });
            }
            Err(error) => {
                close_env(env);
                return Err(error);
            }
        };
        let (tables, meta) = loaded;
        Store::start(env, tables, options, meta, dir, access)
    }

    /// Starts the writer thread, or for a read-only store a thread in its place that
    /// refuses every write with `ReadOnly`.
    fn start(
        env: Env<WithoutTls>,
        tables: Tables,
        options: StoreOptions,
        meta: StoreMeta,
        dir: &Path,
        access: EnvAccess,
    ) -> Result<Store> {
        // Users generations start at random, so that a store opened anew (a restore)
        // never matches a generation cached from the one before.
        let commit_hook = writer::HookSlot::new(writer::Signals {
            users_generation: random_epoch().unwrap_or(1).into(),
            ..writer::Signals::default()
        });
        let (sender, thread) = if access == EnvAccess::Writable {
            writer::spawn(env.clone(), tables, options.clone(), commit_hook.clone())
        } else {
            let (sender, receiver) = std::sync::mpsc::channel::<WriterMessage>();
            let refused_dir = dir.to_path_buf();
            let thread = std::thread::Builder::new()
                .name("cairn-read-only".to_string())
                .spawn(move || {
                    for WriterMessage::Write(_, reply) in receiver {
                        reply(Err(StoreError::ReadOnly {
                            dir: refused_dir.clone(),
                        }));
                    }
                })
                .map_err(|e| StoreError::io("spawning the read-only writer thread", e))?;
            (sender, thread)
        };
        Ok(Store {
            shared: Arc::new(Shared {
                env: Some(env),
                tables,
                options,
                meta,
                dir: dir.to_path_buf(),
                sender: Some(sender),
                writer_thread: Mutex::new(Some(thread)),
                commit_hook,
            }),
        })
    }

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
        let txn = self.env().clone().static_read_txn()?;
        Ok(Snapshot {
            txn,
            tables: self.shared.tables,
            _store: self.clone(),
        })
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

/// Carries `StoreMeta` out of `open_databases_and_commit`, which wants `OnCommit` values.
struct OwnedMeta(StoreMeta);

impl heed::OnCommit for OwnedMeta {
    type Committed = OwnedMeta;
    fn on_commit(self, _token: &heed::CommitToken) -> OwnedMeta {
        self
    }
}

/// A read transaction over the whole store.
pub struct Snapshot {
    pub(crate) txn: RoTxn<'static, WithoutTls>,
    pub(crate) tables: Tables,
    // Keeps the environment open for as long as the transaction lives.
    _store: Store,
}

impl Snapshot {
    /// Every database, in name order.
    pub fn list_databases(&self) -> Result<Vec<DatabaseInfo>> {
        let mut out = Vec::new();
        for entry in self.tables.catalog.iter(&self.txn)? {
            let (name, bytes) = entry?;
            let offline = read_config(&self.txn, self.tables, name)?.is_some_and(|c| c.offline);
            out.push(DatabaseInfo::from_record(
                name,
                &CatalogRecord::decode(bytes)?,
                offline,
            ));
        }
        Ok(out)
    }

    /// The configuration of one database; `DatabaseMissing` if it does not exist.
    pub fn database_config(&self, name: &str) -> Result<DatabaseConfig> {
        if read_catalog(&self.txn, self.tables, name)?.is_none() {
            return Err(StoreError::DatabaseMissing {
                name: name.to_string(),
            });
        }
        Ok(read_config(&self.txn, self.tables, name)?.unwrap_or_default())
    }

    /// The configuration of every database, in name order (the default for a database
    /// without a record).
    pub fn database_configs(&self) -> Result<Vec<(String, DatabaseConfig)>> {
        let mut out = Vec::new();
        for entry in self.tables.catalog.iter(&self.txn)? {
            let (name, _) = entry?;
            let config = read_config(&self.txn, self.tables, name)?.unwrap_or_default();
            out.push((name.to_string(), config));
        }
        Ok(out)
    }

    /// One user, or `None`.
    pub fn user(&self, name: &str) -> Result<Option<UserRecord>> {
        self.tables
            .users
            .get(&self.txn, name)?
            .map(UserRecord::decode)
            .transpose()
    }

    /// Every user, in name order.
    pub fn users(&self) -> Result<Vec<(String, UserRecord)>> {
        let mut out = Vec::new();
        for entry in self.tables.users.iter(&self.txn)? {
            let (name, bytes) = entry?;
            out.push((name.to_string(), UserRecord::decode(bytes)?));
        }
        Ok(out)
    }

    /// The session whose token hashes to `token_hash`, expired or not.
    pub fn session(&self, token_hash: &[u8; 32]) -> Result<Option<SessionRecord>> {
        self.tables
            .sessions
            .get(&self.txn, token_hash)?
            .map(SessionRecord::decode)
            .transpose()
    }

    /// The change-log epoch: it changes when a restore replaces the data, so that a
    /// cursor (a seq) taken before can be told apart from one taken after.
    pub fn epoch(&self) -> Result<u64> {
        Ok(self
            .tables
            .meta
            .get(&self.txn, meta_key::EPOCH)?
            .and_then(|b| b.try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    /// The service status an admin set (READ_WRITE with no messages when never set).
    pub fn status(&self) -> Result<crate::status::ServiceStatus> {
        self.tables
            .meta
            .get(&self.txn, meta_key::STATUS)?
            .map(crate::status::ServiceStatus::decode)
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// One job, or `None`.
    pub fn job(&self, id: u64) -> Result<Option<JobRecord>> {
        self.tables
            .jobs
            .get(&self.txn, &id.to_be_bytes())?
            .map(JobRecord::decode)
            .transpose()
    }

    /// Every job, newest first.
    pub fn jobs(&self) -> Result<Vec<JobRecord>> {
        let mut out = Vec::new();
        for entry in self.tables.jobs.rev_iter(&self.txn)? {
            out.push(JobRecord::decode(entry?.1)?);
        }
        Ok(out)
    }

    /// A view of one database; `DatabaseMissing` if it does not exist.
    pub fn database(&self, name: &str) -> Result<DatabaseView<'_>> {
        let record = read_catalog(&self.txn, self.tables, name)?.ok_or_else(|| {
            StoreError::DatabaseMissing {
                name: name.to_string(),
            }
        })?;
        Ok(DatabaseView {
            snapshot: self,
            name: name.to_string(),
            record,
        })
    }
}

pub(crate) fn read_catalog(
    txn: &RoTxn,
    tables: Tables,
    name: &str,
) -> Result<Option<CatalogRecord>> {
    tables
        .catalog
        .get(txn, name)?
        .map(CatalogRecord::decode)
        .transpose()
}

/// The configuration record of `name`, `None` when it has none (or the store has no
/// `configs` table yet).
pub(crate) fn read_config(
    txn: &RoTxn,
    tables: Tables,
    name: &str,
) -> Result<Option<DatabaseConfig>> {
    let Some(configs) = tables.configs else {
        return Ok(None);
    };
    configs
        .get(txn, name)?
        .map(DatabaseConfig::decode)
        .transpose()
}

/// One database inside a snapshot.
pub struct DatabaseView<'s> {
    snapshot: &'s Snapshot,
    name: String,
    record: CatalogRecord,
}

impl DatabaseView<'_> {
    /// Counters of this database.
    pub fn info(&self) -> Result<DatabaseInfo> {
        let offline = self.config()?.offline;
        Ok(DatabaseInfo::from_record(&self.name, &self.record, offline))
    }

    /// The configuration of this database.
    pub fn config(&self) -> Result<DatabaseConfig> {
        Ok(read_config(&self.snapshot.txn, self.snapshot.tables, &self.name)?.unwrap_or_default())
    }

    /// One page of the documents whose value at an index lies in the query's range, in
    /// (value, document key) order (or the reverse). `IndexMissing` when the database
    /// declares no such index, `IndexStale` while its entries wait for a resync. An
    /// entry whose document is missing is `Corrupt`.
    ///
    /// Resuming inside a run of equal values steps over the documents of that value
    /// before the cursor, so paging through one value held by very many documents
    /// costs more per page as it goes.
    pub fn find(&self, query: &IndexQuery) -> Result<FoundPage> {
        if query.limit == 0 || query.limit > MAX_SCAN_LIMIT {
            return Err(StoreError::InvalidArgument {
                reason: format!(
                    "find limit must be 1 to {MAX_SCAN_LIMIT}, not {}",
                    query.limit
                ),
            });
        }
        let config = self.config()?;
        let position = config
            .indexes
            .iter()
            .position(|def| def.name == query.index)
            .ok_or_else(|| StoreError::IndexMissing {
                db: self.name.clone(),
                index: query.index.clone(),
            })?;
        if config.indexes_stale {
            return Err(StoreError::IndexStale {
                db: self.name.clone(),
                index: query.index.clone(),
            });
        }
        let mut docs = Vec::new();
        let Some(indexes) = self.snapshot.tables.indexes else {
            return Ok(FoundPage { docs, more: false });
        };
        let prefix = format::index_key(self.record.id, position as u8, &[]);
        let encode = |bound: &Bound<IndexKey>| -> Result<Bound<Vec<u8>>> {
            Ok(match bound {
                Bound::Included(v) => Bound::Included(extend(&prefix, &v.encode()?)),
                Bound::Excluded(v) => Bound::Excluded(extend(&prefix, &v.encode()?)),
                Bound::Unbounded => Bound::Unbounded,
            })
        };
        let next_index = format::index_key(self.record.id, position as u8 + 1, &[]);
        let mut low = max_low(Bound::Included(prefix.clone()), encode(&query.start)?);
        let mut high = min_high(Bound::Excluded(next_index), encode(&query.end)?);
        let after = match &query.after {
            Some((value, key)) => {
                crate::validate::validate_key(key)?;
                let cursor = extend(&prefix, &value.encode()?);
                if query.reverse {
                    high = min_high(high, Bound::Included(cursor.clone()));
                } else {
                    low = max_low(low, Bound::Included(cursor.clone()));
                }
                Some((cursor, key.as_bytes()))
            }
            None => None,
        };
        if bounds_empty(&low, &high) {
            return Ok(FoundPage { docs, more: false });
        }
        let txn = &self.snapshot.txn;
        let mut more = false;
        let mut offer = |key: &[u8], dup: &[u8]| -> Result<bool> {
            if let Some((cursor, after_key)) = &after {
                let skip = key == cursor.as_slice()
                    && if query.reverse {
                        dup >= *after_key
                    } else {
                        dup <= *after_key
                    };
                if skip {
                    return Ok(true);
                }
            }
            if docs.len() == query.limit {
                more = true;
                return Ok(false);
            }
            let (_, encoded) = split_index_key(key)?;
            let name = format::index_doc_key(dup)?;
            let stored = self
                .snapshot
                .tables
                .docs
                .get(txn, &doc_key(self.record.id, name))?
                .ok_or_else(|| StoreError::Corrupt {
                    table: table::INDEXES,
                    reason: format!(
                        "index {:?} of database {:?} lists document {name:?}, which does not exist",
                        query.index, self.name
                    ),
                })?;
            let (rev, value) = split_doc_value(stored)?;
            docs.push((
                IndexKey::decode(encoded)?,
                Document {
                    key: name.to_string(),
                    rev,
                    value: value.to_vec(),
                },
            ));
            Ok(true)
        };
        if query.reverse {
            // heed's reverse range starts on the first duplicate of an included end key
            // and would skip the others: ask for "below the next key" instead.
            let high = match high {
                Bound::Included(end) => Bound::Excluded(extend(&end, &[0])),
                other => other,
            };
            let bounds = (as_slice_bound(&low), as_slice_bound(&high));
            for entry in indexes.rev_range(txn, &bounds)? {
                let (key, doc) = entry?;
                if !offer(key, doc)? {
                    break;
                }
            }
        } else {
            let bounds = (as_slice_bound(&low), as_slice_bound(&high));
            for entry in indexes.range(txn, &bounds)? {
                let (key, doc) = entry?;
                if !offer(key, doc)? {
                    break;
                }
            }
        }
        Ok(FoundPage { docs, more })
    }

    /// One document, or `None` when absent. An invalid key is an error, not `None`.
    pub fn get(&self, key: &str) -> Result<Option<Document>> {
        crate::validate::validate_key(key)?;
        let stored = self
            .snapshot
            .tables
            .docs
            .get(&self.snapshot.txn, &doc_key(self.record.id, key))?;
        stored
            .map(|bytes| {
                let (rev, value) = split_doc_value(bytes)?;
                Ok(Document {
                    key: key.to_string(),
                    rev,
                    value: value.to_vec(),
                })
            })
            .transpose()
    }

    /// Calls `visit` with each document of `range` in key order (or reverse key order),
    /// after the key `after` if given, borrowing keys and values from the snapshot
    /// without copying them, until `visit` returns false.
    pub fn visit(
        &self,
        range: &ScanRange,
        reverse: bool,
        after: Option<&str>,
        mut visit: impl FnMut(DocRef<'_>) -> bool,
    ) -> Result<()> {
        let (low, high) = scan_bounds(self.record.id, range, reverse, after)?;
        let bounds = (as_slice_bound(&low), as_slice_bound(&high));
        let docs_table = self.snapshot.tables.docs;
        let txn = &self.snapshot.txn;
        let mut offer = |key: &[u8], value: &[u8]| -> Result<bool> {
            let (rev, value) = split_doc_value(value)?;
            Ok(visit(DocRef {
                key: doc_key_name(key)?,
                rev,
                value,
            }))
        };
        if reverse {
            for entry in docs_table.rev_range(txn, &bounds)? {
                let (key, value) = entry?;
                if !offer(key, value)? {
                    break;
                }
            }
        } else {
            for entry in docs_table.range(txn, &bounds)? {
                let (key, value) = entry?;
                if !offer(key, value)? {
                    break;
                }
            }
        }
        Ok(())
    }

    /// One page of documents in key order (or reverse key order).
    pub fn scan(&self, scan: &Scan) -> Result<ScanPage> {
        if scan.limit == 0 || scan.limit > MAX_SCAN_LIMIT {
            return Err(StoreError::InvalidArgument {
                reason: format!(
                    "scan limit must be 1 to {MAX_SCAN_LIMIT}, not {}",
                    scan.limit
                ),
            });
        }
        let mut docs = Vec::with_capacity(scan.limit.min(MAX_PREALLOCATED_DOCS));
        let mut more = false;
        self.visit(&scan.range, scan.reverse, scan.after.as_deref(), |doc| {
            if docs.len() == scan.limit {
                more = true;
                return false;
            }
            docs.push(Document {
                key: doc.key.to_string(),
                rev: doc.rev,
                value: doc.value.to_vec(),
            });
            true
        })?;
        Ok(ScanPage { docs, more })
    }

    /// The changes with a seq greater than `since`, oldest first, at most `limit`.
    /// `ChangesCompacted` when retention already removed some of them.
    pub fn changes(&self, since: u64, limit: usize) -> Result<Vec<Change>> {
        if limit == 0 || limit > MAX_CHANGES_LIMIT {
            return Err(StoreError::InvalidArgument {
                reason: format!("changes limit must be 1 to {MAX_CHANGES_LIMIT}, not {limit}"),
            });
        }
        if since < self.record.trimmed_through {
            return Err(StoreError::ChangesCompacted {
                db: self.name.clone(),
                since,
                oldest: self.record.trimmed_through + 1,
            });
        }
        let mut out = Vec::new();
        if since >= self.record.last_seq {
            return Ok(out);
        }
        let low = change_key(self.record.id, since + 1);
        let (_, high) = database_bounds(self.record.id);
        let bounds = (Bound::Included(&low[..]), Bound::Excluded(&high[..]));
        for entry in self
            .snapshot
            .tables
            .changes
            .range(&self.snapshot.txn, &bounds)?
        {
            let (key, record) = entry?;
            let record_ref = decode_change_record(record)?;
            out.push(Change {
                seq: format::change_key_seq(key)?,
                op: record_ref.op,
                key: record_ref.key.to_string(),
                value: record_ref.value.map(<[u8]>::to_vec),
                time_ms: record_ref.time_ms,
            });
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }
}

fn extend(prefix: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + tail.len());
    out.extend_from_slice(prefix);
    out.extend_from_slice(tail);
    out
}

/// True when no key lies between the bounds (LMDB would reject such a range).
fn bounds_empty(low: &Bound<Vec<u8>>, high: &Bound<Vec<u8>>) -> bool {
    match (low, high) {
        (Bound::Included(l), Bound::Included(h)) => l > h,
        (Bound::Included(l) | Bound::Excluded(l), Bound::Included(h) | Bound::Excluded(h)) => {
            l >= h
        }
        _ => false,
    }
}

pub(crate) fn as_slice_bound(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(b) => Bound::Included(b.as_slice()),
        Bound::Excluded(b) => Bound::Excluded(b.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The smallest byte string greater than every string that starts with `prefix`, if any.
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last < 0xff {
            out.push(last + 1);
            return Some(out);
        }
    }
    None
}

/// The tighter of two lower bounds.
fn max_low(a: Bound<Vec<u8>>, b: Bound<Vec<u8>>) -> Bound<Vec<u8>> {
    match (&a, &b) {
        (Bound::Unbounded, _) => b,
        (_, Bound::Unbounded) => a,
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) => {
            if x > y || (x == y && matches!(a, Bound::Excluded(_))) {
                a
            } else {
                b
            }
        }
    }
}

/// The tighter of two upper bounds.
fn min_high(a: Bound<Vec<u8>>, b: Bound<Vec<u8>>) -> Bound<Vec<u8>> {
    match (&a, &b) {
        (Bound::Unbounded, _) => b,
        (_, Bound::Unbounded) => a,
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) => {
            if x < y || (x == y && matches!(a, Bound::Excluded(_))) {
                a
            } else {
                b
            }
        }
    }
}

/// Bounds in the `docs` key space for a scan of database `db_id`.
/// Lower and upper bound of a key range in the `docs` table.
type KeyBounds = (Bound<Vec<u8>>, Bound<Vec<u8>>);

fn scan_bounds(
    db_id: u32,
    range: &ScanRange,
    reverse: bool,
    after: Option<&str>,
) -> Result<KeyBounds> {
    let (db_low, db_high) = database_bounds(db_id);
    let mut low = Bound::Included(db_low);
    let mut high = Bound::Excluded(db_high);
    let encode = |bound: &Bound<String>| -> Result<Bound<Vec<u8>>> {
        Ok(match bound {
            Bound::Included(k) => Bound::Included(doc_key(db_id, k)),
            Bound::Excluded(k) => Bound::Excluded(doc_key(db_id, k)),
            Bound::Unbounded => Bound::Unbounded,
        })
    };
    match range {
        ScanRange::All => {}
        ScanRange::Prefix(prefix) => {
            if prefix.len() > crate::validate::MAX_KEY_BYTES {
                return Err(StoreError::InvalidKey {
                    reason: "a prefix is at most 400 bytes".to_string(),
                });
            }
            let start = doc_key(db_id, prefix);
            if let Some(end) = prefix_successor(&start) {
                high = min_high(high, Bound::Excluded(end));
            }
            low = max_low(low, Bound::Included(start));
        }
        ScanRange::Keys { start, end } => {
            low = max_low(low, encode(start)?);
            high = min_high(high, encode(end)?);
        }
    }
    if let Some(after) = after {
        crate::validate::validate_key(after)?;
        let cursor = Bound::Excluded(doc_key(db_id, after));
        if reverse {
            high = min_high(high, cursor);
        } else {
            low = max_low(low, cursor);
        }
    }
    // An empty or inverted range scans nothing (LMDB would reject it).
    if bounds_empty(&low, &high) {
        let (db_low, _) = database_bounds(db_id);
        return Ok((Bound::Excluded(db_low.clone()), Bound::Excluded(db_low)));
    }
    Ok((low, high))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_successor_carries() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xff, 0xff]), None);
    }

    #[test]
    fn bounds_pick_the_tighter_side() {
        let inc = |s: &str| Bound::Included(s.as_bytes().to_vec());
        let exc = |s: &str| Bound::Excluded(s.as_bytes().to_vec());
        assert_eq!(max_low(inc("a"), exc("b")), exc("b"));
        assert_eq!(max_low(inc("b"), exc("b")), exc("b"));
        assert_eq!(max_low(Bound::Unbounded, inc("a")), inc("a"));
        assert_eq!(min_high(inc("c"), exc("b")), exc("b"));
        assert_eq!(min_high(exc("b"), inc("b")), exc("b"));
    }

    /// Writes a store as builds before the `configs` and `indexes` tables made it: the
    /// seven first tables, the meta keys and one database "old" with one document.
    fn make_store_without_config_tables(dir: &Path) {
        let env = open_env(dir, &StoreOptions::default(), EnvAccess::Writable).unwrap();
        let wtxn = env.write_txn().unwrap();
        env.create_databases_and_commit(wtxn, |opener, wtxn| -> Result<_> {
            let meta: Database<Str, Bytes> = opener.create_database(wtxn, Some(table::META))?;
            let catalog: Database<Str, Bytes> =
                opener.create_database(wtxn, Some(table::CATALOG))?;
            let docs: Database<Bytes, Bytes> = opener.create_database(wtxn, Some(table::DOCS))?;
            let changes: Database<Bytes, Bytes> =
                opener.create_database(wtxn, Some(table::CHANGES))?;
            for name in [table::USERS, table::SESSIONS, table::JOBS] {
                opener.create_database::<Bytes, Bytes>(wtxn, Some(name))?;
            }
            meta.put(
                wtxn,
                meta_key::FORMAT_VERSION,
                &FORMAT_VERSION.to_be_bytes(),
            )?;
            meta.put(wtxn, meta_key::SERVICE_ID, &[7u8; 16])?;
            meta.put(wtxn, meta_key::CREATED_MS, &1u64.to_be_bytes())?;
            meta.put(wtxn, meta_key::NEXT_DATABASE_ID, &2u32.to_be_bytes())?;
            let value = [0x81, 0xa1, b'a', 0x01]; // {"a": 1}
            let stored = format::doc_value(1, &value);
            docs.put(wtxn, &doc_key(1, "k"), &stored)?;
            let change = format::change_record(ChangeOp::Put, 1, "k", Some(&value));
            changes.put(wtxn, &change_key(1, 1), &change)?;
            let record = CatalogRecord {
                id: 1,
                created_ms: 1,
                last_seq: 1,
                trimmed_through: 0,
                doc_count: 1,
                doc_bytes: (5 + stored.len()) as u64,
                log_bytes: (12 + change.len()) as u64,
                retention: Retention::default(),
            };
            catalog.put(wtxn, "old", &record.encode())?;
            Ok(CommitOrAbort::<_, ()>::Commit(()))
        })
        .unwrap();
        close_env(env);
    }

    #[test]
    fn stores_made_before_the_config_tables_open() {
        let dir = tempfile::tempdir().unwrap();
        make_store_without_config_tables(dir.path());
        {
            // Read-only: the missing tables read as empty.
            let store = Store::open_read_only(dir.path(), StoreOptions::default()).unwrap();
            assert!(store.shared.tables.configs.is_none() && store.shared.tables.indexes.is_none());
            assert_eq!(
                store.database_config("old").unwrap(),
                DatabaseConfig::default()
            );
            assert!(!store.database_info("old").unwrap().offline);
            let err = store
                .find("old", &IndexQuery::exact("i", IndexKey::Bool(true), 1))
                .unwrap_err();
            assert!(matches!(err, StoreError::IndexMissing { .. }), "{err}");
        }
        {
            // Writable: they are created, and work.
            let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
            assert!(store.set_offline("old", true).unwrap());
            let defs = vec![crate::format::IndexDef {
                name: "by_a".to_string(),
                field: "/a".to_string(),
                unique: true,
            }];
            assert_eq!(
                store
                    .set_database_config("old", defs, Retention::default())
                    .unwrap(),
                (true, true)
            );
            let chunk = store.resync_chunk("old", None, 10).unwrap();
            assert_eq!((chunk.processed, chunk.changed), (1, 1));
            store.resync_finish("old", 0).unwrap();
            store.set_offline("old", false).unwrap();
        }
        let store = Store::open_read_only(dir.path(), StoreOptions::default()).unwrap();
        let page = store
            .find("old", &IndexQuery::exact("by_a", IndexKey::Number(1.0), 10))
            .unwrap();
        assert_eq!(page.docs.len(), 1);
        assert_eq!(page.docs[0].1.key, "k");
    }

    #[test]
    fn dropping_a_database_removes_its_config_record_and_index_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path(), StoreOptions::default()).unwrap();
        let defs = vec![crate::format::IndexDef {
            name: "whole".to_string(),
            field: String::new(),
            unique: false,
        }];
        for name in ["keep", "gone"] {
            store
                .create_database_offline(name, Retention::default())
                .unwrap();
            store
                .set_database_config(name, defs.clone(), Retention::default())
                .unwrap();
            store.set_offline(name, false).unwrap();
            store.put(name, "a", &[0x01], None).unwrap();
            store.put(name, "b", &[0x02], None).unwrap();
        }
        let counts = |store: &Store| {
            let snapshot = store.snapshot().unwrap();
            let tables = snapshot.tables;
            (
                tables.configs.unwrap().len(&snapshot.txn).unwrap(),
                tables.indexes.unwrap().len(&snapshot.txn).unwrap(),
            )
        };
        assert_eq!(counts(&store), (2, 4));
        store.drop_database("gone").unwrap();
        assert_eq!(counts(&store), (1, 2));
        store.create_database("gone").unwrap();
        assert_eq!(counts(&store), (2, 2), "a new record, no entries");
        assert_eq!(
            store.database_config("gone").unwrap(),
            DatabaseConfig::default()
        );
    }
}
