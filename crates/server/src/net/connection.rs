//! One connection, over TLS or a unix socket: frames in, calls dispatched concurrently
//! (at most `max_calls_per_connection` at once), answers out through one writer task
//! that batches frames before each flush. Before authentication a frame may be at most
//! 64 KiB and the connection is closed after `[limits] unauthenticated_idle_secs` of
//! silence (10 s by default); a frame must arrive whole within that time too (`[limits]
//! frame_timeout_secs` after authentication, 60 s by default), so a client that trickles
//! bytes cannot pin a connection; a frame
//! over the limit or a body that is not a message closes the connection with an error,
//! and only it. A call laid out as clients write it has its arguments decoded straight
//! from the frame into their type; anything else goes through a `Value`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_proto::{
    push_frame, ErrorCode, FrameCodec, FrameError, Message, Method, MethodKind, Request, WireError,
    MAX_UNAUTHENTICATED_FRAME,
};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::accept::Slot;
use crate::auth::{Caller, Identity};
use crate::methods::session::{self, ConnectionChange};
use crate::methods::{CallArgs, CallContext, Outbox, ScanAhead};
use crate::ops::shared::Shared;

/// How often a connection checks that the frame it is reading keeps coming.
const TRICKLE_CHECK: Duration = Duration::from_secs(1);

/// Answers waiting for the writer before callers are slowed down.
const OUTBOX_DEPTH: usize = 1024;

/// The writer flushes at least this often while answers keep coming.
const FLUSH_BYTES: usize = 64 << 10;

/// Serves one connection until the peer leaves, breaks the protocol, stays silent while
/// unauthenticated, or the service shuts down.
/// A connection as it was accepted: who its handshake or socket says it is, its peer,
/// and the unauthenticated slot it holds until it authenticates.
pub struct NewConnection {
    identity: Option<Identity>,
    peer: String,
    unauthenticated: Option<Slot>,
}

impl NewConnection {
    pub fn new(identity: Option<Identity>, peer: String, unauthenticated: Option<Slot>) -> Self {
        NewConnection {
            identity,
            peer,
            unauthenticated,
        }
    }
}

pub async fn serve<S>(shared: Arc<Shared>, stream: S, accepted: NewConnection)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let NewConnection {
        identity,
        peer,
        unauthenticated,
    } = accepted;
    let (reader, writer) = tokio::io::split(stream);
    let (outbox, outgoing) = mpsc::channel(OUTBOX_DEPTH);
    let writer_task = tokio::spawn(write_frames(writer, outgoing));
    // The limit in force when the connection opened (a reload changes it for new ones).
    let max_calls = shared.settings().max_calls_per_connection;
    let mut connection = Connection {
        shared: shared.clone(),
        identity,
        caller: None,
        outbox,
        calls: TaskTracker::new(),
        in_flight: Arc::new(Semaphore::new(max_calls)),
        max_calls,
        cancels: Arc::default(),
        peer,
        unauthenticated,
        scan_ahead: Arc::default(),
    };
    let peer_left = connection.read_calls(reader).await;
    if peer_left {
        // Nobody reads what the calls in flight would still send: streams and
        // longpolls end now, not at their next heartbeat.
        for token in connection.cancels.lock().expect("cancels lock").values() {
            token.cancel();
        }
    }
    connection.calls.close();
    if tokio::time::timeout(shared.settings().shutdown_grace, connection.calls.wait())
        .await
        .is_err()
    {
        tracing::warn!(peer = %connection.peer, "calls still running after the grace period; closing");
    }
    drop(connection);
    let _ = writer_task.await;
}

struct Connection {
    shared: Arc<Shared>,
    identity: Option<Identity>,
    /// The authenticated user's record, kept while no user changes.
    caller: Option<Arc<Caller>>,
    outbox: Outbox,
    calls: TaskTracker,
    in_flight: Arc<Semaphore>,
    max_calls: usize,
    cancels: Arc<Mutex<HashMap<u64, CancellationToken>>>,
    peer: String,
    /// Held until the connection authenticates (`max_unauthenticated_connections`).
    unauthenticated: Option<Slot>,
    scan_ahead: Arc<ScanAhead>,
}

impl Connection {
    async fn send(&self, message: Message) {
        let _ = self.outbox.send(message.encode()).await;
    }

    async fn send_error(&self, id: u64, code: ErrorCode, message: impl Into<String>) {
        self.send(Message::Error {
            id,
            error: WireError::new(code, message),
        })
        .await;
    }

    fn frame_limit(&self) -> usize {
        if self.identity.is_some() {
            self.shared.settings().max_frame_bytes
        } else {
            MAX_UNAUTHENTICATED_FRAME
        }
    }

