//! Messages: the body of every frame is one msgpack map with a type tag `t` and the call
//! id `id` that ties answers to their call. Many calls may be in flight on a connection;
//! answers come in any order, and a streaming call answers item … item, end.

use rmpv::Value;

use crate::code::{ErrorCode, WireError};

/// One message of the protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Client to service: call `method` with `args` (a map, or nil for none).
    Call {
        id: u64,
        method: String,
        args: Value,
    },
    /// Service to client: the call succeeded with `value`.
    Result { id: u64, value: Value },
    /// Service to client: the call failed (also ends a stream).
    Error { id: u64, error: WireError },
    /// Service to client: one item of a streaming call.
    Item { id: u64, value: Value },
    /// Service to client: a stream is over; `value` says why and where it stopped.
    End { id: u64, value: Value },
    /// Client to service: stop the call `id` (a stream ends with `End`).
    Cancel { id: u64 },
}

/// A body that is not a well-formed message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed message: {0}")]
pub struct MessageError(pub String);

fn malformed(reason: impl Into<String>) -> MessageError {
    MessageError(reason.into())
}

/// Deepest nesting accepted in a message (arguments and values included).
pub const MAX_MESSAGE_DEPTH: usize = 600;

impl Message {
    /// The call id the message belongs to.
    pub fn id(&self) -> u64 {
        match self {
            Message::Call { id, .. }
            | Message::Result { id, .. }
            | Message::Error { id, .. }
            | Message::Item { id, .. }
            | Message::End { id, .. }
            | Message::Cancel { id } => *id,
        }
    }

    fn tag(&self) -> &'static str {
        match self {
            Message::Call { .. } => "call",
            Message::Result { .. } => "result",
            Message::Error { .. } => "error",
            Message::Item { .. } => "item",
            Message::End { .. } => "end",
            Message::Cancel { .. } => "cancel",
        }
    }

    /// Encodes the message as one msgpack map.
    pub fn encode(&self) -> Vec<u8> {
        let mut fields = vec![
            (Value::from("t"), Value::from(self.tag())),
            (Value::from("id"), Value::from(self.id())),
        ];
        match self {
            Message::Call { method, args, .. } => {
                fields.push((Value::from("m"), Value::from(method.as_str())));
                fields.push((Value::from("a"), args.clone()));
            }
            Message::Result { value, .. }
            | Message::Item { value, .. }
            | Message::End { value, .. } => {
                fields.push((Value::from("v"), value.clone()));
            }
            Message::Error { error, .. } => {
                let mut body = vec![
                    (Value::from("code"), Value::from(error.code.as_str())),
                    (Value::from("status"), Value::from(error.code.status())),
                    (Value::from("message"), Value::from(error.message.as_str())),
                ];
                if let Some(details) = &error.details {
                    body.push((Value::from("details"), details.clone()));
                }
                fields.push((Value::from("e"), Value::Map(body)));
            }
            Message::Cancel { .. } => {}
        }
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &Value::Map(fields))
            .expect("writing to a Vec cannot fail");
        out
    }

    /// Decodes one message; the body must hold exactly one msgpack map.
    pub fn decode(body: &[u8]) -> Result<Message, MessageError> {
        let mut reader = body;
        let value = rmpv::decode::read_value_with_max_depth(&mut reader, MAX_MESSAGE_DEPTH)
            .map_err(|e| malformed(format!("not msgpack ({e})")))?;
        if !reader.is_empty() {
            return Err(malformed(format!(
                "{} bytes after the message",
                reader.len()
            )));
        }
        let Value::Map(fields) = value else {
            return Err(malformed("a message is a msgpack map"));
        };
        let mut fields = Fields(fields);
        let tag = fields.take_str("t")?;
        let id = fields.take_u64("id")?;
        let message = match tag.as_str() {
            "call" => Message::Call {
                id,
                method: fields.take_str("m")?,
                args: fields.take("a").unwrap_or(Value::Nil),
            },
            "result" => Message::Result {
                id,
                value: fields.take("v").unwrap_or(Value::Nil),
            },
            "item" => Message::Item {
                id,
                value: fields.take("v").unwrap_or(Value::Nil),
            },
            "end" => Message::End {
                id,
                value: fields.take("v").unwrap_or(Value::Nil),
            },
            "cancel" => Message::Cancel { id },
            "error" => {
                let body = fields
                    .take("e")
                    .ok_or_else(|| malformed("error without `e`"))?;
                let Value::Map(body) = body else {
                    return Err(malformed("`e` is a map"));
                };
                let mut body = Fields(body);
                let code_text = body.take_str("code")?;
                let code = ErrorCode::parse(&code_text).unwrap_or(ErrorCode::Internal);
                let mut message = body.take_str("message")?;
                if code.as_str() != code_text {
                    message = format!("{code_text}: {message}");
                }
                Message::Error {
                    id,
                    error: WireError {
                        code,
                        message,
                        details: body.take("details"),
                    },
                }
            }
            other => return Err(malformed(format!("unknown message type {other:?}"))),
        };
        Ok(message)
    }
}

