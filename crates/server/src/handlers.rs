//! The methods: each call is checked against the caller's rights, then served from the
//! store. Reads that can be long run on blocking threads; every write goes through the
//! store's group-commit writer and is answered after its fsync'd commit.

use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use cairn_proto::methods::{self, from_value, name, to_value};
use cairn_proto::{ErrorCode, Message, WireError};
use cairn_store::{
    Access, ChangeOp, IndexKey, IndexQuery, Op, Retention, Scan, ScanRange, ServiceMode,
    ServiceStatus, Store, StoreError, UserRecord, Write, Written,
};
use rmpv::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::auth::{self, authorize, Caller, Identity, Need, Via, ROOT_USER};
use crate::error::store_error_to_wire;
use crate::lifecycle::{self, DbState};
use crate::shared::{Shared, RESTORE_MESSAGE};

/// Default and largest page of `scan`.
const DEFAULT_SCAN_LIMIT: u32 = 100;
/// Default page of `changes`.
const DEFAULT_CHANGES_LIMIT: u32 = 1000;
const DEFAULT_LONGPOLL_MS: u64 = 30_000;
const MAX_LONGPOLL_MS: u64 = 300_000;
const DEFAULT_HEARTBEAT_MS: u64 = 10_000;
const MIN_HEARTBEAT_MS: u64 = 100;

/// Where a call sends its answers: encoded message bodies for the connection's writer.
pub type Outbox = mpsc::Sender<Vec<u8>>;

fn bad_request(message: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::BadRequest, message)
}

fn internal(reason: impl std::fmt::Display) -> WireError {
    WireError::new(ErrorCode::Internal, reason.to_string())
}

fn store_error(error: StoreError) -> WireError {
    store_error_to_wire(&error)
}

/// Submits a write and waits for its commit without blocking an async thread.
pub async fn write(store: &Store, write: Write) -> Result<Written, WireError> {
    let (sender, receiver) = oneshot::channel();
    store.submit(
        write,
        Box::new(move |outcome| {
            let _ = sender.send(outcome);
        }),
    );
    receiver
        .await
        .map_err(|_| WireError::new(ErrorCode::Unavailable, "the store is closing"))?
        .map_err(store_error)
}

/// Runs a read on a blocking thread.
async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, WireError> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(internal)?
        .map_err(store_error)
}

/// A document key off the wire: a msgpack string of 1 to 400 bytes of UTF-8.
fn key_text(key: &Value) -> Result<String, WireError> {
    let Value::String(text) = key else {
        return Err(WireError::new(
            ErrorCode::InvalidKey,
            "a key is a msgpack string",
        ));
    };
    cairn_store::validate_key_bytes(text.as_bytes())
        .map(str::to_string)
        .map_err(store_error)
}

fn encode_value(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, value).expect("writing to a Vec cannot fail");
    out
}

fn decode_value(bytes: &[u8]) -> Result<Value, WireError> {
    rmpv::decode::read_value(&mut &bytes[..]).map_err(|e| internal(format!("stored value: {e}")))
}

fn retention(args: methods::RetentionArgs) -> Retention {
    Retention {
        max_changes: args.max_changes.filter(|n| *n > 0),
        max_age_secs: args.max_age_secs.filter(|n| *n > 0),
    }
}

fn db_info(info: cairn_store::DatabaseInfo, state: DbState) -> methods::DbInfo {
    methods::DbInfo {
        state: state.as_str().to_string(),
        name: info.name,
        created_ms: info.created_ms,
        doc_count: info.doc_count,
        last_seq: info.last_seq,
        oldest_seq: info.oldest_seq,
        doc_bytes: info.doc_bytes,
        log_bytes: info.log_bytes,
        retention: methods::RetentionArgs {
            max_changes: info.retention.max_changes,
            max_age_secs: info.retention.max_age_secs,
        },
    }
}

/// The `usage` result, on a blocking thread: the environment's pages and databases,
/// then the working and backup directories walked on disk (the store let go first).
async fn usage(shared: &Shared, store: Store) -> Result<methods::UsageResult, WireError> {
    let (dir, backup_dir) = (shared.dir.clone(), shared.backup_dir.clone());
    blocking(move || {
        let usage = store.usage()?;
        drop(store);
        let env = usage.env;
        Ok(methods::UsageResult {
            dir: dir_usage(&dir)?,
            backups: dir_usage(&backup_dir)?,
            env: methods::EnvUsage {
                file_bytes: env.file_bytes,
                map_size: env.map_size,
                page_size: env.page_size,
                total_pages: env.total_pages,
                used_pages: env.used_pages,
                free_pages: env.free_pages,
                used_bytes: env.used_bytes(),
                free_bytes: env.free_bytes(),
            },
            databases: usage
                .databases
                .into_iter()
                .map(|db| methods::DbUsage {
                    name: db.name,
                    doc_count: db.doc_count,
                    doc_bytes: db.doc_bytes,
                    log_bytes: db.log_bytes,
                    log_entries: db.log_entries,
                })
                .collect(),
        })
    })
    .await
}