    /// Reads and starts calls until the connection ends; true when the peer left (its
    /// side closed or failed), false when the service closed it.
    async fn read_calls<R: AsyncRead + Unpin>(&mut self, reader: R) -> bool {
        let mut frames = FramedRead::new(reader, FrameCodec::new(self.frame_limit()));
        let idle = self.shared.settings().unauthenticated_idle;
        let frame_timeout = self.shared.settings().frame_timeout;
        // When the frame being read began to arrive: a frame must arrive whole within
        // the unauthenticated idle time before authentication, the frame timeout after.
        let mut partial_since: Option<Instant> = None;
        // Silence until then closes an unauthenticated connection.
        let mut quiet_until = tokio::time::Instant::now() + idle;
        let mut check = tokio::time::interval(TRICKLE_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = tokio::select! {
                next = frames.next() => next,
                _ = check.tick() => {
                    if frames.read_buffer().is_empty() {
                        partial_since = None;
                        continue;
                    }
                    let since = *partial_since.get_or_insert_with(Instant::now);
                    let allowed = if self.identity.is_some() { frame_timeout } else { idle };
                    if since.elapsed() < allowed {
                        continue;
                    }
                    tracing::info!(peer = %self.peer, "a frame trickled in too slowly; closing");
                    self.send_error(
                        0,
                        ErrorCode::BadRequest,
                        format!("a frame must arrive whole within {} s", allowed.as_secs()),
                    )
                    .await;
                    return false;
                }
                _ = tokio::time::sleep_until(quiet_until), if self.identity.is_none() => {
                    tracing::debug!(peer = %self.peer, "closing an idle unauthenticated connection");
                    self.send_error(
                        0,
                        ErrorCode::Unauthenticated,
                        format!("closed after {} s without authentication", idle.as_secs()),
                    )
                    .await;
                    return false;
                }
                _ = self.shared.shutdown.cancelled() => return false,
            };
            quiet_until = tokio::time::Instant::now() + idle;
            let body = match next {
                None => return true,
                Some(Ok(body)) => body,
                Some(Err(FrameError::TooLarge { len, limit })) => {
                    tracing::info!(peer = %self.peer, len, limit, "frame over the limit; closing");
                    self.send_error(
                        0,
                        ErrorCode::FrameTooLarge,
                        format!("a frame of {len} bytes is over this connection's limit of {limit} bytes"),
                    )
                    .await;
                    return false;
                }
                Some(Err(FrameError::Io(error))) => {
                    tracing::debug!(peer = %self.peer, %error, "connection read failed");
                    return true;
                }
            };
            if let Some((id, method, request, at)) = decoded_call(body.as_ref()) {
                let msgpack = body.freeze().slice(at..);
                let args = CallArgs::Decoded {
                    request: Box::new(request),
                    msgpack,
                };
                self.call(id, method, args).await;
                frames.decoder_mut().set_max_frame(self.frame_limit());
                continue;
            }
            match Message::decode(&body) {
                Ok(Message::Call { id, method, args }) => {
                    match Method::parse(&method) {
                        Some(known) => self.call(id, known, CallArgs::Value(args)).await,
                        None => {
                            self.send_error(
                                id,
                                ErrorCode::UnknownMethod,
                                format!("no method {method:?}; see PROTOCOL.md"),
                            )
                            .await;
                        }
                    }
                    frames.decoder_mut().set_max_frame(self.frame_limit());
                }
                Ok(Message::Cancel { id }) => {
                    let token = self.cancels.lock().expect("cancels lock").get(&id).cloned();
                    if let Some(token) = token {
                        token.cancel();
                    }
                }
                Ok(other) => {
                    let id = other.id();
                    self.send_error(
                        id,
                        ErrorCode::BadRequest,
                        "a client sends only call and cancel messages",
                    )
                    .await;
                }
                Err(error) => {
                    tracing::info!(peer = %self.peer, %error, "malformed message; closing");
                    self.send_error(0, ErrorCode::BadRequest, error.to_string())
                        .await;
                    return false;
                }
            }
        }
    }

    fn new_call(&self, id: u64, method: Method, cancel: CancellationToken) -> CallContext {
        CallContext {
            shared: self.shared.clone(),
            identity: self.identity.clone(),
            caller: self.caller.clone(),
            id,
            method,
            outbox: self.outbox.clone(),
            cancel,
            scan_ahead: Some(self.scan_ahead.clone()),
        }
    }

    /// Applies what a session method changed about the connection.
    fn apply(&mut self, change: ConnectionChange) {
        match change {
            ConnectionChange::Authenticated(identity) => {
                tracing::info!(peer = %self.peer, user = %identity.user, via = identity.via.as_str(), "authenticated");
                self.identity = Some(identity);
                self.unauthenticated = None;
            }
            ConnectionChange::LoggedOut => self.identity = None,
            ConnectionChange::None => {}
        }
    }

