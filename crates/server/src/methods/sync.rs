//! The follower's methods, on the destination of a sync (`cairn-sync`): `sync.attach`
//! enters migration mode with the starting positions, `sync.create` makes a database the
//! source created, `sync.apply` applies the source's changes at their own seqs (the
//! store keeps the position in the same transaction, skips what was applied, refuses
//! gaps and other lineages), `sync.report` keeps where the follower stands (a stop is
//! stored), `sync.status` and `sync.detach` (cutover or abort). Every one is admin only.

use cairn_proto::methods::{
    self, SyncApplyArgs, SyncAttachArgs, SyncCreateArgs, SyncDetachArgs, SyncReportArgs,
    SyncStatusResult,
};
use cairn_proto::values::{Op as WireOp, SyncState};
use cairn_proto::WireError;
use cairn_store::{FollowRecord, Op, SyncLineage, SyncPosition, SyncStop, Write, Written};

use crate::error::{bad_request, internal, store_error};
use crate::ops::follow::Report;
use crate::ops::lifecycle::DbState;
use crate::storage::{now_ms, write};
use crate::wire::IntoStore;

use super::data::{encode_value, key_text};
use super::CallContext;

/// Migration mode and every database's sync, as stored and reported.
pub fn status(call: &CallContext) -> Result<SyncStatusResult, WireError> {
    let positions = call
        .shared
        .store()?
        .snapshot()
        .and_then(|s| s.sync_positions())
        .map_err(store_error)?;
    Ok(call.shared.follow.status(positions))
}

/// Reads migration mode again after the store changed it.
fn reload(call: &CallContext) -> Result<(), WireError> {
    call.shared
        .follow
        .load(&call.shared.store()?)
        .map_err(store_error)
}

pub async fn attach(
    call: &CallContext,
    args: SyncAttachArgs,
) -> Result<SyncStatusResult, WireError> {
    if args.source_service_id.is_empty() || args.source.is_empty() {
        return Err(bad_request(
            "sync.attach needs the source's service id and URL",
        ));
    }
    let now = now_ms();
    let positions = args
        .positions
        .iter()
        .map(|p| {
            (
                p.db.clone(),
                SyncPosition {
                    source_service_id: args.source_service_id.clone(),
                    source_epoch: p.epoch,
                    seq: p.seq,
                    updated_ms: now,
                    source_created_ms: p.created_ms,
                    stopped: None,
                },
            )
        })
        .collect();
    let follow = FollowRecord {
        source_service_id: args.source_service_id.clone(),
        source: args.source.clone(),
        since_ms: now,
    };
    write(
        &call.shared.store()?,
        Write::SyncAttach { follow, positions },
    )
    .await?;
    reload(call)?;
    tracing::warn!(source = %args.source, source_service_id = %args.source_service_id, by = %call.user(), "migration mode: following a source, its databases refuse other writers");
    status(call)
}

pub async fn create(call: &CallContext, args: SyncCreateArgs) -> Result<(), WireError> {
    let Some(mode) = call.shared.follow.mode() else {
        return Err(store_error(cairn_store::StoreError::NotFollowing));
    };
    let position = SyncPosition {
        source_service_id: mode.source_service_id,
        source_epoch: args.epoch,
        seq: 0,
        updated_ms: now_ms(),
        source_created_ms: args.created_ms,
        stopped: None,
    };
    let store = call.shared.store()?;
    let written = write(
        &store,
        Write::SyncCreateDatabase {
            name: args.db.clone(),
            retention: args.retention.into_store(),
            offline: args.offline,
            position,
        },
    )
    .await?;
    if call.shared.databases.watch(&args.db).is_none() {
        call.shared.databases.created(&args.db, args.offline);
    }
    reload(call)?;
    if written == Written::DatabaseCreated {
        tracing::warn!(db = %args.db, by = %call.user(), "database created by the follower: the source created it");
    }
    Ok(())
}

