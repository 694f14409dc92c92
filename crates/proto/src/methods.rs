//! The methods of the protocol: their names and the shapes of their arguments and
//! results. Arguments travel as the `a` map of a call and results as the `v` of a
//! result, item or end; both are msgpack maps with the field names below (serde).
//! Document values are msgpack values embedded as they are.

use std::collections::BTreeMap;

use rmpv::Value;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::code::{ErrorCode, WireError};

/// Method names, as sent in a call's `m`.
pub mod name {
    pub const STATUS: &str = "status";
    pub const STATUS_SET: &str = "status.set";
    pub const LOGIN: &str = "login";
    pub const AUTH: &str = "auth";
    pub const LOGOUT: &str = "logout";
    pub const WHOAMI: &str = "whoami";
    pub const DB_CREATE: &str = "db.create";
    pub const DB_DROP: &str = "db.drop";
    pub const DB_LIST: &str = "db.list";
    pub const DB_INFO: &str = "db.info";
    pub const DB_OFFLINE: &str = "db.offline";
    pub const DB_ONLINE: &str = "db.online";
    pub const DB_CONFIG: &str = "db.config";
    pub const DB_CONFIG_SET: &str = "db.config.set";
    pub const DB_RESYNC: &str = "db.resync";
    pub const FIND: &str = "find";
    pub const GET: &str = "get";
    pub const PUT: &str = "put";
    pub const DELETE: &str = "delete";
    pub const SCAN: &str = "scan";
    pub const BATCH: &str = "batch";
    pub const CHANGES: &str = "changes";
    pub const USER_ADD: &str = "user.add";
    pub const USER_PASSWD: &str = "user.passwd";
    pub const USER_GRANT: &str = "user.grant";
    pub const USER_REVOKE: &str = "user.revoke";
    pub const USER_LIST: &str = "user.list";
    pub const USER_DELETE: &str = "user.delete";
    pub const BACKUP_START: &str = "backup.start";
    pub const BACKUP_LIST: &str = "backup.list";
    pub const BACKUP_DELETE: &str = "backup.delete";
    pub const RESTORE_START: &str = "restore.start";
    pub const JOBS_LIST: &str = "jobs.list";
    pub const JOBS_SHOW: &str = "jobs.show";
    pub const JOBS_CANCEL: &str = "jobs.cancel";
    pub const USAGE: &str = "usage";
    pub const CONFIG_RELOAD: &str = "config.reload";

    /// Every method, for tables and tests.
    pub const ALL: &[&str] = &[
        STATUS,
        LOGIN,
        AUTH,
        LOGOUT,
        WHOAMI,
        DB_CREATE,
        DB_DROP,
        DB_LIST,
        DB_INFO,
        DB_OFFLINE,
        DB_ONLINE,
        DB_CONFIG,
        DB_CONFIG_SET,
        DB_RESYNC,
        FIND,
        GET,
        PUT,
        DELETE,
        SCAN,
        BATCH,
        CHANGES,
        USER_ADD,
        USER_PASSWD,
        USER_GRANT,
        USER_REVOKE,
        USER_LIST,
        USER_DELETE,
        USAGE,
        CONFIG_RELOAD,
    ];
}

/// Decodes call arguments (nil counts as an empty map) or results into `T`.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, WireError> {
    let value = if value.is_nil() {
        Value::Map(Vec::new())
    } else {
        value
    };
    rmpv::ext::from_value(value)
        .map_err(|e| WireError::new(ErrorCode::BadRequest, format!("bad arguments: {e}")))
}

/// Encodes arguments or results, structs as maps with their field names.
pub fn to_value<T: Serialize>(value: &T) -> Value {
    let bytes = rmp_serde::to_vec_named(value).expect("protocol types always encode");
    rmpv::decode::read_value(&mut bytes.as_slice()).expect("rmp-serde writes valid msgpack")
}

/// `status`: readable by anyone, before authentication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusResult {
    /// `READ_WRITE`, `READ_ONLY` or `DOWN`: the mode in force, the stricter of the
    /// admin's (`admin_status`) and `READ_ONLY` while any automatic reason holds.
    pub status: String,
    #[serde(rename = "currentMessage")]
    pub current_message: String,
    #[serde(rename = "pendingMaintenanceMessage")]
    pub pending_maintenance_message: String,
    pub service_id: String,
    pub version: String,
    /// The mode an admin set (`status.set`), apart from the automatic reasons.
    #[serde(default)]
    pub admin_status: String,
    /// Why the service is read-only by itself, if it is.
    #[serde(default)]
    pub reasons: Vec<StatusReason>,
}

