//! Index queries: `IndexQuery` (one index, a range of values, a page size, a direction
//! and a cursor), `FoundPage`, and `DatabaseView::find`, which answers a query from the
//! `indexes` table of a snapshot.

use std::ops::Bound;

use super::{position_byte, IndexKey};
use crate::error::{Result, StoreError};
use crate::format::{doc_key, index_doc_key, index_key, split_doc_value, split_index_key, table};
use crate::store::{
    as_slice_bound, bounds_empty, extend, max_low, min_high, DatabaseView, Document, MAX_SCAN_LIMIT,
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
    /// Resuming inside a run of equal values steps over the documents of that value
    /// before the cursor, so paging through one value held by very many documents
    /// costs more per page as it goes.
    pub fn find(&self, query: &IndexQuery) -> Result<FoundPage> {
        if query.limit == 0 || query.limit > MAX_SCAN_LIMIT {
            return Err(StoreError::InvalidArgument {
                reason: format!(
                    "find limit must be 1 to {MAX_SCAN_LIMIT}, not {}",
                    query.limit
                ),
            });
        }
        let config = self.config()?;
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
        let mut docs = Vec::new();
        let Some(indexes) = self.snapshot.tables.indexes else {
            return Ok(FoundPage { docs, more: false });
        };
        let prefix = index_key(self.record.id, position_byte(position)?, &[]);
        let encode = |bound: &Bound<IndexKey>| -> Result<Bound<Vec<u8>>> {
            Ok(match bound {
                Bound::Included(v) => Bound::Included(extend(&prefix, &v.encode()?)),
                Bound::Excluded(v) => Bound::Excluded(extend(&prefix, &v.encode()?)),
                Bound::Unbounded => Bound::Unbounded,
            })
        };
        let next_index = index_key(self.record.id, position_byte(position + 1)?, &[]);
        let mut low = max_low(Bound::Included(prefix.clone()), encode(&query.start)?);
        let mut high = min_high(Bound::Excluded(next_index), encode(&query.end)?);
        let after = match &query.after {
            Some((value, key)) => {
                crate::validate::validate_key(key)?;
                let cursor = extend(&prefix, &value.encode()?);
                if query.reverse {
                    high = min_high(high, Bound::Included(cursor.clone()));
                } else {
                    low = max_low(low, Bound::Included(cursor.clone()));
                }
                Some((cursor, key.as_bytes()))
            }
            None => None,
        };
        if bounds_empty(&low, &high) {
            return Ok(FoundPage { docs, more: false });
        }
        let txn = &self.snapshot.txn;
        let mut more = false;
        let mut offer = |key: &[u8], dup: &[u8]| -> Result<bool> {
            if let Some((cursor, after_key)) = &after {
                let skip = key == cursor.as_slice()
                    && if query.reverse {
                        dup >= *after_key
                    } else {
                        dup <= *after_key
                    };
                if skip {
                    return Ok(true);
                }
            }
            if docs.len() == query.limit {
                more = true;
                return Ok(false);
            }
            let (_, encoded) = split_index_key(key)?;
            let name = index_doc_key(dup)?;
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
            let (rev, value) = split_doc_value(stored)?;
            docs.push((
                IndexKey::decode(encoded)?,
                Document {
                    key: name.to_string(),
                    rev,
                    value: value.to_vec(),
                },
            ));
            Ok(true)
        };
        if query.reverse {
            // heed's reverse range starts on the first duplicate of an included end key
            // and would skip the others: ask for "below the next key" instead.
            let high = match high {
                Bound::Included(end) => Bound::Excluded(extend(&end, &[0])),
                other => other,
            };
            let bounds = (as_slice_bound(&low), as_slice_bound(&high));
            for entry in indexes.rev_range(txn, &bounds)? {
                let (key, doc) = entry?;
                if !offer(key, doc)? {
                    break;
                }
            }
        } else {
            let bounds = (as_slice_bound(&low), as_slice_bound(&high));
            for entry in indexes.range(txn, &bounds)? {
                let (key, doc) = entry?;
                if !offer(key, doc)? {
                    break;
                }
            }
        }
        Ok(FoundPage { docs, more })
    }
}
