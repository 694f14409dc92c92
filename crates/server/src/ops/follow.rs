//! Migration mode as the service keeps it in memory for `status` and `sync.status`: the
//! source it follows (a copy of the stored `follow` record, read again at start, after
//! every change of the mode and after a restore), and what the follower last reported
//! per database (head seq, what it holds unapplied, its state), from which the lag is
//! computed. The refusal of other writers is the store's, in the transaction itself.

use std::collections::HashMap;
use std::sync::RwLock;

use cairn_proto::methods::{MigrationMode, SyncDatabase, SyncError, SyncStatusResult};
use cairn_proto::values::SyncState;
use cairn_store::{FollowRecord, Store, StoreError, SyncPosition};

use crate::storage::now_ms;

/// After this long without a report, a database's follower is taken for gone (`idle`).
const REPORT_STALE_MS: u64 = 30_000;

/// What the follower last reported on one database.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    pub state: SyncState,
    pub head_seq: u64,
    /// The source time of the oldest change it held unapplied.
    pub pending_since_ms: Option<u64>,
    pub at_ms: u64,
}

#[derive(Default)]
struct FollowState {
    record: Option<FollowRecord>,
    reports: HashMap<String, Report>,
}

/// Migration mode, the followed databases and the follower's reports.
#[derive(Default)]
pub struct Follow {
    state: RwLock<FollowState>,
}

impl Follow {
    /// Reads migration mode from the store again.
    pub fn load(&self, store: &Store) -> Result<(), StoreError> {
        let record = store.snapshot()?.follow()?;
        let mut state = self.state.write().expect("follow lock");
        if record.is_none() {
            state.reports.clear();
        }
        state.record = record;
        Ok(())
    }

    /// Migration mode, if it is on.
    pub fn mode(&self) -> Option<MigrationMode> {
        mode_of(&self.state.read().expect("follow lock"))
    }

    /// Keeps what the follower reported on `db`.
    pub fn report(&self, db: &str, report: Report) {
        self.state
            .write()
            .expect("follow lock")
            .reports
            .insert(db.to_string(), report);
    }

    /// Migration mode and every database with a sync position (in name order), with
    /// the lag computed from the follower's reports.
    pub fn status(&self, positions: Vec<(String, SyncPosition)>) -> SyncStatusResult {
        let state = self.state.read().expect("follow lock");
        let now = now_ms();
        let databases = positions
            .into_iter()
            .map(|(db, position)| {
                let report = state
                    .reports
                    .get(&db)
                    .filter(|r| now.saturating_sub(r.at_ms) < REPORT_STALE_MS);
                let error = position.stopped.as_ref().map(|s| SyncError {
                    code: s.code.clone(),
                    message: s.message.clone(),
                    seq: s.seq,
                    at_ms: s.at_ms,
                });
                let head_seq = report.map(|r| r.head_seq.max(position.seq));
                let lag_changes = head_seq.map(|head| head - position.seq);
                let lag_ms = report.map(|r| match (lag_changes, r.pending_since_ms) {
                    (Some(0), _) | (_, None) => 0,
                    (_, Some(since)) => now.saturating_sub(since),
                });
                let state = match (&error, report) {
                    (Some(_), _) => SyncState::Stopped,
                    (None, Some(_)) if lag_changes == Some(0) => SyncState::Live,
                    (None, Some(r)) => match r.state {
                        SyncState::Stopped | SyncState::Idle => r.state,
                        _ => SyncState::CatchingUp,
                    },
                    (None, None) => SyncState::Idle,
                };
                SyncDatabase {
                    db,
                    source_service_id: position.source_service_id,
                    source_epoch: position.source_epoch,
                    source_created_ms: position.source_created_ms,
                    applied_seq: position.seq,
                    head_seq,
                    lag_changes,
                    lag_ms,
                    state,
                    error,
                    reported_ms: report.map(|r| r.at_ms),
                }
            })
            .collect();
        // From the guard held: a second read lock could wait behind a writer waiting
        // for this one.
        SyncStatusResult {
            migration: mode_of(&state),
            databases,
        }
    }
}

fn mode_of(state: &FollowState) -> Option<MigrationMode> {
    state.record.as_ref().map(|r| MigrationMode {
        source: r.source.clone(),
        source_service_id: r.source_service_id.clone(),
        since_ms: r.since_ms,
    })
}
