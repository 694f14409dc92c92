//! Restore jobs and the live restore: stage the backup beside the working directory
//! (verified, fsync'd) while the service still serves admins, then take the service down
//! for non-admins, end live change feeds, wait until no call holds the store, close it,
//! swap the environment directory for the backup's in two renames, reopen, carry the job
//! history over, draw a new change-log epoch, and come back. Any failure puts the old
//! environment back in place and reopens it. A local backup and one downloaded from
//! object storage (unpacked into the scratch directory first) both come through `run`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_proto::{ErrorCode, WireError};
use cairn_remote::Remote;
use cairn_store::{backup, JobKind, JobRecord, JobStatus, Store, StoreError, Write};
use rmpv::Value;
use tokio::sync::mpsc;

use crate::error::conflict;
use crate::ops::backup::{timestamp_name, validate_backup_name};
use crate::ops::jobs::{
    register_exclusive_job, remove_scratch, reporter, scratch, Failure, JobHandle,
};
use crate::ops::shared::Shared;
use crate::storage::{blocking_store, now_ms, write};

/// How long a restore waits for calls in flight to let go of the store.
const RESTORE_DRAIN: Duration = Duration::from_secs(30);

/// Starts a restore job from the backup `name`: `BACKUP_DIR/name`, or the bucket's with
/// `[backup] url`.
pub async fn start_restore(
    shared: &Arc<Shared>,
    name: String,
    by: &str,
) -> Result<JobRecord, WireError> {
    validate_backup_name(&name).map_err(|_| {
        WireError::new(
            ErrorCode::BadRequest,
            "a service restores only from its own backup location: give a backup name (see backup list)",
        )
    })?;
    let backup = shared.backup_dir.join(&name);
    if shared.remote.is_none() && !backup.join(backup::MANIFEST_FILE).exists() {
        return Err(WireError::new(
            ErrorCode::NotFound,
            format!("no backup {name:?} in {}", shared.backup_dir.display()),
        ));
    }
    if let Some(resync) = shared.jobs.running_of(JobKind::Resync) {
        return Err(conflict(format!(
            "resync job {resync} is running: a restore would replace the database under it; wait for it or cancel it"
        ))
        .with_details(Value::Map(vec![(Value::from("job"), Value::from(resync))])));
    }
    let (mut job, cancel, slot) =
        register_exclusive_job(shared, JobKind::Restore, &name, by).await?;
    let record = job.record.clone();
    shared.jobs.spawn({
        let shared = shared.clone();
        async move {
            job.set_status(JobStatus::Started).await;
            let outcome = match &shared.remote {
                Some(remote) => run_remote_restore(&shared, remote, &mut job, &name, cancel).await,
                None => run(&shared, &mut job.record, &backup, cancel)
                    .await
                    .map(|()| Some(backup.display().to_string()))
                    .map_err(Failure::from),
            };
            job.finish(outcome).await;
            drop(slot);
        }
    });
    Ok(record)
}

/// Downloads and unpacks the backup `name` into the scratch directory, then restores it.
async fn run_remote_restore(
    shared: &Arc<Shared>,
    remote: &Remote,
    job: &mut JobHandle,
    name: &str,
    cancel: Arc<AtomicBool>,
) -> Result<Option<String>, Failure> {
    let local = scratch(shared, "restore", name);
    let outcome = async {
        std::fs::create_dir(&local)
            .map_err(|e| StoreError::io(format!("creating {}", local.display()), e))?;
        let (sender, mut progress) = mpsc::unbounded_channel();
        let report = reporter(sender, 0);
        let unpacked = job
            .forwarding(
                &mut progress,
                remote.download(name, &local, &report, &cancel),
            )
            .await?;
        run(shared, &mut job.record, &unpacked, cancel).await?;
        Ok::<_, Failure>(Some(remote.url(&cairn_remote::archive_object(name))))
    }
    .await;
    remove_scratch(local).await;
    outcome
}

fn failure(reason: impl Into<String>) -> StoreError {
    StoreError::InvalidArgument {
        reason: reason.into(),
    }
}

