//! The sortable byte encoding of indexed values (see FORMAT.md, `indexes`): `IndexKey`
//! (a bool, a number or a string) and its encoding, whose byte order is value order, so
//! that LMDB's key order serves range queries, and which says where it ends, so that the
//! document key can follow it in one `indexes` key.

use std::fmt;

use super::lookup::encode_scalar;
use crate::error::{Result, StoreError};
use crate::validate::validate_value;

/// Longest indexed string in bytes: an `indexes` key (4 + 1 + at most 1 + 2 × 500 + 2
/// bytes of value + 400 of document key) stays under LMDB's key limit (1982 bytes with
/// 4 KiB pages and `longer-keys`).
pub const MAX_INDEX_STRING_BYTES: usize = 500;

/// The byte a string's encoding writes for a 0 byte of the string (after a 0).
const ESCAPED_ZERO: u8 = 0xff;
/// The two bytes that end a string's encoding.
const TEXT_END: [u8; 2] = [0, 0];

pub(super) const TAG_FALSE: u8 = 0x10;
pub(super) const TAG_TRUE: u8 = 0x11;
pub(super) const TAG_NUMBER: u8 = 0x20;
pub(super) const TAG_TEXT: u8 = 0x40;

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
    pub fn decode(encoded: &[u8]) -> Result<IndexKey> {
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
            [TAG_TEXT, rest @ ..] => {
                let bytes = unescape_text(rest).ok_or_else(corrupt)?;
                String::from_utf8(bytes)
                    .map(IndexKey::Text)
                    .map_err(|_| corrupt())
            }
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

/// `0x20` then the f64's bits made sortable: all bits flipped for negatives, the sign
/// bit flipped for positives; -0.0 is 0.0; NaN is refused.
pub(super) fn encode_number(n: f64) -> std::result::Result<[u8; 9], String> {
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

/// `0x40` then the string's bytes, each 0 byte written as `0x00 0xff`, then `0x00 0x00`:
/// a shorter string sorts before the longer ones it begins, and the encoding ends where
/// its terminator is.
pub(super) fn encode_text(text: &[u8]) -> std::result::Result<Vec<u8>, String> {
    if text.len() > MAX_INDEX_STRING_BYTES {
        return Err(format!(
            "a string of {} bytes is longer than the {MAX_INDEX_STRING_BYTES} bytes an index holds",
            text.len()
        ));
    }
    let mut out = Vec::with_capacity(1 + text.len() + TEXT_END.len());
    out.push(TAG_TEXT);
    for &byte in text {
        out.push(byte);
        if byte == 0 {
            out.push(ESCAPED_ZERO);
        }
    }
    out.extend_from_slice(&TEXT_END);
    Ok(out)
}

/// The bytes of an encoded string after its tag, when they are exactly one escaped
/// string and its terminator.
fn unescape_text(escaped: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(escaped.len());
    let mut bytes = escaped.iter();
    while let Some(&byte) = bytes.next() {
        if byte != 0 {
            out.push(byte);
            continue;
        }
        match bytes.next() {
            Some(&ESCAPED_ZERO) => out.push(0),
            Some(0) if bytes.as_slice().is_empty() => return Some(out),
            _ => return None,
        }
    }
    None
}

/// The length of the encoded value at the start of `bytes` (an `indexes` key after its
/// database id and position), or `None` when no encoded value starts there.
pub(crate) fn encoded_len(bytes: &[u8]) -> Option<usize> {
    match bytes.first()? {
        &TAG_FALSE | &TAG_TRUE => Some(1),
        &TAG_NUMBER => (bytes.len() >= 9).then_some(9),
        &TAG_TEXT => {
            let mut at = 1;
            loop {
                match bytes.get(at..at + 2)? {
                    [0, 0] => return Some(at + 2),
                    [0, ESCAPED_ZERO] => at += 2,
                    [0, _] => return None,
                    _ => at += 1,
                }
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(n: f64) -> Vec<u8> {
        IndexKey::Number(n).encode().unwrap()
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
    fn strings_sort_by_bytes_and_say_where_they_end() {
        let texts = [
            "", "\0", "\0\0", "\0a", "a", "a\0", "a\0b", "a\u{1}", "ab", "b", "é",
        ];
        let encoded: Vec<Vec<u8>> = texts
            .iter()
            .map(|t| IndexKey::Text(t.to_string()).encode().unwrap())
            .collect();
        for (pair, names) in encoded.windows(2).zip(texts.windows(2)) {
            assert!(pair[0] < pair[1], "{names:?}");
        }
        for (bytes, text) in encoded.iter().zip(texts) {
            assert_eq!(
                IndexKey::decode(bytes).unwrap(),
                IndexKey::Text(text.into())
            );
            // Whatever follows (a document key), the encoding says where it ends.
            let mut entry = bytes.clone();
            entry.extend_from_slice(b"\0key");
            assert_eq!(encoded_len(&entry), Some(bytes.len()), "{text:?}");
            // A shorter value's entries sort before a longer value's, whatever the key.
            let mut low = bytes.clone();
            low.extend_from_slice(&[0xff; 8]);
            assert!(encoded
                .iter()
                .filter(|other| *other > bytes)
                .all(|other| low < *other));
        }
        assert_eq!(encoded_len(&num(1.5)), Some(9));
        assert_eq!(encoded_len(&[TAG_TRUE, b'k']), Some(1));
        for bad in [&[][..], &[0x40, b'a'], &[0x40, 0, 1], &[0x20, 1], &[0x33]] {
            assert_eq!(encoded_len(bad), None, "{bad:02x?}");
        }
        assert!(IndexKey::decode(&[0x40, b'a', 0, 0, b'x']).is_err());
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
}
