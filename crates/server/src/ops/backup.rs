//! Backup jobs and the backup location: a backup job writes a live, compacted, verified
//! copy of the working directory into the backup directory, or with `[backup] url`
//! writes it into the scratch directory and uploads it to object storage (see
//! `cairn_remote`); the listing and deletion are the backup directory's, or the
//! bucket's. The copy runs on a thread of its own at a lower CPU priority
//! (`BACKUP_NICE`, inherited by the threads it starts), so that the service's calls
//! come first while it runs.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use cairn_proto::methods::BackupInfo;
use cairn_proto::{ErrorCode, WireError};
use cairn_remote::{Remote, RemoteBackup};
use cairn_store::backup::{self, BackupControl};
use cairn_store::{JobKind, JobRecord, JobStatus, StoreError};
use tokio::sync::mpsc;

use crate::error::{conflict, internal, remote_error_to_wire};
use crate::ops::jobs::{
    register_exclusive_job, remove_scratch, reporter, scratch, Failure, JobHandle,
};
use crate::ops::schedule;
use crate::ops::shared::Shared;

/// A backup name: 1-128 of `A-Z a-z 0-9 . _ -`, not starting with `.` (never a path).
pub fn validate_backup_name(name: &str) -> Result<(), WireError> {
    cairn_remote::check_backup_name(name)
        .map_err(|reason| WireError::new(ErrorCode::InvalidName, reason))
}

/// The default backup name: the UTC time, `20261121T030000Z`.
pub fn timestamp_name(now_ms: u64) -> String {
    backup::utc_stamp(now_ms)
}

/// Starts a backup job writing `BACKUP_DIR/name`, or uploading the backup `name` with
/// `[backup] url`. With `keep`, once the backup is written the oldest scheduled backups
/// beyond the newest `keep` are deleted, before the job is marked COMPLETED.
pub async fn start_backup(
    shared: &Arc<Shared>,
    name: String,
    by: &str,
    keep: Option<usize>,
) -> Result<JobRecord, WireError> {
    validate_backup_name(&name)?;
    // With a url the bucket is asked in the job, so that its refusal is the job's error.
    if shared.remote.is_none() && shared.backup_dir.join(&name).exists() {
        return Err(conflict(format!(
            "backup {name:?} exists in {}: choose another name",
            shared.backup_dir.display()
        )));
    }
    let (mut job, cancel, slot) =
        register_exclusive_job(shared, JobKind::Backup, &name, by).await?;
    let record = job.record.clone();
    shared.jobs.spawn({
        let shared = shared.clone();
        async move {
            job.set_status(JobStatus::Started).await;
            let outcome = match &shared.remote {
                Some(remote) => run_remote_backup(&shared, remote, &mut job, &name, cancel).await,
                None => {
                    let destination = shared.backup_dir.join(&name);
                    run_backup(&shared, &mut job, &destination, cancel)
                        .await
                        .map(|()| Some(destination.display().to_string()))
                        .map_err(Failure::from)
                }
            };
            if let (Ok(_), Some(keep)) = (&outcome, keep) {
                schedule::prune(&shared, keep).await;
            }
            job.finish(outcome).await;
            drop(slot);
        }
    });
    Ok(record)
}

/// Writes a verified backup of the service into `destination`.
async fn run_backup(
    shared: &Arc<Shared>,
    job: &mut JobHandle,
    destination: &Path,
    cancel: Arc<AtomicBool>,
) -> Result<(), StoreError> {
    let store = shared
        .store()
        .map_err(|e| StoreError::InvalidArgument { reason: e.message })?;
    let (progress_sender, mut progress) = mpsc::unbounded_channel();
    let mut control = BackupControl::new(format!("cairn-service {}", env!("CARGO_PKG_VERSION")))
        .with_progress(move |update| {
            let _ = progress_sender.send(update.clone());
        });
    control.cancel = cancel;
    let dir = shared.dir.clone();
    let target = destination.to_path_buf();
    let copy = background("cairn-backup-job", move || {
        backup::create_backup(&store, &dir, &target, &control).map(drop)
    });
    job.forwarding(&mut progress, copy).await
}

/// The nice value of a backup's threads (the service's run at 0).
const BACKUP_NICE: i32 = 10;

/// Runs `work` on a new thread named `name` at `BACKUP_NICE`.
async fn background<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let (done, outcome) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            // Linux keeps a nice value per thread: `None` is this thread alone, and the
            // threads it starts inherit it.
            if let Err(error) = rustix::process::setpriority_process(None, BACKUP_NICE) {
                tracing::warn!(%error, "cannot lower the backup's priority: it runs at the service's");
            }
            let _ = done.send(work());
        })
        .map_err(|e| StoreError::io(format!("starting {name}"), e))?;
    outcome.await.map_err(|_| {
        StoreError::io(
            format!("{name} stopped"),
            std::io::Error::other("the backup thread panicked"),
        )
    })?
}

