//! The methods of the protocol: one table (below) gives each method its name, argument
//! and result types, kind and permission; the connection, the permission check, the
//! typed client and the PROTOCOL.md test all read it. Arguments travel as the `a` map of
//! a call and results as the `v` of a result, item or end; both are msgpack maps with
//! the field names of the types in this module's files, one file per family of methods.
//! Document values are msgpack values embedded as they are.

mod changes;
mod data;
mod db;
mod jobs;
mod mirror;
mod session;
mod status;
mod sync;
mod table;
mod users;

use rmpv::Value;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::code::{ErrorCode, WireError};
use table::method_table;

pub use changes::{ChangeEntry, ChangesArgs, ChangesResult, FeedEnd, FeedItem, FeedItems};
pub use data::{
    BatchArgs, BatchOp, BatchResult, DeleteArgs, Doc, FindArgs, FindCursor, FindResult, FoundDoc,
    GetArgs, PutArgs, RevResult, ScanArgs, ScanResult,
};
pub use db::{
    DbConfig, DbConfigSetArgs, DbConfigSettings, DbCreateArgs, DbInfo, DbNameArgs, DbOfflineArgs,
    DbOnlineArgs, DbStateResult, IndexDefArgs, RetentionArgs,
};
pub use jobs::{
    BackupInfo, BackupNameArgs, BackupStartArgs, Job, JobError, JobIdArgs, JobProgress,
    JobsListArgs,
};
pub use mirror::{
    BootstrapChunk, BootstrapEnd, MirrorEnd, MirrorEntry, MirrorFollowArgs, MirrorForwardArgs,
    MirrorForwardResult, MirrorHandoffArgs, MirrorHandoffResult, MirrorItem, MirrorPromoteArgs,
    MirrorPromoteResult, MirrorStatus,
};
pub use session::{AuthArgs, LoginArgs, LoginResult, LogoutArgs, WhoAmI};
pub use status::{
    ConfigReloadResult, DbUsage, DirUsage, EnvUsage, JournalUsage, SettingChange, StatusReason,
    StatusResult, StatusSetArgs, UsageResult,
};
pub use sync::{
    MigrationMode, SyncApplyArgs, SyncApplyResult, SyncAttachArgs, SyncCreateArgs, SyncDatabase,
    SyncDetachArgs, SyncError, SyncReportArgs, SyncStartPosition, SyncStatusResult,
};
pub use users::{
    UserAddArgs, UserGrantArgs, UserInfo, UserNameArgs, UserPasswdArgs, UserRevokeArgs,
};

