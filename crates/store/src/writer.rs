//! The writer: the one thread that owns every write transaction, with group commit.
//!
//! Callers on any thread submit a `Write` with a reply callback. The writer takes the
//! first waiting request, drains whatever else is queued (up to `max_group_requests`),
//! applies them all in one transaction, commits it once with fsync, and only then answers
//! every caller. A request whose condition fails (rev conflict, missing database) is
//! answered with its error and changes nothing, while the others in its group commit.
//! When a group fails as a whole (map or disk full), each of its requests is retried
//! alone, so one oversized write cannot fail its neighbours.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use heed::{Env, PutFlags, RwTxn, WithoutTls};

use crate::error::{Result, StoreError};
use crate::format::{
    change_key, change_record, database_bounds, decode_change_record, doc_key, doc_key_name,
    doc_value, index_doc_key, index_key, meta_key, split_doc_value, split_index_key, CatalogRecord,
    ChangeOp, DatabaseConfig, IndexDef, Retention, SessionRecord, UserRecord, MAX_DATABASE_ID,
};
use crate::index::{compile, display_encoded, index_value, validate_index_defs, Compiled};
use crate::jobs::{JobRecord, JobStatus};
use crate::store::{
    as_slice_bound, now_ms, read_catalog, read_config, Store, StoreOptions, Tables, MAX_SCAN_LIMIT,
};
use crate::validate::{validate_database_name, validate_key, validate_value};

/// Most operations in one batch.
pub const MAX_BATCH_OPS: usize = 10_000;

/// One operation of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Store `value` (one msgpack value) under `key`. With `rev`, only if the document's
    /// current rev is that one (0: only if it does not exist).
    Put {
        key: String,
        value: Vec<u8>,
        rev: Option<u64>,
    },
    /// Remove `key`, which must exist. With `rev`, only if its current rev is that one.
    Delete { key: String, rev: Option<u64> },
}

impl Op {
    fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key, .. } => key,
        }
    }
}

/// A write request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Creates a database (online or offline) with its configuration record.
    CreateDatabase {
        name: String,
        retention: Retention,
        offline: bool,
    },
    /// Sets or clears a database's offline flag; answers whether it changed.
    SetOffline {
        name: String,
        offline: bool,
    },
    /// Replaces a database's index definitions and retention; only while it is offline.
    /// Changed definitions remove every index entry of the database and leave the
    /// indexes stale (when it holds documents) until a resync rebuilds them.
    SetDatabaseConfig {
        name: String,
        indexes: Vec<IndexDef>,
        retention: Retention,
    },
    /// One step of a resync (only while offline): checks the next `limit` documents
    /// after `after` in key order and writes the index entries they lack.
    ResyncChunk {
        name: String,
        after: Option<String>,
        limit: usize,
    },
    /// The last steps of a resync (only while offline): checks the next `limit` index
    /// entries after `after` and removes those no document backs; the step that finds
    /// no more entries marks the indexes fresh (`errored` = 0) or stale.
    ResyncFinish {
        name: String,
        errored: u64,
        after: Option<IndexEntry>,
        limit: usize,
    },
    DropDatabase {
        name: String,
    },
    SetRetention {
        name: String,
        retention: Retention,
    },
    /// Operations on one database, applied all or nothing, in order.
    Batch {
        db: String,
        ops: Vec<Op>,
    },
    /// Applies age-based retention to every database now.
    TrimChanges,
    /// Creates (`create`) or replaces a user.
    SaveUser {
        name: String,
        record: UserRecord,
        create: bool,
    },
    /// Removes a user and every session of it.
    DeleteUser {
        name: String,
    },
    /// Stores a session under the SHA-256 of its token.
    SaveSession {
        token_hash: [u8; 32],
        record: SessionRecord,
    },
    /// Removes a session (logout).
    DeleteSession {
        token_hash: [u8; 32],
    },
    /// Removes every session expired at `now_ms`.
    PurgeSessions {
        now_ms: u64,
    },
    /// Stores a new job under the next job id (its `id` field is ignored).
    CreateJob {
        record: JobRecord,
    },
    /// Replaces the record of an existing job.
    SaveJob {
        record: JobRecord,
    },
    /// Marks every job that is not final as failed ("interrupted"): what was running
    /// when the service stopped did not finish.
    FailInterruptedJobs {
        now_ms: u64,
    },
    /// Replaces the whole job history (a restore carries the history over); the next
    /// job id follows the largest one given.
    ReplaceJobs {
        records: Vec<JobRecord>,
    },
    /// Draws a new epoch: change-log cursors of the earlier one are refused from now on.
    NewEpoch,
    /// Replaces the service status.
    SetStatus {
        status: crate::status::ServiceStatus,
    },
}

/// One entry of the `indexes` table: its key (database id, index position, encoded
/// value) and its duplicate (the document key); a cursor of the last resync steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub key: Vec<u8>,
    pub doc_key: Vec<u8>,
}

/// What one resync step did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResyncChunk {
    /// Documents checked.
    pub processed: u64,
    /// Documents that lacked index entries (now written).
    pub changed: u64,
    /// (document key, reason) of each document with a problem: a value that does not
    /// decode, a rev out of range, a value an index cannot hold, a duplicate value of a
    /// unique index. At most one entry per document (reasons joined with "; ").
    pub errors: Vec<(String, String)>,
    /// The last document checked: `after` of the next step. `None` when no document
    /// lies after `after` (the resync has seen them all).
    pub last_key: Option<String>,
}

/// What a successful write reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    DatabaseCreated,
    /// Whether the flag changed.
    OfflineSet {
        changed: bool,
    },
    /// Whether the index definitions changed, and whether the indexes are stale now.
    DatabaseConfigSet {
        indexes_changed: bool,
        indexes_stale: bool,
    },
    ResyncChunk(ResyncChunk),
    /// How many index entries a last resync step removed, and where the next one
    /// resumes (`None`: the resync is over).
    ResyncFinished {
        removed: u64,
        next: Option<IndexEntry>,
    },
    DatabaseDropped,
    RetentionSet,
    /// The new rev of each operation of a batch, in order (a delete's rev is the seq of
    /// its tombstone).
    Batch(Vec<u64>),
    /// How many change-log entries retention removed.
    Trimmed(u64),
    UserSaved,
    UserDeleted,
    SessionSaved,
    /// Whether the session existed.
    SessionDeleted(bool),
    /// How many expired sessions were removed.
    SessionsPurged(u64),
    /// The id of the new job.
    JobCreated(u64),
    JobSaved,
    /// How many jobs were marked failed.
    JobsFailed(u64),
    JobsReplaced,
    /// The new epoch.
    Epoch(u64),
    StatusSet,
}