/// A directory's bytes on disk and the room of its file system (statvfs).
fn dir_usage(path: &std::path::Path) -> Result<methods::DirUsage, StoreError> {
    let disk = cairn_store::disk_usage(path)?;
    let space = cairn_store::file_system_space(path)?;
    Ok(methods::DirUsage {
        path: path.display().to_string(),
        bytes: disk.bytes,
        files: disk.files,
        fs_total_bytes: space.total_bytes,
        fs_available_bytes: space.available_bytes,
    })
}

fn change_entry(change: cairn_store::Change) -> Result<methods::ChangeEntry, WireError> {
    Ok(methods::ChangeEntry {
        seq: change.seq,
        op: match change.op {
            ChangeOp::Put => "put",
            ChangeOp::Delete => "del",
        }
        .to_string(),
        key: change.key,
        value: change.value.as_deref().map(decode_value).transpose()?,
        time_ms: change.time_ms,
    })
}

/// The `status` result: the stricter of the status an admin set and the automatic
/// READ_ONLY (see `crate::health`), or `DOWN` while a restore runs.
pub fn status(shared: &Shared) -> methods::StatusResult {
    let set = shared.status();
    let reasons = shared.auto.reasons();
    let (status, message, pending) = if shared.is_restoring() {
        (
            "DOWN",
            RESTORE_MESSAGE.to_string(),
            set.pending_maintenance_message.clone(),
        )
    } else {
        (
            crate::health::effective_mode(set.mode, !reasons.is_empty()).as_str(),
            set.current_message.clone(),
            set.pending_maintenance_message.clone(),
        )
    };
    methods::StatusResult {
        status: status.to_string(),
        current_message: message,
        pending_maintenance_message: pending,
        service_id: shared.service_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        admin_status: set.mode.as_str().to_string(),
        reasons: reasons
            .iter()
            .map(|r| methods::StatusReason {
                code: r.code.as_str().to_string(),
                message: r.message.clone(),
                since_ms: r.since_ms,
            })
            .collect(),
    }
}

/// The error of a DOWN service, with the admin's message.
pub fn down_error(status: &ServiceStatus) -> WireError {
    let message = if status.current_message.is_empty() {
        "the service is down for maintenance".to_string()
    } else {
        status.current_message.clone()
    };
    WireError::new(ErrorCode::Unavailable, message)
}

/// Methods that change data, refused to non-admins in READ_ONLY.
const WRITE_METHODS: [&str; 4] = [name::PUT, name::DELETE, name::BATCH, name::USER_PASSWD];

/// What a call changes about its connection.
pub enum ConnectionChange {
    None,
    Authenticated(Identity),
    LoggedOut,
}

/// `login`, `auth`, `logout`, `whoami`: the calls that read or change who the connection
/// is. The connection runs them one at a time, in order.
pub async fn session_call(
    shared: &Shared,
    identity: Option<&Identity>,
    method: &str,
    args: Value,
) -> Result<(Value, ConnectionChange), WireError> {
    match method {
        name::LOGIN => {
            let args: methods::LoginArgs = from_value(args)?;
            let store = shared.store()?;
            let record = store
                .snapshot()
                .and_then(|s| s.user(&args.user))
                .map_err(store_error)?;
            let usable = record.filter(|r| !r.locked);
            let hash = usable.as_ref().and_then(|r| r.password_hash.clone());
            if !auth::verify_password(hash, args.password).await {
                tracing::info!(user = %args.user, "login refused");
                return Err(WireError::new(
                    ErrorCode::BadCredentials,
                    "unknown user or wrong password",
                ));
            }
            // A DOWN service lets only admins in.
            let status = shared.status();
            let admin = usable.as_ref().is_some_and(|r| r.admin);
            if status.mode == ServiceMode::Down && !admin {
                return Err(down_error(&status));
            }
            let (token, token_hash) = auth::new_token()?;
            let now = now_ms();
            let expires_ms = now + shared.settings().session_ttl.as_millis() as u64;
            write(
                &store,
                Write::SaveSession {
                    token_hash,
                    record: cairn_store::SessionRecord {
                        user: args.user.clone(),
                        created_ms: now,
                        expires_ms,
                    },
                },
            )
            .await
            .inspect_err(|e| crate::health::note_write_error(shared, e))?;
            let identity = Identity {
                user: args.user.clone(),
                via: Via::Password,
                token_hash: Some(token_hash),
            };
            let result = methods::LoginResult {
                user: args.user,
                token,
                expires_ms,
            };
            Ok((to_value(&result), ConnectionChange::Authenticated(identity)))
        }
        name::AUTH => {
            let args: methods::AuthArgs = from_value(args)?;
            let token_hash = auth::token_hash(&args.token);
            let snapshot = shared.store()?.snapshot().map_err(store_error)?;
            let session = snapshot.session(&token_hash).map_err(store_error)?;
            let refused = || {
                WireError::new(
                    ErrorCode::BadCredentials,
                    "unknown, expired or revoked token: log in again",
                )
            };
            let session = session
                .filter(|s| s.expires_ms > now_ms())
                .ok_or_else(refused)?;
            let record = snapshot
                .user(&session.user)
                .map_err(store_error)?
                .filter(|r| !r.locked)
                .ok_or_else(refused)?;
            let status = shared.status();
            if status.mode == ServiceMode::Down && !record.admin {
                return Err(down_error(&status));
            }
            let identity = Identity {
                user: session.user.clone(),
                via: Via::Token,
                token_hash: Some(token_hash),
            };
            let result = methods::WhoAmI {
                user: session.user,
                admin: record.admin,
                via: Via::Token.as_str().to_string(),
            };
            Ok((to_value(&result), ConnectionChange::Authenticated(identity)))
        }
        name::LOGOUT => {
            let store = shared.store()?;
            authorize(&store, identity, Need::User)?;
            let args: methods::LogoutArgs = from_value(args)?;
            let token_hash = match (&args.token, identity.and_then(|i| i.token_hash)) {
                (Some(token), _) => auth::token_hash(token),
                (None, Some(hash)) => hash,
                (None, None) => {
                    return Err(bad_request(
                        "this connection has no token: pass the token to revoke",
                    ))
                }
            };
            write(&store, Write::DeleteSession { token_hash }).await?;
            let ends_this_session = identity.and_then(|i| i.token_hash) == Some(token_hash);
            let change = if ends_this_session {
                ConnectionChange::LoggedOut
            } else {
                ConnectionChange::None
            };
            Ok((Value::Nil, change))
        }
        name::WHOAMI => {
            let record = authorize(&shared.store()?, identity, Need::User)?.expect("a user");
            let identity = identity.expect("authorized");
            let result = methods::WhoAmI {
                user: identity.user.clone(),
                admin: record.admin,
                via: identity.via.as_str().to_string(),
            };
            Ok((to_value(&result), ConnectionChange::None))
        }
        other => Err(WireError::new(
            ErrorCode::UnknownMethod,
            format!("{other:?} is not a session method"),
        )),
    }
}