/// Runs the restore of the backup directory `backup` for the job `job` (its record is
/// kept up to date by the caller).
pub async fn run(
    shared: &Arc<Shared>,
    job: &mut JobRecord,
    backup: &Path,
    cancel: Arc<AtomicBool>,
) -> Result<(), StoreError> {
    let dir = shared.dir.clone();
    job.progress_message = "verifying and staging the backup".to_string();
    let (from, to) = (backup.to_path_buf(), dir.clone());
    let staged =
        blocking_store("a restore step", move || backup::stage_restore(&from, &to)).await?;
    if cancel.load(Ordering::SeqCst) {
        let _ = std::fs::remove_dir_all(&staged);
        return Err(StoreError::Canceled);
    }

    tracing::warn!(backup = %backup.display(), "restore: the service is DOWN for non-admins");
    shared.set_restoring(true);
    shared.end_feeds();
    let outcome = swap_in(shared, job, &staged).await;
    let _ = std::fs::remove_dir_all(&staged);
    shared.set_restoring(false);
    tracing::warn!(ok = outcome.is_ok(), "restore: the service is back");
    outcome
}

/// Closes the store, swaps the environment directory, reopens, and carries the job
/// history over. On failure the old environment is back and open.
async fn swap_in(
    shared: &Arc<Shared>,
    job: &mut JobRecord,
    staged: &Path,
) -> Result<(), StoreError> {
    let old = shared.store().map_err(|e| failure(e.message))?;
    let history = old.snapshot()?.jobs()?;
    drop(old);
    // The old environment stays in the scratch directory until the next start.
    let (store, _replaced) = replace_environment(shared, staged).await?;
    // The job history is the service's, not the data's: carry it over, with this job.
    let mut records = history;
    records.retain(|r| r.id != job.id);
    records.push(job.clone());
    let wire = |e: cairn_proto::WireError| failure(e.message);
    write(&store, Write::ReplaceJobs { records })
        .await
        .map_err(wire)?;
    write(&store, Write::NewEpoch).await.map_err(wire)?;
    // The service returns to the status it had, whatever the backup's was.
    write(
        &store,
        Write::SetStatus {
            status: (*shared.status()).clone(),
        },
    )
    .await
    .map_err(wire)?;
    shared.put_store(store);
    Ok(())
}

/// Takes the store out of its slot, waits until no call holds it, closes it, swaps
/// the environment directory for `STAGED/store` and opens that. Returns the new store,
/// not yet in the slot, and where the old environment directory went (in `DIR/tmp`); on
/// failure the old environment is back, open and in the slot.
pub async fn replace_environment(
    shared: &Arc<Shared>,
    staged: &Path,
) -> Result<(Store, PathBuf), StoreError> {
    let Some(old) = shared.take_store() else {
        return Err(failure("the store is already closed"));
    };
    let deadline = Instant::now() + RESTORE_DRAIN;
    while old.handles() > 1 {
        if Instant::now() > deadline {
            shared.put_store(old);
            return Err(failure(
                "calls in flight still use the store after 30 s: try again when the service is quieter",
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    blocking_store("a restore step", move || {
        drop(old);
        Ok(())
    })
    .await?;

    let dir = shared.dir.clone();
    let replaced = dir
        .join(crate::config::TMP_DIR)
        .join(format!("store.replaced-{}", timestamp_name(now_ms())));
    let swapped = {
        let (dir, staged, replaced) = (dir.clone(), staged.to_path_buf(), replaced.clone());
        blocking_store("a restore step", move || {
            Ok(backup::swap_environment(&dir, &staged, &replaced))
        })
        .await
    };
    let options = shared.settings().store_options();
    let (reopened, moved) = match swapped {
        Ok(Ok(swapped)) => {
            let (dir, options) = (dir.clone(), options.clone());
            (
                blocking_store("a restore step", move || Store::open(&dir, options)).await,
                Some(swapped),
            )
        }
        Ok(Err(failed)) => (Err(failed.error), failed.moved),
        Err(error) => (Err(error), None),
    };
    let store = match reopened {
        Ok(store) => store,
        Err(error) => {
            tracing::error!(%error, "restore failed: putting the old environment back");
            let back = {
                let dir = dir.clone();
                blocking_store("a restore step", move || {
                    if let Some(swapped) = moved {
                        swapped.roll_back()?;
                    }
                    Store::open(&dir, options)
                })
                .await
            };
            match back {
                Ok(store) => shared.put_store(store),
                Err(fatal) => {
                    tracing::error!(%fatal, "the old environment does not reopen: the service cannot serve until restarted")
                }
            }
            return Err(error);
        }
    };
    Ok((store, replaced))
}