/// What one commit changed in a database, told to the commit hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseCommit {
    pub name: String,
    /// The database's last seq after the commit; `None` when the commit dropped it.
    pub last_seq: Option<u64>,
}

/// Called on the writer thread after every commit that changed databases, with what
/// changed. It must be quick and must not write to the store.
pub type CommitHook = Arc<dyn Fn(&[DatabaseCommit]) + Send + Sync>;

/// The callback that receives a write's outcome, called once, after the commit.
pub type Reply = Box<dyn FnOnce(Result<Written>) + Send + 'static>;

pub(crate) enum WriterMessage {
    Write(Write, Reply),
}

/// What the writer tells the rest of the process after commits: the commit hook (set
/// by the store's owner) and a counter of commits that changed users.
#[derive(Default)]
pub(crate) struct Signals {
    pub hook: RwLock<Option<CommitHook>>,
    pub users_generation: std::sync::atomic::AtomicU64,
}

/// The signals, shared by the store and the writer thread.
pub(crate) type HookSlot = Arc<Signals>;

pub(crate) fn spawn(
    env: Env<WithoutTls>,
    tables: Tables,
    options: StoreOptions,
    hook: HookSlot,
) -> (Sender<WriterMessage>, JoinHandle<()>) {
    let (sender, receiver) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("cairn-writer".to_string())
        .spawn(move || run(env, tables, options, receiver, hook))
        .expect("spawning the writer thread");
    (sender, thread)
}

fn run(
    env: Env<WithoutTls>,
    tables: Tables,
    options: StoreOptions,
    receiver: Receiver<WriterMessage>,
    hook: HookSlot,
) {
    // Waking dozens of callers takes a while; a second thread does it, so that the
    // writer can begin the next transaction at once.
    let (answers, answer_queue) = mpsc::channel::<Vec<(Reply, Result<Written>)>>();
    let notifier = std::thread::Builder::new()
        .name("cairn-notifier".to_string())
        .spawn(move || {
            for answered in answer_queue {
                for (reply, outcome) in answered {
                    reply(outcome);
                }
            }
        })
        .expect("spawning the notifier thread");
    let mut group: Vec<(Write, Reply)> = Vec::new();
    while let Ok(WriterMessage::Write(write, reply)) = receiver.recv() {
        group.push((write, reply));
        while group.len() < options.max_group_requests {
            match receiver.try_recv() {
                Ok(WriterMessage::Write(write, reply)) => group.push((write, reply)),
                Err(_) => break,
            }
        }
        let writes: Vec<&Write> = group.iter().map(|(w, _)| w).collect();
        let mut commits = Vec::new();
        let outcomes = match commit_group(&env, tables, &writes, &mut commits) {
            Ok(outcomes) => outcomes,
            Err(error) if writes.len() > 1 => {
                tracing::warn!(%error, requests = writes.len(), "group commit failed, retrying its writes one by one");
                writes
                    .iter()
                    .map(|w| {
                        commit_group(&env, tables, &[w], &mut commits).and_then(|mut o| o.remove(0))
                    })
                    .collect()
            }
            Err(error) => vec![Err(error)],
        };
        if !commits.is_empty() {
            let hook = hook.hook.read().map(|h| h.clone()).unwrap_or(None);
            if let Some(hook) = hook {
                hook(&commits);
            }
        }
        let users_changed = outcomes
            .iter()
            .any(|o| matches!(o, Ok(Written::UserSaved | Written::UserDeleted)));
        if users_changed {
            hook.users_generation
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        let answered: Vec<(Reply, Result<Written>)> = group
            .drain(..)
            .map(|(_, reply)| reply)
            .zip(outcomes)
            .collect();
        if let Err(mpsc::SendError(answered)) = answers.send(answered) {
            for (reply, outcome) in answered {
                reply(outcome);
            }
        }
    }
    drop(answers);
    let _ = notifier.join();
}

/// Below this much free space, an I/O error while writing is taken for a full disk.
const LOW_FREE_SPACE_BYTES: u64 = 64 << 20;

/// Applies `writes` in one transaction and commits it. The outer error fails the whole
/// group (nothing was committed); inner errors belong to single writes that changed
/// nothing.
fn commit_group(
    env: &Env<WithoutTls>,
    tables: Tables,
    writes: &[&Write],
    commits: &mut Vec<DatabaseCommit>,
) -> Result<Vec<Result<Written>>> {
    try_commit_group(env, tables, writes, commits).map_err(|error| explain_io_failure(error, env))
}

/// LMDB reports a short write (what a full file system gives) as EIO: when the file
/// system of the environment has almost no room left, say so.
fn explain_io_failure(error: StoreError, env: &Env<WithoutTls>) -> StoreError {
    let StoreError::Io { source, .. } = &error else {
        return error;
    };
    if source.raw_os_error() != Some(5 /* EIO */) {
        return error;
    }
    match rustix::fs::statvfs(env.path()) {
        Ok(stats) if stats.f_bavail.saturating_mul(stats.f_frsize) < LOW_FREE_SPACE_BYTES => {
            StoreError::StorageFull {
                reason: format!(
                    "the file system is full ({} bytes free, the write failed with {source}): free some space",
                    stats.f_bavail.saturating_mul(stats.f_frsize)
                ),
            }
        }
        _ => error,
    }
}

fn try_commit_group(
    env: &Env<WithoutTls>,
    tables: Tables,
    writes: &[&Write],
    commits: &mut Vec<DatabaseCommit>,
) -> Result<Vec<Result<Written>>> {
    let mut txn = GroupTxn {
        wtxn: env.write_txn()?,
        tables,
        catalog: HashMap::new(),
        next_database_id: None,
        now_ms: now_ms(),
    };
    let mut outcomes = Vec::with_capacity(writes.len());
    for write in writes {
        match txn.apply(write) {
            Ok(written) => outcomes.push(Ok(written)),
            Err(Failure::Request(error)) => outcomes.push(Err(error)),
            Err(Failure::Group(error)) => return Err(error),
        }
    }
    commits.extend(txn.finish()?);
    Ok(outcomes)
}

/// Why `apply` failed: the request's own fault (nothing was written), or a storage
/// failure that leaves the transaction unusable.
enum Failure {
    Request(StoreError),
    Group(StoreError),
}

impl From<heed::Error> for Failure {
    fn from(error: heed::Error) -> Self {
        Failure::Group(error.into())
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::StorageFull { .. }
            | StoreError::MapFull
            | StoreError::Io { .. }
            | StoreError::Lmdb(_)
            | StoreError::Corrupt { .. } => Failure::Group(error),
            other => Failure::Request(other),
        }
    }
}

