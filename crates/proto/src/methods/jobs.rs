//! The background jobs and backups: start a backup or a restore, list and delete
//! backups, list, show and cancel jobs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::values::{JobKind, JobStatus};

/// `backup.start`: `name` defaults to the UTC time (`20261121T030000Z`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BackupStartArgs {
    #[serde(default)]
    pub name: Option<String>,
}

/// `backup.delete` and `restore.start`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupNameArgs {
    pub name: String,
}

/// An entry of `backup.list`: what the backup's manifest says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupInfo {
    pub name: String,
    pub location: String,
    pub created_ms: u64,
    pub service_id: String,
    pub format_version: u32,
    pub bytes: u64,
    pub files: u64,
    pub databases: u64,
}

/// `jobs.list`: filters by `type` and `status` (in any case).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct JobsListArgs {
    #[serde(
        default,
        rename = "type",
        deserialize_with = "crate::values::ignore_case"
    )]
    pub kind: Option<JobKind>,
    #[serde(default, deserialize_with = "crate::values::ignore_case")]
    pub status: Option<JobStatus>,
}

/// `jobs.show` and `jobs.cancel`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobIdArgs {
    pub id: u64,
}

/// A job's progress.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct JobProgress {
    pub current: u64,
    pub total: u64,
    pub message: String,
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobError {
    pub message: String,
    /// Machine-readable facts, as JSON text.
    #[serde(default)]
    pub details: Option<String>,
}

/// A background job (backup, restore, resync).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: u64,
    #[serde(rename = "type")]
    pub kind: JobKind,
    pub status: JobStatus,
    pub progress: JobProgress,
    #[serde(default)]
    pub error: Option<JobError>,
    #[serde(default)]
    pub location: Option<String>,
    pub started_by: String,
    pub started_on_ms: u64,
    #[serde(default)]
    pub finished_on_ms: Option<u64>,
    #[serde(default)]
    pub total_time_ms: Option<u64>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Counts the job keeps (a resync: `processed`, `changed`, `errored`, `removed`).
    #[serde(default)]
    pub stats: BTreeMap<String, u64>,
}
