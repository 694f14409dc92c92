//! Input rules, checked before anything reaches a transaction: database names, document
//! keys (UTF-8, 1 to 400 bytes) and values (exactly one well-formed msgpack value, under
//! the size limit). Bad input is refused here so that it can never change anything.

use crate::error::{Result, StoreError};

/// Longest document key in bytes. LMDB keys are limited to 511 bytes and the stored key
/// carries a 4-byte database id in front of the document key.
pub const MAX_KEY_BYTES: usize = 400;

/// Longest database name in bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// Deepest nesting of arrays and maps accepted inside a value.
pub const MAX_VALUE_DEPTH: usize = 512;

/// Checks a database name: 1 to 64 of `a-z 0-9 _ -`, starting with a letter.
pub fn validate_database_name(name: &str) -> Result<()> {
    let invalid = |reason: &str| {
        Err(StoreError::InvalidName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return invalid("a name must have 1 to 64 characters");
    }
    if name.len() > MAX_NAME_BYTES {
        return invalid("a name must have at most 64 characters");
    }
    if !name.as_bytes()[0].is_ascii_lowercase() {
        return invalid("a name must start with a letter a-z");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return invalid("a name may only hold a-z, 0-9, _ and -");
    }
    Ok(())
}

/// Checks a document key given as text.
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(StoreError::InvalidKey {
            reason: "a key must not be empty".to_string(),
        });
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(StoreError::InvalidKey {
            reason: format!(
                "a key is at most {MAX_KEY_BYTES} bytes, this one has {}",
                key.len()
            ),
        });
    }
    Ok(())
}

/// Checks a document key given as raw bytes (as it arrives off the wire) and returns it
/// as text.
pub fn validate_key_bytes(key: &[u8]) -> Result<&str> {
    let text = std::str::from_utf8(key).map_err(|e| StoreError::InvalidKey {
        reason: format!("a key must be UTF-8 ({e})"),
    })?;
    validate_key(text)?;
    Ok(text)
}

/// Checks that `value` is exactly one msgpack value of at most `limit` bytes.
pub fn validate_value(value: &[u8], limit: usize) -> Result<()> {
    if value.len() > limit {
        return Err(StoreError::ValueTooLarge {
            size: value.len(),
            limit,
        });
    }
    let end = skip_msgpack_value(value).map_err(|reason| StoreError::InvalidValue { reason })?;
    if end != value.len() {
        return Err(StoreError::InvalidValue {
            reason: format!(
                "{} bytes after the end of the msgpack value",
                value.len() - end
            ),
        });
    }
    Ok(())
}

/// Walks one msgpack value without recursion and returns where it ends. Containers push
/// their item count on a stack, so hostile nesting costs memory bounded by
/// `MAX_VALUE_DEPTH`, never stack.
pub(crate) fn skip_msgpack_value(bytes: &[u8]) -> std::result::Result<usize, String> {
    let mut pos = 0usize;
    // Items still to read at each open container level; the bottom entry is the value itself.
    let mut pending: Vec<u64> = vec![1];
    while let Some(top) = pending.last_mut() {
        if *top == 0 {
            pending.pop();
            continue;
        }
        *top -= 1;
        let marker = *bytes
            .get(pos)
            .ok_or_else(|| format!("msgpack value truncated at byte {pos}"))?;
        pos += 1;
        let (skip, children): (u64, u64) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * u64::from(marker & 0x0f)),
            0x90..=0x9f => (0, u64::from(marker & 0x0f)),
            0xa0..=0xbf => (u64::from(marker & 0x1f), 0),
            0xc1 => return Err(format!("reserved msgpack marker 0xc1 at byte {}", pos - 1)),
            0xc4 | 0xd9 => (read_be(bytes, &mut pos, 1)?, 0),
            0xc5 | 0xda => (read_be(bytes, &mut pos, 2)?, 0),
            0xc6 | 0xdb => (read_be(bytes, &mut pos, 4)?, 0),
            0xc7 => (read_be(bytes, &mut pos, 1)? + 1, 0),
            0xc8 => (read_be(bytes, &mut pos, 2)? + 1, 0),
            0xc9 => (read_be(bytes, &mut pos, 4)? + 1, 0),
            0xca => (4, 0),
            0xcb => (8, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xce | 0xd2 => (4, 0),
            0xcf | 0xd3 => (8, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => (0, read_be(bytes, &mut pos, 2)?),
            0xdd => (0, read_be(bytes, &mut pos, 4)?),
            0xde => (0, 2 * read_be(bytes, &mut pos, 2)?),
            0xdf => (0, 2 * read_be(bytes, &mut pos, 4)?),
        };
        let remaining = bytes.len() - pos;
        let Some(skip) = usize::try_from(skip).ok().filter(|skip| *skip <= remaining) else {
            return Err(format!(
                "msgpack value truncated: {skip} bytes announced at byte {pos}, {remaining} left"
            ));
        };
        pos += skip;
        if children > 0 {
            // Every child takes at least one byte: refuse counts the input cannot hold.
            if children > (bytes.len() - pos) as u64 {
                return Err(format!(
                    "msgpack container at byte {pos} announces {children} items, more than the bytes left"
                ));
            }
            if pending.len() > MAX_VALUE_DEPTH {
                return Err(format!(
                    "msgpack value nested deeper than {MAX_VALUE_DEPTH}"
                ));
            }
            pending.push(children);
        }
    }
    Ok(pos)
}

