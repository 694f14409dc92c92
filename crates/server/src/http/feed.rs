//! `GET /{db}/_changes?feed=continuous|eventsource`: the native continuous feed, written
//! as newline-delimited JSON (one change or heartbeat per line, then a last line
//! `{"type": "end", "reason", "last_seq"}`) or as server-sent events (`event: change`,
//! `event: heartbeat`, then `event: end`). The feed ends as the native one does (the
//! database going offline, a restore, the shutdown); a client that goes away cancels it.

use std::convert::Infallible;

use axum::body::Body;
use bytes::Bytes;
use cairn_proto::{Message, WireError};
use serde_json::{json, Value as Json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::json::to_json;

/// How a continuous feed is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedFormat {
    Lines,
    EventSource,
}

impl FeedFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            FeedFormat::Lines => "application/x-ndjson",
            FeedFormat::EventSource => "text/event-stream",
        }
    }

    fn write(self, kind: &str, value: &Json) -> Bytes {
        match self {
            FeedFormat::Lines => Bytes::from(format!("{value}\n")),
            FeedFormat::EventSource => Bytes::from(format!("event: {kind}\ndata: {value}\n\n")),
        }
    }
}

/// The body of a feed whose messages arrive on `messages`; dropping the body (the
/// client left) cancels the call.
pub fn body(
    format: FeedFormat,
    messages: mpsc::Receiver<Vec<u8>>,
    cancel: CancellationToken,
) -> Body {
    let state = (messages, cancel.drop_guard(), false);
    let stream =
        futures_util::stream::unfold(state, move |(mut messages, guard, done)| async move {
            if done {
                return None;
            }
            let body = messages.recv().await?;
            let (bytes, done) = item(format, &body);
            Some((Ok::<_, Infallible>(bytes), (messages, guard, done)))
        });
    Body::from_stream(stream)
}

/// One message of the feed as written, and whether it ends the feed.
fn item(format: FeedFormat, body: &[u8]) -> (Bytes, bool) {
    match Message::decode(body) {
        Ok(Message::Item { value, .. }) => {
            let value = to_json(value);
            let kind = value["type"].as_str().unwrap_or("change").to_string();
            (format.write(&kind, &value), false)
        }
        Ok(Message::End { value, .. }) => {
            let mut value = to_json(value);
            value["type"] = json!("end");
            (format.write("end", &value), true)
        }
        Ok(Message::Error { error, .. }) => (format.write("error", &error_json(&error)), true),
        Ok(Message::Result { value, .. }) => (format.write("result", &to_json(value)), true),
        Ok(Message::Call { .. } | Message::Cancel { .. }) | Err(_) => {
            let error = WireError::new(cairn_proto::ErrorCode::Internal, "the feed broke");
            (format.write("error", &error_json(&error)), true)
        }
    }
}

/// An error as every HTTP answer writes one.
pub fn error_json(error: &WireError) -> Json {
    let mut body = json!({"error": error.code.as_str(), "reason": error.message});
    if let Some(details) = &error.details {
        body["details"] = to_json(details.clone());
    }
    body
}
