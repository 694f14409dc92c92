//! `GroupTxn`: the write transaction of one group commit. It keeps the catalog records
//! (and configurations) that its writes touch in memory, hands each `Write` to the code
//! that applies it (`databases.rs`, `batch.rs`, `resync.rs`, `service_tables.rs`, `sync.rs`), and
//! at the end applies retention to the databases the group wrote, writes the catalog
//! records back once, stores the group's journal entry (`journal.rs`) and commits with
//! fsync.

use std::collections::HashMap;

use heed::RwTxn;

use super::requests::{DatabaseCommit, Write, Written};
use super::Failure;
use crate::error::{Result, StoreError};
use crate::format::{meta_key, CatalogRecord, DatabaseConfig, FollowRecord};
use crate::journal::{OpsBuffer, TableId};
use crate::store::{now_ms, read_catalog, read_config, Tables};

/// A database's catalog record and configuration as the group's writes left them.
pub(super) struct CachedEntry {
    /// `None`: the database does not exist (or a write of the group dropped it).
    pub(super) record: Option<CatalogRecord>,
    /// The record changed: it is written back before the commit.
    pub(super) dirty: bool,
    /// The database's configuration, read on first use (`None`: not read yet). Kept in
    /// step with the `configs` table, which is written at once.
    pub(super) config: Option<DatabaseConfig>,
}

/// A write transaction with the catalog records it touched kept in memory, written
/// back once before commit.
pub(super) struct GroupTxn<'e> {
    pub(super) wtxn: RwTxn<'e>,
    pub(super) tables: Tables,
    pub(super) catalog: HashMap<String, CachedEntry>,
    /// The id the next created database gets, once read from `meta`.
    pub(super) next_database_id: Option<u32>,
    /// The follow record (migration mode), once read (`Some(None)`: none).
    pub(super) follow: Option<Option<FollowRecord>>,
    /// The time of the group: every change it logs carries it.
    pub(super) now_ms: u64,
    /// The table-level writes of the group, for its journal entry.
    pub(super) journal: OpsBuffer,
    /// How many bytes of entries the journal keeps (see `journal.rs`).
    pub(super) journal_retain_bytes: u64,
    /// What a mirror's applied entries changed, for the hooks.
    pub(super) mirrored: Mirrored,
    /// The seq of the last journal entry this group stored, once it stored one.
    pub(super) appended: Option<u64>,
}

/// What the journal entries a mirror applied changed.
#[derive(Default)]
pub(super) struct Mirrored {
    /// Databases whose catalog record changed: their last seq, `None` once dropped.
    pub(super) databases: HashMap<String, Option<u64>>,
    pub(super) users_changed: bool,
    /// The service's own state changed: meta (status, epoch, migration mode),
    /// configurations, sync positions, or a database went away.
    pub(super) service_changed: bool,
}

impl<'e> GroupTxn<'e> {
    /// A group in the write transaction `wtxn`, timed now.
    pub(super) fn new(wtxn: RwTxn<'e>, tables: Tables, journal_retain_bytes: u64) -> GroupTxn<'e> {
        GroupTxn {
            wtxn,
            tables,
            catalog: HashMap::new(),
            next_database_id: None,
            follow: None,
            now_ms: now_ms(),
            journal: OpsBuffer::default(),
            journal_retain_bytes,
            mirrored: Mirrored::default(),
            appended: None,
        }
    }
}

impl GroupTxn<'_> {
    /// The cached catalog entry of `name`, read from the transaction on first use.
    fn cached(&mut self, name: &str) -> Result<&mut CachedEntry, Failure> {
        if !self.catalog.contains_key(name) {
            let record = read_catalog(&self.wtxn, self.tables, name)?;
            self.catalog.insert(
                name.to_string(),
                CachedEntry {
                    record,
                    dirty: false,
                    config: None,
                },
            );
        }
        Ok(self.catalog.get_mut(name).expect("inserted above"))
    }

    /// The configuration of the existing database `name` (one read per group).
    pub(super) fn config(&mut self, name: &str) -> Result<&DatabaseConfig, Failure> {
        self.existing(name)?;
        let (wtxn, tables) = (&self.wtxn, self.tables);
        let entry = self.catalog.get_mut(name).expect("cached by existing");
        if entry.config.is_none() {
            entry.config = Some(read_config(wtxn, tables, name)?.unwrap_or_default());
        }
        Ok(entry.config.as_ref().expect("read above"))
    }

    /// The configuration of `name`, refused with `DatabaseOnline` unless it is offline.
    pub(super) fn offline_config(&mut self, name: &str) -> Result<DatabaseConfig, Failure> {
        let config = self.config(name)?;
        if !config.offline {
            return Err(Failure::Request(StoreError::DatabaseOnline {
                name: name.to_string(),
            }));
        }
        Ok(config.clone())
    }

    /// Stores the configuration of `name` (now, in this transaction) and caches it.
    pub(super) fn save_config(
        &mut self,
        name: &str,
        config: DatabaseConfig,
    ) -> Result<(), Failure> {
        self.put(TableId::Configs, name, config.encode())?;
        self.cached(name)?.config = Some(config);
        Ok(())
    }

    pub(super) fn record(&mut self, name: &str) -> Result<Option<&CatalogRecord>, Failure> {
        Ok(self.cached(name)?.record.as_ref())
    }

    fn missing(name: &str) -> Failure {
        Failure::Request(StoreError::DatabaseMissing {
            name: name.to_string(),
        })
    }

