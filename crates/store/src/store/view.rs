//! `DatabaseView`: one database inside a snapshot, and its reads: one document, scans of
//! key ranges (pages of owned `Document`s, or `DocRef`s borrowed from the snapshot) and
//! its change log. Index queries (`DatabaseView::find`) are in `crate::index`.

use std::ops::Bound;

use super::bounds::{as_slice_bound, scan_bounds};
use super::prefetch::PagePrefetch;
use super::snapshot::{read_config, DatabaseInfo, Snapshot};
use super::{MAX_CHANGES_LIMIT, MAX_SCAN_LIMIT};
use crate::error::{Result, StoreError};
use crate::format::{
    change_key, change_key_seq, database_bounds, doc_key, doc_key_name, read_change_record,
    read_doc_value, CatalogRecord, ChangeOp, ChangeRecordRef, DatabaseConfig,
};

/// A document borrowed from a snapshot (see `DatabaseView::visit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocRef<'a> {
    pub key: &'a str,
    pub rev: u64,
    pub value: &'a [u8],
}

/// A scan page reserves room for at most this many documents up front.
const MAX_PREALLOCATED_DOCS: usize = 16_384;

/// A document as read: its key, its rev (seq of its last change) and its msgpack value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub key: String,
    pub rev: u64,
    pub value: Vec<u8>,
}

/// One entry of a change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub seq: u64,
    pub op: ChangeOp,
    pub key: String,
    /// The new value of a put; `None` for a delete (tombstone).
    pub value: Option<Vec<u8>>,
    pub time_ms: u64,
}

/// Which documents a scan visits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanRange {
    /// Every document of the database.
    All,
    /// Documents whose key starts with this prefix.
    Prefix(String),
    /// Documents whose key lies between the bounds.
    Keys {
        start: Bound<String>,
        end: Bound<String>,
    },
}

/// A scan request: range, page size, direction and cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub range: ScanRange,
    /// Most documents returned (1 to `MAX_SCAN_LIMIT`).
    pub limit: usize,
    /// Descending key order.
    pub reverse: bool,
    /// Resume after this key (the last key of the previous page).
    pub after: Option<String>,
}

impl Scan {
    /// A forward scan of the whole database.
    pub fn all(limit: usize) -> Scan {
        Scan {
            range: ScanRange::All,
            limit,
            reverse: false,
            after: None,
        }
    }
}

/// One page of scan results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPage {
    pub docs: Vec<Document>,
    /// True when more documents lie in the range after this page; resume with
    /// `after` = the last key of `docs`.
    pub more: bool,
}

/// One database inside a snapshot.
pub struct DatabaseView<'s> {
    pub(crate) snapshot: &'s Snapshot,
    pub(crate) name: String,
    pub(crate) record: CatalogRecord,
}

