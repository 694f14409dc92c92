//! Secondary indexes: the rules for index definitions (names, JSON pointers), finding
//! the value a JSON pointer (RFC 6901) names inside a msgpack document without decoding
//! the rest of it, and the sortable byte encoding of indexed values (`IndexKey`), whose
//! byte order is value order so that LMDB's key order serves range queries.

use std::collections::HashSet;
use std::fmt;
use std::ops::Bound;

use crate::error::{Result, StoreError};
use crate::format::IndexDef;
use crate::validate::{skip_msgpack_value, validate_database_name, validate_value};

/// Most indexes one database may declare.
pub const MAX_INDEXES: usize = 16;

/// Longest indexed string in bytes: an `indexes` key (4 + 1 + 1 + 500 bytes) stays
/// under LMDB's 511-byte key limit.
pub const MAX_INDEX_STRING_BYTES: usize = 500;

/// Longest `field` (JSON pointer) of an index definition, in bytes.
pub const MAX_INDEX_FIELD_BYTES: usize = 1024;

const TAG_FALSE: u8 = 0x10;
const TAG_TRUE: u8 = 0x11;
const TAG_NUMBER: u8 = 0x20;
const TAG_TEXT: u8 = 0x40;

/// An indexed value. Values order as their encodings do: `false` < `true` < every
/// number (by value; all msgpack integers and floats compare as f64) < every string
/// (by UTF-8 bytes).
#[derive(Debug, Clone, PartialEq)]
pub enum IndexKey {
    Bool(bool),
    Number(f64),
    Text(String),
}

impl IndexKey {
    /// The key for one msgpack-encoded value (as a client sends it). Nil, maps,
    /// arrays, binaries, extensions, NaN and strings over 500 bytes are refused with
    /// `InvalidArgument`: they are never indexed.
    pub fn from_msgpack(bytes: &[u8]) -> Result<IndexKey> {
        validate_value(bytes, usize::MAX)?;
        let invalid = |reason: String| StoreError::InvalidArgument {
            reason: format!("an index query value: {reason}"),
        };
        match encode_scalar(bytes, 0).map_err(invalid)? {
            Some(encoded) => IndexKey::decode(&encoded),
            None => Err(invalid("nil is never indexed".to_string())),
        }
    }

    /// The sortable encoding (see FORMAT.md, `indexes`). `InvalidArgument` for NaN and
    /// strings over 500 bytes.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let invalid = |reason: String| StoreError::InvalidArgument {
            reason: format!("an index query value: {reason}"),
        };
        match self {
            IndexKey::Bool(false) => Ok(vec![TAG_FALSE]),
            IndexKey::Bool(true) => Ok(vec![TAG_TRUE]),
            IndexKey::Number(n) => encode_number(*n).map(|b| b.to_vec()).map_err(invalid),
            IndexKey::Text(text) => encode_text(text.as_bytes()).map_err(invalid),
        }
    }

    /// Reads an encoding back (a stored entry): `Corrupt` when it is not one.
    pub(crate) fn decode(encoded: &[u8]) -> Result<IndexKey> {
        let corrupt = || StoreError::Corrupt {
            table: crate::format::table::INDEXES,
            reason: format!("index value {encoded:02x?} is not an encoded value"),
        };
        match encoded {
            [TAG_FALSE] => Ok(IndexKey::Bool(false)),
            [TAG_TRUE] => Ok(IndexKey::Bool(true)),
            [TAG_NUMBER, rest @ ..] => {
                let bits = u64::from_be_bytes(rest.try_into().map_err(|_| corrupt())?);
                let bits = if bits & (1 << 63) != 0 {
                    bits ^ (1 << 63)
                } else {
                    !bits
                };
                Ok(IndexKey::Number(f64::from_bits(bits)))
            }
            [TAG_TEXT, rest @ ..] => std::str::from_utf8(rest)
                .map(|t| IndexKey::Text(t.to_string()))
                .map_err(|_| corrupt()),
            _ => Err(corrupt()),
        }
    }
}