/// The next string of `rest`, which it moves past.
fn next_str<'a>(rest: &mut &'a [u8]) -> Option<&'a str> {
    let (text, after) = rmp::decode::read_str_from_slice(*rest).ok()?;
    *rest = after;
    Some(text)
}

/// Moves `rest` past the map header of `fields` fields, the key `t` and the string
/// `tag`, the key `id` and its value; the id.
fn read_head(rest: &mut &[u8], fields: u32, tag: &str) -> Option<u64> {
    if rmp::decode::read_map_len(rest).ok()? != fields {
        return None;
    }
    if (next_str(rest)?, next_str(rest)?, next_str(rest)?) != ("t", tag, "id") {
        return None;
    }
    rmp::decode::read_int(rest).ok()
}

/// When `body` is a call laid out as clients write it (`{t: "call", id, m, a}`, in that
/// order), its id, its method's name and where the msgpack of its arguments begins: a
/// service can decode them straight into their type, without a `Value` tree.
pub fn call_args_at(body: &[u8]) -> Option<(u64, &str, usize)> {
    let mut rest = body;
    let id = read_head(&mut rest, 4, "call")?;
    let (m, method, a) = (
        next_str(&mut rest)?,
        next_str(&mut rest)?,
        next_str(&mut rest)?,
    );
    ((m, a) == ("m", "a")).then_some((id, method, body.len() - rest.len()))
}

/// When `body` is a message of type `tag` (`result` or `item`) laid out as services
/// write it (`{t, id, v}`, in that order), its id and where the msgpack of its value
/// begins: a client can decode the value straight into its type, without a `Value`
/// tree.
pub fn value_at(body: &[u8], tag: &str) -> Option<(u64, usize)> {
    let mut rest = body;
    let id = read_head(&mut rest, 3, tag)?;
    (next_str(&mut rest)? == "v").then_some((id, body.len() - rest.len()))
}

/// The start of a message body written by hand: a map of `fields` fields, `t` = `tag`,
/// `id`, then the key `next_key` of the next field, whose value the caller writes (in
/// the order `Message::encode` writes them, so that the bytes are the same).
pub(crate) fn begin_body(tag: &str, id: u64, fields: u32, next_key: &str, room: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + room);
    let write = |out: &mut Vec<u8>| -> Result<(), rmp::encode::ValueWriteError> {
        rmp::encode::write_map_len(out, fields)?;
        rmp::encode::write_str(out, "t")?;
        rmp::encode::write_str(out, tag)?;
        rmp::encode::write_str(out, "id")?;
        rmp::encode::write_uint(out, id)?;
        rmp::encode::write_str(out, next_key)?;
        Ok(())
    };
    write(&mut out).expect("writing to a Vec cannot fail");
    out
}

/// The body of `Message::Call { id, method, args }` with `args` the msgpack of `args`
/// (its structs as maps with named fields), written straight from it: the same bytes as
/// encoding the message, without a `Value` tree on the way.
pub fn encode_call<T: serde::Serialize>(id: u64, method: &str, args: &T) -> Vec<u8> {
    let mut out = begin_body("call", id, 4, "m", 32 + method.len());
    rmp::encode::write_str(&mut out, method)
        .and_then(|()| rmp::encode::write_str(&mut out, "a"))
        .expect("writing to a Vec cannot fail");
    rmp_serde::encode::write_named(&mut out, args).expect("protocol types always encode");
    out
}

/// The body of `Message::Result { id, value }` with `value` the msgpack of `result`
/// (its structs as maps with named fields), written straight from it: the same bytes as
/// encoding the message, without a `Value` tree on the way.
pub fn encode_result<T: serde::Serialize>(id: u64, result: &T) -> Vec<u8> {
    let mut out = begin_body("result", id, 3, "v", 32);
    rmp_serde::encode::write_named(&mut out, result).expect("protocol types always encode");
    out
}