/// True for the methods `session_call` serves.
pub fn is_session_method(method: &str) -> bool {
    matches!(
        method,
        name::LOGIN | name::AUTH | name::LOGOUT | name::WHOAMI
    )
}

pub(crate) use cairn_store::now_ms;

/// A call of any other method, with what it needs to answer and to stream.
pub struct Call {
    pub shared: Arc<Shared>,
    pub identity: Option<Identity>,
    /// The connection's cached caller (`None` when unauthenticated, or when the user
    /// went away since).
    pub caller: Option<Arc<Caller>>,
    pub id: u64,
    pub method: String,
    pub args: Value,
    pub outbox: Outbox,
    pub cancel: CancellationToken,
}

impl Call {
    async fn send(&self, message: Message) -> bool {
        self.outbox.send(message.encode()).await.is_ok()
    }

    /// Serves the call. Streams send their items and end themselves; otherwise the
    /// final message is returned for the connection to send once the call's slot is
    /// free again.
    pub async fn answer(mut self) -> Option<Vec<u8>> {
        let id = self.id;
        let args = std::mem::replace(&mut self.args, Value::Nil);
        if self.method == name::GET {
            let body = self
                .get(args)
                .unwrap_or_else(|error| Message::Error { id, error }.encode());
            return Some(body);
        }
        match self.serve(args).await {
            Ok(Some(value)) => Some(Message::Result { id, value }.encode()),
            Ok(None) => None,
            Err(error) => {
                // A full map or disk turns the service READ_ONLY (jobs report the room
                // of their own targets: not the environment's).
                if !crate::jobs::is_job_method(&self.method) {
                    crate::health::note_write_error(&self.shared, &error);
                }
                Some(Message::Error { id, error }.encode())
            }
        }
    }

    /// `get`, answered with the stored msgpack of the value as it is (no decoding).
    fn get(&self, args: Value) -> Result<Vec<u8>, WireError> {
        self.check_available()?;
        let args: methods::GetArgs = from_value(args)?;
        self.need(Need::Read(&args.db))?;
        let _admission = self.shared.databases.enter(&args.db)?;
        let key = key_text(&args.key)?;
        let doc = self
            .shared
            .store()?
            .get(&args.db, &key)
            .map_err(store_error)?
            .ok_or_else(|| {
                WireError::new(
                    ErrorCode::NotFound,
                    format!("document {key:?} not found in database {:?}", args.db),
                )
            })?;
        Ok(cairn_proto::encode_doc_result(
            self.id, &doc.key, doc.rev, &doc.value,
        ))
    }

    pub(crate) fn need(&self, need: Need<'_>) -> Result<Option<&UserRecord>, WireError> {
        match (&self.caller, &self.identity) {
            (_, _) if need == Need::Anyone => Ok(None),
            (Some(caller), _) => {
                auth::permit(caller, need)?;
                Ok(Some(&caller.record))
            }
            (None, Some(identity)) => Err(auth::gone(identity)),
            (None, None) => authorize(&self.shared.store()?, None, need).map(|_| None),
        }
    }

    /// While a restore runs or the service is DOWN, only admins get through (and
    /// `status`); in READ_ONLY (the admin's or automatic), non-admin writes are refused.
    fn check_available(&self) -> Result<(), WireError> {
        if self.method == name::STATUS {
            return Ok(());
        }
        let admin = self.caller.as_ref().is_some_and(|c| c.record.admin);
        if admin {
            return Ok(());
        }
        if self.shared.is_restoring() {
            return Err(WireError::new(ErrorCode::Unavailable, RESTORE_MESSAGE));
        }
        let status = self.shared.status();
        let reasons = self.shared.auto.reasons();
        match crate::health::effective_mode(status.mode, !reasons.is_empty()) {
            ServiceMode::ReadWrite => Ok(()),
            ServiceMode::Down => Err(down_error(&status)),
            ServiceMode::ReadOnly if WRITE_METHODS.contains(&self.method.as_str()) => {
                let mut parts = Vec::new();
                if status.mode == ServiceMode::ReadOnly {
                    parts.push(if status.current_message.is_empty() {
                        "the service is read-only".to_string()
                    } else {
                        status.current_message.clone()
                    });
                }
                if !reasons.is_empty() {
                    parts.push(crate::health::read_only_message(&reasons));
                }
                Err(WireError::new(ErrorCode::ReadOnly, parts.join("; ")))
            }
            ServiceMode::ReadOnly => Ok(()),
        }
    }

