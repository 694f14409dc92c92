//! Jobs of the service: backups and restores run in the background, each with a stored
//! record (see `cairn_store::JobRecord`) that callers list, watch and cancel. One backup
//! or restore runs at a time; a second is refused with the running job's id. With
//! `[backup] url` set, backups live in object storage (see `cairn_remote`): a backup job
//! writes its verified copy into the scratch directory and uploads it, a restore job
//! downloads and unpacks one there, and the listing and deletion are the bucket's.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_proto::methods::{self, from_value, name, to_value};
use cairn_proto::{ErrorCode, WireError};
use cairn_remote::{Remote, RemoteBackup, RemoteError};
use cairn_store::backup::{self, BackupControl, BackupProgress, ProgressFn};
use cairn_store::{JobKind, JobRecord, JobStatus, Store, StoreError, Write, Written};
use rmpv::Value;
use tokio::sync::{mpsc, OwnedMutexGuard};
use tokio_util::task::TaskTracker;

use crate::auth::Need;
use crate::error::{remote_error_to_wire, store_error_to_wire};
use crate::handlers::{now_ms, write, Call};
use crate::shared::Shared;
use crate::webhooks::WebhookEvent;

/// Progress within a step is written to the job's record at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How long a restore waits for calls in flight to let go of the store.
const RESTORE_DRAIN: Duration = Duration::from_secs(30);

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
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// True once the service is shutting down (a job stopped now was interrupted, not
    /// canceled).
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The running job that uses the backup `name`, if any.
    fn using(&self, backup_name: &str) -> Option<u64> {
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
    pub(crate) fn running_of(&self, kind: JobKind) -> Option<u64> {
        let running = self.running.lock().expect("jobs lock");
        running
            .iter()
            .find(|(_, r)| r.kind == kind)
            .map(|(id, _)| *id)
    }

    fn exclusive_holder(&self) -> Option<(u64, JobKind)> {
        let running = self.running.lock().expect("jobs lock");
        running
            .iter()
            .find(|(_, r)| matches!(r.kind, JobKind::Backup | JobKind::Restore))
            .map(|(id, r)| (*id, r.kind))
    }
}

fn store_error(error: StoreError) -> WireError {
    store_error_to_wire(&error)
}

fn conflict(message: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::Conflict, message)
}

