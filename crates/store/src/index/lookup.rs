//! Finding the value a JSON pointer (RFC 6901) names inside a msgpack document without
//! decoding the rest of it, and encoding that value for an index (`index_value`).

use super::key::{encode_number, encode_text, TAG_FALSE, TAG_TRUE};
use crate::validate::skip_msgpack_value;

/// The encoded value of one index for a document: `Ok(None)` when the field is missing
/// or nil (the document is not in the index), `Err(reason)` when the value there cannot
/// be indexed (or the document does not decode).
pub(crate) fn index_value(
    value: &[u8],
    pointer: &[String],
) -> std::result::Result<Option<Vec<u8>>, String> {
    match locate(value, pointer)? {
        Some(at) => encode_scalar(value, at),
        None => Ok(None),
    }
}

/// Where the value `pointer` names starts inside `value`, or `None` when there is none.
/// Maps match string keys only (the first equal key wins); arrays take a decimal index
/// without leading zeros; any other value has no children.
fn locate(value: &[u8], pointer: &[String]) -> std::result::Result<Option<usize>, String> {
    let mut at = 0usize;
    for token in pointer {
        let (header, children) = container_header(value, at)?;
        match children {
            Container::Map(pairs) => {
                let mut pos = at + header;
                let mut found = None;
                for _ in 0..pairs {
                    let key = text_at(value, pos)?;
                    pos = skip(value, pos)?;
                    if key == Some(token.as_bytes()) {
                        found = Some(pos);
                        break;
                    }
                    pos = skip(value, pos)?;
                }
                match found {
                    Some(pos) => at = pos,
                    None => return Ok(None),
                }
            }
            Container::Array(items) => {
                let index = match array_index(token) {
                    Some(i) if i < items => i,
                    _ => return Ok(None),
                };
                let mut pos = at + header;
                for _ in 0..index {
                    pos = skip(value, pos)?;
                }
                at = pos;
            }
            Container::None => return Ok(None),
        }
    }
    Ok(Some(at))
}

enum Container {
    Map(u64),
    Array(u64),
    None,
}

/// The header length and kind of the value at `at`.
fn container_header(value: &[u8], at: usize) -> std::result::Result<(usize, Container), String> {
    let marker = byte(value, at)?;
    Ok(match marker {
        0x80..=0x8f => (1, Container::Map(u64::from(marker & 0x0f))),
        0x90..=0x9f => (1, Container::Array(u64::from(marker & 0x0f))),
        0xdc => (3, Container::Array(be(value, at + 1, 2)?)),
        0xdd => (5, Container::Array(be(value, at + 1, 4)?)),
        0xde => (3, Container::Map(be(value, at + 1, 2)?)),
        0xdf => (5, Container::Map(be(value, at + 1, 4)?)),
        _ => (0, Container::None),
    })
}

/// An RFC 6901 array index: "0" or digits without a leading zero.
fn array_index(token: &str) -> Option<u64> {
    let ok = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    ok.then(|| token.parse().ok()).flatten()
}

fn byte(value: &[u8], at: usize) -> std::result::Result<u8, String> {
    value
        .get(at)
        .copied()
        .ok_or_else(|| format!("msgpack value truncated at byte {at}"))
}

