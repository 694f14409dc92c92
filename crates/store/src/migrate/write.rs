//! The writing side of a migration: it takes the chunks the reading thread (`read`)
//! prepares, checks unique indexes against what the destination holds, puts the
//! documents, entries and change records (appended: they come in key order) and
//! commits a batch at a time with the migration record that says where the batch
//! ended, so that a run killed at any moment finishes from the last commit.

use heed::{Env, PutFlags, RwTxn, WithoutTls};

use super::files::Dump;
use super::read::{pipelined, ChangeReader, DocumentChunk, DocumentReader, Verdict};
use super::source::SourceDatabase;
use super::{Cursor, Migration, MigrationRecord, Moved, Refusal, Stage, LISTED_REFUSALS};
use crate::error::{Result, StoreError};
use crate::format::{meta_key, CatalogRecord, DatabaseConfig, CHECKSUM_BYTES, DATABASE_ID_BYTES};
use crate::index::{compile, Compiled};
use crate::store::Tables;

/// Documents after which a transaction commits (at the end of the chunk that reaches
/// them).
pub const BATCH_DOCUMENTS: u64 = 50_000;
/// Change records after which a transaction commits (at the end of the chunk).
pub const BATCH_CHANGES: u64 = 100_000;
/// Bytes of documents or change records after which a transaction commits.
pub const BATCH_BYTES: usize = 64 << 20;

/// Where the documents of one database stand while they move.
struct DocumentsInFlight<'c> {
    db: &'c SourceDatabase,
    compiled: &'c [Compiled],
    safety_off: bool,
    catalog: CatalogRecord,
    config: DatabaseConfig,
    /// Documents read since the last commit, and their bytes.
    read: u64,
    bytes: usize,
}

impl Migration<'_> {
    /// Moves the documents of `db` after the cursor, then moves the cursor to the
    /// change log; `report` hears how many documents each commit covered.
    #[allow(
        clippy::too_many_arguments,
        reason = "the database, where it stands, and where refusals and progress go"
    )]
    pub(super) fn documents(
        &self,
        tables: &Tables,
        db: &SourceDatabase,
        record: &mut MigrationRecord,
        cursor: &mut Cursor,
        dump: &mut Option<Dump>,
        moved: &mut Moved,
        report: &mut dyn FnMut(u64),
    ) -> Result<()> {
        let mut wtxn = Some(self.env.write_txn()?);
        let (catalog, config) = {
            let txn = wtxn.as_ref().expect("just begun");
            (
                read_catalog(tables, txn, &db.name)?,
                read_config(tables, txn, &db.name)?,
            )
        };
        let compiled = compile(&config.indexes)?;
        let reader = DocumentReader {
            source: self.source,
            db,
            compiled: &compiled,
            // Indexes stale in the source wait for a resync here too: not built, and
            // no reason to refuse a document.
            build_indexes: !config.indexes_stale && !compiled.is_empty(),
            safety_off: self.options.safety_off,
            max_value_bytes: self.options.store.max_value_bytes,
            after: cursor.after.clone(),
        };
        let mut flight = DocumentsInFlight {
            db,
            compiled: &compiled,
            safety_off: self.options.safety_off,
            catalog,
            config,
            read: 0,
            bytes: 0,
        };
        pipelined(
            |out| reader.run(out),
            |chunk| {
                let txn = begun(self.env, &mut wtxn)?;
                for index in 0..chunk.documents.len() {
                    flight.write(tables, txn, &chunk, index, record, dump, moved)?;
                }
                if flight.read >= BATCH_DOCUMENTS || flight.bytes >= BATCH_BYTES {
                    cursor.after = chunk.last_key().map(<[u8]>::to_vec);
                    record.current = Some(cursor.clone());
                    let txn = taken(self.env, &mut wtxn)?;
                    flight.commit(tables, txn, record, dump)?;
                    report(std::mem::take(&mut flight.read));
                    flight.bytes = 0;
                }
                Ok(())
            },
        )?;
        *cursor = Cursor {
            db: db.name.clone(),
            stage: Stage::Changes,
            after: None,
        };
        record.current = Some(cursor.clone());
        let txn = taken(self.env, &mut wtxn)?;
        flight.commit(tables, txn, record, dump)?;
        report(flight.read);
        Ok(())
    }

    /// Moves the change records of `db` after the cursor, as they are, then marks the
    /// database done.
    pub(super) fn changes(
        &self,
        tables: &Tables,
        db: &SourceDatabase,
        record: &mut MigrationRecord,
        cursor: &mut Cursor,
    ) -> Result<()> {
        let mut wtxn = Some(self.env.write_txn()?);
        let mut catalog = read_catalog(tables, wtxn.as_ref().expect("just begun"), &db.name)?;
        let reader = ChangeReader {
            source: self.source,
            db_id: db.record.id,
            after: cursor.after.clone(),
        };
        let (mut count, mut bytes) = (0u64, 0usize);
        pipelined(
            |out| reader.run(out),
            |chunk| {
                let txn = begun(self.env, &mut wtxn)?;
                for (key, value) in &chunk.records {
                    let (key, value) = (chunk.bytes(key), chunk.bytes(value));
                    tables
                        .changes
                        .put_with_flags(txn, PutFlags::APPEND, key, value)?;
                    count += 1;
                    bytes += key.len() + value.len();
                    catalog.log_bytes += (key.len() + value.len()) as u64;
                }
                if count >= BATCH_CHANGES || bytes >= BATCH_BYTES {
                    cursor.after = chunk.last_key().map(<[u8]>::to_vec);
                    record.current = Some(cursor.clone());
                    let txn = taken(self.env, &mut wtxn)?;
                    commit_changes(tables, txn, &db.name, &catalog, record)?;
                    (count, bytes) = (0, 0);
                }
                Ok(())
            },
        )?;
        record.done.push(db.name.clone());
        record.current = None;
        let txn = taken(self.env, &mut wtxn)?;
        commit_changes(tables, txn, &db.name, &catalog, record)
    }
}