struct CachedEntry {
    record: Option<CatalogRecord>,
    dirty: bool,
    /// The database's configuration, read on first use (`None`: not read yet). Kept in
    /// step with the `configs` table, which is written at once.
    config: Option<DatabaseConfig>,
}

/// A write transaction with the catalog records it touched kept in memory, written
/// back once before commit.
struct GroupTxn<'e> {
    wtxn: RwTxn<'e>,
    tables: Tables,
    catalog: HashMap<String, CachedEntry>,
    next_database_id: Option<u32>,
    now_ms: u64,
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
    fn config(&mut self, name: &str) -> Result<&DatabaseConfig, Failure> {
        self.existing(name)?;
        let (wtxn, tables) = (&self.wtxn, self.tables);
        let entry = self.catalog.get_mut(name).expect("cached by existing");
        if entry.config.is_none() {
            entry.config = Some(read_config(wtxn, tables, name)?.unwrap_or_default());
        }
        Ok(entry.config.as_ref().expect("read above"))
    }

    /// The configuration of `name`, refused with `DatabaseOnline` unless it is offline.
    fn offline_config(&mut self, name: &str) -> Result<DatabaseConfig, Failure> {
        let config = self.config(name)?;
        if !config.offline {
            return Err(Failure::Request(StoreError::DatabaseOnline {
                name: name.to_string(),
            }));
        }
        Ok(config.clone())
    }

    /// Stores the configuration of `name` (now, in this transaction) and caches it.
    fn save_config(&mut self, name: &str, config: DatabaseConfig) -> Result<(), Failure> {
        self.tables
            .configs()?
            .put(&mut self.wtxn, name, &config.encode())?;
        self.cached(name)?.config = Some(config);
        Ok(())
    }

    fn record(&mut self, name: &str) -> Result<Option<&CatalogRecord>, Failure> {
        Ok(self.cached(name)?.record.as_ref())
    }

    fn missing(name: &str) -> Failure {
        Failure::Request(StoreError::DatabaseMissing {
            name: name.to_string(),
        })
    }

    fn existing(&mut self, name: &str) -> Result<&CatalogRecord, Failure> {
        self.record(name)?.ok_or_else(|| Self::missing(name))
    }

    /// The record of `name` for changing; it is written back before the commit.
    fn existing_mut(&mut self, name: &str) -> Result<&mut CatalogRecord, Failure> {
        let entry = self.cached(name)?;
        match entry.record.as_mut() {
            Some(record) => {
                entry.dirty = true;
                Ok(record)
            }
            None => Err(Self::missing(name)),
        }
    }

    fn apply(&mut self, write: &Write) -> Result<Written, Failure> {
        match write {
            Write::CreateDatabase {
                name,
                retention,
                offline,
            } => {
                if self.record(name)?.is_some() {
                    return Err(Failure::Request(StoreError::DatabaseExists {
                        name: name.clone(),
                    }));
                }
                let id = self.take_database_id()?;
                let config = DatabaseConfig {
                    offline: *offline,
                    ..DatabaseConfig::default()
                };
                self.tables
                    .configs()?
                    .put(&mut self.wtxn, name, &config.encode())?;
                self.catalog.insert(
                    name.clone(),
                    CachedEntry {
                        record: Some(CatalogRecord {
                            id,
                            created_ms: self.now_ms,
                            last_seq: 0,
                            trimmed_through: 0,
                            doc_count: 0,
                            doc_bytes: 0,
                            log_bytes: 0,
                            retention: *retention,
                        }),
                        dirty: true,
                        config: Some(config),
                    },
                );
                Ok(Written::DatabaseCreated)
            }
            Write::DropDatabase { name } => {
                let id = self.existing(name)?.id;
                let (low, high) = database_bounds(id);
                let bounds = (Bound::Included(&low[..]), Bound::Excluded(&high[..]));
                self.tables.docs.delete_range(&mut self.wtxn, &bounds)?;
                self.tables.changes.delete_range(&mut self.wtxn, &bounds)?;
                self.tables
                    .indexes()?
                    .delete_range(&mut self.wtxn, &bounds)?;
                self.tables.configs()?.delete(&mut self.wtxn, name)?;
                self.catalog.insert(
                    name.clone(),
                    CachedEntry {
                        record: None,
                        dirty: true,
                        config: None,
                    },
                );
                Ok(Written::DatabaseDropped)
            }
            Write::SetOffline { name, offline } => {
                let config = self.config(name)?;
                if config.offline == *offline {
                    return Ok(Written::OfflineSet { changed: false });
                }
                let config = DatabaseConfig {
                    offline: *offline,
                    ..config.clone()
                };
                self.save_config(name, config)?;
                Ok(Written::OfflineSet { changed: true })
            }
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
            Write::SetRetention { name, retention } => {
                self.existing_mut(name)?.retention = *retention;
                Ok(Written::RetentionSet)
            }
            Write::Batch { db, ops } => self.apply_batch(db, ops).map(Written::Batch),
            Write::SaveUser {
                name,
                record,
                create,
            } => {
                let exists = self.tables.users.get(&self.wtxn, name)?.is_some();
                if *create && exists {
                    return Err(Failure::Request(StoreError::UserExists {
                        name: name.clone(),
                    }));
                }
                if !*create && !exists {
                    return Err(Failure::Request(StoreError::UserMissing {
                        name: name.clone(),
                    }));
                }
                self.tables
                    .users
                    .put(&mut self.wtxn, name, &record.encode())?;
                Ok(Written::UserSaved)
            }
            Write::DeleteUser { name } => {
                if !self.tables.users.delete(&mut self.wtxn, name)? {
                    return Err(Failure::Request(StoreError::UserMissing {
                        name: name.clone(),
                    }));
                }
                self.delete_sessions_where(|session| session.user == *name)?;
                Ok(Written::UserDeleted)
            }
            Write::SaveSession { token_hash, record } => {
                self.tables
                    .sessions
                    .put(&mut self.wtxn, token_hash, &record.encode())?;
                Ok(Written::SessionSaved)
            }
            Write::DeleteSession { token_hash } => Ok(Written::SessionDeleted(
                self.tables.sessions.delete(&mut self.wtxn, token_hash)?,
            )),
            Write::PurgeSessions { now_ms } => Ok(Written::SessionsPurged(
                self.delete_sessions_where(|session| session.expires_ms <= *now_ms)?,
            )),
            Write::CreateJob { record } => {
                let id = match self.tables.meta.get(&self.wtxn, meta_key::NEXT_JOB_ID)? {
                    Some(bytes) => {
                        u64::from_be_bytes(bytes.try_into().map_err(|_| StoreError::Corrupt {
                            table: crate::format::table::META,
                            reason: "next_job_id is not 8 bytes".to_string(),
                        })?)
                    }
                    None => 1,
                };
                let record = JobRecord {
                    id,
                    ..record.clone()
                };
                self.tables
                    .jobs
                    .put(&mut self.wtxn, &id.to_be_bytes(), &record.encode())?;
                self.tables.meta.put(
                    &mut self.wtxn,
                    meta_key::NEXT_JOB_ID,
                    &(id + 1).to_be_bytes(),
                )?;
                Ok(Written::JobCreated(id))
            }
            Write::SaveJob { record } => {
                let key = record.id.to_be_bytes();
                if self.tables.jobs.get(&self.wtxn, &key)?.is_none() {
                    return Err(Failure::Request(StoreError::NotFound {
                        db: crate::format::table::JOBS.to_string(),
                        key: record.id.to_string(),
                    }));
                }
                self.tables
                    .jobs
                    .put(&mut self.wtxn, &key, &record.encode())?;
                Ok(Written::JobSaved)
            }
            Write::ReplaceJobs { records } => {
                self.tables.jobs.clear(&mut self.wtxn)?;
                for record in records {
                    self.tables.jobs.put(
                        &mut self.wtxn,
                        &record.id.to_be_bytes(),
                        &record.encode(),
                    )?;
                }
                let next = records.iter().map(|r| r.id).max().unwrap_or(0) + 1;
                let stored_next = match self.tables.meta.get(&self.wtxn, meta_key::NEXT_JOB_ID)? {
                    Some(bytes) if bytes.len() == 8 => {
                        u64::from_be_bytes(bytes.try_into().expect("8 bytes"))
                    }
                    _ => 1,
                };
                self.tables.meta.put(
                    &mut self.wtxn,
                    meta_key::NEXT_JOB_ID,
                    &next.max(stored_next).to_be_bytes(),
                )?;
                Ok(Written::JobsReplaced)
            }
            Write::SetStatus { status } => {
                self.tables
                    .meta
                    .put(&mut self.wtxn, meta_key::STATUS, &status.encode())?;
                Ok(Written::StatusSet)
            }
            Write::NewEpoch => {
                let epoch = crate::store::random_epoch()?;
                self.tables
                    .meta
                    .put(&mut self.wtxn, meta_key::EPOCH, &epoch.to_be_bytes())?;
                Ok(Written::Epoch(epoch))
            }
            Write::FailInterruptedJobs { now_ms } => {
                let mut interrupted = Vec::new();
                for entry in self.tables.jobs.iter(&self.wtxn)? {
                    let record = JobRecord::decode(entry?.1)?;
                    if !record.status.is_final() {
                        interrupted.push(record);
                    }
                }
                for mut record in interrupted.iter().cloned() {
                    record.error_message =
                        Some("interrupted: the service stopped while the job ran".to_string());
                    record.finish(JobStatus::Failed, *now_ms);
                    self.tables.jobs.put(
                        &mut self.wtxn,
                        &record.id.to_be_bytes(),
                        &record.encode(),
                    )?;
                }
                Ok(Written::JobsFailed(interrupted.len() as u64))
            }
            Write::TrimChanges => {
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
                Ok(Written::Trimmed(trimmed))
            }
        }
    }

    /// Deletes the sessions that match; returns how many.
    fn delete_sessions_where(
        &mut self,
        matches: impl Fn(&SessionRecord) -> bool,
    ) -> Result<u64, Failure> {
        let mut doomed = Vec::new();
        for entry in self.tables.sessions.iter(&self.wtxn)? {
            let (token_hash, bytes) = entry?;
            if matches(&SessionRecord::decode(bytes)?) {
                doomed.push(token_hash.to_vec());
            }
        }
        for token_hash in &doomed {
            self.tables.sessions.delete(&mut self.wtxn, token_hash)?;
        }
        Ok(doomed.len() as u64)
    }

    fn take_database_id(&mut self) -> Result<u32, Failure> {
        let id = match self.next_database_id {
            Some(id) => id,
            None => {
                let bytes = self
                    .tables
                    .meta
                    .get(&self.wtxn, meta_key::NEXT_DATABASE_ID)?
                    .ok_or_else(|| StoreError::Corrupt {
                        table: crate::format::table::META,
                        reason: "next_database_id missing".to_string(),
                    })?;
                u32::from_be_bytes(bytes.try_into().map_err(|_| StoreError::Corrupt {
                    table: crate::format::table::META,
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

    /// Checks every condition of the batch first (against the state the earlier
    /// operations of the batch leave), then applies it.
    fn apply_batch(&mut self, db: &str, ops: &[Op]) -> Result<Vec<u64>, Failure> {
        let record = self.existing(db)?.clone();
        let config = self.config(db)?;
        if config.offline {
            return Err(Failure::Request(StoreError::DatabaseOffline {
                name: db.to_string(),
            }));
        }
        // Stale indexes are left alone: a resync rebuilds them.
        let maintained =
            (!config.indexes.is_empty() && !config.indexes_stale).then(|| config.indexes.clone());
        // Rev of each key after the batch's operations so far; 0 = absent.
        let mut overlay: HashMap<&str, u64> = HashMap::new();
        for (i, op) in ops.iter().enumerate() {
            let key = op.key();
            let expected = match op {
                Op::Put { rev, .. } | Op::Delete { rev, .. } => *rev,
            };
            let seq = record.last_seq + i as u64 + 1;
            if let (Op::Put { .. }, None) = (op, expected) {
                // An unconditional put needs no look-up now: the apply pass learns what
                // it replaces from the same B-tree descent that writes it.
                overlay.insert(key, seq);
                continue;
            }
            let current = match overlay.get(key) {
                Some(rev) => *rev,
                None => match self.tables.docs.get(&self.wtxn, &doc_key(record.id, key))? {
                    Some(stored) => split_doc_value(stored)?.0,
                    None => 0,
                },
            };
            if let Some(expected) = expected.filter(|e| *e != current) {
                return Err(Failure::Request(StoreError::RevConflict {
                    key: key.to_string(),
                    expected,
                    current,
                }));
            }
            if matches!(op, Op::Delete { .. }) && current == 0 {
                return Err(Failure::Request(StoreError::NotFound {
                    db: db.to_string(),
                    key: key.to_string(),
                }));
            }
            let new_rev = match op {
                Op::Put { .. } => seq,
                Op::Delete { .. } => 0,
            };
            overlay.insert(key, new_rev);
        }
        let index_changes = match &maintained {
            Some(defs) => Some(self.index_changes(db, record.id, defs, ops)?),
            None => None,
        };

        let mut record = record;
        let mut revs = Vec::with_capacity(ops.len());
        for op in ops {
            let seq = record.last_seq + 1;
            let key = op.key();
            let stored_key = doc_key(record.id, key);
            let change = match op {
                Op::Put { value, .. } => {
                    let stored = doc_value(seq, value);
                    let replaced = self
                        .tables
                        .docs
                        .get_or_put(&mut self.wtxn, &stored_key, &stored)?
                        .map(<[u8]>::len);
                    if let Some(old_len) = replaced {
                        self.tables.docs.put(&mut self.wtxn, &stored_key, &stored)?;
                        record.doc_bytes -= (stored_key.len() + old_len) as u64;
                    } else {
                        record.doc_count += 1;
                    }
                    record.doc_bytes += (stored_key.len() + stored.len()) as u64;
                    change_record(ChangeOp::Put, self.now_ms, key, Some(value))
                }
                Op::Delete { .. } => {
                    let old_len = self
                        .tables
                        .docs
                        .get(&self.wtxn, &stored_key)?
                        .map(<[u8]>::len)
                        .ok_or_else(|| StoreError::Corrupt {
                            table: crate::format::table::DOCS,
                            reason: format!("{key:?} vanished between check and delete"),
                        })?;
                    self.tables.docs.delete(&mut self.wtxn, &stored_key)?;
                    record.doc_count -= 1;
                    record.doc_bytes -= (stored_key.len() + old_len) as u64;
                    change_record(ChangeOp::Delete, self.now_ms, key, None)
                }
            };
            let log_key = change_key(record.id, seq);
            self.tables.changes.put(&mut self.wtxn, &log_key, &change)?;
            record.log_bytes += (log_key.len() + change.len()) as u64;
            record.last_seq = seq;
            revs.push(seq);
        }
        if let Some(changes) = index_changes {
            let indexes = self.tables.indexes()?;
            for (entry, change) in &changes.entries {
                match (change.before, change.after) {
                    (false, true) => indexes.put(&mut self.wtxn, &entry.0, entry.1.as_bytes())?,
                    (true, false) => {
                        indexes.delete_one_duplicate(
                            &mut self.wtxn,
                            &entry.0,
                            entry.1.as_bytes(),
                        )?;
                    }
                    _ => {}
                }
            }
        }
        *self.existing_mut(db)? = record;
        Ok(revs)
    }

    /// The index entries a batch adds and removes, checked before anything is written:
    /// a value an index cannot hold is `IndexValue`, a unique value held by another
    /// document (after the batch's earlier operations) is `UniqueViolation`.
    fn index_changes<'o>(
        &self,
        db: &str,
        db_id: u32,
        defs: &[IndexDef],
        ops: &'o [Op],
    ) -> Result<IndexChanges<'o>, Failure> {
        let compiled = compile(defs)?;
        let indexes = self.tables.indexes()?;
        // The entries of each key the batch touched, as its earlier operations left it.
        let mut current: HashMap<&str, Vec<Option<Vec<u8>>>> = HashMap::new();
        let mut changes = IndexChanges::default();
        for op in ops {
            let key = op.key();
            let old = match current.remove(key) {
                Some(entries) => entries,
                None => match self.tables.docs.get(&self.wtxn, &doc_key(db_id, key))? {
                    // What the stored value yields; a value an index could not hold
                    // has no entry there.
                    Some(stored) => {
                        let (_, value) = split_doc_value(stored)?;
                        compiled
                            .iter()
                            .map(|index| index_value(value, &index.pointer).ok().flatten())
                            .collect()
                    }
                    None => vec![None; compiled.len()],
                },
            };
            for (position, encoded) in old.iter().enumerate() {
                if let Some(encoded) = encoded {
                    changes.remove(index_key(db_id, position as u8, encoded), key);
                }
            }
            let new = match op {
                Op::Put { value, .. } => compiled
                    .iter()
                    .map(|index| {
                        index_value(value, &index.pointer).map_err(|reason| {
                            Failure::Request(StoreError::IndexValue {
                                db: db.to_string(),
                                index: index.name.clone(),
                                key: key.to_string(),
                                reason,
                            })
                        })
                    })
                    .collect::<Result<Vec<_>, Failure>>()?,
                Op::Delete { .. } => vec![None; compiled.len()],
            };
            for (position, encoded) in new.iter().enumerate() {
                let Some(encoded) = encoded else { continue };
                let ikey = index_key(db_id, position as u8, encoded);
                if compiled[position].unique {
                    if let Some(holder) = self.holder(indexes, &changes, &ikey, key)? {
                        return Err(Failure::Request(StoreError::UniqueViolation {
                            db: db.to_string(),
                            index: compiled[position].name.clone(),
                            value: display_encoded(encoded),
                            key: key.to_string(),
                            existing_key: holder,
                        }));
                    }
                }
                changes.add(ikey, key, compiled[position].unique);
            }
            current.insert(key, new);
        }
        Ok(changes)
    }

    /// A document other than `key` that holds the index entry `ikey`, taking the
    /// batch's changes so far into account.
    fn holder(
        &self,
        indexes: heed::Database<heed::types::Bytes, heed::types::Bytes>,
        changes: &IndexChanges<'_>,
        ikey: &[u8],
        key: &str,
    ) -> Result<Option<String>, Failure> {
        if let Some(holder) = changes.added_holder(ikey, key) {
            return Ok(Some(holder.to_string()));
        }
        if let Some(stored) = indexes.get_duplicates(&self.wtxn, ikey)? {
            for entry in stored {
                let holder = index_doc_key(entry?.1)?;
                if holder != key && !changes.removed(ikey, holder) {
                    return Ok(Some(holder.to_string()));
                }
            }
        }
        Ok(None)
    }

    fn set_database_config(
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
            let bounds = (Bound::Included(&low[..]), Bound::Excluded(&high[..]));
            self.tables
                .indexes()?
                .delete_range(&mut self.wtxn, &bounds)?;
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

    /// Checks the next `limit` documents after `after` and writes the index entries
    /// they lack (see `Write::ResyncChunk`).
    fn resync_chunk(
        &mut self,
        name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ResyncChunk, Failure> {
        let config = self.offline_config(name)?;
        let record = self.existing(name)?.clone();
        let compiled = compile(&config.indexes)?;
        let indexes = self.tables.indexes()?;
        // First read: what each document yields (nothing is written while the cursor
        // is open).
        struct Checked {
            key: String,
            entries: Vec<(u8, Vec<u8>)>,
            errors: Vec<String>,
        }
        let mut checked: Vec<Checked> = Vec::new();
        {
            let (low, high) = database_bounds(record.id);
            let low = match after {
                Some(after) => Bound::Excluded(doc_key(record.id, after)),
                None => Bound::Included(low),
            };
            let bounds = (as_slice_bound(&low), Bound::Excluded(&high[..]));
            for entry in self.tables.docs.range(&self.wtxn, &bounds)? {
                if checked.len() == limit {
                    break;
                }
                let (stored_key, stored) = entry?;
                let key = doc_key_name(stored_key)?.to_string();
                let (rev, value) = split_doc_value(stored)?;
                let mut errors = Vec::new();
                let mut entries = Vec::new();
                if rev == 0 || rev > record.last_seq {
                    errors.push(format!(
                        "rev {rev} is outside 1..={} (the database's last seq)",
                        record.last_seq
                    ));
                }
                match validate_value(value, usize::MAX) {
                    Err(e) => errors.push(e.to_string()),
                    Ok(()) => {
                        for (position, index) in compiled.iter().enumerate() {
                            match index_value(value, &index.pointer) {
                                Ok(Some(encoded)) => entries.push((position as u8, encoded)),
                                Ok(None) => {}
                                Err(reason) => {
                                    errors.push(format!("index {:?}: {reason}", index.name))
                                }
                            }
                        }
                    }
                }
                checked.push(Checked {
                    key,
                    entries,
                    errors,
                });
            }
        }
        let mut chunk = ResyncChunk {
            last_key: checked.last().map(|c| c.key.clone()),
            ..ResyncChunk::default()
        };
        for Checked {
            key,
            entries,
            mut errors,
        } in checked
        {
            chunk.processed += 1;
            let mut changed = false;
            for (position, encoded) in entries {
                let ikey = index_key(record.id, position, &encoded);
                let index = &compiled[usize::from(position)];
                if index.unique {
                    let holders: Vec<String> = match indexes.get_duplicates(&self.wtxn, &ikey)? {
                        Some(iter) => iter
                            .map(|e| Ok(index_doc_key(e?.1)?.to_string()))
                            .collect::<Result<_, StoreError>>()?,
                        None => Vec::new(),
                    };
                    let mut duplicate = None;
                    for holder in holders.into_iter().filter(|h| *h != key) {
                        if self.yields(record.id, &holder, &index.pointer, &encoded)? {
                            duplicate = Some(holder);
                            break;
                        }
                        // An orphan: its document no longer holds the value.
                        indexes.delete_one_duplicate(&mut self.wtxn, &ikey, holder.as_bytes())?;
                    }
                    if let Some(holder) = duplicate {
                        errors.push(format!(
                            "duplicate value {} of unique index {:?}, held by {holder:?}",
                            display_encoded(&encoded),
                            index.name
                        ));
                        continue;
                    }
                }
                match indexes.put_with_flags(
                    &mut self.wtxn,
                    PutFlags::NO_DUP_DATA,
                    &ikey,
                    key.as_bytes(),
                ) {
                    Ok(()) => changed = true,
                    Err(heed::Error::Mdb(heed::MdbError::KeyExist)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if changed {
                chunk.changed += 1;
            }
            if !errors.is_empty() {
                chunk.errors.push((key, errors.join("; ")));
            }
        }
        Ok(chunk)
    }

    /// True when the document `key` exists and yields `encoded` at `pointer`.
    fn yields(
        &self,
        db_id: u32,
        key: &str,
        pointer: &[String],
        encoded: &[u8],
    ) -> Result<bool, Failure> {
        Ok(
            match self.tables.docs.get(&self.wtxn, &doc_key(db_id, key))? {
                Some(stored) => {
                    let (_, value) = split_doc_value(stored)?;
                    index_value(value, pointer).ok().flatten().as_deref() == Some(encoded)
                }
                None => false,
            },
        )
    }

    /// Removes every index entry of `name` that no document backs, and marks the
    /// indexes fresh or stale (see `Write::ResyncFinish`).
    fn resync_finish(
        &mut self,
        name: &str,
        errored: u64,
        after: Option<&IndexEntry>,
        limit: usize,
    ) -> Result<(u64, Option<IndexEntry>), Failure> {
        let mut config = self.offline_config(name)?;
        let id = self.existing(name)?.id;
        let compiled: Vec<Compiled> = compile(&config.indexes)?;
        let indexes = self.tables.indexes()?;
        let (low, high) = database_bounds(id);
        let start = after.map_or(&low[..], |entry| &entry.key[..]);
        let bounds = (Bound::Included(start), Bound::Excluded(&high[..]));
        let mut doomed: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut checked = 0;
        let mut last = None;
        for entry in indexes.range(&self.wtxn, &bounds)? {
            let (ikey, dup) = entry?;
            if after.is_some_and(|a| (ikey, dup) <= (&a.key[..], &a.doc_key[..])) {
                continue;
            }
            if checked == limit {
                break;
            }
            checked += 1;
            last = Some(IndexEntry {
                key: ikey.to_vec(),
                doc_key: dup.to_vec(),
            });
            let (position, encoded) = split_index_key(ikey)?;
            let backed = match (compiled.get(usize::from(position)), index_doc_key(dup)) {
                (Some(index), Ok(key)) => self.yields(id, key, &index.pointer, encoded)?,
                _ => false,
            };
            if !backed {
                doomed.push((ikey.to_vec(), dup.to_vec()));
            }
        }
        for (ikey, dup) in &doomed {
            indexes.delete_one_duplicate(&mut self.wtxn, ikey, dup)?;
        }
        let next = if checked == limit { last } else { None };
        if next.is_none() {
            config.indexes_stale = errored > 0 && !config.indexes.is_empty();
            self.save_config(name, config)?;
        }
        Ok((doomed.len() as u64, next))
    }

    /// Removes what retention no longer keeps from the log of database `name`.
    fn trim(&mut self, name: &str) -> Result<u64, Failure> {
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
        let age_cutoff_ms = max_age_secs.map(|secs| self.now_ms.saturating_sub(secs * 1000));
        let low = change_key(record.id, record.trimmed_through + 1);
        let (_, high) = database_bounds(record.id);
        let bounds = (Bound::Included(&low[..]), Bound::Excluded(&high[..]));
        let mut trim_through = record.trimmed_through;
        let mut freed = 0u64;
        let mut removed = 0u64;
        for entry in self.tables.changes.range(&self.wtxn, &bounds)? {
            let (key, value) = entry?;
            let seq = crate::format::change_key_seq(key)?;
            let too_many = seq <= keep_from_count;
            let too_old = age_cutoff_ms.is_some_and(|cutoff| {
                decode_change_record(value).is_ok_and(|r| r.time_ms < cutoff)
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
        let range = (Bound::Included(&low[..]), Bound::Included(&end[..]));
        self.tables.changes.delete_range(&mut self.wtxn, &range)?;
        let record = self.existing_mut(name)?;
        record.trimmed_through = trim_through;
        record.log_bytes -= freed;
        Ok(removed)
    }

    /// Applies retention to the databases this group wrote, writes back the catalog
    /// records, and commits with fsync. Returns what changed in which database.
    fn finish(mut self) -> Result<Vec<DatabaseCommit>> {
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
        for (name, entry) in &self.catalog {
            if !entry.dirty {
                continue;
            }
            match &entry.record {
                Some(record) => self
                    .tables
                    .catalog
                    .put(&mut self.wtxn, name, &record.encode())?,
                None => {
                    self.tables.catalog.delete(&mut self.wtxn, name)?;
                }
            }
        }
        if let Some(next) = self.next_database_id {
            self.tables.meta.put(
                &mut self.wtxn,
                meta_key::NEXT_DATABASE_ID,
                &next.to_be_bytes(),
            )?;
        }
        self.wtxn.commit()?;
        Ok(self
            .catalog
            .into_iter()
            .filter(|(_, entry)| entry.dirty)
            .map(|(name, entry)| DatabaseCommit {
                name,
                last_seq: entry.record.map(|r| r.last_seq),
            })
            .collect())
    }
}

/// One index entry ((index key, document key)) a batch touches: whether it was stored
/// before the batch and whether it is after it.
#[derive(Debug, Clone, Copy)]
struct EntryChange {
    before: bool,
    after: bool,
}

/// The index entries a batch touches, with the documents it gave each index key.
#[derive(Default)]
struct IndexChanges<'o> {
    entries: HashMap<(Vec<u8>, &'o str), EntryChange>,
    added: HashMap<Vec<u8>, Vec<&'o str>>,
}

impl<'o> IndexChanges<'o> {
    /// The batch removes the entry (stored before, unless the batch added it).
    fn remove(&mut self, ikey: Vec<u8>, key: &'o str) {
        self.entries
            .entry((ikey, key))
            .or_insert(EntryChange {
                before: true,
                after: true,
            })
            .after = false;
    }

    /// The batch adds the entry; `unique`: remember its holder for `added_holder`.
    fn add(&mut self, ikey: Vec<u8>, key: &'o str, unique: bool) {
        if unique {
            let holders = self.added.entry(ikey.clone()).or_default();
            if !holders.contains(&key) {
                holders.push(key);
            }
        }
        self.entries
            .entry((ikey, key))
            .or_insert(EntryChange {
                before: false,
                after: true,
            })
            .after = true;
    }

    /// True when the batch removed the stored entry.
    fn removed(&self, ikey: &[u8], key: &str) -> bool {
        // The map's key holds a `&'o str`; look it up through an owned copy.
        self.entries
            .get(&(ikey.to_vec(), key))
            .is_some_and(|c| !c.after)
    }

    /// A document other than `key` the batch gave the entry to and did not take back.
    fn added_holder(&self, ikey: &[u8], key: &str) -> Option<&'o str> {
        self.added.get(ikey)?.iter().copied().find(|holder| {
            *holder != key
                && self
                    .entries
                    .get(&(ikey.to_vec(), *holder))
                    .is_some_and(|c| c.after)
        })
    }
}

/// A resync step handles 1 to `MAX_SCAN_LIMIT` documents or index entries.
fn validate_resync_limit(limit: usize) -> Result<()> {
    if limit == 0 || limit > MAX_SCAN_LIMIT {
        return Err(StoreError::InvalidArgument {
            reason: format!("a resync step takes 1 to {MAX_SCAN_LIMIT} items, not {limit}"),
        });
    }
    Ok(())
}

/// Checks a write's input before it is queued, so that bad input never reaches the
/// writer thread.
fn validate_write(write: &Write, max_value_bytes: usize) -> Result<()> {
    match write {
        Write::CreateDatabase { name, .. }
        | Write::DropDatabase { name }
        | Write::SetRetention { name, .. }
        | Write::SetOffline { name, .. } => validate_database_name(name),
        Write::ResyncFinish { name, limit, .. } => {
            validate_database_name(name)?;
            validate_resync_limit(*limit)
        }
        Write::SetDatabaseConfig { name, indexes, .. } => {
            validate_database_name(name)?;
            validate_index_defs(indexes)
        }
        Write::ResyncChunk { name, after, limit } => {
            validate_database_name(name)?;
            if let Some(after) = after {
                validate_key(after)?;
            }
            validate_resync_limit(*limit)
        }
        Write::Batch { db, ops } => {
            validate_database_name(db)?;
            if ops.is_empty() || ops.len() > MAX_BATCH_OPS {
                return Err(StoreError::InvalidArgument {
                    reason: format!(
                        "a batch holds 1 to {MAX_BATCH_OPS} operations, not {}",
                        ops.len()
                    ),
                });
            }
            for op in ops {
                validate_key(op.key())?;
                if let Op::Put { value, .. } = op {
                    validate_value(value, max_value_bytes)?;
                }
            }
            Ok(())
        }
        Write::SaveUser { name, record, .. } => {
            validate_database_name(name)?;
            for db in record.grants.keys() {
                validate_database_name(db)?;
            }
            Ok(())
        }
        Write::DeleteUser { name } => validate_database_name(name),
        Write::SaveSession { record, .. } => validate_database_name(&record.user),
        Write::TrimChanges
        | Write::DeleteSession { .. }
        | Write::PurgeSessions { .. }
        | Write::CreateJob { .. }
        | Write::SaveJob { .. }
        | Write::FailInterruptedJobs { .. }
        | Write::ReplaceJobs { .. }
        | Write::NewEpoch => Ok(()),
        Write::SetStatus { status } => status.validate(),
    }
}

impl Store {
    /// Queues a write; `reply` is called once with its outcome, after the commit that
    /// holds it (or at once, on this thread, when the input is invalid).
    pub fn submit(&self, write: Write, reply: Reply) {
        if let Err(error) = validate_write(&write, self.shared.options.max_value_bytes) {
            reply(Err(error));
            return;
        }
        let Some(sender) = &self.shared.sender else {
            reply(Err(StoreError::Closed));
            return;
        };
        if let Err(mpsc::SendError(WriterMessage::Write(_, reply))) =
            sender.send(WriterMessage::Write(write, reply))
        {
            reply(Err(StoreError::Closed));
        }
    }

    /// Submits a write and blocks until it is committed (or refused).
    pub fn write(&self, write: Write) -> Result<Written> {
        let (sender, receiver) = mpsc::sync_channel(1);
        self.submit(
            write,
            Box::new(move |outcome| {
                let _ = sender.send(outcome);
            }),
        );
        receiver.recv().unwrap_or(Err(StoreError::Closed))
    }

    /// Creates a database that keeps its whole change log.
    pub fn create_database(&self, name: &str) -> Result<()> {
        self.create_database_with(name, Retention::default())
    }

    /// Creates a database with a change-log retention.
    pub fn create_database_with(&self, name: &str, retention: Retention) -> Result<()> {
        self.write(Write::CreateDatabase {
            name: name.to_string(),
            retention,
            offline: false,
        })
        .map(|_| ())
    }

    /// Creates a database that starts offline.
    pub fn create_database_offline(&self, name: &str, retention: Retention) -> Result<()> {
        self.write(Write::CreateDatabase {
            name: name.to_string(),
            retention,
            offline: true,
        })
        .map(|_| ())
    }

    /// Takes a database offline (`true`) or online; answers whether the flag changed.
    pub fn set_offline(&self, name: &str, offline: bool) -> Result<bool> {
        match self.write(Write::SetOffline {
            name: name.to_string(),
            offline,
        })? {
            Written::OfflineSet { changed } => Ok(changed),
            other => unreachable!("set_offline answered {other:?}"),
        }
    }

    /// Replaces an offline database's index definitions and retention; answers
    /// `(indexes_changed, indexes_stale)`.
    pub fn set_database_config(
        &self,
        name: &str,
        indexes: Vec<IndexDef>,
        retention: Retention,
    ) -> Result<(bool, bool)> {
        match self.write(Write::SetDatabaseConfig {
            name: name.to_string(),
            indexes,
            retention,
        })? {
            Written::DatabaseConfigSet {
                indexes_changed,
                indexes_stale,
            } => Ok((indexes_changed, indexes_stale)),
            other => unreachable!("set_database_config answered {other:?}"),
        }
    }

    /// One resync step (see `Write::ResyncChunk`).
    pub fn resync_chunk(
        &self,
        name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ResyncChunk> {
        match self.write(Write::ResyncChunk {
            name: name.to_string(),
            after: after.map(str::to_string),
            limit,
        })? {
            Written::ResyncChunk(chunk) => Ok(chunk),
            other => unreachable!("resync_chunk answered {other:?}"),
        }
    }

    /// The last resync steps (see `Write::ResyncFinish`), one after the other until
    /// the end; answers the entries removed.
    pub fn resync_finish(&self, name: &str, errored: u64) -> Result<u64> {
        let mut removed = 0;
        let mut after = None;
        loop {
            match self.write(Write::ResyncFinish {
                name: name.to_string(),
                errored,
                after,
                limit: MAX_SCAN_LIMIT,
            })? {
                Written::ResyncFinished {
                    removed: more,
                    next,
                } => {
                    removed += more;
                    match next {
                        Some(entry) => after = Some(entry),
                        None => return Ok(removed),
                    }
                }
                other => unreachable!("resync_finish answered {other:?}"),
            }
        }
    }

    /// Drops a database with its documents and its change log.
    pub fn drop_database(&self, name: &str) -> Result<()> {
        self.write(Write::DropDatabase {
            name: name.to_string(),
        })
        .map(|_| ())
    }

    /// Changes a database's change-log retention (applied at its next write or trim).
    pub fn set_retention(&self, name: &str, retention: Retention) -> Result<()> {
        self.write(Write::SetRetention {
            name: name.to_string(),
            retention,
        })
        .map(|_| ())
    }

    /// Stores a document and returns its new rev.
    pub fn put(&self, db: &str, key: &str, value: &[u8], rev: Option<u64>) -> Result<u64> {
        self.batch(
            db,
            vec![Op::Put {
                key: key.to_string(),
                value: value.to_vec(),
                rev,
            }],
        )
        .map(|revs| revs[0])
    }

    /// Deletes a document and returns the seq of its tombstone.
    pub fn delete(&self, db: &str, key: &str, rev: Option<u64>) -> Result<u64> {
        self.batch(
            db,
            vec![Op::Delete {
                key: key.to_string(),
                rev,
            }],
        )
        .map(|revs| revs[0])
    }

    /// Applies operations all or nothing; returns each one's new rev.
    pub fn batch(&self, db: &str, ops: Vec<Op>) -> Result<Vec<u64>> {
        match self.write(Write::Batch {
            db: db.to_string(),
            ops,
        })? {
            Written::Batch(revs) => Ok(revs),
            other => unreachable!("a batch answered {other:?}"),
        }
    }

    /// Sets the hook called after every commit that changed databases (replacing any
    /// earlier one). Change feeds use it to wake up.
    pub fn set_commit_hook(&self, hook: CommitHook) {
        *self
            .shared
            .commit_hook
            .hook
            .write()
            .expect("the commit hook lock is never poisoned") = Some(hook);
    }

    /// A number that changes after every commit that saved or deleted a user (before
    /// its callers are answered): a cached user record older than it must be read again.
    pub fn users_generation(&self) -> u64 {
        self.shared
            .commit_hook
            .users_generation
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Applies age-based retention to every database; returns the entries removed.
    pub fn trim_changes(&self) -> Result<u64> {
        match self.write(Write::TrimChanges)? {
            Written::Trimmed(n) => Ok(n),
            other => unreachable!("a trim answered {other:?}"),
        }
    }
}
