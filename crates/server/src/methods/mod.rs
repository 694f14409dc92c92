//! The methods: a call is decoded once into a typed `Request` (the method table of
//! `cairn-proto`), checked against the service's availability and the caller's rights
//! as the table says, then served by the file of its family. Reads that can be long run
//! on blocking threads; every write goes through the store's group-commit writer and is
//! answered after its fsync'd commit. The connection (`crate::net`) calls in here; the
//! operations below (`crate::ops`) never do.

mod changes;
mod data;
mod db;
mod jobs;
mod mirror;
mod scan_ahead;
pub(crate) mod session;
mod status;
mod sync;
mod users;

use std::sync::Arc;

use bytes::Bytes;
use cairn_proto::methods::call;
use cairn_proto::{Call, Effect, ErrorCode, Message, Method, MethodKind, Need, Request, WireError};
use cairn_store::{ServiceMode, UserRecord};
use rmpv::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::auth::{self, authorize, Caller, Identity};
use crate::ops::health;
use crate::ops::shared::{Route, Shared, RESTORE_MESSAGE};

pub use scan_ahead::ScanAhead;
pub(crate) use status::down_error;

/// What an answer's message takes beyond the keys and values of a page.
const ANSWER_ENVELOPE_BYTES: usize = 64 << 10;

/// Where a call sends its answers: encoded message bodies for the connection's writer.
pub type Outbox = mpsc::Sender<Vec<u8>>;

/// A call being answered, with what it needs to answer and to stream.
pub struct CallContext {
    pub shared: Arc<Shared>,
    pub identity: Option<Identity>,
    /// The connection's cached caller (`None` when unauthenticated, or when the user
    /// went away since).
    pub caller: Option<Arc<Caller>>,
    pub id: u64,
    pub method: Method,
    pub outbox: Outbox,
    pub cancel: CancellationToken,
    /// The connection's `scan` read-ahead (`None` for a transport of single calls).
    pub scan_ahead: Option<Arc<ScanAhead>>,
}

/// A call's arguments: a `Value` (from HTTP, a forward, or a frame whose arguments did
/// not decode straight into their type, so that `Request::decode` says why), or decoded
/// straight from the frame, with their msgpack for a forward to the leader.
pub enum CallArgs {
    Value(Value),
    Decoded {
        request: Box<Request>,
        msgpack: Bytes,
    },
}

impl CallArgs {
    /// The arguments as a `Value`.
    pub fn into_value(self) -> Result<Value, WireError> {
        match self {
            CallArgs::Value(value) => Ok(value),
            CallArgs::Decoded { msgpack, .. } => rmpv::decode::read_value(&mut &msgpack[..])
                .map_err(|e| crate::error::bad_request(format!("bad arguments: {e}"))),
        }
    }
}

/// How a call answered.
enum Answer {
    /// A result value, to encode.
    Value(Value),
    /// A result already encoded as a message body (`get`, `scan`, `find` and `changes`
    /// pages, from the stored bytes; every typed result).
    Encoded(Vec<u8>),
    /// The call streamed its items and its end itself.
    Streamed,
}

/// Serves one call for a transport that is not a native connection (the HTTP API), as
/// `identity` whose user record is `caller` (as the transport read it), with the same
/// availability and permission checks: a stream sends its items to `outbox`, and the
/// final message is returned (`None` once a stream ended itself).
pub async fn answer_one(
    shared: Arc<Shared>,
    (identity, caller): (Option<Identity>, Option<Arc<Caller>>),
    method: Method,
    args: Value,
    outbox: Outbox,
    cancel: CancellationToken,
) -> Option<Vec<u8>> {
    let call = CallContext {
        shared,
        identity,
        caller,
        id: 0,
        method,
        outbox,
        cancel,
        scan_ahead: None,
    };
    call.answer(CallArgs::Value(args)).await
}

impl CallContext {
    /// The answer of a method whose result type the table gives, encoded straight from
    /// it (no `Value` tree on the way).
    fn reply<C: Call>(&self, result: Result<C::Result, WireError>) -> Result<Answer, WireError> {
        result.map(|value| Answer::Encoded(cairn_proto::encode_result(self.id, &value)))
    }

    async fn send(&self, message: Message) -> bool {
        self.outbox.send(message.encode()).await.is_ok()
    }