fn be(value: &[u8], at: usize, width: usize) -> std::result::Result<u64, String> {
    let slice = value
        .get(at..at + width)
        .ok_or_else(|| format!("msgpack value truncated at byte {at}"))?;
    Ok(slice.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

/// The `N` bytes that follow the marker at `at` (a fixed-size number).
fn payload<const N: usize>(value: &[u8], at: usize) -> std::result::Result<[u8; N], String> {
    value
        .get(at + 1..at + 1 + N)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| format!("msgpack value truncated at byte {}", at + 1))
}

fn bytes_at(value: &[u8], at: usize, len: u64) -> std::result::Result<&[u8], String> {
    let len = usize::try_from(len).map_err(|_| "msgpack length too large".to_string())?;
    value
        .get(at..at.saturating_add(len))
        .ok_or_else(|| format!("msgpack value truncated at byte {at}"))
}

/// Where the value starting at `at` ends.
fn skip(value: &[u8], at: usize) -> std::result::Result<usize, String> {
    let rest = value
        .get(at..)
        .ok_or_else(|| format!("msgpack value truncated at byte {at}"))?;
    Ok(at + skip_msgpack_value(rest)?)
}

/// The bytes of the string at `at`, or `None` when the value there is not a string.
fn text_at(value: &[u8], at: usize) -> std::result::Result<Option<&[u8]>, String> {
    let marker = byte(value, at)?;
    let (header, len) = match marker {
        0xa0..=0xbf => (1, u64::from(marker & 0x1f)),
        0xd9 => (2, be(value, at + 1, 1)?),
        0xda => (3, be(value, at + 1, 2)?),
        0xdb => (5, be(value, at + 1, 4)?),
        _ => return Ok(None),
    };
    bytes_at(value, at + header, len).map(Some)
}

/// The encoding of the scalar at `at`: `None` for nil, `Err` for what is never indexed.
pub(super) fn encode_scalar(
    value: &[u8],
    at: usize,
) -> std::result::Result<Option<Vec<u8>>, String> {
    let marker = byte(value, at)?;
    let number = |n: f64| encode_number(n).map(|b| Some(b.to_vec()));
    match marker {
        0xc0 => Ok(None),
        0xc2 => Ok(Some(vec![TAG_FALSE])),
        0xc3 => Ok(Some(vec![TAG_TRUE])),
        0x00..=0x7f => number(f64::from(marker)),
        0xe0..=0xff => number(f64::from(i8::from_be_bytes([marker]))),
        0xcc => number(f64::from(u8::from_be_bytes(payload(value, at)?))),
        0xcd => number(f64::from(u16::from_be_bytes(payload(value, at)?))),
        0xce => number(f64::from(u32::from_be_bytes(payload(value, at)?))),
        // 64-bit integers beyond 2^53 round to the nearest f64: every indexed number
        // compares as an f64.
        0xcf => number(u64::from_be_bytes(payload(value, at)?) as f64),
        0xd0 => number(f64::from(i8::from_be_bytes(payload(value, at)?))),
        0xd1 => number(f64::from(i16::from_be_bytes(payload(value, at)?))),
        0xd2 => number(f64::from(i32::from_be_bytes(payload(value, at)?))),
        0xd3 => number(i64::from_be_bytes(payload(value, at)?) as f64),
        0xca => number(f64::from(f32::from_be_bytes(payload(value, at)?))),
        0xcb => number(f64::from_be_bytes(payload(value, at)?)),
        0xa0..=0xbf | 0xd9..=0xdb => {
            let text = text_at(value, at)?.expect("a string marker");
            if std::str::from_utf8(text).is_err() {
                return Err("the string is not UTF-8".to_string());
            }
            encode_text(text).map(Some)
        }
        0x80..=0x8f | 0xde | 0xdf => Err("a map cannot be indexed".to_string()),
        0x90..=0x9f | 0xdc | 0xdd => Err("an array cannot be indexed".to_string()),
        0xc4..=0xc6 => Err("a binary value cannot be indexed".to_string()),
        0xc7..=0xc9 | 0xd4..=0xd8 => Err("an extension value cannot be indexed".to_string()),
        0xc1 => Err("reserved msgpack marker 0xc1".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::definitions::parse_pointer;
    use crate::index::key::TAG_TEXT;
    use crate::index::IndexKey;

    fn pointer(field: &str) -> Vec<String> {
        parse_pointer(field).unwrap()
    }

    fn num(n: f64) -> Vec<u8> {
        IndexKey::Number(n).encode().unwrap()
    }

    #[test]
    fn pointers_find_values_in_maps_and_arrays() {
        // {"a": {"b/c": [10, "x", nil]}, "t": true, "big": bin}
        let doc: &[u8] = &[
            0x83, 0xa1, b'a', 0x81, 0xa3, b'b', b'/', b'c', 0x93, 0x0a, 0xa1, b'x', 0xc0, 0xa1,
            b't', 0xc3, 0xa3, b'b', b'i', b'g', 0xc4, 0x01, 0x00,
        ];
        let at = |field: &str| index_value(doc, &pointer(field));
        assert_eq!(at("/a/b~1c/0").unwrap(), Some(num(10.0)));
        assert_eq!(at("/a/b~1c/1").unwrap(), Some(vec![TAG_TEXT, b'x', 0, 0]));
        assert_eq!(at("/a/b~1c/2").unwrap(), None, "nil is not indexed");
        assert_eq!(at("/a/b~1c/3").unwrap(), None, "past the end");
        assert_eq!(at("/a/b~1c/01").unwrap(), None, "leading zero");
        assert_eq!(at("/a/b~1c/-").unwrap(), None);
        assert_eq!(at("/t").unwrap(), Some(vec![TAG_TRUE]));
        assert_eq!(at("/t/x").unwrap(), None, "a scalar has no children");
        assert_eq!(at("/missing").unwrap(), None);
        assert!(at("/a").unwrap_err().contains("map"));
        assert!(at("/a/b~1c").unwrap_err().contains("array"));
        assert!(at("/big").unwrap_err().contains("binary"));
        assert!(at("").unwrap_err().contains("map"));
        let long = {
            let mut v = vec![0xda, 0x01, 0xf5];
            v.extend(std::iter::repeat_n(b'x', 501));
            v
        };
        assert!(index_value(&long, &[]).unwrap_err().contains("501 bytes"));
        assert_eq!(
            index_value(&long[..0], &[]).unwrap_err(),
            "msgpack value truncated at byte 0"
        );
    }
}