impl fmt::Display for IndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexKey::Bool(b) => write!(f, "{b}"),
            IndexKey::Number(n) => write!(f, "{n}"),
            IndexKey::Text(t) => write!(f, "{t:?}"),
        }
    }
}

/// The display text of an encoded value (for error messages).
pub(crate) fn display_encoded(encoded: &[u8]) -> String {
    IndexKey::decode(encoded)
        .map(|k| k.to_string())
        .unwrap_or_else(|_| format!("{encoded:02x?}"))
}

/// A query on one index of a database (see `DatabaseView::find`).
#[derive(Debug, Clone, PartialEq)]
pub struct IndexQuery {
    /// The index's name.
    pub index: String,
    /// Lowest value (an exact match: `start` = `end` = `Included(v)`).
    pub start: Bound<IndexKey>,
    /// Highest value.
    pub end: Bound<IndexKey>,
    /// Most documents returned (1 to `MAX_SCAN_LIMIT`).
    pub limit: usize,
    /// Descending (value, document key) order.
    pub reverse: bool,
    /// Resume strictly after this (value, document key): the last of the previous page.
    pub after: Option<(IndexKey, String)>,
}

impl IndexQuery {
    /// Every document whose value at the index is `value`, in key order.
    pub fn exact(index: &str, value: IndexKey, limit: usize) -> IndexQuery {
        IndexQuery {
            index: index.to_string(),
            start: Bound::Included(value.clone()),
            end: Bound::Included(value),
            limit,
            reverse: false,
            after: None,
        }
    }
}

/// One page of `find` results.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundPage {
    /// Each document with its value at the index, in (value, key) order.
    pub docs: Vec<(IndexKey, crate::store::Document)>,
    /// True when more documents lie in the range after this page; resume with `after`
    /// = the last (value, key) of `docs`.
    pub more: bool,
}

/// Checks index definitions: at most 16, names by the database naming rule and unique,
/// fields valid JSON pointers. `InvalidArgument` with the first problem.
pub fn validate_index_defs(defs: &[IndexDef]) -> Result<()> {
    let invalid = |reason: String| Err(StoreError::InvalidArgument { reason });
    if defs.len() > MAX_INDEXES {
        return invalid(format!(
            "a database has at most {MAX_INDEXES} indexes, not {}",
            defs.len()
        ));
    }
    let mut names = HashSet::new();
    for def in defs {
        if let Err(StoreError::InvalidName { reason, .. }) = validate_database_name(&def.name) {
            return invalid(format!("invalid index name {:?}: {reason}", def.name));
        }
        if !names.insert(def.name.as_str()) {
            return invalid(format!("two indexes are named {:?}", def.name));
        }
        if def.field.len() > MAX_INDEX_FIELD_BYTES {
            return invalid(format!(
                "the field of index {:?} is longer than {MAX_INDEX_FIELD_BYTES} bytes",
                def.name
            ));
        }
        if let Err(reason) = parse_pointer(&def.field) {
            return invalid(format!(
                "the field {:?} of index {:?} {reason}",
                def.field, def.name
            ));
        }
    }
    Ok(())
}

/// The reference tokens of a JSON pointer: "" is the whole value; otherwise it starts
/// with `/` and `~0`, `~1` stand for `~` and `/`.
pub(crate) fn parse_pointer(field: &str) -> std::result::Result<Vec<String>, String> {
    if field.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = field.strip_prefix('/') else {
        return Err("must be empty or start with '/' (a JSON pointer)".to_string());
    };
    rest.split('/')
        .map(|token| {
            let mut out = String::with_capacity(token.len());
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                if c != '~' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('0') => out.push('~'),
                    Some('1') => out.push('/'),
                    _ => return Err("has a '~' not followed by 0 or 1".to_string()),
                }
            }
            Ok(out)
        })
        .collect()
}

/// The indexes of one database, ready to apply to documents.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub name: String,
    pub pointer: Vec<String>,
    pub unique: bool,
}