impl DocumentsInFlight<'_> {
    /// Puts document `index` of `chunk` with its index entries, or refuses it.
    #[allow(
        clippy::too_many_arguments,
        reason = "the tables, the chunk, and where refusals go"
    )]
    fn write(
        &mut self,
        tables: &Tables,
        txn: &mut RwTxn,
        chunk: &DocumentChunk,
        index: usize,
        record: &mut MigrationRecord,
        dump: &mut Option<Dump>,
        moved: &mut Moved,
    ) -> Result<()> {
        let document = &chunk.documents[index];
        let stored_key = chunk.bytes(&document.stored_key);
        self.read += 1;
        let (value, entries, stale) = match &document.verdict {
            Verdict::Move {
                value,
                entries,
                stale,
            } => (chunk.bytes(value), chunk.entries(entries), *stale),
            Verdict::Refuse { stored, refusal } => {
                let stored = chunk.bytes(stored);
                self.bytes += stored_key.len() + stored.len();
                return self.refuse(stored_key, stored, refusal.clone(), record, dump, moved);
            }
        };
        self.bytes += stored_key.len() + value.len();
        if !self.safety_off {
            for entry in entries {
                let index = &self.compiled[entry.position];
                if !index.unique {
                    continue;
                }
                let error = match held_by(tables, txn, chunk.entry(entry).1) {
                    Ok(None) => continue,
                    Ok(Some(holder)) => format!(
                        "unique index {:?}: its value is held by {holder:?} already",
                        index.name
                    ),
                    Err(error) => error.to_string(),
                };
                let refusal = Refusal {
                    key: String::from_utf8_lossy(&stored_key[DATABASE_ID_BYTES..]).into_owned(),
                    rev: u64::from_be_bytes(value[..8].try_into().expect("a rev")),
                    error,
                };
                // The source's value: the rev, then the msgpack value (no checksum).
                let stored = [&value[..8], &value[8 + CHECKSUM_BYTES..]].concat();
                return self.refuse(stored_key, &stored, refusal, record, dump, moved);
            }
        }
        tables
            .docs
            .put_with_flags(txn, PutFlags::APPEND, stored_key, value)?;
        self.catalog.doc_count += 1;
        self.catalog.doc_bytes += (stored_key.len() + value.len()) as u64;
        if stale {
            self.config.indexes_stale = true;
        }
        for entry in entries {
            // With the checks off, once an entry cannot be built the indexes wait for
            // a resync: no more entries are written.
            if self.config.indexes_stale {
                break;
            }
            let (entry_key, value_key) = chunk.entry(entry);
            if self.safety_off
                && self.compiled[entry.position].unique
                && !matches!(held_by(tables, txn, value_key), Ok(None))
            {
                self.config.indexes_stale = true;
                break;
            }
            tables.indexes.put(txn, entry_key, &[])?;
        }
        Ok(())
    }

    fn refuse(
        &mut self,
        stored_key: &[u8],
        stored: &[u8],
        refusal: Refusal,
        record: &mut MigrationRecord,
        dump: &mut Option<Dump>,
        moved: &mut Moved,
    ) -> Result<()> {
        *record.refused.entry(self.db.name.clone()).or_insert(0) += 1;
        if let Some(dump) = dump {
            dump.write(
                &self.db.name,
                &stored_key[DATABASE_ID_BYTES..],
                stored,
                &refusal,
            )?;
        }
        if moved.refusals.len() < LISTED_REFUSALS {
            moved.refusals.push(refusal);
        }
        Ok(())
    }

    /// Commits the batch with the database's catalog and configuration, the dump made
    /// durable, and the migration record (its cursor set by the caller).
    fn commit(
        &self,
        tables: &Tables,
        mut txn: RwTxn,
        record: &mut MigrationRecord,
        dump: &mut Option<Dump>,
    ) -> Result<()> {
        if let Some(dump) = dump {
            record.dump_bytes = dump.sync()?;
        }
        let name = &self.db.name;
        tables.catalog.put(&mut txn, name, &self.catalog.encode())?;
        tables.configs.put(&mut txn, name, &self.config.encode())?;
        tables
            .meta
            .put(&mut txn, meta_key::MIGRATION, &record.encode())?;
        txn.commit()?;
        Ok(())
    }
}

