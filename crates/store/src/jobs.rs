//! Jobs: long work the service runs in the background (backups, restores, resyncs), each
//! with a stored record that survives restarts: kind, status, progress, error, result
//! location, who started it and when. Records are msgpack maps with named fields, so a
//! later format can add fields that older readers ignore.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::format::table;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobKind {
    Backup,
    Restore,
    Resync,
}

/// Where a job is in its life. `Completed`, `Failed` and `Canceled` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Queued,
    Started,
    InProgress,
    Completed,
    Failed,
    Canceled,
}

impl JobStatus {
    /// True once the job can no longer change.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Canceled
        )
    }
}

macro_rules! names {
    ($type:ident { $($variant:ident = $name:literal),+ $(,)? }) => {
        impl $type {
            /// The upper-case name used on the wire and in records.
            pub fn as_str(self) -> &'static str {
                match self { $($type::$variant => $name,)+ }
            }

            /// The value named `name` (upper case, as `as_str` gives).
            pub fn parse(name: &str) -> Option<$type> {
                match name { $($name => Some($type::$variant),)+ _ => None }
            }
        }
    };
}

names!(JobKind { Backup = "BACKUP", Restore = "RESTORE", Resync = "RESYNC" });
names!(JobStatus {
    Queued = "QUEUED",
    Started = "STARTED",
    InProgress = "IN_PROGRESS",
    Completed = "COMPLETED",
    Failed = "FAILED",
    Canceled = "CANCELED",
});

/// The stored record of a job (value of the `jobs` table, keyed by its id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Given by the store when the job is created.
    pub id: u64,
    pub kind: JobKind,
    pub status: JobStatus,
    pub progress_current: u64,
    pub progress_total: u64,
    pub progress_message: String,
    pub error_message: Option<String>,
    /// Machine-readable facts about the error, as JSON text.
    pub error_details: Option<String>,
    /// Where the result is (a backup's directory or URL).
    pub result_location: Option<String>,
    pub started_by: String,
    pub started_on_ms: u64,
    pub finished_on_ms: Option<u64>,
    pub total_time_ms: Option<u64>,
    /// What the job was asked to do (a backup's name, a database).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Counts the job keeps (a resync's `processed`, `changed`, `errored`).
    #[serde(default)]
    pub stats: BTreeMap<String, u64>,
}

impl JobRecord {
    /// A new queued job.
    pub fn queued(kind: JobKind, started_by: &str, now_ms: u64) -> JobRecord {
        JobRecord {
            id: 0,
            kind,
            status: JobStatus::Queued,
            progress_current: 0,
            progress_total: 0,
            progress_message: String::new(),
            error_message: None,
            error_details: None,
            result_location: None,
            started_by: started_by.to_string(),
            started_on_ms: now_ms,
            finished_on_ms: None,
            total_time_ms: None,
            params: BTreeMap::new(),
            stats: BTreeMap::new(),
        }
    }

    /// Ends the job with `status` at `now_ms`.
    pub fn finish(&mut self, status: JobStatus, now_ms: u64) {
        self.status = status;
        self.finished_on_ms = Some(now_ms);
        self.total_time_ms = Some(now_ms.saturating_sub(self.started_on_ms));
    }

    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("a job record always encodes")
    }

    pub fn decode(bytes: &[u8]) -> Result<JobRecord> {
        rmp_serde::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            table: table::JOBS,
            reason: format!("job record: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_records_round_trip_with_upper_case_names() {
        let mut job = JobRecord::queued(JobKind::Backup, "root", 1000);
        job.id = 7;
        job.params.insert("name".to_string(), "nightly".to_string());
        job.stats.insert("processed".to_string(), 12);
        job.finish(JobStatus::Completed, 1500);
        let bytes = job.encode();
        assert_eq!(JobRecord::decode(&bytes).unwrap(), job);
        assert_eq!(job.total_time_ms, Some(500));
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains("BACKUP") && text.contains("COMPLETED"),
            "{text}"
        );
        assert!(JobRecord::decode(&bytes[..bytes.len() / 2]).is_err());
        assert_eq!(JobStatus::parse("IN_PROGRESS"), Some(JobStatus::InProgress));
        assert_eq!(JobKind::parse("backup"), None);
        assert!(JobStatus::Canceled.is_final() && !JobStatus::Started.is_final());
    }

    #[test]
    fn records_written_before_stats_existed_read_with_none() {
        let older = serde_json::json!({
            "id": 3, "kind": "RESYNC", "status": "COMPLETED", "progress_current": 5,
            "progress_total": 5, "progress_message": "", "error_message": null,
            "error_details": null, "result_location": null, "started_by": "root",
            "started_on_ms": 1, "finished_on_ms": 2, "total_time_ms": 1,
        });
        let job = JobRecord::decode(&rmp_serde::to_vec_named(&older).unwrap()).unwrap();
        assert_eq!((job.id, job.kind), (3, JobKind::Resync));
        assert!(job.stats.is_empty() && job.params.is_empty());
    }
}
