//! Writes that create, drop and configure databases: creation (with a new database id
//! and a configuration record), drop (every document, change, index entry and the
//! configuration), the offline flag, index definitions and retention, and trimming a
//! change log to what its retention keeps.

use crate::journal::TableId;
use std::ops::Bound;

use super::apply::{CachedEntry, GroupTxn};
use super::requests::Written;
use super::Failure;
use crate::error::StoreError;
use crate::format::{
    change_key, change_key_seq, database_bounds, meta_key, read_change_record, table,
    CatalogRecord, DatabaseConfig, IndexDef, Retention, MAX_DATABASE_ID,
};

impl GroupTxn<'_> {
    /// Creates the database `name` (online or offline) with a new id and its
    /// configuration record.
    pub(super) fn create_database(
        &mut self,
        name: &str,
        retention: Retention,
        offline: bool,
    ) -> Result<Written, Failure> {
        if self.record(name)?.is_some() {
            return Err(Failure::Request(StoreError::DatabaseExists {
                name: name.to_string(),
            }));
        }
        let id = self.take_database_id()?;
        let config = DatabaseConfig {
            offline,
            ..DatabaseConfig::default()
        };
        self.put(TableId::Configs, name, config.encode())?;
        self.catalog.insert(
            name.to_string(),
            CachedEntry {
                record: Some(CatalogRecord {
                    id,
                    created_ms: self.now_ms,
                    last_seq: 0,
                    trimmed_through: 0,
                    doc_count: 0,
                    doc_bytes: 0,
                    log_bytes: 0,
                    retention,
                }),
                dirty: true,
                config: Some(config),
            },
        );
        Ok(Written::DatabaseCreated)
    }

    /// Drops the database `name` with its documents, change log, index entries,
    /// configuration record and sync position.
    pub(super) fn drop_database(&mut self, name: &str) -> Result<Written, Failure> {
        let id = self.existing(name)?.id;
        let (low, high) = database_bounds(id);
        for table in [TableId::Docs, TableId::Changes, TableId::Indexes] {
            self.delete_range(table, Bound::Included(&low[..]), Bound::Excluded(&high[..]))?;
        }
        self.delete(TableId::Configs, name)?;
        self.delete(TableId::Sync, name)?;
        self.catalog.insert(
            name.to_string(),
            CachedEntry {
                record: None,
                dirty: true,
                config: None,
            },
        );
        Ok(Written::DatabaseDropped)
    }

    /// Sets or clears the offline flag of `name`; answers whether it changed.
    pub(super) fn set_offline(&mut self, name: &str, offline: bool) -> Result<Written, Failure> {
        let config = self.config(name)?;
        if config.offline == offline {
            return Ok(Written::OfflineSet { changed: false });
        }
        let config = DatabaseConfig {
            offline,
            ..config.clone()
        };
        self.save_config(name, config)?;
        Ok(Written::OfflineSet { changed: true })
    }

    pub(super) fn set_database_config(
        &mut self,
        name: &str,
        indexes: &[IndexDef],
        retention: Retention,
    ) -> Result<Written, Failure> {
        let mut config = self.offline_config(name)?;
        let record = self.existing_mut(name)?;
        record.retention = retention;
        let (id, doc_count) = (record.id, record.doc_count);
        let indexes_changed = config.indexes != indexes;
        if indexes_changed {
            let (low, high) = database_bounds(id);
            self.delete_range(
                TableId::Indexes,
                Bound::Included(&low[..]),
                Bound::Excluded(&high[..]),
            )?;
            config.indexes = indexes.to_vec();
            // An empty database's new indexes are complete at once.
            config.indexes_stale = doc_count > 0 && !indexes.is_empty();
        }
        let indexes_stale = config.indexes_stale;
        self.save_config(name, config)?;
        Ok(Written::DatabaseConfigSet {
            indexes_changed,
            indexes_stale,
        })
    }

    /// The id for a new database: the `next_database_id` counter of `meta`, advanced in
    /// memory and written back before the commit.
    fn take_database_id(&mut self) -> Result<u32, Failure> {
        let id = match self.next_database_id {
            Some(id) => id,
            None => {
                let bytes = self
                    .tables
                    .meta
                    .get(&self.wtxn, meta_key::NEXT_DATABASE_ID)?
                    .ok_or_else(|| StoreError::Corrupt {
                        table: table::META,
                        reason: "next_database_id missing".to_string(),
                    })?;
                u32::from_be_bytes(bytes.try_into().map_err(|_| StoreError::Corrupt {
                    table: table::META,
                    reason: "next_database_id is not 4 bytes".to_string(),
                })?)
            }
        };
        if id > MAX_DATABASE_ID {
            return Err(Failure::Request(StoreError::InvalidArgument {
                reason: "every database id has been used".to_string(),
            }));
        }
        self.next_database_id = Some(id + 1);
        Ok(id)
    }

    /// Applies retention to the log of every database; returns the entries removed.
    pub(super) fn trim_every_database(&mut self) -> Result<u64, Failure> {
        let mut names = Vec::new();
        for entry in self.tables.catalog.iter(&self.wtxn)? {
            names.push(entry?.0.to_string());
        }
        let mut trimmed = 0;
        for name in names {
            if self.record(&name)?.is_some() {
                trimmed += self.trim(&name)?;
            }
        }
        Ok(trimmed)
    }

    /// Removes what retention no longer keeps from the log of database `name`.
    pub(super) fn trim(&mut self, name: &str) -> Result<u64, Failure> {
        let record = self.existing(name)?.clone();
        let Retention {
            max_changes,
            max_age_secs,
        } = record.retention;
        if max_changes.is_none() && max_age_secs.is_none() {
            return Ok(0);
        }
        let keep_from_count = max_changes
            .map(|max| record.last_seq.saturating_sub(max))
            .unwrap_or(0);
        // An age in milliseconds past u64 is older than anything: it keeps everything.
        let age_cutoff_ms =
            max_age_secs.map(|secs| self.now_ms.saturating_sub(secs.saturating_mul(1000)));
        let low = change_key(record.id, record.trimmed_through + 1);
        let (_, high) = database_bounds(record.id);
        let bounds = (Bound::Included(&low[..]), Bound::Excluded(&high[..]));
        let mut trim_through = record.trimmed_through;
        let mut freed = 0u64;
        let mut removed = 0u64;
        for entry in self.tables.changes.range(&self.wtxn, &bounds)? {
            let (key, value) = entry?;
            let seq = change_key_seq(key)?;
            let too_many = seq <= keep_from_count;
            let too_old = age_cutoff_ms.is_some_and(|cutoff| {
                read_change_record(name, record.id, seq, value).is_ok_and(|r| r.time_ms < cutoff)
            });
            if !too_many && !too_old {
                break;
            }
            trim_through = seq;
            freed += (key.len() + value.len()) as u64;
            removed += 1;
        }
        if removed == 0 {
            return Ok(0);
        }
        let end = change_key(record.id, trim_through);
        self.delete_range(
            TableId::Changes,
            Bound::Included(&low[..]),
            Bound::Included(&end[..]),
        )?;
        let record = self.existing_mut(name)?;
        record.trimmed_through = trim_through;
        record.log_bytes -= freed;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use crate::format::{DatabaseConfig, IndexDef, Retention};
    use crate::store::{Store, StoreOptions};

    #[test]
    fn dropping_a_database_removes_its_config_record_and_index_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path(), StoreOptions::default()).unwrap();
        let defs = vec![IndexDef {
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
                tables.configs.len(&snapshot.txn).unwrap(),
                tables.indexes.len(&snapshot.txn).unwrap(),
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
