//! Values in the HTTP API's JSON, the way the CLI shows and reads them
//! (`cairn_proto::json`: integers stay integers, objects keep their keys' order and may
//! not repeat a key, msgpack binary shows as a base64 string, an extension as
//! `{"ext": TYPE, "data": BASE64}`). A body is read with the same parser; the routes
//! then pick their arguments out of its JSON form, and what they send to a method goes
//! back to msgpack one value for one value.

use cairn_proto::json::{self, AsJson};
use rmpv::Value;
use serde_json::Value as Json;

/// A msgpack value as JSON.
pub fn to_json(value: Value) -> Json {
    serde_json::to_value(AsJson(&value)).expect("msgpack values always write as JSON")
}

/// A request body (JSON text) as JSON, read as the CLI reads values.
pub fn parse_body(bytes: &[u8]) -> Result<Json, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("the body is not UTF-8: {e}"))?;
    json::parse(text)
        .map(to_json)
        .map_err(|e| format!("the body is not JSON: {e}"))
}

/// JSON as msgpack: null, booleans, integers (u64 or i64), other numbers (f64),
/// strings, arrays and objects (maps with string keys, in order).
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
        Json::Object(map) => Value::Map(
            map.into_iter()
                .map(|(k, v)| (Value::String(k.into()), from_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_survive_the_trip_in_order() {
        let body =
            br#"{"zebra": 1, "apple": [true, null, -2, 2.5, "s"], "big": 18446744073709551615}"#;
        let json = parse_body(body).unwrap();
        let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["zebra", "apple", "big"]);
        let value = from_json(json.clone());
        assert_eq!(to_json(value), json);
        assert_eq!(json["big"], u64::MAX);
    }

    #[test]
    fn msgpack_only_values_show_as_the_cli_shows_them() {
        let value = Value::Map(vec![
            (Value::from(5), Value::Binary(vec![0, 255, 1])),
            (Value::from("e"), Value::Ext(-3, vec![9])),
            (Value::from("nan"), Value::F64(f64::NAN)),
        ]);
        let json = to_json(value);
        assert_eq!(
            json,
            serde_json::json!({"5": "AP8B", "e": {"ext": -3, "data": "CQ=="}, "nan": null})
        );
    }

    #[test]
    fn bad_bodies_are_refused_with_the_reason() {
        assert!(parse_body(br#"{"a": 1, "a": 2}"#)
            .unwrap_err()
            .contains("twice"));
        assert!(parse_body(b"{\"a\": ").is_err());
        assert!(parse_body(&[0xff, 0xfe]).unwrap_err().contains("UTF-8"));
    }
}
