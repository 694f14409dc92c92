//! Answers written straight from stored bytes: the pages of `scan`, `find` and `changes`
//! and the items of a continuous feed, encoded into a message body from the keys and
//! stored msgpack values a read transaction lends, without a `String`, a `Vec` or a
//! `Value` tree per entry and without decoding and re-encoding the stored values. The
//! bytes are those of encoding the typed result (`ScanResult`, `FindResult`,
//! `ChangesResult`, `FeedItem`) as a `Message`; the tests compare them.

use rmp::encode::{write_bool, write_map_len, write_str, write_uint, ValueWriteError};
use rmpv::Value;

use crate::message::begin_body;
use crate::values::{FeedEndReason, Op};

/// What writing msgpack into a `Vec` returned, which cannot be an error.
fn infallible<T, E: std::fmt::Debug>(written: Result<T, E>) {
    written.expect("writing to a Vec cannot fail");
}

/// The entries of a page, encoded one after the other (the array's header is written
/// when the page is finished, once their number is known).
#[derive(Debug, Default)]
pub struct Entries {
    body: Vec<u8>,
    count: u32,
}

impl Entries {
    pub fn new() -> Entries {
        Entries::default()
    }

    /// How many entries the page holds.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The bytes the entries take encoded.
    pub fn encoded_len(&self) -> usize {
        self.body.len()
    }

    /// A document of `scan`: `{key, rev, value}`, `value` the stored msgpack as it is.
    pub fn push_doc(&mut self, key: &str, rev: u64, value: &[u8]) {
        self.doc_fields(3, key, rev, value);
        self.count += 1;
    }

    /// A document of `find`: `{key, rev, value, index_value}`.
    pub fn push_found(&mut self, key: &str, rev: u64, value: &[u8], index_value: &Value) {
        self.doc_fields(4, key, rev, value);
        let out = &mut self.body;
        infallible(write_str(out, "index_value"));
        infallible(rmpv::encode::write_value(out, index_value));
        self.count += 1;
    }

    /// A change of `changes`: `{seq, op, key, value, time_ms}` (`value` nil for a
    /// delete).
    pub fn push_change(&mut self, change: ChangeRef<'_>) {
        infallible(write_map_len(&mut self.body, 5));
        change.write_fields(&mut self.body);
        self.count += 1;
    }

    fn doc_fields(&mut self, fields: u32, key: &str, rev: u64, value: &[u8]) {
        let out = &mut self.body;
        let written = (|| -> Result<(), ValueWriteError> {
            write_map_len(out, fields)?;
            write_str(out, "key")?;
            write_str(out, key)?;
            write_str(out, "rev")?;
            write_uint(out, rev)?;
            write_str(out, "value")?;
            Ok(())
        })();
        infallible(written);
        out.extend_from_slice(value);
    }

    /// Writes `name: [entries]` into `out`.
    fn write_as(&self, out: &mut Vec<u8>, name: &str) {
        infallible(write_str(out, name));
        infallible(rmp::encode::write_array_len(out, self.count));
        out.extend_from_slice(&self.body);
    }
}

/// A change as a read transaction lends it.
#[derive(Debug, Clone, Copy)]
pub struct ChangeRef<'a> {
    pub seq: u64,
    pub op: Op,
    pub key: &'a str,
    /// The stored msgpack of a put's value; `None` for a delete.
    pub value: Option<&'a [u8]>,
    pub time_ms: u64,
}

impl ChangeRef<'_> {
    /// The fields of a `ChangeEntry`, without the map's header.
    fn write_fields(&self, out: &mut Vec<u8>) {
        let written = (|| -> Result<(), ValueWriteError> {
            write_str(out, "seq")?;
            write_uint(out, self.seq)?;
            write_str(out, "op")?;
            write_str(out, self.op.as_str())?;
            write_str(out, "key")?;
            write_str(out, self.key)?;
            write_str(out, "value")?;
            Ok(())
        })();
        infallible(written);
        match self.value {
            Some(value) => out.extend_from_slice(value),
            None => infallible(rmp::encode::write_nil(out)),
        }
        infallible(
            write_str(out, "time_ms").and_then(|()| write_uint(out, self.time_ms).map(|_| ())),
        );
    }
}