    /// Serves the call. Streams send their items and end themselves; otherwise the
    /// final message is returned for the connection to send once the call's slot is
    /// free again.
    pub async fn answer(self, args: CallArgs) -> Option<Vec<u8>> {
        let id = self.id;
        let started = std::time::Instant::now();
        let outcome = self.serve(args).await;
        let error = outcome.as_ref().err().map(|e| e.code);
        self.shared
            .metrics
            .observe_call(self.method, error, started.elapsed());
        match outcome {
            Ok(Answer::Value(value)) => Some(Message::Result { id, value }.encode()),
            Ok(Answer::Encoded(body)) => Some(body),
            Ok(Answer::Streamed) => None,
            Err(error) => {
                // A full map or disk turns the service READ_ONLY (jobs report the room
                // of their own targets: not the environment's).
                if self.method.kind() != MethodKind::Job {
                    health::note_write_error(&self.shared, &error);
                }
                Some(Message::Error { id, error }.encode())
            }
        }
    }

    /// Availability, then the permission (before decoding when it names no argument,
    /// so that a caller without the right learns that first), then the method.
    async fn serve(&self, args: CallArgs) -> Result<Answer, WireError> {
        self.check_available()?;
        let _change = match self.shared.route(self.method)? {
            Route::Leader(mirror) => {
                // Only a login is throttled by its caller's address, and it is a
                // session call: the connection forwards it.
                return mirror
                    .forward(
                        self.identity.as_ref(),
                        self.method,
                        args.into_value()?,
                        None,
                    )
                    .await
                    .map(Answer::Value);
            }
            Route::Here(change) => change,
        };
        self.check_mirror_lag()?;
        let plain_need = Need::of(self.method.permission());
        if let Some(need) = plain_need {
            self.need(need)?;
        }
        let request = match args {
            CallArgs::Decoded { request, .. } => *request,
            CallArgs::Value(value) => Request::decode(self.method, value)?,
        };
        if plain_need.is_none() {
            self.need(request.need())?;
        }
        self.dispatch(request).await
    }

    async fn dispatch(&self, request: Request) -> Result<Answer, WireError> {
        match request {
            Request::Status(_) => self.reply::<call::Status>(Ok(status::status(&self.shared))),
            Request::StatusSet(args) => {
                self.reply::<call::StatusSet>(status::set(self, args).await)
            }
            Request::Usage(_) => self.reply::<call::Usage>(status::usage(self).await),
            Request::ConfigReload(_) => {
                self.reply::<call::ConfigReload>(status::reload_config(self).await)
            }
            Request::DbCreate(args) => self.reply::<call::DbCreate>(db::create(self, args).await),
            Request::DbDrop(args) => self.reply::<call::DbDrop>(db::drop(self, args).await),
            Request::DbList(_) => self.reply::<call::DbList>(db::list(self)),
            Request::DbInfo(args) => self.reply::<call::DbInfo>(db::info(self, args)),
            Request::DbOffline(args) => {
                self.reply::<call::DbOffline>(db::offline(self, args).await)
            }
            Request::DbOnline(args) => self.reply::<call::DbOnline>(db::online(self, args).await),
            Request::DbConfig(args) => self.reply::<call::DbConfig>(db::config(self, &args.name)),
            Request::DbConfigSet(args) => {
                self.reply::<call::DbConfigSet>(db::set_config(self, args).await)
            }
            Request::DbResync(args) => self.reply::<call::DbResync>(db::resync(self, args).await),
            Request::Get(args) => data::get(self, args).map(Answer::Encoded),
            Request::Put(args) => self.reply::<call::Put>(data::put(self, args).await),
            Request::Delete(args) => self.reply::<call::Delete>(data::delete(self, args).await),
            Request::Batch(args) => self.reply::<call::Batch>(data::batch(self, args).await),
            Request::Scan(args) => data::scan(self, args).await.map(Answer::Encoded),
            Request::Find(args) => data::find(self, args).await.map(Answer::Encoded),
            Request::Changes(args) => changes::changes(self, args).await,
            Request::UserAdd(args) => self.reply::<call::UserAdd>(users::add(self, args).await),
            Request::UserPasswd(args) => {
                self.reply::<call::UserPasswd>(users::passwd(self, args).await)
            }
            Request::UserGrant(args) => {
                self.reply::<call::UserGrant>(users::grant(self, args).await)
            }
            Request::UserRevoke(args) => {
                self.reply::<call::UserRevoke>(users::revoke(self, args).await)
            }
            Request::UserList(_) => self.reply::<call::UserList>(users::list(self)),
            Request::UserDelete(args) => {
                self.reply::<call::UserDelete>(users::delete(self, args).await)
            }
            Request::BackupStart(args) => {
                self.reply::<call::BackupStart>(jobs::start_backup(self, args).await)
            }
            Request::BackupList(_) => {
                self.reply::<call::BackupList>(jobs::list_backups(self).await)
            }
            Request::BackupDelete(args) => {
                self.reply::<call::BackupDelete>(jobs::delete_backup(self, args).await)
            }
            Request::RestoreStart(args) => {
                self.reply::<call::RestoreStart>(jobs::start_restore(self, args).await)
            }
            Request::JobsList(args) => self.reply::<call::JobsList>(jobs::list(self, args)),
            Request::JobsShow(args) => self.reply::<call::JobsShow>(jobs::show(self, args)),
            Request::JobsCancel(args) => self.reply::<call::JobsCancel>(jobs::cancel(self, args)),
            Request::SyncAttach(args) => {
                self.reply::<call::SyncAttach>(sync::attach(self, args).await)
            }
            Request::SyncCreate(args) => {
                self.reply::<call::SyncCreate>(sync::create(self, args).await)
            }
            Request::SyncApply(args) => {
                self.reply::<call::SyncApply>(sync::apply(self, args).await)
            }
            Request::SyncReport(args) => {
                self.reply::<call::SyncReport>(sync::report(self, args).await)
            }
            Request::SyncStatus(_) => self.reply::<call::SyncStatus>(sync::status(self)),
            Request::SyncDetach(args) => {
                self.reply::<call::SyncDetach>(sync::detach(self, args).await)
            }
            Request::MirrorBootstrap(_) => mirror::bootstrap(self).await,
            Request::MirrorFollow(args) => mirror::follow(self, args).await,
            Request::MirrorForward(args) => mirror::forward(self, args).await,
            Request::MirrorPromote(args) => self.reply::<call::MirrorPromote>(
                crate::ops::mirror::promote::promote(&self.shared, args).await,
            ),
            Request::MirrorHandoff(args) => self.reply::<call::MirrorHandoff>(
                crate::ops::mirror::promote::handoff(&self.shared, args).await,
            ),
            Request::Login(_) | Request::Auth(_) | Request::Logout(_) | Request::WhoAmI(_) => {
                Err(WireError::new(
                    ErrorCode::Internal,
                    format!(
                        "{} is a session method: the connection runs it",
                        self.method
                    ),
                ))
            }
        }
    }