    /// `Ok(None)`: the call streamed its answer itself.
    async fn serve(&self, args: Value) -> Result<Option<Value>, WireError> {
        self.check_available()?;
        if crate::jobs::is_job_method(&self.method) {
            return crate::jobs::serve(self, args).await.map(Some);
        }
        if self.method == name::STATUS {
            // Answered even while a restore has the store closed.
            return Ok(Some(to_value(&status(&self.shared))));
        }
        if self.method == name::CONFIG_RELOAD {
            self.need(Need::Admin)?;
            let result = crate::reload::reload(&self.shared, self.user()).await?;
            return Ok(Some(to_value(&result)));
        }
        let store = &self.shared.store()?;
        let value = match self.method.as_str() {
            name::STATUS_SET => {
                self.need(Need::Admin)?;
                let args: methods::StatusSetArgs = from_value(args)?;
                let mode = ServiceMode::parse(&args.status).ok_or_else(|| {
                    bad_request(format!(
                        "status is READ_WRITE, READ_ONLY or DOWN, not {:?}",
                        args.status
                    ))
                })?;
                let new = ServiceStatus {
                    mode,
                    current_message: args.current_message.unwrap_or_default(),
                    pending_maintenance_message: args
                        .pending_maintenance_message
                        .unwrap_or_default(),
                    set_by: self.user().to_string(),
                    set_ms: now_ms(),
                };
                let old_mode = self.shared.status().mode;
                write(
                    store,
                    Write::SetStatus {
                        status: new.clone(),
                    },
                )
                .await?;
                tracing::warn!(
                    status = mode.as_str(),
                    message = %new.current_message,
                    pending = %new.pending_maintenance_message,
                    by = %self.user(),
                    "service status changed"
                );
                let reason = new.current_message.clone();
                self.shared.set_status(new);
                // Webhooks hear the mode in force, which an automatic READ_ONLY may keep.
                let automatic = !self.shared.auto.reasons().is_empty();
                let in_force = |mode| crate::health::effective_mode(mode, automatic).as_str();
                self.shared
                    .webhooks
                    .emit(crate::webhooks::WebhookEvent::status_changed(
                        Some(in_force(old_mode).to_string()),
                        in_force(mode),
                        reason,
                        self.user(),
                    ));
                to_value(&status(&self.shared))
            }
            name::DB_CREATE => {
                self.need(Need::Admin)?;
                let args: methods::DbCreateArgs = from_value(args)?;
                write(
                    store,
                    Write::CreateDatabase {
                        name: args.name.clone(),
                        retention: retention(args.retention),
                        offline: args.offline,
                    },
                )
                .await?;
                self.shared.databases.created(&args.name, args.offline);
                tracing::warn!(db = %args.name, offline = args.offline, by = %self.user(), "database created");
                to_value(&self.db_info(store.database_info(&args.name).map_err(store_error)?))
            }
            name::DB_DROP => {
                self.need(Need::Admin)?;
                let args: methods::DbNameArgs = from_value(args)?;
                lifecycle::drop_database(&self.shared, &args.name).await?;
                tracing::warn!(db = %args.name, by = %self.user(), "database dropped");
                Value::Nil
            }
            name::DB_LIST => {
                let record = self.need(Need::User)?.expect("a user");
                let all = store.list_databases().map_err(store_error)?;
                let visible = all
                    .into_iter()
                    .filter(|db| record.admin || record.grants.contains_key(&db.name))
                    .map(|info| self.db_info(info))
                    .collect::<Vec<_>>();
                to_value(&visible)
            }
            name::DB_INFO => {
                let args: methods::DbNameArgs = from_value(args)?;
                self.need(Need::Read(&args.name))?;
                to_value(&self.db_info(store.database_info(&args.name).map_err(store_error)?))
            }
            name::DB_OFFLINE => {
                self.need(Need::Admin)?;
                let args: methods::DbOfflineArgs = from_value(args)?;
                let why = args
                    .reason
                    .unwrap_or_else(|| "asked by an admin".to_string());
                let done =
                    lifecycle::take_offline(&self.shared, &args.name, self.user(), &why).await?;
                to_value(&done.result(&args.name))
            }
            name::DB_ONLINE => {
                self.need(Need::Admin)?;
                let args: methods::DbOnlineArgs = from_value(args)?;
                let delay = Duration::from_secs(args.delay_secs.unwrap_or(0));
                let why = args
                    .reason
                    .unwrap_or_else(|| "asked by an admin".to_string());
                let done =
                    lifecycle::bring_online(&self.shared, &args.name, delay, self.user(), &why)
                        .await?;
                to_value(&done.result(&args.name))
            }
            name::DB_CONFIG => {
                let args: methods::DbNameArgs = from_value(args)?;
                self.need(Need::Read(&args.name))?;
                to_value(&self.db_config(store, &args.name)?)
            }
            name::DB_CONFIG_SET => {
                self.need(Need::Admin)?;
                let args: methods::DbConfigSetArgs = from_value(args)?;
                let indexes = args
                    .config
                    .indexes
                    .iter()
                    .map(|index| cairn_store::IndexDef {
                        name: index.name.clone(),
                        field: index.field.clone(),
                        unique: index.unique,
                    })
                    .collect();
                let set = write(
                    store,
                    Write::SetDatabaseConfig {
                        name: args.name.clone(),
                        indexes,
                        retention: retention(args.config.retention),
                    },
                );
                let written = lifecycle::while_offline(&self.shared, &args.name, set).await?;
                if let Written::DatabaseConfigSet {
                    indexes_changed,
                    indexes_stale,
                } = written
                {
                    tracing::warn!(
                        db = %args.name,
                        indexes_changed,
                        indexes_stale,
                        by = %self.user(),
                        "database configuration replaced"
                    );
                }
                to_value(&self.db_config(store, &args.name)?)
            }
            name::DB_RESYNC => {
                self.need(Need::Admin)?;
                let args: methods::DbNameArgs = from_value(args)?;
                let job = crate::resync::start(&self.shared, &args.name, self.user()).await?;
                to_value(&crate::jobs::job_to_wire(&job))
            }
            name::FIND => {
                let args: methods::FindArgs = from_value(args)?;
                self.need(Need::Read(&args.db))?;
                let _admission = self.shared.databases.enter(&args.db)?;
                let query = find_query(&args)?;
                let db = args.db.clone();
                let store = store.clone();
                let page = blocking(move || store.snapshot()?.database(&db)?.find(&query)).await?;
                let docs = page
                    .docs
                    .into_iter()
                    .map(|(index_value, doc)| {
                        Ok(methods::FoundDoc {
                            key: doc.key,
                            rev: doc.rev,
                            value: decode_value(&doc.value)?,
                            index_value: index_key_value(index_value),
                        })
                    })
                    .collect::<Result<Vec<_>, WireError>>()?;
                to_value(&methods::FindResult {
                    docs,
                    more: page.more,
                })
            }
            name::PUT => {
                let args: methods::PutArgs = from_value(args)?;
                self.need(Need::Write(&args.db))?;
                let _admission = self.shared.databases.enter(&args.db)?;
                let op = Op::Put {
                    key: key_text(&args.key)?,
                    value: encode_value(&args.value),
                    rev: args.rev,
                };
                let rev = self.batch(args.db, vec![op]).await?[0];
                to_value(&methods::RevResult { rev })
            }
            name::DELETE => {
                let args: methods::DeleteArgs = from_value(args)?;
                self.need(Need::Write(&args.db))?;
                let _admission = self.shared.databases.enter(&args.db)?;
                let op = Op::Delete {
                    key: key_text(&args.key)?,
                    rev: args.rev,
                };
                let rev = self.batch(args.db, vec![op]).await?[0];
                to_value(&methods::RevResult { rev })
            }
            name::BATCH => {
                let args: methods::BatchArgs = from_value(args)?;
                self.need(Need::Write(&args.db))?;
                let _admission = self.shared.databases.enter(&args.db)?;
                let ops = args
                    .ops
                    .iter()
                    .map(batch_op)
                    .collect::<Result<Vec<_>, _>>()?;
                let revs = self.batch(args.db, ops).await?;
                to_value(&methods::BatchResult { revs })
            }
            name::SCAN => {
                let args: methods::ScanArgs = from_value(args)?;
                self.need(Need::Read(&args.db))?;
                let _admission = self.shared.databases.enter(&args.db)?;
                let scan = scan_request(&args)?;
                let db = args.db.clone();
                let store = store.clone();
                let page = blocking(move || store.scan(&db, &scan)).await?;
                let docs = page
                    .docs
                    .into_iter()
                    .map(|doc| {
                        Ok(methods::Doc {
                            key: doc.key,
                            rev: doc.rev,
                            value: decode_value(&doc.value)?,
                        })
                    })
                    .collect::<Result<Vec<_>, WireError>>()?;
                to_value(&methods::ScanResult {
                    docs,
                    more: page.more,
                })
            }
            name::CHANGES => {
                let args: methods::ChangesArgs = from_value(args)?;
                self.need(Need::Read(&args.db))?;
                return self.changes(args).await;
            }
            name::USER_ADD => {
                self.need(Need::Admin)?;
                let args: methods::UserAddArgs = from_value(args)?;
                let password_hash = match args.password {
                    Some(password) => Some(check_and_hash(password).await?),
                    None => None,
                };
                let record = UserRecord {
                    admin: args.admin,
                    locked: false,
                    created_ms: now_ms(),
                    password_hash,
                    grants: Default::default(),
                };
                write(
                    store,
                    Write::SaveUser {
                        name: args.name.clone(),
                        record,
                        create: true,
                    },
                )
                .await?;
                tracing::warn!(user = %args.name, admin = args.admin, by = %self.user(), "user added");
                Value::Nil
            }
            name::USER_PASSWD => {
                let args: methods::UserPasswdArgs = from_value(args)?;
                self.need(Need::SelfOrAdmin(&args.name))?;
                let hash = check_and_hash(args.password).await?;
                self.update_user(&args.name, |record| record.password_hash = Some(hash))
                    .await?;
                Value::Nil
            }
            name::USER_GRANT => {
                self.need(Need::Admin)?;
                let args: methods::UserGrantArgs = from_value(args)?;
                let access = match args.access.as_str() {
                    "read" => Access::Read,
                    "write" => Access::Write,
                    other => {
                        return Err(bad_request(format!(
                            "access is read or write, not {other:?}"
                        )))
                    }
                };
                cairn_store::validate_database_name(&args.db).map_err(store_error)?;
                self.update_user(&args.name, |record| {
                    record.grants.insert(args.db.clone(), access);
                })
                .await?;
                tracing::warn!(user = %args.name, db = %args.db, access = %args.access, by = %self.user(), "grant given");
                Value::Nil
            }
            name::USER_REVOKE => {
                self.need(Need::Admin)?;
                let args: methods::UserRevokeArgs = from_value(args)?;
                self.update_user(&args.name, |record| {
                    record.grants.remove(&args.db);
                })
                .await?;
                tracing::warn!(user = %args.name, db = %args.db, by = %self.user(), "grant revoked");
                Value::Nil
            }
            name::USER_LIST => {
                self.need(Need::Admin)?;
                let users = store
                    .snapshot()
                    .and_then(|s| s.users())
                    .map_err(store_error)?;
                let list: Vec<methods::UserInfo> = users
                    .into_iter()
                    .map(|(name, record)| methods::UserInfo {
                        name,
                        admin: record.admin,
                        has_password: record.password_hash.is_some(),
                        grants: record
                            .grants
                            .into_iter()
                            .map(|(db, access)| {
                                let access = match access {
                                    Access::Read => "read",
                                    Access::Write => "write",
                                };
                                (db, access.to_string())
                            })
                            .collect(),
                        created_ms: record.created_ms,
                    })
                    .collect();
                to_value(&list)
            }
            name::USAGE => {
                self.need(Need::Admin)?;
                to_value(&usage(&self.shared, store.clone()).await?)
            }
            name::USER_DELETE => {
                self.need(Need::Admin)?;
                let args: methods::UserNameArgs = from_value(args)?;
                if args.name == ROOT_USER {
                    return Err(WireError::new(
                        ErrorCode::Conflict,
                        "root cannot be deleted",
                    ));
                }
                write(
                    store,
                    Write::DeleteUser {
                        name: args.name.clone(),
                    },
                )
                .await?;
                tracing::warn!(user = %args.name, by = %self.user(), "user deleted");
                Value::Nil
            }
            other => {
                return Err(WireError::new(
                    ErrorCode::UnknownMethod,
                    format!("no method {other:?}; see PROTOCOL.md"),
                ))
            }
        };
        Ok(Some(value))
    }