/// The body of `Message::Result { id, value: {key, rev, value} }` (a document, as `get`
/// answers), written straight from the stored msgpack of the value: the same bytes as
/// encoding the message, without decoding the value first.
pub fn encode_doc_result(id: u64, key: &str, rev: u64, value_msgpack: &[u8]) -> Vec<u8> {
    let mut out = begin_body("result", id, 3, "v", 16 + key.len() + value_msgpack.len());
    let write = |out: &mut Vec<u8>| -> Result<(), rmp::encode::ValueWriteError> {
        rmp::encode::write_map_len(out, 3)?;
        rmp::encode::write_str(out, "key")?;
        rmp::encode::write_str(out, key)?;
        rmp::encode::write_str(out, "rev")?;
        rmp::encode::write_uint(out, rev)?;
        rmp::encode::write_str(out, "value")?;
        Ok(())
    };
    write(&mut out).expect("writing to a Vec cannot fail");
    out.extend_from_slice(value_msgpack);
    out
}

/// The fields of a msgpack map, taken out by name.
struct Fields(Vec<(Value, Value)>);

impl Fields {
    fn take(&mut self, name: &str) -> Option<Value> {
        let at = self.0.iter().position(|(k, _)| k.as_str() == Some(name))?;
        Some(self.0.swap_remove(at).1)
    }

    fn take_str(&mut self, name: &str) -> Result<String, MessageError> {
        match self.take(name) {
            Some(Value::String(s)) => s
                .into_str()
                .ok_or_else(|| malformed(format!("`{name}` is not UTF-8"))),
            Some(_) => Err(malformed(format!("`{name}` is not a string"))),
            None => Err(malformed(format!("`{name}` is missing"))),
        }
    }

