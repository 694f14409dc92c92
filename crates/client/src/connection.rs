//! One connection to a service, shared by every clone of a `Client`: a writer task that
//! sends frames (gathering those already queued into one flush) and a reader task that
//! matches each answer to its call by id. Calls get increasing ids (0 is left to the
//! service for errors about the whole connection) and wait in a map, id → pending call: a
//! oneshot for a plain call, an unbounded channel for a stream, whose items are buffered
//! until its reader takes them. At most `max_calls` calls are in flight, as the service
//! allows; the others wait for a slot. When the connection ends, every pending call and
//! every later one fails with the reason it ended. A plain call's result and a stream's
//! items are handed over as the bytes of their frames (`Answer`), so that typed calls
//! and feeds decode them straight into their types.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use cairn_proto::{push_frame, FrameCodec, FrameError, Message, Method, MethodKind};
use futures_util::StreamExt;
use rmpv::Value;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender, WeakUnboundedSender};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::error::{ClientError, Closure};
use crate::transport;

/// The writer flushes at least this often while frames keep coming.
const FLUSH_BYTES: usize = 64 << 10;

/// True for the methods the service runs in order on the connection itself, outside the
/// limit of calls in flight; they take no slot here either.
fn is_session_method(name: &str) -> bool {
    Method::parse(name).is_some_and(|m| m.kind() == MethodKind::Session)
}

/// What a stream's reader receives.
#[derive(Debug)]
pub(crate) enum Event {
    Item(Answer),
    End(Value),
    Error(ClientError),
}

/// The result of a plain call or an item of a stream: a value, or the frame it came in
/// and where its value's msgpack begins.
#[derive(Debug)]
pub(crate) enum Answer {
    Value(Value),
    Encoded { body: Bytes, at: usize },
}

impl Answer {
    /// The result as a `Value`.
    pub(crate) fn into_value(self, method: &str) -> Result<Value, ClientError> {
        match self {
            Answer::Value(value) => Ok(value),
            Answer::Encoded { body, at } => {
                let mut rest = &body[at..];
                let value = rmpv::decode::read_value_with_max_depth(&mut rest, MAX_VALUE_DEPTH)
                    .map_err(|e| unparsable(method, &e))?;
                if !rest.is_empty() {
                    return Err(unparsable(method, &"bytes after the value"));
                }
                Ok(value)
            }
        }
    }

    /// The msgpack of the answer: the frame's bytes from where its value begins, or a
    /// `Value`'s encoding.
    pub(crate) fn into_msgpack(self) -> Bytes {
        match self {
            Answer::Encoded { body, at } => body.slice(at..),
            Answer::Value(value) => {
                let mut out = Vec::new();
                rmpv::encode::write_value(&mut out, &value).expect("writing to a Vec cannot fail");
                Bytes::from(out)
            }
        }
    }

    /// The result decoded into `T`: straight from the frame, or, for what only the
    /// `Value` reader takes (a reserved marker reads as nil there), through a `Value`.
    pub(crate) fn decode<T: DeserializeOwned>(self, method: &str) -> Result<T, ClientError> {
        let (body, at) = match self {
            Answer::Value(value) => return crate::client::decode(method, value),
            Answer::Encoded { body, at } => (body, at),
        };
        let value = &body[at..];
        if cairn_proto::value_len::value_len(value) == Some(value.len()) {
            // Borrowing from the frame: strings are read in place, not copied first.
            let mut decoder = rmp_serde::Deserializer::from_read_ref(value);
            decoder.set_max_depth(MAX_VALUE_DEPTH);
            if let Ok(decoded) = T::deserialize(&mut decoder) {
                return Ok(decoded);
            }
        }
        crate::client::decode(method, Answer::Encoded { body, at }.into_value(method)?)
    }
}

/// Deepest nesting accepted in a result (as in any message).
const MAX_VALUE_DEPTH: usize = cairn_proto::message::MAX_MESSAGE_DEPTH;

fn unparsable(method: &str, error: &dyn std::fmt::Display) -> ClientError {
    ClientError::Protocol(format!(
        "the answer to `{method}` does not parse ({error}): is the service of another version?"
    ))
}