    /// A database's counters with its lifecycle state.
    fn db_info(&self, info: cairn_store::DatabaseInfo) -> methods::DbInfo {
        let state = self.shared.databases.state(&info.name);
        db_info(info, state)
    }

    /// `db.config`'s answer: the stored configuration and the lifecycle state.
    fn db_config(&self, store: &Store, db: &str) -> Result<methods::DbConfig, WireError> {
        let snapshot = store.snapshot().map_err(store_error)?;
        let info = snapshot
            .database(db)
            .and_then(|view| view.info())
            .map_err(store_error)?;
        let config = snapshot.database_config(db).map_err(store_error)?;
        Ok(methods::DbConfig {
            name: db.to_string(),
            offline: config.offline,
            state: self.shared.databases.state(db).as_str().to_string(),
            retention: methods::RetentionArgs {
                max_changes: info.retention.max_changes,
                max_age_secs: info.retention.max_age_secs,
            },
            indexes: config
                .indexes
                .into_iter()
                .map(|index| methods::IndexDefArgs {
                    name: index.name,
                    field: index.field,
                    unique: index.unique,
                })
                .collect(),
            indexes_stale: config.indexes_stale,
        })
    }

    fn user(&self) -> &str {
        self.identity.as_ref().map_or("-", |i| i.user.as_str())
    }