method_table! {
    // Session: change or read who the connection is.
    /// Logs in with a user and password.
    Login = ("login", LoginArgs => LoginResult, Session, Changes, Anyone),
    /// Authenticates with a session token.
    Auth = ("auth", AuthArgs => WhoAmI, Session, Reads, Anyone),
    /// Revokes a session token.
    Logout = ("logout", LogoutArgs => (), Session, Changes, User),
    /// Who the connection is.
    WhoAmI = ("whoami", NoArgs => WhoAmI, Session, Reads, User),
    // The service.
    /// The service's mode and messages.
    Status = ("status", NoArgs => StatusResult, Inline, Reads, Anyone),
    /// Sets the service's mode and messages.
    StatusSet = ("status.set", StatusSetArgs => StatusResult, Plain, Changes, Admin),
    /// How much room the data takes.
    Usage = ("usage", NoArgs => UsageResult, Plain, Reads, Admin),
    /// Reads the settings file again.
    ConfigReload = ("config.reload", NoArgs => ConfigReloadResult, Plain, Local, Admin),
    // Databases.
    /// Creates a database.
    DbCreate = ("db.create", DbCreateArgs => DbInfo, Plain, Changes, Admin),
    /// Drops a database.
    DbDrop = ("db.drop", DbNameArgs => (), Plain, Changes, Admin),
    /// The databases the caller may read.
    DbList = ("db.list", NoArgs => Vec<DbInfo>, Plain, Reads, User),
    /// A database's counters.
    DbInfo = ("db.info", DbNameArgs => DbInfo, Plain, Reads, Read(name)),
    /// Takes a database offline.
    DbOffline = ("db.offline", DbOfflineArgs => DbStateResult, Plain, Changes, Admin),
    /// Brings a database online.
    DbOnline = ("db.online", DbOnlineArgs => DbStateResult, Plain, Changes, Admin),
    /// A database's configuration.
    DbConfig = ("db.config", DbNameArgs => DbConfig, Plain, Reads, Read(name)),
    /// Replaces an offline database's configuration.
    DbConfigSet = ("db.config.set", DbConfigSetArgs => DbConfig, Plain, Changes, Admin),
    /// Starts a resync job on an offline database.
    DbResync = ("db.resync", DbNameArgs => Job, Plain, Changes, Admin),
    // Documents.
    /// Reads a document.
    Get = ("get", GetArgs => Doc, Inline, Reads, Read(db)),
    /// Writes a document.
    Put = ("put", PutArgs => RevResult, Write, Changes, Write(db)),
    /// Deletes a document.
    Delete = ("delete", DeleteArgs => RevResult, Write, Changes, Write(db)),
    /// Writes and deletes documents, all or nothing.
    Batch = ("batch", BatchArgs => BatchResult, Write, Changes, Write(db)),
    /// A page of documents in key order.
    Scan = ("scan", ScanArgs => ScanResult, Plain, Reads, Read(db)),
    /// A page of documents through a secondary index.
    Find = ("find", FindArgs => FindResult, Plain, Reads, Read(db)),
    /// A database's changes: a page, a longpoll, or a continuous stream.
    Changes = ("changes", ChangesArgs => ChangesResult, Stream, Reads, Read(db)),
    // Users.
    /// Adds a user.
    UserAdd = ("user.add", UserAddArgs => (), Plain, Changes, Admin),
    /// Sets a user's password.
    UserPasswd = ("user.passwd", UserPasswdArgs => (), Write, Changes, SelfOrAdmin(name)),
    /// Grants a user access to a database.
    UserGrant = ("user.grant", UserGrantArgs => (), Plain, Changes, Admin),
    /// Revokes a user's grant.
    UserRevoke = ("user.revoke", UserRevokeArgs => (), Plain, Changes, Admin),
    /// Every user.
    UserList = ("user.list", NoArgs => Vec<UserInfo>, Plain, Reads, Admin),
    /// Deletes a user.
    UserDelete = ("user.delete", UserNameArgs => (), Plain, Changes, Admin),
    // Backups and jobs.
    /// Starts a backup job.
    BackupStart = ("backup.start", BackupStartArgs => Job, Job, Changes, Admin),
    /// The complete backups.
    BackupList = ("backup.list", NoArgs => Vec<BackupInfo>, Job, Reads, Admin),
    /// Deletes a backup.
    BackupDelete = ("backup.delete", BackupNameArgs => (), Job, Changes, Admin),
    /// Starts a restore job.
    RestoreStart = ("restore.start", BackupNameArgs => Job, Job, Changes, Admin),
    /// The jobs, newest first.
    JobsList = ("jobs.list", JobsListArgs => Vec<Job>, Job, Reads, Admin),
    /// One job.
    JobsShow = ("jobs.show", JobIdArgs => Job, Job, Reads, Admin),
    /// Asks a running job to stop.
    JobsCancel = ("jobs.cancel", JobIdArgs => Job, Job, Changes, Admin),
    // Sync (the destination of `cairn-sync`).
    /// Enters migration mode, following a source.
    SyncAttach = ("sync.attach", SyncAttachArgs => SyncStatusResult, Plain, Changes, Admin),
    /// Creates a database the source created.
    SyncCreate = ("sync.create", SyncCreateArgs => (), Plain, Changes, Admin),
    /// Applies changes of the source's log at their seqs.
    SyncApply = ("sync.apply", SyncApplyArgs => SyncApplyResult, Write, Changes, Admin),
    /// Where the follower stands on a database.
    SyncReport = ("sync.report", SyncReportArgs => (), Plain, Changes, Admin),
    /// Migration mode and each database's sync.
    SyncStatus = ("sync.status", NoArgs => SyncStatusResult, Plain, Reads, Admin),
    /// Leaves migration mode.
    SyncDetach = ("sync.detach", SyncDetachArgs => SyncStatusResult, Plain, Changes, Admin),
    // Mirrors (the leader's side).
    /// A consistent compacted copy of the environment, in chunks.
    MirrorBootstrap = ("mirror.bootstrap", NoArgs => BootstrapEnd, Stream, Reads, Admin),
    /// The journal's entries after a mirror's position, as they commit.
    MirrorFollow = ("mirror.follow", MirrorFollowArgs => MirrorEnd, Stream, Reads, Admin),
    /// Runs a call a mirror was sent, as its caller; answers with the journal's head.
    MirrorForward = ("mirror.forward", MirrorForwardArgs => MirrorForwardResult, Plain, Reads, Admin),
    /// Makes this mirror the leader (gracefully, or by force).
    MirrorPromote = ("mirror.promote", MirrorPromoteArgs => MirrorPromoteResult, Plain, Local, Admin),
    /// A step of a mirror's graceful promotion, on the leader.
    MirrorHandoff = ("mirror.handoff", MirrorHandoffArgs => MirrorHandoffResult, Plain, Local, Admin),
}

