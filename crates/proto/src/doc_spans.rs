//! Reading a page of documents in place: the msgpack of a `scan` or `find` result
//! (`{docs: [{key, rev, value, …}], more}`) walked once, each document's key and value
//! noted as a range of the bytes instead of copied into a `String` and a `Value` tree.
//! A client keeps the frame and lends the documents from it (the mirror image of
//! `pages`, which writes such pages from a read transaction's borrowed bytes).

use std::ops::Range;

use rmp::decode::{read_array_len, read_bool, read_int, read_map_len, read_str_len};

use crate::message::MAX_MESSAGE_DEPTH;
use crate::value_len::value_len;

/// Where one document of a page lies in the page's msgpack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocSpan {
    /// The key's UTF-8 bytes (checked while reading).
    pub key: Range<usize>,
    pub rev: u64,
    /// The msgpack of the value, exactly one well-formed value.
    pub value: Range<usize>,
}

/// The documents and `more` of the msgpack `bytes` of a `scan` or `find` result; fields
/// other than `docs` and `more`, and document fields other than `key`, `rev` and `value`
/// (`find`'s `index_value`), are stepped over. `Err` says what is malformed.
pub fn read_docs_result(bytes: &[u8]) -> Result<(Vec<DocSpan>, bool), String> {
    let mut reader = Reader { bytes, rest: bytes };
    let (mut docs, mut more) = (None, None);
    for _ in 0..reader.map_len()? {
        match reader.field_name()? {
            b"docs" => {
                let count = read_array_len(&mut reader.rest).map_err(|e| e.to_string())?;
                // Every document takes at least a byte: a count beyond the bytes left
                // is malformed, not a reason to reserve memory for it.
                if count as usize > reader.rest.len() {
                    return Err(format!("{count} documents announced in fewer bytes"));
                }
                let mut spans = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    spans.push(reader.doc()?);
                }
                docs = Some(spans);
            }
            b"more" => more = Some(read_bool(&mut reader.rest).map_err(|e| e.to_string())?),
            _ => {
                reader.skip_value()?;
            }
        }
    }
    if !reader.rest.is_empty() {
        return Err("bytes after the result".to_string());
    }
    match (docs, more) {
        (Some(docs), Some(more)) => Ok((docs, more)),
        _ => Err("a page needs `docs` and `more`".to_string()),
    }
}

/// Whether `marker` begins a map or an array.
fn is_container(marker: u8) -> bool {
    matches!(marker, 0x80..=0x9f | 0xdc..=0xdf)
}

