//! Opening and creating the environment of a working directory (`DIR/store`): the LMDB
//! flags of writable and read-only opens, the tables of a new store and its meta keys
//! written in one commit, the tables of an existing one (after its format version is
//! checked: any other format is refused before a table is touched), and the `Store`
//! constructors that start the writer thread (or, read-only, a thread that refuses
//! every write).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use heed::types::{Bytes, Str};
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions, RwTxn, WithoutTls};

use super::{now_ms, Shared, Store, StoreMeta, StoreOptions, STORE_DIR};
use crate::error::{Result, StoreError};
use crate::format::{meta_key, table, FORMAT_VERSION};
use crate::journal::TableId;
use crate::migrate::MigrationRecord;
use crate::writer::{self, WriterMessage};

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
    pub configs: Database<'static, Str, Bytes>,
    pub indexes: Database<'static, Bytes, Bytes>,
    pub sync: Database<'static, Str, Bytes>,
    pub journal: Database<'static, Bytes, Bytes>,
}

/// How many tables the environment holds.
const TABLE_COUNT: usize = TableId::ALL.len();

impl Tables {
    /// The tables from their handles, opened or created in `TableId::ALL` order.
    fn from_handles(handles: [Database<'static, Bytes, Bytes>; TABLE_COUNT]) -> Tables {
        let [meta, catalog, docs, changes, users, sessions, jobs, configs, indexes, sync, journal] =
            handles;
        Tables {
            meta: meta.remap_key_type(),
            catalog: catalog.remap_key_type(),
            docs,
            changes,
            users: users.remap_key_type(),
            sessions,
            jobs,
            configs: configs.remap_key_type(),
            indexes,
            sync: sync.remap_key_type(),
            journal,
        }
    }

    /// The handle of `table`, with keys as bytes.
    pub fn raw(&self, table: TableId) -> Database<'static, Bytes, Bytes> {
        match table {
            TableId::Meta => self.meta.remap_key_type(),
            TableId::Catalog => self.catalog.remap_key_type(),
            TableId::Docs => self.docs,
            TableId::Changes => self.changes,
            TableId::Users => self.users.remap_key_type(),
            TableId::Sessions => self.sessions,
            TableId::Jobs => self.jobs,
            TableId::Configs => self.configs.remap_key_type(),
            TableId::Indexes => self.indexes,
            TableId::Sync => self.sync.remap_key_type(),
            TableId::Journal => self.journal,
        }
    }
}

fn store_path(dir: &Path) -> PathBuf {
    dir.join(STORE_DIR)
}

fn environment_exists(dir: &Path) -> bool {
    store_path(dir).join("data.mdb").exists()
}

/// `FormatMismatch` when `dir` holds a store of another format, found with the
/// environment opened read-only without its lock file, so that a refused directory is
/// left as it was, LMDB's lock file included (a writable open rewrites it). Anything
/// else (no store yet, an error) is left to the open that follows. Only before a
/// writable open, which no other process may share: a reader beside a running service
/// (`open_read_only`) registers in the lock file, as it must.
fn refuse_other_formats(dir: &Path) -> Result<()> {
    if !environment_exists(dir) {
        return Ok(());
    }
    match crate::migrate::directory_format(dir) {
        Ok(found) if found != FORMAT_VERSION => Err(StoreError::FormatMismatch {
            dir: dir.to_path_buf(),
            found,
            expected: FORMAT_VERSION,
        }),
        _ => Ok(()),
    }
}

/// True when a migration into `dir` was started (its mark is there).
fn migration_started(dir: &Path) -> bool {
    crate::migrate::started_from(dir).is_some()
}

/// The error for a directory that holds no store: `MigrationUnfinished` when a
/// migration into it was started and killed before its first commit, else `NoStore`.
fn no_store(dir: &Path) -> StoreError {
    match crate::migrate::started_from(dir) {
        Some(from) => StoreError::MigrationUnfinished {
            dir: dir.to_path_buf(),
            from,
        },
        None => StoreError::NoStore {
            dir: dir.to_path_buf(),
        },
    }
}

/// How `open_env` opens an environment: writable, or read-only in one of two ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnvAccess {
    /// Read and write; the store directory is created when missing.
    Writable,
    /// `MDB_RDONLY`: data.mdb is opened read-only; readers still register in lock.mdb,
    /// so a service writing to the same environment from another process is safe.
    Shared,
    /// `MDB_RDONLY | MDB_NOLOCK`: nothing in the directory is written, not even
    /// lock.mdb. Only for an environment no other process uses (a backup being checked).
    Unshared,
}

