//! The change feed, `changes`: a page of a database's change log, a longpoll, or a
//! continuous stream of items ended by a `FeedEnd`.

use rmpv::Value;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

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
    /// Continuous: the changes read together come as one `changes` item (a service of
    /// format 1 ignores it and sends them one by one; `FeedStream` takes both).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub batched: bool,
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
/// current last seq. On the wire one map, `type` (`change` or `heartbeat`) beside the
/// variant's fields; it is read by `FeedItemVisitor` in one pass over the map (serde's
/// derive for a tagged enum first copies every field into a buffer, which cost a
/// quarter of a feed reader's time per change).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeedItem {
    Change(ChangeEntry),
    Heartbeat { last_seq: u64 },
}

/// What one item of a continuous feed carries: an item, or (a `batched` feed) the
/// changes read together, `{type: "changes", changes: [...]}`.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedItems {
    One(FeedItem),
    Changes(Vec<ChangeEntry>),
}

impl<'de> Deserialize<'de> for FeedItems {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<FeedItems, D::Error> {
        deserializer.deserialize_map(FeedItemVisitor)
    }
}

impl<'de> Deserialize<'de> for FeedItem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<FeedItem, D::Error> {
        match FeedItems::deserialize(deserializer)? {
            FeedItems::One(item) => Ok(item),
            FeedItems::Changes(_) => Err(de::Error::invalid_value(
                de::Unexpected::Str("changes"),
                &"a change or a heartbeat",
            )),
        }
    }
}

/// The fields any feed item may have; others are skipped.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum FeedItemField {
    Type,
    Seq,
    Op,
    Key,
    Value,
    TimeMs,
    LastSeq,
    Changes,
    #[serde(other)]
    Other,
}

/// An item's `type`, read from a string (the `Value` reader takes no other form of an
/// enum's variant).
enum FeedItemType {
    Change,
    Heartbeat,
    Changes,
}

impl<'de> Deserialize<'de> for FeedItemType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<FeedItemType, D::Error> {
        struct TypeVisitor;
        impl Visitor<'_> for TypeVisitor {
            type Value = FeedItemType;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a feed item's type")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<FeedItemType, E> {
                match text {
                    "change" => Ok(FeedItemType::Change),
                    "heartbeat" => Ok(FeedItemType::Heartbeat),
                    "changes" => Ok(FeedItemType::Changes),
                    other => Err(E::unknown_variant(
                        other,
                        &["change", "heartbeat", "changes"],
                    )),
                }
            }
        }
        deserializer.deserialize_str(TypeVisitor)
    }
}

struct FeedItemVisitor;

/// Stores a field's value once; a second occurrence is an error, as serde's derive has it.
fn once<'de, T: Deserialize<'de>, A: MapAccess<'de>>(
    slot: &mut Option<T>,
    name: &'static str,
    map: &mut A,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(de::Error::duplicate_field(name));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

