//! The source of a migration: a working directory of format 1, opened read-only without
//! a lock file (`MDB_RDONLY | MDB_NOLOCK`, so that not one byte of it changes) while a
//! shared lock on its `service.lock` keeps services from starting on it (one running on
//! it refuses the migration, naming its pid). Format 1's tables are read with format 1's
//! layouts: a document value is its rev then the msgpack value, a change record is
//! format 2's body without the checksum; the records of the other tables are the same
//! in both formats. The `configs` and `indexes` tables may be missing (directories
//! made before format 1 gained them: every database online, without indexes).

use std::fs::File;
use std::ops::Bound;
use std::path::Path;

use heed::types::{Bytes, Str};
use heed::{Database, Env, RoTxn, WithoutTls};

use crate::backup::hold_against_services;
use crate::error::{Result, StoreError};
use crate::format::{
    database_bounds, meta_key, table, CatalogRecord, DatabaseConfig, FORMAT_VERSION,
};
use crate::store::{close_env, open_env, EnvAccess, StoreOptions};

/// The format this file reads.
pub(crate) const SOURCE_FORMAT: u32 = 1;

/// The tables every format-1 store has (`configs` and `indexes` may be missing).
const REQUIRED_TABLES: [&str; 7] = [
    table::META,
    table::CATALOG,
    table::DOCS,
    table::CHANGES,
    table::USERS,
    table::SESSIONS,
    table::JOBS,
];

/// A format-1 working directory open for reading.
pub(crate) struct Source {
    env: Option<Env<WithoutTls>>,
    meta: Database<'static, Str, Bytes>,
    catalog: Database<'static, Str, Bytes>,
    docs: Database<'static, Bytes, Bytes>,
    changes: Database<'static, Bytes, Bytes>,
    pub(crate) users: Database<'static, Str, Bytes>,
    pub(crate) sessions: Database<'static, Bytes, Bytes>,
    pub(crate) jobs: Database<'static, Bytes, Bytes>,
    configs: Option<Database<'static, Str, Bytes>>,
    /// The shared lock on `service.lock` that keeps services away.
    _held: Option<File>,
}

/// What the source's `meta` table says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceMeta {
    pub service_id: String,
    pub epoch: u64,
    pub next_database_id: u32,
    pub next_job_id: Option<u64>,
    /// The stored status record, as it is (the same layout in both formats).
    pub status: Option<Vec<u8>>,
}

/// One database of the source, with its configuration.
#[derive(Debug, Clone)]
pub(crate) struct SourceDatabase {
    pub name: String,
    pub record: CatalogRecord,
    pub config: DatabaseConfig,
}

fn missing(name: &'static str) -> StoreError {
    StoreError::Corrupt {
        table: name,
        reason: "missing".to_string(),
    }
}

fn fixed<const N: usize>(bytes: &[u8], what: &'static str) -> Result<[u8; N]> {
    bytes.try_into().map_err(|_| StoreError::Corrupt {
        table: table::META,
        reason: format!("{what} is {} bytes, expected {N}", bytes.len()),
    })
}

/// One value of the `meta` table of `env` (of any format), `None` when the key or the
/// table is missing.
pub(crate) fn meta_value(env: &Env<WithoutTls>, key: &str) -> Result<Option<Vec<u8>>> {
    let rtxn = env.read_txn()?;
    let read = env.open_databases_and_commit(rtxn, |opener, rtxn| -> Result<_> {
        let value = match opener.open_database::<Str, Bytes>(rtxn, Some(table::META))? {
            Some(meta) => meta.get(rtxn, key)?.map(<[u8]>::to_vec),
            None => None,
        };
        Ok(heed::CommitOrAbort::<(), _>::Abort(value))
    })?;
    Ok(match read {
        heed::CommitOrAbort::Abort(value) => value,
        heed::CommitOrAbort::Commit(()) => None,
    })
}

/// The format version of the store in `dir` (any format), read without writing a byte;
/// `NoStore` when it holds none.
pub(crate) fn format_of(dir: &Path) -> Result<u32> {
    if !dir.join(crate::backup::ENV_FILE).exists() {
        return Err(StoreError::NoStore {
            dir: dir.to_path_buf(),
        });
    }
    let env = open_env(dir, &StoreOptions::default(), EnvAccess::Unshared)?;
    let version = meta_value(&env, meta_key::FORMAT_VERSION);
    close_env(env);
    version?
        .map(|v| fixed::<4>(&v, "format_version").map(u32::from_be_bytes))
        .transpose()?
        .ok_or_else(|| StoreError::NoStore {
            dir: dir.to_path_buf(),
        })
}

