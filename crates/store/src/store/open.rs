//! Opening and creating the environment of a working directory (`DIR/store`): the LMDB
//! flags of writable and read-only opens, the tables of a new store and its meta keys
//! written in one commit, the tables of an existing one (with those format 1 gained
//! later created when missing), and the `Store` constructors that start the writer
//! thread (or, read-only, a thread that refuses every write).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use heed::types::{Bytes, Str};
use heed::{CommitOrAbort, Database, DatabaseFlags, Env, EnvFlags, EnvOpenOptions, WithoutTls};

use super::{now_ms, Shared, Store, StoreMeta, StoreOptions, STORE_DIR};
use crate::error::{Result, StoreError};
use crate::format::{meta_key, table, FORMAT_VERSION};
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
}

/// Carries `StoreMeta` out of `open_databases_and_commit`, which wants `OnCommit` values.
struct OwnedMeta(StoreMeta);

impl heed::OnCommit for OwnedMeta {
    type Committed = OwnedMeta;
    fn on_commit(self, _token: &heed::CommitToken) -> OwnedMeta {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{
        change_key, change_record, doc_key, doc_value, CatalogRecord, ChangeOp, DatabaseConfig,
        Retention,
    };
    use crate::index::{IndexKey, IndexQuery};

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
            let stored = doc_value(1, &value);
            docs.put(wtxn, &doc_key(1, "k"), &stored)?;
            let change = change_record(ChangeOp::Put, 1, "k", Some(&value));
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
}