/// The start of a message `{t: TAG, id, v: {…fields}}`, with room for `extra` bytes.
fn envelope(tag: &str, id: u64, fields: u32, extra: usize) -> Vec<u8> {
    let mut out = begin_body(tag, id, 3, "v", extra);
    infallible(write_map_len(&mut out, fields));
    out
}

/// The result of `scan` (entries pushed with `push_doc`) or `find` (with
/// `push_found`): `{docs, more}`.
pub fn docs_result(id: u64, docs: &Entries, more: bool) -> Vec<u8> {
    let mut out = envelope("result", id, 2, docs.body.len());
    docs.write_as(&mut out, "docs");
    infallible(write_str(&mut out, "more"));
    infallible(write_bool(&mut out, more));
    out
}

/// The result of a `normal` or `longpoll` `changes`: `{changes, last_seq, epoch}` and
/// `end_reason` when there is one.
pub fn changes_result(
    id: u64,
    changes: &Entries,
    last_seq: u64,
    epoch: u64,
    end_reason: Option<FeedEndReason>,
) -> Vec<u8> {
    let fields = if end_reason.is_some() { 4 } else { 3 };
    let mut out = envelope("result", id, fields, changes.body.len());
    changes.write_as(&mut out, "changes");
    let written = (|| -> Result<(), ValueWriteError> {
        write_str(&mut out, "last_seq")?;
        write_uint(&mut out, last_seq)?;
        write_str(&mut out, "epoch")?;
        write_uint(&mut out, epoch)?;
        if let Some(reason) = end_reason {
            write_str(&mut out, "end_reason")?;
            write_str(&mut out, reason.as_str())?;
        }
        Ok(())
    })();
    infallible(written);
    out
}

/// The item of a continuous feed for one change: `{type: change, seq, op, key, value,
/// time_ms}`.
pub fn change_item(id: u64, change: ChangeRef<'_>) -> Vec<u8> {
    let extra = change.key.len() + change.value.map_or(0, <[u8]>::len) + 48;
    let mut out = envelope("item", id, 6, extra);
    let written = (|| -> Result<(), ValueWriteError> {
        write_str(&mut out, "type")?;
        write_str(&mut out, "change")?;
        Ok(())
    })();
    infallible(written);
    change.write_fields(&mut out);
    out
}