/// How a connection runs a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodKind {
    /// Reads or changes who the connection is: run in order, one at a time.
    Session,
    /// A short read that never waits: answered in the connection's own task.
    Inline,
    /// A data write: refused to non-admins while the service is READ_ONLY.
    Write,
    /// A backup or a job: a full disk or map it meets is its target's, not the
    /// environment's, so it never turns the service READ_ONLY.
    Job,
    /// May answer with a stream of items ended by an end.
    Stream,
    /// Any other call, answered in a task of its own.
    Plain,
}

/// What a method does to the service's state: on a mirror, a method that `Changes` it
/// goes to the leader (or is refused), one that `Reads` is served by the mirror, and one
/// that is `Local` changes this service itself (its settings, its role), never the data
/// a mirror follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Reads,
    Changes,
    Local,
}

/// Who may call a method (`Need` is the same with the names its arguments give).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Anyone, before authentication too.
    Anyone,
    /// Any authenticated user.
    User,
    /// A user with a read grant on the database the arguments name, or an admin.
    Read,
    /// A user with a write grant on the database the arguments name, or an admin.
    Write,
    /// The user the arguments name, or an admin.
    SelfOrAdmin,
    Admin,
}

impl Permission {
    /// How PROTOCOL.md names the permission at the start of a method's section.
    pub fn documented_as(self) -> &'static str {
        match self {
            Permission::Anyone => "Anyone.",
            Permission::User => "User.",
            Permission::Read => "Read.",
            Permission::Write => "Write.",
            Permission::SelfOrAdmin => "Admin, or the user itself.",
            Permission::Admin => "Admin.",
        }
    }

    /// True when checking it needs the call's arguments (a database or user name).
    pub fn names_an_argument(self) -> bool {
        matches!(
            self,
            Permission::Read | Permission::Write | Permission::SelfOrAdmin
        )
    }
}

/// What a call needs of its caller: its method's permission with the database or user
/// its arguments name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need<'a> {
    Anyone,
    User,
    Read(&'a str),
    Write(&'a str),
    /// The named user itself, or an admin.
    SelfOrAdmin(&'a str),
    Admin,
}

impl Need<'_> {
    /// The permission without the names (for the checks made before decoding).
    pub fn of(permission: Permission) -> Option<Need<'static>> {
        match permission {
            Permission::Anyone => Some(Need::Anyone),
            Permission::User => Some(Need::User),
            Permission::Admin => Some(Need::Admin),
            Permission::Read | Permission::Write | Permission::SelfOrAdmin => None,
        }
    }
}

/// A method with its argument and result types (the markers of `call` implement it).
pub trait Call {
    const METHOD: Method;
    type Args: Serialize + DeserializeOwned;
    type Result: Serialize + DeserializeOwned;
}

/// The arguments of a method that takes none (any map, or nil).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NoArgs {}

/// Deepest nesting of arguments decoded from their msgpack: below what a whole
/// message may hold, so that nothing the `Value` path refuses gets through.
const MAX_ARGS_DEPTH: usize = crate::message::MAX_MESSAGE_DEPTH - 2;

/// Decodes call arguments from their msgpack (nil counts as an empty map) into `T`;
/// `None` when they do not decode, or other bytes follow them.
pub fn from_msgpack<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    const NIL: u8 = 0xc0;
    const EMPTY_MAP: [u8; 1] = [0x80];
    let bytes: &[u8] = if bytes == [NIL] { &EMPTY_MAP } else { bytes };
    if crate::value_len::value_len(bytes)? != bytes.len() {
        return None;
    }
    // Borrowing from the slice: strings are read in place, not copied into a buffer.
    let mut decoder = rmp_serde::Deserializer::from_read_ref(bytes);
    decoder.set_max_depth(MAX_ARGS_DEPTH);
    T::deserialize(&mut decoder).ok()
}

/// Decodes call arguments (nil counts as an empty map) into `T`.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, WireError> {
    let value = if value.is_nil() {
        Value::Map(Vec::new())
    } else {
        value
    };
    rmpv::ext::from_value(value).map_err(|rmpv::ext::Error::Syntax(reason)| {
        WireError::new(ErrorCode::BadRequest, format!("bad arguments: {reason}"))
    })
}

/// Decodes a result (nil stays nil: a method that answers nothing) into `T`.
pub fn result_from_value<T: DeserializeOwned>(value: Value) -> Result<T, rmpv::ext::Error> {
    rmpv::ext::from_value(value)
}