pub(crate) fn open_env(
    dir: &Path,
    options: &StoreOptions,
    access: EnvAccess,
) -> Result<Env<WithoutTls>> {
    let path = store_path(dir);
    let mut env_options = EnvOpenOptions::new().read_txn_without_tls();
    env_options
        .map_size(options.map_size)
        .max_dbs(16)
        .max_readers(1024);
    match access {
        EnvAccess::Writable => std::fs::create_dir_all(&path)
            .map_err(|e| StoreError::io(format!("creating {}", path.display()), e))?,
        // SAFETY: read-only flags, which change nothing in the files.
        EnvAccess::Shared => unsafe {
            env_options.flags(EnvFlags::READ_ONLY);
        },
        // SAFETY: read-only, and NO_LOCK only where no other process uses the files.
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
pub(crate) fn close_env(env: Env<WithoutTls>) {
    env.prepare_for_closing().wait();
}

/// Creates the tables and the meta of a new store. The tables are created first; the
/// meta (the format version last of all) is written in one later commit. A crash
/// before that commit leaves an environment without a format version, which `create`
/// and `open_or_create` take for an empty one and initialise again.
fn initialise(env: &Env<WithoutTls>) -> Result<(Tables, StoreMeta)> {
    initialise_with(env, |_, _| Ok(()))
}

/// `initialise`, with `more` written in the commit of the meta (a migration's first
/// records, and its own service id and epoch over the ones drawn here).
pub(crate) fn initialise_with(
    env: &Env<WithoutTls>,
    more: impl FnOnce(&Tables, &mut RwTxn) -> Result<()>,
) -> Result<(Tables, StoreMeta)> {
    let wtxn = env.write_txn()?;
    let handles = env
        .create_databases_and_commit(wtxn, |opener, wtxn| -> Result<_> {
            let mut created = Vec::with_capacity(TABLE_COUNT);
            for table in TableId::ALL {
                created.push(opener.create_database::<Bytes, Bytes>(wtxn, Some(table.name()))?);
            }
            let handles: [Database<Bytes, Bytes>; TABLE_COUNT] = created
                .try_into()
                .unwrap_or_else(|_| unreachable!("one handle per table name"));
            Ok(CommitOrAbort::<_, ()>::Commit(handles))
        })?
        .unwrap_commit();
    let tables = Tables::from_handles(handles);
    let mut service_id = [0u8; 16];
    getrandom::fill(&mut service_id).map_err(|e| {
        StoreError::io("drawing a service id", std::io::Error::other(e.to_string()))
    })?;
    let created_ms = now_ms();
    let mut wtxn = env.write_txn()?;
    let meta = tables.meta;
    meta.put(&mut wtxn, meta_key::SERVICE_ID, &service_id)?;
    meta.put(&mut wtxn, meta_key::CREATED_MS, &created_ms.to_be_bytes())?;
    meta.put(&mut wtxn, meta_key::NEXT_DATABASE_ID, &1u32.to_be_bytes())?;
    meta.put(&mut wtxn, meta_key::EPOCH, &random_epoch()?.to_be_bytes())?;
    more(&tables, &mut wtxn)?;
    meta.put(
        &mut wtxn,
        meta_key::FORMAT_VERSION,
        &FORMAT_VERSION.to_be_bytes(),
    )?;
    let service_id = meta
        .get(&wtxn, meta_key::SERVICE_ID)?
        .map(hex)
        .unwrap_or_default();
    wtxn.commit()?;
    let meta = StoreMeta {
        format_version: FORMAT_VERSION,
        service_id,
        created_ms,
    };
    Ok((tables, meta))
}

/// Whether `load` opens a store whose migration is unfinished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unfinished {
    /// `MigrationUnfinished`: it is never served half-migrated.
    Refuse,
    /// The migration itself, resuming.
    Open,
}

/// Opens the tables of an existing store. `Ok(None)` when the environment holds no
/// store (no `meta` table, or no format version in it: creation never committed).
pub(crate) fn load(
    env: &Env<WithoutTls>,
    dir: &Path,
    unfinished: Unfinished,
) -> Result<Option<(Tables, StoreMeta)>> {
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
        if unfinished == Unfinished::Refuse {
            if let Some(record) = meta.get(rtxn, meta_key::MIGRATION)? {
                let record = MigrationRecord::decode(record)?;
                if !record.is_finished() {
                    return Err(StoreError::MigrationUnfinished {
                        dir: dir.to_path_buf(),
                        from: record.source_dir,
                    });
                }
            }
        }
        let missing = |name: &'static str| StoreError::Corrupt {
            table: name,
            reason: "missing".to_string(),
        };
        let mut opened = Vec::with_capacity(TABLE_COUNT);
        for table in TableId::ALL {
            let handle = opener
                .open_database::<Bytes, Bytes>(rtxn, Some(table.name()))?
                .ok_or_else(|| missing(table.name()))?;
            opened.push(handle);
        }
        let tables: [Database<Bytes, Bytes>; TABLE_COUNT] = opened
            .try_into()
            .unwrap_or_else(|_| unreachable!("one handle per table name"));
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
        Ok(CommitOrAbort::Commit((tables, OwnedMeta(store_meta))))
    })?;
    Ok(match opened {
        CommitOrAbort::Commit((tables, OwnedMeta(store_meta))) => {
            Some((Tables::from_handles(tables), store_meta))
        }
        CommitOrAbort::Abort(()) => None,
    })
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
        // A migration killed before its first commit left its mark and at most an
        // empty environment: never a store to create (it finishes with --from-last).
        let create = mode != OpenMode::MustExist && !migration_started(dir);
        if !create && !environment_exists(dir) {
            return Err(no_store(dir));
        }
        refuse_other_formats(dir)?;
        let env = open_env(dir, &options, EnvAccess::Writable)?;
        let outcome = match (load(&env, dir, Unfinished::Refuse), mode) {
            (Ok(Some(_)), OpenMode::MustBeNew) => Err(StoreError::StoreExists {
                dir: dir.to_path_buf(),
            }),
            (Ok(Some(loaded)), _) => Ok(loaded),
            (Ok(None), _) if !create => Err(no_store(dir)),
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
            return Err(no_store(dir));
        }
        let env = open_env(dir, &options, access)?;
        let loaded = match load(&env, dir, Unfinished::Refuse) {
            Ok(Some(loaded)) => loaded,
            Ok(None) => {
                close_env(env);
                return Err(no_store(dir));
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
                instance: super::next_instance(),
            }),
        })
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