enum Waiter {
    Call(oneshot::Sender<Result<Answer, ClientError>>),
    Stream(UnboundedSender<Event>),
    /// A plain call the service answered with a stream: it was canceled and its answers
    /// are dropped until the stream ends.
    Abandoned,
}

impl Waiter {
    fn fail(self, error: ClientError) {
        match self {
            Waiter::Call(answer) => {
                let _ = answer.send(Err(error));
            }
            Waiter::Stream(events) => {
                let _ = events.send(Event::Error(error));
            }
            Waiter::Abandoned => {}
        }
    }
}

/// A call in flight. Its slot is given back when the service has finished it.
struct Pending {
    method: String,
    waiter: Waiter,
    _slot: Option<OwnedSemaphorePermit>,
}

struct State {
    pending: HashMap<u64, Pending>,
    closure: Option<Closure>,
}

/// What the tasks and the callers share.
struct Shared {
    state: Mutex<State>,
    slots: Arc<Semaphore>,
    closed: CancellationToken,
    /// The redacted URL, for messages.
    url: String,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn closure_error(&self) -> ClientError {
        self.state()
            .closure
            .as_ref()
            .map_or(ClientError::Closed, Closure::to_error)
    }

    /// Ends the connection: the first reason given is kept; every pending call fails with it.
    fn close(&self, closure: Closure) {
        let (pending, closure) = {
            let mut state = self.state();
            let closure = state.closure.get_or_insert(closure).clone();
            (std::mem::take(&mut state.pending), closure)
        };
        self.slots.close();
        self.closed.cancel();
        tracing::debug!(url = %self.url, reason = %closure.to_error(), "connection closed");
        for (_, call) in pending {
            call.waiter.fail(closure.to_error());
        }
    }

    /// Hands one message from the service to its call; `Err` ends the connection.
    fn dispatch(
        &self,
        message: Message,
        outgoing: &WeakUnboundedSender<Vec<u8>>,
    ) -> Result<(), Closure> {
        let mut state = self.state();
        match message {
            Message::Error { id: 0, error } => return Err(Closure::Service(error)),
            Message::Item { id, value } => item(&mut state, id, Answer::Value(value), outgoing),
            Message::Result { id, value } => finish(&mut state, id, Answer::Value(value), false),
            Message::End { id, value } => finish(&mut state, id, Answer::Value(value), true),
            Message::Error { id, error } => match state.pending.remove(&id) {
                Some(pending) => pending.waiter.fail(ClientError::Service(error)),
                None => tracing::debug!(id, "error of a call no longer in flight"),
            },
            Message::Call { .. } | Message::Cancel { .. } => {
                return Err(Closure::Protocol(
                    "the service sent a call or a cancel, which only clients send: is it a Cairn service?"
                        .to_string(),
                ))
            }
        }
        Ok(())
    }
}

/// The error of a plain call that the service answered with a stream.
fn streamed(method: &str) -> ClientError {
    ClientError::Protocol(format!(
        "the service answers `{method}` with a stream: call it as a stream"
    ))
}

/// Hands a call its answer, or a stream its end.
fn finish(state: &mut State, id: u64, value: Answer, ended_stream: bool) {
    let Some(pending) = state.pending.remove(&id) else {
        tracing::debug!(id, "answer to a call no longer in flight");
        return;
    };
    match pending.waiter {
        Waiter::Call(answer) if ended_stream => {
            let _ = answer.send(Err(streamed(&pending.method)));
        }
        Waiter::Call(answer) => {
            let _ = answer.send(Ok(value));
        }
        Waiter::Stream(events) => {
            let _ = events.send(match value.into_value(&pending.method) {
                Ok(value) => Event::End(value),
                Err(error) => Event::Error(error),
            });
        }
        Waiter::Abandoned => {}
    }
}