impl Source {
    /// Opens the format-1 store of `dir`: `DirectoryInUse` (with the pid) when a service
    /// runs on it, `Migration` when it is of this release's format already,
    /// `FormatMismatch` when it is of another format.
    pub(crate) fn open(dir: &Path) -> Result<Source> {
        let held = hold_against_services(dir)?;
        let found = format_of(dir)?;
        if found == FORMAT_VERSION {
            return Err(StoreError::Migration {
                reason: format!(
                    "{} is format {found} already, the format this release reads: nothing to migrate (cairn-service {} serves it)",
                    dir.display(),
                    dir.display()
                ),
            });
        }
        if found != SOURCE_FORMAT {
            // A newer format is named against the format this release reads (and
            // writes), not the one it migrates from.
            return Err(StoreError::FormatMismatch {
                dir: dir.to_path_buf(),
                found,
                expected: if found > FORMAT_VERSION {
                    FORMAT_VERSION
                } else {
                    SOURCE_FORMAT
                },
            });
        }
        let env = open_env(dir, &StoreOptions::default(), EnvAccess::Unshared)?;
        let opened = (|| -> Result<_> {
            let rtxn = env.read_txn()?;
            let opened = env.open_databases_and_commit(rtxn, |opener, rtxn| -> Result<_> {
                let mut required = Vec::with_capacity(REQUIRED_TABLES.len());
                for name in REQUIRED_TABLES {
                    let table = opener
                        .open_database::<Bytes, Bytes>(rtxn, Some(name))?
                        .ok_or_else(|| missing(name))?;
                    required.push(table);
                }
                let required: [Database<Bytes, Bytes>; REQUIRED_TABLES.len()] = required
                    .try_into()
                    .unwrap_or_else(|_| unreachable!("one handle per table name"));
                let configs = opener.open_database::<Bytes, Bytes>(rtxn, Some(table::CONFIGS))?;
                Ok(heed::CommitOrAbort::<_, ()>::Commit((required, configs)))
            })?;
            Ok(opened.unwrap_commit())
        })();
        let ([meta, catalog, docs, changes, users, sessions, jobs], configs) = match opened {
            Ok(opened) => opened,
            Err(error) => {
                close_env(env);
                return Err(error);
            }
        };
        Ok(Source {
            env: Some(env),
            meta: meta.remap_key_type(),
            catalog: catalog.remap_key_type(),
            docs,
            changes,
            users: users.remap_key_type(),
            sessions,
            jobs,
            configs: configs.map(|t| t.remap_key_type()),
            _held: held,
        })
    }

    /// A read transaction on the source.
    pub(crate) fn read(&self) -> Result<RoTxn<'_, WithoutTls>> {
        Ok(self.env.as_ref().expect("open until dropped").read_txn()?)
    }

    /// What the source's `meta` table says.
    pub(crate) fn meta(&self, txn: &RoTxn<WithoutTls>) -> Result<SourceMeta> {
        let get = |key: &'static str| self.meta.get(txn, key);
        let service_id = get(meta_key::SERVICE_ID)?
            .map(hex::encode)
            .ok_or_else(|| missing("meta.service_id"))?;
        let epoch = get(meta_key::EPOCH)?
            .map(|b| fixed::<8>(b, "epoch").map(u64::from_be_bytes))
            .transpose()?
            .unwrap_or(0);
        let next_database_id = get(meta_key::NEXT_DATABASE_ID)?
            .map(|b| fixed::<4>(b, "next_database_id").map(u32::from_be_bytes))
            .transpose()?
            .ok_or_else(|| missing("meta.next_database_id"))?;
        let next_job_id = get(meta_key::NEXT_JOB_ID)?
            .map(|b| fixed::<8>(b, "next_job_id").map(u64::from_be_bytes))
            .transpose()?;
        Ok(SourceMeta {
            service_id,
            epoch,
            next_database_id,
            next_job_id,
            status: get(meta_key::STATUS)?.map(<[u8]>::to_vec),
        })
    }

    /// Every database with its configuration, by id (the order their keys sort in).
    pub(crate) fn databases(&self, txn: &RoTxn<WithoutTls>) -> Result<Vec<SourceDatabase>> {
        let mut out = Vec::new();
        for entry in self.catalog.iter(txn)? {
            let (name, record) = entry?;
            let config = match self.configs {
                Some(configs) => configs
                    .get(txn, name)?
                    .map(DatabaseConfig::decode)
                    .transpose()?
                    .unwrap_or_default(),
                None => DatabaseConfig::default(),
            };
            out.push(SourceDatabase {
                name: name.to_string(),
                record: CatalogRecord::decode(record)?,
                config,
            });
        }
        out.sort_by_key(|db| db.record.id);
        Ok(out)
    }

    /// The stored documents of database `db_id` after the stored key `after` (all of
    /// them without one), in key order: each stored key and value as they are.
    pub(crate) fn docs<'t>(
        &self,
        txn: &'t RoTxn<WithoutTls>,
        db_id: u32,
        after: Option<&[u8]>,
    ) -> Result<impl Iterator<Item = heed::Result<(&'t [u8], &'t [u8])>>> {
        database_entries(self.docs, txn, db_id, after)
    }

    /// The stored change records of database `db_id` after the stored key `after`, in
    /// seq order, as they are.
    pub(crate) fn changes<'t>(
        &self,
        txn: &'t RoTxn<WithoutTls>,
        db_id: u32,
        after: Option<&[u8]>,
    ) -> Result<impl Iterator<Item = heed::Result<(&'t [u8], &'t [u8])>>> {
        database_entries(self.changes, txn, db_id, after)
    }

    /// How many entries the database `db_id` has in `docs` and in `changes`.
    pub(crate) fn count(&self, txn: &RoTxn<WithoutTls>, db_id: u32) -> Result<(u64, u64)> {
        let mut docs = 0;
        for entry in self.docs(txn, db_id, None)? {
            entry?;
            docs += 1;
        }
        let mut changes = 0;
        for entry in self.changes(txn, db_id, None)? {
            entry?;
            changes += 1;
        }
        Ok((docs, changes))
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        if let Some(env) = self.env.take() {
            close_env(env);
        }
    }
}

/// The entries of `table` whose keys begin with database `db_id`'s id, after the
/// stored key `after` (all of them without one).
fn database_entries<'t>(
    table: Database<'static, Bytes, Bytes>,
    txn: &'t RoTxn<WithoutTls>,
    db_id: u32,
    after: Option<&[u8]>,
) -> Result<impl Iterator<Item = heed::Result<(&'t [u8], &'t [u8])>>> {
    let (low, high) = database_bounds(db_id);
    let low = match after {
        Some(after) => Bound::Excluded(after),
        None => Bound::Included(&low[..]),
    };
    let bounds = (low, Bound::Excluded(&high[..]));
    Ok(table.range(txn, &bounds)?)
}
