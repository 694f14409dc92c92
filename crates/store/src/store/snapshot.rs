//! `Snapshot`: a read transaction over the whole store, any thread's, and what it reads:
//! the catalog of databases (`DatabaseInfo`), their configurations, users, sessions,
//! jobs, the service status and the change-log epoch; one database through
//! `Snapshot::database`.

use heed::{RoTxn, WithoutTls};

use super::open::Tables;
use super::view::DatabaseView;
use super::Store;
use crate::error::{Result, StoreError};
use crate::format::{
    meta_key, CatalogRecord, DatabaseConfig, FollowRecord, Retention, SessionRecord, SyncPosition,
    UserRecord,
};
use crate::jobs::JobRecord;
use crate::journal::{
    check_entry, entry_key, entry_seq, EntryHeader, JournalPosition, Lineage, TableId,
};
use crate::status::ServiceStatus;
use crate::writer::JournalEntry;

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
    pub(super) fn from_record(name: &str, record: &CatalogRecord, offline: bool) -> DatabaseInfo {
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
}

/// A committed state of a store: which opening of an environment it is in (a restore
/// or a mirror's new copy of its leader opens another), its change-log epoch, and the
/// number LMDB gives the commit that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateVersion {
    instance: u64,
    epoch: u64,
    commit: usize,
}

/// A read transaction over the whole store.
pub struct Snapshot {
    pub(crate) txn: RoTxn<'static, WithoutTls>,
    pub(crate) tables: Tables,
    // Keeps the environment open for as long as the transaction lives.
    _store: Store,
}

impl Snapshot {
    /// Opens a read transaction on `store` (see `Store::snapshot`).
    pub(super) fn begin(store: &Store) -> Result<Snapshot> {
        Ok(Snapshot {
            txn: store.env().clone().static_read_txn()?,
            tables: store.shared.tables,
            _store: store.clone(),
        })
    }

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

    /// Which committed state this snapshot reads: snapshots of the same version read
    /// the same bytes, so an older snapshot whose version equals a newer one's reads
    /// what the newer one would (nothing was committed in between).
    pub fn version(&self) -> Result<StateVersion> {
        Ok(StateVersion {
            instance: self._store.shared.instance,
            epoch: self.epoch()?,
            commit: self.txn.id(),
        })
    }

    /// How many entries `table` holds and the SHA-256 of them all (each key and value
    /// with its length, in key order): two environments whose tables have equal digests
    /// hold the same bytes (how a mirror is compared with its leader).
    pub fn table_digest(&self, table: TableId) -> Result<(u64, String)> {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        let mut entries = 0;
        for item in self.tables.raw(table).iter(&self.txn)? {
            let (key, value) = item?;
            for part in [key, value] {
                hasher.update((part.len() as u64).to_be_bytes());
                hasher.update(part);
            }
            entries += 1;
        }
        Ok((entries, hex::encode(hasher.finalize())))
    }

    /// The journal's newest entry: where a mirror of this store stands.
    pub fn journal_position(&self) -> Result<JournalPosition> {
        match self.tables.journal.last(&self.txn)? {
            Some((key, value)) => {
                let header = EntryHeader::decode(value)?;
                Ok(JournalPosition {
                    seq: entry_seq(key)?,
                    fingerprint: Some((header.crc, header.epoch)),
                })
            }
            None => Ok(JournalPosition {
                seq: 0,
                fingerprint: None,
            }),
        }
    }

    /// The journal's oldest and newest seqs and the bytes of the entries it keeps.
    pub fn journal_usage(&self) -> Result<crate::usage::JournalUsage> {
        let (Some((first_key, first)), Some((last_key, last))) = (
            self.tables.journal.first(&self.txn)?,
            self.tables.journal.last(&self.txn)?,
        ) else {
            return Ok(crate::usage::JournalUsage::default());
        };
        Ok(crate::usage::JournalUsage {
            first_seq: entry_seq(first_key)?,
            last_seq: entry_seq(last_key)?,
            bytes: EntryHeader::decode(last)?
                .end(last.len())
                .saturating_sub(EntryHeader::decode(first)?.start),
        })
    }

    /// The seq of the journal's oldest entry (0 when it is empty).
    pub fn journal_first(&self) -> Result<u64> {
        match self.tables.journal.first(&self.txn)? {
            Some((key, _)) => entry_seq(key),
            None => Ok(0),
        }
    }

    /// How a mirror's `position` stands against this journal: whether the entries after
    /// it continue the mirror's history.
    pub fn journal_lineage(&self, position: &JournalPosition) -> Result<Lineage> {
        let head = self.journal_position()?.seq;
        if position.seq > head {
            return Ok(Lineage::Diverged { head });
        }
        let first = self.journal_first()?;
        if position.seq == 0 {
            return Ok(if first <= 1 {
                Lineage::Continues
            } else {
                Lineage::Compacted { first }
            });
        }
        let Some(value) = self
            .tables
            .journal
            .get(&self.txn, &entry_key(position.seq))?
        else {
            return Ok(Lineage::Compacted { first });
        };
        let header = EntryHeader::decode(value)?;
        Ok(
            if position.fingerprint == Some((header.crc, header.epoch)) {
                Lineage::Continues
            } else {
                Lineage::Diverged { head }
            },
        )
    }

    /// The journal's entries after `after`, checked, oldest first: at most
    /// `max_entries`, and no more once `max_bytes` are reached (one at least).
    pub fn journal_entries(
        &self,
        after: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<JournalEntry>> {
        let mut entries = Vec::new();
        let mut bytes = 0;
        let from = entry_key(after.saturating_add(1));
        for item in self.tables.journal.range(
            &self.txn,
            &(
                std::ops::Bound::Included(&from[..]),
                std::ops::Bound::Unbounded,
            ),
        )? {
            let (key, value) = item?;
            if !entries.is_empty()
                && (entries.len() >= max_entries || bytes + value.len() > max_bytes)
            {
                break;
            }
            let seq = entry_seq(key)?;
            check_entry(seq, value)?;
            bytes += value.len();
            entries.push(JournalEntry {
                seq,
                value: value.to_vec(),
            });
        }
        Ok(entries)
    }

    /// The service status an admin set (READ_WRITE with no messages when never set).
    pub fn status(&self) -> Result<ServiceStatus> {
        self.tables
            .meta
            .get(&self.txn, meta_key::STATUS)?
            .map(ServiceStatus::decode)
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// The service this one follows (migration mode), or `None`.
    pub fn follow(&self) -> Result<Option<FollowRecord>> {
        self.tables
            .meta
            .get(&self.txn, meta_key::FOLLOW)?
            .map(FollowRecord::decode)
            .transpose()
    }

    /// Every database's sync position, in name order.
    pub fn sync_positions(&self) -> Result<Vec<(String, SyncPosition)>> {
        let mut out = Vec::new();
        for entry in self.tables.sync.iter(&self.txn)? {
            let (name, bytes) = entry?;
            out.push((name.to_string(), SyncPosition::decode(bytes)?));
        }
        Ok(out)
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

/// The configuration record of `name`, `None` when it has none.
pub(crate) fn read_config(
    txn: &RoTxn,
    tables: Tables,
    name: &str,
) -> Result<Option<DatabaseConfig>> {
    tables
        .configs
        .get(txn, name)?
        .map(DatabaseConfig::decode)
        .transpose()
}