/// Hands an item to its stream (a plain call answered with a stream is canceled).
fn item(state: &mut State, id: u64, value: Answer, outgoing: &WeakUnboundedSender<Vec<u8>>) {
    match state.pending.get_mut(&id) {
        Some(Pending {
            waiter: Waiter::Stream(events),
            ..
        }) => {
            let _ = events.send(Event::Item(value));
        }
        Some(
            pending @ Pending {
                waiter: Waiter::Call(_),
                ..
            },
        ) => {
            let waiter = std::mem::replace(&mut pending.waiter, Waiter::Abandoned);
            waiter.fail(streamed(&pending.method));
            if let Some(outgoing) = outgoing.upgrade() {
                let _ = outgoing.send(Message::Cancel { id }.encode());
            }
        }
        Some(_) => {}
        None => tracing::debug!(id, "item of a call no longer in flight"),
    }
}

/// The client's side of one connection.
pub(crate) struct Connection {
    shared: Arc<Shared>,
    outgoing: UnboundedSender<Vec<u8>>,
    next_id: AtomicU64,
    max_frame: usize,
}

impl Connection {
    /// Serves the connection `stream` with a reader and a writer task. The writer closes
    /// its side once every `Connection` handle is gone.
    pub(crate) fn start<S>(stream: S, url: String, max_frame: usize, max_calls: usize) -> Connection
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (reader, writer) = tokio::io::split(stream);
        let (outgoing, queued) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending: HashMap::new(),
                closure: None,
            }),
            slots: Arc::new(Semaphore::new(max_calls.max(1))),
            closed: CancellationToken::new(),
            url,
        });
        tokio::spawn(write_frames(shared.clone(), writer, queued));
        tokio::spawn(read_messages(
            shared.clone(),
            reader,
            max_frame,
            outgoing.downgrade(),
        ));
        Connection {
            shared,
            outgoing,
            next_id: AtomicU64::new(1),
            max_frame: max_frame.min(u32::MAX as usize),
        }
    }

    /// Calls `method` and waits for its one answer.
    pub(crate) async fn call(&self, method: &str, args: Value) -> Result<Value, ClientError> {
        self.call_with(method, |id| {
            Message::Call {
                id,
                method: method.to_string(),
                args,
            }
            .encode()
        })
        .await?
        .into_value(method)
    }

    /// Calls `method` with typed arguments, encoded straight into the call's body.
    pub(crate) async fn call_typed<T: serde::Serialize>(
        &self,
        method: &str,
        args: &T,
    ) -> Result<Answer, ClientError> {
        self.call_with(method, |id| cairn_proto::encode_call(id, method, args))
            .await
    }

    /// Calls `method` with the body `encode` makes for the call's id.
    async fn call_with(
        &self,
        method: &str,
        encode: impl FnOnce(u64) -> Vec<u8>,
    ) -> Result<Answer, ClientError> {
        let (answer, answered) = oneshot::channel();
        self.begin(method, encode, Waiter::Call(answer)).await?;
        answered
            .await
            .unwrap_or_else(|_| Err(self.shared.closure_error()))
    }

    /// Calls `method` as a stream: its id and the channel its items and end arrive on.
    pub(crate) async fn stream(
        &self,
        method: &str,
        args: Value,
    ) -> Result<(u64, UnboundedReceiver<Event>), ClientError> {
        let (events, received) = mpsc::unbounded_channel();
        let encode = |id| {
            Message::Call {
                id,
                method: method.to_string(),
                args,
            }
            .encode()
        };
        let id = self.begin(method, encode, Waiter::Stream(events)).await?;
        Ok((id, received))
    }

    /// Asks the service to stop the call `id`; it ends with `end` (or its answer).
    pub(crate) fn cancel(&self, id: u64) {
        let _ = self.outgoing.send(Message::Cancel { id }.encode());
    }

    /// Why the connection ended ([`ClientError::Closed`] if it has not).
    pub(crate) fn closure_error(&self) -> ClientError {
        self.shared.closure_error()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.shared.closed.is_cancelled()
    }

    /// Takes a slot, registers the call under a new id and queues the body `encode`
    /// makes for it.
    async fn begin(
        &self,
        method: &str,
        encode: impl FnOnce(u64) -> Vec<u8>,
        waiter: Waiter,
    ) -> Result<u64, ClientError> {
        let slot = if is_session_method(method) {
            None
        } else {
            let slot = self.shared.slots.clone().acquire_owned().await;
            Some(slot.map_err(|_| self.shared.closure_error())?)
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = encode(id);
        if body.len() > self.max_frame {
            return Err(ClientError::Protocol(format!(
                "the call of `{method}` takes {} bytes, over the frame limit of {} bytes: the service would close the connection; send smaller values",
                body.len(),
                self.max_frame
            )));
        }
        {
            let mut state = self.shared.state();
            if let Some(closure) = &state.closure {
                return Err(closure.to_error());
            }
            state.pending.insert(
                id,
                Pending {
                    method: method.to_string(),
                    waiter,
                    _slot: slot,
                },
            );
        }
        if self.outgoing.send(body).is_err() {
            self.shared.state().pending.remove(&id);
            return Err(self.shared.closure_error());
        }
        Ok(id)
    }
}

