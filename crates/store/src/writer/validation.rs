//! The checks of a write's input before it is queued (names, keys, values, limits), so
//! that bad input is refused on the caller's thread and never reaches the writer.

use super::requests::{Op, Write, MAX_BATCH_OPS};
use crate::error::{Result, StoreError};
use crate::format::{UserRecord, MAX_GRANTS, MAX_PASSWORD_HASH_BYTES};
use crate::index::validate_index_defs;
use crate::store::MAX_SCAN_LIMIT;
use crate::validate::{validate_database_name, validate_key, validate_value};

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
pub(super) fn validate_write(write: &Write, max_value_bytes: usize) -> Result<()> {
    match write {
        Write::CreateDatabase { name, .. }
        | Write::DropDatabase { name }
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
        Write::Batch { db, ops } => validate_batch(db, ops, max_value_bytes),
        Write::SaveUser { name, record, .. } => validate_user(name, record),
        Write::DeleteUser { name } => validate_database_name(name),
        Write::SaveSession { record, .. } => validate_database_name(&record.user),
        Write::TrimChanges
        | Write::DeleteSession { .. }
        | Write::PurgeSessions { .. }
        | Write::CreateJob { .. }
        | Write::SaveJob { .. }
        | Write::FailInterruptedJobs { .. }
        | Write::ReplaceJobs { .. }
        | Write::NewEpoch
        | Write::Probe { .. } => Ok(()),
        Write::SetStatus { status } => status.validate(),
        // A damaged or foreign entry is refused before it is queued.
        Write::MirrorApply { entries } => entries.iter().try_for_each(|entry| {
            crate::journal::check_entry(entry.seq, &entry.value)?;
            crate::journal::entry_ops(&entry.value).map(|_| ())
        }),
        Write::SyncAttach { positions, .. } => positions
            .iter()
            .try_for_each(|(name, _)| validate_database_name(name)),
        Write::SyncCreateDatabase { name, .. } | Write::SyncStopped { db: name, .. } => {
            validate_database_name(name)
        }
        Write::SyncApply {
            db,
            first_seq,
            ops,
            times_ms,
            ..
        } => {
            validate_batch(db, ops, max_value_bytes)?;
            if times_ms.len() != ops.len() || *first_seq == 0 {
                return Err(StoreError::InvalidArgument {
                    reason: format!(
                        "{} changes with {} times from seq {first_seq}: every change needs its time, and seqs start at 1",
                        ops.len(),
                        times_ms.len()
                    ),
                });
            }
            Ok(())
        }
        Write::SyncDetach => Ok(()),
    }
}

/// A batch: a valid database name, 1 to `MAX_BATCH_OPS` operations, valid keys and
/// values.
fn validate_batch(db: &str, ops: &[Op], max_value_bytes: usize) -> Result<()> {
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

/// Checks a user record against its name rule and the limits of its layout: at most
/// `MAX_GRANTS` grants, each on a valid database name, and a password hash of at most
/// `MAX_PASSWORD_HASH_BYTES`.
fn validate_user(name: &str, record: &UserRecord) -> Result<()> {
    validate_database_name(name)?;
    if record.grants.len() > MAX_GRANTS {
        return Err(StoreError::TooManyGrants {
            user: name.to_string(),
            grants: record.grants.len(),
            limit: MAX_GRANTS,
        });
    }
    for db in record.grants.keys() {
        validate_database_name(db)?;
    }
    let hash_len = record.password_hash.as_ref().map_or(0, String::len);
    if hash_len > MAX_PASSWORD_HASH_BYTES {
        return Err(StoreError::InvalidArgument {
            reason: format!(
                "the password hash of user {name:?} is {hash_len} bytes, more than the {MAX_PASSWORD_HASH_BYTES} a user record holds"
            ),
        });
    }
    Ok(())
}