/// Encodes arguments or results, structs as maps with their field names.
pub fn to_value<T: Serialize>(value: &T) -> Value {
    let bytes = rmp_serde::to_vec_named(value).expect("protocol types always encode");
    rmpv::decode::read_value(&mut bytes.as_slice()).expect("rmp-serde writes valid msgpack")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_decode_from_msgpack_as_from_a_value() {
        let msgpack = |value: &Value| {
            let mut out = Vec::new();
            rmpv::encode::write_value(&mut out, value).unwrap();
            out
        };
        let put = to_value(&PutArgs {
            db: "d".into(),
            key: Value::from("k"),
            value: Value::Map(vec![(Value::from("n"), Value::from(-1.5))]),
            rev: Some(3),
        });
        let get = Value::Map(vec![
            (Value::from("db"), Value::from("d")),
            (Value::from("key"), Value::from("k")),
            (Value::from("unknown"), Value::from(1)),
        ]);
        for (method, args) in [
            (Method::Put, put),
            (Method::Get, get),
            (Method::Status, Value::Nil),
            (Method::DbList, Value::Map(Vec::new())),
        ] {
            assert_eq!(
                Request::decode_msgpack(method, &msgpack(&args)),
                Some(Request::decode(method, args).unwrap()),
                "{method}"
            );
        }
        // What does not decode is left to `Request::decode`, which says why.
        let missing_key = Value::Map(vec![(Value::from("db"), Value::from("d"))]);
        assert_eq!(
            Request::decode_msgpack(Method::Get, &msgpack(&missing_key)),
            None
        );
        assert!(Request::decode(Method::Get, missing_key).is_err());
        let mut trailing = msgpack(&Value::Nil);
        trailing.push(0xc0);
        assert_eq!(Request::decode_msgpack(Method::Status, &trailing), None);
        let shallow = |depth: usize| {
            let mut value = Value::Nil;
            for _ in 0..depth {
                value = Value::Array(vec![value]);
            }
            msgpack(&Value::Map(vec![
                (Value::from("db"), Value::from("d")),
                (Value::from("key"), Value::from("k")),
                (Value::from("value"), value),
            ]))
        };
        assert!(Request::decode_msgpack(Method::Put, &shallow(100)).is_some());
        assert_eq!(Request::decode_msgpack(Method::Put, &shallow(700)), None);
    }

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
    fn protocol_md_documents_every_method_with_its_permission() {
        let doc = include_str!("../../PROTOCOL.md");
        for method in Method::ALL {
            let heading = format!("### `{}`\n", method.name());
            let at = doc
                .find(&heading)
                .unwrap_or_else(|| panic!("PROTOCOL.md lacks a section for {method}"));
            let section = &doc[at + heading.len()..];
            let expected = method.permission().documented_as();
            assert!(
                section.starts_with(expected),
                "PROTOCOL.md's section for {method} should start with {expected:?}"
            );
        }
        let sections = doc.lines().filter(|l| l.starts_with("### `")).count();
        assert_eq!(
            sections,
            Method::ALL.len(),
            "PROTOCOL.md documents methods the table lacks"
        );
    }

    #[test]
    fn the_table_names_each_method_once_and_decodes_its_arguments() {
        let mut names = std::collections::HashSet::new();
        for method in Method::ALL {
            assert!(names.insert(method.name()), "{method} twice");
            assert_eq!(Method::parse(method.name()), Some(*method));
        }
        assert_eq!(Method::parse("no.such.method"), None);
        let get = Value::Map(vec![
            (Value::from("db"), Value::from("notes")),
            (Value::from("key"), Value::from("k")),
        ]);
        let request = Request::decode(Method::Get, get).unwrap();
        assert_eq!(request.method(), Method::Get);
        assert_eq!(request.need(), Need::Read("notes"));
        let status = Request::decode(Method::Status, Value::Nil).unwrap();
        assert_eq!(status.need(), Need::Anyone);
        let passwd = Value::Map(vec![
            (Value::from("name"), Value::from("alice")),
            (Value::from("password"), Value::from("pw")),
        ]);
        assert_eq!(
            Request::decode(Method::UserPasswd, passwd).unwrap().need(),
            Need::SelfOrAdmin("alice")
        );
        let bad_op = Value::Map(vec![
            (Value::from("db"), Value::from("d")),
            (
                Value::from("ops"),
                Value::Array(vec![Value::Map(vec![
                    (Value::from("op"), Value::from("merge")),
                    (Value::from("key"), Value::from("k")),
                ])]),
            ),
        ]);
        let error = Request::decode(Method::Batch, bad_op).unwrap_err();
        assert_eq!(error.code, ErrorCode::BadRequest);
        assert!(
            error.message.contains("op is put or del"),
            "{}",
            error.message
        );
    }

    #[test]
    fn a_permission_without_names_is_checked_before_decoding() {
        for method in Method::ALL {
            let permission = method.permission();
            assert_eq!(
                Need::of(permission).is_none(),
                permission.names_an_argument(),
                "{method}"
            );
        }
    }
}