/// A reason the service turned itself read-only: `low_disk_space`, `disk_full` or
/// `map_full`, a message for people, and since when (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReason {
    pub code: String,
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
    /// `READ_WRITE`, `READ_ONLY` or `DOWN`.
    pub status: String,
    #[serde(default, rename = "currentMessage")]
    pub current_message: Option<String>,
    #[serde(default, rename = "pendingMaintenanceMessage")]
    pub pending_maintenance_message: Option<String>,
}

/// `login`: user and password; the connection is authenticated as the user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginArgs {
    pub user: String,
    pub password: String,
}

/// `login`'s result: a session token for later connections (`auth`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginResult {
    pub user: String,
    pub token: String,
    pub expires_ms: u64,
}

/// `auth`: authenticates the connection with a session token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthArgs {
    pub token: String,
}

/// `logout`: revokes `token`, or the token the connection authenticated with.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LogoutArgs {
    #[serde(default)]
    pub token: Option<String>,
}

/// `whoami` (and `auth`'s result): who the connection is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WhoAmI {
    pub user: String,
    pub admin: bool,
    /// `password`, `token`, `certificate` or `socket`.
    pub via: String,
}

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
    /// `Online`, `Offline`, `Starting`, `Stopping` or `Resyncing`.
    #[serde(default)]
    pub state: String,
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
    pub state: String,
    pub previous: String,
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
    pub state: String,
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

/// `find`: documents by a secondary index, an exact `value` or a range `start`/`end`
/// (values: strings, numbers, booleans), in (value, key) order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FindArgs {
    pub db: String,
    pub index: String,
    #[serde(default)]
    pub value: Option<Value>,
    #[serde(default)]
    pub start: Option<Value>,
    #[serde(default)]
    pub start_exclusive: bool,
    #[serde(default)]
    pub end: Option<Value>,
    #[serde(default)]
    pub end_inclusive: bool,
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub reverse: bool,
    /// Resume after this entry (the `index_value` and `key` of the last one of a page).
    #[serde(default)]
    pub after: Option<FindCursor>,
}

/// Where a `find` page ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindCursor {
    pub value: Value,
    pub key: String,
}

/// One document found through an index, with the value it was found by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoundDoc {
    pub key: String,
    pub rev: u64,
    pub value: Value,
    pub index_value: Value,
}

/// `find`'s result: a page, with `more` when the range goes on after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindResult {
    pub docs: Vec<FoundDoc>,
    pub more: bool,
}

/// `get`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetArgs {
    pub db: String,
    pub key: Value,
}

/// A document: `get`'s result and the entries of `scan`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Doc {
    pub key: String,
    pub rev: u64,
    pub value: Value,
}

/// `put`: `rev` makes it conditional (0: the key must not exist).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutArgs {
    pub db: String,
    pub key: Value,
    pub value: Value,
    #[serde(default)]
    pub rev: Option<u64>,
}

/// `delete`: `rev` makes it conditional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteArgs {
    pub db: String,
    pub key: Value,
    #[serde(default)]
    pub rev: Option<u64>,
}

/// Result of `put` and `delete`: the new rev (a delete's is its tombstone's seq).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevResult {
    pub rev: u64,
}

/// `scan`: `prefix`, or `start`/`end` bounds; `after` resumes after a key.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ScanArgs {
    pub db: String,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub start_exclusive: bool,
    #[serde(default)]
    pub end: Option<String>,
    #[serde(default)]
    pub end_inclusive: bool,
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub reverse: bool,
    #[serde(default)]
    pub after: Option<String>,
}

/// `scan`'s result: a page, with `more` when the range goes on after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanResult {
    pub docs: Vec<Doc>,
    pub more: bool,
}

/// One operation of `batch`: `op` is `put` or `del`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchOp {
    pub op: String,
    pub key: Value,
    #[serde(default)]
    pub value: Option<Value>,
    #[serde(default)]
    pub rev: Option<u64>,
}

/// `batch`: operations on one database, applied all or nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchArgs {
    pub db: String,
    pub ops: Vec<BatchOp>,
}

/// `batch`'s result: the new rev of each operation, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResult {
    pub revs: Vec<u64>,
}

