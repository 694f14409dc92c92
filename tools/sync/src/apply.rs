//! Applying a source database's changes to the destination: one `sync.apply` call per
//! run of consecutive changes, and the catch-up by pages that the cutover uses. The
//! destination skips what it holds already and refuses gaps and other lineages, so
//! sending a change twice is harmless and a change is never applied twice.

use cairn_client::methods::{
    call, ChangeEntry, ChangesArgs, SyncApplyArgs, SyncApplyResult, SyncStatusResult,
};
use cairn_client::{Client, ClientError, ErrorCode};

/// Most changes in one `sync.apply` call (the destination commits each call in one
/// transaction, grouped with the others that wait).
pub const APPLY_CHANGES: usize = 2_000;
/// Most bytes of values in one `sync.apply` call (well below the frame limit).
pub const APPLY_BYTES: usize = 4 << 20;

/// Whose log a database follows: sent with every change so that the destination checks
/// it against the stored position.
#[derive(Debug, Clone)]
pub struct Lineage {
    pub db: String,
    pub source_service_id: String,
    pub epoch: u64,
    pub created_ms: u64,
}

/// Applies consecutive changes (`changes` is not empty).
pub async fn apply(
    dest: &Client,
    lineage: &Lineage,
    changes: Vec<ChangeEntry>,
    head_seq: u64,
    pending_since_ms: Option<u64>,
) -> Result<SyncApplyResult, ClientError> {
    dest.request::<call::SyncApply>(&SyncApplyArgs {
        db: lineage.db.clone(),
        source_service_id: lineage.source_service_id.clone(),
        epoch: lineage.epoch,
        created_ms: lineage.created_ms,
        changes,
        head_seq,
        pending_since_ms,
    })
    .await
}

/// The size a change adds to a `sync.apply` call, roughly.
pub fn change_bytes(change: &ChangeEntry) -> usize {
    change.key.len() + 32 + change.value.as_ref().map_or(0, value_bytes)
}

fn value_bytes(value: &rmpv::Value) -> usize {
    match value {
        rmpv::Value::String(s) => s.as_bytes().len() + 5,
        rmpv::Value::Binary(b) => b.len() + 5,
        rmpv::Value::Array(items) => 5 + items.iter().map(value_bytes).sum::<usize>(),
        rmpv::Value::Map(pairs) => {
            5 + pairs
                .iter()
                .map(|(k, v)| value_bytes(k) + value_bytes(v))
                .sum::<usize>()
        }
        rmpv::Value::Ext(_, data) => data.len() + 6,
        _ => 9,
    }
}

/// Pages of the source's log from `from` until the destination holds `target`; the
/// seq the destination holds at the end.
pub async fn catch_up(
    src: &Client,
    dest: &Client,
    lineage: &Lineage,
    from: u64,
    target: u64,
) -> Result<u64, ClientError> {
    let mut applied = from;
    while applied < target {
        let page = src
            .changes(&ChangesArgs {
                db: lineage.db.clone(),
                since: applied,
                limit: Some(u32::try_from(APPLY_CHANGES).unwrap_or(u32::MAX)),
                epoch: Some(lineage.epoch),
                ..ChangesArgs::default()
            })
            .await?;
        if page.changes.is_empty() {
            break;
        }
        applied = apply(dest, lineage, page.changes, target, None).await?.seq;
    }
    Ok(applied)
}

/// Whether an error stops a database's sync for good (the operator must act), rather
/// than being tried again later. A `conflict` (migration mode ended, a position
/// missing) is tried again: the follower ends once it sees the mode gone.
pub fn stops_the_sync(error: &ClientError) -> bool {
    matches!(
        error.code(),
        Some(
            ErrorCode::SyncGap
                | ErrorCode::ResyncRequired
                | ErrorCode::ChangesCompacted
                | ErrorCode::InvalidKey
                | ErrorCode::InvalidName
                | ErrorCode::InvalidValue
                | ErrorCode::ValueTooLarge
                | ErrorCode::BadRequest
                | ErrorCode::Forbidden
        )
    )
}

/// The destination's sync status.
pub async fn dest_status(dest: &Client) -> Result<SyncStatusResult, ClientError> {
    dest.request::<call::SyncStatus>(&cairn_client::methods::NoArgs {})
        .await
}