    pub(super) fn existing(&mut self, name: &str) -> Result<&CatalogRecord, Failure> {
        self.record(name)?.ok_or_else(|| Self::missing(name))
    }

    /// The record of `name` for changing; it is written back before the commit.
    pub(super) fn existing_mut(&mut self, name: &str) -> Result<&mut CatalogRecord, Failure> {
        let entry = self.cached(name)?;
        match entry.record.as_mut() {
            Some(record) => {
                entry.dirty = true;
                Ok(record)
            }
            None => Err(Self::missing(name)),
        }
    }

    /// Applies one write. `Failure::Request` leaves the transaction as it was;
    /// `Failure::Group` leaves it unusable.
    pub(super) fn apply(&mut self, write: &Write) -> Result<Written, Failure> {
        match write {
            Write::CreateDatabase {
                name,
                retention,
                offline,
            } => self.create_database(name, *retention, *offline),
            Write::DropDatabase { name } => self.drop_database(name),
            Write::SetOffline { name, offline } => self.set_offline(name, *offline),
            Write::SetDatabaseConfig {
                name,
                indexes,
                retention,
            } => self.set_database_config(name, indexes, *retention),
            Write::ResyncChunk { name, after, limit } => self
                .resync_chunk(name, after.as_deref(), *limit)
                .map(Written::ResyncChunk),
            Write::ResyncFinish {
                name,
                errored,
                after,
                limit,
            } => self
                .resync_finish(name, *errored, after.as_ref(), *limit)
                .map(|(removed, next)| Written::ResyncFinished { removed, next }),
            Write::Batch { db, ops } => self.apply_batch(db, ops).map(Written::Batch),
            Write::TrimChanges => self.trim_every_database().map(Written::Trimmed),
            Write::SaveUser {
                name,
                record,
                create,
            } => self.save_user(name, record, *create),
            Write::DeleteUser { name } => self.delete_user(name),
            Write::SaveSession { token_hash, record } => self.save_session(token_hash, record),
            Write::DeleteSession { token_hash } => self.delete_session(token_hash),
            Write::PurgeSessions { now_ms } => self
                .delete_sessions_where(|session| session.expires_ms <= *now_ms)
                .map(Written::SessionsPurged),
            Write::CreateJob { record } => self.create_job(record),
            Write::SaveJob { record } => self.save_job(record),
            Write::FailInterruptedJobs { now_ms } => self.fail_interrupted_jobs(*now_ms),
            Write::ReplaceJobs { records } => self.replace_jobs(records),
            Write::NewEpoch => self.new_epoch(),
            Write::Probe { now_ms } => self.probe(*now_ms),
            Write::SetStatus { status } => self.set_status(status),
            Write::SyncAttach { follow, positions } => self.sync_attach(follow, positions),
            Write::SyncCreateDatabase {
                name,
                retention,
                offline,
                position,
            } => self.sync_create_database(name, *retention, *offline, position),
            Write::SyncApply {
                db,
                lineage,
                first_seq,
                ops,
                times_ms,
            } => self.sync_apply(db, lineage, *first_seq, ops, times_ms),
            Write::SyncStopped { db, stop } => self.sync_stopped(db, stop.as_ref()),
            Write::SyncDetach => self.sync_detach(),
            Write::MirrorApply { entries } => self.apply_entries(entries),
        }
    }

    /// Applies retention to the databases this group wrote, writes back the catalog
    /// records, stores the group's journal entry and commits with fsync. Returns what
    /// changed in which database, the journal's newest seq when it grew, and how long
    /// LMDB's commit (pages written, fsync) took.
    pub(super) fn finish(
        mut self,
    ) -> Result<(Vec<DatabaseCommit>, Option<u64>, std::time::Duration)> {
        let touched: Vec<String> = self
            .catalog
            .iter()
            .filter(|(_, e)| e.dirty && e.record.is_some())
            .map(|(name, _)| name.clone())
            .collect();
        for name in touched {
            match self.trim(&name) {
                Ok(_) => {}
                Err(Failure::Request(e) | Failure::Group(e)) => return Err(e),
            }
        }
        let records: Vec<(String, Option<Vec<u8>>)> = self
            .catalog
            .iter()
            .filter(|(_, entry)| entry.dirty)
            .map(|(name, entry)| {
                (
                    name.clone(),
                    entry.record.as_ref().map(CatalogRecord::encode),
                )
            })
            .collect();
        let written = (|| {
            for (name, record) in records {
                match record {
                    Some(record) => self.put(TableId::Catalog, &name, record)?,
                    None => {
                        self.delete(TableId::Catalog, &name)?;
                    }
                }
            }
            if let Some(next) = self.next_database_id {
                self.put(
                    TableId::Meta,
                    meta_key::NEXT_DATABASE_ID,
                    next.to_be_bytes(),
                )?;
            }
            self.append_journal()
        })();
        if let Err(Failure::Request(e) | Failure::Group(e)) = written {
            return Err(e);
        }
        let committing = std::time::Instant::now();
        self.wtxn.commit()?;
        let commit_time = committing.elapsed();
        let mirrored = self
            .mirrored
            .databases
            .into_iter()
            .map(|(name, last_seq)| DatabaseCommit { name, last_seq });
        let commits = self
            .catalog
            .into_iter()
            .filter(|(_, entry)| entry.dirty)
            .map(|(name, entry)| DatabaseCommit {
                name,
                last_seq: entry.record.map(|r| r.last_seq),
            })
            .chain(mirrored)
            .collect();
        Ok((commits, self.appended, commit_time))
    }
}