    /// Checks that the caller may do what the call needs; returns the caller's record
    /// when there is one.
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

    /// How many bytes of keys and values a page of `scan`, `find` or `changes` may hold:
    /// its answer must fit in a frame the client accepts (the frame limit, less room for
    /// the message around them), and memory stays bounded whatever the values.
    fn answer_budget(&self) -> usize {
        self.shared
            .settings()
            .max_frame_bytes
            .saturating_sub(ANSWER_ENVELOPE_BYTES)
    }

    /// The user making the call, for logs and records (`-` when anonymous).
    fn user(&self) -> &str {
        self.identity.as_ref().map_or("-", |i| i.user.as_str())
    }

    /// On a mirror, a read while it bootstraps again, or lags beyond `[mirror]
    /// max_lag_secs`, gets the lag (`status`, `usage`, the session calls, the calls
    /// that change this service alone and the mirror's own streams always answer).
    fn check_mirror_lag(&self) -> Result<(), WireError> {
        let Some(mirror) = self.shared.mirror() else {
            return Ok(());
        };
        let exempt = self.method.kind() == MethodKind::Session
            || self.method.effect() == Effect::Local
            || matches!(
                self.method,
                Method::Status | Method::Usage | Method::MirrorBootstrap | Method::MirrorFollow
            );
        if exempt {
            return Ok(());
        }
        mirror.check_serving()?;
        match self.shared.settings().mirror_max_lag {
            Some(max_lag) => mirror.check_lag(max_lag),
            None => Ok(()),
        }
    }

    /// While a restore runs or the service is DOWN, only admins get through (and
    /// `status`); in READ_ONLY (the admin's or automatic), non-admin writes are refused.
    fn check_available(&self) -> Result<(), WireError> {
        if self.method == Method::Status {
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
        match health::effective_mode(status.mode, !reasons.is_empty()) {
            ServiceMode::ReadWrite => Ok(()),
            ServiceMode::Down => Err(down_error(&status)),
            ServiceMode::ReadOnly if self.method.kind() == MethodKind::Write => {
                let mut parts = Vec::new();
                if status.mode == ServiceMode::ReadOnly {
                    parts.push(if status.current_message.is_empty() {
                        "the service is read-only".to_string()
                    } else {
                        status.current_message.clone()
                    });
                }
                if !reasons.is_empty() {
                    parts.push(health::read_only_message(&reasons));
                }
                Err(WireError::new(ErrorCode::ReadOnly, parts.join("; ")))
            }
            ServiceMode::ReadOnly => Ok(()),
        }
    }
}
