//! The service's own methods: `status`, `status.set`, `usage` and `config.reload`: their
//! arguments and results.

use serde::{Deserialize, Serialize};

use crate::values::{ReasonCode, ServiceMode};

/// `status`: readable by anyone, before authentication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusResult {
    /// `READ_WRITE`, `READ_ONLY` or `DOWN`: the mode in force, the stricter of the
    /// admin's (`admin_status`) and `READ_ONLY` while any automatic reason holds.
    pub status: ServiceMode,
    #[serde(rename = "currentMessage")]
    pub current_message: String,
    #[serde(rename = "pendingMaintenanceMessage")]
    pub pending_maintenance_message: String,
    pub service_id: String,
    pub version: String,
    /// The mode an admin set (`status.set`), apart from the automatic reasons.
    pub admin_status: ServiceMode,
    /// Why the service is read-only by itself, if it is.
    #[serde(default)]
    pub reasons: Vec<StatusReason>,
    /// Migration mode: the source this service follows (`cairn-sync`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<super::MigrationMode>,
    /// On a mirror: its leader and how far behind it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<super::MirrorStatus>,
}

/// A reason the service turned itself read-only: `low_disk_space`, `disk_full` or
/// `map_full`, a message for people, and since when (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReason {
    pub code: ReasonCode,
    pub message: String,
    pub since_ms: u64,
}

/// `config.reload`'s result: the settings file read, the settings applied (`changed`)
/// and those that differ in the file but need a restart (`needs_restart`, not applied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigReloadResult {
    pub file: String,
    pub changed: Vec<SettingChange>,
    pub needs_restart: Vec<SettingChange>,
}

/// One setting of a reload: its name as in the file (`limits.max_connections`), the
/// value in force before and the file's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingChange {
    pub setting: String,
    pub old: String,
    pub new: String,
}

/// `status.set`: the new status and its messages (absent messages become empty).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusSetArgs {
    pub status: ServiceMode,
    #[serde(default, rename = "currentMessage")]
    pub current_message: Option<String>,
    #[serde(default, rename = "pendingMaintenanceMessage")]
    pub pending_maintenance_message: Option<String>,
}

/// A directory in `usage`'s result: what it takes on disk and the room of its file
/// system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirUsage {
    pub path: String,
    /// Bytes allocated on disk to everything under it.
    pub bytes: u64,
    /// Regular files under it.
    pub files: u64,
    /// Size of the file system that holds it.
    pub fs_total_bytes: u64,
    /// Room left on that file system for an unprivileged writer.
    pub fs_available_bytes: u64,
}

/// The LMDB environment in `usage`'s result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvUsage {
    /// Length of `store/data.mdb`.
    pub file_bytes: u64,
    pub map_size: u64,
    pub page_size: u64,
    /// Pages handed out so far (the last page in use, plus one).
    pub total_pages: u64,
    /// Pages that hold data: about the size of a compacted backup.
    pub used_pages: u64,
    /// Pages free for reuse, which a compacted backup leaves out.
    pub free_pages: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
}

/// A database in `usage`'s result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbUsage {
    pub name: String,
    pub doc_count: u64,
    pub doc_bytes: u64,
    pub log_bytes: u64,
    /// Changes its change log keeps.
    pub log_entries: u64,
}

/// `usage` (admin): how much room the service's data takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageResult {
    /// The working directory, everything in it counted.
    pub dir: DirUsage,
    /// The backup directory (by default inside the working directory).
    pub backups: DirUsage,
    pub env: EnvUsage,
    /// What the journal keeps for mirrors.
    #[serde(default)]
    pub journal: JournalUsage,
    pub databases: Vec<DbUsage>,
}

/// The journal in `usage`'s result: its oldest and newest entries' seqs (0 when empty)
/// and the bytes of the entries it keeps.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JournalUsage {
    pub first_seq: u64,
    pub last_seq: u64,
    pub bytes: u64,
}
