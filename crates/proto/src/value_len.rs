//! How many bytes the msgpack value at the start of a slice takes, found by walking its
//! markers and lengths once, without building anything and without recursion. A reader
//! that decodes straight from a frame's bytes (`rmp_serde`'s borrowing deserializer,
//! which cannot say where it stopped) checks with it that the value fills the frame.

/// The length of the one msgpack value `bytes` begins with; `None` when `bytes` ends
/// before it does, or it holds the reserved marker `0xc1` (which only the `Value` reader
/// takes, as nil).
pub fn value_len(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    // Values still to step over: the first, then each container's items.
    let mut pending: u64 = 1;
    while pending > 0 {
        let marker = *bytes.get(at)?;
        at += 1;
        pending -= 1;
        let (skip, items) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * u64::from(marker & 0x0f)),
            0x90..=0x9f => (0, u64::from(marker & 0x0f)),
            0xa0..=0xbf => (usize::from(marker & 0x1f), 0),
            0xc1 => return None,
            0xc4 | 0xd9 => (length(bytes, &mut at, 1)?, 0),
            0xc5 | 0xda => (length(bytes, &mut at, 2)?, 0),
            0xc6 | 0xdb => (length(bytes, &mut at, 4)?, 0),
            // Extensions: the length, then a type byte before the data.
            0xc7 => (length(bytes, &mut at, 1)?.checked_add(1)?, 0),
            0xc8 => (length(bytes, &mut at, 2)?.checked_add(1)?, 0),
            0xc9 => (length(bytes, &mut at, 4)?.checked_add(1)?, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xca | 0xce | 0xd2 => (4, 0),
            0xcb | 0xcf | 0xd3 => (8, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => (0, length(bytes, &mut at, 2)? as u64),
            0xdd => (0, length(bytes, &mut at, 4)? as u64),
            0xde => (0, 2 * length(bytes, &mut at, 2)? as u64),
            0xdf => (0, 2 * length(bytes, &mut at, 4)? as u64),
        };
        at = at.checked_add(skip).filter(|&end| end <= bytes.len())?;
        pending += items;
        // Every value takes a byte at least: more pending than bytes left cannot end.
        if pending > (bytes.len() - at) as u64 {
            return None;
        }
    }
    Some(at)
}

/// The big-endian length of `width` bytes at `at`, stepping over it.
fn length(bytes: &[u8], at: &mut usize, width: usize) -> Option<usize> {
    let field = bytes.get(*at..*at + width)?;
    *at += width;
    Some(
        field
            .iter()
            .fold(0usize, |len, &byte| (len << 8) | usize::from(byte)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rmpv::Value;

    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Nil),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f32>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,40}".prop_map(Value::from),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Value::Binary),
            (any::<i8>(), proptest::collection::vec(any::<u8>(), 0..20))
                .prop_map(|(kind, data)| Value::Ext(kind, data)),
        ];
        leaf.prop_recursive(4, 64, 20, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..20).prop_map(Value::Array),
                proptest::collection::vec((inner.clone(), inner), 0..20).prop_map(Value::Map),
            ]
        })
    }

    proptest! {
        #[test]
        fn a_value_followed_by_anything_takes_its_own_bytes(
            value in any_value(),
            tail in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let mut bytes = Vec::new();
            rmpv::encode::write_value(&mut bytes, &value).unwrap();
            let len = bytes.len();
            bytes.extend_from_slice(&tail);
            prop_assert_eq!(value_len(&bytes), Some(len));
            // Cut short, it does not end.
            prop_assert_eq!(value_len(&bytes[..len - 1]), None);
        }

        #[test]
        fn on_any_bytes_it_agrees_with_the_value_reader(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            if let Some(len) = value_len(&bytes) {
                let mut rest = bytes.as_slice();
                rmpv::decode::read_value_ref(&mut rest).unwrap();
                prop_assert_eq!(bytes.len() - rest.len(), len);
            }
        }
    }

    #[test]
    fn the_reserved_marker_and_lengths_past_the_end_do_not_end() {
        assert_eq!(value_len(&[0xc1]), None);
        assert_eq!(value_len(&[0x91, 0xc1]), None);
        assert_eq!(value_len(&[0xdd, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(value_len(&[0xc6, 0x00, 0x00, 0x01]), None);
        assert_eq!(value_len(&[]), None);
        assert_eq!(value_len(&[0x92, 0x01, 0xa1, b'x', 0xff]), Some(4));
    }
}
