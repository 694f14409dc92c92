//! The follower's methods (`cairn-sync`), on the destination of a sync: `sync.attach`
//! (enter migration mode with each database's starting position), `sync.create` (a
//! database the source created), `sync.apply` (changes of the source's log, applied at
//! their own seqs), `sync.report` (where the follower stands), `sync.status` and
//! `sync.detach` (leave migration mode, at the cutover or by abort).

use serde::{Deserialize, Serialize};

use super::changes::ChangeEntry;
use super::db::RetentionArgs;
use crate::values::{SyncEnd, SyncState};

/// Where one database starts in the source's change log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStartPosition {
    pub db: String,
    /// The source's change-log epoch.
    pub epoch: u64,
    /// The last seq of the source that the destination's database holds.
    pub seq: u64,
    /// When the source created the database (0: not known).
    #[serde(default)]
    pub created_ms: u64,
}

/// `sync.attach`: the source (its service id and URL without credentials) and the
/// positions the destination should store where it has none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncAttachArgs {
    pub source_service_id: String,
    pub source: String,
    #[serde(default)]
    pub positions: Vec<SyncStartPosition>,
}

/// `sync.create`: creates a database the source created during the sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncCreateArgs {
    pub db: String,
    #[serde(default)]
    pub retention: RetentionArgs,
    #[serde(default)]
    pub offline: bool,
    pub epoch: u64,
    #[serde(default)]
    pub created_ms: u64,
}

/// `sync.apply`: consecutive changes of one database of the source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncApplyArgs {
    pub db: String,
    pub source_service_id: String,
    pub epoch: u64,
    #[serde(default)]
    pub created_ms: u64,
    pub changes: Vec<ChangeEntry>,
    /// The source's last seq of the database, as far as the follower knows.
    #[serde(default)]
    pub head_seq: u64,
    /// The source time of the oldest change the follower holds but has not applied
    /// after this call (none: it holds none).
    #[serde(default)]
    pub pending_since_ms: Option<u64>,
}

/// `sync.apply`'s result: the database's position, and how many changes this call
/// applied (the others were applied before).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncApplyResult {
    pub seq: u64,
    pub applied: u64,
}

/// Why a database's sync stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncError {
    /// A stable code (`sync_gap`, `resync_required`, `changes_compacted`, …).
    pub code: String,
    pub message: String,
    /// The source seq it stopped at.
    pub seq: u64,
    #[serde(default)]
    pub at_ms: u64,
}

/// `sync.report`: where the follower stands on one database; `error` with state
/// `stopped` is stored until the database's sync goes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReportArgs {
    pub db: String,
    pub state: SyncState,
    pub head_seq: u64,
    #[serde(default)]
    pub pending_since_ms: Option<u64>,
    #[serde(default)]
    pub error: Option<SyncError>,
}

/// Migration mode: the source followed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationMode {
    pub source: String,
    pub source_service_id: String,
    pub since_ms: u64,
}

/// One database of `sync.status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncDatabase {
    pub db: String,
    pub source_service_id: String,
    pub source_epoch: u64,
    /// When the source created the database it follows (0: not known).
    #[serde(default)]
    pub source_created_ms: u64,
    /// The last source seq applied here.
    pub applied_seq: u64,
    /// The source's last seq as the follower last reported it.
    #[serde(default)]
    pub head_seq: Option<u64>,
    /// Changes the source holds that are not applied here yet.
    #[serde(default)]
    pub lag_changes: Option<u64>,
    /// How long ago the source committed the oldest change not applied here (0 when
    /// caught up).
    #[serde(default)]
    pub lag_ms: Option<u64>,
    pub state: SyncState,
    #[serde(default)]
    pub error: Option<SyncError>,
    /// When the follower last reported (ms since the epoch).
    #[serde(default)]
    pub reported_ms: Option<u64>,
}

/// `sync.status` (and `sync.detach`'s result: the status before it ended).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatusResult {
    /// Migration mode, if it is on.
    #[serde(default)]
    pub migration: Option<MigrationMode>,
    pub databases: Vec<SyncDatabase>,
}

/// `sync.detach`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncDetachArgs {
    pub reason: SyncEnd,
}