/// Why a job did not complete: a local step, or the object store.
#[derive(Debug)]
enum Failure {
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

/// A backup name: 1-128 of `A-Z a-z 0-9 . _ -`, not starting with `.` (never a path).
pub fn validate_backup_name(name: &str) -> Result<(), WireError> {
    cairn_remote::check_backup_name(name)
        .map_err(|reason| WireError::new(ErrorCode::InvalidName, reason))
}

/// The default backup name: the UTC time, `20261121T030000Z`.
pub fn timestamp_name(now_ms: u64) -> String {
    backup::utc_stamp(now_ms)
}

/// The wire form of a job.
pub fn job_to_wire(record: &JobRecord) -> methods::Job {
    methods::Job {
        id: record.id,
        kind: record.kind.as_str().to_string(),
        status: record.status.as_str().to_string(),
        progress: methods::JobProgress {
            current: record.progress_current,
            total: record.progress_total,
            message: record.progress_message.clone(),
        },
        error: record
            .error_message
            .as_ref()
            .map(|message| methods::JobError {
                message: message.clone(),
                details: record.error_details.clone(),
            }),
        location: record.result_location.clone(),
        started_by: record.started_by.clone(),
        started_on_ms: record.started_on_ms,
        finished_on_ms: record.finished_on_ms,
        total_time_ms: record.total_time_ms,
        params: record.params.clone(),
        stats: record.stats.clone(),
    }
}

/// True for the job and backup methods.
pub fn is_job_method(method: &str) -> bool {
    matches!(
        method,
        name::BACKUP_START
            | name::BACKUP_LIST
            | name::BACKUP_DELETE
            | name::RESTORE_START
            | name::JOBS_LIST
            | name::JOBS_SHOW
            | name::JOBS_CANCEL
    )
}

/// Serves a job or backup method (see `is_job_method`).
pub async fn serve(call: &Call, args: Value) -> Result<Value, WireError> {
    let method = call.method.as_str();
    call.need(Need::Admin)?;
    let shared = &call.shared;
    let user = call.identity.as_ref().map_or("-", |i| i.user.as_str());
    let value = match method {
        name::BACKUP_START => {
            let args: methods::BackupStartArgs = from_value(args)?;
            let name = args.name.unwrap_or_else(|| timestamp_name(now_ms()));
            let record = start_backup(shared, name, user, None).await?;
            to_value(&job_to_wire(&record))
        }
        name::BACKUP_LIST => to_value(&list_backups(shared).await?),
        name::BACKUP_DELETE => {
            let args: methods::BackupNameArgs = from_value(args)?;
            delete_backup(shared, &args.name).await?;
            tracing::warn!(backup = %args.name, by = %user, "backup deleted");
            Value::Nil
        }
        name::RESTORE_START => {
            let args: methods::BackupNameArgs = from_value(args)?;
            let record = start_restore(shared, args.name, user).await?;
            to_value(&job_to_wire(&record))
        }
        name::JOBS_LIST => {
            let args: methods::JobsListArgs = from_value(args)?;
            let kind = args
                .kind
                .map(|k| {
                    JobKind::parse(&k.to_uppercase())
                        .ok_or_else(|| bad_filter("type", &k, "BACKUP, RESTORE or RESYNC"))
                })
                .transpose()?;
            let status = args
                .status
                .map(|s| {
                    JobStatus::parse(&s.to_uppercase()).ok_or_else(|| {
                        bad_filter(
                            "status",
                            &s,
                            "QUEUED, STARTED, IN_PROGRESS, COMPLETED, FAILED or CANCELED",
                        )
                    })
                })
                .transpose()?;
            let jobs = shared
                .store()?
                .snapshot()
                .and_then(|s| s.jobs())
                .map_err(store_error)?;
            let list: Vec<methods::Job> = jobs
                .iter()
                .filter(|j| kind.is_none_or(|k| j.kind == k))
                .filter(|j| status.is_none_or(|s| j.status == s))
                .map(job_to_wire)
                .collect();
            to_value(&list)
        }
        name::JOBS_SHOW => {
            let args: methods::JobIdArgs = from_value(args)?;
            to_value(&job_to_wire(&find_job(shared, args.id)?))
        }
        name::JOBS_CANCEL => {
            let args: methods::JobIdArgs = from_value(args)?;
            let record = find_job(shared, args.id)?;
            let flag = {
                let running = shared.jobs.running.lock().expect("jobs lock");
                running.get(&args.id).map(|r| r.cancel.clone())
            };
            match flag {
                Some(flag) if !record.status.is_final() => {
                    flag.store(true, Ordering::SeqCst);
                    tracing::warn!(job = args.id, by = %user, "job cancel asked");
                }
                _ => {
                    return Err(conflict(format!(
                        "job {} is {}: only a running job can be canceled",
                        args.id,
                        record.status.as_str()
                    )))
                }
            }
            to_value(&job_to_wire(&record))
        }
        other => unreachable!("{other} is not a job method"),
    };
    Ok(value)
}

fn bad_filter(field: &str, value: &str, allowed: &str) -> WireError {
    WireError::new(
        ErrorCode::BadRequest,
        format!("{field} {value:?}: use {allowed}"),
    )
}

fn find_job(shared: &Shared, id: u64) -> Result<JobRecord, WireError> {
    let store = match shared.store() {
        Ok(store) => store,
        // A restore has the store closed: its own job is still known here.
        Err(unavailable) => {
            let running = shared.jobs.running.lock().expect("jobs lock");
            return running
                .get(&id)
                .map(|r| r.record.clone())
                .ok_or(unavailable);
        }
    };
    store
        .snapshot()
        .and_then(|s| s.job(id))
        .map_err(store_error)?
        .ok_or_else(|| WireError::new(ErrorCode::NotFound, format!("no job {id}")))
}

/// The complete backups, newest first: the backup directory's, or the bucket's.
pub async fn list_backups(shared: &Shared) -> Result<Vec<methods::BackupInfo>, WireError> {
    if let Some(remote) = &shared.remote {
        let backups = remote.list().await.map_err(|e| remote_error_to_wire(&e))?;
        return Ok(backups.into_iter().map(remote_backup_to_wire).collect());
    }
    let dir = shared.backup_dir.clone();
    tokio::task::spawn_blocking(move || list_local_backups(&dir))
        .await
        .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?
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
        .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?
        .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))
}