    async fn batch(&self, db: String, ops: Vec<Op>) -> Result<Vec<u64>, WireError> {
        match write(&self.shared.store()?, Write::Batch { db, ops }).await? {
            Written::Batch(revs) => Ok(revs),
            other => Err(internal(format!("a batch answered {other:?}"))),
        }
    }

    /// Reads a user, changes it and saves it.
    async fn update_user(
        &self,
        name: &str,
        change: impl FnOnce(&mut UserRecord),
    ) -> Result<(), WireError> {
        let store = &self.shared.store()?;
        let mut record = store
            .snapshot()
            .and_then(|s| s.user(name))
            .map_err(store_error)?
            .ok_or_else(|| {
                store_error(StoreError::UserMissing {
                    name: name.to_string(),
                })
            })?;
        change(&mut record);
        write(
            store,
            Write::SaveUser {
                name: name.to_string(),
                record,
                create: false,
            },
        )
        .await?;
        Ok(())
    }

    async fn changes(&self, args: methods::ChangesArgs) -> Result<Option<Value>, WireError> {
        let limit = args.limit.unwrap_or(DEFAULT_CHANGES_LIMIT) as usize;
        // A live feed is not a call in flight (it would hold a database online for
        // ever): it is admitted, then ends when the database leaves Online.
        let admission = self.shared.databases.enter(&args.db)?;
        match args.feed.as_deref().unwrap_or("normal") {
            "normal" => {
                let (changes, last_seq, epoch) = self
                    .read_changes(&args.db, args.since, args.epoch, limit)
                    .await?;
                drop(admission);
                Ok(Some(to_value(&methods::ChangesResult {
                    changes,
                    last_seq,
                    epoch,
                    end_reason: None,
                })))
            }
            "longpoll" => {
                let wait = Duration::from_millis(
                    args.timeout_ms
                        .unwrap_or(DEFAULT_LONGPOLL_MS)
                        .min(MAX_LONGPOLL_MS),
                );
                drop(admission);
                let mut db_state = self.shared.databases.watch(&args.db);
                let mut watch = self.shared.feeds.subscribe(&args.db, None);
                let feeds_end = self.shared.feeds_end();
                let deadline = tokio::time::Instant::now() + wait;
                loop {
                    let (changes, last_seq, epoch) = self
                        .read_changes(&args.db, args.since, args.epoch, limit)
                        .await?;
                    let mut result = methods::ChangesResult {
                        changes,
                        last_seq,
                        epoch,
                        end_reason: None,
                    };
                    if !result.changes.is_empty() {
                        return Ok(Some(to_value(&result)));
                    }
                    tokio::select! {
                        changed = watch.changed() => {
                            if changed.is_err() || watch.borrow().is_none() {
                                continue;
                            }
                        }
                        _ = left_online(&mut db_state) => {
                            result.end_reason = Some(DATABASE_OFFLINE_REASON.to_string());
                            return Ok(Some(to_value(&result)));
                        }
                        _ = tokio::time::sleep_until(deadline) => return Ok(Some(to_value(&result))),
                        _ = self.cancel.cancelled() => return Ok(Some(to_value(&result))),
                        _ = self.shared.shutdown.cancelled() => return Ok(Some(to_value(&result))),
                        _ = feeds_end.cancelled() => {
                            return Err(WireError::new(ErrorCode::Unavailable, RESTORE_MESSAGE));
                        }
                    }
                }
            }
            "continuous" => {
                drop(admission);
                let db_state = self.shared.databases.watch(&args.db);
                self.continuous(args, limit, db_state).await?;
                Ok(None)
            }
            other => Err(bad_request(format!(
                "feed is normal, longpoll or continuous, not {other:?}"
            ))),
        }
    }