pub async fn apply(
    call: &CallContext,
    args: SyncApplyArgs,
) -> Result<methods::SyncApplyResult, WireError> {
    // An offline database takes the source's changes (its state is the source's
    // business until the cutover); one starting, stopping or resyncing waits.
    let _admission = match call.shared.databases.state(&args.db) {
        DbState::Offline => None,
        _ => call.shared.databases.enter(&args.db)?,
    };
    let Some(first) = args.changes.first() else {
        return Err(bad_request("sync.apply needs at least one change"));
    };
    let first_seq = first.seq;
    let mut ops = Vec::with_capacity(args.changes.len());
    let mut times_ms = Vec::with_capacity(args.changes.len());
    for (i, change) in args.changes.iter().enumerate() {
        if change.seq != first_seq + i as u64 {
            return Err(bad_request(format!(
                "sync.apply takes consecutive changes: seq {} follows seq {}",
                change.seq,
                first_seq + i as u64 - 1
            )));
        }
        let key = key_text(&rmpv::Value::from(change.key.as_str()))?;
        ops.push(match (change.op, &change.value) {
            (WireOp::Put, Some(value)) => Op::Put {
                key,
                value: encode_value(value),
                rev: None,
            },
            (WireOp::Put, None) => {
                return Err(bad_request(format!("the put of {key:?} has no value")))
            }
            (WireOp::Del, _) => Op::Delete { key, rev: None },
        });
        times_ms.push(change.time_ms);
    }
    let written = write(
        &call.shared.store()?,
        Write::SyncApply {
            db: args.db.clone(),
            lineage: SyncLineage {
                service_id: args.source_service_id,
                epoch: args.epoch,
                created_ms: args.created_ms,
            },
            first_seq,
            ops,
            times_ms,
        },
    )
    .await?;
    let Written::SyncApplied { seq, applied } = written else {
        return Err(internal(format!("sync.apply answered {written:?}")));
    };
    call.shared.follow.report(
        &args.db,
        Report {
            state: if seq >= args.head_seq {
                SyncState::Live
            } else {
                SyncState::CatchingUp
            },
            head_seq: args.head_seq,
            pending_since_ms: args.pending_since_ms,
            at_ms: now_ms(),
        },
    );
    Ok(methods::SyncApplyResult { seq, applied })
}

pub async fn report(call: &CallContext, args: SyncReportArgs) -> Result<(), WireError> {
    let now = now_ms();
    let stored_stop = call
        .shared
        .store()?
        .snapshot()
        .and_then(|s| s.sync_positions())
        .map_err(store_error)?
        .into_iter()
        .find(|(db, _)| *db == args.db)
        .ok_or_else(|| {
            store_error(cairn_store::StoreError::SyncPositionMissing {
                db: args.db.clone(),
            })
        })?
        .1
        .stopped;
    let stop = match (&args.error, args.state) {
        (Some(error), SyncState::Stopped) => Some(SyncStop {
            code: error.code.clone(),
            message: error.message.clone(),
            seq: error.seq,
            at_ms: now,
        }),
        (Some(_), _) => return Err(bad_request("a sync report with an error has state stopped")),
        (None, _) => None,
    };
    let unchanged = match (&stop, &stored_stop) {
        (Some(new), Some(old)) => {
            (&new.code, &new.message, new.seq) == (&old.code, &old.message, old.seq)
        }
        (None, None) => true,
        _ => false,
    };
    if !unchanged {
        write(
            &call.shared.store()?,
            Write::SyncStopped {
                db: args.db.clone(),
                stop: stop.clone(),
            },
        )
        .await?;
        match &stop {
            Some(stop) => {
                tracing::warn!(db = %args.db, code = %stop.code, seq = stop.seq, error = %stop.message, "the database's sync stopped")
            }
            None => tracing::warn!(db = %args.db, "the database's sync goes on"),
        }
    }
    call.shared.follow.report(
        &args.db,
        Report {
            state: args.state,
            head_seq: args.head_seq,
            pending_since_ms: args.pending_since_ms,
            at_ms: now,
        },
    );
    Ok(())
}

pub async fn detach(
    call: &CallContext,
    args: SyncDetachArgs,
) -> Result<SyncStatusResult, WireError> {
    let before = status(call)?;
    let written = write(&call.shared.store()?, Write::SyncDetach).await?;
    if written == Written::SyncDetached(None) {
        return Err(store_error(cairn_store::StoreError::NotFollowing));
    }
    reload(call)?;
    tracing::warn!(reason = args.reason.as_str(), by = %call.user(), "migration mode ended: every database takes writes again");
    Ok(before)
}