/// The write transaction of the batch in `slot`, begun on this thread if none is.
fn begun<'e, 's>(
    env: &'e Env<WithoutTls>,
    slot: &'s mut Option<RwTxn<'e>>,
) -> Result<&'s mut RwTxn<'e>> {
    Ok(match slot {
        Some(txn) => txn,
        None => slot.insert(env.write_txn()?),
    })
}

/// The write transaction in `slot`, or a new one, to commit.
fn taken<'e>(env: &'e Env<WithoutTls>, slot: &mut Option<RwTxn<'e>>) -> Result<RwTxn<'e>> {
    Ok(match slot.take() {
        Some(txn) => txn,
        None => env.write_txn()?,
    })
}

/// Commits a batch of change records with the database's catalog and the migration
/// record.
fn commit_changes(
    tables: &Tables,
    mut txn: RwTxn,
    name: &str,
    catalog: &CatalogRecord,
    record: &MigrationRecord,
) -> Result<()> {
    tables.catalog.put(&mut txn, name, &catalog.encode())?;
    tables
        .meta
        .put(&mut txn, meta_key::MIGRATION, &record.encode())?;
    txn.commit()?;
    Ok(())
}

/// The document that holds the value `value_key` of an index already, if one does.
fn held_by(tables: &Tables, txn: &RwTxn, value_key: &[u8]) -> Result<Option<String>> {
    match tables.indexes.prefix_iter(txn, value_key)?.next() {
        Some(entry) => Ok(Some(
            crate::format::split_index_entry(entry?.0)?.2.to_string(),
        )),
        None => Ok(None),
    }
}

pub(super) fn read_catalog(tables: &Tables, txn: &RwTxn, name: &str) -> Result<CatalogRecord> {
    tables
        .catalog
        .get(txn, name)?
        .map(CatalogRecord::decode)
        .transpose()?
        .ok_or_else(|| StoreError::DatabaseMissing {
            name: name.to_string(),
        })
}

pub(super) fn read_config(tables: &Tables, txn: &RwTxn, name: &str) -> Result<DatabaseConfig> {
    Ok(tables
        .configs
        .get(txn, name)?
        .map(DatabaseConfig::decode)
        .transpose()?
        .unwrap_or_default())
}