    fn take_u64(&mut self, name: &str) -> Result<u64, MessageError> {
        self.take(name)
            .and_then(|v| v.as_u64())
            .ok_or_else(|| malformed(format!("`{name}` is missing or not an unsigned integer")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn samples() -> Vec<Message> {
        vec![
            Message::Call {
                id: 1,
                method: "get".into(),
                args: Value::Map(vec![(Value::from("db"), Value::from("users"))]),
            },
            Message::Result {
                id: 2,
                value: Value::from(42),
            },
            Message::Error {
                id: 3,
                error: WireError::new(ErrorCode::RevConflict, "expected rev 3, current rev is 4")
                    .with_details(Value::Map(vec![(Value::from("current"), Value::from(4))])),
            },
            Message::Item {
                id: u64::MAX,
                value: Value::Array(vec![Value::Nil]),
            },
            Message::End {
                id: 5,
                value: Value::Nil,
            },
            Message::Cancel { id: 6 },
        ]
    }

    #[test]
    fn every_message_type_round_trips() {
        for message in samples() {
            assert_eq!(Message::decode(&message.encode()).unwrap(), message);
        }
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let not_a_map = {
            let mut out = Vec::new();
            rmpv::encode::write_value(&mut out, &Value::from(1)).unwrap();
            out
        };
        let mut trailing = Message::Cancel { id: 1 }.encode();
        trailing.push(0xc0);
        let unknown_type = {
            let mut out = Vec::new();
            let map = Value::Map(vec![
                (Value::from("t"), Value::from("shout")),
                (Value::from("id"), Value::from(1)),
            ]);
            rmpv::encode::write_value(&mut out, &map).unwrap();
            out
        };
        let mut deep = vec![0x91u8; 10_000];
        deep.push(0xc0);
        for body in [vec![], vec![0xc1], not_a_map, trailing, unknown_type, deep] {
            assert!(Message::decode(&body).is_err(), "{body:02x?}");
        }
    }

    #[test]
    fn a_doc_result_written_directly_equals_the_encoded_message() {
        for (id, key, rev, value) in [
            (1u64, "k", 1u64, Value::from(42)),
            (
                70_000,
                "ключ",
                1 << 40,
                Value::Map(vec![(Value::from("a"), Value::Nil)]),
            ),
            (
                u64::MAX,
                &*"x".repeat(300),
                0,
                Value::Binary(vec![1; 70_000]),
            ),
        ] {
            let mut raw = Vec::new();
            rmpv::encode::write_value(&mut raw, &value).unwrap();
            let doc = Value::Map(vec![
                (Value::from("key"), Value::from(key)),
                (Value::from("rev"), Value::from(rev)),
                (Value::from("value"), value.clone()),
            ]);
            let expected = Message::Result { id, value: doc }.encode();
            assert_eq!(encode_doc_result(id, key, rev, &raw), expected);
        }
    }

    #[test]
    fn a_result_written_directly_equals_the_encoded_message() {
        use crate::methods::{to_value, BatchResult, Doc, RevResult, ScanResult};
        let scan = ScanResult {
            docs: vec![Doc {
                key: "k".into(),
                rev: 1 << 33,
                value: Value::Map(vec![(Value::from("a"), Value::from(-1.5))]),
            }],
            more: true,
        };
        let batch = BatchResult {
            revs: vec![0, 1, u64::MAX],
        };
        for id in [0, 1, 300, u64::MAX] {
            let expected = |value| Message::Result { id, value }.encode();
            assert_eq!(encode_result(id, &scan), expected(to_value(&scan)));
            assert_eq!(encode_result(id, &batch), expected(to_value(&batch)));
            let rev = RevResult { rev: id };
            assert_eq!(encode_result(id, &rev), expected(to_value(&rev)));
            assert_eq!(encode_result(id, &()), expected(to_value(&())));
        }
    }

    #[test]
    fn the_value_of_a_result_is_found_where_it_begins() {
        for id in [0, 5, 1 << 40] {
            let value = Value::Map(vec![(Value::from("rev"), Value::from(id))]);
            let body = Message::Result {
                id,
                value: value.clone(),
            }
            .encode();
            let (found, at) = value_at(&body, "result").unwrap();
            assert_eq!(found, id);
            assert_eq!(rmpv::decode::read_value(&mut &body[at..]).unwrap(), value);
        }
        let item = Message::Item {
            id: 9,
            value: Value::from("x"),
        }
        .encode();
        let (found, at) = value_at(&item, "item").unwrap();
        assert_eq!(found, 9);
        assert_eq!(
            rmpv::decode::read_value(&mut &item[at..]).unwrap(),
            Value::from("x")
        );
        assert_eq!(value_at(&item, "result"), None);
        // Anything else is left to `Message::decode`.
        for other in [
            Message::Error {
                id: 2,
                error: WireError::new(ErrorCode::NotFound, "gone"),
            },
            Message::Cancel { id: 3 },
        ] {
            assert_eq!(value_at(&other.encode(), "result"), None);
        }
        let mut reordered = Vec::new();
        let map = Value::Map(vec![
            (Value::from("id"), Value::from(1)),
            (Value::from("t"), Value::from("result")),
            (Value::from("v"), Value::Nil),
        ]);
        rmpv::encode::write_value(&mut reordered, &map).unwrap();
        assert_eq!(value_at(&reordered, "result"), None);
        assert_eq!(value_at(&[], "result"), None);
        assert_eq!(value_at(&[0x83, 0xa1], "result"), None);
    }

    #[test]
    fn the_arguments_of_a_call_are_found_where_they_begin() {
        let args = Value::Map(vec![(Value::from("db"), Value::from("d"))]);
        for id in [1, 300, u64::MAX] {
            let body = Message::Call {
                id,
                method: "db.info".into(),
                args: args.clone(),
            }
            .encode();
            let (found, method, at) = call_args_at(&body).unwrap();
            assert_eq!((found, method), (id, "db.info"));
            assert_eq!(rmpv::decode::read_value(&mut &body[at..]).unwrap(), args);
        }
        let result = Message::Result {
            id: 1,
            value: Value::Nil,
        };
        assert_eq!(call_args_at(&result.encode()), None);
        let mut reordered = Vec::new();
        let map = Value::Map(vec![
            (Value::from("t"), Value::from("call")),
            (Value::from("id"), Value::from(1)),
            (Value::from("a"), Value::Nil),
            (Value::from("m"), Value::from("status")),
        ]);
        rmpv::encode::write_value(&mut reordered, &map).unwrap();
        assert_eq!(call_args_at(&reordered), None);
        assert_eq!(call_args_at(&[0x84]), None);
    }

    #[test]
    fn a_call_written_directly_equals_the_encoded_message() {
        use crate::methods::{to_value, GetArgs, NoArgs, PutArgs};
        let get = GetArgs {
            db: "users".into(),
            key: Value::from("ключ"),
        };
        let put = PutArgs {
            db: "d".into(),
            key: Value::from("k"),
            value: Value::Binary(vec![3; 300]),
            rev: Some(7),
        };
        for id in [1, 70_000, u64::MAX] {
            let expected = |method: &str, args| {
                Message::Call {
                    id,
                    method: method.to_string(),
                    args,
                }
                .encode()
            };
            assert_eq!(
                encode_call(id, "get", &get),
                expected("get", to_value(&get))
            );
            assert_eq!(
                encode_call(id, "put", &put),
                expected("put", to_value(&put))
            );
            assert_eq!(
                encode_call(id, "status", &NoArgs {}),
                expected("status", to_value(&NoArgs {}))
            );
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Message::decode(&body);
        }
    }
}
