//! The document methods: `get` (answered with the stored bytes of the value, never
//! decoded), `put`, `delete` and `batch` (through the group-commit writer), `scan` and
//! `find` (pages read on a blocking thread and encoded there from the snapshot's
//! borrowed bytes, `cairn_proto::pages`). Every call is admitted by its database's
//! lifecycle gate first.

use std::ops::Bound;

use cairn_proto::methods::{self, BatchArgs, DeleteArgs, FindArgs, GetArgs, PutArgs, ScanArgs};
use cairn_proto::pages::{self, Entries};
use cairn_proto::values::Op as WireOp;
use cairn_proto::{ErrorCode, WireError};
use cairn_store::{IndexKey, IndexQuery, Op, Scan, ScanRange, Written};
use rmpv::Value;

use crate::error::{bad_request, internal, store_error};
use crate::storage::{blocking, write};

use super::scan_ahead::read_page;
use super::CallContext;

/// The page of `scan` and `find` when the call gives no limit (the store caps a limit
/// at `cairn_store::MAX_SCAN_LIMIT`, and the answer budget bounds a page's bytes). A
/// page costs a round trip (tens of µs) whatever its size: 1000 documents (as a
/// `changes` page) make reading a whole database sequentially cost about as much in
/// round trips as in documents.
const DEFAULT_PAGE_LIMIT: u32 = 1000;

/// A document key off the wire: a msgpack string of 1 to 400 bytes of UTF-8.
pub(super) fn key_text(key: &Value) -> Result<String, WireError> {
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

pub(super) fn encode_value(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, value).expect("writing to a Vec cannot fail");
    out
}

/// `get`, answered with the stored msgpack of the value as it is (no decoding).
pub fn get(call: &CallContext, args: GetArgs) -> Result<Vec<u8>, WireError> {
    let _admission = call.shared.databases.enter(&args.db)?;
    let key = key_text(&args.key)?;
    let doc = call
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
        call.id, &doc.key, doc.rev, &doc.value,
    ))
}

/// Applies `ops` on `db` in one transaction of the group commit; the new revs. A
/// database that follows another service (migration mode) refuses them (the store
/// checks it in the transaction).
async fn apply(call: &CallContext, db: String, ops: Vec<Op>) -> Result<Vec<u64>, WireError> {
    match write(&call.shared.store()?, cairn_store::Write::Batch { db, ops }).await? {
        Written::Batch(revs) => Ok(revs),
        other => Err(internal(format!("a batch answered {other:?}"))),
    }
}

pub async fn put(call: &CallContext, args: PutArgs) -> Result<methods::RevResult, WireError> {
    let _admission = call.shared.databases.enter(&args.db)?;
    let op = Op::Put {
        key: key_text(&args.key)?,
        value: encode_value(&args.value),
        rev: args.rev,
    };
    let rev = apply(call, args.db, vec![op]).await?[0];
    Ok(methods::RevResult { rev })
}

pub async fn delete(call: &CallContext, args: DeleteArgs) -> Result<methods::RevResult, WireError> {
    let _admission = call.shared.databases.enter(&args.db)?;
    let op = Op::Delete {
        key: key_text(&args.key)?,
        rev: args.rev,
    };
    let rev = apply(call, args.db, vec![op]).await?[0];
    Ok(methods::RevResult { rev })
}

pub async fn batch(call: &CallContext, args: BatchArgs) -> Result<methods::BatchResult, WireError> {
    let _admission = call.shared.databases.enter(&args.db)?;
    let ops = args
        .ops
        .iter()
        .map(batch_op)
        .collect::<Result<Vec<_>, _>>()?;
    let revs = apply(call, args.db, ops).await?;
    Ok(methods::BatchResult { revs })
}

fn batch_op(op: &methods::BatchOp) -> Result<Op, WireError> {
    let key = key_text(&op.key)?;
    match op.op {
        WireOp::Put => {
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
        WireOp::Del => Ok(Op::Delete { key, rev: op.rev }),
    }
}

/// `scan`: its result message, written from the snapshot's bytes (the page read ahead
/// after the connection's previous page when it is this one, `super::scan_ahead`).
pub async fn scan(call: &CallContext, args: ScanArgs) -> Result<Vec<u8>, WireError> {
    let _admission = call.shared.databases.enter(&args.db)?;
    let scan = scan_request(&args)?;
    let store = call.shared.store()?;
    let budget = call.answer_budget();
    let metrics = &call.shared.metrics;
    let read_ahead = match &call.scan_ahead {
        Some(ahead) => ahead.take(&args, budget, &store, metrics).await,
        None => None,
    };
    let page = match read_ahead {
        Some(page) => page,
        None => {
            let (store, db, scan) = (store.clone(), args.db.clone(), scan.clone());
            blocking(move || read_page(&store, &db, &scan, budget)).await?
        }
    };
    if let Some(ahead) = &call.scan_ahead {
        let permits = (budget, &call.shared.scan_read_ahead);
        ahead.read_next((&args, &scan), &page, permits, &store, metrics);
    }
    Ok(pages::docs_result(call.id, &page.docs, page.more))
}

fn scan_request(args: &ScanArgs) -> Result<Scan, WireError> {
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
        limit: page_limit(args.limit),
        reverse: args.reverse,
        after: args.after.clone(),
    })
}

/// A page's size: the limit asked for, else the default.
fn page_limit(limit: Option<u32>) -> usize {
    usize::try_from(limit.unwrap_or(DEFAULT_PAGE_LIMIT)).unwrap_or(usize::MAX)
}

/// `find`: its result message, written from the snapshot's bytes.
pub async fn find(call: &CallContext, args: FindArgs) -> Result<Vec<u8>, WireError> {
    let _admission = call.shared.databases.enter(&args.db)?;
    let query = find_query(&args)?;
    let store = call.shared.store()?;
    let (db, id, budget) = (args.db, call.id, call.answer_budget());
    blocking(move || {
        let snapshot = store.snapshot()?;
        let mut docs = Entries::new();
        let more = snapshot
            .database(&db)?
            .find_page(&query, budget, |value, doc| {
                docs.push_found(doc.key, doc.rev, doc.value, &index_key_value(value));
            })?;
        Ok(pages::docs_result(id, &docs, more))
    })
    .await
}

/// An index value off the wire: a string, a number or a boolean.
fn index_key(value: &Value) -> Result<IndexKey, WireError> {
    IndexKey::from_msgpack(&encode_value(value)).map_err(store_error)
}

/// The largest integer a 64-bit float holds exactly (2^53).
const EXACT_FLOAT_INTEGERS: f64 = 9_007_199_254_740_992.0;

/// An index value as sent back: whole numbers that a float holds exactly as integers.
fn index_key_value(key: IndexKey) -> Value {
    match key {
        IndexKey::Bool(b) => Value::from(b),
        IndexKey::Number(n) if n.fract() == 0.0 && n.abs() < EXACT_FLOAT_INTEGERS => {
            #[allow(
                clippy::cast_possible_truncation,
                reason = "whole and within ±2^53: exact"
            )]
            let whole = n as i64;
            Value::from(whole)
        }
        IndexKey::Number(n) => Value::from(n),
        IndexKey::Text(text) => Value::from(text),
    }
}

fn find_query(args: &FindArgs) -> Result<IndexQuery, WireError> {
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
        limit: page_limit(args.limit),
        reverse: args.reverse,
        after,
    })
}