/// Makes sure the bucket answers and has no backup `name`, writes a verified backup into
/// the scratch directory, then uploads it as `name`.
async fn run_remote_backup(
    shared: &Arc<Shared>,
    remote: &Remote,
    job: &mut JobHandle,
    name: &str,
    cancel: Arc<AtomicBool>,
) -> Result<Option<String>, Failure> {
    remote.refuse_existing(name, &cancel).await?;
    let local = scratch(shared, "backup", name);
    let outcome = async {
        run_backup(shared, job, &local, cancel.clone()).await?;
        let (sender, mut progress) = mpsc::unbounded_channel();
        let report = reporter(sender, job.record.progress_total);
        let uploaded = job
            .forwarding(&mut progress, remote.upload(name, &local, &report, &cancel))
            .await?;
        Ok::<_, Failure>(Some(uploaded))
    }
    .await;
    remove_scratch(local).await;
    outcome
}

/// The complete backups, newest first: the backup directory's, or the bucket's.
pub async fn list_backups(shared: &Shared) -> Result<Vec<BackupInfo>, WireError> {
    if let Some(remote) = &shared.remote {
        let backups = remote.list().await.map_err(|e| remote_error_to_wire(&e))?;
        return Ok(backups.into_iter().map(remote_backup_info).collect());
    }
    let dir = shared.backup_dir.clone();
    tokio::task::spawn_blocking(move || list_local_backups(&dir))
        .await
        .map_err(internal)?
}

/// Deletes the backup `name`, unless a running job uses it.
pub async fn delete_backup(shared: &Shared, name: &str) -> Result<(), WireError> {
    validate_backup_name(name)?;
    if let Some(job) = shared.jobs.using(name) {
        return Err(conflict(format!("job {job} uses backup {name:?}")));
    }
    if let Some(remote) = &shared.remote {
        return remote
            .delete(name)
            .await
            .map_err(|e| remote_error_to_wire(&e));
    }
    let path = shared.backup_dir.join(name);
    if !path.join(backup::MANIFEST_FILE).exists() {
        return Err(WireError::new(
            ErrorCode::NotFound,
            format!("no backup {name:?} in {}", shared.backup_dir.display()),
        ));
    }
    tokio::task::spawn_blocking(move || std::fs::remove_dir_all(path))
        .await
        .map_err(internal)?
        .map_err(internal)
}

/// The wire form of a backup in the bucket.
fn remote_backup_info(backup: RemoteBackup) -> BackupInfo {
    BackupInfo {
        name: backup.name,
        location: backup.archive_url,
        created_ms: backup.manifest.created_ms,
        service_id: backup.manifest.service_id.clone(),
        format_version: backup.manifest.format_version,
        bytes: backup.manifest.bytes(),
        files: backup.manifest.files.len() as u64,
        databases: backup.manifest.databases.len() as u64,
    }
}

fn list_local_backups(dir: &Path) -> Result<Vec<BackupInfo>, WireError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(internal(e)),
    };
    let mut list = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if validate_backup_name(&name).is_err() {
            continue;
        }
        let Ok(manifest) = backup::read_manifest(&path) else {
            continue;
        };
        list.push(BackupInfo {
            name,
            location: path.display().to_string(),
            created_ms: manifest.created_ms,
            service_id: manifest.service_id.clone(),
            format_version: manifest.format_version,
            bytes: manifest.files.iter().map(|f| f.size).sum(),
            files: manifest.files.len() as u64,
            databases: manifest.databases.len() as u64,
        });
    }
    list.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(b.name.cmp(&a.name)));
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_backup_thread_and_the_threads_it_starts_run_below_the_service() {
        let service = rustix::process::getpriority_process(None).unwrap();
        let (own, child) = background("cairn-test-backup", || {
            let own = rustix::process::getpriority_process(None).unwrap();
            let child = std::thread::spawn(|| rustix::process::getpriority_process(None).unwrap())
                .join()
                .unwrap();
            Ok((own, child))
        })
        .await
        .unwrap();
        assert_eq!((own, child), (BACKUP_NICE, BACKUP_NICE));
        assert_eq!(
            rustix::process::getpriority_process(None).unwrap(),
            service,
            "the caller's priority is unchanged"
        );
        let failed = background::<()>("cairn-test-backup", || Err(StoreError::Canceled)).await;
        assert!(matches!(failed, Err(StoreError::Canceled)));
    }
}
