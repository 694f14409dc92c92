//! The change feed, `changes`: a page of a database's change log, a longpoll, or a
//! continuous stream of items ended by a `FeedEnd`.

use rmpv::Value;
use serde::{Deserialize, Serialize};

use crate::values::{FeedEndReason, FeedKind, Op};

/// `changes`: `feed` is `normal` when absent.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChangesArgs {
    pub db: String,
    #[serde(default)]
    pub since: u64,
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub feed: Option<FeedKind>,
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
    pub op: Op,
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
    pub end_reason: Option<FeedEndReason>,
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
    pub reason: FeedEndReason,
    pub last_seq: u64,
}
