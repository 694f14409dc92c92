//! The backup and job methods: `backup.start`, `backup.list`, `backup.delete`,
//! `restore.start`, `jobs.list`, `jobs.show` and `jobs.cancel`. The jobs themselves run
//! in `crate::ops` (`backup`, `restore`, `jobs`).

use cairn_proto::methods::{self, BackupNameArgs, BackupStartArgs, JobIdArgs, JobsListArgs};
use cairn_proto::WireError;

use crate::error::{conflict, store_error};
use crate::ops::{backup, jobs, restore};
use crate::storage::now_ms;
use crate::wire::{IntoStore, IntoWire};

use super::CallContext;

pub async fn start_backup(
    call: &CallContext,
    args: BackupStartArgs,
) -> Result<methods::Job, WireError> {
    let name = args
        .name
        .unwrap_or_else(|| backup::timestamp_name(now_ms()));
    let record = backup::start_backup(&call.shared, name, call.user(), None).await?;
    Ok((&record).into_wire())
}

pub async fn list_backups(call: &CallContext) -> Result<Vec<methods::BackupInfo>, WireError> {
    backup::list_backups(&call.shared).await
}

pub async fn delete_backup(call: &CallContext, args: BackupNameArgs) -> Result<(), WireError> {
    backup::delete_backup(&call.shared, &args.name).await?;
    tracing::warn!(backup = %args.name, by = %call.user(), "backup deleted");
    Ok(())
}

pub async fn start_restore(
    call: &CallContext,
    args: BackupNameArgs,
) -> Result<methods::Job, WireError> {
    let record = restore::start_restore(&call.shared, args.name, call.user()).await?;
    Ok((&record).into_wire())
}

/// The jobs, newest first, filtered by kind and status.
pub fn list(call: &CallContext, args: JobsListArgs) -> Result<Vec<methods::Job>, WireError> {
    let kind = args.kind.map(IntoStore::into_store);
    let status = args.status.map(IntoStore::into_store);
    let jobs = call
        .shared
        .store()?
        .snapshot()
        .and_then(|s| s.jobs())
        .map_err(store_error)?;
    Ok(jobs
        .iter()
        .filter(|j| kind.is_none_or(|k| j.kind == k))
        .filter(|j| status.is_none_or(|s| j.status == s))
        .map(IntoWire::into_wire)
        .collect())
}

pub fn show(call: &CallContext, args: JobIdArgs) -> Result<methods::Job, WireError> {
    Ok((&jobs::find_job(&call.shared, args.id)?).into_wire())
}

/// Asks a running job to stop; a finished job is a conflict.
pub fn cancel(call: &CallContext, args: JobIdArgs) -> Result<methods::Job, WireError> {
    let record = jobs::find_job(&call.shared, args.id)?;
    if record.status.is_final() || !call.shared.jobs.request_cancel(args.id) {
        return Err(conflict(format!(
            "job {} is {}: only a running job can be canceled",
            args.id,
            record.status.as_str()
        )));
    }
    tracing::warn!(job = args.id, by = %call.user(), "job cancel asked");
    Ok((&record).into_wire())
}
