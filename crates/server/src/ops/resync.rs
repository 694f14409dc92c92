//! Resync jobs: while a database is offline, rebuild its secondary indexes and check
//! every document, a chunk of documents per write transaction, counting the documents
//! processed, changed (their index entries had to be written) and errored (a value no
//! index can hold, a duplicate in a unique index, a document that fails its checks).
//! The database is `Resyncing` while the job runs, and cannot be brought online. A job
//! with errors ends FAILED, naming the first documents, and leaves the indexes stale.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cairn_proto::{ErrorCode, WireError};
use cairn_store::{JobKind, JobRecord, JobStatus, ResyncChunk, Store, Write, Written};

use crate::ops::jobs::{register_job, JobHandle};
use crate::ops::lifecycle;
use crate::ops::shared::Shared;
use crate::storage::{now_ms, write};

/// Documents per write transaction.
const CHUNK_DOCS: usize = 1000;
/// Index entries per write transaction of the last steps.
const SWEEP_ENTRIES: usize = 10_000;
/// Errors named in a failed job's details.
const ERRORS_SHOWN: usize = 20;

/// What a resync found so far.
#[derive(Default)]
struct Tally {
    processed: u64,
    changed: u64,
    errored: u64,
    removed: u64,
    errors: Vec<(String, String)>,
}

impl Tally {
    fn add(&mut self, chunk: ResyncChunk) {
        self.processed += chunk.processed;
        self.changed += chunk.changed;
        self.errored += chunk.errors.len() as u64;
        let room = ERRORS_SHOWN.saturating_sub(self.errors.len());
        self.errors.extend(chunk.errors.into_iter().take(room));
    }

    fn stats(&self) -> BTreeMap<String, u64> {
        BTreeMap::from([
            ("processed".to_string(), self.processed),
            ("changed".to_string(), self.changed),
            ("errored".to_string(), self.errored),
            ("removed".to_string(), self.removed),
        ])
    }
}

/// `db.resync`: starts a resync job of `db`, which must be `Offline` (409 otherwise).
pub async fn start(shared: &Arc<Shared>, db: &str, by: &str) -> Result<JobRecord, WireError> {
    if let Some(restore) = shared.jobs.running_of(JobKind::Restore) {
        return Err(WireError::new(
            ErrorCode::Conflict,
            format!("restore job {restore} is running: resync once it has ended"),
        ));
    }
    let store = shared.store()?;
    let total = store
        .database_info(db)
        .map_err(|e| crate::error::store_error_to_wire(&e))?
        .doc_count;
    let mut guard = lifecycle::begin_resync(shared, db, by).await?;
    let (mut job, cancel) = register_job(shared, JobKind::Resync, "db", db, by).await?;
    guard.attach(job.record.id);
    let record = job.record.clone();
    let (shared, db) = (shared.clone(), db.to_string());
    let tasks = shared.clone();
    tasks.jobs.spawn(async move {
        job.set_status(JobStatus::Started).await;
        let outcome = run(&store, &mut job, &db, total, &cancel).await;
        finish(&shared, &mut job, outcome).await;
        drop(guard);
    });
    Ok(record)
}

/// Why a resync stopped early.
enum Stop {
    Canceled,
    Failed(WireError),
}

