//! Msgpack values in JSON and back. Documents are msgpack values; the HTTP API shows
//! them as JSON: nil, booleans, numbers, strings, arrays and maps map one to one; a map
//! key that is not a string is written as its JSON text; binary becomes
//! `{"$binary": BASE64}` and an extension `{"$ext": TYPE, "$binary": BASE64}`, and those
//! two shapes turn back into binary and extensions when sent, so that every value
//! survives the trip. Floats that JSON cannot hold (NaN, infinities) are written as
//! null.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rmpv::Value;
use serde_json::{Map, Number, Value as Json};

/// A msgpack value as JSON.
pub fn to_json(value: Value) -> Json {
    match value {
        Value::Nil => Json::Null,
        Value::Boolean(b) => Json::Bool(b),
        Value::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Json::Number(u.into()),
            (None, Some(s)) => Json::Number(s.into()),
            (None, None) => Json::Null,
        },
        Value::F32(f) => float(f64::from(f)),
        Value::F64(f) => float(f),
        // A string that is not UTF-8 (msgpack allows it) shows its bytes lossily.
        Value::String(s) => Json::String(match s.as_str() {
            Some(text) => text.to_string(),
            None => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        }),
        Value::Binary(bytes) => {
            let mut map = Map::new();
            map.insert("$binary".into(), Json::String(STANDARD.encode(bytes)));
            Json::Object(map)
        }
        Value::Array(items) => Json::Array(items.into_iter().map(to_json).collect()),
        Value::Map(pairs) => {
            let mut map = Map::with_capacity(pairs.len());
            for (key, value) in pairs {
                let key = match key {
                    Value::String(s) if s.is_str() => s.into_str().unwrap_or_default(),
                    other => to_json(other).to_string(),
                };
                map.insert(key, to_json(value));
            }
            Json::Object(map)
        }
        Value::Ext(kind, bytes) => {
            let mut map = Map::new();
            map.insert("$ext".into(), Json::Number(kind.into()));
            map.insert("$binary".into(), Json::String(STANDARD.encode(bytes)));
            Json::Object(map)
        }
    }
}

fn float(f: f64) -> Json {
    Number::from_f64(f).map_or(Json::Null, Json::Number)
}

/// A JSON value as msgpack (integers stay integers; `$binary` and `$ext` objects become
/// binary and extensions again).
pub fn from_json(json: Json) -> Value {
    match json {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Boolean(b),
        Json::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Value::from(u),
            (None, Some(s), _) => Value::from(s),
            (None, None, Some(f)) => Value::F64(f),
            (None, None, None) => Value::Nil,
        },
        Json::String(s) => Value::String(s.into()),
        Json::Array(items) => Value::Array(items.into_iter().map(from_json).collect()),
        Json::Object(map) => match special(&map) {
            Some(value) => value,
            None => Value::Map(
                map.into_iter()
                    .map(|(k, v)| (Value::String(k.into()), from_json(v)))
                    .collect(),
            ),
        },
    }
}

/// `{"$binary": B64}` or `{"$ext": N, "$binary": B64}`, when the object is exactly that.
fn special(map: &Map<String, Json>) -> Option<Value> {
    let bytes = STANDARD.decode(map.get("$binary")?.as_str()?).ok()?;
    match (map.len(), map.get("$ext")) {
        (1, None) => Some(Value::Binary(bytes)),
        (2, Some(kind)) => Some(Value::Ext(i8::try_from(kind.as_i64()?).ok()?, bytes)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_msgpack_value_survives_json() {
        let value = Value::Map(vec![
            (Value::from("n"), Value::Nil),
            (Value::from("b"), Value::from(true)),
            (Value::from("neg"), Value::from(-7)),
            (Value::from("big"), Value::from(u64::MAX)),
            (Value::from("f"), Value::F64(1.5)),
            (Value::from("s"), Value::from("é")),
            (Value::from("bin"), Value::Binary(vec![0, 255, 1])),
            (Value::from("ext"), Value::Ext(-3, vec![9])),
            (
                Value::from("a"),
                Value::Array(vec![Value::from(1), Value::from("x")]),
            ),
        ]);
        let json = to_json(value.clone());
        assert_eq!(json["bin"]["$binary"], "AP8B");
        assert_eq!(json["big"], u64::MAX);
        assert_eq!(from_json(json), value);
    }

    #[test]
    fn keys_that_are_not_strings_and_odd_floats_are_written_as_json_can() {
        let value = Value::Map(vec![
            (Value::from(5), Value::F64(f64::NAN)),
            (Value::Boolean(false), Value::F32(0.5)),
        ]);
        let json = to_json(value);
        assert_eq!(json, serde_json::json!({"5": null, "false": 0.5}));
    }

    #[test]
    fn objects_that_only_look_special_stay_maps() {
        let json = serde_json::json!({"$binary": "not base64!", "x": 1});
        assert!(from_json(json).is_map());
        let json = serde_json::json!({"$binary": "AA==", "other": 1});
        assert!(from_json(json).is_map());
    }
}
