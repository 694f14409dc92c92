//! Jobs of the service: backups and restores run in the background, each with a stored
//! record (see `cairn_store::JobRecord`) that callers list, watch and cancel. One backup
//! or restore runs at a time; a second is refused with the running job's id.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_proto::methods::{self, from_value, name, to_value};
use cairn_proto::{ErrorCode, WireError};
use cairn_store::backup::{self, BackupControl, BackupProgress};
use cairn_store::{JobKind, JobRecord, JobStatus, Store, StoreError, StoreOptions, Write, Written};
use rmpv::Value;
use tokio::sync::{mpsc, OwnedMutexGuard};
use tokio_util::task::TaskTracker;

use crate::auth::Need;
use crate::error::store_error_to_wire;
use crate::handlers::{now_ms, write, Call};
use crate::shared::Shared;

/// Progress is written to the job's record at most this often.
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
    /// The backup it reads or writes.
    backup_name: String,
    cancel: Arc<AtomicBool>,
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

    /// The running job that uses the backup `name`, if any.
    fn using(&self, backup_name: &str) -> Option<u64> {
        let running = self.running.lock().expect("jobs lock");
        running
            .iter()
            .find(|(_, r)| r.backup_name == backup_name)
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

/// A backup name: 1-128 of `A-Z a-z 0-9 . _ -`, not starting with `.` (never a path).
pub fn validate_backup_name(name: &str) -> Result<(), WireError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(WireError::new(
            ErrorCode::InvalidName,
            format!("backup name {name:?}: use 1-128 of A-Z a-z 0-9 . _ -, not starting with ."),
        ))
    }
}

/// The default backup name: the UTC time, `20261121T030000Z`.
pub fn timestamp_name(now_ms: u64) -> String {
    let secs = now_ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
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
        name::BACKUP_LIST => to_value(&list_backups_blocking(shared).await?),
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
    shared
        .store()?
        .snapshot()
        .and_then(|s| s.job(id))
        .map_err(store_error)?
        .ok_or_else(|| WireError::new(ErrorCode::NotFound, format!("no job {id}")))
}

/// The complete backups of the backup directory, newest first.
pub async fn list_backups_blocking(shared: &Shared) -> Result<Vec<methods::BackupInfo>, WireError> {
    let dir = shared.backup_dir.clone();
    tokio::task::spawn_blocking(move || list_backups(&dir))
        .await
        .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?
}

/// Deletes the backup `name`, unless a running job uses it.
pub async fn delete_backup(shared: &Shared, name: &str) -> Result<(), WireError> {
    validate_backup_name(name)?;
    if let Some(job) = shared.jobs.using(name) {
        return Err(conflict(format!("job {job} uses backup {name:?}")));
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

fn list_backups(dir: &Path) -> Result<Vec<methods::BackupInfo>, WireError> {
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
struct JobHandle {
    shared: Arc<Shared>,
    record: JobRecord,
    last_saved: Instant,
}

impl JobHandle {
    async fn save(&mut self) {
        self.last_saved = Instant::now();
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

    async fn set_status(&mut self, status: JobStatus) {
        self.record.status = status;
        self.save().await;
    }

    async fn progress(&mut self, progress: BackupProgress) {
        self.record.status = JobStatus::InProgress;
        self.record.progress_current = progress.bytes_done;
        self.record.progress_total = progress.bytes_total;
        self.record.progress_message = progress.message;
        if self.last_saved.elapsed() >= PROGRESS_EVERY {
            self.save().await;
        }
    }

    async fn finish(&mut self, outcome: Result<Option<String>, StoreError>) {
        match outcome {
            Ok(location) => {
                self.record.result_location = location;
                self.record.progress_current = self.record.progress_total;
                self.record.finish(JobStatus::Completed, now_ms());
            }
            Err(StoreError::Canceled) if self.shared.jobs.stopping.load(Ordering::SeqCst) => {
                self.record.error_message =
                    Some("interrupted: the service was shut down".to_string());
                self.record.finish(JobStatus::Failed, now_ms());
            }
            Err(StoreError::Canceled) => self.record.finish(JobStatus::Canceled, now_ms()),
            Err(error) => {
                let wire = store_error_to_wire(&error);
                self.record.error_message = Some(error.to_string());
                self.record.error_details = Some(format!(
                    "{{\"code\":\"{}\",\"status\":{}}}",
                    wire.code.as_str(),
                    wire.code.status()
                ));
                self.record.finish(JobStatus::Failed, now_ms());
            }
        }
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
    }
}

/// Registers a new job and returns its handle and cancel flag, holding the exclusive
/// slot for backups and restores.
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
    let mut record = JobRecord::queued(kind, by, now_ms());
    record
        .params
        .insert("name".to_string(), backup_name.to_string());
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
            backup_name: backup_name.to_string(),
            cancel: cancel.clone(),
        },
    );
    tracing::warn!(
        job = id,
        kind = kind.as_str(),
        backup = backup_name,
        by,
        "job started"
    );
    let handle = JobHandle {
        shared: shared.clone(),
        record,
        last_saved: Instant::now(),
    };
    Ok((handle, cancel, slot))
}

/// Starts a backup job writing `BACKUP_DIR/name`. With `keep`, once the backup is
/// written the oldest scheduled backups beyond the newest `keep` are deleted, before the
/// job is marked COMPLETED.
pub async fn start_backup(
    shared: &Arc<Shared>,
    name: String,
    by: &str,
    keep: Option<usize>,
) -> Result<JobRecord, WireError> {
    validate_backup_name(&name)?;
    let destination = shared.backup_dir.join(&name);
    if destination.exists() {
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
        let outcome = run_backup(&shared, &mut job, destination, cancel).await;
        if let (Ok(_), Some(keep)) = (&outcome, keep) {
            crate::schedule::prune(&shared, keep).await;
        }
        job.finish(outcome).await;
        drop(slot);
    });
    Ok(record)
}