/// The wire form of a backup in the bucket.
fn remote_backup_to_wire(backup: RemoteBackup) -> methods::BackupInfo {
    methods::BackupInfo {
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

fn list_local_backups(dir: &Path) -> Result<Vec<methods::BackupInfo>, WireError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(WireError::new(ErrorCode::Internal, e.to_string())),
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
        list.push(methods::BackupInfo {
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

/// A job's record and how it is kept up to date in the store.
pub(crate) struct JobHandle {
    shared: Arc<Shared>,
    pub(crate) record: JobRecord,
    last_saved: Instant,
}

impl JobHandle {
    pub(crate) async fn save(&mut self) {
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

    pub(crate) async fn set_status(&mut self, status: JobStatus) {
        self.record.status = status;
        self.save().await;
    }

    /// Records progress; saves it at each new step, else at most every `PROGRESS_EVERY`.
    async fn progress(&mut self, progress: BackupProgress) {
        self.advance(progress.bytes_done, progress.bytes_total, progress.message)
            .await;
    }

    /// Records progress in the job's own unit (see `progress`).
    pub(crate) async fn advance(&mut self, current: u64, total: u64, message: String) {
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
    async fn forwarding<T>(
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

    async fn finish(&mut self, outcome: Result<Option<String>, Failure>) {
        match outcome {
            Ok(location) => {
                self.record.result_location = location;
                self.record.progress_current = self.record.progress_total;
                self.record.finish(JobStatus::Completed, now_ms());
            }
            Err(failure)
                if failure.is_canceled() && self.shared.jobs.stopping.load(Ordering::SeqCst) =>
            {
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
    pub(crate) async fn close(&mut self) {
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
async fn create_job(
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
pub(crate) async fn register_job(
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
        other => return Err(WireError::new(ErrorCode::Internal, format!("{other:?}"))),
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
    let (mut job, cancel, slot) = create_job(shared, JobKind::Backup, &name, by).await?;
    let record = job.record.clone();
    let shared = shared.clone();
    let tasks = shared.jobs.tasks.clone();
    tasks.spawn(async move {
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
            crate::schedule::prune(&shared, keep).await;
        }
        job.finish(outcome).await;
        drop(slot);
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
    let copy =
        tokio::task::spawn_blocking(move || backup::create_backup(&store, &dir, &target, &control));
    job.forwarding(&mut progress, copy)
        .await
        .map_err(|e| StoreError::io("the backup task", std::io::Error::other(e.to_string())))?
        .map(drop)
}

/// A progress callback for a step that follows `offset` bytes of work done.
fn reporter(sender: mpsc::UnboundedSender<BackupProgress>, offset: u64) -> ProgressFn {
    Arc::new(move |update: &BackupProgress| {
        let _ = sender.send(BackupProgress {
            bytes_done: offset + update.bytes_done,
            bytes_total: offset + update.bytes_total,
            message: update.message.clone(),
        });
    })
}

/// A scratch directory of this job under `DIR/tmp` (emptied at every start).
fn scratch(shared: &Shared, what: &str, name: &str) -> PathBuf {
    shared
        .dir
        .join(crate::TMP_DIR)
        .join(format!("{what}-{name}"))
}

async fn remove_scratch(path: PathBuf) {
    let removed = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err((path, e)),
        _ => Ok(()),
    })
    .await;
    if let Ok(Err((path, error))) = removed {
        tracing::warn!(path = %path.display(), %error, "cannot remove a scratch directory");
    }
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
    let (mut job, cancel, slot) = create_job(shared, JobKind::Restore, &name, by).await?;
    let record = job.record.clone();
    let shared = shared.clone();
    let tasks = shared.jobs.tasks.clone();
    tasks.spawn(async move {
        job.set_status(JobStatus::Started).await;
        let outcome = match &shared.remote {
            Some(remote) => run_remote_restore(&shared, remote, &mut job, &name, cancel).await,
            None => crate::restore::run(&shared, &mut job.record, &backup, cancel)
                .await
                .map(|()| Some(backup.display().to_string()))
                .map_err(Failure::from),
        };
        job.finish(outcome).await;
        drop(slot);
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
        crate::restore::run(shared, &mut job.record, &unpacked, cancel).await?;
        Ok::<_, Failure>(Some(remote.url(&cairn_remote::archive_object(name))))
    }
    .await;
    remove_scratch(local).await;
    outcome
}

/// Marks jobs left running by an earlier process as failed (at start).
pub async fn fail_interrupted(store: &Store) -> Result<u64, WireError> {
    match write(store, Write::FailInterruptedJobs { now_ms: now_ms() }).await? {
        Written::JobsFailed(n) => Ok(n),
        other => Err(WireError::new(ErrorCode::Internal, format!("{other:?}"))),
    }
}

/// How long a restore waits for the store to be let go.
pub fn restore_drain() -> Duration {
    RESTORE_DRAIN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_names_are_never_paths() {
        for good in ["20261121T030000Z", "nightly-1", "a.b_c"] {
            assert!(validate_backup_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "../x", "a/b", "a b", &"x".repeat(129)] {
            assert!(validate_backup_name(bad).is_err(), "{bad:?}");
        }
    }
}