fn read_be(bytes: &[u8], pos: &mut usize, width: usize) -> std::result::Result<u64, String> {
    let slice = bytes
        .get(*pos..*pos + width)
        .ok_or_else(|| format!("msgpack length truncated at byte {}", *pos))?;
    *pos += width;
    Ok(slice.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_follow_the_rule() {
        for good in ["a", "users", "a1_b-c", &"x".repeat(64)] {
            assert!(validate_database_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "_a",
            "-a",
            "Abc",
            "a b",
            "a.b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(
                matches!(
                    validate_database_name(bad),
                    Err(StoreError::InvalidName { .. })
                ),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn keys_are_one_to_four_hundred_utf8_bytes() {
        assert!(validate_key("k").is_ok());
        assert!(validate_key(&"é".repeat(200)).is_ok());
        assert!(matches!(
            validate_key(""),
            Err(StoreError::InvalidKey { .. })
        ));
        assert!(matches!(
            validate_key(&"k".repeat(401)),
            Err(StoreError::InvalidKey { .. })
        ));
        assert!(matches!(
            validate_key_bytes(&[0x66, 0xff, 0x66]),
            Err(StoreError::InvalidKey { .. })
        ));
        assert_eq!(validate_key_bytes(b"abc").unwrap(), "abc");
    }

    #[test]
    fn well_formed_values_pass() {
        let samples: &[&[u8]] = &[
            &[0xc0],                                           // nil
            &[0x2a],                                           // 42
            &[0xa3, b'a', b'b', b'c'],                         // "abc"
            &[0x92, 0x01, 0x91, 0xc3],                         // [1, [true]]
            &[0x81, 0xa1, b'k', 0xcb, 0, 0, 0, 0, 0, 0, 0, 0], // {"k": 0.0}
            &[0xc4, 0x02, 0xde, 0xad],                         // bin 2
            &[0xd6, 0xff, 0, 0, 0, 1],                         // timestamp ext
            &[0xdc, 0x00, 0x02, 0xc2, 0xc3],                   // array16 [false, true]
            &[0x90],                                           // []
        ];
        for sample in samples {
            assert!(validate_value(sample, 1024).is_ok(), "{sample:02x?}");
        }
    }

    #[test]
    fn malformed_values_are_refused() {
        let samples: &[&[u8]] = &[
            &[],                             // nothing
            &[0xc1],                         // reserved
            &[0xa3, b'a'],                   // short string
            &[0x92, 0x01],                   // array missing an item
            &[0x01, 0x02],                   // two values
            &[0xdd, 0xff, 0xff, 0xff, 0xff], // huge array count
            &[0xc6, 0xff, 0xff, 0xff],       // truncated length
        ];
        for sample in samples {
            assert!(
                matches!(
                    validate_value(sample, 1024),
                    Err(StoreError::InvalidValue { .. })
                ),
                "{sample:02x?} must be refused"
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let mut deep = vec![0x91u8; 100_000];
        deep.push(0xc0);
        assert!(matches!(
            validate_value(&deep, 1 << 20),
            Err(StoreError::InvalidValue { .. })
        ));
        let mut fine = vec![0x91u8; 100];
        fine.push(0xc0);
        assert!(validate_value(&fine, 1 << 20).is_ok());
    }

    #[test]
    fn oversized_values_are_refused_before_parsing() {
        let value = vec![0xc0; 11];
        assert!(matches!(
            validate_value(&value, 10),
            Err(StoreError::ValueTooLarge {
                size: 11,
                limit: 10
            })
        ));
    }
}
