//! The jobs registry: backups, restores and resyncs run in the background, each with a
//! stored record (see `cairn_store::JobRecord`) that callers list, watch and cancel.
//! This file keeps the jobs running in this process, the handle a job's task keeps its
//! record up to date with, and how a failure is described; each kind of job has its own
//! file (`backup`, `restore`, `resync`). One backup or restore runs at a time; a second
//! is refused with the running job's id.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_proto::{ErrorCode, WireError};
use cairn_remote::RemoteError;
use cairn_store::backup::{BackupProgress, ProgressFn};
use cairn_store::{JobKind, JobRecord, JobStatus, Store, StoreError, Write, Written};
use rmpv::Value;
use tokio::sync::{mpsc, OwnedMutexGuard};
use tokio_util::task::TaskTracker;

use crate::error::{conflict, internal, remote_error_to_wire, store_error, store_error_to_wire};
use crate::ops::shared::Shared;
use crate::ops::webhooks::WebhookEvent;
use crate::storage::{now_ms, write};

/// Progress within a step is written to the job's record at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The jobs running in this process.
#[derive(Default)]
pub struct JobRegistry {
    running: Mutex<HashMap<u64, Running>>,
    /// Held by the running backup or restore.
    exclusive: Arc<tokio::sync::Mutex<()>>,
    tasks: TaskTracker,
    /// Set at shutdown: a job stopped then failed as interrupted, not canceled.
    stopping: AtomicBool,
}

struct Running {
    kind: JobKind,
    cancel: Arc<AtomicBool>,
    /// The record as last saved, answered while a restore has the store closed.
    record: JobRecord,
}