impl DatabaseView<'_> {
    /// Counters of this database.
    pub fn info(&self) -> Result<DatabaseInfo> {
        let offline = self.config()?.offline;
        Ok(DatabaseInfo::from_record(&self.name, &self.record, offline))
    }

    /// The configuration of this database.
    pub fn config(&self) -> Result<DatabaseConfig> {
        Ok(read_config(&self.snapshot.txn, self.snapshot.tables, &self.name)?.unwrap_or_default())
    }

    /// One document, or `None` when absent. An invalid key is an error, not `None`.
    pub fn get(&self, key: &str) -> Result<Option<Document>> {
        crate::validate::validate_key(key)?;
        let stored = self
            .snapshot
            .tables
            .docs
            .get(&self.snapshot.txn, &doc_key(self.record.id, key))?;
        stored
            .map(|bytes| {
                let (rev, value) = read_doc_value(&self.name, self.record.id, key, bytes)?;
                Ok(Document {
                    key: key.to_string(),
                    rev,
                    value: value.to_vec(),
                })
            })
            .transpose()
    }

    /// Calls `visit` with each document of `range` in key order (or reverse key order),
    /// after the key `after` if given, borrowing keys and values from the snapshot
    /// without copying them, until `visit` returns false.
    pub fn visit(
        &self,
        range: &ScanRange,
        reverse: bool,
        after: Option<&str>,
        mut visit: impl FnMut(DocRef<'_>) -> bool,
    ) -> Result<()> {
        let (low, high) = scan_bounds(self.record.id, range, reverse, after)?;
        let bounds = (as_slice_bound(&low), as_slice_bound(&high));
        let docs_table = self.snapshot.tables.docs;
        let txn = &self.snapshot.txn;
        let mut prefetch = PagePrefetch::default();
        let mut offer = |key: &[u8], value: &[u8]| -> Result<bool> {
            prefetch.entering(value);
            let key = doc_key_name(key)?;
            let (rev, value) = read_doc_value(&self.name, self.record.id, key, value)?;
            Ok(visit(DocRef { key, rev, value }))
        };
        if reverse {
            for entry in docs_table.rev_range(txn, &bounds)? {
                let (key, value) = entry?;
                if !offer(key, value)? {
                    break;
                }
            }
        } else {
            for entry in docs_table.range(txn, &bounds)? {
                let (key, value) = entry?;
                if !offer(key, value)? {
                    break;
                }
            }
        }
        Ok(())
    }

    /// One page of documents in key order (or reverse key order).
    pub fn scan(&self, scan: &Scan) -> Result<ScanPage> {
        self.scan_within(scan, usize::MAX)
    }

    /// As `scan`, the page also ending before its documents' keys and values would pass
    /// `max_bytes` (one document at least; `more` says the range goes on), so that an
    /// answer's memory and size stay bounded whatever the values.
    pub fn scan_within(&self, scan: &Scan, max_bytes: usize) -> Result<ScanPage> {
        let mut docs = Vec::with_capacity(scan.limit.min(MAX_PREALLOCATED_DOCS));
        let more = self.scan_page(scan, max_bytes, |doc| {
            docs.push(Document {
                key: doc.key.to_string(),
                rev: doc.rev,
                value: doc.value.to_vec(),
            });
        })?;
        Ok(ScanPage { docs, more })
    }

    /// The page `scan_within` returns, handed to `take` document by document borrowed
    /// from the snapshot (no copy); returns whether more documents lie in the range
    /// after it.
    pub fn scan_page(
        &self,
        scan: &Scan,
        max_bytes: usize,
        mut take: impl FnMut(DocRef<'_>),
    ) -> Result<bool> {
        if scan.limit == 0 || scan.limit > MAX_SCAN_LIMIT {
            return Err(StoreError::InvalidArgument {
                reason: format!(
                    "scan limit must be 1 to {MAX_SCAN_LIMIT}, not {}",
                    scan.limit
                ),
            });
        }
        let (mut taken, mut more) = (0, false);
        let mut budget = Budget::new(max_bytes);
        self.visit(&scan.range, scan.reverse, scan.after.as_deref(), |doc| {
            if taken == scan.limit || !budget.take(doc.key.len() + doc.value.len()) {
                more = true;
                return false;
            }
            taken += 1;
            take(doc);
            true
        })?;
        Ok(more)
    }

    /// The changes with a seq greater than `since`, oldest first, at most `limit`.
    /// `ChangesCompacted` when retention already removed some of them.
    pub fn changes(&self, since: u64, limit: usize) -> Result<Vec<Change>> {
        self.changes_within(since, limit, usize::MAX)
    }

    /// As `changes`, also ending before the changes' keys and values would pass
    /// `max_bytes` (one change at least); the next page starts after the last one.
    pub fn changes_within(
        &self,
        since: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Change>> {
        let mut out = Vec::new();
        self.changes_page(since, limit, max_bytes, |seq, change| {
            out.push(Change {
                seq,
                op: change.op,
                key: change.key.to_string(),
                value: change.value.map(<[u8]>::to_vec),
                time_ms: change.time_ms,
            });
        })?;
        Ok(out)
    }

    /// The page `changes_within` returns, handed to `take` change by change (its seq
    /// and its record borrowed from the snapshot: no copy).
    pub fn changes_page(
        &self,
        since: u64,
        limit: usize,
        max_bytes: usize,
        mut take: impl FnMut(u64, ChangeRecordRef<'_>),
    ) -> Result<()> {
        if limit == 0 || limit > MAX_CHANGES_LIMIT {
            return Err(StoreError::InvalidArgument {
                reason: format!("changes limit must be 1 to {MAX_CHANGES_LIMIT}, not {limit}"),
            });
        }
        if since < self.record.trimmed_through {
            return Err(StoreError::ChangesCompacted {
                db: self.name.clone(),
                since,
                oldest: self.record.trimmed_through + 1,
            });
        }
        if since >= self.record.last_seq {
            return Ok(());
        }
        let mut budget = Budget::new(max_bytes);
        let mut taken = 0;
        let low = change_key(self.record.id, since + 1);
        let (_, high) = database_bounds(self.record.id);
        let bounds = (Bound::Included(&low[..]), Bound::Excluded(&high[..]));
        let mut prefetch = PagePrefetch::default();
        for entry in self
            .snapshot
            .tables
            .changes
            .range(&self.snapshot.txn, &bounds)?
        {
            let (key, record) = entry?;
            prefetch.entering(record);
            let seq = change_key_seq(key)?;
            let record_ref = read_change_record(&self.name, self.record.id, seq, record)?;
            let size = record_ref.key.len() + record_ref.value.map_or(0, <[u8]>::len);
            if !budget.take(size) {
                break;
            }
            take(seq, record_ref);
            taken += 1;
            if taken == limit {
                break;
            }
        }
        Ok(())
    }
}

/// What a page may still hold, in bytes of keys and values (with a little for each
/// entry's own fields); the first entry always fits.
pub(crate) struct Budget {
    left: usize,
    first: bool,
}

/// What an entry costs beyond its key and value, with room to spare: a change's fields
/// and their names (seq, op, time_ms) take about 50 bytes, a document's about 30, a
/// found document's about 45 (its index value is counted with its value). Too little
/// here, and a page of many small entries would pass the frame limit.
const ENTRY_OVERHEAD: usize = 64;

impl Budget {
    pub(crate) fn new(max_bytes: usize) -> Budget {
        Budget {
            left: max_bytes,
            first: true,
        }
    }

    /// Takes room for an entry of `bytes`; false when it does not fit (never for the
    /// first).
    pub(crate) fn take(&mut self, bytes: usize) -> bool {
        let cost = bytes.saturating_add(ENTRY_OVERHEAD);
        if cost > self.left && !self.first {
            return false;
        }
        self.first = false;
        self.left = self.left.saturating_sub(cost);
        true
    }
}