/// Compiles stored definitions; a definition that no longer parses is `Corrupt`.
pub(crate) fn compile(defs: &[IndexDef]) -> Result<Vec<Compiled>> {
    defs.iter()
        .map(|def| {
            Ok(Compiled {
                name: def.name.clone(),
                pointer: parse_pointer(&def.field).map_err(|reason| StoreError::Corrupt {
                    table: crate::format::table::CONFIGS,
                    reason: format!("index {:?}: field {reason}", def.name),
                })?,
                unique: def.unique,
            })
        })
        .collect()
}

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
fn encode_scalar(value: &[u8], at: usize) -> std::result::Result<Option<Vec<u8>>, String> {
    let marker = byte(value, at)?;
    let number = |n: f64| encode_number(n).map(|b| Some(b.to_vec()));
    let int = |width: usize| be(value, at + 1, width);
    match marker {
        0xc0 => Ok(None),
        0xc2 => Ok(Some(vec![TAG_FALSE])),
        0xc3 => Ok(Some(vec![TAG_TRUE])),
        0x00..=0x7f => number(f64::from(marker)),
        0xe0..=0xff => number(f64::from(marker as i8)),
        0xcc => number(int(1)? as f64),
        0xcd => number(int(2)? as f64),
        0xce => number(int(4)? as f64),
        0xcf => number(int(8)? as f64),
        0xd0 => number(f64::from(int(1)? as u8 as i8)),
        0xd1 => number(f64::from(int(2)? as u16 as i16)),
        0xd2 => number(f64::from(int(4)? as u32 as i32)),
        0xd3 => number(int(8)? as i64 as f64),
        0xca => number(f64::from(f32::from_bits(int(4)? as u32))),
        0xcb => number(f64::from_bits(int(8)?)),
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

/// `0x20` then the f64's bits made sortable: all bits flipped for negatives, the sign
/// bit flipped for positives; -0.0 is 0.0; NaN is refused.
fn encode_number(n: f64) -> std::result::Result<[u8; 9], String> {
    if n.is_nan() {
        return Err("NaN cannot be indexed".to_string());
    }
    let n = if n == 0.0 { 0.0 } else { n };
    let bits = n.to_bits();
    let bits = if bits & (1 << 63) != 0 {
        !bits
    } else {
        bits ^ (1 << 63)
    };
    let mut out = [0u8; 9];
    out[0] = TAG_NUMBER;
    out[1..].copy_from_slice(&bits.to_be_bytes());
    Ok(out)
}

fn encode_text(text: &[u8]) -> std::result::Result<Vec<u8>, String> {
    if text.len() > MAX_INDEX_STRING_BYTES {
        return Err(format!(
            "a string of {} bytes is longer than the {MAX_INDEX_STRING_BYTES} bytes an index holds",
            text.len()
        ));
    }
    let mut out = Vec::with_capacity(1 + text.len());
    out.push(TAG_TEXT);
    out.extend_from_slice(text);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointer(field: &str) -> Vec<String> {
        parse_pointer(field).unwrap()
    }

    fn num(n: f64) -> Vec<u8> {
        IndexKey::Number(n).encode().unwrap()
    }

    #[test]
    fn pointers_parse_per_rfc_6901() {
        assert_eq!(pointer(""), Vec::<String>::new());
        assert_eq!(pointer("/"), vec![""]);
        assert_eq!(pointer("/a/b"), vec!["a", "b"]);
        assert_eq!(pointer("/a~1b/m~0n"), vec!["a/b", "m~n"]);
        assert_eq!(pointer("/~01"), vec!["~1"]);
        assert!(parse_pointer("a").is_err());
        assert!(parse_pointer("/a~").is_err());
        assert!(parse_pointer("/a~2").is_err());
    }

    #[test]
    fn numbers_sort_by_value() {
        let values = [
            f64::NEG_INFINITY,
            -1e300,
            -2.5,
            -1.0,
            -f64::MIN_POSITIVE,
            0.0,
            f64::MIN_POSITIVE,
            0.5,
            1.0,
            2.0,
            1e300,
            f64::INFINITY,
        ];
        for pair in values.windows(2) {
            assert!(num(pair[0]) < num(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        assert_eq!(num(-0.0), num(0.0));
        for v in values {
            assert_eq!(
                IndexKey::decode(&num(v)).unwrap(),
                IndexKey::Number(v),
                "{v}"
            );
        }
        assert!(IndexKey::Number(f64::NAN).encode().is_err());
        // Types order false < true < numbers < strings.
        let f = IndexKey::Bool(false).encode().unwrap();
        let t = IndexKey::Bool(true).encode().unwrap();
        let s = IndexKey::Text(String::new()).encode().unwrap();
        assert!(f < t && t < num(f64::NEG_INFINITY) && num(f64::INFINITY) < s);
        assert!(
            IndexKey::Text("ab".into()).encode().unwrap()
                < IndexKey::Text("b".into()).encode().unwrap()
        );
    }

    #[test]
    fn every_msgpack_number_form_indexes_as_its_value() {
        let forms: &[(&[u8], f64)] = &[
            (&[0x05], 5.0),
            (&[0xff], -1.0),
            (&[0xe0], -32.0),
            (&[0xcc, 200], 200.0),
            (&[0xcd, 1, 0], 256.0),
            (&[0xce, 0, 1, 0, 0], 65536.0),
            (&[0xcf, 0, 0, 0, 1, 0, 0, 0, 0], 4294967296.0),
            (&[0xd0, 0x80], -128.0),
            (&[0xd1, 0xff, 0x00], -256.0),
            (&[0xd2, 0xff, 0xff, 0xff, 0xfe], -2.0),
            (
                &[0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfd],
                -3.0,
            ),
            (&[0xca, 0x3f, 0xc0, 0, 0], 1.5),
            (&[0xcb, 0xc0, 0x04, 0, 0, 0, 0, 0, 0], -2.5),
        ];
        for (bytes, expected) in forms {
            assert_eq!(
                IndexKey::from_msgpack(bytes).unwrap(),
                IndexKey::Number(*expected),
                "{bytes:02x?}"
            );
        }
        assert_eq!(
            IndexKey::from_msgpack(&[0xc3]).unwrap(),
            IndexKey::Bool(true)
        );
        assert_eq!(
            IndexKey::from_msgpack(&[0xa2, b'h', b'i']).unwrap(),
            IndexKey::Text("hi".into())
        );
        for bad in [
            &[0xc0][..],
            &[0x90],
            &[0x80],
            &[0xc4, 0],
            &[0xd4, 1, 2],
            &[0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1],
            &[0xa1, 0xff],
        ] {
            assert!(
                matches!(
                    IndexKey::from_msgpack(bad),
                    Err(StoreError::InvalidArgument { .. })
                ),
                "{bad:02x?}"
            );
        }
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
        assert_eq!(at("/a/b~1c/1").unwrap(), Some(vec![TAG_TEXT, b'x']));
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

    #[test]
    fn definitions_are_checked() {
        let def = |name: &str, field: &str| IndexDef {
            name: name.to_string(),
            field: field.to_string(),
            unique: false,
        };
        assert!(validate_index_defs(&[def("by_a", "/a"), def("whole", "")]).is_ok());
        for (defs, needle) in [
            (vec![def("Bad", "/a")], "invalid index name"),
            (vec![def("a", "/a"), def("a", "/b")], "two indexes"),
            (vec![def("a", "a")], "JSON pointer"),
            (vec![def("a", "/~")], "'~'"),
            (
                (0..17).map(|i| def(&format!("i{i}"), "/a")).collect(),
                "at most 16",
            ),
        ] {
            let err = validate_index_defs(&defs).unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidArgument { .. })
                    && err.to_string().contains(needle),
                "{err}"
            );
        }
    }
}