impl JobRegistry {
    /// At shutdown: asks every running job to stop and waits for them (bounded).
    pub async fn stop_all(&self, grace: Duration) {
        self.stopping.store(true, Ordering::SeqCst);
        for running in self.running.lock().expect("jobs lock").values() {
            running.cancel.store(true, Ordering::SeqCst);
        }
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("jobs still running after the grace period");
        }
    }

    /// Runs a job's task; shutdown waits for it (bounded).
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// True once the service is shutting down (a job stopped now was interrupted, not
    /// canceled).
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The running job that uses the backup `name`, if any.
    pub fn using(&self, backup_name: &str) -> Option<u64> {
        let running = self.running.lock().expect("jobs lock");
        running
            .iter()
            .find(|(_, r)| {
                matches!(r.kind, JobKind::Backup | JobKind::Restore)
                    && r.record.params.get("name").map(String::as_str) == Some(backup_name)
            })
            .map(|(id, _)| *id)
    }

    /// A running job of `kind`, if any.
    pub fn running_of(&self, kind: JobKind) -> Option<u64> {
        let running = self.running.lock().expect("jobs lock");
        running
            .iter()
            .find(|(_, r)| r.kind == kind)
            .map(|(id, _)| *id)
    }

    /// The record of the running job `id`, as last saved.
    pub fn running_record(&self, id: u64) -> Option<JobRecord> {
        let running = self.running.lock().expect("jobs lock");
        running.get(&id).map(|r| r.record.clone())
    }

    /// Asks the running job `id` to stop; false when no such job runs here.
    pub fn request_cancel(&self, id: u64) -> bool {
        let running = self.running.lock().expect("jobs lock");
        match running.get(&id) {
            Some(job) => {
                job.cancel.store(true, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    fn exclusive_holder(&self) -> Option<(u64, JobKind)> {
        let running = self.running.lock().expect("jobs lock");
        running
            .iter()
            .find(|(_, r)| matches!(r.kind, JobKind::Backup | JobKind::Restore))
            .map(|(id, r)| (*id, r.kind))
    }
}

/// Why a job did not complete: a local step, or the object store.
#[derive(Debug)]
pub enum Failure {
    Store(StoreError),
    Remote(RemoteError),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Failure {
        Failure::Store(error)
    }
}

impl From<RemoteError> for Failure {
    fn from(error: RemoteError) -> Failure {
        match error {
            RemoteError::Local(error) => Failure::Store(error),
            other => Failure::Remote(other),
        }
    }
}

impl Failure {
    fn is_canceled(&self) -> bool {
        matches!(self, Failure::Store(StoreError::Canceled))
    }

    /// The error message and details (JSON: the wire code and status, and the object
    /// store's own status and code when it refused) of the failed job.
    fn describe(&self) -> (String, String) {
        let (wire, s3) = match self {
            Failure::Store(error) => (store_error_to_wire(error), None),
            Failure::Remote(error) => (remote_error_to_wire(error), error.s3_facts()),
        };
        let mut details = serde_json::json!({
            "code": wire.code.as_str(),
            "status": wire.code.status(),
        });
        if let Some((status, code)) = s3 {
            details["s3_status"] = status.into();
            if let Some(code) = code {
                details["s3_code"] = code.into();
            }
        }
        let message = match self {
            Failure::Store(error) => error.to_string(),
            Failure::Remote(error) => error.to_string(),
        };
        (message, details.to_string())
    }
}

/// The record of the job `id`: the store's, or while a restore has the store closed,
/// the running job's own.
pub fn find_job(shared: &Shared, id: u64) -> Result<JobRecord, WireError> {
    let store = match shared.store() {
        Ok(store) => store,
        Err(unavailable) => return shared.jobs.running_record(id).ok_or(unavailable),
    };
    store
        .snapshot()
        .and_then(|s| s.job(id))
        .map_err(store_error)?
        .ok_or_else(|| WireError::new(ErrorCode::NotFound, format!("no job {id}")))
}

/// A job's record and how it is kept up to date in the store.
pub struct JobHandle {
    shared: Arc<Shared>,
    pub record: JobRecord,
    last_saved: Instant,
}

impl JobHandle {
    pub async fn save(&mut self) {
        self.last_saved = Instant::now();
        {
            let mut running = self.shared.jobs.running.lock().expect("jobs lock");
            if let Some(running) = running.get_mut(&self.record.id) {
                running.record = self.record.clone();
            }
        }
        let Ok(store) = self.shared.store() else {
            return;
        };
        let saved = write(
            &store,
            Write::SaveJob {
                record: self.record.clone(),
            },
        )
        .await;
        if let Err(error) = saved {
            tracing::error!(job = self.record.id, %error, "cannot save the job record");
        }
    }

    pub async fn set_status(&mut self, status: JobStatus) {
        self.record.status = status;
        self.save().await;
    }

    /// Records progress; saves it at each new step, else at most every `PROGRESS_EVERY`.
    async fn progress(&mut self, progress: BackupProgress) {
        self.advance(progress.bytes_done, progress.bytes_total, progress.message)
            .await;
    }

    /// Records progress in the job's own unit (see `progress`).
    pub async fn advance(&mut self, current: u64, total: u64, message: String) {
        let new_step = message != self.record.progress_message;
        self.record.status = JobStatus::InProgress;
        self.record.progress_current = current;
        self.record.progress_total = total;
        self.record.progress_message = message;
        if new_step || self.last_saved.elapsed() >= PROGRESS_EVERY {
            self.save().await;
        }
    }

    /// Runs `work`, which reports progress on `updates`, keeping the record up to date.
    pub async fn forwarding<T>(
        &mut self,
        updates: &mut mpsc::UnboundedReceiver<BackupProgress>,
        work: impl Future<Output = T>,
    ) -> T {
        tokio::pin!(work);
        loop {
            tokio::select! {
                Some(update) = updates.recv() => self.progress(update).await,
                done = &mut work => {
                    while let Ok(update) = updates.try_recv() {
                        self.progress(update).await;
                    }
                    return done;
                }
            }
        }
    }

    /// Ends the job with `outcome`: COMPLETED with its result's location, CANCELED,
    /// or FAILED (interrupted when the service is shutting down).
    pub async fn finish(&mut self, outcome: Result<Option<String>, Failure>) {
        match outcome {
            Ok(location) => {
                self.record.result_location = location;
                self.record.progress_current = self.record.progress_total;
                self.record.finish(JobStatus::Completed, now_ms());
            }
            Err(failure) if failure.is_canceled() && self.shared.jobs.is_stopping() => {
                self.record.error_message =
                    Some("interrupted: the service was shut down".to_string());
                self.record.finish(JobStatus::Failed, now_ms());
            }
            Err(failure) if failure.is_canceled() => {
                self.record.finish(JobStatus::Canceled, now_ms())
            }
            Err(failure) => {
                let (message, details) = failure.describe();
                self.record.error_message = Some(message);
                self.record.error_details = Some(details);
                self.record.finish(JobStatus::Failed, now_ms());
            }
        }
        self.close().await;
    }

    /// Saves the final record (its status already set), forgets the running job, and
    /// emits `job_finished`.
    pub async fn close(&mut self) {
        // The status last saved, as callers saw it before this one.
        let before = self
            .shared
            .jobs
            .running
            .lock()
            .expect("jobs lock")
            .get(&self.record.id)
            .map(|r| r.record.status.as_str().to_string());
        tracing::warn!(
            job = self.record.id,
            kind = self.record.kind.as_str(),
            status = self.record.status.as_str(),
            error = self.record.error_message.as_deref().unwrap_or(""),
            "job finished"
        );
        self.save().await;
        self.shared
            .jobs
            .running
            .lock()
            .expect("jobs lock")
            .remove(&self.record.id);
        let record = &self.record;
        self.shared.webhooks.emit(WebhookEvent::job_finished(
            record.id,
            record.params.get("db").cloned(),
            before,
            record.status.as_str(),
            record.error_message.clone().unwrap_or_default(),
            record.started_by.clone(),
        ));
    }
}

/// Registers a new backup or restore job and returns its handle and cancel flag,
/// holding the exclusive slot for backups and restores.
pub async fn register_exclusive_job(
    shared: &Arc<Shared>,
    kind: JobKind,
    backup_name: &str,
    by: &str,
) -> Result<(JobHandle, Arc<AtomicBool>, OwnedMutexGuard<()>), WireError> {
    let Ok(slot) = shared.jobs.exclusive.clone().try_lock_owned() else {
        let (id, running) = shared
            .jobs
            .exclusive_holder()
            .map_or((0, "a job"), |(id, kind)| (id, kind.as_str()));
        return Err(conflict(format!(
            "{running} job {id} is running: wait for it or cancel it"
        ))
        .with_details(Value::Map(vec![(Value::from("job"), Value::from(id))])));
    };
    let (handle, cancel) = register_job(shared, kind, "name", backup_name, by).await?;
    Ok((handle, cancel, slot))
}

/// Stores a new job record with one parameter (`param` = `value`: a backup's name, a
/// database) and registers it as running; returns its handle and cancel flag.
pub async fn register_job(
    shared: &Arc<Shared>,
    kind: JobKind,
    param: &str,
    value: &str,
    by: &str,
) -> Result<(JobHandle, Arc<AtomicBool>), WireError> {
    let mut record = JobRecord::queued(kind, by, now_ms());
    record.params.insert(param.to_string(), value.to_string());
    let store = shared.store()?;
    let id = match write(
        &store,
        Write::CreateJob {
            record: record.clone(),
        },
    )
    .await?
    {
        Written::JobCreated(id) => id,
        other => return Err(internal(format!("{other:?}"))),
    };
    record.id = id;
    let cancel = Arc::new(AtomicBool::new(false));
    shared.jobs.running.lock().expect("jobs lock").insert(
        id,
        Running {
            kind,
            cancel: cancel.clone(),
            record: record.clone(),
        },
    );
    tracing::warn!(
        job = id,
        kind = kind.as_str(),
        param,
        value,
        by,
        "job started"
    );
    let handle = JobHandle {
        shared: shared.clone(),
        record,
        last_saved: Instant::now(),
    };
    Ok((handle, cancel))
}

/// Marks jobs left running by an earlier process as failed (at start).
pub async fn fail_interrupted(store: &Store) -> Result<u64, WireError> {
    match write(store, Write::FailInterruptedJobs { now_ms: now_ms() }).await? {
        Written::JobsFailed(n) => Ok(n),
        other => Err(internal(format!("{other:?}"))),
    }
}

/// A progress callback for a step that follows `offset` bytes of work done.
pub fn reporter(sender: mpsc::UnboundedSender<BackupProgress>, offset: u64) -> ProgressFn {
    Arc::new(move |update: &BackupProgress| {
        let _ = sender.send(BackupProgress {
            bytes_done: offset + update.bytes_done,
            bytes_total: offset + update.bytes_total,
            message: update.message.clone(),
        });
    })
}

/// A scratch directory of a job under `DIR/tmp` (emptied at every start).
pub fn scratch(shared: &Shared, what: &str, name: &str) -> PathBuf {
    shared
        .dir
        .join(crate::config::TMP_DIR)
        .join(format!("{what}-{name}"))
}

/// Removes a job's scratch directory, logging what cannot be removed.
pub async fn remove_scratch(path: PathBuf) {
    let removed = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err((path, e)),
        _ => Ok(()),
    })
    .await;
    if let Ok(Err((path, error))) = removed {
        tracing::warn!(path = %path.display(), %error, "cannot remove a scratch directory");
    }
}