/// A position in a result's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn offset(&self) -> usize {
        self.bytes.len() - self.rest.len()
    }

    fn map_len(&mut self) -> Result<u32, String> {
        read_map_len(&mut self.rest).map_err(|e| e.to_string())
    }

    /// Where a string lies, its bytes checked as UTF-8 (at once when they are ASCII, as
    /// keys mostly are).
    fn text(&mut self) -> Result<Range<usize>, String> {
        let len = read_str_len(&mut self.rest).map_err(|e| e.to_string())? as usize;
        if len > self.rest.len() {
            return Err("a string runs past the end".to_string());
        }
        let (text, rest) = self.rest.split_at(len);
        if !text.is_ascii() {
            std::str::from_utf8(text).map_err(|e| format!("a key is not UTF-8: {e}"))?;
        }
        self.rest = rest;
        Ok(self.offset() - len..self.offset())
    }

    /// A field's name as bytes: compared with the names this reader knows, it needs no
    /// UTF-8 check (a name it does not know is stepped over with its value).
    fn field_name(&mut self) -> Result<&'a [u8], String> {
        let len = read_str_len(&mut self.rest).map_err(|e| e.to_string())? as usize;
        if len > self.rest.len() {
            return Err("a field name runs past the end".to_string());
        }
        let (name, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(name)
    }

    /// Steps over one value (nested no deeper than a message may be): a scalar by its
    /// marker and length (`value_len`), anything else (a map or an array, whose depth
    /// must be bounded, and the reserved marker, which the `Value` reader takes as nil)
    /// with the `Value` reader.
    fn skip_value(&mut self) -> Result<Range<usize>, String> {
        let start = self.offset();
        let scalar = self
            .rest
            .first()
            .is_some_and(|&marker| !is_container(marker));
        match value_len(self.rest).filter(|_| scalar) {
            Some(len) => self.rest = &self.rest[len..],
            None => {
                rmpv::decode::read_value_ref_with_max_depth(&mut self.rest, MAX_MESSAGE_DEPTH)
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(start..self.offset())
    }

    fn doc(&mut self) -> Result<DocSpan, String> {
        let (mut key, mut rev, mut value) = (None, None, None);
        for _ in 0..self.map_len()? {
            match self.field_name()? {
                b"key" => key = Some(self.text()?),
                b"rev" => rev = Some(read_int(&mut self.rest).map_err(|e| e.to_string())?),
                b"value" => value = Some(self.skip_value()?),
                _ => {
                    self.skip_value()?;
                }
            }
        }
        let (Some(key), Some(rev), Some(value)) = (key, rev, value) else {
            return Err("a document needs `key`, `rev` and `value`".to_string());
        };
        Ok(DocSpan { key, rev, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::{to_value, Doc, FindResult, FoundDoc, ScanResult};
    use rmpv::Value;

    fn msgpack(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, value).unwrap();
        out
    }

    fn docs() -> Vec<Doc> {
        let values = [
            Value::Nil,
            Value::from(-7),
            Value::from("ä text"),
            Value::Binary(vec![0; 300]),
            Value::Array(vec![
                Value::from(1),
                Value::Map(vec![(Value::from("k"), Value::from(true))]),
            ]),
        ];
        values
            .into_iter()
            .enumerate()
            .map(|(i, value)| Doc {
                key: format!("key-{i}-ü"),
                rev: 10u64.pow(u32::try_from(i).unwrap()),
                value,
            })
            .collect()
    }

    /// Every document read in place is the one encoded, and `more` too.
    fn check(bytes: &[u8], expected: &[Doc], more: bool) {
        let (spans, read_more) = read_docs_result(bytes).unwrap();
        assert_eq!(read_more, more);
        assert_eq!(spans.len(), expected.len());
        for (span, doc) in spans.iter().zip(expected) {
            assert_eq!(
                std::str::from_utf8(&bytes[span.key.clone()]).unwrap(),
                doc.key
            );
            assert_eq!(span.rev, doc.rev);
            assert_eq!(&bytes[span.value.clone()], msgpack(&doc.value).as_slice());
        }
    }

    #[test]
    fn scan_and_find_results_read_in_place() {
        let docs = docs();
        for more in [false, true] {
            let scan = ScanResult {
                docs: docs.clone(),
                more,
            };
            check(&msgpack(&to_value(&scan)), &docs, more);
            let found = FindResult {
                docs: docs
                    .iter()
                    .map(|doc| FoundDoc {
                        key: doc.key.clone(),
                        rev: doc.rev,
                        value: doc.value.clone(),
                        index_value: Value::from("v"),
                    })
                    .collect(),
                more,
            };
            check(&msgpack(&to_value(&found)), &docs, more);
        }
        check(
            &msgpack(&to_value(&ScanResult {
                docs: vec![],
                more: false,
            })),
            &[],
            false,
        );
    }

    /// A page of one document `k` whose value is the msgpack `value`, `more` false.
    fn page_with_value(value: &[u8]) -> Vec<u8> {
        let mut page = vec![0x82, 0xa4];
        page.extend_from_slice(b"docs");
        page.extend_from_slice(&[0x91, 0x83, 0xa3]);
        page.extend_from_slice(b"key");
        page.extend_from_slice(&[0xa1, b'k', 0xa3, b'r', b'e', b'v', 0x01, 0xa5]);
        page.extend_from_slice(b"value");
        page.extend_from_slice(value);
        page.extend_from_slice(&[0xa4, b'm', b'o', b'r', b'e', 0xc2]);
        page
    }

    #[test]
    fn values_are_taken_as_the_value_reader_takes_them() {
        // The reserved marker, which a loosely migrated store may serve and the `Value`
        // reader reads as nil, is one value of one byte, alone or inside an array.
        for value in [&[0xc1][..], &[0x92, 0xc1, 0x01]] {
            let page = page_with_value(value);
            let (spans, _) = read_docs_result(&page).unwrap();
            assert_eq!(&page[spans[0].value.clone()], value);
        }
        // Nesting: exactly as deep as the `Value` reader takes in a message, no deeper.
        let (mut taken, mut refused) = (0, 0);
        for depth in 0..=MAX_MESSAGE_DEPTH {
            let value = [vec![0x91; depth], vec![0xc0]].concat();
            let decodes =
                rmpv::decode::read_value_with_max_depth(&mut &value[..], MAX_MESSAGE_DEPTH).is_ok();
            let read = read_docs_result(&page_with_value(&value)).is_ok();
            assert_eq!(read, decodes, "{depth} arrays deep");
            (taken, refused) = if read {
                (taken + 1, refused)
            } else {
                (taken, refused + 1)
            };
        }
        assert!(taken > 0 && refused > 0);
    }

    #[test]
    fn malformed_pages_are_errors() {
        let good = msgpack(&to_value(&ScanResult {
            docs: docs(),
            more: true,
        }));
        // Cut anywhere, or followed by a byte, it is refused, never read wrong.
        for cut in 0..good.len() {
            assert!(read_docs_result(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = good.clone();
        longer.push(0xc0);
        assert!(read_docs_result(&longer).is_err());
        let missing_more = msgpack(&Value::Map(vec![(
            Value::from("docs"),
            Value::Array(vec![]),
        )]));
        assert!(read_docs_result(&missing_more).is_err());
        let missing_rev = msgpack(&Value::Map(vec![
            (
                Value::from("docs"),
                Value::Array(vec![Value::Map(vec![
                    (Value::from("key"), Value::from("k")),
                    (Value::from("value"), Value::Nil),
                ])]),
            ),
            (Value::from("more"), Value::from(false)),
        ]));
        assert!(read_docs_result(&missing_rev).is_err());
        // A key must be UTF-8 (a page's keys are lent as `&str` without a second check);
        // one that is not ASCII is read as it is.
        let page_with_key = |key: &[u8]| {
            let mut page = vec![0x82, 0xa4];
            page.extend_from_slice(b"docs");
            page.extend_from_slice(&[0x91, 0x83, 0xa3]);
            page.extend_from_slice(b"key");
            page.push(0xa0 | u8::try_from(key.len()).unwrap());
            page.extend_from_slice(key);
            page.extend_from_slice(&[0xa3, b'r', b'e', b'v', 0x01, 0xa5]);
            page.extend_from_slice(b"value");
            page.push(0xc0);
            page.extend_from_slice(&[0xa4, b'm', b'o', b'r', b'e', 0xc2]);
            page
        };
        let (spans, _) = read_docs_result(&page_with_key("clé".as_bytes())).unwrap();
        assert_eq!(spans[0].key.len(), "clé".len());
        assert!(read_docs_result(&page_with_key(&[b'k', 0xc3, 0x28])).is_err());
        // A count of documents the bytes cannot hold reserves nothing.
        let mut huge = vec![0x82, 0xa4];
        huge.extend_from_slice(b"docs");
        huge.extend_from_slice(&[0xdd, 0xff, 0xff, 0xff, 0xff]);
        assert!(read_docs_result(&huge).is_err());
    }
}