async fn run(
    store: &Store,
    job: &mut JobHandle,
    db: &str,
    total: u64,
    cancel: &AtomicBool,
) -> Result<Tally, (Tally, Stop)> {
    let mut tally = Tally::default();
    let mut after: Option<String> = None;
    loop {
        if cancel.load(Ordering::SeqCst) {
            return Err((tally, Stop::Canceled));
        }
        let written = write(
            store,
            Write::ResyncChunk {
                name: db.to_string(),
                after: after.clone(),
                limit: CHUNK_DOCS,
            },
        )
        .await;
        let chunk = match written {
            Ok(Written::ResyncChunk(chunk)) => Ok(chunk),
            Ok(other) => Err(WireError::new(
                ErrorCode::Internal,
                format!("a resync chunk answered {other:?}"),
            )),
            Err(error) => Err(error),
        };
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) => return Err((tally, Stop::Failed(error))),
        };
        let last_key = chunk.last_key.clone();
        tally.add(chunk);
        job.advance(
            tally.processed,
            total.max(tally.processed),
            format!(
                "checking documents: {} changed, {} errored",
                tally.changed, tally.errored
            ),
        )
        .await;
        match last_key {
            Some(key) => after = Some(key),
            None => break,
        }
    }
    // Then the index entries no document backs, a step at a time, so that the writer
    // serves the other databases in between.
    let mut after = None;
    loop {
        if cancel.load(Ordering::SeqCst) {
            return Err((tally, Stop::Canceled));
        }
        let step = write(
            store,
            Write::ResyncFinish {
                name: db.to_string(),
                errored: tally.errored,
                after: after.take(),
                limit: SWEEP_ENTRIES,
            },
        )
        .await;
        match step {
            Ok(Written::ResyncFinished { removed, next }) => {
                tally.removed += removed;
                job.advance(
                    tally.processed,
                    total.max(tally.processed),
                    format!("removing stale index entries: {} removed", tally.removed),
                )
                .await;
                match next {
                    Some(entry) => after = Some(entry),
                    None => return Ok(tally),
                }
            }
            Ok(other) => {
                let error = WireError::new(
                    ErrorCode::Internal,
                    format!("a resync step answered {other:?}"),
                );
                return Err((tally, Stop::Failed(error)));
            }
            Err(error) => return Err((tally, Stop::Failed(error))),
        }
    }
}

/// Ends the job: COMPLETED without errors; FAILED naming the first errors otherwise;
/// CANCELED (or FAILED as interrupted at shutdown) when stopped.
async fn finish(shared: &Shared, job: &mut JobHandle, outcome: Result<Tally, (Tally, Stop)>) {
    let (tally, stop) = match outcome {
        Ok(tally) => (tally, None),
        Err((tally, stop)) => (tally, Some(stop)),
    };
    job.record.stats = tally.stats();
    job.record.progress_message = format!(
        "{} documents processed, {} changed, {} errored, {} stale index entries removed",
        tally.processed, tally.changed, tally.errored, tally.removed
    );
    let details = serde_json::json!({
        "processed": tally.processed,
        "changed": tally.changed,
        "errored": tally.errored,
        "errors": tally
            .errors
            .iter()
            .map(|(key, reason)| serde_json::json!({"key": key, "reason": reason}))
            .collect::<Vec<_>>(),
    });
    let status = match stop {
        None if tally.errored == 0 => JobStatus::Completed,
        None => {
            let (key, reason) = tally.errors.first().cloned().unwrap_or_default();
            job.record.error_message = Some(format!(
                "{} of {} documents failed their checks or could not be indexed (first: {key:?}: {reason}); the indexes stay stale: fix the documents and resync again",
                tally.errored, tally.processed
            ));
            job.record.error_details = Some(details.to_string());
            JobStatus::Failed
        }
        Some(Stop::Canceled) if shared.jobs.is_stopping() => {
            job.record.error_message = Some("interrupted: the service was shut down".to_string());
            JobStatus::Failed
        }
        Some(Stop::Canceled) => JobStatus::Canceled,
        Some(Stop::Failed(error)) => {
            job.record.error_message = Some(error.message.clone());
            job.record.error_details = Some(
                serde_json::json!({
                    "code": error.code.as_str(),
                    "status": error.code.status(),
                    "processed": tally.processed,
                })
                .to_string(),
            );
            JobStatus::Failed
        }
    };
    if status == JobStatus::Completed {
        job.record.progress_current = tally.processed;
    }
    job.record.finish(status, now_ms());
    job.close().await;
}
