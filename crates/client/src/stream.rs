//! Streaming calls. A [`CallStream`] yields the items of one call as they arrive and
//! ends when the service sends the call's `end` (kept: [`CallStream::end_value`]) or an
//! error. [`CallStream::cancel`] asks the service to stop; the stream then still yields
//! what was already sent and ends with `end`. Dropping a stream before its end cancels
//! it. Items arrive in order and wait in memory until they are taken. A [`FeedStream`]
//! is a continuous change feed: the same, with its items and end decoded.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use cairn_proto::methods::{ChangeEntry, FeedEnd, FeedItem, FeedItems};
use futures_util::Stream;
use rmpv::Value;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::client::{decode, Client};
use crate::connection::{Answer, Event};
use crate::error::ClientError;

/// The items of one streaming call, then its end value.
pub struct CallStream {
    client: Client,
    id: u64,
    method: String,
    events: UnboundedReceiver<Event>,
    end: Option<Value>,
    finished: bool,
    canceled: bool,
}

impl CallStream {
    pub(crate) fn new(
        client: Client,
        id: u64,
        method: &str,
        events: UnboundedReceiver<Event>,
    ) -> CallStream {
        CallStream {
            client,
            id,
            method: method.to_string(),
            events,
            end: None,
            finished: false,
            canceled: false,
        }
    }

    /// The next item; `None` once the stream has ended (see [`CallStream::end_value`]).
    /// An error (the service's, or the connection's) ends the stream.
    pub async fn next(&mut self) -> Option<Result<Value, ClientError>> {
        std::future::poll_fn(|cx| self.poll_item(cx)).await
    }

    /// Asks the service to stop the call; later items already sent still arrive, then
    /// the end. Asking again, or after the end, does nothing.
    pub fn cancel(&mut self) {
        if !self.canceled && !self.finished {
            self.canceled = true;
            self.client.connection().cancel(self.id);
        }
    }

    /// The value of the call's `end` (or of its plain result), once the stream has ended.
    pub fn end_value(&self) -> Option<&Value> {
        self.end.as_ref()
    }

    /// True once the stream has ended, by its end or an error.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The method called.
    pub fn method(&self) -> &str {
        &self.method
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Value, ClientError>>> {
        let item = ready!(self.poll_answer(cx));
        Poll::Ready(item.map(|answer| answer.and_then(|a| a.into_value(&self.method))))
    }

    /// The next item as it arrived (see `poll_item`).
    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Answer, ClientError>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let event = ready!(self.events.poll_recv(cx));
        Poll::Ready(match event {
            Some(Event::Item(answer)) => Some(Ok(answer)),
            Some(Event::End(value)) => {
                self.finished = true;
                self.end = Some(value);
                None
            }
            Some(Event::Error(error)) => {
                self.finished = true;
                Some(Err(error))
            }
            None => {
                self.finished = true;
                Some(Err(self.client.connection().closure_error()))
            }
        })
    }
}

impl Stream for CallStream {
    type Item = Result<Value, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_item(cx)
    }
}

impl Drop for CallStream {
    fn drop(&mut self) {
        self.cancel();
    }
}

impl std::fmt::Debug for CallStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallStream")
            .field("id", &self.id)
            .field("method", &self.method)
            .field("finished", &self.finished)
            .field("canceled", &self.canceled)
            .finish()
    }
}

/// A continuous change feed: changes as they commit and heartbeats, then its end. The
/// client asks for a `batched` feed; the changes of a batch are handed out one by one
/// (a service of format 1 sends them one by one itself).
#[derive(Debug)]
pub struct FeedStream {
    inner: CallStream,
    /// The changes of the last batch not yet handed out.
    batch: VecDeque<ChangeEntry>,
    end: Option<FeedEnd>,
}

impl FeedStream {
    pub(crate) fn new(inner: CallStream) -> FeedStream {
        FeedStream {
            inner,
            batch: VecDeque::new(),
            end: None,
        }
    }

    /// The next change or heartbeat; `None` once the feed has ended (see [`FeedStream::end`]).
    pub async fn next(&mut self) -> Option<Result<FeedItem, ClientError>> {
        std::future::poll_fn(|cx| self.poll_item(cx)).await
    }

    /// Asks the service to end the feed; it ends with the reason `canceled`.
    pub fn cancel(&mut self) {
        self.inner.cancel();
    }

    /// Why and where the feed ended, once it has.
    pub fn end(&self) -> Option<&FeedEnd> {
        self.end.as_ref()
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<FeedItem, ClientError>>> {
        loop {
            if let Some(change) = self.batch.pop_front() {
                return Poll::Ready(Some(Ok(FeedItem::Change(change))));
            }
            let was_finished = self.inner.is_finished();
            let polled = ready!(self.inner.poll_answer(cx));
            let items = polled.map(|item| item.and_then(|a| a.decode(self.inner.method())));
            match items {
                Some(Ok(FeedItems::Changes(changes))) => self.batch = changes.into(),
                Some(Ok(FeedItems::One(item))) => return Poll::Ready(Some(Ok(item))),
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None => return Poll::Ready(self.ended(was_finished)),
            }
        }
    }

    /// What the feed yields once its items are done: its end, decoded (once).
    fn ended(&mut self, was_finished: bool) -> Option<Result<FeedItem, ClientError>> {
        if was_finished {
            return None;
        }
        let value = self.inner.end_value().cloned().unwrap_or(Value::Nil);
        match decode::<FeedEnd>(self.inner.method(), value) {
            Ok(end) => {
                self.end = Some(end);
                None
            }
            Err(error) => Some(Err(error)),
        }
    }
}

impl Stream for FeedStream {
    type Item = Result<FeedItem, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_item(cx)
    }
}
