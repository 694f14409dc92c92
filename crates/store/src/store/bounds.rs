//! Key ranges in LMDB's key order: the bounds of a scan in the `docs` table (a whole
//! database, a key prefix, a key range, resumed after a key), and the helpers index
//! queries use too (the tighter of two bounds, whether a range is empty).

use std::ops::Bound;

use crate::error::{Result, StoreError};
use crate::format::{database_bounds, doc_key};
use crate::store::ScanRange;

/// `prefix` followed by `tail`.
pub(crate) fn extend(prefix: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + tail.len());
    out.extend_from_slice(prefix);
    out.extend_from_slice(tail);
    out
}

/// True when no key lies between the bounds (LMDB would reject such a range).
pub(crate) fn bounds_empty(low: &Bound<Vec<u8>>, high: &Bound<Vec<u8>>) -> bool {
    match (low, high) {
        (Bound::Included(l), Bound::Included(h)) => l > h,
        (Bound::Included(l) | Bound::Excluded(l), Bound::Included(h) | Bound::Excluded(h)) => {
            l >= h
        }
        _ => false,
    }
}

pub(crate) fn as_slice_bound(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(b) => Bound::Included(b.as_slice()),
        Bound::Excluded(b) => Bound::Excluded(b.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The smallest byte string greater than every string that starts with `prefix`, if any.
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last < 0xff {
            out.push(last + 1);
            return Some(out);
        }
    }
    None
}

/// The tighter of two lower bounds.
pub(crate) fn max_low(a: Bound<Vec<u8>>, b: Bound<Vec<u8>>) -> Bound<Vec<u8>> {
    match (&a, &b) {
        (Bound::Unbounded, _) => b,
        (_, Bound::Unbounded) => a,
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) => {
            if x > y || (x == y && matches!(a, Bound::Excluded(_))) {
                a
            } else {
                b
            }
        }
    }
}

/// The tighter of two upper bounds.
pub(crate) fn min_high(a: Bound<Vec<u8>>, b: Bound<Vec<u8>>) -> Bound<Vec<u8>> {
    match (&a, &b) {
        (Bound::Unbounded, _) => b,
        (_, Bound::Unbounded) => a,
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) => {
            if x < y || (x == y && matches!(a, Bound::Excluded(_))) {
                a
            } else {
                b
            }
        }
    }
}

/// Lower and upper bound of a key range in the `docs` table.
type KeyBounds = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// Bounds in the `docs` key space for a scan of database `db_id`.
pub(super) fn scan_bounds(
    db_id: u32,
    range: &ScanRange,
    reverse: bool,
    after: Option<&str>,
) -> Result<KeyBounds> {
    let (db_low, db_high) = database_bounds(db_id);
    let mut low = Bound::Included(db_low);
    let mut high = Bound::Excluded(db_high);
    let encode = |bound: &Bound<String>| -> Result<Bound<Vec<u8>>> {
        Ok(match bound {
            Bound::Included(k) => Bound::Included(doc_key(db_id, k)),
            Bound::Excluded(k) => Bound::Excluded(doc_key(db_id, k)),
            Bound::Unbounded => Bound::Unbounded,
        })
    };
    match range {
        ScanRange::All => {}
        ScanRange::Prefix(prefix) => {
            if prefix.len() > crate::validate::MAX_KEY_BYTES {
                return Err(StoreError::InvalidKey {
                    reason: "a prefix is at most 400 bytes".to_string(),
                });
            }
            let start = doc_key(db_id, prefix);
            if let Some(end) = prefix_successor(&start) {
                high = min_high(high, Bound::Excluded(end));
            }
            low = max_low(low, Bound::Included(start));
        }
        ScanRange::Keys { start, end } => {
            low = max_low(low, encode(start)?);
            high = min_high(high, encode(end)?);
        }
    }
    if let Some(after) = after {
        crate::validate::validate_key(after)?;
        let cursor = Bound::Excluded(doc_key(db_id, after));
        if reverse {
            high = min_high(high, cursor);
        } else {
            low = max_low(low, cursor);
        }
    }
    // An empty or inverted range scans nothing (LMDB would reject it).
    if bounds_empty(&low, &high) {
        let (db_low, _) = database_bounds(db_id);
        return Ok((Bound::Excluded(db_low.clone()), Bound::Excluded(db_low)));
    }
    Ok((low, high))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_successor_carries() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xff, 0xff]), None);
    }

    #[test]
    fn bounds_pick_the_tighter_side() {
        let inc = |s: &str| Bound::Included(s.as_bytes().to_vec());
        let exc = |s: &str| Bound::Excluded(s.as_bytes().to_vec());
        assert_eq!(max_low(inc("a"), exc("b")), exc("b"));
        assert_eq!(max_low(inc("b"), exc("b")), exc("b"));
        assert_eq!(max_low(Bound::Unbounded, inc("a")), inc("a"));
        assert_eq!(min_high(inc("c"), exc("b")), exc("b"));
        assert_eq!(min_high(exc("b"), inc("b")), exc("b"));
    }
}
