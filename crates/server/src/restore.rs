//! The live restore: stage the backup beside the working directory (verified, fsync'd)
//! while the service still serves admins, then take the service down for non-admins,
//! end live change feeds, wait until no call holds the store, close it, swap the
//! environment directory for the backup's in two renames, reopen, carry the job history
//! over, draw a new change-log epoch, and come back. Any failure puts the old
//! environment back in place and reopens it. A local backup and one downloaded from
//! object storage (unpacked into the scratch directory first) both come through `run`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use cairn_store::{backup, JobRecord, Store, StoreError, Write};

use crate::handlers::{now_ms, write};
use crate::jobs::{restore_drain, timestamp_name};
use crate::shared::Shared;

fn failure(reason: impl Into<String>) -> StoreError {
    StoreError::InvalidArgument {
        reason: reason.into(),
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::io("a restore step", std::io::Error::other(e.to_string())))?
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
    let staged = blocking(move || backup::stage_restore(&from, &to)).await?;
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

/// Closes the store, swaps the environment directory, reopens. On failure the old
/// environment is back and open.
async fn swap_in(
    shared: &Arc<Shared>,
    job: &mut JobRecord,
    staged: &Path,
) -> Result<(), StoreError> {
    let old = shared.store().map_err(|e| failure(e.message))?;
    let history = old.snapshot()?.jobs()?;
    drop(old);
    let Some(old) = shared.take_store() else {
        return Err(failure("the store is already closed"));
    };
    let deadline = Instant::now() + restore_drain();
    while old.handles() > 1 {
        if Instant::now() > deadline {
            shared.put_store(old);
            return Err(failure(
                "calls in flight still use the store after 30 s: try again when the service is quieter",
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    blocking(move || {
        drop(old);
        Ok(())
    })
    .await?;

    let dir = shared.dir.clone();
    let replaced = dir
        .join(crate::TMP_DIR)
        .join(format!("store.replaced-{}", timestamp_name(now_ms())));
    let swapped = {
        let (dir, staged) = (dir.clone(), staged.to_path_buf());
        blocking(move || Ok(backup::swap_environment(&dir, &staged, &replaced))).await
    };
    let options = shared.settings().store_options();
    let (reopened, moved) = match swapped {
        Ok(Ok(swapped)) => {
            let (dir, options) = (dir.clone(), options.clone());
            (
                blocking(move || Store::open(&dir, options)).await,
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
                blocking(move || {
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