    /// Changes after `since`, the seq to resume from and the epoch. A cursor of another
    /// epoch, or ahead of the log, is refused: a feed never silently goes backwards.
    async fn read_changes(
        &self,
        db: &str,
        since: u64,
        epoch: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<methods::ChangeEntry>, u64, u64), WireError> {
        let store = self.shared.store()?;
        let db = db.to_string();
        let (current_epoch, db_last_seq, changes) = blocking(move || {
            let snapshot = store.snapshot()?;
            let current_epoch = snapshot.epoch()?;
            let view = snapshot.database(&db)?;
            let db_last_seq = view.info()?.last_seq;
            let trusted = since <= db_last_seq && epoch.is_none_or(|e| e == current_epoch);
            let changes = if trusted {
                view.changes(since, limit)?
            } else {
                Vec::new()
            };
            Ok((current_epoch, db_last_seq, changes))
        })
        .await?;
        if since > db_last_seq || epoch.is_some_and(|e| e != current_epoch) {
            return Err(WireError::new(
                ErrorCode::ResyncRequired,
                format!(
                    "cursor {since} (epoch {}) does not belong to this log (last seq {db_last_seq}, epoch {current_epoch}): a restore replaced the data; resynchronise from a full read",
                    epoch.map_or("-".to_string(), |e| e.to_string())
                ),
            )
            .with_details(Value::Map(vec![
                (Value::from("epoch"), Value::from(current_epoch)),
                (Value::from("last_seq"), Value::from(db_last_seq)),
            ])));
        }
        let last_seq = changes.last().map_or(since, |c| c.seq);
        let entries = changes
            .into_iter()
            .map(change_entry)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((entries, last_seq, current_epoch))
    }

