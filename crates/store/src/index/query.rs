//! Index queries: `IndexQuery` (one index, a range of values, a page size, a direction
//! and a cursor), `FoundPage`, and `DatabaseView::find`, which answers a query from the
//! `indexes` table of a snapshot.

use std::ops::Bound;

use super::{position_byte, IndexKey};
use crate::error::{Result, StoreError};
use crate::format::{doc_key, index_key, read_doc_value, split_index_entry, table, IndexNames};
use crate::store::{
    as_slice_bound, bounds_empty, extend, max_low, min_high, Budget, DatabaseView, DocRef,
    Document, MAX_SCAN_LIMIT,
};

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
    pub docs: Vec<(IndexKey, Document)>,
    /// True when more documents lie in the range after this page; resume with `after`
    /// = the last (value, key) of `docs`.
    pub more: bool,
}

impl DatabaseView<'_> {
    /// One page of the documents whose value at an index lies in the query's range, in
    /// (value, document key) order (or the reverse). `IndexMissing` when the database
    /// declares no such index, `IndexStale` while its entries wait for a resync. An
    /// entry whose document is missing is `Corrupt`.
    ///
    /// A page starts with one seek, wherever its cursor lies: inside a run of equal
    /// values held by a million documents as anywhere else.
    pub fn find(&self, query: &IndexQuery) -> Result<FoundPage> {
        self.find_within(query, usize::MAX)
    }

    /// As `find`, the page also ending before its documents' keys and values would pass
    /// `max_bytes` (one document at least; `more` says the range goes on).
    pub fn find_within(&self, query: &IndexQuery, max_bytes: usize) -> Result<FoundPage> {
        let mut docs = Vec::new();
        let more = self.find_page(query, max_bytes, |value, doc| {
            docs.push((
                value,
                Document {
                    key: doc.key.to_string(),
                    rev: doc.rev,
                    value: doc.value.to_vec(),
                },
            ));
        })?;
        Ok(FoundPage { docs, more })
    }

    /// The page `find_within` returns, handed to `take` entry by entry with the
    /// document borrowed from the snapshot (no copy); returns whether more documents lie
    /// in the range after it.
    pub fn find_page(
        &self,
        query: &IndexQuery,
        max_bytes: usize,
        mut take: impl FnMut(IndexKey, DocRef<'_>),
    ) -> Result<bool> {
        if query.limit == 0 || query.limit > MAX_SCAN_LIMIT {
            return Err(StoreError::InvalidArgument {
                reason: format!(
                    "find limit must be 1 to {MAX_SCAN_LIMIT}, not {}",
                    query.limit
                ),
            });
        }
        let stored_config = self
            .snapshot
            .tables
            .configs
            .get(&self.snapshot.txn, &self.name)?;
        let config = stored_config
            .map(IndexNames::decode)
            .transpose()?
            .unwrap_or_default();
        let position = config
            .indexes
            .iter()
            .position(|def| def.name == query.index)
            .ok_or_else(|| StoreError::IndexMissing {
                db: self.name.clone(),
                index: query.index.clone(),
            })?;
        if config.indexes_stale {
            return Err(StoreError::IndexStale {
                db: self.name.clone(),
                index: query.index.clone(),
            });
        }
        let prefix = index_key(self.record.id, position_byte(position)?, &[]);
        // The entries of one value are the keys that start with `prefix ‖ value`: every
        // key at or past `prefix ‖ value ‖ 0xff` belongs to a greater value (document
        // keys are UTF-8, which never holds a 0xff byte).
        let value_key =
            |value: &IndexKey| -> Result<Vec<u8>> { Ok(extend(&prefix, &value.encode()?)) };
        let past_value =
            |value: &IndexKey| -> Result<Vec<u8>> { Ok(extend(&value_key(value)?, &[0xff])) };
        let low = match &query.start {
            Bound::Included(value) => Bound::Included(value_key(value)?),
            Bound::Excluded(value) => Bound::Included(past_value(value)?),
            Bound::Unbounded => Bound::Unbounded,
        };
        let high = match &query.end {
            Bound::Included(value) => Bound::Excluded(past_value(value)?),
            Bound::Excluded(value) => Bound::Excluded(value_key(value)?),
            Bound::Unbounded => Bound::Unbounded,
        };
        let next_index = index_key(self.record.id, position_byte(position + 1)?, &[]);
        let mut low = max_low(Bound::Included(prefix.clone()), low);
        let mut high = min_high(Bound::Excluded(next_index), high);
        if let Some((value, key)) = &query.after {
            crate::validate::validate_key(key)?;
            let cursor = Bound::Excluded(extend(&value_key(value)?, key.as_bytes()));
            if query.reverse {
                high = min_high(high, cursor);
            } else {
                low = max_low(low, cursor);
            }
        }
        if bounds_empty(&low, &high) {
            return Ok(false);
        }
        let txn = &self.snapshot.txn;
        let (mut taken, mut more) = (0, false);
        let mut budget = Budget::new(max_bytes);
        let mut offer = |key: &[u8]| -> Result<bool> {
            if taken == query.limit {
                more = true;
                return Ok(false);
            }
            let (_, encoded, name) = split_index_entry(key)?;
            let stored = self
                .snapshot
                .tables
                .docs
                .get(txn, &doc_key(self.record.id, name))?
                .ok_or_else(|| StoreError::Corrupt {
                    table: table::INDEXES,
                    reason: format!(
                        "index {:?} of database {:?} lists document {name:?}, which does not exist",
                        query.index, self.name
                    ),
                })?;
            let (rev, value) = read_doc_value(&self.name, self.record.id, name, stored)?;
            if !budget.take(name.len() + value.len() + encoded.len()) {
                more = true;
                return Ok(false);
            }
            taken += 1;
            take(
                IndexKey::decode(encoded)?,
                DocRef {
                    key: name,
                    rev,
                    value,
                },
            );
            Ok(true)
        };
        let indexes = self.snapshot.tables.indexes;
        let bounds = (as_slice_bound(&low), as_slice_bound(&high));
        if query.reverse {
            for entry in indexes.rev_range(txn, &bounds)? {
                if !offer(entry?.0)? {
                    break;
                }
            }
        } else {
            for entry in indexes.range(txn, &bounds)? {
                if !offer(entry?.0)? {
                    break;
                }
            }
        }
        Ok(more)
    }
}