async fn run_backup(
    shared: &Arc<Shared>,
    job: &mut JobHandle,
    destination: PathBuf,
    cancel: Arc<AtomicBool>,
) -> Result<Option<String>, StoreError> {
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
    let target = destination.clone();
    let mut copy =
        tokio::task::spawn_blocking(move || backup::create_backup(&store, &dir, &target, &control));
    let outcome = loop {
        tokio::select! {
            Some(update) = progress.recv() => job.progress(update).await,
            finished = &mut copy => break finished,
        }
    };
    outcome
        .map_err(|e| StoreError::io("the backup task", std::io::Error::other(e.to_string())))?
        .map(|_| Some(destination.display().to_string()))
}

/// Starts a restore job from `BACKUP_DIR/name`.
pub async fn start_restore(
    shared: &Arc<Shared>,
    name: String,
    by: &str,
) -> Result<JobRecord, WireError> {
    validate_backup_name(&name).map_err(|_| {
        WireError::new(
            ErrorCode::BadRequest,
            "a service restores only from its own backup location: give a backup name",
        )
    })?;
    let backup = shared.backup_dir.join(&name);
    if !backup.join(backup::MANIFEST_FILE).exists() {
        return Err(WireError::new(
            ErrorCode::NotFound,
            format!("no backup {name:?} in {}", shared.backup_dir.display()),
        ));
    }
    let (mut job, cancel, slot) = create_job(shared, JobKind::Restore, &name, by).await?;
    let record = job.record.clone();
    let shared = shared.clone();
    let tasks = shared.jobs.tasks.clone();
    tasks.spawn(async move {
        job.set_status(JobStatus::Started).await;
        let outcome = crate::restore::run(&shared, &mut job.record, backup, cancel).await;
        job.finish(outcome).await;
        drop(slot);
    });
    Ok(record)
}

/// Marks jobs left running by an earlier process as failed (at start).
pub async fn fail_interrupted(store: &Store) -> Result<u64, WireError> {
    match write(store, Write::FailInterruptedJobs { now_ms: now_ms() }).await? {
        Written::JobsFailed(n) => Ok(n),
        other => Err(WireError::new(ErrorCode::Internal, format!("{other:?}"))),
    }
}

/// The store options a service opens its environment with.
pub fn store_options(shared: &Shared) -> StoreOptions {
    StoreOptions {
        map_size: shared.settings.map_size,
        max_value_bytes: shared.settings.max_value_bytes,
        ..StoreOptions::default()
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
    fn default_names_are_utc_timestamps() {
        assert_eq!(timestamp_name(0), "19700101T000000Z");
        // 2026-11-21 03:04:05 UTC
        assert_eq!(timestamp_name(1_795_230_245_000), "20261121T030405Z");
        assert_eq!(timestamp_name(951_782_400_000), "20000229T000000Z");
    }

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