    /// A continuous feed: items as changes commit, heartbeats in between, until the
    /// client cancels, the database goes away or the service shuts down.
    async fn continuous(
        &self,
        args: methods::ChangesArgs,
        limit: usize,
        mut db_state: Option<watch::Receiver<DbState>>,
    ) -> Result<(), WireError> {
        let heartbeat = Duration::from_millis(
            args.heartbeat_ms
                .unwrap_or(DEFAULT_HEARTBEAT_MS)
                .max(MIN_HEARTBEAT_MS),
        );
        let mut watch = self.shared.feeds.subscribe(&args.db, None);
        let feeds_end = self.shared.feeds_end();
        let mut since = args.since;
        let mut epoch = args.epoch;
        let reason = loop {
            let (changes, last_seq, current_epoch) =
                self.read_changes(&args.db, since, epoch, limit).await?;
            since = last_seq;
            epoch = Some(current_epoch);
            let caught_up = changes.len() < limit;
            for change in changes {
                let item = to_value(&methods::FeedItem::Change(change));
                if !self
                    .send(Message::Item {
                        id: self.id,
                        value: item,
                    })
                    .await
                {
                    return Ok(());
                }
            }
            if !caught_up {
                continue;
            }
            tokio::select! {
                changed = watch.changed() => {
                    if changed.is_err() {
                        break "shutting_down";
                    }
                    if watch.borrow().is_none() {
                        break "database_dropped";
                    }
                }
                _ = tokio::time::sleep(heartbeat) => {
                    let item = to_value(&methods::FeedItem::Heartbeat { last_seq: since });
                    if !self.send(Message::Item { id: self.id, value: item }).await {
                        return Ok(());
                    }
                }
                _ = left_online(&mut db_state) => break DATABASE_OFFLINE_REASON,
                _ = self.cancel.cancelled() => break "canceled",
                _ = self.shared.shutdown.cancelled() => break "shutting_down",
                _ = feeds_end.cancelled() => break "restore",
            }
        };
        let end = methods::FeedEnd {
            reason: reason.to_string(),
            last_seq: since,
        };
        self.send(Message::End {
            id: self.id,
            value: to_value(&end),
        })
        .await;
        Ok(())
    }
}

/// The end reason of a live feed whose database went offline.
const DATABASE_OFFLINE_REASON: &str = "database_offline";

/// Resolves once the watched database is no longer online (never without a watch).
async fn left_online(state: &mut Option<watch::Receiver<DbState>>) {
    match state {
        Some(state) => {
            if state.wait_for(|s| *s != DbState::Online).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

async fn check_and_hash(password: String) -> Result<String, WireError> {
    if password.is_empty() || password.len() > 1024 {
        return Err(bad_request("a password has 1 to 1024 bytes"));
    }
    auth::hash_password(password).await
}

fn batch_op(op: &methods::BatchOp) -> Result<Op, WireError> {
    let key = key_text(&op.key)?;
    match op.op.as_str() {
        "put" => {
            let value = op
                .value
                .as_ref()
                .ok_or_else(|| bad_request(format!("the put of {key:?} has no value")))?;
            Ok(Op::Put {
                key,
                value: encode_value(value),
                rev: op.rev,
            })
        }
        "del" => Ok(Op::Delete { key, rev: op.rev }),
        other => Err(bad_request(format!("op is put or del, not {other:?}"))),
    }
}

/// An index value off the wire: a string, a number or a boolean.
fn index_key(value: &Value) -> Result<IndexKey, WireError> {
    IndexKey::from_msgpack(&encode_value(value)).map_err(store_error)
}

/// An index value as sent back.
fn index_key_value(key: IndexKey) -> Value {
    match key {
        IndexKey::Bool(b) => Value::from(b),
        IndexKey::Number(n) if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 => {
            Value::from(n as i64)
        }
        IndexKey::Number(n) => Value::from(n),
        IndexKey::Text(text) => Value::from(text),
    }
}

fn find_query(args: &methods::FindArgs) -> Result<IndexQuery, WireError> {
    let bound = |value: &Option<Value>, exclusive: bool| -> Result<Bound<IndexKey>, WireError> {
        Ok(match value {
            Some(v) if exclusive => Bound::Excluded(index_key(v)?),
            Some(v) => Bound::Included(index_key(v)?),
            None => Bound::Unbounded,
        })
    };
    let (start, end) = match (&args.value, &args.start, &args.end) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(bad_request("give a value or start/end bounds, not both"))
        }
        (Some(value), None, None) => {
            let key = index_key(value)?;
            (Bound::Included(key.clone()), Bound::Included(key))
        }
        (None, start, end) => (
            bound(start, args.start_exclusive)?,
            bound(end, !args.end_inclusive)?,
        ),
    };
    let after = match &args.after {
        Some(cursor) => Some((index_key(&cursor.value)?, cursor.key.clone())),
        None => None,
    };
    Ok(IndexQuery {
        index: args.index.clone(),
        start,
        end,
        limit: args.limit.unwrap_or(DEFAULT_SCAN_LIMIT) as usize,
        reverse: args.reverse,
        after,
    })
}

fn scan_request(args: &methods::ScanArgs) -> Result<Scan, WireError> {
    let range = match (&args.prefix, &args.start, &args.end) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(bad_request("give a prefix or start/end bounds, not both"))
        }
        (Some(prefix), None, None) => ScanRange::Prefix(prefix.clone()),
        (None, None, None) => ScanRange::All,
        (None, start, end) => ScanRange::Keys {
            start: match start {
                Some(k) if args.start_exclusive => Bound::Excluded(k.clone()),
                Some(k) => Bound::Included(k.clone()),
                None => Bound::Unbounded,
            },
            end: match end {
                Some(k) if args.end_inclusive => Bound::Included(k.clone()),
                Some(k) => Bound::Excluded(k.clone()),
                None => Bound::Unbounded,
            },
        },
    };
    Ok(Scan {
        range,
        limit: args.limit.unwrap_or(DEFAULT_SCAN_LIMIT) as usize,
        reverse: args.reverse,
        after: args.after.clone(),
    })
}