/// `changes`: `feed` is `normal` (default), `longpoll` or `continuous`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChangesArgs {
    pub db: String,
    #[serde(default)]
    pub since: u64,
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub feed: Option<String>,
    /// Longpoll: how long to wait for a change. Continuous: none (until canceled).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Continuous: the interval of heartbeat items.
    #[serde(default)]
    pub heartbeat_ms: Option<u64>,
    /// The epoch the cursor `since` was taken in (from an earlier result); a restore
    /// draws a new one, and a cursor of another epoch is refused with `resync_required`.
    #[serde(default)]
    pub epoch: Option<u64>,
}

/// One change of a change log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEntry {
    pub seq: u64,
    /// `put` or `del`.
    pub op: String,
    pub key: String,
    #[serde(default)]
    pub value: Option<Value>,
    pub time_ms: u64,
}

/// `changes` result for `normal` and `longpoll` feeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangesResult {
    pub changes: Vec<ChangeEntry>,
    /// The seq to pass as `since` next time.
    pub last_seq: u64,
    /// The epoch to pass with it.
    #[serde(default)]
    pub epoch: u64,
    /// Set when a longpoll ended without changes because the feed cannot go on (the
    /// database went offline): the same reasons as a continuous feed's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
}

/// An item of a `continuous` feed: a change, or a heartbeat carrying the database's
/// current last seq.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeedItem {
    Change(ChangeEntry),
    Heartbeat { last_seq: u64 },
}

/// The `end` of a continuous feed: why it ended and the last seq sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedEnd {
    /// A stable snake_case reason: `canceled`, `database_dropped`, `database_offline`,
    /// `shutting_down` or `restore`.
    pub reason: String,
    pub last_seq: u64,
}

/// `user.add`: without a password the user can only use a client certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserAddArgs {
    pub name: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub admin: bool,
}

/// `user.passwd`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserPasswdArgs {
    pub name: String,
    pub password: String,
}

/// `user.grant`: `access` is `read` or `write` (write includes read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserGrantArgs {
    pub name: String,
    pub db: String,
    pub access: String,
}

/// `user.revoke`: removes the user's grant on a database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRevokeArgs {
    pub name: String,
    pub db: String,
}

/// `user.delete`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserNameArgs {
    pub name: String,
}

/// An entry of `user.list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserInfo {
    pub name: String,
    pub admin: bool,
    pub has_password: bool,
    pub grants: BTreeMap<String, String>,
    pub created_ms: u64,
}

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

/// `jobs.list`: filters by `type` and `status` (upper case, as in `Job`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct JobsListArgs {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
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
    /// `BACKUP`, `RESTORE` or `RESYNC`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `QUEUED`, `STARTED`, `IN_PROGRESS`, `COMPLETED`, `FAILED` or `CANCELED`.
    pub status: String,
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
    pub databases: Vec<DbUsage>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_round_trip_and_defaults_apply() {
        let put = PutArgs {
            db: "users".into(),
            key: Value::from("alice"),
            value: Value::Map(vec![(Value::from("age"), Value::from(31))]),
            rev: Some(4),
        };
        let encoded = to_value(&put);
        assert!(encoded.is_map(), "structs travel as maps: {encoded}");
        assert_eq!(from_value::<PutArgs>(encoded).unwrap(), put);
        let minimal = Value::Map(vec![(Value::from("db"), Value::from("d"))]);
        let changes: ChangesArgs = from_value(minimal).unwrap();
        assert_eq!(
            (changes.since, changes.feed, changes.limit),
            (0, None, None)
        );
        assert_eq!(
            from_value::<LogoutArgs>(Value::Nil).unwrap(),
            LogoutArgs::default()
        );
    }

    #[test]
    fn missing_or_mistyped_arguments_are_bad_requests() {
        let err = from_value::<GetArgs>(Value::Map(vec![])).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        let mistyped = Value::Map(vec![
            (Value::from("db"), Value::from(7)),
            (Value::from("key"), Value::from("k")),
        ]);
        assert_eq!(
            from_value::<GetArgs>(mistyped).unwrap_err().code,
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn feed_items_are_tagged() {
        let item = FeedItem::Heartbeat { last_seq: 9 };
        let value = to_value(&item);
        let Value::Map(fields) = &value else {
            panic!("a map")
        };
        assert!(fields
            .iter()
            .any(|(k, v)| k.as_str() == Some("type") && v.as_str() == Some("heartbeat")));
        assert_eq!(from_value::<FeedItem>(value).unwrap(), item);
    }

    #[test]
    fn protocol_md_documents_every_method() {
        let doc = include_str!("../PROTOCOL.md");
        for method in name::ALL {
            assert!(
                doc.contains(&format!("### `{method}`")),
                "PROTOCOL.md lacks a section for {method}"
            );
        }
    }
}
