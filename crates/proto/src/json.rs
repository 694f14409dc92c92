//! JSON <-> msgpack values, as people see them: the CLI's values and the HTTP API's
//! bodies are read and written here, the same way. [`parse`] reads JSON text straight
//! into an `rmpv::Value`
//! (objects become maps with string keys in their written order, integers stay integers
//! as u64 or i64, other numbers become f64; a key written twice is an error). [`AsJson`]
//! writes a msgpack value as JSON: binary as a base64 string, map keys that are not
//! strings as their JSON text, ext values as `{"ext": TYPE, "data": BASE64}`, non-UTF-8
//! strings lossily, and NaN or infinities as null.

use std::borrow::Cow;
use std::fmt;

use base64::Engine;
use rmpv::Value;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};

/// One JSON value (and nothing after it but whitespace) as a msgpack value.
pub fn parse(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str::<FromJson>(text).map(|parsed| parsed.0)
}

/// A msgpack value as compact JSON text.
pub fn to_string(value: &Value) -> String {
    serde_json::to_string(&AsJson(value)).expect("msgpack values always write as JSON")
}

/// A msgpack value as indented JSON text.
pub fn to_string_pretty(value: &Value) -> String {
    serde_json::to_string_pretty(&AsJson(value)).expect("msgpack values always write as JSON")
}

/// A msgpack value read from JSON.
struct FromJson(Value);

impl<'de> Deserialize<'de> for FromJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor).map(FromJson)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Boolean(b))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(Value::F64(n))
    }

    fn visit_str<E>(self, text: &str) -> Result<Value, E> {
        Ok(Value::from(text))
    }

    fn visit_string<E>(self, text: String) -> Result<Value, E> {
        Ok(Value::from(text))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(FromJson(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries: Vec<(Value, Value)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while let Some((key, FromJson(value))) = map.next_entry::<String, FromJson>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!(
                    "the key {key:?} appears twice in an object"
                )));
            }
            entries.push((Value::from(key), value));
        }
        Ok(Value::Map(entries))
    }
}

/// Writes the msgpack value it holds as JSON.
pub struct AsJson<'a>(pub &'a Value);

impl Serialize for AsJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Nil => serializer.serialize_unit(),
            Value::Boolean(b) => serializer.serialize_bool(*b),
            Value::Integer(n) => match (n.as_u64(), n.as_i64()) {
                (Some(n), _) => serializer.serialize_u64(n),
                (None, Some(n)) => serializer.serialize_i64(n),
                (None, None) => unreachable!("a msgpack integer fits u64 or i64"),
            },
            Value::F32(n) => float(serializer, f64::from(*n)),
            Value::F64(n) => float(serializer, *n),
            Value::String(text) => {
                serializer.serialize_str(&String::from_utf8_lossy(text.as_bytes()))
            }
            Value::Binary(bytes) => serializer.serialize_str(&base64(bytes)),
            Value::Array(items) => serializer.collect_seq(items.iter().map(AsJson)),
            Value::Map(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    map.serialize_entry(&key_text(key), &AsJson(value))?;
                }
                map.end()
            }
            Value::Ext(kind, data) => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("ext", kind)?;
                map.serialize_entry("data", &base64(data))?;
                map.end()
            }
        }
    }
}

fn float<S: Serializer>(serializer: S, n: f64) -> Result<S::Ok, S::Error> {
    if n.is_finite() {
        serializer.serialize_f64(n)
    } else {
        serializer.serialize_unit()
    }
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A map key as a JSON object key: strings as they are, anything else as its JSON text.
fn key_text(key: &Value) -> Cow<'_, str> {
    match key {
        Value::String(text) => String::from_utf8_lossy(text.as_bytes()),
        other => Cow::Owned(to_string(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> String {
        to_string(&parse(text).unwrap())
    }

    #[test]
    fn scalars_keep_their_kind() {
        assert_eq!(parse("null").unwrap(), Value::Nil);
        assert_eq!(parse("true").unwrap(), Value::Boolean(true));
        assert_eq!(parse("7").unwrap(), Value::from(7u64));
        assert_eq!(parse("-7").unwrap(), Value::from(-7i64));
        assert_eq!(parse("1.5").unwrap(), Value::F64(1.5));
        assert_eq!(parse("1e3").unwrap(), Value::F64(1000.0));
        assert_eq!(parse("\"héllo\"").unwrap(), Value::from("héllo"));
        assert_eq!(
            parse("18446744073709551615").unwrap(),
            Value::from(u64::MAX)
        );
        assert_eq!(
            parse("-9223372036854775808").unwrap(),
            Value::from(i64::MIN)
        );
        assert!(parse("1.0").unwrap().is_f64(), "a float stays a float");
    }

    #[test]
    fn json_round_trips_with_key_order_kept() {
        for text in [
            r#"{"zebra":1,"apple":[true,null,-2,2.5,"s"],"mid":{"b":{},"a":[]}}"#,
            r#"[18446744073709551615,-9223372036854775808,1.0]"#,
            r#""quote \" and \\ and \n""#,
        ] {
            assert_eq!(round_trip(text), text);
        }
        let parsed = parse(r#"{"b":1,"a":2}"#).unwrap();
        let keys: Vec<&str> = parsed
            .as_map()
            .unwrap()
            .iter()
            .map(|(k, _)| k.as_str().unwrap())
            .collect();
        assert_eq!(keys, ["b", "a"]);
    }

    #[test]
    fn bad_json_is_refused() {
        for text in ["", "hello", "{\"a\":1", "1 2", "{\"a\":1,\"a\":2}", "[1,]"] {
            assert!(parse(text).is_err(), "{text:?} parses");
        }
        let twice = parse(r#"{"x":{"k":1,"k":2}}"#).unwrap_err().to_string();
        assert!(twice.contains("\"k\" appears twice"), "{twice}");
    }

    #[test]
    fn msgpack_only_values_have_a_json_form() {
        assert_eq!(to_string(&Value::Binary(b"hi\0".to_vec())), "\"aGkA\"");
        assert_eq!(to_string(&Value::F32(0.5)), "0.5");
        assert_eq!(to_string(&Value::F64(f64::NAN)), "null");
        assert_eq!(to_string(&Value::F64(f64::INFINITY)), "null");
        assert_eq!(
            to_string(&Value::Ext(5, vec![1, 2, 3])),
            r#"{"ext":5,"data":"AQID"}"#
        );
        let map = Value::Map(vec![
            (Value::from(1), Value::from("one")),
            (Value::Boolean(false), Value::Nil),
            (Value::Array(vec![Value::from("a")]), Value::from(-1)),
        ]);
        assert_eq!(to_string(&map), r#"{"1":"one","false":null,"[\"a\"]":-1}"#);
        let invalid = rmpv::decode::read_value(&mut &[0xa2, b'a', 0xff][..]).unwrap();
        assert_eq!(to_string(&invalid), "\"a\u{fffd}\"");
    }

    #[test]
    fn pretty_output_is_indented() {
        let value = parse(r#"{"a":[1]}"#).unwrap();
        assert_eq!(to_string_pretty(&value), "{\n  \"a\": [\n    1\n  ]\n}");
    }
}
