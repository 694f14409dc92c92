//! The database methods: create, drop, list, info, offline and online, configuration
//! (retention and secondary indexes) and resync.

use serde::{Deserialize, Serialize};

use crate::values::DbState;

/// Change-log retention of a database; absent fields keep everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RetentionArgs {
    #[serde(default)]
    pub max_changes: Option<u64>,
    #[serde(default)]
    pub max_age_secs: Option<u64>,
}

/// `db.create`: with `offline`, the database stays offline until `db.online`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbCreateArgs {
    pub name: String,
    #[serde(default)]
    pub retention: RetentionArgs,
    #[serde(default)]
    pub offline: bool,
}

/// `db.drop` and `db.info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbNameArgs {
    pub name: String,
}

/// A database's counters (`db.info`, `db.list`, `db.create`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbInfo {
    pub name: String,
    pub created_ms: u64,
    pub doc_count: u64,
    pub last_seq: u64,
    pub oldest_seq: u64,
    pub doc_bytes: u64,
    pub log_bytes: u64,
    pub retention: RetentionArgs,
    pub state: DbState,
}

/// `db.offline`; `reason` is logged and sent to webhooks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbOfflineArgs {
    pub name: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// `db.online`: `delay_secs` keeps the database `Starting` that long first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbOnlineArgs {
    pub name: String,
    #[serde(default)]
    pub delay_secs: Option<u64>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Result of `db.offline` and `db.online`: the state now, the state before, and whether
/// the call changed anything (asking for the state a database is in, or is moving to,
/// changes nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbStateResult {
    pub name: String,
    pub state: DbState,
    pub previous: DbState,
    pub changed: bool,
}

/// A secondary index of a database: `field` is a JSON pointer into the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDefArgs {
    pub name: String,
    pub field: String,
    #[serde(default)]
    pub unique: bool,
}

/// A database's configuration, as `db.config` shows it. `offline`, `state` and
/// `indexes_stale` are facts, not settings: `db.config.set` ignores them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbConfig {
    pub name: String,
    pub offline: bool,
    pub state: DbState,
    #[serde(default)]
    pub retention: RetentionArgs,
    #[serde(default)]
    pub indexes: Vec<IndexDefArgs>,
    #[serde(default)]
    pub indexes_stale: bool,
}

/// The settable part of a database's configuration (`db.config.set` replaces it whole:
/// what is absent takes its default).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DbConfigSettings {
    #[serde(default)]
    pub retention: RetentionArgs,
    #[serde(default)]
    pub indexes: Vec<IndexDefArgs>,
}

/// `db.config.set`: only while the database is offline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbConfigSetArgs {
    pub name: String,
    pub config: DbConfigSettings,
}