/// Reads frames and hands each message to its call until the connection ends.
async fn read_messages<R: AsyncRead>(
    shared: Arc<Shared>,
    reader: R,
    max_frame: usize,
    outgoing: WeakUnboundedSender<Vec<u8>>,
) {
    let mut frames = std::pin::pin!(FramedRead::new(reader, FrameCodec::new(max_frame)));
    let closure = loop {
        let next = tokio::select! {
            next = frames.next() => next,
            _ = shared.closed.cancelled() => break Closure::Closed,
        };
        let body = match next {
            None => break Closure::Closed,
            Some(Ok(body)) => body,
            Some(Err(FrameError::TooLarge { len, limit })) => {
                break Closure::Protocol(format!(
                    "the service sent a frame of {len} bytes, over this client's limit of {limit} bytes: raise the client's frame limit"
                ))
            }
            Some(Err(FrameError::Io(error))) => break transport::io_closure(&shared.url, error),
        };
        if let Some((id, at)) = cairn_proto::value_at(&body, "result") {
            let answer = Answer::Encoded {
                body: body.freeze(),
                at,
            };
            finish(&mut shared.state(), id, answer, false);
            continue;
        }
        if let Some((id, at)) = cairn_proto::value_at(&body, "item") {
            let answer = Answer::Encoded {
                body: body.freeze(),
                at,
            };
            item(&mut shared.state(), id, answer, &outgoing);
            continue;
        }
        let message = match Message::decode(&body) {
            Ok(message) => message,
            Err(error) => break Closure::Protocol(format!("the service sent a {error}")),
        };
        if let Err(closure) = shared.dispatch(message, &outgoing) {
            break closure;
        }
    };
    shared.close(closure);
}

/// Writes queued calls and cancels as frames; closes its side when every handle is gone.
async fn write_frames<W: AsyncWrite>(
    shared: Arc<Shared>,
    writer: W,
    mut queued: UnboundedReceiver<Vec<u8>>,
) {
    let mut writer = std::pin::pin!(writer);
    let mut buffer = Vec::with_capacity(FLUSH_BYTES);
    loop {
        let body = tokio::select! {
            body = queued.recv() => body,
            _ = shared.closed.cancelled() => return,
        };
        let Some(body) = body else {
            let _ = writer.shutdown().await;
            return;
        };
        frame(&mut buffer, &body);
        // Callers woken together (by a read that answered many of them) call again
        // together: let them queue their calls before this flush, so that they leave in
        // one write instead of one each (a write costs as much as the whole loopback
        // delivery of a small frame).
        tokio::task::yield_now().await;
        while buffer.len() < FLUSH_BYTES {
            match queued.try_recv() {
                Ok(body) => frame(&mut buffer, &body),
                Err(_) => break,
            }
        }
        let written = match writer.write_all(&buffer).await {
            Ok(()) => writer.flush().await,
            Err(error) => Err(error),
        };
        if let Err(error) = written {
            shared.close(transport::io_closure(&shared.url, error));
            return;
        }
        buffer.clear();
        if buffer.capacity() > 4 * FLUSH_BYTES {
            buffer = Vec::with_capacity(FLUSH_BYTES);
        }
    }
}

/// Appends one frame; `begin` kept the body under the frame limit, so it always fits.
fn frame(buffer: &mut Vec<u8>, body: &[u8]) {
    push_frame(buffer, body).expect("a body under the frame limit fits in a frame");
}
