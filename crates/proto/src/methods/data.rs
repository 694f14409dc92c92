//! The document methods: `get`, `put`, `delete`, `batch`, `scan` and `find` (by a
//! secondary index). Keys and values are msgpack values embedded as they are.

use rmpv::Value;
use serde::{Deserialize, Serialize};

use crate::values::Op;

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

/// One operation of `batch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchOp {
    pub op: Op,
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
