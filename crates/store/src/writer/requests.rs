//! What callers send the writer and what it answers: `Write` (every kind of write
//! request), `Op` (one operation of a batch), `Written` (what a successful write
//! reports), the resync cursors and reports, and the callbacks (`Reply`, `CommitHook`)
//! the writer calls.

use std::sync::Arc;

use crate::error::Result;
use crate::format::{
    FollowRecord, IndexDef, Retention, SessionRecord, SyncPosition, SyncStop, UserRecord,
};
use crate::jobs::JobRecord;

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
    /// The document key the operation is about.
    pub(super) fn key(&self) -> &str {
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
    /// Writes the probe record (`meta.probe`, the time): a commit that must reach the
    /// disk, to learn whether writes work again after an I/O error.
    Probe {
        now_ms: u64,
    },
    /// Replaces the service status.
    SetStatus {
        status: crate::status::ServiceStatus,
    },
    /// Enters migration mode (stores `follow`) and stores each database's starting
    /// position where it has none yet; a stored position of the same source is kept (it
    /// is what the database holds), one of another source is refused, and so is a
    /// follow record of another source.
    SyncAttach {
        follow: FollowRecord,
        positions: Vec<(String, SyncPosition)>,
    },
    /// Creates a database the source created during the sync, with its position (only
    /// in migration mode).
    SyncCreateDatabase {
        name: String,
        retention: Retention,
        offline: bool,
        position: SyncPosition,
    },
    /// Applies changes of the source's log at their own seqs (`first_seq`, the next,
    /// …), each with its own time, and moves the database's sync position along in the
    /// same transaction. Changes at or below the stored position are skipped; a gap is
    /// `SyncGap`; another lineage is `SyncLineage`.
    SyncApply {
        db: String,
        lineage: SyncLineage,
        first_seq: u64,
        ops: Vec<Op>,
        times_ms: Vec<u64>,
    },
    /// Records (or clears, with `None`) why a database's sync stopped.
    SyncStopped {
        db: String,
        stop: Option<SyncStop>,
    },
    /// Leaves migration mode (the data and the positions stay as they are).
    SyncDetach,
    /// A mirror applies its leader's journal entries, which must continue its own
    /// journal, and stores them at their seqs (the only write a mirror's store takes).
    MirrorApply {
        entries: Vec<JournalEntry>,
    },
}

/// One stored entry of a journal: its seq and its value as the `journal` table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    pub seq: u64,
    pub value: Vec<u8>,
}

/// Whose change log a follower applies to a database: checked against its stored sync
/// position before anything is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncLineage {
    pub service_id: String,
    pub epoch: u64,
    /// The source database's creation time (0: not known, not checked).
    pub created_ms: u64,
}

/// The key of one entry of the `indexes` table (database id, index position, encoded
/// value, document key): a cursor of the last resync steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub key: Vec<u8>,
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
    Probed,
    SyncAttached,
    /// The database's sync position after the call, and how many changes it applied
    /// (the others were at or below the stored position).
    SyncApplied {
        seq: u64,
        applied: u64,
    },
    SyncStopSet,
    /// The follow record that was removed (`None`: migration mode was off).
    SyncDetached(Option<FollowRecord>),
    /// The seq of the last entry a mirror applied, whether users or sessions changed,
    /// and whether the service's own state did (status, configurations, databases).
    MirrorApplied {
        head: u64,
        users_changed: bool,
        service_changed: bool,
    },
}

/// Called after each commit that added journal entries, with the journal's newest seq.
pub type JournalHook = Arc<dyn Fn(u64) + Send + Sync>;

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

/// What the writer did with one group of write requests: how many it took, how long
/// its transaction took from its start to its fsync'd commit, how much of that LMDB's
/// commit took (pages written and fsync; the rest applied the writes), and whether it
/// committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupStats {
    pub requests: usize,
    pub duration: std::time::Duration,
    pub commit: std::time::Duration,
    pub committed: bool,
}

/// The hook called after every group (metrics use it).
pub type GroupHook = Arc<dyn Fn(GroupStats) + Send + Sync>;

/// The callback that receives a write's outcome, called once, after the commit.
pub type Reply = Box<dyn FnOnce(Result<Written>) + Send + 'static>;