/// An item of a `batched` continuous feed: `{type: "changes", changes}`, the changes
/// pushed with `push_change`.
pub fn changes_item(id: u64, changes: &Entries) -> Vec<u8> {
    let mut out = envelope("item", id, 2, changes.body.len() + 16);
    infallible(write_str(&mut out, "type"));
    infallible(write_str(&mut out, "changes"));
    changes.write_as(&mut out, "changes");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use crate::methods::{
        to_value, ChangeEntry, ChangesResult, Doc, FeedItem, FeedItems, FindResult, FoundDoc,
        ScanResult,
    };

    fn msgpack(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, value).unwrap();
        out
    }

    fn result(id: u64, value: Value) -> Vec<u8> {
        Message::Result { id, value }.encode()
    }

    /// Values of every kind and size class a stored document may hold.
    fn values() -> Vec<Value> {
        vec![
            Value::from(42),
            Value::Nil,
            Value::from("ключ"),
            Value::from(-7),
            Value::from(1.5),
            Value::Binary(vec![7; 70_000]),
            Value::Map(vec![(Value::from("a"), Value::Array(vec![Value::Nil; 20]))]),
        ]
    }

    #[test]
    fn scan_and_find_pages_equal_their_encoded_results() {
        for count in [0usize, 1, 7, 20] {
            for more in [false, true] {
                let mut entries = Entries::new();
                let mut found = Entries::new();
                let mut docs = Vec::new();
                let mut found_docs = Vec::new();
                for (i, value) in values().into_iter().cycle().take(count).enumerate() {
                    let key = "k".repeat(i % 300 + 1);
                    let rev = (i as u64) << (i % 60);
                    let index_value = Value::from(i64::try_from(i).unwrap() - 3);
                    entries.push_doc(&key, rev, &msgpack(&value));
                    found.push_found(&key, rev, &msgpack(&value), &index_value);
                    docs.push(Doc {
                        key: key.clone(),
                        rev,
                        value: value.clone(),
                    });
                    found_docs.push(FoundDoc {
                        key,
                        rev,
                        value,
                        index_value,
                    });
                }
                assert_eq!(entries.len(), count);
                let id = 1 << (count * 3);
                let expected = result(id, to_value(&ScanResult { docs, more }));
                assert_eq!(docs_result(id, &entries, more), expected);
                let expected = result(
                    id,
                    to_value(&FindResult {
                        docs: found_docs,
                        more,
                    }),
                );
                assert_eq!(docs_result(id, &found, more), expected);
            }
        }
    }

    #[test]
    fn changes_pages_and_feed_items_equal_their_encoded_messages() {
        let mut entries = Entries::new();
        let (mut changes, mut singles) = (Vec::new(), Vec::new());
        for (i, value) in values().into_iter().enumerate() {
            let stored = msgpack(&value);
            let delete = i % 3 == 2;
            let change = ChangeRef {
                seq: 100 + i as u64,
                op: if delete { Op::Del } else { Op::Put },
                key: "key",
                value: (!delete).then_some(&stored[..]),
                time_ms: 1_795_000_000_000 + i as u64,
            };
            let entry = ChangeEntry {
                seq: change.seq,
                op: change.op,
                key: "key".to_string(),
                value: (!delete).then(|| value.clone()),
                time_ms: change.time_ms,
            };
            let item = Message::Item {
                id: 9,
                value: to_value(&FeedItem::Change(entry.clone())),
            };
            assert_eq!(change_item(9, change), item.encode(), "change {i}");
            let single = change_item(9, change);
            let (_, at) = crate::value_at(&single, "item").unwrap();
            singles.push(rmp_serde::from_slice::<FeedItem>(&single[at..]).unwrap());
            entries.push_change(change);
            changes.push(entry);
        }
        for end_reason in [None, Some(FeedEndReason::DatabaseOffline)] {
            let expected = result(
                3,
                to_value(&ChangesResult {
                    changes: changes.clone(),
                    last_seq: 106,
                    epoch: u64::MAX,
                    end_reason,
                }),
            );
            assert_eq!(
                changes_result(3, &entries, 106, u64::MAX, end_reason),
                expected
            );
        }
        // A batched feed's item holds them all, and reads back as they read one by one.
        let item = changes_item(4, &entries);
        let Message::Item { id: 4, value } = Message::decode(&item).unwrap() else {
            panic!("an item")
        };
        let expected = Value::Map(vec![
            (Value::from("type"), Value::from("changes")),
            (
                Value::from("changes"),
                Value::Array(changes.iter().map(to_value).collect()),
            ),
        ]);
        assert_eq!(value, expected);
        let (_, at) = crate::value_at(&item, "item").unwrap();
        let FeedItems::Changes(batch) = rmp_serde::from_slice(&item[at..]).unwrap() else {
            panic!("a batch")
        };
        let batch: Vec<_> = batch.into_iter().map(FeedItem::Change).collect();
        assert_eq!(batch, singles);
        assert!(
            rmp_serde::from_slice::<FeedItem>(&item[at..]).is_err(),
            "a batch is not one item"
        );
    }
}