    /// Reads the caller's user record again when a user changed since it was read.
    fn refresh_caller(&mut self) {
        let Some(identity) = &self.identity else {
            self.caller = None;
            return;
        };
        let Ok(store) = self.shared.store() else {
            // A restore has the store closed for a moment: the caller read before stays
            // (the reopened store's users generation differs, so it is read again after).
            if self
                .caller
                .as_ref()
                .is_some_and(|c| c.identity != *identity)
            {
                self.caller = None;
            }
            return;
        };
        let fresh = self
            .caller
            .as_ref()
            .is_some_and(|c| c.generation == store.users_generation() && c.identity == *identity);
        if !fresh {
            self.caller = Caller::load(&store, identity).ok().flatten().map(Arc::new);
        }
    }

    async fn call(&mut self, id: u64, method: Method, args: CallArgs) {
        match method.kind() {
            MethodKind::Session => {
                let args = match args.into_value() {
                    Ok(args) => args,
                    Err(error) => {
                        self.send(Message::Error { id, error }).await;
                        return;
                    }
                };
                // Calls that change who the connection is run in order, one at a time.
                let answer = session::serve(
                    &self.shared,
                    self.identity.as_ref(),
                    method,
                    args,
                    peer_ip(&self.peer),
                )
                .await;
                let message = match answer {
                    Ok((value, change)) => {
                        self.apply(change);
                        Message::Result { id, value }
                    }
                    Err(error) => Message::Error { id, error },
                };
                self.send(message).await;
                return;
            }
            MethodKind::Inline => {
                // Short reads are answered here, without a task of their own.
                self.refresh_caller();
                let call = self.new_call(id, method, CancellationToken::new());
                if let Some(body) = call.answer(args).await {
                    let _ = self.outbox.send(body).await;
                }
                return;
            }
            MethodKind::Write | MethodKind::Job | MethodKind::Stream | MethodKind::Plain => {
                self.refresh_caller();
            }
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            let limit = self.max_calls;
            self.send_error(
                id,
                ErrorCode::TooManyCalls,
                format!("at most {limit} calls may be in flight on a connection"),
            )
            .await;
            return;
        };
        let cancel = CancellationToken::new();
        let duplicate = {
            let mut cancels = self.cancels.lock().expect("cancels lock");
            let duplicate = cancels.contains_key(&id);
            if !duplicate {
                cancels.insert(id, cancel.clone());
            }
            duplicate
        };
        if duplicate {
            self.send_error(
                id,
                ErrorCode::BadRequest,
                format!("call id {id} is already in flight"),
            )
            .await;
            return;
        }
        let call = self.new_call(id, method, cancel);
        let cancels = self.cancels.clone();
        let outbox = self.outbox.clone();
        self.calls.spawn(async move {
            let last = call.answer(args).await;
            cancels.lock().expect("cancels lock").remove(&id);
            // Free the slot before the answer leaves, so that a client that starts its
            // next call on seeing the answer never finds the slot still taken.
            drop(permit);
            if let Some(body) = last {
                let _ = outbox.send(body).await;
            }
        });
    }
}

/// A call laid out as clients write it, of a method that is not a session method, whose
/// arguments decode straight into their type: its id, its method, its decoded
/// arguments and where their msgpack begins in `body`.
fn decoded_call(body: &[u8]) -> Option<(u64, Method, Request, usize)> {
    let (id, name, at) = cairn_proto::call_args_at(body)?;
    let method = Method::parse(name).filter(|m| m.kind() != MethodKind::Session)?;
    let request = Request::decode_msgpack(method, &body[at..])?;
    Some((id, method, request, at))
}

/// The address of a TCP peer (`None` on a unix socket).
pub fn peer_ip(peer: &str) -> Option<std::net::IpAddr> {
    peer.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
}

/// Writes answers as frames, gathering those already waiting into one flush.
async fn write_frames<W: AsyncWrite + Unpin>(mut writer: W, mut outgoing: mpsc::Receiver<Vec<u8>>) {
    let mut buffer = Vec::with_capacity(FLUSH_BYTES);
    while let Some(body) = outgoing.recv().await {
        frame(&mut buffer, &body);
        while buffer.len() < FLUSH_BYTES {
            match outgoing.try_recv() {
                Ok(body) => frame(&mut buffer, &body),
                Err(_) => break,
            }
        }
        if writer.write_all(&buffer).await.is_err() || writer.flush().await.is_err() {
            return;
        }
        buffer.clear();
    }
    let _ = writer.shutdown().await;
}

/// Appends an answer as a frame; an answer too large for any frame is dropped, logged.
fn frame(buffer: &mut Vec<u8>, body: &[u8]) {
    if let Err(error) = push_frame(buffer, body) {
        tracing::error!(%error, "an answer does not fit in a frame; dropped");
    }
}