impl<'de> Visitor<'de> for FeedItemVisitor {
    type Value = FeedItems;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a feed item: a map with its type")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FeedItems, A::Error> {
        let (mut kind, mut changes) = (None, None);
        let (mut seq, mut op, mut key, mut value, mut time_ms, mut last_seq) =
            (None, None, None, None::<Option<Value>>, None, None);
        while let Some(field) = map.next_key()? {
            match field {
                FeedItemField::Type => once(&mut kind, "type", &mut map)?,
                FeedItemField::Seq => once(&mut seq, "seq", &mut map)?,
                FeedItemField::Op => once(&mut op, "op", &mut map)?,
                FeedItemField::Key => once(&mut key, "key", &mut map)?,
                FeedItemField::Value => once(&mut value, "value", &mut map)?,
                FeedItemField::TimeMs => once(&mut time_ms, "time_ms", &mut map)?,
                FeedItemField::LastSeq => once(&mut last_seq, "last_seq", &mut map)?,
                FeedItemField::Changes => once(&mut changes, "changes", &mut map)?,
                FeedItemField::Other => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        let missing = de::Error::missing_field;
        Ok(match kind.ok_or_else(|| missing("type"))? {
            FeedItemType::Change => FeedItems::One(FeedItem::Change(ChangeEntry {
                seq: seq.ok_or_else(|| missing("seq"))?,
                op: op.ok_or_else(|| missing("op"))?,
                key: key.ok_or_else(|| missing("key"))?,
                value: value.flatten(),
                time_ms: time_ms.ok_or_else(|| missing("time_ms"))?,
            })),
            FeedItemType::Heartbeat => FeedItems::One(FeedItem::Heartbeat {
                last_seq: last_seq.ok_or_else(|| missing("last_seq"))?,
            }),
            FeedItemType::Changes => FeedItems::Changes(changes.ok_or_else(|| missing("changes"))?),
        })
    }
}

/// The `end` of a continuous feed: why it ended and the last seq sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedEnd {
    pub reason: FeedEndReason,
    pub last_seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What serde's derive reads a feed item as: the reference `FeedItem` must agree with.
    #[derive(Debug, Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum DerivedFeedItem {
        Change(ChangeEntry),
        Heartbeat { last_seq: u64 },
    }

    impl From<DerivedFeedItem> for FeedItem {
        fn from(item: DerivedFeedItem) -> FeedItem {
            match item {
                DerivedFeedItem::Change(change) => FeedItem::Change(change),
                DerivedFeedItem::Heartbeat { last_seq } => FeedItem::Heartbeat { last_seq },
            }
        }
    }

    fn msgpack(fields: &[(&str, Value)]) -> Vec<u8> {
        let map = Value::Map(
            fields
                .iter()
                .map(|(name, value)| (Value::from(*name), value.clone()))
                .collect(),
        );
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &map).unwrap();
        out
    }

    /// A field of an item, well typed: one of the item fields (a wrong type string
    /// too), or one no item has.
    fn any_field() -> impl Strategy<Value = (&'static str, Value)> {
        prop_oneof![
            prop_oneof![Just("change"), Just("heartbeat"), Just("other")]
                .prop_map(|t| ("type", Value::from(t))),
            any::<u64>().prop_map(|n| ("seq", Value::from(n))),
            prop_oneof![Just("put"), Just("del")].prop_map(|op| ("op", Value::from(op))),
            "[a-z]{1,8}".prop_map(|key| ("key", Value::from(key))),
            prop_oneof![
                Just(Value::Nil),
                any::<i64>().prop_map(Value::from),
                "[a-z]{0,8}".prop_map(Value::from),
                proptest::collection::vec(any::<u8>(), 0..8).prop_map(Value::Binary),
            ]
            .prop_map(|value| ("value", value)),
            any::<u64>().prop_map(|n| ("time_ms", Value::from(n))),
            any::<u64>().prop_map(|n| ("last_seq", Value::from(n))),
            any::<u32>().prop_map(|n| ("unknown", Value::from(n))),
        ]
    }

    proptest! {
        #[test]
        fn reads_what_serdes_derive_reads(
            fields in proptest::collection::vec(any_field(), 0..9)
                .prop_map(|mut fields| {
                    // Each field once, in the order drawn.
                    let mut seen = std::collections::HashSet::new();
                    fields.retain(|(name, _)| seen.insert(*name));
                    fields
                })
        ) {
            let bytes = msgpack(&fields);
            let ours = rmp_serde::from_slice::<FeedItem>(&bytes).ok();
            let derived = rmp_serde::from_slice::<DerivedFeedItem>(&bytes)
                .ok()
                .map(FeedItem::from);
            prop_assert_eq!(&ours, &derived, "{:?}", fields);
            // Through a `Value` as well (how a client reads a `Value` answer).
            let value = rmpv::decode::read_value(&mut bytes.as_slice()).unwrap();
            prop_assert_eq!(crate::methods::from_value::<FeedItem>(value).ok(), derived);
        }
    }

    #[test]
    fn items_round_trip_and_bad_ones_are_refused() {
        let change = FeedItem::Change(ChangeEntry {
            seq: 7,
            op: Op::Del,
            key: "k".into(),
            value: None,
            time_ms: 12,
        });
        for item in [change, FeedItem::Heartbeat { last_seq: 3 }] {
            let bytes = rmp_serde::to_vec_named(&item).unwrap();
            assert_eq!(rmp_serde::from_slice::<FeedItem>(&bytes).unwrap(), item);
        }
        for bad in [
            msgpack(&[("type", "heartbeat".into()), ("type", "heartbeat".into())]),
            msgpack(&[("type", "heartbeat".into()), ("last_seq", "three".into())]),
            msgpack(&[("last_seq", 3.into())]),
            msgpack(&[("type", "change".into()), ("seq", 1.into())]),
        ] {
            let error = rmp_serde::from_slice::<FeedItem>(&bad).unwrap_err();
            assert!(!error.to_string().is_empty());
        }
        assert!(rmp_serde::from_slice::<FeedItem>(&msgpack(&[])).is_err());
        let not_a_map = rmp_serde::to_vec(&5u8).unwrap();
        assert!(rmp_serde::from_slice::<FeedItem>(&not_a_map).is_err());
    }
}
